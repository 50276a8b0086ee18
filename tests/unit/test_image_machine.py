"""Job values and the state machine of the image kinds (backup, restore, archives, verify)."""

from __future__ import annotations

import hashlib

import pytest

from replicator import codec, kinds
from replicator.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    InvalidTransition,
    UsageError,
)
from replicator.flows.image.machine import (
    AbortImport,
    CheckChunks,
    ChunksDone,
    Commit,
    Committed,
    CopyChunks,
    DiscardProgress,
    Grant,
    GrantsNeeded,
    GrantsReleased,
    ImageDetail,
    PrepareSource,
    PrepareTarget,
    ReleaseGrants,
    ReleaseSource,
    SourceReady,
    TargetReady,
    Verified,
    VerifyTarget,
    advance_copy,
    advance_overlapped,
    advance_verify,
    grants_of,
    image_of,
)
from replicator.integrity import ImageInfo, image_digest
from replicator.job import (
    ArchiveRef,
    CanisterRef,
    Job,
    JobRequest,
    JobState,
    Phase,
    new_job_id,
    new_state,
)
from replicator.machine import Cancel, Fail, Start, Step

APP = CanisterRef("bkyz2-fmaaa-aaaaa-qaaaq-cai", "local")
BACKUP = CanisterRef("bd3sg-teaaa-aaaaa-qaaba-cai", "local")
FILE = ArchiveRef("/tmp/app.icra")


def _digests(n: int) -> list[bytes]:
    return [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(n)]


DIGESTS = _digests(3)
IMAGE = ImageInfo(snapshot_id=7, size=2_500_000, chunk_size=1_048_576, digest=image_digest(DIGESTS))


def _job(kind: str, source: object, target: object, **options: object) -> Job:
    return Job(kind, source, target, options=options, id=new_job_id(kind))  # type: ignore[arg-type]


def _backup_job() -> Job:
    return _job("backup", APP, BACKUP)


def advance(state: JobState, event: object) -> Step:
    machine = advance_verify if state.job.kind == "verify" else advance_copy
    return machine(state, event)


def _import_id(state: JobState) -> int | None:
    return ImageDetail.of(state).import_id


def _run(state: JobState, *events: object) -> tuple[JobState, list[object]]:
    effects: list[object] = []
    for event in events:
        step = advance(state, event)
        state = step.state
        effects.extend(step.effects)
    return state, effects


# ------------------------------------------------------------------ jobs


def _check(job: Job | JobRequest) -> None:
    kinds.get(job.kind).check(job)


def test_job_shapes_are_checked_by_their_kind() -> None:
    _check(_job("archive-export", APP, FILE))
    _check(_job("verify", FILE, None))
    with pytest.raises(UsageError, match="cannot write to file:"):
        _check(_job("backup", APP, FILE))
    with pytest.raises(UsageError, match="cannot read from"):
        _check(_job("archive-import", APP, BACKUP))
    with pytest.raises(UsageError, match="needs a canister"):
        _check(_job("archive-import", FILE, None))
    _check(JobRequest("restore", APP))  # a request may leave the target to the planner…
    with pytest.raises(UsageError, match="needs a canister"):
        _check(_job("restore", APP, None))  # …a job may not
    with pytest.raises(UsageError, match="the same"):
        _job("backup", APP, APP)
    with pytest.raises(UsageError, match="no job kind 'pigeon'"):
        kinds.get("pigeon")
    with pytest.raises(ValueError, match="needs an id"):
        Job("backup", APP, BACKUP)


def test_job_ids_are_fresh_but_fingerprints_name_the_command() -> None:
    a, b = _backup_job(), _backup_job()
    assert a.id != b.id
    assert a.id.startswith("backup-")
    assert a.fingerprint == b.fingerprint
    assert _job("backup", APP, BACKUP, x=1).fingerprint == a.fingerprint
    assert _job("restore", APP, BACKUP).fingerprint != a.fingerprint
    assert _job("backup", BACKUP, APP).fingerprint != a.fingerprint


