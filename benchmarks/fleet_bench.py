"""Fleet backups: scheduling cost per member at 10,000 members, and a real fleet under a budget.

Two parts, one run:

1. **scheduling** (``--members``, default 10,000; ``--quick`` 2,000): the fleet
   layer's own work per member — the member table in a real SQLite store
   (listing synced, due members selected fairest first, each member's end
   recorded durably), the members-by-state metrics — without the members'
   jobs.  Target: <= 1 ms of CPU per member (``time.process_time``).
2. **end to end** on localnet (a child process: its CPU and memory are not
   ours; ``--max-live-canisters 256 --sleep-after 30`` so 2N+1 canisters fit):
   a platform canister with ``--fleet`` user canisters (default 10,000;
   ``--quick`` 16) holding 64 KiB–1 MiB each (evenly spread), created through
   the platform and filled by :mod:`benchmarks.fleet_setup` (timed apart),
   then backed up by one fleet run (each member into a backup canister
   created on demand, on the direct path) under an explicit byte budget
   (``--budget``, 2 MiB/s; not the shipped default, which may change), calls
   unlimited, fleet concurrency 32.  Measured: time against the budget's
   ideal, all image bytes / budget (target >= 90 %: the budget binds only if
   the per-member overheads fit in that time), orchestrator CPU per member,
   peak RSS of this process (target <= 300 MiB) and of localnet (sampled per
   phase), and fairness: each member's wait from due (the run's start: every
   member is due then) to its job's start, and its throughput while its job
   ran (bytes / its job's time), max / min over the members.

3. **at scale** (``--scale N``, instead of the two above): one fleet run of
   N user canisters of 4 KiB each on a localnet that keeps at most 256
   canisters instantiated (``--max-live-canisters 256 --sleep-after 30``),
   with the call and byte rates unlimited and fleet concurrency 32, so the
   figures are the orchestrator's and localnet's own costs: time, CPU per
   member, this process's peak RSS (target <= 300 MiB) and localnet's.
   Every member must end ok.

Exits non-zero when a target is missed.  localnet's own RSS with 10,000
canisters is measured by ``localnet_scale_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from benchmarks.figures import Figure
from benchmarks.fleet_setup import Setup, deploy
from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from localnet.process import LocalNetProcess
from replicator.checkpoints import SqliteStore
from replicator.engine import Engine
from replicator.fleetstore import MemberResult
from replicator.flows import fleet
from replicator.flows.fleets.metrics import FleetMetrics
from replicator.flows.fleets.timing import next_slot
from replicator.job import CanisterRef, Job, JobOutcome
from replicator.limits import LimitSettings
from replicator.metrics import Metrics
from replicator.settings import EngineSettings

KiB = 1024
MiB = 1024 * KiB
WASM = Path(__file__).parents[1] / "canister_iface" / "wasm"
SCHEDULING_TARGET_MS = 1.0
FLEET = 10_000  # members of the end-to-end run in a full run
# The end-to-end run's byte budget, explicit (not the shipped default): low enough
# that it binds (the ideal time, all bytes / budget, exceeds what creating backup
# canisters and the calls alone take), high enough that 10,000 members fit well
# under an hour.
BUDGET_MIB = 2.0
QUICK_BUDGET_MIB = 0.25
E2E_LIVE = 256  # canisters localnet keeps instantiated; the rest sleep on disk
E2E_SLEEP = 30
E2E_CONCURRENCY = 32
IN_FLIGHT = 64
SETUP_WORKERS = 16
# ``python -m benchmarks --quick fleet_bench``: the runner drops a bare --quick
# from the options, so the quick sizes come through here.
QUICK_ARGV = ["--quick"]
RSS_TARGET_MIB = 300.0
BUDGET_TARGET = 0.90


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fleet_bench")
    parser.add_argument("--quick", action="store_true", help="2,000 scheduled, 16 on localnet")
    parser.add_argument("--members", type=int, help="members of the scheduling part (10,000)")
    parser.add_argument(
        "--fleet", type=int, help=f"user canisters on localnet ({FLEET:,}; 0: none)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="MIB",
        help=f"bytes_per_second of the end-to-end run in MiB ({BUDGET_MIB:g}; quick "
        f"{QUICK_BUDGET_MIB:g})",
    )
    parser.add_argument(
        "--scale", type=int, metavar="N", help="only: one fleet run of N small members, unlimited"
    )
    parser.add_argument(
        "--journal",
        action="store_true",
        help="end to end: localnet with --state-dir (journal and checkpoints; ~10x the "
        "members' data on disk)",
    )
    args = parser.parse_args(list(argv))
    if args.members is None:
        args.members = 2_000 if args.quick else 10_000
    if args.fleet is None:
        args.fleet = 16 if args.quick else FLEET
    if args.budget is None:
        args.budget = QUICK_BUDGET_MIB if args.quick else BUDGET_MIB
    if args.budget <= 0 or args.fleet < 0:
        parser.error("--budget must be > 0 MiB and --fleet >= 0")
    return args


# ------------------------------------------------------------- scheduling


def _ids(n: int) -> list[str]:
    # Made-up canister ids (a high range no real subnet uses in these numbers).
    return [
        Principal(((0x3FA0_0000 + i) << 16 | 0x0101).to_bytes(10, "big")).to_text()
        for i in range(n)
    ]


async def scheduling(n: int, tmp: Path) -> float:
    """CPU milliseconds per member of the fleet layer's own work."""
    ids = _ids(n)
    metrics = FleetMetrics(CollectorRegistry())
    async with SqliteStore(tmp / "scheduling.sqlite3") as store:
        table = store.fleets
        cpu, wall = time.process_time(), time.monotonic()
        now = time.time()
        await table.sync("bench", "local", ids, now)
        due = await table.due("bench", "local", "round-1", now)
        metrics.counted("bench", "backup", await table.members("bench"), 86_400)
        for i, row in enumerate(due):
            at = now + i * 0.001
            ok = i % 10 != 0  # a tenth fail
            await table.finish(
                "bench",
                "local",
                "round-1",
                MemberResult(
                    row.member,
                    ok,
                    at,
                    next_slot(row.member, 86_400, at),
                    None if ok else "bench",
                    None if ok else "failed",
                ),
            )
            metrics.ran("bench", "backup", ok, None if ok else 1)
        metrics.counted("bench", "backup", await table.members("bench"), 86_400)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    per = cpu / n * 1000
    print(
        f"scheduling: {n:,} members synced, selected, each end recorded durably (fsync per "
        f"member), counted twice: {cpu:.2f} s CPU ({per:.3f} ms per member; target <= "
        f"{SCHEDULING_TARGET_MS} ms), {wall:.1f} s wall",
        flush=True,
    )
    return per


