"""Hot standby lag and throughput on localnet with mainnet-like latency.

localnet runs in a child process with the latency model of ``backup_bench``
(150 ms per query, 1.5 s per update call).  A demo app is the primary; an
empty demo app becomes its standby through the ``standby`` kind with the
shipped defaults (idle poll ceiling 1 s, batches of up to 1.8 MB; the
consistency check is off so that it does not pause the tail).  Measured in
one run:

1. **lag under load**: a load generator writes W small changes per second
   (``icrp_import_records``: a call every 0.25 s with W/4 records of a
   16-byte key and a 24-byte value) for ``--seconds`` each, W = 10, 100,
   1000 (and 3000 without ``--quick``).  Per change, the delay from the
   change on the primary to the end of the ``icrp_apply`` that brought it
   to the standby (``replicator_standby_apply_delay_seconds``; quantiles
   interpolated inside its buckets, which are 0.5 s wide around the
   target): p50 and p99, and whether the lag stayed bounded (the standby
   was at the primary's head within the target lag + a poll ceiling after
   the load stopped).
   Target: p99 <= 2 x the call latency + the idle poll ceiling = 4 s at
   W = 100;
2. **backed up**: with the standby job stopped, ``--backlog`` changes are
   written; the job is started again and applies them: changes per second
   from its start to the standby at the primary's head (target >= 5,000).

3. **failover drill** (reported, no target): under W = 100, ``promote`` of
   the standby (fence, drain, compare images at the final sequence,
   switch): its duration is the RTO share the orchestrator adds, its RPO is
   0 changes; then a forced promotion in the other direction after the
   standby stopped following for 2 s while writes went on: the changes it
   states as lost and their time window.

``python -m benchmarks standby_bench --quick`` runs it in about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.figures import Figure
from canister_iface.agent import Agent
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import Record
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from localnet.process import LocalNetProcess
from replicator.checkpoints import SqliteStore
from replicator.cli.demo.app import DemoApp
from replicator.engine import Engine
from replicator.flows.standby import kind as standby
from replicator.flows.standby.metrics import StandbyMetrics
from replicator.flows.standby.promote import Promotion, promote
from replicator.flows.standby.tail import DEFAULT_POLL_MAX
from replicator.job import CanisterRef, JobOutcome
from replicator.limits import LimitSettings
from replicator.metrics import Metrics
from replicator.progress import RecordingProgress
from replicator.settings import EngineSettings

LATENCY = {"query": 0.15, "call": 1.5}
NAME = "bench"
TICK = 0.25  # seconds between the load generator's calls
TARGET_P99 = 2 * LATENCY["call"] + DEFAULT_POLL_MAX
TARGET_BACKED_UP = 5_000.0
QUICK_ARGV = ["--quick"]  # `python -m benchmarks --quick standby_bench`


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks standby_bench")
    parser.add_argument("--quick", action="store_true", help="shorter phases (about a minute)")
    parser.add_argument("--seconds", type=float, help="load per rate (default 20; quick 6)")
    parser.add_argument("--backlog", type=int, help="changes behind (default 80000; quick 60000)")
    return parser.parse_args(list(argv))


@dataclass
class Lag:
    rate: int
    written: int
    applied: int
    p50: float
    p99: float
    caught_up: float  # seconds after the load stopped

    @property
    def kept_up(self) -> bool:
        """The lag stayed bounded: it caught up within the target lag (plus a poll) after."""
        return self.caught_up <= TARGET_P99 + DEFAULT_POLL_MAX


@dataclass
class Bench:
    net: LocalNetProcess
    agent: Agent
    source: Principal
    target: Principal
    engine: Engine
    metrics: Metrics

    async def latency(self, on: bool) -> None:
        body = {"latency_s": LATENCY if on else {}}
        async with httpx.AsyncClient(base_url=self.net.url, timeout=30) as http:
            (await http.put("/_/faults", json=body)).raise_for_status()

    def follow(self) -> asyncio.Task[JobOutcome]:
        request = standby.request(
            CanisterRef(self.source.to_text(), "local"),
            CanisterRef(self.target.to_text(), "local"),
            check_interval=0,
            name=NAME,
        )
        return asyncio.ensure_future(self.engine.submit(request))

    async def heads(self) -> tuple[int, int]:
        async def head(c: Principal) -> int:
            journal = (await IcrpClient(self.agent, c).info()).journal
            return 0 if journal is None else journal.head_seq

        a, b = await asyncio.gather(head(self.source), head(self.target))
        return a, b

    async def caught_up(self, within: float) -> float:
        """Seconds until the standby is at the primary's head (inf: not ``within`` seconds)."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            a, b = await self.heads()
            if a == b:
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        return math.inf

    def delays(self) -> list[tuple[float, float]]:
        """The apply delay histogram now: (upper bound, cumulative count)."""
        out = []
        for family in self.metrics.registry.collect():
            if family.name != "replicator_standby_apply_delay_seconds":
                continue
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels.get("name") == NAME:
                    out.append((float(s.labels["le"]), s.value))
        return sorted(out)

    def applied(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "replicator_standby_applied_changes_total", {"name": NAME}
        )
        return value or 0.0

    async def write(self, count: int, tag: str) -> None:
        client = IcrpClient(self.agent, self.source)
        records = [Record(f"{tag}/{i:011d}".encode()[:16], b"v" * 24) for i in range(count)]
        await client.import_records(records)


