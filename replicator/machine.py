"""What every job state machine shares: the engine's three events and the step.

A kind's state machine is a pure function ``advance(state, event) -> Step``:
from a :class:`~replicator.job.JobState` and an event (what the engine
observed) to the new state and the effects the engine must perform next.
The engine saves every new state *before* performing its effects, performs
them through the kind's performer, and feeds each outcome back as the next
event.  Nothing here sleeps, calls or writes.

The engine itself sends only three events, which every machine accepts:
:class:`Start` (a new run), :class:`Fail` and :class:`Cancel`.  All other
events and every effect are the kind's own types; the engine passes them
through without looking inside.  :func:`started` and :func:`stopped` are the
common transitions for the first and the last two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from replicator.errors import EXIT_INTERRUPTED, InvalidTransition
from replicator.job import JobState, Phase


@dataclass(frozen=True)
class Start:
    """Start a pending job, or resume a failed, cancelled or interrupted one."""


@dataclass(frozen=True)
class Fail:
    """The job cannot continue; ``exit_code`` is from :mod:`replicator.errors`."""

    error: str
    exit_code: int


@dataclass(frozen=True)
class Cancel:
    """Stop at the current checkpoint (Ctrl-C, shutdown); resumable."""

    reason: str = "interrupted"


@dataclass(frozen=True)
class Step:
    """The outcome of one transition: the new state and the effects to perform."""

    state: JobState
    effects: tuple[object, ...] = ()


Machine = Callable[[JobState, object], Step]


def started(state: JobState, phase: str) -> JobState:
    """``Start``: enter ``phase`` with the error cleared and the start counted.

    Accepted in every phase but ``done``.
    """
    expect(state, Start(), _not_done(state))
    return replace(state, phase=phase, error=None, exit_code=None, starts=state.starts + 1)


def stopped(state: JobState, event: Fail | Cancel) -> Step:
    """``Fail`` → ``failed``, ``Cancel`` → ``cancelled``; only while the job is unfinished."""
    expect(state, event, _unfinished(state))
    if isinstance(event, Cancel):
        return Step(
            replace(state, phase=Phase.CANCELLED, error=event.reason, exit_code=EXIT_INTERRUPTED)
        )
    return Step(replace(state, phase=Phase.FAILED, error=event.error, exit_code=event.exit_code))


def failed(state: JobState, message: str, exit_code: int) -> Step:
    """A failure the machine itself decides (e.g. a digest that does not match)."""
    return Step(replace(state, phase=Phase.FAILED, error=message, exit_code=exit_code))


def expect(state: JobState, event: object, phases: Iterable[str]) -> None:
    """Raise :class:`InvalidTransition` unless ``state`` is in one of ``phases``."""
    allowed = frozenset(phases)
    if state.phase in allowed:
        return
    if state.phase == Phase.DONE:
        raise InvalidTransition(
            f"job {state.job.id} is done; start a new job to copy the source again"
        )
    raise InvalidTransition(
        f"job {state.job.id} is {state.phase}: cannot accept {type(event).__name__} "
        f"(only in {', '.join(sorted(allowed))})"
    )


def _not_done(state: JobState) -> set[str]:
    return set() if state.phase == Phase.DONE else {state.phase}


def _unfinished(state: JobState) -> set[str]:
    terminal = {Phase.DONE, Phase.FAILED, Phase.CANCELLED}
    return set() if state.phase in terminal else {state.phase}
