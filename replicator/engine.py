"""The engine: runs jobs — drives the state machine, performs its effects, checkpoints.

API (what the command line, the service, the demo and the benchmarks build on)::

    from replicator.engine import Engine, EngineSettings, JobOutcome
    from replicator.checkpoints import SqliteStore
    from replicator.metrics import Metrics

    engine = Engine.from_config(config, SqliteStore(config.checkpoints), Metrics(),
                                progress, identity=identity, via="relay", ...)
    # or: Engine(EngineSettings(...), store, metrics, progress, agents={"local": agent})
    async with engine:                                     # closes the agents it created
        outcome = await engine.backup(app)                 # into its (new) backup canister
        outcome = await engine.backup(app, target, via="relay", keep=3)
        outcome = await engine.restore(backup, target=None, snapshot=None, via=None,
                                       new_canister=False, wasm=None)
        outcome = await engine.archive_export(app, "app.icra")
        outcome = await engine.archive_import("app.icra", target)
        outcome = await engine.verify(app, backup)         # endpoints: CanisterRef | ArchiveRef
        outcome = await engine.run(job)                    # any Job; resumes its unfinished twin
        outcome = await engine.resume(job_id)
    sys.exit(outcome.exit_code)

``EngineSettings`` (keyword overrides of ``from_config``): ``limits``,
``network_limits``, ``retry``, ``transfer`` (:class:`Transfer`: max/min
bytes per call), ``concurrency`` (runs in flight per job), ``via``
(``"direct"`` or ``"relay"`` between canisters), ``controllers`` (of created
canisters, text principals; default: the identity), ``initial_cycles``,
``create_with`` (``"auto"``, ``"provisional"``, ``"ledger"``),
``cycles_ledger``, ``backup_keep``, ``max_restarts``.  Progress goes to a
:class:`~replicator.progress.Progress`; metrics to
:class:`~replicator.metrics.Metrics`.

- ``run(job)`` first looks for an unfinished job with the same fingerprint
  (kind, source, target) in the checkpoint store and continues it (its id,
  this call's options); otherwise it records ``job`` and starts it.
- The outcome (:class:`JobOutcome`) carries the final state, the documented
  exit code, the error message, bytes and chunks copied in this run, the
  digests, and notes.  A job that fails is *returned*, not raised; errors
  raised before a job exists (a bad canister given to ``backup`` when a
  backup canister would have to be created) are
  :class:`~replicator.errors.ReplicatorError` s with their exit code.
- Cancellation (``asyncio.CancelledError``, ``KeyboardInterrupt``) is never
  swallowed: the job is recorded as ``cancelled`` at its last checkpoint
  and the exception propagates.  Re-running the same command resumes.

How a job runs: every new state is saved *before* its effects are
performed; each effect's outcome is fed back as the next event
(:func:`replicator.jobs.advance`).  Copies go through the pump
(:mod:`replicator.pump`), every call through the limits and retries
(:mod:`replicator.calls`).  A chunk is recorded as done only after the
target acknowledged it; a resumed copy first asks the target which chunks
it holds (``icrp_import_status``, or the archive file's intact frames) and
reconciles the checkpoint with that, so nothing acknowledged is copied
twice and nothing the target lost is skipped.  If the source replaces the
snapshot under a running copy (``StaleSnapshot``), the job starts over from
a fresh image, at most ``max_restarts`` times; pages of two images are
never mixed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from types import TracebackType

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.calls import CallRunner, job_level_error
from replicator.checkpoints import Store
from replicator.chunking import Path, TransferSize
from replicator.config import Config
from replicator.errors import (
    EXIT_OK,
    AccessDeniedError,
    JobFailed,
    ReplicatorError,
    UsageError,
)
from replicator.flows import archive as archive_sides
from replicator.flows import canister as canister_sides
from replicator.flows.sides import Context, SourceSide, TargetSide, Transfer
from replicator.jobs import (
    TERMINAL_PHASES,
    AbortImport,
    ArchiveRef,
    Cancel,
    CanisterRef,
    CheckChunks,
    ChunkBook,
    ChunksDone,
    Commit,
    Committed,
    CopyChunks,
    DiscardProgress,
    Effect,
    Event,
    Fail,
    ImageInfo,
    Job,
    JobKind,
    JobState,
    Phase,
    PrepareSource,
    PrepareTarget,
    ReleaseSource,
    SourceReady,
    Start,
    TargetReady,
    Verified,
    VerifyTarget,
    advance,
)
from replicator.limits import Limited, LimitSettings, build_caller
from replicator.metrics import Metrics
from replicator.progress import NullProgress, Progress
from replicator.provision import Provisioner, ProvisionSettings
from replicator.pump import DEFAULT_CONCURRENCY, DirectMover, Mover, Pump, RelayMover, Sizer
from replicator.registry import Registry
from replicator.retry import RetryPolicy

log = logging.getLogger(__name__)

DIRECT, RELAY = "direct", "relay"
ROUTES = (DIRECT, RELAY)
T = 10**12


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs jobs; :meth:`from_config` fills it from a configuration."""

    limits: LimitSettings = field(default_factory=LimitSettings)
    network_limits: Mapping[str, LimitSettings] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transfer: Transfer = field(default_factory=Transfer)
    concurrency: int = DEFAULT_CONCURRENCY  # runs in flight per job
    via: str = DIRECT  # default path between two canisters
    controllers: tuple[str, ...] = ()  # of created canisters; () = the identity alone
    initial_cycles: int = 2 * T  # cycles a created canister starts with
    create_with: str = "auto"  # "provisional" (local), "ledger" (mainnet), "auto": by network
    cycles_ledger: str | None = None  # the cycles ledger's id (None: mainnet's)
    backup_keep: int | None = None  # images a created backup canister keeps (None: its default)
    max_restarts: int = 2  # fresh images after StaleSnapshot within one run

    def __post_init__(self) -> None:
        if self.via not in ROUTES:
            raise UsageError(f"via must be one of {', '.join(ROUTES)}, got {self.via!r}")
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.create_with not in ("auto", "provisional", "ledger"):
            raise UsageError(
                f"create_with must be auto, provisional or ledger, got {self.create_with!r}"
            )

    def limits_for(self, network: str) -> LimitSettings:
        return self.network_limits.get(network, self.limits)

    @classmethod
    def from_config(cls, config: Config, **changes: object) -> EngineSettings:
        settings = cls(
            limits=config.limits_for(None),
            network_limits={name: n.limits for name, n in config.networks.items()},
            retry=config.retry,
            transfer=Transfer(config.chunks.max_size, config.chunks.min_size),
        )
        return replace(settings, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class JobOutcome:
    """How a run of a job ended."""

    job: Job
    state: JobState
    resumed: bool = False
    route: str | None = None  # "direct" / "relay" when chunks were copied
    bytes_copied: int = 0  # in this run, acknowledged by the target
    chunks_copied: int = 0
    chunks_skipped: int = 0  # acknowledged before this run (resume) or already held
    elapsed: float = 0.0
    source_digest: bytes | None = None
    target_digest: bytes | None = None
    notes: tuple[str, ...] = ()

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def ok(self) -> bool:
        return self.state.phase is Phase.DONE

    @property
    def exit_code(self) -> int:
        if self.ok:
            return EXIT_OK
        return self.state.exit_code if self.state.exit_code is not None else 1

    @property
    def error(self) -> str | None:
        return self.state.error

    @property
    def digest(self) -> bytes | None:
        """The image digest the job copied or checked."""
        return None if self.state.image is None else self.state.image.digest

    def to_json(self) -> dict[str, object]:
        image = self.state.image
        return {
            "job_id": self.job.id,
            "kind": self.job.kind.value,
            "source": str(self.job.source),
            "target": None if self.job.target is None else str(self.job.target),
            "phase": self.phase.value,
            "exit_code": self.exit_code,
            "error": self.error,
            "resumed": self.resumed,
            "route": self.route,
            "snapshot_id": None if image is None else image.snapshot_id,
            "size": None if image is None else image.size,
            "digest": None if self.digest is None else self.digest.hex(),
            "source_digest": None if self.source_digest is None else self.source_digest.hex(),
            "target_digest": None if self.target_digest is None else self.target_digest.hex(),
            "bytes_copied": self.bytes_copied,
            "chunks_copied": self.chunks_copied,
            "chunks_skipped": self.chunks_skipped,
            "elapsed_seconds": round(self.elapsed, 3),
            "notes": list(self.notes),
        }


AgentSource = Callable[[str], Agent]

# Per metrics registry: the phase each unfinished job is counted in by
# ``replicator_jobs``, so engines sharing one ``Metrics`` (a process running
# several commands) count a resumed job once.  Finished jobs are dropped, so a
# long-running service does not keep one entry per run it ever made.
_COUNTED: weakref.WeakKeyDictionary[Metrics, dict[str, Phase]] = weakref.WeakKeyDictionary()


class Engine:
    """Runs jobs against canisters and archive files (see the module docstring)."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store,
        metrics: Metrics,
        progress: Progress | None = None,
        *,
        agents: AgentSource | Mapping[str, Agent],
        registry: Registry | None = None,
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
        self._owns_registry = registry is None
        self._planning_notes: list[str] = []
        self._running: set[str] = set()  # ids of the jobs this engine is running now
        self.registry = registry if registry is not None else Registry.beside(store)

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

        def connect(name: str) -> Agent:
            network = config.network_named(name)
            return Agent(
                network.url,
                identity,
                network=name,
                root_key=network.root_key,
                fetch_root_key=network.fetch_root_key,
            )

        settings = EngineSettings.from_config(config, **changes)
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
        if self._owns_registry:
            self.registry.close()

    # -------------------------------------------------------------- plumbing

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
            self._limited[network] = build_caller(
                self.settings.limits_for(network), observer=self.metrics.record_wait
            )
        return self._limited[network]

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

    def track(self, job: Job, phase: Phase) -> None:
        """Count ``job``'s move to ``phase`` (see :meth:`Metrics.job_moved`).

        An unfinished job is in the gauge once, whatever its runs.  A job that
        ends is forgotten: a later run starts from its stored terminal phase,
        which counts nowhere, and counts as finished again only when it ends.
        """
        phases = _COUNTED.setdefault(self.metrics, {})
        old = phases.get(job.id)
        if old is phase:
            return
        self.metrics.job_moved(job.kind, old, phase)
        if phase in TERMINAL_PHASES:
            phases.pop(job.id, None)
        else:
            phases[job.id] = phase

    def sizer(self, path: Path, limit: int | None) -> Sizer:
        transfer = self.settings.transfer
        bounds = [b for b in (limit, transfer.max_size) if b is not None]
        size = TransferSize.for_path(
            path, limit=min(bounds) if bounds else None, floor=transfer.min_size
        )
        return Sizer(size, path, self.metrics.set_chunk_size)

    def context(self, job: Job | None = None, note: Callable[[str], None] | None = None) -> Context:
        """What sides need, for ``job`` (or for work before a job exists)."""

        def default_note(text: str) -> None:
            log.info("%s", text)
            if job is not None:
                self.progress.note(job, text)
            else:  # planning (e.g. creating a backup canister): told once the job starts
                self._planning_notes.append(text)

        return Context(
            runner_for=lambda network: self.runner(network, job),
            agent_for=self.agent,
            sizer_for=self.sizer,
            note=note or default_note,
        )

    def provisioner(self, network: str, note: Callable[[str], None] | None = None) -> Provisioner:
        """Creates canisters on ``network`` with the configured controllers and cycles."""
        agent = self.agent(network)
        note = note or self.context().note
        settings = self.settings
        controllers = tuple(Principal.from_text(c) for c in settings.controllers)
        method = settings.create_with
        if method == "auto":
            method = "provisional" if network == "local" else "ledger"
        return Provisioner(
            agent,
            self.runner(network),
            self.registry,
            self.metrics,
            network=network,
            settings=ProvisionSettings(
                controllers=controllers or (agent.identity.principal,),
                initial_cycles=settings.initial_cycles,
                method="provisional" if method == "provisional" else "ledger",
                ledger=settings.cycles_ledger,
            ),
            note=note,
        )

    # ------------------------------------------------------------ job kinds

    async def backup(
        self,
        source: CanisterRef,
        target: CanisterRef | None = None,
        *,
        via: str | None = None,
        keep: int | None = None,
    ) -> JobOutcome:
        """Back ``source`` up into ``target``, or into its registered or a new backup canister."""
        from replicator.flows.backup import plan_backup

        job = await plan_backup(self, source, target, via=via, keep=keep)
        return await self.run(job)

    async def restore(
        self,
        backup: CanisterRef,
        target: CanisterRef | None = None,
        *,
        snapshot: int | None = None,
        via: str | None = None,
        new_canister: bool = False,
        wasm: str | FsPath | None = None,
    ) -> JobOutcome:
        """Restore an image of ``backup`` (newest, or ``snapshot``) into ``target``.

        Without ``target`` the image goes back into the canister it came from;
        with ``new_canister`` into a canister created for it, running ``wasm``
        (a path; default: the module the original canister runs).
        """
        from replicator.flows.restore import plan_restore

        job = await plan_restore(
            self, backup, target, snapshot=snapshot, via=via, new_canister=new_canister, wasm=wasm
        )
        return await self.run(job)

    async def archive_export(self, source: CanisterRef, path: str | FsPath) -> JobOutcome:
        """Write ``source``'s image to the archive file ``path`` (resuming a partial file)."""
        return await self.run(Job(JobKind.ARCHIVE_EXPORT, source, ArchiveRef(str(path))))

    async def archive_import(
        self, path: str | FsPath, target: CanisterRef, *, via: str | None = None
    ) -> JobOutcome:
        """Import the archive file ``path`` into ``target`` (the file is verified first)."""
        del via  # an archive's bytes are local: always the relay path
        return await self.run(Job(JobKind.ARCHIVE_IMPORT, ArchiveRef(str(path)), target))

    async def verify(
        self, source: CanisterRef | ArchiveRef, target: CanisterRef | ArchiveRef | None = None
    ) -> JobOutcome:
        """Read ``source``'s image chunk by chunk against its digests; compare ``target``'s."""
        return await self.run(Job(JobKind.VERIFY, source, target))

    # ------------------------------------------------------------------ runs

    async def run(self, job: Job) -> JobOutcome:
        """Run ``job``, or continue its unfinished twin (same fingerprint)."""
        existing = await asyncio.to_thread(self.store.find_resumable, job.fingerprint)
        if existing is None:
            state = await asyncio.to_thread(self.store.create_job, job)
            return await self._run(state, {}, resumed=False)
        checkpoint = await asyncio.to_thread(self.store.load, existing)
        state = replace(checkpoint.state, job=replace(checkpoint.state.job, options=job.options))
        return await self._run(state, checkpoint.acked, resumed=True)

    async def resume(self, job_id: str) -> JobOutcome:
        """Continue the job ``job_id`` from its checkpoint."""
        checkpoint = await asyncio.to_thread(self.store.load, job_id)
        state = checkpoint.state
        if state.phase is Phase.DONE:
            return JobOutcome(state.job, state, resumed=True, notes=("the job is already done",))
        return await self._run(state, checkpoint.acked, resumed=True)

    async def _run(self, state: JobState, acked: dict[int, bytes], *, resumed: bool) -> JobOutcome:
        job_id = state.job.id
        if job_id in self._running:
            raise UsageError(
                f"job {job_id} ({state.job.kind} of {state.job.source}) is already running in "
                "this process; wait for it to finish"
            )
        self._running.add(job_id)
        try:
            return await self._run_once(state, acked, resumed=resumed)
        finally:
            self._running.discard(job_id)

    async def _run_once(
        self, state: JobState, acked: dict[int, bytes], *, resumed: bool
    ) -> JobOutcome:
        run = _JobRun(self, state, acked, resumed)
        self.track(state.job, state.phase)
        self.progress.started(state.job, resumed)
        planned, self._planning_notes = self._planning_notes, []
        for text in planned:
            run.note(text)
        try:
            await run.drive()
        except (asyncio.CancelledError, KeyboardInterrupt):
            run.stop(Cancel())
            self.progress.finished(state.job, run.outcome())
            raise
        finally:
            await run.close()
        outcome = run.outcome()
        self.progress.finished(state.job, outcome)
        return outcome


# ---------------------------------------------------------------- one run


class _JobRun:
    """One run of one job: its sides, book, counters and the drive loop."""

    def __init__(
        self, engine: Engine, state: JobState, acked: dict[int, bytes], resumed: bool
    ) -> None:
        self.engine = engine
        self.state = state
        self.job = state.job
        self.acked = dict(acked)
        self.resumed = resumed
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.route: str | None = None
        self.bytes_copied = 0
        self.chunks_copied = 0
        self.chunks_skipped = 0
        self.target_digest: bytes | None = None
        self.restarts = 0
        self.ctx = engine.context(self.job, self.note)
        self._source: SourceSide | None = None
        self._target_side: TargetSide | None = None

    def _sides(self) -> tuple[SourceSide, TargetSide | None]:
        # Made on first use, inside the run: a bad option fails the job, as it should.
        if self._source is None:
            self._source = _source_side(self.job, self.ctx)
            self._target_side = _target_side(self.job, self.ctx)
        return self._source, self._target_side

    @property
    def source(self) -> SourceSide:
        return self._sides()[0]

    def note(self, text: str) -> None:
        log.info("job %s: %s", self.job.id, text)
        self.notes.append(text)
        self.engine.progress.note(self.job, text)

    # -- the loop

    async def drive(self) -> None:
        while True:
            try:
                await self._steps()
                return
            except ie.StaleSnapshot as exc:
                if self.restarts >= self.engine.settings.max_restarts:
                    self._fail(exc)
                    return
                self.restarts += 1
                self.note(f"the source replaced its snapshot ({exc}); starting from a new image")
                self._apply(Fail.of(exc))
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # every failure ends the job with its exit code
                self._fail(exc)
                return

    async def _steps(self) -> None:
        queue: list[Effect] = list(self._apply(Start()))
        while queue:
            event = await self._perform(queue.pop(0))
            if event is not None:
                queue.extend(self._apply(event))

    def _apply(self, event: Event) -> tuple[Effect, ...]:
        step = advance(self.state, event)
        old = self.state.phase
        self.state = step.state
        when = self.engine.store.save(self.state)  # before any effect of the new state
        self.engine.metrics.record_checkpoint(when)
        if self.state.phase is not old:
            self.engine.track(self.job, self.state.phase)
            self.engine.progress.phase(self.job, self.state.phase)
        return step.effects

    def stop(self, event: Cancel) -> None:
        if self.state.phase not in TERMINAL_PHASES:
            self._apply(event)

    def _fail(self, exc: BaseException) -> None:
        error = job_level_error(exc)
        if not isinstance(exc, ReplicatorError | ic.IcError):
            log.error("job %s failed unexpectedly", self.job.id, exc_info=exc)
        if self.state.phase in (Phase.DONE, Phase.FAILED, Phase.CANCELLED):
            return
        self._apply(Fail(str(error) or type(error).__name__, error.exit_code))

    # -- effects

    async def _perform(self, effect: Effect) -> Event | None:
        match effect:
            case PrepareSource(resume=resume):
                return SourceReady(await self.source.prepare(resume))
            case PrepareTarget(image=image, resume_import_id=resume_id):
                digests = await self.source.chunk_digests(image)
                prepared = await self._target().prepare(
                    image, self.source.origin, self.source.journal_seq, digests, resume_id
                )
                if prepared.committed:  # nothing to copy: the target holds the image
                    self.engine.progress.total(self.job, image.size, image.size)
                return TargetReady(prepared.import_id, prepared.committed)
            case DiscardProgress(reason=reason):
                self.note(f"starting the copy over: {reason}")
                await asyncio.to_thread(self.engine.store.reset_chunks, self.job.id)
                self.acked = {}
                await self._target().discard()
                return None
            case AbortImport(import_id=import_id):
                await self._target().abort(import_id)
                return None
            case CopyChunks(image=image, import_id=import_id):
                return ChunksDone(await self._copy(image, import_id))
            case CheckChunks(image=image):
                return ChunksDone(await self._check(image))
            case Commit(import_id=import_id):
                await self._target().commit(self._image(), import_id)
                return Committed()
            case VerifyTarget(image=image):
                self.target_digest = await self._target().digest(image, self.state.import_id)
                return Verified(self.target_digest)
            case ReleaseSource():
                await self.source.release(self._image())
                return None
        raise TypeError(f"not an effect: {effect!r}")

    async def _copy(self, image: ImageInfo, import_id: int | None) -> bytes:
        target = self._target()
        digests = await self.source.chunk_digests(image)
        held = await target.held(image, import_id)
        book = await self._book(image, digests, held)
        mover = await self._mover(image, import_id, digests)
        self.route = mover.route
        return await self._pump(image, book, mover)

    async def _check(self, image: ImageInfo) -> bytes:
        digests = await self.source.chunk_digests(image)
        held = {i for i, d in self.acked.items() if i < len(digests) and d == digests[i]}
        book = await self._book(image, digests, held)
        mover = RelayMover(self.source.reader(image), None, image, digests, describe=_named(self))
        return await self._pump(image, book, mover, copying=False)

    async def _book(self, image: ImageInfo, digests: Sequence[bytes], held: set[int]) -> ChunkBook:
        """Reconcile the checkpoint with what the target holds (its word wins)."""
        acked = {i: digests[i] for i in held}
        stale = [i for i, d in self.acked.items() if acked.get(i) != d]
        store = self.engine.store
        if stale:
            await asyncio.to_thread(store.reset_chunks, self.job.id)
            self.acked = {}
        missing = sorted(i for i in acked if i not in self.acked)
        if missing:
            await asyncio.to_thread(store.ack_chunks, self.job.id, [(i, acked[i]) for i in missing])
        self.acked = acked
        self.chunks_skipped = len(acked)
        book = ChunkBook.for_image(image, acked)
        done = book.acked_bytes(image.size, image.chunk_size)
        self.engine.progress.total(self.job, image.size, done)
        return book

    async def _mover(
        self, image: ImageInfo, import_id: int | None, digests: Sequence[bytes]
    ) -> Mover:
        source, target = self.source, self._target()
        if await self._direct(source, target) and import_id is not None:
            assert isinstance(source, canister_sides.CanisterSource)
            assert isinstance(target, canister_sides.CanisterTarget)
            if await self._push_allowed(source, target):
                pusher = source.pusher(target.principal, image, import_id)
                return DirectMover(pusher, source.sizer(Path.PUSH), digests)
        writer = target.writer(image, import_id)
        return RelayMover(source.reader(image), writer, image, digests, describe=_named(self))

    async def _push_allowed(
        self, source: canister_sides.CanisterSource, target: canister_sides.CanisterTarget
    ) -> bool:
        """Grant what the direct path needs; without the rights, relay — unless asked for."""
        try:
            await canister_sides.allow_push(source, target)
        except AccessDeniedError as exc:
            if self.job.options.get("via") == DIRECT:
                raise
            self.note(f"using the relay path: {exc}")
            return False
        return True

    async def _direct(self, source: SourceSide, target: TargetSide) -> bool:
        if not isinstance(source, canister_sides.CanisterSource):
            return False
        if not isinstance(target, canister_sides.CanisterTarget):
            return False
        via = str(self.job.options.get("via") or self.engine.settings.via)
        if via not in ROUTES:
            raise UsageError(f"via must be one of {', '.join(ROUTES)}, got {via!r}")
        if via == RELAY:
            return False
        if source.endpoint.network != target.endpoint.network:
            self.note("source and target are on different networks: using the relay path")
            return False
        info = await source.info()
        if not info.can("push"):
            self.note(f"{source.endpoint} cannot push (no 'push' capability): using the relay")
            return False
        return True

    async def _pump(
        self, image: ImageInfo, book: ChunkBook, mover: Mover, *, copying: bool = True
    ) -> bytes:
        engine, job = self.engine, self.job

        async def ack(acks: Sequence[tuple[int, bytes]]) -> None:
            when = await asyncio.to_thread(engine.store.ack_chunks, job.id, acks)
            engine.metrics.record_checkpoint(when)
            self.acked.update(acks)

        def advanced(nbytes: int, nchunks: int) -> None:
            self.bytes_copied += nbytes
            self.chunks_copied += nchunks
            if copying:
                engine.metrics.record_copied(job.kind, mover.route, nbytes, nchunks)
            engine.progress.advanced(job, nbytes)

        pump = Pump(
            image,
            book,
            mover,
            ack=ack,
            advanced=advanced,
            concurrency=engine.settings.concurrency,
        )
        return await pump.run()

    # -- helpers

    def _target(self) -> TargetSide:
        target = self._sides()[1]
        if target is None:
            raise UsageError(f"job {self.job.id} has no target")
        return target

    def _image(self) -> ImageInfo:
        if self.state.image is None:
            raise JobFailed(f"job {self.job.id} has no image yet")
        return self.state.image

    async def close(self) -> None:
        if self._source is not None:
            await self._source.close()
        if self._target_side is not None:
            await self._target_side.close()

    def outcome(self) -> JobOutcome:
        image = self.state.image
        return JobOutcome(
            job=self.job,
            state=self.state,
            resumed=self.resumed,
            route=self.route,
            bytes_copied=self.bytes_copied,
            chunks_copied=self.chunks_copied,
            chunks_skipped=self.chunks_skipped,
            elapsed=time.monotonic() - self.started,
            source_digest=None if image is None else image.digest,
            target_digest=self.target_digest,
            notes=tuple(self.notes),
        )


def _source_side(job: Job, ctx: Context) -> SourceSide:
    if isinstance(job.source, CanisterRef):
        return canister_sides.CanisterSource(job.source, ctx, snapshot=_int_option(job, "snapshot"))
    return archive_sides.ArchiveSource(job.source, ctx)


def _target_side(job: Job, ctx: Context) -> TargetSide | None:
    if job.target is None:
        return None
    if isinstance(job.target, CanisterRef):
        return canister_sides.CanisterTarget(job.target, ctx)
    return archive_sides.ArchiveTarget(job.target, ctx)


def _int_option(job: Job, name: str) -> int | None:
    value = job.options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"option {name} must be an integer, got {value!r}")
    return value


def _named(run: _JobRun) -> str:
    return str(run.job.source)


__all__ = ["DIRECT", "RELAY", "Engine", "EngineSettings", "JobOutcome", "Transfer"]
