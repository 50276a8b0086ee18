"""Backup speed on localnet with mainnet-like latency, against the seed thread's script.

localnet runs in a child process (its CPU is not ours) with a latency model
set through its admin endpoint (``PUT /_/faults``): 150 ms per query, 1.5 s
per update call, about what a client sees on mainnet.  The demo app holds a
``--mib`` MiB image (default 256).  Measured in one run:

1. **ours**: ``Engine.backup`` on the direct path (``icrp_push``, canister to
   canister) into a backup canister created on demand, limits off, 32 calls
   in flight — end to end (prepare, copy, commit, verify) and the copy phase;
2. **baseline**: what the seed thread's bash script does — serial 1 MiB
   pages through the orchestrator, ``icrp_read`` 1 MiB then ``icrp_write``
   1 MiB, one call at a time.  Serial means linear, so it is measured on
   ``--baseline-mib`` MiB (default 16; 0: the whole image) and extrapolated;
   the ratio (target >= 10x) compares our end-to-end time with the
   baseline's copy loop alone (generous to the baseline);
3. **budget**: the same backup (into a fresh backup canister) under a binding
   ``bytes_per_second`` budget (default 8 MiB/s): the copy phase's throughput
   must reach >= 90 % of it;
4. **relay CPU**: a relay backup (``icrp_read`` + ``icrp_write`` through this
   process) without latency: orchestrator CPU seconds per GiB
   (``time.process_time()`` of this process; localnet is another process).

``python -m benchmarks backup_bench --mib 32`` runs it smaller.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import encode_value
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import ImportSpec
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet.process import LocalNetProcess
from replicator.checkpoints import SqliteStore
from replicator.cli.demo.app import WASM_DIR, DemoApp
from replicator.engine import Engine
from replicator.flows import backup
from replicator.job import CanisterRef, Job, JobOutcome, Phase
from replicator.limits import LimitSettings
from replicator.metrics import Metrics
from replicator.settings import EngineSettings

MiB = 1024 * 1024
GiB = 1024 * MiB
LATENCY = {"query": 0.15, "call": 1.5}
IN_FLIGHT = 32
_BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks backup_bench")
    parser.add_argument("--mib", type=int, default=256, help="image size in MiB (default 256)")
    parser.add_argument(
        "--baseline-mib",
        type=int,
        default=16,
        help="MiB the serial baseline copies before extrapolating (0: all; default 16)",
    )
    parser.add_argument(
        "--budget-mib", type=float, default=8.0, help="the binding byte budget, MiB/s (default 8)"
    )
    return parser.parse_args(list(argv))


@dataclass
class CopyClock:
    """A ``Progress`` that times the copy phase: entering ``copying`` to the last byte acked."""

    copy_started: float | None = None
    first_ack: float | None = None
    last_ack: float | None = None
    nbytes: int = 0
    first_bytes: int = 0  # acknowledged with the first ack
    retries: int = 0

    def started(self, job: Job, resumed: bool) -> None:
        del job, resumed
        self.copy_started = self.first_ack = self.last_ack = None
        self.nbytes = self.first_bytes = 0

    def phase(self, job: Job, phase: str) -> None:
        del job
        if phase == Phase.COPYING:
            self.copy_started = time.monotonic()

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        del job, total_bytes, done_bytes

    def advanced(self, job: Job, nbytes: int) -> None:
        del job
        self.nbytes += nbytes
        self.last_ack = time.monotonic()
        if self.first_ack is None:
            self.first_ack, self.first_bytes = self.last_ack, nbytes

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        del job, reason, wait_seconds
        self.retries += 1

    def note(self, job: Job, text: str) -> None:
        del job, text

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        del job, outcome

    @property
    def copy_seconds(self) -> float:
        """From entering ``copying`` (incl. its setup calls) to the last ack."""
        if self.copy_started is None or self.last_ack is None:
            return float("nan")
        return self.last_ack - self.copy_started

    @property
    def sustained_rate(self) -> float:
        """Bytes per second from the first ack to the last (the pipeline full)."""
        if self.first_ack is None or self.last_ack is None or self.last_ack <= self.first_ack:
            return float("nan")
        return (self.nbytes - self.first_bytes) / (self.last_ack - self.first_ack)


Timed = tuple[Engine, CopyClock]


@dataclass
class Bench:
    """One localnet, one identity, the demo app and the engine settings."""

    net: LocalNetProcess
    identity: Identity
    agent: Agent
    app: DemoApp
    state_dir: Path

    @property
    def source(self) -> CanisterRef:
        return CanisterRef(str(self.app.canister_id), "local")

    async def latency(self, on: bool) -> None:
        body = {"latency_s": LATENCY if on else {}}
        async with httpx.AsyncClient(base_url=self.net.url, timeout=30) as http:
            reply = await http.put("/_/faults", json=body)
            reply.raise_for_status()

    async def backup_canister(self) -> Principal:
        """A backup canister for the app, installed by hand (no engine involved)."""
        mgmt = ManagementClient(self.agent)
        canister = await mgmt.provisional_create_canister_with_cycles(
            amount=100 * 10**12, settings=CanisterSettings(controllers=(self.identity.principal,))
        )
        init = {"source": self.app.canister_id.raw, "keep": [1], "peers": []}
        wasm = (WASM_DIR / "backup.wasm").read_bytes()
        await mgmt.install_code(canister, wasm, arg=encode_value(_BACKUP_INIT, init))
        return canister

    @asynccontextmanager
    async def engine(
        self, name: str, limits: LimitSettings
    ) -> AsyncIterator[tuple[Engine, CopyClock]]:
        clock = CopyClock()
        store = SqliteStore(self.state_dir / f"{name}.sqlite3")
        settings = EngineSettings(limits=limits, concurrency=IN_FLIGHT)
        engine = Engine(settings, store, Metrics(), clock, agents={"local": self.agent})
        try:
            async with engine:
                yield engine, clock
        finally:
            await store.close()


def _unlimited(bytes_per_second: int | None = None) -> LimitSettings:
    return LimitSettings(
        calls_per_second=None,
        bytes_per_second=bytes_per_second,
        in_flight=2 * IN_FLIGHT,
        in_flight_per_canister=IN_FLIGHT,
    )


def _mibs(nbytes: float, seconds: float) -> float:
    return nbytes / MiB / seconds


def _size(outcome: JobOutcome) -> int:
    size = outcome.details.get("size")
    return size if isinstance(size, int) else 0


def _checked(outcome: JobOutcome, what: str) -> JobOutcome:
    if not outcome.ok:
        raise RuntimeError(f"{what} failed: {outcome.error}")
    return outcome


# ------------------------------------------------------------------ phases


async def _ours(bench: Bench) -> tuple[float, JobOutcome, CopyClock]:
    async with bench.engine("ours", _unlimited()) as (engine, clock):
        started = time.monotonic()
        outcome = _checked(await engine.submit(backup.request(bench.source)), "our backup")
        wall = time.monotonic() - started
    size = _size(outcome)
    print(
        f"ours (direct, {IN_FLIGHT} in flight): {size / MiB:.0f} MiB in {wall:.1f} s end to end "
        f"= {_mibs(size, wall):.2f} MiB/s (incl. creating the backup canister); copy phase "
        f"{clock.copy_seconds:.1f} s = {_mibs(clock.nbytes, clock.copy_seconds):.2f} MiB/s; "
        f"retries {clock.retries}",
        flush=True,
    )
    return wall, outcome, clock


async def _baseline(bench: Bench, mib: int, size: int) -> float:
    """Seconds per MiB of the serial page loop (1 MiB read, 1 MiB write, one at a time)."""
    target = await bench.backup_canister()
    src, dst = IcrpClient(bench.agent, bench.app.canister_id), IcrpClient(bench.agent, target)
    ticket = await src.wait_ready(await src.begin_export())
    import_id = await dst.begin_import(ImportSpec.for_ticket(bench.app.canister_id, ticket))
    limit = size if mib <= 0 else min(size, mib * MiB)
    started = time.monotonic()
    for offset in range(0, limit, MiB):
        page = await src.read(ticket.snapshot_id, offset, MiB)
        await dst.write(import_id, offset, page)
    seconds = time.monotonic() - started
    await dst.abort_import(import_id)
    await src.end_export(ticket.snapshot_id)
    per_mib = seconds / (limit / MiB)
    print(
        f"baseline (serial 1 MiB pages, read then write): {limit / MiB:.0f} MiB in {seconds:.1f} s"
        f" = {1 / per_mib:.2f} MiB/s; whole image extrapolated: {per_mib * size / MiB:.0f} s",
        flush=True,
    )
    return per_mib


async def _budget(bench: Bench, budget_mib: float) -> float:
    budget = int(budget_mib * MiB)
    # A burst of one piece: the first second is not sped up by a full bucket.
    limits = replace(_unlimited(budget), byte_burst=MiB)
    target = CanisterRef(str(await bench.backup_canister()), "local")
    async with bench.engine("budget", limits) as (engine, clock):
        _checked(await engine.submit(backup.request(bench.source, target)), "budget backup")
    rate = clock.sustained_rate
    print(
        f"budget {budget_mib:g} MiB/s: {clock.nbytes / MiB:.0f} MiB, sustained (first to last "
        f"ack) {rate / MiB:.2f} MiB/s = {rate / budget:.1%} of the budget (target >= 90 %); "
        f"copy phase incl. its setup calls {clock.copy_seconds:.1f} s "
        f"= {clock.nbytes / clock.copy_seconds / MiB:.2f} MiB/s",
        flush=True,
    )
    return rate / budget


async def _relay_cpu(bench: Bench) -> float:
    target = CanisterRef(str(await bench.backup_canister()), "local")
    async with bench.engine("relay", _unlimited()) as (engine, _clock):
        cpu, started = time.process_time(), time.monotonic()
        outcome = _checked(
            await engine.submit(backup.request(bench.source, target, via="relay")), "relay backup"
        )
        cpu, wall = time.process_time() - cpu, time.monotonic() - started
    per_gib = cpu / (outcome.bytes_copied / GiB)
    print(
        f"relay (no latency): {outcome.bytes_copied / MiB:.0f} MiB in {wall:.1f} s "
        f"= {_mibs(outcome.bytes_copied, wall):.1f} MiB/s; orchestrator CPU {cpu:.2f} s "
        f"= {per_gib:.1f} CPU s/GiB",
        flush=True,
    )
    return per_gib


async def run(argv: Sequence[str] = ()) -> None:
    args = parse(argv)
    identity = Identity.generate_ed25519()
    with tempfile.TemporaryDirectory(prefix="backup-bench-") as tmp:
        async with LocalNetProcess() as net:
            agent = Agent(net.url, identity, network="local", root_key=net.root_key)
            async with agent:
                started = time.monotonic()
                app = await DemoApp.deploy(agent, identity.principal)
                await app.generate(args.mib, 1)
                print(
                    f"demo app with {args.mib} MiB generated in {time.monotonic() - started:.1f} s;"
                    f" latency model: query {LATENCY['query']} s, call {LATENCY['call']} s",
                    flush=True,
                )
                bench = Bench(net, identity, agent, app, Path(tmp))
                await bench.latency(True)
                wall, outcome, clock = await _ours(bench)
                size = _size(outcome)
                per_mib = await _baseline(bench, args.baseline_mib, size)
                ratio = per_mib * size / MiB / wall
                copy_ratio = per_mib * clock.nbytes / MiB / clock.copy_seconds
                print(
                    f"ratio: ours end to end (creating the backup canister, export, copy, "
                    f"commit, verify) is {ratio:.1f}x faster than the baseline's page loop alone "
                    f"(target >= 10x); copy phase against page loop: {copy_ratio:.1f}x",
                    flush=True,
                )
                share = await _budget(bench, args.budget_mib)
                await bench.latency(False)
                per_gib = await _relay_cpu(bench)
    print(
        f"summary: ratio {ratio:.1f}x (>= 10x: {'yes' if ratio >= 10 else 'NO'}), budget "
        f"{share:.1%} (>= 90 %: {'yes' if share >= 0.9 else 'NO'}), relay {per_gib:.1f} CPU s/GiB",
        flush=True,
    )
