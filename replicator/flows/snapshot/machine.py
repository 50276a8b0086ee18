"""The state machine of the snapshot kinds: ``snapshot-backup``, ``-restore``, ``-copy``.

Pure (:mod:`replicator.machine` explains the contract).  A snapshot job is a
list of **steps** taken in a fixed global order; which of them a job still
needs follows from its kind, its options and the **facts** it has learnt,
kept in ``JobState.detail["facts"]`` (plain values).  The machine records
the step it is about to take (``detail["step"]``) *before* the performer
takes it, so a run that dies leaves behind what it was doing — above all
that it stopped a canister — and the next run can put it right.

==================  ===========  ===========================================================
step                phase        what the performer does (and the facts it reports)
==================  ===========  ===========================================================
``inspect``         preparing    reconcile with the IC and the repository: rights, run status,
                                 the snapshots on chain, what an earlier run left; always first
``stop_source``     preparing    stop the source (``source_stopped``, ``stopped_at``)
``take``            preparing    take the snapshot, replacing the oldest of ours if the slots
                                 are full (``ic_snapshot``, ``ic_snapshot_ours``)
``start_source``    preparing    start the source again (``source_started_at``, ``downtime``)
``store``           copying      read every part into the repository (``stored``)
``manifest``        committing   write the manifest, last (``manifest``)
``open_upload``     copying      upload the metadata: a new snapshot on the target
                                 (``upload_snapshot``)
``upload``          copying      upload the data: from the repository (restore) or streamed
                                 from the source snapshot (copy) (``uploaded``)
``verify_upload``   verifying    re-read what was uploaded; every chunk's digest must match
``stop_target``     committing   stop the target before loading (``target_stopped``)
``load``            committing   ``load_canister_snapshot`` (``loaded``)
``start_target``    committing   start the target (``target_started``)
``verify_target``   verifying    certified module hash and memory sizes (``verified``)
``settle``          committing   a target created for the job (option ``created``) gets
                                 exactly the configured controllers
``cleanup``         cleaning     delete the IC snapshots the job no longer needs (``cleaned``)
==================  ===========  ===========================================================

``Start`` (a new run, or a resumed one) always begins with ``inspect``;
every later step is the first one, in the order above, that the facts say
is still needed.  The performer reports each step's outcome as
:class:`Done` with the facts it learnt; a ``None`` fact is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from replicator.errors import InvalidTransition
from replicator.job import Job, JobState, Phase
from replicator.machine import Cancel, Fail, Start, expect, started, stopped
from replicator.machine import Step as MachineStep

BACKUP = "snapshot-backup"
RESTORE = "snapshot-restore"
COPY = "snapshot-copy"
KINDS = (BACKUP, RESTORE, COPY)
CLEANING = "cleaning"
PHASES = (Phase.PREPARING, Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING, CLEANING)

Facts = Mapping[str, Any]


# -------------------------------------------------------------------- steps


def _opt(job: Job, name: str, default: bool) -> bool:
    value = job.options.get(name)
    return default if value is None else bool(value)


def _takes(job: Job, facts: Facts) -> bool:
    # A new snapshot of the source is taken unless one is being reused (ours from
    # an earlier run, or an existing one the identity may only read).
    return job.kind in (BACKUP, COPY) and facts.get("ic_snapshot") is None


def _stops(job: Job, facts: Facts) -> bool:
    return (
        _takes(job, facts)
        and _opt(job, "stop", True)
        and bool(facts.get("source_running"))
        and not facts.get("source_stopped")
    )


def _uploads(job: Job, facts: Facts) -> bool:
    return job.kind == RESTORE or (job.kind == COPY and not facts.get("same_subnet"))


def _loads(job: Job, facts: Facts) -> bool:
    return job.kind in (RESTORE, COPY) and not facts.get("loaded")


# Each step with its phase and when it is still needed.
_STEPS: tuple[tuple[str, str, Callable[[Job, Facts], bool]], ...] = (
    ("inspect", Phase.PREPARING, lambda job, facts: True),
    ("stop_source", Phase.PREPARING, _stops),
    ("take", Phase.PREPARING, _takes),
    ("start_source", Phase.PREPARING, lambda job, facts: bool(facts.get("source_stopped"))),
    ("store", Phase.COPYING, lambda job, f: job.kind == BACKUP and not f.get("stored")),
    ("manifest", Phase.COMMITTING, lambda job, f: job.kind == BACKUP and not f.get("manifest")),
    (
        "open_upload",
        Phase.COPYING,
        lambda job, f: _uploads(job, f) and not f.get("upload_snapshot") and not f.get("loaded"),
    ),
    (
        "upload",
        Phase.COPYING,
        lambda job, f: _uploads(job, f) and not f.get("uploaded") and not f.get("loaded"),
    ),
    (
        "verify_upload",
        Phase.VERIFYING,
        lambda job, f: _uploads(job, f) and not f.get("upload_verified") and not f.get("loaded"),
    ),
    (
        "stop_target",
        Phase.COMMITTING,
        lambda job, f: _loads(job, f) and bool(f.get("target_running")),
    ),
    ("load", Phase.COMMITTING, _loads),
    (
        "start_target",
        Phase.COMMITTING,
        lambda job, f: job.kind in (RESTORE, COPY) and not f.get("target_started"),
    ),
    (
        "verify_target",
        Phase.VERIFYING,
        lambda job, f: job.kind in (RESTORE, COPY) and not f.get("verified"),
    ),
    (
        "settle",
        Phase.COMMITTING,
        lambda job, f: bool(job.options.get("created")) and not f.get("settled"),
    ),
    ("cleanup", CLEANING, lambda job, f: not f.get("cleaned")),
)
STEPS: tuple[str, ...] = tuple(name for name, _, _ in _STEPS)
_PHASE = {name: phase for name, phase, _ in _STEPS}
_RANK = {name: i for i, name in enumerate(STEPS)}


def next_step(job: Job, facts: Facts, after: str | None) -> str | None:
    """The first step after ``after`` (``None``: from the start) that is still needed."""
    start = -1 if after is None else _RANK[after]
    for name, _, needed in _STEPS[start + 1 :]:
        if needed(job, facts):
            return name
    return None


def phase_of(step: str) -> str:
    return _PHASE[step]


# ------------------------------------------------------------------- detail


@dataclass(frozen=True)
class SnapshotDetail:
    """What the machine keeps between runs (``JobState.detail``)."""

    step: str | None = None  # the step being taken (recorded before it is taken)
    facts: Facts = field(default_factory=dict)

    @classmethod
    def of(cls, state: JobState) -> SnapshotDetail:
        data = state.detail
        return cls(step=data.get("step"), facts=dict(data.get("facts") or {}))

    def to_payload(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "facts": dict(self.facts),
            # read by `replicator jobs` without knowing this kind (see checkpoints)
            "chunks_total": self.facts.get("chunks_total"),
        }


def facts_of(state: JobState) -> Facts:
    """The facts ``state``'s job has learnt."""
    return SnapshotDetail.of(state).facts