# ------------------------------------------------------------- end to end


class Timings:
    """A ``Progress`` that records when each member's job started and finished."""

    def __init__(self) -> None:
        self.start_times: dict[str, float] = {}
        self.outcomes: dict[str, tuple[float, JobOutcome]] = {}

    def started(self, job: Job, resumed: bool) -> None:
        del resumed
        self.start_times.setdefault(job.id, time.monotonic())

    def phase(self, job: Job, phase: str) -> None:
        del job, phase

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        del job, total_bytes, done_bytes

    def advanced(self, job: Job, nbytes: int) -> None:
        del job, nbytes

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        del job, reason, wait_seconds

    def note(self, job: Job, text: str) -> None:
        del job, text

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        self.outcomes[job.id] = (time.monotonic(), outcome)


def _spread(i: int, n: int) -> int:
    """Member ``i``'s data: 64 KiB to 1 MiB, evenly spread over the fleet."""
    return 64 * KiB + (MiB - 64 * KiB) * i // max(1, n - 1)


def _small(i: int, n: int) -> int:
    del i, n
    return 4 * KiB


class Sampler:
    """Peak RSS of this process and of localnet, per phase, sampled twice a second."""

    def __init__(self, localnet_pid: int | None) -> None:
        self._pids = {"orchestrator": os.getpid(), "localnet": localnet_pid}
        self.phase = "setup"
        self.peaks: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            for who, pid in self._pids.items():
                key = (who, self.phase)
                self.peaks[key] = max(self.peaks.get(key, 0.0), _status_mib(pid, "VmRSS"))
            await asyncio.sleep(0.5)

    def peak(self, who: str, phase: str) -> float:
        return self.peaks.get((who, phase), 0.0)


