"""The state machine of ``compact``: pure (see :mod:`replicator.machine`).

A Wasm memory never shrinks on the IC: after a big delete (or a split that
freed ranges) a canister keeps paying for pages it no longer uses.  Compact
replicates the canister's state into a fresh instance of itself, in this
order, one step at a time, each recorded before the next begins::

    measure → fence → image → backup → reinstall → restore → check → unfence → remeasure

- ``measure``: ``memory_size`` from ``canister_status``;
- ``fence``: ``icrp_set_mode(read_only)``: no write can be lost between the
  image and the restore (writes are refused, with the mode, meanwhile);
- ``image``: a ready image of the canister (its id, size and digest kept);
- ``backup``: the image into the backup canister (the job's target), and
  the backup canister's image digest must equal it — nothing is
  reinstalled before the image is safe elsewhere;
- ``reinstall``: the canister's module reinstalled (memory back to its
  minimum), then ``standby`` at once so that only the restore writes;
- ``restore``: the image from the backup canister into the canister;
- ``check``: a fresh image of the canister must have the same digest;
- ``unfence``: ``primary`` again;
- ``remeasure``: ``memory_size`` after.

With ``new_canister`` (``replicator compact --new-canister``) the state
goes into a fresh canister instead, and routing moves to it::

    measure → prepare → fence → image → copy → check → switch → remeasure → release

- ``prepare``: the new canister (created by the planner, recorded in the
  registry before creation, same module, exactly the configured
  controllers) gets the old one's key range and peers, in ``standby``;
- ``copy``: the old canister's image into the new one (its digest must
  still be the one ``image`` recorded);
- ``check``: the new canister's records, bytes and digest must equal the
  image's (else the old canister stays fenced and keeps its data);
- ``switch``: the new canister takes writes; the old one publishes a
  routing table naming the new owner for its whole key range and is fenced
  there (it answers ``OutOfRange`` naming the new canister);
- ``remeasure``: ``memory_size`` of both;
- ``release``: the old canister's records deleted when asked
  (``free_old``), the registry forgets the new canister; the old canister is
  left for the operator to delete.

``Start`` resumes at the recorded step; the performer asks the canisters
(a restore that committed already is not repeated, an image is recognised
by its digest).  Any unfinished phase accepts ``Fail`` and ``Cancel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from replicator.errors import EXIT_INTEGRITY, InvalidTransition
from replicator.job import JobState, Phase
from replicator.machine import Cancel, Fail, Start, Step, expect, failed, started, stopped

STEPS = (
    "measure",
    "fence",
    "image",
    "backup",
    "reinstall",
    "restore",
    "check",
    "unfence",
    "remeasure",
)
NEW_CANISTER_STEPS = (
    "measure",
    "prepare",
    "fence",
    "image",
    "copy",
    "check",
    "switch",
    "remeasure",
    "release",
)
# Steps during which the canister refuses writes (fenced, writes not yet taken again).
FENCED_STEPS = frozenset(
    STEPS[STEPS.index("fence") : STEPS.index("unfence") + 1]
    + NEW_CANISTER_STEPS[NEW_CANISTER_STEPS.index("fence") : NEW_CANISTER_STEPS.index("switch") + 1]
)
# Phases (for metrics and progress): where each step belongs.
PREPARING, BACKING_UP, RESTORING, VERIFYING = "preparing", "backing_up", "restoring", "verifying"
ROUTING = "routing"
PHASES = (PREPARING, BACKING_UP, RESTORING, VERIFYING, ROUTING)
_PHASE_OF = {
    "measure": PREPARING,
    "fence": PREPARING,
    "image": BACKING_UP,
    "backup": BACKING_UP,
    "reinstall": RESTORING,
    "restore": RESTORING,
    "check": VERIFYING,
    "unfence": VERIFYING,
    "remeasure": VERIFYING,
    "prepare": PREPARING,
    "copy": RESTORING,
    "switch": ROUTING,
    "release": ROUTING,
}


@dataclass(frozen=True)
class Perform:
    """Do ``step``; ``detail`` is what earlier steps found (plain values) → ``StepDone``."""

    step: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class StepDone:
    """``step`` is done; ``found`` joins the job's detail (plain values)."""

    step: str
    found: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DigestDiffers:
    """The image in the backup canister, or the restored state, is not the image."""

    step: str
    message: str


def advance(state: JobState, event: object) -> Step:
    """The next state and effects of a compact job."""
    steps = steps_of(state)
    match event:
        case Start():
            step = str(state.detail.get("step", steps[0]))
            return _at(started(state, _PHASE_OF[step]), step)
        case Fail() | Cancel():
            return stopped(state, event)
    expect(state, event, PHASES)
    current = str(state.detail.get("step", steps[0]))
    match event:
        case StepDone(step=step, found=found):
            if step != current:
                raise InvalidTransition(f"compact job {state.job.id} is at {current}, not {step}")
            detail = {**state.detail, **found}
            later = steps.index(step) + 1
            state = replace(state, detail=detail)
            if later == len(steps):
                return Step(replace(state, phase=Phase.DONE, detail={**detail, "step": "done"}))
            return _at(state, steps[later])
        case DigestDiffers(step=step, message=message):
            return failed(state, f"{step}: {message}", EXIT_INTEGRITY)
    raise InvalidTransition(f"not an event of a compact job: {event!r}")


def steps_of(state: JobState) -> tuple[str, ...]:
    """The steps of this job: in place, or into a new canister."""
    return NEW_CANISTER_STEPS if state.job.options.get("new_canister") else STEPS


def _at(state: JobState, step: str) -> Step:
    if step not in steps_of(state):
        raise InvalidTransition(f"compact job {state.job.id} has no step {step!r}")
    detail = {**state.detail, "step": step}
    state = replace(state, phase=_PHASE_OF[step], detail=detail)
    return Step(state, (Perform(step, detail),))