def test_state_round_trips_through_msgpack() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    payload = codec.unpack_map(codec.pack(state.to_payload()), "state")
    assert JobState.from_payload(payload) == state
    verify = new_state(_job("verify", FILE, None, deep=True))
    assert JobState.from_payload(codec.unpack_map(codec.pack(verify.to_payload()), "s")) == verify


# ----------------------------------------------------------- transitions


def test_backup_happy_path_emits_each_effect_once() -> None:
    state = new_state(_backup_job())
    step = advance(state, Start())
    assert step.state.phase == Phase.PREPARING
    assert step.state.starts == 1
    assert step.effects == (PrepareSource(APP, resume=None),)
    step = advance(step.state, SourceReady(IMAGE))
    assert step.effects == (PrepareTarget(BACKUP, IMAGE, resume_import_id=None),)
    step = advance(step.state, TargetReady(42))
    assert step.state.phase == Phase.COPYING
    assert _import_id(step.state) == 42
    assert step.effects == (CopyChunks(APP, BACKUP, IMAGE, 42),)
    step = advance(step.state, ChunksDone(IMAGE.digest or b""))
    assert step.state.phase == Phase.COMMITTING
    assert step.effects == (Commit(BACKUP, IMAGE, 42),)
    step = advance(step.state, Committed())
    assert step.effects == (VerifyTarget(BACKUP, IMAGE, 42),)
    step = advance(step.state, Verified(IMAGE.digest or b""))
    assert step.state.phase == Phase.DONE
    assert step.state.finished
    assert step.effects == (ReleaseSource(APP, IMAGE),)


def test_archive_export_and_import() -> None:
    export, effects = _run(
        new_state(_job("archive-export", APP, FILE)),
        Start(),
        SourceReady(IMAGE),
        TargetReady(None),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(IMAGE.digest or b""),
    )
    assert export.phase == Phase.DONE
    assert Commit(FILE, IMAGE, None) in effects
    assert ReleaseSource(APP, IMAGE) in effects
    imported, effects = _run(
        new_state(_job("archive-import", FILE, APP)),
        Start(),
        SourceReady(IMAGE),
        TargetReady(5),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(IMAGE.digest or b""),
    )
    assert imported.phase == Phase.DONE
    assert not any(isinstance(e, ReleaseSource) for e in effects)  # a file has no export


def test_verify_alone_and_against_a_target() -> None:
    alone, effects = _run(
        new_state(_job("verify", APP, None)),
        Start(),
        SourceReady(IMAGE),
    )
    assert alone.phase == Phase.VERIFYING
    assert effects[-1] == CheckChunks(APP, IMAGE)
    alone, effects = _run(alone, ChunksDone(IMAGE.digest or b""))
    assert alone.phase == Phase.DONE
    assert effects == [ReleaseSource(APP, IMAGE)]
    paired, effects = _run(
        new_state(_job("verify", FILE, BACKUP)),
        Start(),
        SourceReady(IMAGE),
        ChunksDone(IMAGE.digest or b""),
    )
    assert paired.phase == Phase.VERIFYING
    assert effects[-1] == VerifyTarget(BACKUP, IMAGE, None)
    paired, _ = _run(paired, Verified(b"\x00" * 32))
    assert paired.phase == Phase.FAILED
    assert paired.exit_code == EXIT_INTEGRITY


def test_copied_chunks_with_the_wrong_digest_fail_before_commit() -> None:
    state, effects = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(1),
        ChunksDone(b"\x01" * 32),
    )
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY
    assert "nothing was committed" in (state.error or "")
    assert not any(isinstance(e, Commit) for e in effects)


def test_a_target_holding_another_image_fails_verification() -> None:
    state, _ = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(1),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(b"\x02" * 32),
    )
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY


