"""The job state machine and the chunk bookkeeping."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from replicator import codec
from replicator.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    AccessDeniedError,
    IntegrityError,
    InvalidTransition,
    UsageError,
)
from replicator.integrity import image_digest
from replicator.jobs import (
    AbortImport,
    ArchiveRef,
    Cancel,
    CanisterRef,
    CheckChunks,
    ChunkBook,
    ChunksDone,
    Commit,
    Committed,
    CopyChunks,
    DiscardProgress,
    Fail,
    ImageInfo,
    Job,
    JobKind,
    JobState,
    Phase,
    PrepareSource,
    PrepareTarget,
    ReleaseSource,
    SourceReady,
    Start,
    TargetReady,
    Verified,
    VerifyTarget,
    advance,
    new_state,
)

APP = CanisterRef("bkyz2-fmaaa-aaaaa-qaaaq-cai", "local")
BACKUP = CanisterRef("bd3sg-teaaa-aaaaa-qaaba-cai", "local")
FILE = ArchiveRef("/tmp/app.icra")


def _digests(n: int) -> list[bytes]:
    return [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(n)]


DIGESTS = _digests(3)
IMAGE = ImageInfo(snapshot_id=7, size=2_500_000, chunk_size=1_048_576, digest=image_digest(DIGESTS))


def _backup_job() -> Job:
    return Job(JobKind.BACKUP, APP, BACKUP)


def _run(state: JobState, *events: object) -> tuple[JobState, list[object]]:
    effects: list[object] = []
    for event in events:
        step = advance(state, event)  # type: ignore[arg-type]
        state = step.state
        effects.extend(step.effects)
    return state, effects


# ------------------------------------------------------------------ jobs


def test_job_shapes_are_checked() -> None:
    Job(JobKind.ARCHIVE_EXPORT, APP, FILE)
    Job(JobKind.VERIFY, FILE, None)
    with pytest.raises(UsageError, match="cannot write to file:"):
        Job(JobKind.BACKUP, APP, FILE)
    with pytest.raises(UsageError, match="cannot read from"):
        Job(JobKind.ARCHIVE_IMPORT, APP, BACKUP)
    with pytest.raises(UsageError, match="needs a canister"):
        Job(JobKind.RESTORE, APP, None)
    with pytest.raises(UsageError, match="the same"):
        Job(JobKind.BACKUP, APP, APP)


def test_job_ids_are_fresh_but_fingerprints_name_the_command() -> None:
    a, b = _backup_job(), _backup_job()
    assert a.id != b.id
    assert a.id.startswith("backup-")
    assert a.fingerprint == b.fingerprint
    assert Job(JobKind.BACKUP, APP, BACKUP, options={"x": 1}).fingerprint == a.fingerprint
    assert Job(JobKind.RESTORE, APP, BACKUP).fingerprint != a.fingerprint
    assert Job(JobKind.BACKUP, BACKUP, APP).fingerprint != a.fingerprint


def test_state_round_trips_through_msgpack() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    payload = codec.unpack_map(codec.pack(state.to_payload()), "state")
    assert JobState.from_payload(payload) == state
    verify = new_state(Job(JobKind.VERIFY, FILE, None, options={"deep": True}))
    assert JobState.from_payload(codec.unpack_map(codec.pack(verify.to_payload()), "s")) == verify


# ----------------------------------------------------------- transitions


def test_backup_happy_path_emits_each_effect_once() -> None:
    state = new_state(_backup_job())
    step = advance(state, Start())
    assert step.state.phase is Phase.PREPARING
    assert step.state.starts == 1
    assert step.effects == (PrepareSource(APP, resume=None),)
    step = advance(step.state, SourceReady(IMAGE))
    assert step.effects == (PrepareTarget(BACKUP, IMAGE, resume_import_id=None),)
    step = advance(step.state, TargetReady(42))
    assert step.state.phase is Phase.COPYING
    assert step.state.import_id == 42
    assert step.effects == (CopyChunks(APP, BACKUP, IMAGE, 42),)
    step = advance(step.state, ChunksDone(IMAGE.digest or b""))
    assert step.state.phase is Phase.COMMITTING
    assert step.effects == (Commit(BACKUP, 42),)
    step = advance(step.state, Committed())
    assert step.effects == (VerifyTarget(BACKUP, IMAGE),)
    step = advance(step.state, Verified(IMAGE.digest or b""))
    assert step.state.phase is Phase.DONE
    assert step.state.finished
    assert step.effects == (ReleaseSource(APP, 7),)


def test_archive_export_and_import() -> None:
    export, effects = _run(
        new_state(Job(JobKind.ARCHIVE_EXPORT, APP, FILE)),
        Start(),
        SourceReady(IMAGE),
        TargetReady(None),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(IMAGE.digest or b""),
    )
    assert export.phase is Phase.DONE
    assert Commit(FILE, None) in effects
    assert ReleaseSource(APP, 7) in effects
    imported, effects = _run(
        new_state(Job(JobKind.ARCHIVE_IMPORT, FILE, APP)),
        Start(),
        SourceReady(IMAGE),
        TargetReady(5),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(IMAGE.digest or b""),
    )
    assert imported.phase is Phase.DONE
    assert not any(isinstance(e, ReleaseSource) for e in effects)  # a file has no export


def test_verify_alone_and_against_a_target() -> None:
    alone, effects = _run(
        new_state(Job(JobKind.VERIFY, APP, None)),
        Start(),
        SourceReady(IMAGE),
    )
    assert alone.phase is Phase.VERIFYING
    assert effects[-1] == CheckChunks(APP, IMAGE)
    alone, effects = _run(alone, ChunksDone(IMAGE.digest or b""))
    assert alone.phase is Phase.DONE
    assert effects == [ReleaseSource(APP, 7)]
    paired, effects = _run(
        new_state(Job(JobKind.VERIFY, FILE, BACKUP)),
        Start(),
        SourceReady(IMAGE),
        ChunksDone(IMAGE.digest or b""),
    )
    assert paired.phase is Phase.VERIFYING
    assert effects[-1] == VerifyTarget(BACKUP, IMAGE)
    paired, _ = _run(paired, Verified(b"\x00" * 32))
    assert paired.phase is Phase.FAILED
    assert paired.exit_code == EXIT_INTEGRITY


def test_copied_chunks_with_the_wrong_digest_fail_before_commit() -> None:
    state, effects = _run(
        new_state(_backup_job()),
        Start(),
        SourceReady(IMAGE),
        TargetReady(1),
        ChunksDone(b"\x01" * 32),
    )
    assert state.phase is Phase.FAILED
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
    assert state.phase is Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY


def test_unknown_digest_is_learned_from_the_chunks() -> None:
    image = ImageInfo(snapshot_id=1, size=10, chunk_size=4)
    digest = b"\x03" * 32
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(image), TargetReady(1), ChunksDone(digest)
    )
    assert state.image is not None
    assert state.image.digest == digest
    state, _ = _run(state, Committed(), Verified(digest))
    assert state.phase is Phase.DONE


def test_resume_keeps_progress_when_the_same_snapshot_is_offered() -> None:
    state, _ = _run(new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42))
    state, _ = _run(state, Cancel())
    assert state.phase is Phase.CANCELLED
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
    kinds = [type(e) for e in step.effects]
    assert kinds == [DiscardProgress, AbortImport, PrepareTarget]
    assert step.effects[1] == AbortImport(BACKUP, 42)
    assert step.effects[2] == PrepareTarget(BACKUP, newer, resume_import_id=None)
    assert step.state.image == newer
    assert step.state.import_id is None


def test_a_target_that_lost_the_import_discards_progress() -> None:
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(42), Cancel(), Start()
    )
    step = advance(advance(state, SourceReady(IMAGE)).state, TargetReady(43))
    assert isinstance(step.effects[0], DiscardProgress)
    assert step.state.import_id == 43
    assert step.state.phase is Phase.COPYING


def test_a_changed_snapshot_under_the_same_id_is_an_integrity_failure() -> None:
    state, _ = _run(
        new_state(_backup_job()), Start(), SourceReady(IMAGE), TargetReady(1), Cancel(), Start()
    )
    changed = ImageInfo(
        snapshot_id=IMAGE.snapshot_id, size=IMAGE.size + 1, chunk_size=IMAGE.chunk_size
    )
    state, effects = _run(state, SourceReady(changed))
    assert state.phase is Phase.FAILED
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
    assert state.phase is Phase.COMMITTING  # crashed here: the commit may or may not have happened
    state, effects = _run(state, Start(), SourceReady(IMAGE), TargetReady(1, committed=True))
    assert state.phase is Phase.VERIFYING
    assert effects[-1] == VerifyTarget(BACKUP, IMAGE)


def test_fail_records_the_exit_code_of_the_exception() -> None:
    state, _ = _run(
        new_state(_backup_job()), Start(), Fail.of(AccessDeniedError("not a controller"))
    )
    assert state.phase is Phase.FAILED
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
        advance(state, bad)  # type: ignore[arg-type]


def test_done_is_final() -> None:
    state, _ = _run(
        new_state(Job(JobKind.VERIFY, APP, None)),
        Start(),
        SourceReady(IMAGE),
        ChunksDone(IMAGE.digest or b""),
    )
    for event in (Start(), Cancel(), Fail("x", 1)):
        with pytest.raises(InvalidTransition, match="is done"):
            advance(state, event)


# ------------------------------------------------------------- chunk book


def test_book_hands_out_contiguous_runs_and_retakes_released_chunks_first() -> None:
    book = ChunkBook(10)
    assert book.take(3) == range(3)
    assert book.take(3) == range(3, 6)
    book.release([1, 2])
    assert book.take(5) == range(1, 3)  # the released run, not merged with 6..
    assert book.take(5) == range(6, 10)
    assert book.take(1) == range(0)
    assert book.in_flight_count == 10
    assert book.planned_count == 0


def test_book_acks_and_image_digest() -> None:
    digests = _digests(4)
    book = ChunkBook(4, acked={2: digests[2]})
    assert book.take(10) == range(2)  # 2 is done: the run stops before it
    assert book.take(10) == range(3, 4)
    for i in (0, 1, 3):
        book.ack(i, digests[i])
    book.ack(2, digests[2])  # again, same digest: harmless
    assert book.done
    assert book.image_digest() == image_digest(digests)
    assert book.acked_bytes(size=10, chunk_size=3) == 10
    with pytest.raises(IntegrityError, match="chunk 1"):
        book.ack(1, digests[0])


def test_book_digest_needs_every_chunk() -> None:
    book = ChunkBook(2)
    book.ack(0, _digests(1)[0])
    with pytest.raises(ValueError, match="1 chunks are not acknowledged"):
        book.image_digest()
    with pytest.raises(IndexError):
        book.ack(2, _digests(1)[0])


def test_empty_image_is_done_at_once() -> None:
    book = ChunkBook(0)
    assert book.done
    assert book.take(4) == range(0)
    assert book.image_digest() == hashlib.sha256(b"").digest()


class ChunkBookMachine(RuleBasedStateMachine):
    """Any interleaving of take / ack / release keeps the book consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.book = ChunkBook(0)
        self.in_flight: set[int] = set()
        self.acked: dict[int, bytes] = {}

    @precondition(lambda self: self.count == 0 and not self.acked)
    @rule(count=st.integers(min_value=0, max_value=40), pre=st.sets(st.integers(0, 39)))
    def init(self, count: int, pre: set[int]) -> None:
        self.count = count
        self.acked = {i: _digests(40)[i] for i in pre if i < count}
        self.book = ChunkBook(count, acked=self.acked)

    @rule(n=st.integers(min_value=1, max_value=8))
    def take(self, n: int) -> None:
        planned = set(range(self.count)) - self.in_flight - set(self.acked)
        run = self.book.take(n)
        if not planned:
            assert len(run) == 0
            return
        assert run.start == min(planned)
        assert 1 <= len(run) <= n
        assert set(run) <= planned
        self.in_flight |= set(run)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.book.ack(index, _digests(40)[index])
        self.in_flight.discard(index)
        self.acked[index] = _digests(40)[index]

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        some = data.draw(st.sets(st.sampled_from(sorted(self.in_flight)), min_size=1))
        self.book.release(some)
        self.in_flight -= some

    @precondition(lambda self: self.count > 0)
    @rule(data=st.data())
    def ack_while_planned(self, data: st.DataObject) -> None:
        # reconciliation: the target reports a chunk the book still plans
        index = data.draw(st.integers(0, self.count - 1))
        if index in self.in_flight:
            return
        self.book.ack(index, _digests(40)[index])
        self.acked[index] = _digests(40)[index]

    @invariant()
    def consistent(self) -> None:
        book = self.book
        assert book.acked_count == len(self.acked)
        assert book.in_flight_count == len(self.in_flight)
        assert book.planned_count == self.count - len(self.acked) - len(self.in_flight)
        assert book.acked() == self.acked
        assert book.done == (len(self.acked) == self.count)
        if book.done:
            assert book.image_digest() == image_digest(self.acked[i] for i in range(self.count))


TestChunkBookMachine = ChunkBookMachine.TestCase
TestChunkBookMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=7))
def test_taking_everything_covers_each_chunk_once(count: int, n: int) -> None:
    book = ChunkBook(count)
    seen: list[int] = []
    while run := book.take(n):
        seen.extend(run)
    assert seen == list(range(count))
