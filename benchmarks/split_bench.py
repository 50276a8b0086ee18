"""Splitting a canister into 4 shards on localnet with mainnet-like latency, against the naive way.

localnet runs in a child process (its CPU is not ours) with the latency
model of ``backup_bench`` (150 ms per query, 1.5 s per update call, set
through ``PUT /_/faults``).  The demo app holds ``--mib`` MiB of users,
posts and pictures (default 256; ``--quick``: 8).  Measured in one run:

1. **naive**: what one would do by hand — fence the whole source
   (``icrp_set_mode(read_only)``: every write refused), copy each of the
   three moved ranges serially (``icrp_export_range`` page, then
   ``icrp_import_records`` page, one call at a time) into three fresh
   canisters, then take writes again.  Writes are frozen for the whole
   copy.  Serial means linear, so it copies ``--naive-mib`` MiB (default
   16; 0: everything) and is extrapolated to the moved bytes;
2. **ours**: ``replicator split --shards 4`` with the shipped defaults
   (engine limits off, 32 calls in flight): plan, create 3 shards, copy the
   ranges in parallel while the source takes writes, catch up, cut over
   range by range, verify, route, free.  Reported: time, bytes/s, calls,
   estimated cycles, and per range the time the source refused writes to it
   (fence in effect → shard takes writes).

Targets (exit 1 when missed): each range refuses writes for less than 2 ×
the update-call latency (3 s).  Ratios reported: naive write-freeze time /
our longest per-range freeze, and naive total time / ours.

``--keys N`` (e.g. ``--keys 1000000``) is the correctness run at scale
instead (too slow for the test suite, which splits ~6,000 keys under
writes): the demo app gets about N records of skewed sizes
(``generate_keys`` in 8 rounds, 2 users of ours created after each, so
that they lie all over the key space), every record is read (a hash per
key kept), and it is split into 4 while 16 writers post as those users
through the app's own ``add_post`` (following ``OutOfRange`` to the owner
it names, retrying ``NotWritable``), with the same latency model and
defaults.  Afterwards (latency off) every canister is read in full: every
key is held once, by the canister the routing table names, inside its
range; every record not written during the split is unchanged; every
write the app acknowledged is there exactly once (no post id twice, no
post that was not acknowledged).  Exit 1 on any loss, duplicate or changed
record, or a missed freeze target (under writes: 3 × the update latency,
since the drain behind the fence then applies the last changes, an update
call, before the shard's own update to primary).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from canister_iface.agent import Agent
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import KeyRange
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet.process import LocalNetProcess
from replicator.checkpoints import SqliteStore
from replicator.cli.demo.app import WASM_DIR, DemoApp
from replicator.engine import Engine
from replicator.flows.split import kind as split
from replicator.flows.split.ranges import Bucket, balanced_boundaries, spans
from replicator.job import CanisterRef
from replicator.limits import LimitSettings
from replicator.metrics import Metrics
from replicator.progress import RecordingProgress
from replicator.settings import EngineSettings

MiB = 1024 * 1024
LATENCY = {"query": 0.15, "call": 1.5}
IN_FLIGHT = 32
SHARDS = 4
PAGE = 1_000_000  # the naive copy's page (fits an ingress message)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks split_bench")
    parser.add_argument("--mib", type=int, default=256, help="source size in MiB (default 256)")
    parser.add_argument(
        "--naive-mib",
        type=int,
        default=16,
        help="MiB the serial naive copy moves before extrapolating (0: all; default 16)",
    )
    parser.add_argument("--quick", action="store_true", help="8 MiB source, 4 MiB naive copy")
    parser.add_argument(
        "--keys",
        type=int,
        default=0,
        help="correctness run at scale: a source of about KEYS records split under writes "
        "(no naive copy; e.g. 1000000)",
    )
    args = parser.parse_args(list(argv))
    if args.quick:
        args.mib, args.naive_mib = 8, 4
    return args


async def _latency(net: LocalNetProcess, on: bool) -> None:
    async with httpx.AsyncClient(base_url=net.url, timeout=30) as http:
        reply = await http.put("/_/faults", json={"latency_s": LATENCY if on else {}})
        reply.raise_for_status()


async def _boundaries(icrp: IcrpClient) -> tuple[bytes, ...]:
    buckets: list[Bucket] = []
    cursor: bytes | None = None
    while True:
        page = await icrp.key_distribution(KeyRange(), cursor, split.BUCKET_BYTES)
        buckets.extend(Bucket(b.first_key, b.records, b.bytes) for b in page.buckets)
        if page.next_cursor is None:
            return balanced_boundaries(buckets, SHARDS)
        cursor = page.next_cursor


async def _naive(agent: Agent, me: Principal, source: Principal, limit: int) -> tuple[float, int]:
    """Seconds and bytes of the serial copy of (up to ``limit`` bytes of) the moved ranges."""
    mgmt, icrp = ManagementClient(agent), IcrpClient(agent, source)
    wasm = (WASM_DIR / "demo_app.wasm").read_bytes()
    moved = spans(await _boundaries(icrp))[1:]
    started = time.monotonic()
    await icrp.set_mode("read_only")  # every write refused from here
    copied = 0
    for part in moved:
        target = await mgmt.provisional_create_canister_with_cycles(
            amount=100 * 10**12, settings=CanisterSettings(controllers=(me,))
        )
        await mgmt.install_code(target, wasm)
        shard = IcrpClient(agent, target)
        keys = KeyRange(part.lower, part.upper)
        cursor: bytes | None = None
        while copied < limit:
            batch = await icrp.export_range(keys, cursor, PAGE)
            await shard.import_records(batch.records)
            copied += sum(len(r.key) + len(r.value) for r in batch.records)
            if batch.next_cursor is None:
                break
            cursor = batch.next_cursor
        if copied >= limit:
            break
    await icrp.set_mode("primary")
    return time.monotonic() - started, copied


def _settings() -> EngineSettings:
    limits = LimitSettings(
        calls_per_second=None,
        bytes_per_second=None,
        in_flight=2 * IN_FLIGHT,
        in_flight_per_canister=IN_FLIGHT,
    )
    return EngineSettings(limits=limits, concurrency=IN_FLIGHT)


def _total(metrics: Metrics, name: str) -> float:
    return sum(
        s.value for family in metrics.registry.collect() for s in family.samples if s.name == name
    )


async def run(argv: Sequence[str] = ()) -> bool:
    args = parse(argv)
    if args.keys:
        from benchmarks.split_scale import run_keys

        return await run_keys(args.keys)
    identity = Identity.generate_ed25519()
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        async with LocalNetProcess() as net:
            agent = Agent(net.url, identity, network="local", root_key=net.root_key)
            async with agent:
                started = time.monotonic()
                app = await DemoApp.deploy(agent, identity.principal)
                await app.generate(args.mib, 1)
                source = app.canister_id
                print(
                    f"configuration: demo app of {args.mib} MiB (generated in "
                    f"{time.monotonic() - started:.1f} s) split into {SHARDS} shards; latency "
                    f"model: query {LATENCY['query']} s, update {LATENCY['call']} s; engine "
                    f"limits off, {IN_FLIGHT} calls in flight; naive copy measured on "
                    f"{args.naive_mib or 'all'} MiB and extrapolated",
                    flush=True,
                )
                await _latency(net, True)
                limit = args.naive_mib * MiB if args.naive_mib else 1 << 62
                naive_s, naive_bytes = await _naive(agent, identity.principal, source, limit)
                metrics = Metrics()
                store = SqliteStore(Path(tmp) / "split.sqlite3")
                engine = Engine(
                    _settings(), store, metrics, RecordingProgress(), agents={"local": agent}
                )
                try:
                    async with engine:
                        t0 = time.monotonic()
                        outcome = await engine.submit(
                            split.request(CanisterRef(source.to_text(), "local"), shards=SHARDS)
                        )
                        ours_s = time.monotonic() - t0
                finally:
                    await store.close()
                await _latency(net, False)
    if not outcome.ok:
        print(f"the split failed: {outcome.error}", flush=True)
        return False
    ranges: list[dict[str, Any]] = outcome.details["ranges"]
    moved = sum(r["bytes"] or 0 for r in ranges)
    freezes = [float(r["freeze_seconds"] or 0) for r in ranges]
    naive_total = naive_s * moved / max(1, naive_bytes)
    calls = _total(metrics, "replicator_calls_total")
    cycles = _total(metrics, "replicator_cycles_spent_total")
    limit_s = 2 * LATENCY["call"]
    print(
        f"naive: {naive_bytes / MiB:.1f} MiB in {naive_s:.1f} s serially, writes frozen "
        f"throughout; extrapolated to {moved / MiB:.1f} MiB: {naive_total:.1f} s",
        flush=True,
    )
    print(
        f"ours: {ours_s:.1f} s end to end, {moved / MiB:.1f} MiB moved "
        f"({moved / MiB / ours_s:.2f} MiB/s), {calls:.0f} calls, ~{cycles / 1e12:.2f} T cycles "
        f"(estimated fees, with the initial cycles of the {SHARDS - 1} shards)",
        flush=True,
    )
    print(
        "per-range write freeze: "
        + ", ".join(f"{f:.2f} s" for f in freezes)
        + f" (target < {limit_s:.1f} s = 2 × the update latency)",
        flush=True,
    )
    freeze_ratio = naive_total / max(freezes)
    print(
        f"ratios: write-freeze naive / ours (longest range) {freeze_ratio:.0f}x; total time "
        f"naive / ours {naive_total / ours_s:.2f}x",
        flush=True,
    )
    met = max(freezes) < limit_s
    print(f"summary: freeze target {'met' if met else 'MISSED'}", flush=True)
    return met