def test_unknown_digest_is_learned_from_the_chunks() -> None:
    image = ImageInfo(snapshot_id=1, size=10, chunk_size=4)
    digest = b"\x03" * 32
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(image), TargetReady(1), ChunksDone(digest)
    )
    image = image_of(state)
    assert image is not None
    assert image.digest == digest
    state, _ = _run(state, Committed(), Verified(digest))
    assert state.phase == Phase.DONE


def test_resume_keeps_progress_when_the_same_snapshot_is_offered() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    state, _ = _run(state, Cancel())
    assert state.phase == Phase.CANCELLED
    assert state.exit_code == EXIT_INTERRUPTED
    step = advance(state, Start())
    assert step.state.starts == 2
    assert step.state.error is None
    assert step.effects == (PrepareSource(APP, resume=IMAGE),)
    state, effects = _run(step.state, SourceReady(IMAGE), TargetReady(42))
    assert effects == [
        PrepareTarget(BACKUP, IMAGE, resume_import_id=42),
        CopyChunks(APP, BACKUP, IMAGE, 42),
    ]


def test_a_new_snapshot_discards_progress_and_aborts_the_old_import() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    state, _ = _run(state, Fail("network down", 75), Start())
    newer = ImageInfo(snapshot_id=8, size=100, chunk_size=64, digest=b"\x04" * 32)
    step = advance(state, SourceReady(newer))
    types = [type(e) for e in step.effects]
    assert types == [DiscardProgress, AbortImport, PrepareTarget]
    assert step.effects[1] == AbortImport(BACKUP, 42)
    assert step.effects[2] == PrepareTarget(BACKUP, newer, resume_import_id=None)
    assert image_of(step.state) == newer
    assert _import_id(step.state) is None


def test_a_target_that_lost_the_import_discards_progress() -> None:
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42), Cancel(), Start()
    )
    step = advance(advance(state, SourceReady(IMAGE)).state, TargetReady(43))
    assert isinstance(step.effects[0], DiscardProgress)
    assert _import_id(step.state) == 43
    assert step.state.phase == Phase.COPYING


def test_a_changed_snapshot_under_the_same_id_is_an_integrity_failure() -> None:
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(1), Cancel(), Start()
    )
    changed = ImageInfo(
        snapshot_id=IMAGE.snapshot_id, size=IMAGE.size + 1, chunk_size=IMAGE.chunk_size
    )
    state, effects = _run(state, SourceReady(changed))
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY
    assert effects == []


def test_interrupted_after_commit_resumes_straight_to_verification() -> None:
    state, _ = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(1),
        ChunksDone(IMAGE.digest or b""),
    )
    assert state.phase == Phase.COMMITTING  # crashed here: the commit may or may not have happened
    state, effects = _run(state, Start(), SourceReady(IMAGE), TargetReady(1, committed=True))
    assert state.phase == Phase.VERIFYING
    assert effects[-1] == VerifyTarget(BACKUP, IMAGE, 1)


# ----------------------------------------------------------- peer grants

PUSH_TO = Grant("local", APP.canister_id, BACKUP.canister_id)
WRITES_FROM = Grant("local", BACKUP.canister_id, APP.canister_id)


def test_grants_are_recorded_before_the_copy_makes_them_and_released_before_the_commit() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    step = advance(state, GrantsNeeded((PUSH_TO,)))
    assert step.state.phase == Phase.COPYING
    assert grants_of(step.state.detail) == (PUSH_TO,)  # saved before the copy runs again
    assert step.effects == (CopyChunks(APP, BACKUP, IMAGE, 42, (PUSH_TO,)),)
    step = advance(step.state, GrantsNeeded((WRITES_FROM, PUSH_TO)))
    assert grants_of(step.state.detail) == tuple(sorted((PUSH_TO, WRITES_FROM)))
    step = advance(step.state, ChunksDone(IMAGE.digest or b""))
    assert step.state.phase == Phase.COMMITTING
    held = tuple(sorted((PUSH_TO, WRITES_FROM)))
    assert step.effects == (ReleaseGrants(held), Commit(BACKUP, IMAGE, 42))
    assert grants_of(step.state.detail) == held  # until they are released
    step = advance(step.state, GrantsReleased(held))
    assert grants_of(step.state.detail) == ()
    assert step.effects == ()


