"""The plain canister of the snapshot tests (``plain_kv``: no ICRP) and the snapshot kinds' runs.

Imported by ``test_snapshot_*.py`` (pytest puts this directory on ``sys.path``);
the world itself is ``engine_support``'s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_support import ROOT, World
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import Rec, decode_single, encode_values
from canister_iface.principal import Principal
from replicator.engine import Engine
from replicator.flows.snapshot import jobs
from replicator.job import CanisterRef, JobOutcome

PLAIN_WASM = (ROOT / "canister_iface" / "wasm" / "plain_kv.wasm").read_bytes()
ENTRIES = Types.Vec(Types.Tuple(Types.Nat, Types.Vec(Types.Nat8)))
BLOB = Types.Vec(Types.Nat8)
NAT64 = Types.Nat64


@dataclass(frozen=True)
class PlainState:
    """What ``stats`` answers: equal state ⇒ equal fingerprint."""

    entries: int
    heap_bytes: int
    stable_bytes: int
    writes: int
    fingerprint: int


class Plain:
    """Calls to one ``plain_kv`` canister."""

    def __init__(self, agent: Agent, canister: Principal) -> None:
        self.agent = agent
        self.canister = canister

    async def put(self, entries: list[tuple[int, bytes]]) -> None:
        await self.agent.update(self.canister, "put", encode_values([(ENTRIES, entries)]))

    async def store(self, offset: int, data: bytes) -> None:
        arg = encode_values([(NAT64, offset), (BLOB, data)])
        await self.agent.update(self.canister, "store", arg)

    async def arm(self, seconds: int) -> None:
        await self.agent.update(self.canister, "arm", encode_values([(Types.Nat, seconds)]))

    async def get(self, key: int) -> bytes | None:
        reply = await self.agent.query(self.canister, "get", encode_values([(Types.Nat, key)]))
        value = decode_single(reply, "get")
        return None if not value else bytes(value[0])  # type: ignore[index]

    async def load(self, offset: int, size: int) -> bytes:
        arg = encode_values([(NAT64, offset), (Types.Nat, size)])
        return bytes(decode_single(await self.agent.query(self.canister, "load", arg), "load"))  # type: ignore[arg-type]

    async def state(self) -> PlainState:
        rec = Rec(decode_single(await self.agent.query(self.canister, "stats"), "stats"), "stats")
        return PlainState(
            entries=rec.nat("entries"),
            heap_bytes=rec.nat("heap_bytes"),
            stable_bytes=rec.nat("stable_bytes"),
            writes=rec.nat("writes"),
            fingerprint=rec.nat("fingerprint"),
        )

    async def fill(self, *, heap: int, stable: int, seed: int = 1, record: int = 1024) -> None:
        """``heap`` bytes of entries and ``stable`` bytes of stable memory, random."""
        rng = random.Random(seed)
        per_call = 1_500_000 // record
        keys = heap // record
        for start in range(0, keys, per_call):
            batch = [(k, rng.randbytes(record)) for k in range(start, min(keys, start + per_call))]
            await self.put(batch)
        step = 1_500_000
        for offset in range(0, stable, step):
            await self.store(offset, rng.randbytes(min(step, stable - offset)))


async def plain(w: World, **fill: Any) -> Plain:
    """A new ``plain_kv`` canister controlled by the world's identity, filled as asked."""
    canister = await w.create(PLAIN_WASM)
    p = Plain(w.agent, canister)
    if fill:
        await p.fill(**fill)
    return p


def cref(canister: Principal) -> CanisterRef:
    return CanisterRef(canister.to_text(), "local")


async def backup(engine: Engine, canister: Principal, repo: Path, **options: Any) -> JobOutcome:
    return await engine.submit(jobs.backup_request(cref(canister), repo, **options))


async def restore(engine: Engine, repo: Path, canister: Principal, **options: Any) -> JobOutcome:
    into = options.pop("into", None)
    request = jobs.restore_request(
        repo, cref(canister), into=None if into is None else cref(into), **options
    )
    return await engine.submit(request)


async def copy(engine: Engine, source: Principal, target: Principal, **options: Any) -> JobOutcome:
    return await engine.submit(jobs.copy_request(cref(source), cref(target), **options))