async def end_to_end(n: int, budget: int, tmp: Path, *, journal: bool = False) -> list[Figure]:
    """One fleet run of ``n`` members of 64 KiB-1 MiB under ``budget`` bytes/s (see the module).

    Without ``journal`` localnet keeps no state directory: its durability is not
    what this measures, and at 10,000 members its journal and checkpoints need
    ~10x the members' data on disk (~60 GB); sleeping canisters still spill to
    an (unlinked) file under ``tmp``.
    """
    me = Identity.generate_ed25519()
    flags = ["--max-live-canisters", str(E2E_LIVE), "--sleep-after", str(E2E_SLEEP)]
    flags += ["--spill-dir", str(tmp)]
    state_dir = tmp / "localnet" if journal else None
    async with LocalNetProcess(state_dir=state_dir, extra_args=flags) as net:
        sampler = Sampler(net.pid)
        sampling = asyncio.create_task(sampler.run())
        agent = Agent(net.url, me, network="local", root_key=net.root_key)
        try:
            async with agent:
                setup = await deploy(
                    net, me, agent, n, _spread, workers=SETUP_WORKERS, wasm=_wasm()
                )
                print(
                    f"setup: {n:,} user canisters created through the platform canister and "
                    f"{setup.data_bytes / MiB:,.0f} MiB written in {setup.seconds:.0f} s "
                    f"({n / setup.seconds:.1f} members/s, {SETUP_WORKERS} at once, "
                    f"{setup.retries} retries)",
                    flush=True,
                )
                sampler.phase = "backup"
                run = await _backed_up(net, agent, setup.platform, budget, E2E_CONCURRENCY, tmp)
        finally:
            sampling.cancel()
            await _discard(net)
    return _e2e_figures(n, budget, setup, run, sampler, journal)


@dataclass
class FleetRun:
    outcome: JobOutcome
    timings: Timings
    metrics: Metrics
    began: float  # monotonic: when the fleet run was submitted (every member due then)
    cpu: float
    wall: float
    localnet_cpu: float


async def _backed_up(
    net: LocalNetProcess,
    agent: Agent,
    plat: Principal,
    budget: int | None,
    concurrency: int,
    tmp: Path,
) -> FleetRun:
    """One fleet backup of every member of ``plat``, calls unlimited, ``budget`` bytes/s."""
    limits = LimitSettings(calls_per_second=None, bytes_per_second=budget, in_flight=IN_FLIGHT)
    timings, metrics = Timings(), Metrics()
    store = SqliteStore(tmp / "fleet.sqlite3")
    engine = Engine(EngineSettings(limits=limits), store, metrics, timings, agents={"local": agent})
    request = fleet.request(
        CanisterRef(plat.to_text(), "local"), name="bench", concurrency=concurrency
    )
    try:
        cpu, began, net_cpu = time.process_time(), time.monotonic(), _cpu_s(net.pid)
        outcome = await engine.submit(request)
        cpu, wall = time.process_time() - cpu, time.monotonic() - began
        net_cpu = _cpu_s(net.pid) - net_cpu
    finally:
        await store.close()
    return FleetRun(outcome, timings, metrics, began, cpu, wall, net_cpu)


