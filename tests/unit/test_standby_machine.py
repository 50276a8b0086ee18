"""The standby kind's state machine: seed through the image machine, tail, resync, stop."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator import codec
from replicator.errors import EXIT_FAILED, EXIT_INTEGRITY, EXIT_INTERRUPTED, InvalidTransition
from replicator.flows.image import machine as image
from replicator.flows.standby.machine import (
    SEEDING,
    TAILING,
    CaughtUp,
    Diverged,
    ForgetSeed,
    GapFound,
    PrepareStandby,
    Resync,
    StandbyDetail,
    StandbyReady,
    Tail,
    advance,
)
from replicator.integrity import ImageInfo
from replicator.job import CanisterRef, Job, JobState, Phase, new_state
from replicator.machine import Cancel, Fail, Start

SOURCE = CanisterRef("aaaaa-aa", "local")
STANDBY = CanisterRef("bbbbb-bb", "local")
DIGEST = hashlib.sha256(b"image").digest()
IMAGE = ImageInfo(7, 100, 64, DIGEST)


def _job() -> Job:
    return Job("standby", SOURCE, STANDBY, id="standby-1")


def _run(state: JobState, *events: object) -> tuple[JobState, list[object]]:
    effects: list[object] = []
    for event in events:
        step = advance(state, event)
        # Every state must survive the checkpoint store.
        state = JobState.from_payload(codec.unpack(codec.pack(step.state.to_payload())))
        effects = list(step.effects)
    return state, effects


SEED = (
    image.SourceReady(IMAGE),
    image.TargetReady(3),
    image.ChunksDone(DIGEST),
    image.Committed(),
    image.Verified(DIGEST),
)


def _tailing() -> JobState:
    state, _effects = _run(new_state(_job()), Start(), StandbyReady(), *SEED)
    assert state.phase == TAILING
    return state


def test_a_new_standby_is_prepared_seeded_and_then_tailed() -> None:
    state, effects = _run(new_state(_job()), Start())
    assert state.phase == Phase.PREPARING
    assert effects == [PrepareStandby(SOURCE, STANDBY)]
    state, effects = _run(state, StandbyReady())
    assert state.phase == SEEDING
    assert effects == [image.PrepareSource(SOURCE, resume=None)]
    state, effects = _run(state, image.SourceReady(IMAGE))
    assert effects == [image.PrepareTarget(STANDBY, IMAGE, resume_import_id=None)]
    state, effects = _run(state, image.TargetReady(3))
    assert state.phase == SEEDING
    assert state.detail["seed_phase"] == Phase.COPYING
    assert effects == [image.CopyChunks(SOURCE, STANDBY, IMAGE, 3)]
    state, effects = _run(state, image.ChunksDone(DIGEST), image.Committed())
    assert effects == [image.VerifyTarget(STANDBY, IMAGE, 3)]
    state, effects = _run(state, image.Verified(DIGEST))
    assert state.phase == TAILING
    assert effects == [image.ReleaseSource(SOURCE, IMAGE), Tail(SOURCE, STANDBY)]
    detail = StandbyDetail.of(state)
    assert detail.seeded
    assert detail.seed_phase is None
    assert detail.resyncs == 0
    assert state.starts == 1


def test_grants_of_the_seed_are_recorded_where_every_job_keeps_them() -> None:
    state, _ = _run(new_state(_job()), Start(), StandbyReady(), *SEED[:2])
    grant = image.Grant("local", SOURCE.canister_id, STANDBY.canister_id)
    state, effects = _run(state, image.GrantsNeeded((grant,)))
    assert image.grants_of(state.detail) == (grant,)
    assert effects == [image.CopyChunks(SOURCE, STANDBY, IMAGE, 3, (grant,))]
    state, effects = _run(state, image.ChunksDone(DIGEST))
    assert effects == [image.ReleaseGrants((grant,)), image.Commit(STANDBY, IMAGE, 3)]
    state, _ = _run(state, image.GrantsReleased((grant,)))
    assert image.grants_of(state.detail) == ()


def test_a_seeded_standby_resumes_by_tailing_from_the_standbys_word() -> None:
    state, _ = _run(_tailing(), Cancel())
    assert state.phase == Phase.CANCELLED
    assert state.exit_code == EXIT_INTERRUPTED
    state, effects = _run(state, Start(), StandbyReady())
    assert state.phase == TAILING
    assert effects == [Tail(SOURCE, STANDBY)]


def test_an_interrupted_seed_resumes_with_what_it_knew() -> None:
    state, _ = _run(new_state(_job()), Start(), StandbyReady(), *SEED[:2], Fail("boom", 75))
    assert state.phase == Phase.FAILED
    state, effects = _run(state, Start(), StandbyReady())
    assert state.phase == SEEDING
    assert effects == [image.PrepareSource(SOURCE, resume=IMAGE)]
    state, effects = _run(state, image.SourceReady(IMAGE))
    assert effects == [image.PrepareTarget(STANDBY, IMAGE, resume_import_id=3)]


def test_too_old_seeds_again_from_a_fresh_image() -> None:
    state, effects = _run(_tailing(), Resync("too_old", "gone"))
    assert state.phase == SEEDING
    assert effects == [ForgetSeed(), image.PrepareSource(SOURCE, resume=None)]
    detail = StandbyDetail.of(state)
    assert (detail.resyncs, detail.seed_reason, detail.seeded) == (1, "too_old", True)
    newer = ImageInfo(8, 120, 64, DIGEST)
    state, effects = _run(
        state,
        image.SourceReady(newer),
        image.TargetReady(4),
        image.ChunksDone(DIGEST),
        image.Committed(),
        image.Verified(DIGEST),
    )
    assert state.phase == TAILING
    assert StandbyDetail.of(state).seed_reason is None
    assert effects[-1] == Tail(SOURCE, STANDBY)


def test_a_gap_and_a_divergence_stop_the_job_and_never_resync() -> None:
    state, effects = _run(_tailing(), GapFound("a second writer"))
    assert (state.phase, state.exit_code, state.error) == (
        Phase.FAILED,
        EXIT_FAILED,
        "a second writer",
    )
    assert effects == []
    state, _ = _run(_tailing(), Diverged("digests differ"))
    assert (state.phase, state.exit_code) == (Phase.FAILED, EXIT_INTEGRITY)


def test_a_seed_that_fails_its_digest_fails_the_job() -> None:
    state, _ = _run(new_state(_job()), Start(), StandbyReady(), *SEED[:2])
    state, _ = _run(state, image.ChunksDone(hashlib.sha256(b"other").digest()))
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY
    assert state.error is not None
    assert state.error.startswith("seeding the standby:")
    state, effects = _run(state, Start(), StandbyReady())  # a re-run seeds again
    assert state.phase == SEEDING
    assert isinstance(effects[0], image.PrepareSource)


def test_caught_up_finishes_a_once_job() -> None:
    state, effects = _run(_tailing(), CaughtUp(12))
    assert state.phase == Phase.DONE
    assert effects == []
    with pytest.raises(InvalidTransition):
        advance(state, Start())


def test_events_out_of_their_phase_are_refused() -> None:
    with pytest.raises(InvalidTransition):
        advance(_tailing(), image.SourceReady(IMAGE))
    with pytest.raises(InvalidTransition):
        advance(new_state(_job()), Resync("too_old", ""))
    seeding, _ = _run(new_state(_job()), Start(), StandbyReady())
    with pytest.raises(InvalidTransition):
        advance(seeding, CaughtUp(1))
    with pytest.raises(TypeError):
        advance(seeding, object())


_EVENTS = st.sampled_from(
    [
        Start(),
        StandbyReady(),
        *SEED,
        Resync("too_old", "x"),
        CaughtUp(5),
        GapFound("gap"),
        Cancel(),
        Fail("f", 75),
    ]
)


@given(st.lists(_EVENTS, max_size=25))
def test_any_order_of_events_keeps_a_consistent_state(events: list[object]) -> None:
    state = new_state(_job())
    for event in events:
        try:
            state, _ = _run(state, event)
        except InvalidTransition:
            continue
        detail = StandbyDetail.of(state)
        # Seeding has an image phase (kept while preparing: a seed in progress);
        # tailing has none, and only once seeded.
        if state.phase == SEEDING:
            assert detail.seed_phase is not None
        if state.phase == TAILING:
            assert detail.seeded
            assert detail.seed_phase is None


def test_tail_options_are_checked() -> None:
    from replicator.errors import UsageError
    from replicator.flows.standby.tail import DEFAULT_POLL_MAX, TailOptions

    def job(**options: object) -> Job:
        return Job("standby", SOURCE, STANDBY, options=options, id="standby-1")  # type: ignore[arg-type]

    assert TailOptions.of(job()).poll_max == DEFAULT_POLL_MAX
    assert TailOptions.of(job(poll_max=0.01)).poll_min == 0.01  # under the ceiling
    assert TailOptions.of(job(once=True, check_interval=0)).once
    for bad in ({"poll_max": 0}, {"poll_max": "1s"}, {"max_bytes": 10}, {"check_interval": -1}):
        with pytest.raises(UsageError):
            TailOptions.of(job(**bad))
