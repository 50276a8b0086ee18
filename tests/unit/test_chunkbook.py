"""The chunk book: which chunks are planned, in flight or acknowledged."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from replicator.chunkbook import ChunkBook
from replicator.errors import IntegrityError
from replicator.integrity import ImageInfo, image_digest


def _digests(n: int) -> list[bytes]:
    return [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(n)]


DIGESTS = _digests(3)
IMAGE = ImageInfo(snapshot_id=7, size=2_500_000, chunk_size=1_048_576, digest=image_digest(DIGESTS))


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