def merged(facts: Facts, learnt: Facts) -> dict[str, Any]:
    """``facts`` updated with ``learnt``; a ``None`` value removes the fact."""
    out = dict(facts)
    for key, value in learnt.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------ events, effects


@dataclass(frozen=True)
class Done:
    """The performer took ``step`` and learnt ``facts``."""

    step: str
    facts: Facts = field(default_factory=dict)


@dataclass(frozen=True)
class Perform:
    """Take ``step`` of ``job``, knowing ``facts`` (the only effect) → :class:`Done`."""

    step: str
    job: Job
    facts: Facts
    resumed_from: str | None = None  # inspect only: the step an earlier run was taking


# -------------------------------------------------------------- transitions


def advance(state: JobState, event: object) -> MachineStep:
    """``state`` + ``event`` → new state + effects (see the module docstring)."""
    match event:
        case Start():
            detail = SnapshotDetail.of(state)
            nxt = replace(detail, step="inspect")
            return MachineStep(
                replace(started(state, Phase.PREPARING), detail=nxt.to_payload()),
                (Perform("inspect", state.job, nxt.facts, resumed_from=detail.step),),
            )
        case Done():
            return _done(state, event)
        case Fail() | Cancel():
            return stopped(state, event)
    raise TypeError(f"not an event of the snapshot kinds: {event!r}")


def _done(state: JobState, event: Done) -> MachineStep:
    detail = SnapshotDetail.of(state)
    expect(state, event, set(PHASES))
    if detail.step != event.step:
        raise InvalidTransition(
            f"job {state.job.id} is taking step {detail.step}, not {event.step}"
        )
    facts = merged(detail.facts, event.facts)
    step = next_step(state.job, facts, event.step)
    if step is None:
        done = SnapshotDetail(step=None, facts=facts)
        return MachineStep(replace(state, phase=Phase.DONE, detail=done.to_payload()))
    nxt = SnapshotDetail(step=step, facts=facts)
    return MachineStep(
        replace(state, phase=phase_of(step), detail=nxt.to_payload()),
        (Perform(step, state.job, facts),),
    )
