"""The contract between the engine and a job kind (a *flow*).

The engine (:mod:`replicator.engine`) runs jobs of any kind and knows none by
name.  A kind is a :class:`Kind` registered in :mod:`replicator.kinds` by
its flow module (``replicator/flows/<kind>.py``); it brings

- a **planner** (optional): turns a :class:`JobRequest` — what a command,
  a config job or a fleet asks for — into a :class:`~replicator.job.Job`,
  e.g. creating the backup canister a backup needs.  It gets a
  :class:`PlanContext` and may note what it did (the notes are shown when
  the job starts, and belong to this request only);
- a **state machine** (pure, :mod:`replicator.machine`);
- a **performer** per run: performs the machine's effects and returns the
  next event.  It gets a :class:`RunContext`: the job, the settings, calls
  through the limits, the checkpoint store, progress and metrics — everything
  explicitly, never the engine itself.

A performer raises :class:`Restart` when the run must begin again from the
machine's ``Start`` (e.g. the source replaced its snapshot under a copy);
the engine does so at most ``max_restarts`` times.  Any other exception
fails the job with the exit code :mod:`replicator.classify` assigns.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from canister_iface.agent import Agent
from replicator.calls import CallRunner
from replicator.checkpoints import Store
from replicator.chunking import Path
from replicator.errors import UsageError
from replicator.fresh import FreshImages
from replicator.job import (
    ArchiveRef,
    CanisterRef,
    Endpoint,
    Job,
    JobOutcome,
    JobRequest,
    JobState,
    Phase,
)
from replicator.machine import Machine
from replicator.metrics import Metrics
from replicator.progress import Progress
from replicator.provision import Provisioner
from replicator.pump import Sizer
from replicator.settings import EngineSettings
from replicator.subnets import SubnetMap

Note = Callable[[str], None]


async def _not_known(network: str, a: str, b: str) -> bool:
    del network, a, b
    return False


@dataclass(frozen=True)
class Calls:
    """What code that talks to canisters needs: agents, calls through the limits, sizes."""

    agent_for: Callable[[str], Agent]  # network → its agent
    runner_for: Callable[[str], CallRunner]  # network → calls through its limits and retries
    sizer_for: Callable[[Path, int | None], Sizer]  # path, a canister's limit → adaptive size
    note: Note  # a line for the progress display
    # network → which subnet hosts a canister (the per-subnet limits' map), or
    # None when the network has no per-subnet limits.
    subnets_for: Callable[[str], SubnetMap | None] = lambda network: None
    # (network, canister, canister) → both known to be on one subnet (certified
    # state); False when either cannot be told, so a push is metered as XNet.
    same_subnet: Callable[[str, str, str], Awaitable[bool]] = _not_known
    # Images a backup's planner had frozen, for its job (one per engine).
    fresh_images: FreshImages = field(default_factory=FreshImages)


class Verb(enum.StrEnum):
    """What an :class:`Action` does."""

    CREATE = "create"  # a canister (paid in cycles on mainnet)
    SPEND = "spend"  # cycles (top-ups)
    OVERWRITE = "overwrite"  # a canister's state or a file
    DELETE = "delete"
    STOP = "stop"  # a canister, for a while
    MOVE = "move"  # bytes from a source to a target (informational)


@dataclass(frozen=True)
class Action:
    """Something a job will do that a user should know before: ``--dry-run`` lists them.

    ``consent``: the action costs or destroys something, so a terminal asks
    first and a script needs ``--yes``.
    """

    verb: Verb
    what: str
    cycles: int = 0  # estimated cycles it spends
    nbytes: int = 0  # bytes it moves or overwrites
    consent: bool = True

    def __str__(self) -> str:
        return f"{self.verb}: {self.what}"


# Asked before actions that need consent: returns to go ahead, raises a
# UsageError (exit 2) when the user (or the lack of --yes) says no.
Consent = Callable[[Sequence[Action]], Awaitable[None]]


async def consent_given(actions: Sequence[Action]) -> None:
    """Consent for callers that decided up front (the service, tests, ``--yes``)."""
    del actions


@dataclass
class PlanContext:
    """What a planner may use; its notes and actions belong to this request only.

    A planner announces what it is about to do with :meth:`intend` *before*
    doing it; under ``--dry-run`` it then must not do it (and plans on with a
    stand-in, e.g. :func:`to_be_created`).
    """

    settings: EngineSettings
    calls: Calls
    store: Store
    provisioner_for: Callable[[str], Provisioner]
    consent: Consent = consent_given
    dry_run: bool = False
    actions: list[Action] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.calls.note(text)

    async def intend(self, *actions: Action) -> bool:
        """Record ``actions``; ``True``: go ahead, ``False``: a dry run, do not.

        Asks for consent first where an action needs it (a refusal raises).
        """
        self.actions.extend(actions)
        if self.dry_run:
            return False
        needed = [a for a in actions if a.consent]
        if needed:
            await self.consent(needed)
        return True


def to_be_created(what: str, network: str) -> CanisterRef:
    """A stand-in for a canister a dry run would create (never called)."""
    return CanisterRef(f"<{what}>", network)


@dataclass
class RunContext:
    """What a performer may use during one run of one job."""

    job: Job
    settings: EngineSettings
    calls: Calls
    store: Store
    metrics: Metrics
    progress: Progress
    provisioner_for: Callable[[str], Provisioner]
    acked: dict[int, bytes]  # chunks acknowledged before this run (from the checkpoint)
    resumed: bool
    # Plans and runs another job through the same engine (limits, store, metrics):
    # what a fleet run does for each member.  None: this run may not start jobs.
    submit: Callable[[JobRequest], Awaitable[JobOutcome]] | None = None

    def note(self, text: str) -> None:
        self.calls.note(text)

    def total(self, total_bytes: int, done_bytes: int) -> None:
        self.progress.total(self.job, total_bytes, done_bytes)

    def advanced(self, nbytes: int) -> None:
        self.progress.advanced(self.job, nbytes)

    async def ack(self, acks: Sequence[tuple[int, bytes]]) -> None:
        """Record chunks the target acknowledged, durably (then the metrics know)."""
        when = await self.store.ack_chunks(self.job.id, acks)
        self.metrics.record_checkpoint(when)
        self.acked.update(acks)

    async def reset_chunks(self) -> None:
        """Forget every acknowledged chunk of this job (it belongs to another image)."""
        await self.store.reset_chunks(self.job.id)
        self.acked.clear()


@dataclass(frozen=True)
class RunReport:
    """What a performer tells the outcome of a run (see :class:`~replicator.job.JobOutcome`)."""

    route: str | None = None
    bytes_copied: int = 0
    chunks_copied: int = 0
    chunks_skipped: int = 0
    digest: bytes | None = None
    source_digest: bytes | None = None
    target_digest: bytes | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class Performer(Protocol):
    """Performs one run's effects (see the module docstring)."""

    async def perform(self, effect: object) -> object | None:
        """Do ``effect``; the event it produced, or ``None``."""
        ...

    def report(self, state: JobState) -> RunReport:
        """The figures of this run, given the state it ended in."""
        ...

    async def close(self) -> None: ...


