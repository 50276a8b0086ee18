"""The engine: runs jobs of any kind — drives their state machines, performs effects, checkpoints.

API (what the command line, the service, the demo and the benchmarks build on)::

    from replicator.engine import Engine
    import replicator.flows.builtin                # registers the built-in kinds
    from replicator.flows import backup

    engine = Engine.from_config(config, store, metrics, progress, identity=identity, via="relay")
    # or: Engine(EngineSettings(...), store, metrics, progress, agents={"local": agent})
    async with engine:                            # closes the agents it created
        outcome = await engine.submit(backup.request(app))   # plan, then run
        outcome = await engine.run(job)           # any Job; resumes its unfinished twin
        outcome = await engine.resume(job_id)
    sys.exit(outcome.exit_code)

The engine knows no kind by name: it looks ``job.kind`` up in
:mod:`replicator.kinds` and uses the kind's planner, state machine and
performer (:mod:`replicator.flow`).  ``EngineSettings``
(:mod:`replicator.settings`) says how jobs run: limits per network, retries,
transfer sizes, concurrency, the default route, how canisters are created.

- ``submit(request)`` lets the kind's planner turn the request into a job
  (notes it makes are shown when the job starts, for this request only),
  then runs it.
- ``run(job)`` first looks for an unfinished job with the same fingerprint
  (kind, source, target) in the checkpoint store and continues it (its id,
  this call's options); otherwise it records ``job`` and starts it.  No two
  runs of a job overlap, in this process or in another using the same
  store: a run holds the job's lock in the store (:mod:`replicator.joblock`)
  and a second one fails with ``JobLocked`` (exit code 75) naming the holder.
- The outcome (:class:`~replicator.job.JobOutcome`) carries the final
  state, the documented exit code, the error message, what the run moved
  and notes.  A job that fails is *returned*, not raised; errors raised
  before a job exists (a planner that cannot plan) are
  :class:`~replicator.errors.ReplicatorError` s with their exit code.
- Cancellation (``asyncio.CancelledError``, ``KeyboardInterrupt``) is never
  swallowed: the job is recorded as ``cancelled`` at its last checkpoint
  and the exception propagates.  Re-running the same command resumes.

How a job runs: every new state is saved — in a worker thread, the event
loop keeps serving other jobs — *before* its effects are performed; each
effect's outcome is fed back as the next event.  Every call goes through
the network's limits and retries (:mod:`replicator.calls`), shared by every
job this engine runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from types import TracebackType

from canister_iface import errors as ic
from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator import kinds
from replicator.calls import CallRunner
from replicator.checkpoints import Store
from replicator.chunking import Path, TransferSize
from replicator.classify import job_level_error
from replicator.config import Config
from replicator.errors import ReplicatorError, UsageError
from replicator.flow import (
    Calls,
    Consent,
    Kind,
    Performer,
    PlanContext,
    Planned,
    Restart,
    RunContext,
    consent_given,
)
from replicator.fresh import FreshImages
from replicator.job import TERMINAL_PHASES, Job, JobOutcome, JobRequest, JobState, new_job_id
from replicator.joblock import DEFAULT_LEASE, DEFAULT_RENEW, Taken, holding
from replicator.limits import Limited, build_caller
from replicator.machine import Cancel, Fail, Start
from replicator.metrics import Metrics
from replicator.progress import NullProgress, Progress
from replicator.provision import Provisioner, ProvisionSettings
from replicator.pump import Sizer
from replicator.settings import EngineSettings
from replicator.subnets import SubnetMap, certified_reader

log = logging.getLogger(__name__)

AgentSource = Callable[[str], Agent]

# Per metrics registry: the phase each unfinished job is counted in by
# ``replicator_jobs``, so engines sharing one ``Metrics`` (a process running
# several commands) count a resumed job once.  Finished jobs are dropped, so a
# long-running service does not keep one entry per run it ever made.
_COUNTED: weakref.WeakKeyDictionary[Metrics, dict[str, str]] = weakref.WeakKeyDictionary()


class Engine:
    """Runs jobs against canisters and files (see the module docstring)."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store,
        metrics: Metrics,
        progress: Progress | None = None,
        *,
        agents: AgentSource | Mapping[str, Agent],
        owned_agents: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.progress: Progress = progress or NullProgress()
        self._agents = agents
        self._owned: dict[str, Agent] = {}
        self._owns_agents = owned_agents
        self._limited: dict[str, Limited] = {}
        self._subnets: dict[str, SubnetMap] = {}
        self._running: set[str] = set()  # ids of the jobs this engine is running now
        self._fresh_images = FreshImages()  # from backups' planners to their jobs
        # A job's lock in the store: the lease a holder that stopped renewing keeps it, and
        # how often a run renews it (serve workers shorten both to their takeover bound).
        self.lock_lease = DEFAULT_LEASE
        self.lock_renew = DEFAULT_RENEW
        for kind in kinds.registered():  # known label values start at 0
            metrics.add_kind(kind.name, kind.phases)
            if kind.metrics is not None:
                metrics.extension(kind.metrics)

    @classmethod
    def from_config(
        cls,
        config: Config,
        store: Store,
        metrics: Metrics,
        progress: Progress | None = None,
        *,
        identity: Identity,
        **changes: object,
    ) -> Engine:
        """An engine whose agents (one per network, created on first use) it owns."""

        settings = EngineSettings.from_config(config, **changes)

        def connect(name: str) -> Agent:
            network = config.network_named(name)
            return Agent(
                network.url,
                identity,
                network=name,
                root_key=network.root_key,
                fetch_root_key=network.fetch_root_key,
                max_connections=settings.limits_for(name).connections,
            )

        return cls(settings, store, metrics, progress, agents=connect, owned_agents=True)

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the agents the engine created."""
        owned, self._owned = self._owned, {}
        for agent in owned.values():
            await agent.aclose()

    # -------------------------------------------------------------- services

    def agent(self, network: str) -> Agent:
        """The agent for ``network``."""
        if isinstance(self._agents, Mapping):
            try:
                return self._agents[network]
            except KeyError:
                known = ", ".join(sorted(self._agents)) or "none"
                raise UsageError(
                    f"no agent for network {network!r} (configured: {known})"
                ) from None
        if network not in self._owned:
            agent = self._agents(network)
            if self._owns_agents:
                self._owned[network] = agent
            else:
                return agent
        return self._owned[network]

    def limited(self, network: str) -> Limited:
        """The limits of ``network``, shared by every job this engine runs."""
        if network not in self._limited:
            settings = self.settings.limits_for(network)
            subnets = self.subnets(network) if settings.per_subnet else None
            self._limited[network] = build_caller(
                settings,
                observer=self.metrics.record_wait,
                spending=self.store.spending,  # one budget for every process using the store
                leases=self.store.rate_leases,  # the global rates: one for every worker
                scope=network,
                subnet_of=None if subnets is None else subnets.subnet_of,
            )
        return self._limited[network]

    def subnets(self, network: str) -> SubnetMap:
        """Which subnet hosts a canister of ``network`` (certified, cached; one per network)."""
        if network not in self._subnets:
            self._subnets[network] = SubnetMap(certified_reader(self.agent(network)))
        return self._subnets[network]

    async def _same_subnet(self, network: str, a: str, b: str) -> bool:
        subnets = self.subnets(network)
        first = await subnets.subnet_of(a)
        return first is not None and first == await subnets.subnet_of(b)

    def _subnets_if_limited(self, network: str) -> SubnetMap | None:
        return self.subnets(network) if self.settings.limits_for(network).per_subnet else None

    def runner(self, network: str, job: Job | None = None) -> CallRunner:
        """Calls on ``network`` through its limits, retries and metrics."""
        on_retry = None
        if job is not None:
            progress = self.progress

            def on_retry(reason: str, wait: float) -> None:
                progress.retried(job, reason, wait)

        return CallRunner(
            self.limited(network), self.settings.retry, self.metrics, on_retry=on_retry
        )

    def sizer(self, path: Path, limit: int | None) -> Sizer:
        transfer = self.settings.transfer
        bounds = [b for b in (limit, transfer.max_size) if b is not None]
        size = TransferSize.for_path(
            path, limit=min(bounds) if bounds else None, floor=transfer.min_size
        )
        return Sizer(size, path, self.metrics.set_chunk_size)

    def calls(self, note: Callable[[str], None], job: Job | None = None) -> Calls:
        """Calls for ``job`` (or for planning one), telling ``note`` what is worth a line."""
        return Calls(
            agent_for=self.agent,
            runner_for=lambda network: self.runner(network, job),
            sizer_for=self.sizer,
            note=note,
            subnets_for=self._subnets_if_limited,
            same_subnet=self._same_subnet,
            fresh_images=self._fresh_images,
        )

    def provisioner(self, network: str, note: Callable[[str], None]) -> Provisioner:
        """Creates canisters on ``network`` with the configured controllers and cycles."""
        agent = self.agent(network)
        settings = self.settings
        controllers = tuple(Principal.from_text(c) for c in settings.controllers)
        method = settings.create_method(network)
        return Provisioner(
            agent,
            self.runner(network),
            self.store.registry,
            self.metrics,
            network=network,
            settings=ProvisionSettings(
                controllers=controllers or (agent.identity.principal,),
                initial_cycles=settings.initial_cycles,
                method="provisional" if method == "provisional" else "ledger",
                ledger=settings.cycles_ledger,
            ),
            note=note,
            subnet_of=self.subnets(network).subnet_of,
        )

    def planning(
        self,
        note: Callable[[str], None],
        *,
        consent: Consent = consent_given,
        dry_run: bool = False,
    ) -> PlanContext:
        """What a planner gets; its notes go to ``note``."""
        return PlanContext(
            settings=self.settings,
            calls=self.calls(note),
            store=self.store,
            provisioner_for=lambda network: self.provisioner(network, note),
            consent=consent,
            dry_run=dry_run,
        )

    def track(self, job: Job, phase: str) -> None:
        """Count ``job``'s move to ``phase`` (see :meth:`Metrics.job_moved`).

        An unfinished job is in the gauge once, whatever its runs.  A job that
        ends is forgotten: a later run starts from its stored terminal phase,
        which counts nowhere, and counts as finished again only when it ends.
        """
        phases = _COUNTED.setdefault(self.metrics, {})
        old = phases.get(job.id)
        if old == phase:
            return
        self.metrics.job_moved(job.kind, old, phase)
        if phase in TERMINAL_PHASES:
            phases.pop(job.id, None)
        else:
            phases[job.id] = phase

    # ------------------------------------------------------------------ runs

    async def plan(
        self, request: JobRequest, *, consent: Consent = consent_given, dry_run: bool = False
    ) -> Planned:
        """The job ``request`` asks for, from its kind's planner (checked).

        ``consent`` is asked before actions that cost or destroy; with
        ``dry_run`` nothing is changed and the plan says what would be done.
        """
        kind = kinds.get(request.kind)
        kind.check(request)
        if not request.id:
            request = replace(request, id=new_job_id(request.kind))
        notes: list[str] = []

        def note(text: str) -> None:
            log.info("%s", text)
            notes.append(text)

        ctx = self.planning(note, consent=consent, dry_run=dry_run)
        try:
            job = await kind.plan(ctx, request)
        except ic.IcError as exc:
            raise job_level_error(exc) from exc
        kind.check(job)
        return Planned(job, tuple(ctx.actions), tuple(notes), dry_run)

    async def submit(self, request: JobRequest, *, consent: Consent = consent_given) -> JobOutcome:
        """Plan ``request`` with its kind's planner, then run the job."""
        planned = await self.plan(request, consent=consent)
        return await self.run(planned.job, notes=planned.notes)

    async def dry_run(self, request: JobRequest) -> Planned:
        """What ``request`` would do; nothing is created, spent, written or recorded."""
        return await self.plan(request, dry_run=True)

    async def run(self, job: Job, *, notes: Sequence[str] = ()) -> JobOutcome:
        """Run ``job``, or continue its unfinished twin (same fingerprint).

        ``notes`` (from planning) are reported once the job has started.
        """
        kind = kinds.get(job.kind)
        kind.check(job)
        async with self._holding(job) as taken:
            notes = (*notes, *_takeover(taken))
            existing = await self.store.find_resumable(job.fingerprint)
            if existing is None:
                state = await self.store.create_job(job)
                return await self._run(kind, state, {}, resumed=False, notes=notes)
            checkpoint = await self.store.load(existing)
            job = replace(checkpoint.state.job, options=job.options)
            state = replace(checkpoint.state, job=job)
            return await self._run(kind, state, checkpoint.acked, resumed=True, notes=notes)

    async def resume(self, job_id: str) -> JobOutcome:
        """Continue the job ``job_id`` from its checkpoint."""
        job = (await self.store.load(job_id)).state.job
        async with self._holding(job) as taken:
            checkpoint = await self.store.load(job_id)  # as the last holder left it
            state = checkpoint.state
            if state.finished:
                notes = ("the job is already done",)
                return JobOutcome(state.job, state, resumed=True, notes=notes)
            kind = kinds.get(state.job.kind)
            return await self._run(
                kind, state, checkpoint.acked, resumed=True, notes=_takeover(taken)
            )

    def _holding(self, job: Job) -> AbstractAsyncContextManager[Taken]:
        return holding(
            self.store,
            job.fingerprint,
            what=_describe(job),
            lease=self.lock_lease,
            renew=self.lock_renew,
        )

    async def _run(
        self,
        kind: Kind,
        state: JobState,
        acked: dict[int, bytes],
        *,
        resumed: bool,
        notes: Sequence[str] = (),
    ) -> JobOutcome:
        job = state.job
        if job.id in self._running:
            raise UsageError(
                f"job {job.id} ({job.kind} of {job.source}) is already running in "
                "this process; wait for it to finish"
            )
        self._running.add(job.id)
        try:
            run = _JobRun(self, kind, state, acked, resumed)
            self.track(job, state.phase)
            self.progress.started(job, resumed)
            for text in notes:
                run.note(text)
            return await run.execute()
        finally:
            self._running.discard(job.id)


