"""The state machine of the standby kind (pure).

A standby job makes a canister a hot standby of its source (the primary):
it seeds the standby with a full image, then applies the source's journal
to it for as long as it runs::

    pending ─Start→ preparing ─StandbyReady→ seeding ─(image machine)→ tailing
    tailing ─Resync(reason)→ seeding ─(image machine)→ tailing
    tailing ─CaughtUp→ done            (only with the option ``once``)
    tailing ─Diverged / Gap→ failed    (never silently resynced)

Seeding *is* the image kinds' copy (:mod:`replicator.flows.image.machine`):
while the phase is ``seeding`` the image machine runs on a view of the job
whose phase is ``detail["seed_phase"]``, and its events and effects pass
through unchanged.  The image machine's detail (image, import id, grants)
lives at the top of this kind's detail, so the grants a seed makes are
found like any job's (:data:`~replicator.flows.image.machine.GRANTS_KEY`).
When the image machine reaches ``done``, the standby holds the source's
state at the image's journal sequence and the job starts tailing from it.

What survives a crash: whether the standby was ever seeded by this job
(``seeded``), the seed in progress, and the resyncs counted so far.  Where
the tail continues is *not* kept here: the standby's applied sequence
(its journal head) is the truth, asked for at every start of the tail.
A new job on a canister that this job did not seed seeds it again (the
import is staged: the old state serves until the new one commits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from replicator.errors import EXIT_FAILED, EXIT_INTEGRITY, InvalidTransition
from replicator.flows.image import machine as image
from replicator.job import CanisterRef, JobState, Phase
from replicator.machine import Cancel, Fail, Start, Step, expect, failed, started, stopped

SEEDING = "seeding"
TAILING = "tailing"
PHASES = (Phase.PREPARING, SEEDING, TAILING)

# Why a standby was seeded again (``replicator_standby_resyncs_total{reason}``).
RESYNC_TOO_OLD = "too_old"  # the source's journal no longer reaches the standby's sequence
RESYNC_REASONS = (RESYNC_TOO_OLD,)

_IMAGE_EVENTS = (
    image.SourceReady,
    image.TargetReady,
    image.ChunksDone,
    image.Committed,
    image.Verified,
    image.GrantsNeeded,
    image.GrantsReleased,
)


# ------------------------------------------------------------------- detail


@dataclass(frozen=True)
class StandbyDetail:
    """What the machine remembers between runs, besides the image machine's fields."""

    seeded: bool = False  # the standby holds the source's state at some sequence
    seed_phase: str | None = None  # the image machine's phase while seeding
    seed_reason: str | None = None  # "initial" or a resync reason
    resyncs: int = 0

    @classmethod
    def of(cls, state: JobState) -> StandbyDetail:
        data = state.detail
        phase = data.get("seed_phase")
        reason = data.get("seed_reason")
        return cls(
            seeded=bool(data.get("seeded", False)),
            seed_phase=None if phase is None else str(phase),
            seed_reason=None if reason is None else str(reason),
            resyncs=int(data.get("resyncs", 0)),
        )

    def merged(self, image_detail: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **image_detail,
            "seeded": self.seeded,
            "seed_phase": self.seed_phase,
            "seed_reason": self.seed_reason,
            "resyncs": self.resyncs,
        }


def _with(state: JobState, detail: StandbyDetail, **changes: Any) -> JobState:
    return replace(state, detail=detail.merged(state.detail), **changes)


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class StandbyReady:
    """The standby canister is in ``standby`` mode and can import and apply."""


@dataclass(frozen=True)
class Resync:
    """The tail cannot continue from the standby's sequence: seed it again."""

    reason: str  # one of RESYNC_REASONS
    message: str


@dataclass(frozen=True)
class CaughtUp:
    """The standby applied everything up to the source's head (option ``once``)."""

    applied_seq: int


@dataclass(frozen=True)
class GapFound:
    """``icrp_apply`` answered ``Gap``: a bug or a second writer; stop, never guess."""

    message: str


@dataclass(frozen=True)
class Diverged:
    """A consistency check found different images at the same journal sequence."""

    message: str


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class PrepareStandby:
    """Check the standby (ICRP, import and apply) and set it to ``standby`` mode
    → ``StandbyReady``."""

    source: CanisterRef
    standby: CanisterRef