def quantile(
    q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> float:
    """histogram_quantile of the observations between two readings (linear in a bucket)."""
    earlier = dict(before)  # empty before the tail's first run
    buckets = [(le, a - earlier.get(le, 0.0)) for le, a in after]
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (le - lower) * share
        lower, below = le, count
    return lower


async def lag_at(bench: Bench, rate: int, seconds: float) -> Lag:
    per_call = max(1, round(rate * TICK))
    before, applied_before = bench.delays(), bench.applied()
    calls: list[asyncio.Task[None]] = []
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        calls.append(asyncio.ensure_future(bench.write(per_call, f"w{rate}t{tick}")))
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * TICK - time.monotonic()))
    await asyncio.gather(*calls)
    written = per_call * len(calls)
    applied_during = bench.applied() - applied_before
    caught = await bench.caught_up(30)
    after = bench.delays()
    lag = Lag(
        rate=rate,
        written=written,
        applied=round(applied_during),
        p50=quantile(0.5, before, after),
        p99=quantile(0.99, before, after),
        caught_up=caught,
    )
    print(
        f"W = {rate:>5}/s for {seconds:.0f} s: {written} changes; lag p50 {lag.p50:.2f} s, "
        f"p99 {lag.p99:.2f} s; applied during the load {lag.applied} "
        f"({lag.applied / max(1, written):.0%}); caught up {caught:.1f} s after; "
        f"kept up: {'yes' if lag.kept_up else 'NO'}",
        flush=True,
    )
    return lag


async def backed_up(bench: Bench, job: asyncio.Task[JobOutcome], changes: int) -> float:
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    per_call = 5_000
    await asyncio.gather(
        *(bench.write(min(per_call, changes - i), f"b{i}") for i in range(0, changes, per_call))
    )
    src, dst = await bench.heads()
    job = bench.follow()
    took = await bench.caught_up(600)
    rate = (src - dst) / took
    print(
        f"backed up: {src - dst} changes behind, applied in {took:.1f} s from the job's start "
        f"= {rate:,.0f} changes/s (target >= {TARGET_BACKED_UP:,.0f})",
        flush=True,
    )
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    return rate


async def load(bench: Bench, rate: int, stop: asyncio.Event) -> int:
    """Write ``rate`` changes per second until ``stop``; returns how many."""
    per_call, tick, calls = max(1, round(rate * TICK)), 0, []
    started = time.monotonic()
    while not stop.is_set():
        calls.append(asyncio.ensure_future(bench.write(per_call, f"d{rate}t{tick}")))
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * TICK - time.monotonic()))
    await asyncio.gather(*calls, return_exceptions=True)  # the fenced primary refuses the last
    return per_call * tick


async def drill(bench: Bench) -> tuple[Promotion, Promotion]:
    """Promote under load, then a forced promotion back; returns both."""
    job = bench.follow()
    await bench.caught_up(60)
    stop = asyncio.Event()
    writer = asyncio.ensure_future(load(bench, 100, stop))
    await asyncio.sleep(3)
    calls = bench.engine.calls(lambda _text: None)
    normal = await promote(calls, CanisterRef(bench.target.to_text(), "local"))
    stop.set()
    await writer
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    print(
        f"promote under W = 100/s: {normal.seconds:.2f} s from the command to the switch "
        f"(fence, drain {normal.drained} changes, compare images at sequence "
        f"{normal.final_seq}, switch); RPO 0 changes",
        flush=True,
    )
    # The other way: the old primary follows the new one, stops following, writes go on.
    bench.source, bench.target = bench.target, bench.source
    job = bench.follow()
    await bench.write(10, "reverse")  # heads differ until the old primary is seeded
    await bench.caught_up(120)
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    stop = asyncio.Event()
    writer = asyncio.ensure_future(load(bench, 100, stop))
    await asyncio.sleep(2)
    forced = await promote(calls, CanisterRef(bench.target.to_text(), "local"), force=True)
    stop.set()
    await writer
    rpo = forced.to_json()["rpo"]
    print(
        f"forced promote (primary answering, standby 2 s behind under W = 100/s): "
        f"{forced.seconds:.2f} s; RPO stated: {forced.lost_changes} changes lost, window "
        f"{rpo['window_seconds']:.2f} s ({rpo['lost_from']} .. {rpo['lost_to']})",
        flush=True,
    )
    return normal, forced