def _describe(job: Job) -> str:
    target = "" if job.target is None else f" → {job.target}"
    return f"the {job.kind} job {job.source}{target}"


def _takeover(taken: Taken) -> tuple[str, ...]:
    return () if taken.note is None else (taken.note,)


# ---------------------------------------------------------------- one run


class _JobRun:
    """One run of one job: its context, performer and the drive loop."""

    def __init__(
        self,
        engine: Engine,
        kind: Kind,
        state: JobState,
        acked: dict[int, bytes],
        resumed: bool,
    ) -> None:
        self.engine = engine
        self.kind = kind
        self.state = state
        self.job = state.job
        self.resumed = resumed
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.restarts = 0
        self.ctx = RunContext(
            job=self.job,
            settings=engine.settings,
            calls=engine.calls(self.note, self.job),
            store=engine.store,
            metrics=engine.metrics,
            progress=engine.progress,
            provisioner_for=lambda network: engine.provisioner(network, self.note),
            acked=dict(acked),
            resumed=resumed,
            submit=engine.submit,
        )
        self._performer: Performer | None = None

    def note(self, text: str) -> None:
        log.info("job %s: %s", self.job.id, text)
        self.notes.append(text)
        self.engine.progress.note(self.job, text)

    async def execute(self) -> JobOutcome:
        progress = self.engine.progress
        try:
            await self._drive()
        except (asyncio.CancelledError, KeyboardInterrupt):
            await asyncio.shield(self._stop(Cancel()))
            progress.finished(self.job, self.outcome())
            raise
        finally:
            if self._performer is not None:
                await self._performer.close()
        outcome = self.outcome()
        progress.finished(self.job, outcome)
        return outcome

    async def _drive(self) -> None:
        while True:
            try:
                await self._steps()
                return
            except Restart as restart:
                if self.restarts >= self.engine.settings.max_restarts:
                    await self._fail(restart.cause or restart)
                    return
                self.restarts += 1
                self.note(restart.reason)
                await self._apply(Fail(restart.reason, 1))
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # every failure ends the job with its exit code
                await self._fail(exc)
                return

    async def _steps(self) -> None:
        performer = self._perform_with()
        queue: list[object] = list(await self._apply(Start()))
        while queue:
            event = await performer.perform(queue.pop(0))
            if event is not None:
                queue.extend(await self._apply(event))

    def _perform_with(self) -> Performer:
        # Made on first use, inside the run: a bad option fails the job, as it should.
        if self._performer is None:
            self._performer = self.kind.performer(self.ctx)
        return self._performer

    async def _apply(self, event: object) -> tuple[object, ...]:
        step = self.kind.advance(self.state, event)
        old = self.state.phase
        self.state = step.state
        when = await self.engine.store.save(self.state)  # before any effect of the new state
        self.engine.metrics.record_checkpoint(when)
        if self.state.phase != old:
            self.engine.track(self.job, self.state.phase)
            self.engine.progress.phase(self.job, self.state.phase)
        return step.effects

    async def _stop(self, event: Cancel) -> None:
        if self.state.phase not in TERMINAL_PHASES:
            await self._apply(event)

    async def _fail(self, exc: BaseException) -> None:
        error = job_level_error(exc)
        if not isinstance(exc, ReplicatorError | ic.IcError):
            log.error("job %s failed unexpectedly", self.job.id, exc_info=exc)
        if self.state.phase in TERMINAL_PHASES:
            return
        await self._apply(Fail(str(error) or type(error).__name__, error.exit_code))

    def outcome(self) -> JobOutcome:
        report = self._performer.report(self.state) if self._performer is not None else None
        outcome = JobOutcome(
            job=self.job,
            state=self.state,
            resumed=self.resumed,
            elapsed=time.monotonic() - self.started,
            notes=tuple(self.notes),
        )
        if report is None:
            return outcome
        return replace(
            outcome,
            route=report.route,
            bytes_copied=report.bytes_copied,
            chunks_copied=report.chunks_copied,
            chunks_skipped=report.chunks_skipped,
            digest=report.digest,
            source_digest=report.source_digest,
            target_digest=report.target_digest,
            details=report.details,
        )


__all__ = ["Engine", "EngineSettings"]
