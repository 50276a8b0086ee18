"""The fleet run's state machine (pure): discover the members, run the due ones, report.

A fleet run is one job whose source is the fleet's index (a platform
canister, or a file of ids).  It re-reads the membership (``Discover``),
then runs every member that is due and not yet finished in this run
(``RunMembers``), and ends ``done`` with the round's figures — also when
members failed: a failing member is counted and retried by a later run,
it never fails the fleet.

What a crash must not lose lives in the store's member table
(:mod:`replicator.fleetstore`): each member's row records the fleet job
that last finished it, so a resumed run skips them.  ``detail`` keeps the
discovery's figures (a resumed run that got past discovery does not list
the members again) and, at the end, the round's totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from replicator.errors import InvalidTransition
from replicator.job import JobState, Phase
from replicator.machine import Cancel, Fail, Start, Step, expect, started, stopped

DISCOVERING = "discovering"
RUNNING = "running"
PHASES = (DISCOVERING, RUNNING)


# ----------------------------------------------------------------- effects


@dataclass(frozen=True)
class Discover:
    """List the members from the fleet's sources and record them in the member table."""


@dataclass(frozen=True)
class RunMembers:
    """Run every listed member that is due and not finished in ``round_id``."""

    round_id: str


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class Discovered:
    """The membership as listed now, and what changed since the last listing."""

    listed: int
    added: int
    gone: int


@dataclass(frozen=True)
class MembersRan:
    """Every selected member was run: the round's totals (this run and resumed ones)."""

    ok: int
    failed: int
    failures: Mapping[str, int] = field(default_factory=dict)  # error class → members


def advance(state: JobState, event: object) -> Step:
    """The next state and effects of a fleet run (see the module docstring)."""
    match event:
        case Start():
            if state.detail.get("listed") is not None and state.phase != Phase.DONE:
                return Step(started(state, RUNNING), (RunMembers(state.job.id),))
            return Step(started(state, DISCOVERING), (Discover(),))
        case Discovered():
            expect(state, event, {DISCOVERING})
            detail = {
                **state.detail,
                "listed": event.listed,
                "added": event.added,
                "gone": event.gone,
            }
            new = replace(state, phase=RUNNING, detail=detail)
            return Step(new, (RunMembers(state.job.id),))
        case MembersRan():
            expect(state, event, {RUNNING})
            detail = {
                **state.detail,
                "ok": event.ok,
                "failed": event.failed,
                "failures": dict(sorted(event.failures.items())),
            }
            return Step(replace(state, phase=Phase.DONE, detail=detail))
        case Fail() | Cancel():
            return stopped(state, event)
    raise InvalidTransition(f"a fleet run cannot take {type(event).__name__}")