def test_a_backup_revokes_and_ends_the_export_while_committing() -> None:
    held = tuple(sorted((PUSH_TO, WRITES_FROM)))
    state = new_state(_backup_job())
    for event in (Start(), SourceReady(IMAGE), TargetReady(42), GrantsNeeded(held)):
        state = advance_overlapped(state, event).state
    step = advance_overlapped(state, ChunksDone(IMAGE.digest or b""))
    assert step.state.phase == Phase.COMMITTING
    # One round trip, not three: every chunk is acknowledged, the source's
    # export is not needed any more.
    assert step.effects == (Commit(BACKUP, IMAGE, 42, grants=held, release=APP),)
    assert grants_of(step.state.detail) == held  # saved before they are revoked
    committing = step.state
    # The target's commit answer names the digest it now serves: nothing to ask.
    done = advance_overlapped(committing, Committed(held, IMAGE.digest, source_released=True))
    assert grants_of(done.state.detail) == ()
    assert done.state.phase == Phase.DONE
    assert done.effects == ()  # the export was ended meanwhile
    # A commit answer naming another image fails the job (the check is unchanged).
    bad = advance_overlapped(committing, Committed(held, b"\x01" * 32, source_released=True))
    assert bad.state.phase == Phase.FAILED
    assert bad.state.exit_code == EXIT_INTEGRITY
    assert bad.effects == ()


def test_a_target_that_does_not_name_its_digest_is_asked() -> None:
    """A backup canister of an earlier ICRP version answers a commit without the digest."""
    held = (PUSH_TO,)
    state = new_state(_backup_job())
    for event in (Start(), SourceReady(IMAGE), TargetReady(42), GrantsNeeded(held)):
        state = advance_overlapped(state, event).state
    state = advance_overlapped(state, ChunksDone(IMAGE.digest or b"")).state
    step = advance_overlapped(state, Committed(held, source_released=True))
    assert step.state.phase == Phase.VERIFYING
    # The export was ended while committing: the check does not end it again.
    assert step.effects == (VerifyTarget(BACKUP, IMAGE, 42, source_released=True),)
    done = advance_overlapped(step.state, Verified(IMAGE.digest or b"", source_released=True))
    assert (done.state.phase, done.effects) == (Phase.DONE, ())
    bad = advance_overlapped(step.state, Verified(b"\x01" * 32, source_released=True))
    assert bad.state.exit_code == EXIT_INTEGRITY


def test_a_backup_records_the_grants_it_names_before_the_target_prepares() -> None:
    state = new_state(_backup_job())
    step = advance_overlapped(state, Start())
    assert step.effects == (PrepareSource(APP, resume=None, name_grants=True),)
    step = advance_overlapped(step.state, SourceReady(IMAGE, grants=(PUSH_TO,)))
    assert grants_of(step.state.detail) == (PUSH_TO,)  # saved before the grant is made
    assert step.effects == (PrepareTarget(BACKUP, IMAGE, resume_import_id=None, grants=(PUSH_TO,)),)
    step = advance_overlapped(step.state, TargetReady(42))
    assert step.effects == (CopyChunks(APP, BACKUP, IMAGE, 42, (PUSH_TO,)),)
    # A resumed run keeps what it recorded, and adds what it names now.
    state, _ = _run(step.state, Fail("killed", 1))
    step = advance_overlapped(advance_overlapped(state, Start()).state, SourceReady(IMAGE))
    assert grants_of(step.state.detail) == (PUSH_TO,)
    assert step.effects == (PrepareTarget(BACKUP, IMAGE, resume_import_id=42),)