@dataclass(frozen=True)
class Tail:
    """Apply the source's journal to the standby from the standby's applied sequence,
    until cancelled → ``Resync``, ``GapFound``, ``Diverged`` or (``once``) ``CaughtUp``."""

    source: CanisterRef
    standby: CanisterRef


@dataclass(frozen=True)
class ForgetSeed:
    """The previous seed's acknowledged chunks belong to another image: forget them."""


# --------------------------------------------------------------- transitions


def advance(state: JobState, event: object) -> Step:
    """``state`` + ``event`` → new state + effects (see the module docstring)."""
    match event:
        case Start():
            return Step(started(state, Phase.PREPARING), (PrepareStandby(*_ends(state)),))
        case StandbyReady():
            return _standby_ready(state, event)
        case Resync():
            return _resync(state, event)
        case CaughtUp():
            expect(state, event, {TAILING})
            return Step(replace(state, phase=Phase.DONE))
        case GapFound(message=message):
            expect(state, event, {TAILING})
            return failed(state, message, EXIT_FAILED)
        case Diverged(message=message):
            expect(state, event, {TAILING})
            return failed(state, message, EXIT_INTEGRITY)
        case Fail() | Cancel():
            return stopped(state, event)
    if isinstance(event, _IMAGE_EVENTS):
        return _seed_step(state, event)
    raise TypeError(f"not an event of the standby kind: {event!r}")


def _standby_ready(state: JobState, event: StandbyReady) -> Step:
    expect(state, event, {Phase.PREPARING})
    detail = StandbyDetail.of(state)
    if detail.seeded and detail.seed_phase is None:
        return Step(replace(state, phase=TAILING), (Tail(*_ends(state)),))
    reason = detail.seed_reason or "initial"
    # A seed interrupted by a crash resumes: the image machine reconciles
    # with what the source and the standby report.
    return _seed_start(state, replace(detail, seed_reason=reason), ())


def _resync(state: JobState, event: Resync) -> Step:
    expect(state, event, {TAILING})
    detail = StandbyDetail.of(state)
    detail = replace(detail, seed_reason=event.reason, resyncs=detail.resyncs + 1)
    fresh = replace(state, detail={**state.detail, **image.ImageDetail().to_payload()})
    return _seed_start(fresh, detail, (ForgetSeed(),))


def _seed_start(state: JobState, detail: StandbyDetail, before: tuple[object, ...]) -> Step:
    inner = _inner(state, detail.seed_phase or Phase.PENDING)
    step = image.advance_copy(inner, Start())
    return _outer(state, detail, step, before)


def _seed_step(state: JobState, event: object) -> Step:
    expect(state, event, {SEEDING})
    detail = StandbyDetail.of(state)
    if detail.seed_phase is None:
        raise InvalidTransition(f"job {state.job.id}: {type(event).__name__} while not seeding")
    step = image.advance_copy(_inner(state, detail.seed_phase), event)
    return _outer(state, detail, step, ())


def _inner(state: JobState, phase: str) -> JobState:
    """The view of the job the image machine works on."""
    return replace(state, phase=phase)


def _outer(state: JobState, detail: StandbyDetail, step: Step, before: tuple[object, ...]) -> Step:
    inner = step.state
    outer = replace(state, detail=inner.detail)  # starts: counted by the outer Start
    if inner.phase == Phase.FAILED:
        # The seed failed for good (e.g. a digest mismatch): so does the job.
        detail = replace(detail, seed_phase=Phase.PREPARING)
        error = inner.error or "the seed failed"
        code = inner.exit_code or EXIT_FAILED
        return failed(_with(outer, detail), f"seeding the standby: {error}", code)
    if inner.phase == Phase.DONE:
        detail = replace(detail, seeded=True, seed_phase=None, seed_reason=None)
        nxt = _with(outer, detail, phase=TAILING)
        return Step(nxt, (*before, *step.effects, Tail(*_ends(state))))
    detail = replace(detail, seed_phase=inner.phase)
    return Step(_with(outer, detail, phase=SEEDING), (*before, *step.effects))


def _ends(state: JobState) -> tuple[CanisterRef, CanisterRef]:
    source, target = state.job.source, state.job.target
    if not isinstance(source, CanisterRef) or not isinstance(target, CanisterRef):
        raise InvalidTransition(f"job {state.job.id}: a standby needs two canisters")
    return source, target


def seeding_image(state: JobState) -> Mapping[str, Any]:
    """The image machine's part of the detail (for reports)."""
    return image.ImageDetail.of(state).to_payload()