def _e2e_figures(
    n: int, budget: int, setup: Setup, run: FleetRun, sampler: Sampler, journal: bool
) -> list[Figure]:
    timings = run.timings
    members = [o for _, o in timings.outcomes.values() if o.job.kind == "backup"]
    ok = int(run.outcome.details.get("members_ok") or 0)
    moved = sum(o.bytes_copied for o in members)
    ideal = moved / budget
    share = ideal / run.wall
    waits = sorted(timings.start_times[o.job.id] - run.began for o in members)
    rates = [
        o.bytes_copied / (timings.outcomes[o.job.id][0] - timings.start_times[o.job.id])
        for o in members
        if o.bytes_copied
    ]
    fairness = max(rates) / min(rates) if rates else math.nan
    wait_ratio = waits[-1] / waits[0] if waits and waits[0] > 0 else math.inf
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    net_rss = max(sampler.peak("localnet", "setup"), sampler.peak("localnet", "backup"))
    calls = _calls(run.metrics)
    print(
        f"end to end: {ok:,} of {n:,} members ok, {moved / MiB:,.0f} MiB of images and "
        f"{calls:,.0f} calls ({calls / n:.0f} per member) under {budget / MiB:g} MiB/s in "
        f"{run.wall:.0f} s (ideal {ideal:.0f} s: {share:.1%} of it; target >= "
        f"{BUDGET_TARGET:.0%}); orchestrator CPU {run.cpu:.0f} s = {run.cpu / n * 1000:.0f} ms "
        f"per member, localnet CPU {run.localnet_cpu:.0f} s = "
        f"{run.localnet_cpu / n * 1000:.0f} ms per member",
        flush=True,
    )
    print(
        f"  memory: orchestrator peak RSS {rss:.0f} MiB over the whole run (target <= "
        f"{RSS_TARGET_MIB:.0f}; sampled: setup {sampler.peak('orchestrator', 'setup'):.0f}, "
        f"backup {sampler.peak('orchestrator', 'backup'):.0f}); localnet with "
        f"{2 * n + 1:,} canisters: peak RSS {net_rss:,.0f} MiB (setup "
        f"{sampler.peak('localnet', 'setup'):,.0f}, backup "
        f"{sampler.peak('localnet', 'backup'):,.0f})",
        flush=True,
    )
    if waits:
        print(
            f"  fairness: wait from due to start min {waits[0]:.2f} s, median "
            f"{statistics.median(waits):.0f} s, max {waits[-1]:.0f} s (max/min {wait_ratio:,.0f}: "
            f"every member is due when the run starts, so the wait is the member's place in "
            f"line); member throughput while its job ran max/min {fairness:.1f}",
            flush=True,
        )
    config = (
        f"end to end: {n:,} members of 64 KiB-1 MiB (evenly spread) on localnet "
        f"(--max-live-canisters {E2E_LIVE} --sleep-after {E2E_SLEEP}, "
        f"{'journal on' if journal else 'no journal'}), bytes_per_second "
        f"{budget / MiB:g} MiB, calls/s unlimited, {IN_FLIGHT} in flight, fleet concurrency "
        f"{E2E_CONCURRENCY}"
    )
    return [
        Figure("fleet: members ok", config, ok, "", target=n),
        Figure(
            "fleet: time against the budget's ideal",
            config,
            share * 100,
            "%",
            target=BUDGET_TARGET * 100,
        ),
        Figure(
            "fleet: orchestrator peak RSS",
            config,
            rss,
            "MiB",
            target=RSS_TARGET_MIB,
            higher_is_better=False,
        ),
        Figure("fleet: orchestrator CPU per member", config, run.cpu / n * 1000, "ms"),
        Figure("fleet: localnet CPU per member", config, run.localnet_cpu / n * 1000, "ms"),
        Figure("fleet: localnet peak RSS", config, net_rss, "MiB"),
        Figure("fleet: setup (create + write)", config, setup.seconds, "s"),
        Figure("fleet: backup run", config, run.wall, "s"),
        Figure("fleet: max wait, due to start", config, waits[-1] if waits else math.nan, "s"),
        Figure("fleet: member throughput max/min", config, fairness, ""),
    ]


def _calls(metrics: Metrics) -> float:
    return sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "replicator_calls"
        for s in family.samples
        if s.name == "replicator_calls_total"
    )


def _wasm() -> bytes:
    return (WASM / "platform.wasm").read_bytes()


async def _discard(net: LocalNetProcess) -> None:
    """Stop localnet without saving: a clean stop checkpoints every canister (waking
    each sleeping one), minutes at thousands of canisters, for a state thrown away."""
    await net.stop(signal.SIGKILL)