def test_the_copy_kinds_keep_their_separate_round_trips() -> None:
    """Restores, archives and a standby's seed (advance_copy) are unchanged."""
    state = new_state(_backup_job())
    for event in (Start(), SourceReady(IMAGE), TargetReady(42), ChunksDone(IMAGE.digest or b"")):
        state = advance_copy(state, event).state
    step = advance_copy(state, Committed())
    assert step.effects == (VerifyTarget(BACKUP, IMAGE, 42),)
    step = advance_copy(step.state, Verified(IMAGE.digest or b""))
    assert step.effects == (ReleaseSource(APP, IMAGE),)
    # A target whose commit names its digest needs no check, in any kind.
    done = advance_copy(state, Committed(digest=IMAGE.digest))
    assert (done.state.phase, done.effects) == (Phase.DONE, (ReleaseSource(APP, IMAGE),))


def test_the_backup_kind_overlaps() -> None:
    assert kinds.get("backup").advance is advance_overlapped


def test_grants_survive_failure_and_resumption_until_released() -> None:
    state, _ = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(42),
        GrantsNeeded((PUSH_TO,)),
        Fail("the network went away", 75),
    )
    assert state.phase == Phase.FAILED
    assert grants_of(state.detail) == (PUSH_TO,)  # the next run revokes them
    payload = codec.unpack_map(codec.pack(state.to_payload()), "state")
    assert grants_of(JobState.from_payload(payload).detail) == (PUSH_TO,)
    state, effects = _run(state, Start(), SourceReady(IMAGE), TargetReady(42))
    assert effects[-1] == CopyChunks(APP, BACKUP, IMAGE, 42, (PUSH_TO,))
    # A new snapshot discards the progress, not the grants.
    other = ImageInfo(8, IMAGE.size, IMAGE.chunk_size, IMAGE.digest)
    state, _ = _run(state, Fail("stale", 1), Start(), SourceReady(other))
    assert grants_of(state.detail) == (PUSH_TO,)


def test_a_target_that_already_holds_the_image_releases_the_grants_first() -> None:
    state, _ = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(42),
        GrantsNeeded((PUSH_TO,)),
        Cancel(),
        Start(),
        SourceReady(IMAGE),
    )
    step = advance(state, TargetReady(42, committed=True))
    assert step.state.phase == Phase.VERIFYING
    assert step.effects == (ReleaseGrants((PUSH_TO,)), VerifyTarget(BACKUP, IMAGE, 42))
    state, _ = _run(step.state, GrantsReleased((PUSH_TO,)), Verified(IMAGE.digest or b""))
    assert state.phase == Phase.DONE
    assert grants_of(state.detail) == ()


def test_grants_are_needed_only_while_copying() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE))
    with pytest.raises(InvalidTransition):
        advance(state, GrantsNeeded((PUSH_TO,)))


def test_fail_records_its_exit_code() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), Fail("not a controller", EXIT_ACCESS_DENIED))
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_ACCESS_DENIED
    assert state.error == "not a controller"


@pytest.mark.parametrize(
    ("events", "bad"),
    [
        ([], SourceReady(IMAGE)),  # pending: must start first
        ([Start()], TargetReady(1)),  # no image yet
        ([Start()], ChunksDone(b"\x00" * 32)),
        ([Start(), SourceReady(IMAGE), TargetReady(1)], Committed()),
        ([Start(), Cancel()], Cancel()),  # already stopped
    ],
)
def test_events_out_of_order_are_refused(events: list[object], bad: object) -> None:
    state, _ = _run(new_state(_backup_job()), *events)
    with pytest.raises(InvalidTransition):
        advance(state, bad)


def test_done_is_final() -> None:
    state, _ = _run(
        new_state(_job("verify", APP, None)),
        Start(),
        SourceReady(IMAGE),
        ChunksDone(IMAGE.digest or b""),
    )
    for event in (Start(), Cancel(), Fail("x", 1)):
        with pytest.raises(InvalidTransition, match="is done"):
            advance(state, event)
