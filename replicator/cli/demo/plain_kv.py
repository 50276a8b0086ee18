"""A typed client for ``plain_kv`` (``canister_iface/wasm/plain_kv.wasm``), a canister without ICRP.

``replicator demo --snapshot`` deploys it, lets it generate its own data (the
bulk as 4 KiB pages of stable memory, some as 4 KiB entries of a map on the
heap), rewrites a share of both, and compares the answers of a restored copy
with the source's: ``stats()`` (counts and a fingerprint of the whole state),
``get`` of entries and ``load`` of stable-memory pages.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from icp_candid import Types

from canister_iface.caller import Caller
from canister_iface.candid_value import (
    CandidType,
    Rec,
    as_blob,
    as_opt,
    decode_single,
    encode_values,
)
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from replicator.cli.demo.app import DEMO_CYCLES, WASM_DIR

PLAIN_KV_WASM = WASM_DIR / "plain_kv.wasm"
PAGE = 4096  # a generated stable page and a generated entry
# Pages per `generate` and keys per `generate_entries`/`scatter` call: 16 MiB of
# work, well inside one message's instruction limit and its 2 MiB argument.
_STEP = 4096


@dataclass(frozen=True)
class PlainStats:
    """What ``stats()`` reports; equal state ⇒ equal fingerprint."""

    entries: int
    heap_bytes: int
    stable_bytes: int
    writes: int
    fingerprint: int


class PlainKv:
    """One deployed ``plain_kv``, called through ``agent`` (a controller)."""

    def __init__(self, agent: Caller, canister_id: Principal) -> None:
        self.agent = agent
        self.canister_id = canister_id

    @classmethod
    async def deploy(cls, agent: Caller, controller: Principal) -> PlainKv:
        """Create a canister on a local network and install ``plain_kv`` in it."""
        mgmt = ManagementClient(agent)
        canister = await mgmt.provisional_create_canister_with_cycles(
            amount=DEMO_CYCLES, settings=CanisterSettings(controllers=(controller,))
        )
        await mgmt.install_code(canister, PLAIN_KV_WASM.read_bytes())
        return cls(agent, canister)

    async def generate_pages(self, first: int, count: int, seed: int) -> None:
        """Stable pages ``first`` … ``first + count - 1``, generated in the canister."""
        for start in range(first, first + count, _STEP):
            n = min(_STEP, first + count - start)
            arg = [(Types.Nat64, start * PAGE), (Types.Nat64, n * PAGE), (Types.Nat64, seed)]
            await self._update("generate", arg)

    async def generate_entries(self, keys: list[int], seed: int) -> None:
        """Entries ``keys`` set to generated 4 KiB values."""
        for start in range(0, len(keys), _STEP):
            batch = keys[start : start + _STEP]
            arg = [(Types.Vec(Types.Nat), batch), (Types.Nat, PAGE), (Types.Nat64, seed)]
            await self._update("generate_entries", arg)

    async def scatter(self, pages: list[int], seed: int) -> None:
        """Rewrite these stable pages (by number) with newly generated ones."""
        for start in range(0, len(pages), _STEP):
            arg = [(Types.Vec(Types.Nat64), pages[start : start + _STEP]), (Types.Nat64, seed)]
            await self._update("scatter", arg)

    async def stats(self) -> PlainStats:
        reply = await self.agent.query(self.canister_id.raw, "stats", b"DIDL\x00\x00")
        rec = Rec(decode_single(reply, "stats"), "stats")
        return PlainStats(
            entries=rec.nat("entries"),
            heap_bytes=rec.nat("heap_bytes"),
            stable_bytes=rec.nat("stable_bytes"),
            writes=rec.nat("writes"),
            fingerprint=rec.nat("fingerprint"),
        )

    async def get(self, key: int) -> bytes | None:
        arg = encode_values([(Types.Nat, key)])
        reply = await self.agent.query(self.canister_id.raw, "get", arg)
        value = as_opt(decode_single(reply, "get"), "get")
        return None if value is None else as_blob(value, "get")

    async def load_page(self, page: int) -> bytes:
        arg = encode_values([(Types.Nat64, page * PAGE), (Types.Nat, PAGE)])
        value = decode_single(await self.agent.query(self.canister_id.raw, "load", arg), "load")
        return as_blob(value, "load")

    async def _update(self, method: str, arg: Sequence[tuple[CandidType, object]]) -> None:
        await self.agent.update(self.canister_id.raw, method, encode_values(arg))


def sample(rng: random.Random, population: int, share: float) -> list[int]:
    """``share`` of ``range(population)`` (at least one), sorted."""
    return sorted(rng.sample(range(population), max(1, round(population * share))))
