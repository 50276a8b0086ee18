"""What the replication methods for standbys and splits cost, on localnet.

localnet runs in this process (``LocalNet``), so the instructions every
execution used can be read from its replica's counters around one call at a
time; calls go through the real agent over HTTP, so the throughput figures
include the client's Candid work (and the replica shares this process's
CPU: they are a lower bound). Instructions are wasmtime fuel (one unit per
Wasm operator; see ``sha256_bench`` for how that compares with the IC).
Measured in one run, each on fresh demo-app canisters:

1. **apply**: a primary receives ``--changes`` small changes (puts of a
   16-byte key and a 32-byte value, through ``icrp_import_records``); a
   standby follows on the relay path (``icrp_changes`` -> ``icrp_apply``,
   batches of up to ~2 MB) and on the direct path (``icrp_push_changes``):
   changes per second (target >= 5,000 on the relay path) and instructions
   per change of ``icrp_apply``; then the same for the demo's own write mix
   (``generate_keys(--mix-keys)``: posts, user records and pictures; its
   journal is made large enough to hold them all).
2. **range digest** and **key distribution**: instructions per MiB of key
   and value bytes, over the whole mix state.
3. **delete_range**: instructions per record deleted (10,000 per call).
4. **memory per key**: a demo app with ``--keys`` keys of skewed sizes
   (``generate_keys``): Wasm memory, heap and key/value bytes per key.

``python -m benchmarks icrp_bench --changes 20000 --mix-keys 20000 --keys 100000``
runs it smaller.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import (
    as_rec,
    as_variant,
    decode_single,
    encode_value,
    encode_values,
)
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import KeyRange, Record
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet import LocalNet

DEMO_WASM = (
    Path(__file__).resolve().parents[1] / "canister_iface" / "wasm" / "demo_app.wasm"
).read_bytes()
MiB = 1024 * 1024
TARGET_CHANGES_PER_SECOND = 5_000
BATCH_BYTES = 2_000_000
T = TypeVar("T")
_SETTINGS = Types.Record(
    {
        "chunk_size": Types.Nat64,
        "journal_max_entries": Types.Nat,
        "journal_max_bytes": Types.Nat,
        "step_instructions": Types.Nat64,
        "step_bytes": Types.Nat64,
        "query_instructions": Types.Opt(Types.Nat64),
    }
)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks icrp_bench")
    parser.add_argument(
        "--changes", type=int, default=100_000, help="small changes (default 100,000)"
    )
    parser.add_argument(
        "--mix-keys",
        type=int,
        default=100_000,
        help="keys of the demo's write mix (default 100,000)",
    )
    parser.add_argument(
        "--keys", type=int, default=1_000_000, help="keys for memory per key (default 1,000,000)"
    )
    return parser.parse_args(list(argv))


@dataclass
class Bench:
    net: LocalNet
    me: Identity
    agent: Agent

    async def demo(self) -> Principal:
        mgmt = ManagementClient(self.agent)
        canister = await mgmt.provisional_create_canister_with_cycles(
            amount=10**16, settings=CanisterSettings(controllers=(self.me.principal,))
        )
        await mgmt.install_code(canister, DEMO_WASM, arg=b"DIDL\x00\x00")
        return canister

    async def counted(self, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """The result of ``call`` and the instructions every execution it caused used."""
        before = self.net.replica.counters.instructions
        result = await call()
        return result, self.net.replica.counters.instructions - before

    async def generate_keys(self, canister: Principal, keys: int) -> None:
        arg = encode_values([(Types.Nat, keys), (Types.Nat, 1)])
        while True:
            value = decode_single(await self.agent.update(canister, "generate_keys", arg), "gen")
            tag, payload = as_variant(value, ("ok", "err"), "generate_keys")
            if tag != "ok":
                raise RuntimeError(f"generate_keys: {payload}")
            if as_rec(payload, "generate_keys").boolean("finished"):
                return

    async def journal_for(self, canister: Principal, changes: int) -> None:
        """Make the journal hold ``changes`` changes (of up to 1 GiB in all)."""
        settings = {
            "chunk_size": MiB,
            "journal_max_entries": changes,
            "journal_max_bytes": 1 << 30,
            "step_instructions": 20_000_000_000,
            "step_bytes": 64 * MiB,
            "query_instructions": [],
        }
        arg = encode_value(_SETTINGS, settings)
        value = decode_single(
            await self.agent.update(canister, "set_replication_settings", arg), "s"
        )
        tag, payload = as_variant(value, ("ok", "err"), "set_replication_settings")
        if tag != "ok":
            raise RuntimeError(f"set_replication_settings: {payload}")

    async def stats(self, canister: Principal) -> dict[str, int]:
        rec = as_rec(decode_single(await self.agent.query(canister, "stats"), "stats"), "stats")
        names = ("records", "state_bytes", "heap_bytes", "max_live_bytes", "memory_bytes")
        return {name: rec.nat(name) for name in names}


@dataclass
class SyncFigures:
    changes: int
    bytes: int
    seconds: float
    instructions: int

    def line(self, what: str) -> str:
        return (
            f"{what}: {self.changes:,} changes ({self.bytes / max(1, self.changes):.0f} B each) in "
            f"{self.seconds:.2f} s = {self.changes / self.seconds:,.0f} changes/s; "
            f"{self.instructions / max(1, self.changes):,.0f} instructions/change"
        )


async def relay(bench: Bench, source: IcrpClient, target: IcrpClient, since: int) -> SyncFigures:
    """Follow the source on the relay path; instructions of icrp_apply only."""
    figures = SyncFigures(0, 0, 0.0, 0)
    started = time.monotonic()
    while True:
        batch = await source.changes(since, BATCH_BYTES)
        since, used = await bench.counted(partial(target.apply, batch))
        figures.instructions += used
        figures.changes += len(batch.changes)
        figures.bytes += sum(c.size for c in batch.changes)
        if since == batch.head_seq:
            figures.seconds = time.monotonic() - started
            return figures


async def push(bench: Bench, source: IcrpClient, target: Principal, since: int) -> SyncFigures:
    """Follow the source on the direct path; instructions of both canisters."""
    figures = SyncFigures(0, 0, 0.0, 0)
    started = time.monotonic()
    while True:
        ack, used = await bench.counted(partial(source.push_changes, target, since, BATCH_BYTES))
        figures.instructions += used
        figures.changes += ack.changes
        figures.bytes += ack.bytes
        since = ack.applied_seq
        if since == ack.head_seq:
            figures.seconds = time.monotonic() - started
            return figures


async def small_changes(bench: Bench, count: int) -> IcrpClient:
    """A primary whose journal holds ``count`` small puts."""
    primary = IcrpClient(bench.agent, await bench.demo())
    for first in range(0, count, 20_000):
        records = [
            Record(b"small-key-%06d" % i, b"%032d" % i)
            for i in range(first, min(count, first + 20_000))
        ]
        await primary.import_records(records)
    return primary


async def follow_both_ways(bench: Bench, primary: IcrpClient, what: str) -> SyncFigures:
    relay_target = IcrpClient(bench.agent, await bench.demo())
    push_target = await bench.demo()
    await primary.set_peers([push_target])
    await IcrpClient(bench.agent, push_target).set_peers([primary.canister_id])
    relayed = await relay(bench, primary, relay_target, 0)
    print(relayed.line(f"{what}, relay path (icrp_changes -> icrp_apply)"), flush=True)
    pushed = await push(bench, primary, push_target, 0)
    print(pushed.line(f"{what}, direct path (icrp_push_changes, both canisters)"), flush=True)
    return relayed


async def range_costs(bench: Bench, icrp: IcrpClient) -> None:
    whole = KeyRange()
    digest, used = await bench.counted(lambda: icrp.whole_range_digest(whole))
    per_mib = used * MiB / digest.bytes
    print(
        f"icrp_range_digest: {digest.records:,} records, {digest.bytes / MiB:.1f} MiB: "
        f"{per_mib / 1e6:,.0f} M instructions/MiB ({used / digest.records:,.0f}/record)"
    )

    async def distribution() -> int:
        cursor, pages = None, 0
        while True:
            page = await icrp.key_distribution(whole, cursor, MiB)
            pages += 1
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor

    pages, used = await bench.counted(distribution)
    print(
        f"icrp_key_distribution (1 MiB buckets): {used * MiB / digest.bytes / 1e6:,.0f} M "
        f"instructions/MiB, {pages} page(s)"
    )

    async def delete() -> tuple[int, int]:
        cursor, deleted, calls = None, 0, 0
        while True:
            progress = await icrp.delete_range(whole, cursor, 10_000)
            deleted += progress.deleted
            calls += 1
            if progress.next_cursor is None:
                return deleted, calls
            cursor = progress.next_cursor

    (deleted, calls), used = await bench.counted(delete)
    print(
        f"icrp_delete_range (10,000 records per call): {deleted:,} records in {calls} calls: "
        f"{used / deleted:,.0f} instructions/record"
    )


async def memory_per_key(bench: Bench, keys: int) -> None:
    demo = await bench.demo()
    started = time.monotonic()
    await bench.generate_keys(demo, keys)
    seconds = time.monotonic() - started
    # A few small messages let the incremental garbage collector finish a cycle.
    for _ in range(20):
        await bench.agent.update(demo, "create_user", encode_values([(Types.Text, "gc")] * 2))
    s = await bench.stats(demo)
    n = s["records"]
    print(
        f"{n:,} keys (generate_keys, {seconds:.0f} s): per key {s['state_bytes'] / n:,.0f} B of "
        f"keys and values, {s['max_live_bytes'] / n:,.0f} B largest live heap, "
        f"{s['heap_bytes'] / n:,.0f} B heap now, {s['memory_bytes'] / n:,.0f} B Wasm memory "
        f"({s['memory_bytes'] / 2**30:.2f} GiB in all)"
    )


async def run(argv: Sequence[str] = ()) -> bool:
    args = parse(argv)
    print(
        "configuration: localnet in this process, canister_iface/wasm/demo_app.wasm, "
        f"{args.changes:,} small changes, a write mix of {args.mix_keys:,} keys, "
        f"{args.keys:,} keys for memory; batches of up to {BATCH_BYTES:,} bytes; "
        "instructions = wasmtime fuel"
    )
    me = Identity.generate_ed25519()
    async with LocalNet() as net, Agent(net.url, me, root_key=net.root_key) as agent:
        bench = Bench(net, me, agent)
        primary = await small_changes(bench, args.changes)
        small = await follow_both_ways(bench, primary, "small changes")
        mix = IcrpClient(agent, await bench.demo())
        await bench.journal_for(mix.canister_id, 2 * args.mix_keys)
        await bench.generate_keys(mix.canister_id, args.mix_keys)
        await follow_both_ways(bench, mix, "write mix")
        await range_costs(bench, mix)
        await memory_per_key(bench, args.keys)
    rate = small.changes / small.seconds
    ok = rate >= TARGET_CHANGES_PER_SECOND
    print(
        f"small changes, relay path: {rate:,.0f} changes/s "
        f"(target >= {TARGET_CHANGES_PER_SECOND:,}): {'met' if ok else 'MISSED'}"
    )
    return ok
