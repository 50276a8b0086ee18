"""Fleet backups: scheduling cost per member at 10,000 members, and a real fleet under a budget.

Two parts, one run:

1. **scheduling** (``--members``, default 10,000; ``--quick`` 2,000): the fleet
   layer's own work per member — the member table in a real SQLite store
   (listing synced, due members selected fairest first, each member's end
   recorded durably), the members-by-state metrics — without the members'
   jobs.  Target: <= 1 ms of CPU per member (``time.process_time``).
2. **end to end** on localnet (a child process: its CPU and memory are not
   ours): a platform canister with ``--fleet`` user canisters (default 200;
   ``--quick`` 16) holding 64 KiB–1 MiB each (evenly spread), backed up by
   one fleet run (each member into a backup canister created on demand, on
   the direct path) with the shipped defaults: fleet concurrency 8, limits
   10 calls/s and 2 MiB/s.  Measured: time against the budget's ideal — the
   binding one of the bytes of every image / the bytes budget and the calls
   made / the calls budget (target >= 90 %) —, orchestrator CPU per member,
   this process's peak RSS
   (target <= 300 MiB), and fairness: each member's throughput while its
   job ran (bytes / its job's time), max / min over the members.

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
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from icp_candid import Types
from prometheus_client import CollectorRegistry

from canister_iface.agent import Agent
from canister_iface.candid_value import as_principal, as_variant, decode_single, encode_values
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
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
T = 10**12
WASM = Path(__file__).parents[1] / "canister_iface" / "wasm"
_CONFIG = Types.Record(
    {
        "user_cycles": Types.Nat,
        "fleet_controllers": Types.Vec(Types.Principal),
        "fleet_peers": Types.Vec(Types.Principal),
    }
)
SCHEDULING_TARGET_MS = 1.0
RSS_TARGET_MIB = 300.0
BUDGET_TARGET = 0.90


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fleet_bench")
    parser.add_argument("--quick", action="store_true", help="2,000 scheduled, 16 on localnet")
    parser.add_argument("--members", type=int, help="members of the scheduling part (10,000)")
    parser.add_argument("--fleet", type=int, help="user canisters on localnet (200)")
    parser.add_argument(
        "--scale", type=int, metavar="N", help="only: one fleet run of N small members, unlimited"
    )
    args = parser.parse_args(list(argv))
    args.members = args.members or (2_000 if args.quick else 10_000)
    args.fleet = args.fleet or (16 if args.quick else 200)
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


async def _deploy(
    net: LocalNetProcess,
    me: Identity,
    agent: Agent,
    n: int,
    *,
    size: Callable[[int, int], int] = _spread,
    at_once: int = 8,
) -> Principal:
    mgmt = ManagementClient(agent)
    plat = await mgmt.provisional_create_canister_with_cycles(
        amount=(3 * n + 10) * T, settings=CanisterSettings(controllers=(me.principal,))
    )
    await mgmt.install_code(plat, (WASM / "platform.wasm").read_bytes())
    config = {
        "user_cycles": 2 * T,
        "fleet_controllers": [me.principal.raw],
        "fleet_peers": [me.principal.raw],
    }
    await agent.update(plat, "platform_configure", encode_values([(_CONFIG, config)]))
    gate = asyncio.Semaphore(at_once)

    async def member(i: int) -> None:
        nbytes = size(i, n)
        async with gate, Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as user:
            reply = await user.update(plat, "create_user_canister", b"DIDL\x00\x00")
            tag, value = as_variant(decode_single(reply, "c"), ("ok", "err"), "create")
            assert tag == "ok", value
            canister = as_principal(value, "create")
            arg = encode_values(
                [
                    (Types.Vec(Types.Nat8), b"data"),
                    (Types.Vec(Types.Nat8), bytes([i % 251]) * nbytes),
                ]
            )
            await user.update(canister, "put", arg)

    await asyncio.gather(*(member(i) for i in range(n)))
    return plat


async def end_to_end(n: int, tmp: Path) -> dict[str, float]:
    me = Identity.generate_ed25519()
    async with LocalNetProcess() as net:
        agent = Agent(net.url, me, network="local", root_key=net.root_key)
        async with agent:
            started = time.monotonic()
            plat = await _deploy(net, me, agent, n)
            print(
                f"fleet of {n} user canisters deployed in {time.monotonic() - started:.1f} s",
                flush=True,
            )
            limits = LimitSettings()  # the shipped defaults
            budget, calls_budget = limits.bytes_per_second or 0, limits.calls_per_second or 0.0
            settings = EngineSettings(limits=limits)
            timings = Timings()
            metrics = Metrics()
            store = SqliteStore(tmp / "e2e.sqlite3")
            engine = Engine(settings, store, metrics, timings, agents={"local": agent})
            try:
                cpu, wall = time.process_time(), time.monotonic()
                outcome = await engine.submit(
                    fleet.request(CanisterRef(plat.to_text(), "local"), name="bench")
                )
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            finally:
                await store.close()
    members = [o for _, o in timings.outcomes.values() if o.job.kind == "backup"]
    assert outcome.ok, outcome.to_json()
    assert outcome.details["members_ok"] == n, outcome.to_json()
    moved = sum(o.bytes_copied for o in members)
    calls = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "replicator_calls"
        for s in family.samples
        if s.name == "replicator_calls_total"
    )
    # The binding limit sets the ideal: the bytes budget or the calls budget.
    ideal = max(moved / budget, calls / calls_budget)
    rates = [
        o.bytes_copied / (timings.outcomes[o.job.id][0] - timings.start_times[o.job.id])
        for o in members
        if o.bytes_copied
    ]
    fairness = max(rates) / min(rates)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    share = ideal / wall
    print(
        f"end to end: {n} members, {moved / MiB:.1f} MiB of images and {calls:.0f} calls "
        f"({calls / n:.0f} per member) under {budget / MiB:g} MiB/s and {calls_budget:g} calls/s "
        f"in {wall:.1f} s (ideal {ideal:.1f} s: {share:.1%} of it; target >= "
        f"{BUDGET_TARGET:.0%}); orchestrator CPU {cpu:.1f} s = {cpu / n * 1000:.0f} ms per "
        f"member; peak RSS {rss:.0f} MiB (target <= {RSS_TARGET_MIB:.0f}); fairness: member "
        f"throughput max/min {fairness:.1f}",
        flush=True,
    )
    return {"share": share, "rss": rss, "fairness": fairness}


SCALE_LIVE = 256  # canisters localnet keeps instantiated in the scale run
SCALE_CONCURRENCY = 32


def _hwm_mib(pid: int | None) -> float:
    """A child's peak RSS (VmHWM) in MiB; 0 when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int | None) -> float:
    """A child's CPU seconds so far (user + system); 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def at_scale(n: int, tmp: Path) -> dict[str, float]:
    """One fleet run of ``n`` small members with unlimited rates (see the module)."""
    me = Identity.generate_ed25519()
    flags = ["--max-live-canisters", str(SCALE_LIVE), "--sleep-after", "30"]
    async with LocalNetProcess(state_dir=tmp / "localnet", extra_args=flags) as net:
        agent = Agent(net.url, me, network="local", root_key=net.root_key)
        async with agent:
            started = time.monotonic()
            plat = await _deploy(net, me, agent, n, size=lambda i, n: 4 * KiB, at_once=32)
            deployed = time.monotonic() - started
            print(f"fleet of {n:,} user canisters deployed in {deployed:.0f} s", flush=True)
            limits = LimitSettings(calls_per_second=None, bytes_per_second=None, in_flight=64)
            metrics = Metrics()
            store = SqliteStore(tmp / "scale.sqlite3")
            engine = Engine(
                EngineSettings(limits=limits), store, metrics, Timings(), agents={"local": agent}
            )
            request = fleet.request(
                CanisterRef(plat.to_text(), "local"), name="scale", concurrency=SCALE_CONCURRENCY
            )
            try:
                cpu, wall, net_cpu = time.process_time(), time.monotonic(), _cpu_s(net.pid)
                outcome = await engine.submit(request)
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
                net_cpu = _cpu_s(net.pid) - net_cpu
            finally:
                await store.close()
            localnet_rss = _hwm_mib(net.pid)
    ok = int(outcome.details.get("members_ok") or 0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"at scale: {ok:,} of {n:,} members backed up in {wall:.0f} s ({n / wall:.1f} members/s, "
        f"concurrency {SCALE_CONCURRENCY}, rates unlimited); orchestrator CPU {cpu:.0f} s = "
        f"{cpu / n * 1000:.0f} ms per member; localnet CPU {net_cpu:.0f} s = "
        f"{net_cpu / n * 1000:.0f} ms per member; peak RSS {rss:.0f} MiB (target <= "
        f"{RSS_TARGET_MIB:.0f}); localnet peak RSS {localnet_rss:.0f} MiB "
        f"(--max-live-canisters {SCALE_LIVE}, 2n+1 canisters)",
        flush=True,
    )
    return {"ok": float(ok == n and outcome.ok), "rss": rss}


async def run(argv: Sequence[str] = ()) -> bool:
    args = parse(argv)
    if args.scale:
        print(
            f"configuration: one fleet run of {args.scale:,} user canisters of 4 KiB on localnet "
            f"(child process, --max-live-canisters {SCALE_LIVE}, --sleep-after 30), fleet "
            f"concurrency {SCALE_CONCURRENCY}, calls/s and bytes/s unlimited, 64 in flight",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="fleet-scale-") as tmp:
            scaled = await at_scale(args.scale, Path(tmp))
        checks = [
            ("every member backed up", scaled["ok"] == 1.0),
            (f"orchestrator RSS <= {RSS_TARGET_MIB:.0f} MiB", scaled["rss"] <= RSS_TARGET_MIB),
        ]
        for what, good in checks:
            print(f"{'ok' if good else 'MISSED'}: {what}", flush=True)
        return all(good for _, good in checks)
    print(
        f"configuration: scheduling {args.members:,} members (SQLite store, fsync per member); "
        f"end to end {args.fleet} members of 64 KiB-1 MiB on localnet (child process), shipped "
        "defaults: fleet concurrency 8, direct path, limits 10 calls/s, 2 MiB/s, 16 in flight",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        per = await scheduling(args.members, Path(tmp))
        e2e = await end_to_end(args.fleet, Path(tmp))
    checks = [
        (f"scheduling <= {SCHEDULING_TARGET_MS} ms CPU per member", per <= SCHEDULING_TARGET_MS),
        (f"fleet time >= {BUDGET_TARGET:.0%} of the budget's ideal", e2e["share"] >= BUDGET_TARGET),
        (f"orchestrator RSS <= {RSS_TARGET_MIB:.0f} MiB", e2e["rss"] <= RSS_TARGET_MIB),
    ]
    for what, ok in checks:
        print(f"{'ok' if ok else 'MISSED'}: {what}", flush=True)
    return all(ok for _, ok in checks)
