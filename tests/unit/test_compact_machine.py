"""The compact kind's state machine: its steps in order, resume, integrity failures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replicator.errors import EXIT_INTEGRITY, InvalidTransition
from replicator.flows.compact import machine as cm
from replicator.job import CanisterRef, Job, JobState, Phase
from replicator.machine import Cancel, Start


def _state(**options: object) -> JobState:
    job = Job(
        "compact",
        CanisterRef("app", "local"),
        CanisterRef("bk", "local"),
        options=options,  # type: ignore[arg-type]
        id="compact-1",
    )
    return JobState(job)


@pytest.mark.parametrize(
    ("options", "steps"),
    [({}, cm.STEPS), ({"new_canister": True}, cm.NEW_CANISTER_STEPS)],
    ids=["in place", "new canister"],
)
def test_every_step_in_order_then_done(options: dict[str, object], steps: tuple[str, ...]) -> None:
    step = cm.advance(_state(**options), Start())
    seen = []
    while step.effects:
        (effect,) = step.effects
        assert isinstance(effect, cm.Perform)
        seen.append(effect.step)
        step = cm.advance(step.state, cm.StepDone(effect.step, {effect.step: True}))
    assert tuple(seen) == steps
    assert step.state.phase == Phase.DONE
    assert all(step.state.detail[s] for s in steps)


def test_a_step_of_the_other_mode_is_refused() -> None:
    state = cm.advance(_state(new_canister=True), Start()).state
    with pytest.raises(InvalidTransition, match="at measure"):
        cm.advance(state, cm.StepDone("backup"))
    resumed = cm.advance(_state(), Start()).state
    with pytest.raises(InvalidTransition, match="no step 'switch'"):
        cm.advance(replace(resumed, detail={"step": "switch"}), Start())


def test_a_resume_continues_at_the_recorded_step_with_what_was_found() -> None:
    step = cm.advance(_state(), Start())
    for name in cm.STEPS[:5]:
        step = cm.advance(step.state, cm.StepDone(name, {"found_" + name: 1}))
    stopped = cm.advance(step.state, Cancel()).state
    assert stopped.phase == Phase.CANCELLED
    again = cm.advance(stopped, Start())
    (effect,) = again.effects
    assert effect == cm.Perform("restore", again.state.detail)
    assert again.state.phase == cm.RESTORING
    assert effect.detail["found_backup"] == 1


def test_a_digest_that_differs_fails_as_integrity() -> None:
    step = cm.advance(_state(), Start())
    failed = cm.advance(step.state, cm.DigestDiffers("measure", "bad")).state
    assert failed.phase == Phase.FAILED
    assert failed.exit_code == EXIT_INTEGRITY


def test_an_event_for_another_step_is_refused() -> None:
    step = cm.advance(_state(), Start())
    with pytest.raises(InvalidTransition, match="at measure"):
        cm.advance(step.state, cm.StepDone("restore"))
