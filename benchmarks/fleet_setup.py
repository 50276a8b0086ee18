"""A fleet on localnet for ``fleet_bench``: a platform canister and N user canisters with data.

Each member is a user of the platform (``canister_iface/motoko/canisters/platform``):
its own identity calls ``create_user_canister`` (the platform creates the
canister with ``user_cycles`` and indexes it), then ``put``s one record of the
member's size into it.  Both calls are idempotent for one identity — the
platform returns the canister a user already has, and a ``put`` of the same
record rewrites it — so a member whose call failed transiently (a timeout
that may have executed, an overloaded node, "your canister is being
created") is simply set up again.  Identities are derived from a seed and the
member's number, so a second run with the same seed against the same
localnet state finds the same canisters.

A fixed number of workers take members from one counter: the work in flight
and the memory (one member's data per worker) stay bounded at any N, and
progress is printed every tenth of the fleet.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import as_principal, as_variant, decode_single, encode_values
from canister_iface.errors import TransientError
from canister_iface.identity import Ed25519Identity, Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.platform import configure_arg
from canister_iface.principal import Principal
from localnet.process import LocalNetProcess

T = 10**12
R = TypeVar("R")
_ATTEMPTS = 8
_FIRST_PAUSE = 0.5


class Retry(Exception):
    """A member's call answered with something worth asking again (see the module)."""


@dataclass
class Setup:
    platform: Principal
    seconds: float
    retries: int
    data_bytes: int


def member_identity(seed: bytes, i: int) -> Identity:
    """Member ``i``'s user identity, the same for the same seed."""
    key = hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
    return Ed25519Identity(Ed25519PrivateKey.from_private_bytes(key))


async def deploy(
    net: LocalNetProcess,
    me: Identity,
    agent: Agent,
    n: int,
    size: Callable[[int, int], int],
    *,
    workers: int = 16,
    seed: bytes = b"fleet_bench",
    wasm: bytes,
) -> Setup:
    """A platform canister controlled by ``me`` and its ``n`` members; member ``i``
    holds ``size(i, n)`` bytes."""
    started = time.monotonic()
    plat = await _platform(agent, me, n, wasm)
    retries = 0
    next_member = 0
    done = 0

    async def worker() -> None:
        nonlocal next_member, done, retries
        while next_member < n:
            i, next_member = next_member, next_member + 1
            retries += await _member(net, plat, member_identity(seed, i), i, size(i, n))
            done += 1
            if done % max(1, n // 10) == 0:
                elapsed = time.monotonic() - started
                print(
                    f"  setup: {done:,} of {n:,} members in {elapsed:.0f} s "
                    f"({done / elapsed:.1f}/s, {retries} retries)",
                    flush=True,
                )

    await asyncio.gather(*(worker() for _ in range(min(workers, n))))
    total = sum(size(i, n) for i in range(n))
    return Setup(plat, time.monotonic() - started, retries, total)


async def _platform(agent: Agent, me: Identity, n: int, wasm: bytes) -> Principal:
    mgmt = ManagementClient(agent)
    plat = await mgmt.provisional_create_canister_with_cycles(
        amount=(3 * n + 10) * T, settings=CanisterSettings(controllers=(me.principal,))
    )
    await mgmt.install_code(plat, wasm)
    arg = configure_arg(user_cycles=2 * T, controllers=[me.principal], peers=[me.principal])
    await agent.update(plat, "platform_configure", arg)
    return plat


async def _member(net: LocalNetProcess, plat: Principal, user: Identity, i: int, size: int) -> int:
    """Set member ``i`` up; the number of retries it took."""
    async with Agent(net.url, user, network="local", root_key=net.root_key) as agent:
        retries, canister = await _retrying(lambda: _create(agent, plat))
        arg = encode_values(
            [(Types.Vec(Types.Nat8), b"data"), (Types.Vec(Types.Nat8), bytes([i % 251]) * size)]
        )
        more, _ = await _retrying(lambda: _put(agent, canister, arg))
    return retries + more


async def _create(agent: Agent, plat: Principal) -> Principal:
    reply = await agent.update(plat, "create_user_canister", b"DIDL\x00\x00")
    tag, value = as_variant(decode_single(reply, "create_user_canister"), ("ok", "err"), "create")
    if tag == "ok":
        return as_principal(value, "create_user_canister")
    # "being created" (an earlier attempt still running) and "creating the canister
    # failed" (the management call was refused, e.g. under load) both pass.
    text = str(value)
    if "being created" in text or "creating the canister failed" in text:
        raise Retry(text)
    raise RuntimeError(f"create_user_canister refused: {text}")


async def _put(agent: Agent, canister: Principal, arg: bytes) -> None:
    reply = await agent.update(canister, "put", arg)
    tag, value = as_variant(decode_single(reply, "put"), ("ok", "err"), "put")
    if tag != "ok":
        raise RuntimeError(f"put into {canister} refused: {value}")


async def _retrying(call: Callable[[], Awaitable[R]]) -> tuple[int, R]:
    """``call``'s result and how many retries it took; transient failures retried
    with a doubling pause, up to ``_ATTEMPTS`` attempts."""
    pause = _FIRST_PAUSE
    for attempt in range(_ATTEMPTS):
        try:
            return attempt, await call()
        except (TransientError, Retry) as exc:
            if attempt == _ATTEMPTS - 1:
                raise
            wait = getattr(exc, "retry_after", None) or pause
            await asyncio.sleep(wait)
            pause = min(pause * 2, 30.0)
    raise AssertionError("unreachable")