class Restart(Exception):
    """Begin the run again from ``Start`` (at most ``max_restarts`` times per run)."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclass(frozen=True)
class Planned:
    """A planned job: what it will do (``actions``) and what planning noted."""

    job: Job
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    dry_run: bool = False


Planner = Callable[[PlanContext, JobRequest], Awaitable[Job]]


async def plan_as_asked(ctx: PlanContext, request: JobRequest) -> Job:
    """The default planner: the job is the request."""
    del ctx
    return request.job()


@dataclass(frozen=True)
class Kind:
    """A job kind: its name, endpoints, planner, machine and performer."""

    name: str
    summary: str  # one line for --help and docs
    advance: Machine
    performer: Callable[[RunContext], Performer]
    sources: tuple[type, ...] = (CanisterRef,)
    targets: tuple[type | None, ...] = (CanisterRef,)  # None: no target needed
    plan: Planner = plan_as_asked
    # The planner finds or creates the target when a request names none.
    target_optional: bool = False
    # The kind's own metrics, made on the shared registry when an engine starts
    # (see Metrics.extension); None: the engine's metrics say all.
    metrics: Callable[[CollectorRegistry], object] | None = None
    # The kind's unfinished phases besides ``pending`` (metrics start them at 0).
    phases: tuple[str, ...] = (Phase.PREPARING, Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING)

    def check(self, job: Job | JobRequest) -> None:
        """A usage error unless the endpoints are ones this kind takes.

        A request may leave the target out where the planner finds one.
        """
        if job.kind != self.name:
            raise UsageError(f"a {job.kind} job is not a {self.name} job")
        if not isinstance(job.source, self.sources):
            raise UsageError(
                f"a {self.name} job cannot read from {job.source}: {_want(self.sources)}"
            )
        if job.target is None and isinstance(job, JobRequest) and self.target_optional:
            return
        if not _fits(job.target, self.targets):
            raise UsageError(
                f"a {self.name} job cannot write to {job.target}: {_want(self.targets)}"
            )


def _fits(endpoint: Endpoint | None, allowed: tuple[type | None, ...]) -> bool:
    if endpoint is None:
        return None in allowed
    return isinstance(endpoint, tuple(t for t in allowed if t is not None))


def _want(allowed: Sequence[type | None]) -> str:
    names = [
        "a canister"
        if t is CanisterRef
        else "an archive file"
        if t is ArchiveRef
        else "nothing"
        if t is None
        else t.__name__
        for t in allowed
    ]
    return "needs " + " or ".join(names)
