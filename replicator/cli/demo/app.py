"""A typed client for the demo app (``canister_iface/wasm/demo_app.wasm``).

The demo app is a small social network (users, posts, pictures) that embeds
the ICRP library.  ``replicator demo``, the end-to-end tests and the backup
benchmark deploy it, fill it with synthetic data (``generate``, in steps),
compare its ``stats()`` fingerprint before and after a round trip, and wipe
it.  Equal fingerprints mean equal state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from icp_candid import Types

import canister_iface
from canister_iface.caller import Caller
from canister_iface.candid_value import (
    Rec,
    as_nat,
    as_rec,
    as_variant,
    decode_single,
    encode_values,
)
from canister_iface.errors import ProtocolError
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal

WASM_DIR = Path(canister_iface.__file__).parent / "wasm"
DEMO_APP_WASM = WASM_DIR / "demo_app.wasm"
MiB = 1024 * 1024
# Local networks mint cycles; plenty for a demo's calls and storage.
DEMO_CYCLES = 100 * 10**12
# generate/wipe do bounded work per call; a GiB needs a few hundred calls at most.
_MAX_STEPS = 10_000

GenerateObserver = Callable[[int, int], None]  # (done_bytes, target_bytes)


@dataclass(frozen=True)
class Stats:
    """What ``stats()`` reports."""

    users: int
    posts: int
    pictures: int
    picture_bytes: int
    records: int
    state_bytes: int
    fingerprint: int
    journal_head: int

    @classmethod
    def from_rec(cls, rec: Rec) -> Stats:
        return cls(
            users=rec.nat("users"),
            posts=rec.nat("posts"),
            pictures=rec.nat("pictures"),
            picture_bytes=rec.nat("picture_bytes"),
            records=rec.nat("records"),
            state_bytes=rec.nat("state_bytes"),
            fingerprint=rec.nat("fingerprint"),
            journal_head=rec.nat("journal_head"),
        )


class DemoApp:
    """One deployed demo app, called through ``agent`` (a controller)."""

    def __init__(self, agent: Caller, canister_id: Principal) -> None:
        self.agent = agent
        self.canister_id = canister_id

    @classmethod
    async def deploy(
        cls,
        agent: Caller,
        controller: Principal,
        *,
        wasm: bytes | None = None,
        cycles: int = DEMO_CYCLES,
    ) -> DemoApp:
        """Create a canister on a local network and install the demo app in it."""
        mgmt = ManagementClient(agent)
        canister = await mgmt.provisional_create_canister_with_cycles(
            amount=cycles, settings=CanisterSettings(controllers=(controller,))
        )
        module = wasm if wasm is not None else DEMO_APP_WASM.read_bytes()
        await mgmt.install_code(canister, module)
        return cls(agent, canister)

    async def _ok(self, method: str, arg: bytes) -> object:
        reply = decode_single(await self.agent.update(self.canister_id.raw, method, arg), method)
        tag, payload = as_variant(reply, ("ok", "err"), method)
        if tag == "err":
            raise ProtocolError(f"{method} on {self.canister_id}: {payload}")
        return payload

    async def create_user(self, name: str, bio: str) -> None:
        """One application write (``ProtocolError`` when the app refuses it)."""
        arg = encode_values([(Types.Text, name), (Types.Text, bio)])
        await self._ok("create_user", arg)

    async def generate(
        self, mib: int, seed: int = 1, *, on_progress: GenerateObserver | None = None
    ) -> None:
        """Fill the app with about ``mib`` MiB of synthetic users, posts and pictures."""
        arg = encode_values([(Types.Nat, mib), (Types.Nat, seed)])
        for _ in range(_MAX_STEPS):
            progress = as_rec(await self._ok("generate", arg), "generate")
            if on_progress is not None:
                on_progress(progress.nat("done_bytes"), progress.nat("target_bytes"))
            if progress.boolean("finished"):
                return
        raise ProtocolError(f"generate on {self.canister_id} did not finish in {_MAX_STEPS} steps")

    async def stats(self) -> Stats:
        reply = await self.agent.query(self.canister_id.raw, "stats", b"DIDL\x00\x00")
        return Stats.from_rec(as_rec(decode_single(reply, "stats"), "stats"))

    async def wipe(self) -> None:
        """Delete every user, post and picture (in steps)."""
        for _ in range(_MAX_STEPS):
            left = as_nat(await self._ok("wipe", b"DIDL\x00\x00"), "wipe")
            if left == 0:
                return
        raise ProtocolError(f"wipe on {self.canister_id} did not finish in {_MAX_STEPS} steps")