def _status_mib(pid: int | None, field: str) -> float:
    """A process's ``VmRSS`` or ``VmHWM`` (peak) in MiB; 0 when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int | None) -> float:
    """A child's CPU seconds so far (user + system); 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def at_scale(n: int, tmp: Path) -> list[Figure]:
    """One fleet run of ``n`` small members with unlimited rates (see the module)."""
    me = Identity.generate_ed25519()
    flags = ["--max-live-canisters", str(E2E_LIVE), "--sleep-after", str(E2E_SLEEP)]
    async with LocalNetProcess(state_dir=tmp / "localnet", extra_args=flags) as net:
        agent = Agent(net.url, me, network="local", root_key=net.root_key)
        async with agent:
            setup = await deploy(net, me, agent, n, _small, workers=SETUP_WORKERS, wasm=_wasm())
            print(f"fleet of {n:,} user canisters deployed in {setup.seconds:.0f} s", flush=True)
            run = await _backed_up(net, agent, setup.platform, None, E2E_CONCURRENCY, tmp)
            localnet_rss = _status_mib(net.pid, "VmHWM")
            await _discard(net)
    ok = int(run.outcome.details.get("members_ok") or 0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"at scale: {ok:,} of {n:,} members backed up in {run.wall:.0f} s "
        f"({n / run.wall:.1f} members/s, concurrency {E2E_CONCURRENCY}, rates unlimited); "
        f"orchestrator CPU {run.cpu:.0f} s = {run.cpu / n * 1000:.0f} ms per member; localnet "
        f"CPU {run.localnet_cpu:.0f} s = {run.localnet_cpu / n * 1000:.0f} ms per member; peak "
        f"RSS {rss:.0f} MiB (target <= {RSS_TARGET_MIB:.0f}); localnet peak RSS "
        f"{localnet_rss:.0f} MiB (--max-live-canisters {E2E_LIVE}, 2n+1 canisters)",
        flush=True,
    )
    config = (
        f"at scale: {n:,} members of 4 KiB on localnet (--max-live-canisters {E2E_LIVE} "
        f"--sleep-after {E2E_SLEEP}), rates unlimited, {IN_FLIGHT} in flight, fleet "
        f"concurrency {E2E_CONCURRENCY}"
    )
    return [
        Figure("fleet at scale: members ok", config, ok, "", target=n),
        Figure(
            "fleet at scale: orchestrator peak RSS",
            config,
            rss,
            "MiB",
            target=RSS_TARGET_MIB,
            higher_is_better=False,
        ),
        Figure("fleet at scale: members/s", config, n / run.wall, "/s"),
    ]


async def run(argv: Sequence[str] = ()) -> list[Figure]:
    args = parse(argv)
    if args.scale:
        with tempfile.TemporaryDirectory(prefix="fleet-scale-") as tmp:
            return await at_scale(args.scale, Path(tmp))
    budget = int(args.budget * MiB)
    print(
        f"configuration: scheduling {args.members:,} members (SQLite store, fsync per member); "
        f"end to end {args.fleet:,} members of 64 KiB-1 MiB on localnet (child process, "
        f"--max-live-canisters {E2E_LIVE} --sleep-after {E2E_SLEEP}, "
        f"{'--state-dir: journal on' if args.journal else 'no --state-dir: no journal'}), "
        "bytes_per_second "
        f"{args.budget:g} MiB (explicit), calls/s unlimited, {IN_FLIGHT} in flight, fleet "
        f"concurrency {E2E_CONCURRENCY}, direct path; setup {SETUP_WORKERS} members at once",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        per = await scheduling(args.members, Path(tmp))
        figures = [
            Figure(
                "fleet: scheduling CPU per member",
                f"scheduling {args.members:,} members, SQLite store, fsync per member",
                per,
                "ms",
                target=SCHEDULING_TARGET_MS,
                higher_is_better=False,
            )
        ]
        if args.fleet:
            figures += await end_to_end(args.fleet, budget, Path(tmp), journal=args.journal)
    return figures
