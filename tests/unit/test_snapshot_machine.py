"""The snapshot kinds' state machine: which steps, in which order, from which facts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.errors import EXIT_INTERRUPTED, InvalidTransition
from replicator.flows.snapshot.machine import (
    BACKUP,
    COPY,
    RESTORE,
    STEPS,
    Done,
    Perform,
    SnapshotDetail,
    advance,
    facts_of,
    merged,
    next_step,
)
from replicator.job import ArchiveRef, CanisterRef, Job, JobState, Phase, new_state
from replicator.machine import Cancel, Fail, Start

APP = CanisterRef("kipf3-nqaaa-fake3-aaaaa-cai", "local")
OTHER = CanisterRef("xmf3k-3iaaa-fake5-aaaaa-cai", "local")
REPO = ArchiveRef("/repo")

# What a performer reports when each step succeeds (its completion facts).
COMPLETED: dict[str, dict[str, Any]] = {
    "stop_source": {"source_stopped": True, "stopped_at": 1.0},
    "take": {"ic_snapshot": "ab", "ic_snapshot_ours": True},
    "start_source": {"source_stopped": None, "downtime": 0.5},
    "store": {"stored": True},
    "manifest": {"manifest": "m" * 64},
    "open_upload": {"upload_snapshot": "cd"},
    "upload": {"uploaded": True},
    "verify_upload": {"upload_verified": True},
    "stop_target": {"target_running": None},
    "load": {"loaded": True},
    "start_target": {"target_started": True},
    "verify_target": {"verified": True},
    "settle": {"settled": True},
    "cleanup": {"cleaned": True},
}


def job(kind: str, **options: Any) -> Job:
    source, target = {BACKUP: (APP, REPO), RESTORE: (REPO, APP), COPY: (APP, OTHER)}[kind]
    return Job(kind, source, target, options=options, id=f"{kind}-1")


def run(
    j: Job, inspected: Mapping[str, Any], state: JobState | None = None
) -> tuple[list[str], list[str], JobState]:
    """Start the job and complete every step; the steps and phases it went through."""
    step = advance(state or new_state(j), Start())
    steps, phases = [], [step.state.phase]
    while step.effects:
        (effect,) = step.effects
        assert isinstance(effect, Perform)
        steps.append(effect.step)
        facts = dict(inspected) if effect.step == "inspect" else COMPLETED[effect.step]
        step = advance(step.state, Done(effect.step, facts))
        phases.append(step.state.phase)
    return steps, phases, step.state


def test_a_backup_stops_takes_starts_stores_writes_the_manifest_and_cleans_up() -> None:
    steps, phases, state = run(job(BACKUP), {"source_running": True})
    assert steps == [
        "inspect",
        "stop_source",
        "take",
        "start_source",
        "store",
        "manifest",
        "cleanup",
    ]
    assert phases[-1] == Phase.DONE
    assert Phase.COPYING in phases
    assert facts_of(state)["downtime"] == 0.5
    assert "source_stopped" not in facts_of(state)


@pytest.mark.parametrize(
    ("options", "inspected"),
    [({"stop": False}, {"source_running": True}), ({}, {"source_running": False})],
)
def test_a_backup_stops_only_a_running_canister_and_only_when_asked(
    options: dict[str, Any], inspected: dict[str, Any]
) -> None:
    steps, _, _ = run(job(BACKUP, **options), inspected)
    assert steps == ["inspect", "take", "store", "manifest", "cleanup"]


def test_a_viewer_stores_the_existing_snapshot_without_taking_one() -> None:
    steps, _, _ = run(job(BACKUP), {"viewer": True, "ic_snapshot": "ab"})
    assert steps == ["inspect", "store", "manifest", "cleanup"]


def test_a_restore_uploads_verifies_stops_loads_starts_and_verifies() -> None:
    steps, _, _ = run(job(RESTORE, snapshot="m"), {"target_running": True})
    assert steps == [
        "inspect",
        "open_upload",
        "upload",
        "verify_upload",
        "stop_target",
        "load",
        "start_target",
        "verify_target",
        "cleanup",
    ]


def test_a_restore_into_a_created_canister_settles_its_controllers() -> None:
    steps, _, _ = run(job(RESTORE, created="key"), {"target_running": True})
    assert steps.index("settle") == steps.index("verify_target") + 1


def test_a_copy_on_one_subnet_loads_the_source_snapshot_directly() -> None:
    steps, _, _ = run(
        job(COPY), {"source_running": True, "target_running": True, "same_subnet": True}
    )
    assert steps == [
        "inspect",
        "stop_source",
        "take",
        "start_source",
        "stop_target",
        "load",
        "start_target",
        "verify_target",
        "cleanup",
    ]


def test_a_copy_across_subnets_streams_an_upload_first() -> None:
    steps, _, _ = run(job(COPY), {"source_running": True, "same_subnet": False})
    assert steps[4:8] == ["open_upload", "upload", "verify_upload", "load"]
    assert "stop_target" not in steps  # the target was not running


def test_every_run_begins_with_inspect_and_names_the_step_an_earlier_run_died_in() -> None:
    j = job(BACKUP)
    step = advance(new_state(j), Start())
    step = advance(step.state, Done("inspect", {"source_running": True}))
    step = advance(step.state, Done("stop_source", {"source_stopped": True}))
    assert SnapshotDetail.of(step.state).step == "take"  # recorded before it is taken
    died = step.state  # the process dies inside take_canister_snapshot
    again = advance(died, Start())
    (effect,) = again.effects
    assert effect == Perform("inspect", j, facts_of(died), resumed_from="take")
    assert again.state.starts == 2
    # The earlier run's stop is still on record: the canister gets started.
    steps, _, _ = run(j, {"ic_snapshot": "ab", "ic_snapshot_ours": True}, died)
    assert steps == ["inspect", "start_source", "store", "manifest", "cleanup"]


def test_a_fact_reported_as_none_is_forgotten() -> None:
    assert merged({"a": 1, "b": 2}, {"a": None, "c": 3}) == {"b": 2, "c": 3}


def test_done_for_another_step_than_the_one_taken_is_a_bug() -> None:
    step = advance(new_state(job(BACKUP)), Start())
    with pytest.raises(InvalidTransition, match="is taking step inspect, not take"):
        advance(step.state, Done("take", {}))


def test_fail_and_cancel_stop_the_job_and_a_later_start_resumes_it() -> None:
    step = advance(new_state(job(BACKUP)), Start())
    failed = advance(step.state, Fail("boom", 75)).state
    assert (failed.phase, failed.exit_code) == (Phase.FAILED, 75)
    cancelled = advance(step.state, Cancel()).state
    assert (cancelled.phase, cancelled.exit_code) == (Phase.CANCELLED, EXIT_INTERRUPTED)
    assert advance(failed, Start()).state.phase == Phase.PREPARING


def test_done_is_final() -> None:
    _, _, state = run(job(BACKUP), {"source_running": True})
    with pytest.raises(InvalidTransition, match="is done"):
        advance(state, Start())


def test_other_events_are_refused() -> None:
    with pytest.raises(TypeError):
        advance(new_state(job(BACKUP)), object())


FACT_KEYS = sorted({k for facts in COMPLETED.values() for k in facts} | {"same_subnet"})


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([BACKUP, RESTORE, COPY]),
    stop=st.booleans(),
    created=st.booleans(),
    start=st.dictionaries(st.sampled_from(FACT_KEYS), st.booleans(), max_size=6),
    running=st.booleans(),
)
def test_steps_run_in_order_once_each_and_a_stopped_source_is_started_before_any_copy(
    kind: str, stop: bool, created: bool, start: dict[str, bool], running: bool
) -> None:
    # Whatever an earlier run left behind (start facts), the run goes forward.
    options: dict[str, Any] = {"stop": stop}
    if created:
        options["created"] = "key"
    facts = {k: v for k, v in start.items() if v}
    for key in ("ic_snapshot", "upload_snapshot", "manifest"):
        if facts.get(key):
            facts[key] = "ab"
    j = job(kind, **options)
    state = JobState(job=j, detail=SnapshotDetail(step=None, facts=facts).to_payload())
    steps, phases, final = run(j, {"source_running": running}, state)
    assert phases[-1] == Phase.DONE
    ranks = [STEPS.index(s) for s in steps]
    assert ranks == sorted(set(ranks))  # each step at most once, in the global order
    if "stop_source" in steps:
        assert steps.index("start_source") < min(
            (steps.index(s) for s in ("store", "upload", "load") if s in steps), default=99
        )
    assert not facts_of(final).get("source_stopped")  # never left stopped
    if kind != BACKUP:
        assert facts_of(final).get("target_started")
    assert next_step(j, facts_of(final), None) in ("inspect", None)