async def run(argv: Sequence[str] = ()) -> list[Figure]:
    args = parse(argv)
    seconds = args.seconds or (6.0 if args.quick else 20.0)
    backlog = args.backlog or (60_000 if args.quick else 80_000)
    rates = (10, 100, 1000) if args.quick else (10, 100, 1000, 3000)
    print(
        f"configuration: latency query {LATENCY['query']} s, call {LATENCY['call']} s; shipped "
        f"defaults (poll ceiling {DEFAULT_POLL_MAX} s); rates {rates} changes/s for "
        f"{seconds:.0f} s each; backlog {backlog} changes",
        flush=True,
    )
    identity = Identity.generate_ed25519()
    with tempfile.TemporaryDirectory(prefix="standby-bench-") as tmp:
        async with LocalNetProcess() as net:
            agent = Agent(net.url, identity, network="local", root_key=net.root_key)
            async with agent:
                source = (await DemoApp.deploy(agent, identity.principal)).canister_id
                await DemoApp(agent, source).generate(1, 1)
                target = (await DemoApp.deploy(agent, identity.principal)).canister_id
                store = SqliteStore(Path(tmp) / "bench.sqlite3")
                metrics = Metrics()
                metrics.extension(StandbyMetrics)
                limits = LimitSettings(calls_per_second=None, bytes_per_second=None, in_flight=64)
                settings = EngineSettings(limits=limits)
                engine = Engine(
                    settings, store, metrics, RecordingProgress(), agents={"local": agent}
                )
                try:
                    async with engine:
                        bench = Bench(net, agent, source, target, engine, metrics)
                        await bench.latency(True)
                        job = bench.follow()
                        seeded = await bench.caught_up(300)
                        print(f"seeded and following in {seeded:.1f} s", flush=True)
                        lags = [await lag_at(bench, w, seconds) for w in rates]
                        throughput = await backed_up(bench, job, backlog)
                        normal, forced = await drill(bench)
                finally:
                    await store.close()
    at_100 = next(lag for lag in lags if lag.rate == 100)
    bounded = [lag.rate for lag in lags if lag.kept_up]
    highest = max(bounded) if bounded else 0
    ok_lag = at_100.p99 <= TARGET_P99
    ok_tp = throughput >= TARGET_BACKED_UP
    print(
        f"summary: p99 lag at W = 100: {at_100.p99:.2f} s (<= {TARGET_P99:.1f} s: "
        f"{'yes' if ok_lag else 'NO'}); highest W kept up: {highest}/s; backed up "
        f"{throughput:,.0f} changes/s (>= {TARGET_BACKED_UP:,.0f}: {'yes' if ok_tp else 'NO'})",
        flush=True,
    )
    model = f"latency query {LATENCY['query']} s, call {LATENCY['call']} s; shipped defaults"
    figures = [
        Figure(
            f"standby lag p99 at W = {lag.rate}/s",
            f"{model}; {seconds:.0f} s of load",
            lag.p99,
            "s",
            target=TARGET_P99 if lag.rate == 100 else None,
            higher_is_better=False,
        )
        for lag in lags
    ]
    figures += [
        Figure("standby: highest W with a bounded lag", model, highest, "changes/s"),
        Figure(
            "standby: applied when backed up",
            f"{model}; {backlog:,} changes behind",
            throughput,
            "changes/s",
            target=TARGET_BACKED_UP,
        ),
        Figure("promote under W = 100/s (RTO share)", model, normal.seconds, "s"),
        Figure(
            "promote --force: changes stated lost",
            f"{model}; standby 2 s behind at W = 100/s",
            forced.lost_changes or 0,
            "changes",
        ),
    ]
    return figures
