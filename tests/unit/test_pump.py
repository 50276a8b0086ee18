"""The pump with fake movers: planning, acks, concurrency, failures, adaptive sizes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from canister_iface import errors as ic
from replicator.chunkbook import ChunkBook
from replicator.chunking import Path, SizePolicy, TransferSize, split_evenly
from replicator.errors import IntegrityError
from replicator.integrity import ImageInfo, chunk_digest, image_digest_of
from replicator.pump import (
    Buffer,
    DirectMover,
    Pump,
    RelayMover,
    Run,
    Sizer,
    TransferTooLarge,
    first_piece,
)

CHUNK = 4096
DATA = bytes(range(256)) * 200  # 51,200 bytes: 12 full chunks and a short one
IMAGE = ImageInfo(1, len(DATA), CHUNK, image_digest_of(DATA, CHUNK))
DIGESTS = [chunk_digest(DATA[i : i + CHUNK]) for i in range(0, len(DATA), CHUNK)]


def sizer(ceiling: int = 2 * CHUNK, floor: int = 1024) -> Sizer:
    return Sizer(TransferSize(SizePolicy(ceiling=ceiling, floor=floor, granularity=512)), Path.PUSH)


class FakeTarget:
    """Receives pushes; can fail, block or be too small."""

    def __init__(self, *, max_piece: int | None = None, fail_at: int | None = None) -> None:
        self.data = bytearray(len(DATA))
        self.pushes: list[tuple[int, int]] = []
        self.max_piece = max_piece
        self.fail_at = fail_at
        self.running = 0
        self.peak = 0

    async def push(self, offset: int, length: int) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.001)
            if self.max_piece is not None and length > self.max_piece:
                raise ic.PayloadTooLarge("request too large")
            if self.fail_at is not None and offset <= self.fail_at < offset + length:
                raise ic.AccessDenied("not a controller")
            self.pushes.append((offset, length))
            self.data[offset : offset + length] = DATA[offset : offset + length]
        finally:
            self.running -= 1


class Recorder:
    def __init__(self) -> None:
        self.acks: list[tuple[int, bytes]] = []
        self.advanced: list[tuple[int, int]] = []

    async def ack(self, acks: Sequence[tuple[int, bytes]]) -> None:
        self.acks.extend(acks)

    def advance(self, nbytes: int, nchunks: int) -> None:
        self.advanced.append((nbytes, nchunks))


def pump(book: ChunkBook, mover: DirectMover | RelayMover, rec: Recorder, n: int = 3) -> Pump:
    return Pump(IMAGE, book, mover, ack=rec.ack, advanced=rec.advance, concurrency=n)


async def test_every_chunk_is_moved_once_acked_and_the_digest_returned() -> None:
    target, rec = FakeTarget(), Recorder()
    book = ChunkBook.for_image(IMAGE)
    digest = await pump(book, DirectMover(target, sizer(), DIGESTS), rec).run()
    assert digest == IMAGE.digest
    assert bytes(target.data) == DATA
    assert sorted(i for i, _ in rec.acks) == list(range(IMAGE.chunk_count))
    assert sum(n for n, _ in rec.advanced) == len(DATA)
    covered = sorted(target.pushes)
    assert sum(length for _, length in covered) == len(DATA)  # nothing twice
    assert 1 < target.peak <= 3


async def test_acknowledged_chunks_are_not_moved_again() -> None:
    target, rec = FakeTarget(), Recorder()
    done = {i: DIGESTS[i] for i in (0, 1, 2, 7)}
    book = ChunkBook.for_image(IMAGE, done)
    await pump(book, DirectMover(target, sizer(), DIGESTS), rec).run()
    pushed = {
        o // CHUNK for start, length in target.pushes for o in range(start, start + length, CHUNK)
    }
    assert pushed.isdisjoint(done)
    assert {i for i, _ in rec.acks} == set(range(IMAGE.chunk_count)) - set(done)


async def test_a_permanent_failure_stops_every_worker_and_leaves_chunks_unacked() -> None:
    target, rec = FakeTarget(fail_at=5 * CHUNK), Recorder()
    book = ChunkBook.for_image(IMAGE)
    with pytest.raises(ic.AccessDenied):
        await pump(book, DirectMover(target, sizer(), DIGESTS), rec).run()
    assert not book.is_acked(5)
    assert book.in_flight_count == 0  # released, not lost
    assert {i for i, _ in rec.acks} == {i for i in range(book.count) if book.is_acked(i)}


async def test_too_large_pieces_shrink_and_the_run_is_cut_again() -> None:
    target, rec = FakeTarget(max_piece=3000), Recorder()
    size = sizer(ceiling=4 * CHUNK)
    await pump(ChunkBook.for_image(IMAGE), DirectMover(target, size, DIGESTS), rec).run()
    assert bytes(target.data) == DATA
    assert all(length <= 3000 for _, length in target.pushes)
    assert size.current <= 4 * CHUNK


async def test_too_large_at_the_floor_gives_up() -> None:
    target, rec = FakeTarget(max_piece=100), Recorder()
    with pytest.raises(TransferTooLarge, match="smallest allowed size"):
        await pump(ChunkBook.for_image(IMAGE), DirectMover(target, sizer(), DIGESTS), rec).run()


class FakeReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.run_bytes = 3 * CHUNK

    async def read_run(self, run: Run) -> bytes:
        return self.data[run.offset : run.offset + run.length]


class FakeWriter:
    """An archive-like writer: checks nothing, takes whole runs."""

    verifies_chunks = False
    charges_bytes = False

    def __init__(self) -> None:
        self.writes: list[Run] = []
        self.flushes = 0
        self.run_bytes = 5 * CHUNK

    async def write_run(self, run: Run, data: Buffer) -> None:
        assert len(data) == run.length
        self.writes.append(run)

    async def write_at(self, offset: int, data: Buffer) -> None:
        raise AssertionError("whole runs only")

    async def flush(self) -> None:
        self.flushes += 1


class FakePieceReader:
    """A canister-like reader: any range, one piece per call."""

    def __init__(self, data: bytes, piece: int = 3000) -> None:
        self.data = data
        self.sizer = sizer(ceiling=piece)
        self.run_bytes = 8 * piece
        self.reads: list[tuple[int, int]] = []

    async def read_run(self, run: Run) -> bytes:
        raise AssertionError("a streaming relay reads pieces")

    async def read_at(self, offset: int, length: int) -> Buffer:
        self.reads.append((offset, length))
        await asyncio.sleep(0)
        return memoryview(self.data)[offset : offset + length]


class CheckingTarget:
    """A canister-like writer: takes bytes at any offset, checks every chunk it completes."""

    verifies_chunks = True
    charges_bytes = True

    def __init__(self) -> None:
        self.data = bytearray(len(DATA))
        self.have = bytearray(len(DATA))
        self.run_bytes = 1 << 30

    async def write_run(self, run: Run, data: Buffer) -> None:
        await self.write_at(run.offset, data)

    async def write_at(self, offset: int, data: Buffer) -> None:
        self.data[offset : offset + len(data)] = data
        self.have[offset : offset + len(data)] = b"\x01" * len(data)
        for index in range(IMAGE.chunk_count):
            start, end = index * CHUNK, min(len(DATA), (index + 1) * CHUNK)
            if all(self.have[start:end]) and chunk_digest(self.data[start:end]) != DIGESTS[index]:
                raise IntegrityError(f"chunk {index} refused by the target")

    async def flush(self) -> None:
        return None


async def test_the_relay_checks_each_chunk_before_writing_it() -> None:
    damaged = bytearray(DATA)
    damaged[6 * CHUNK + 10] ^= 0xFF
    writer, rec = FakeWriter(), Recorder()
    mover = RelayMover(FakeReader(bytes(damaged)), writer, IMAGE, DIGESTS)
    with pytest.raises(IntegrityError, match="chunk 6"):
        await pump(ChunkBook.for_image(IMAGE), mover, rec, n=1).run()
    assert all(6 not in run.chunks for run in writer.writes)
    assert 6 not in {i for i, _ in rec.acks}


async def test_the_relay_moves_runs_of_the_smaller_side_and_flushes_before_acks() -> None:
    writer, rec = FakeWriter(), Recorder()
    mover = RelayMover(FakeReader(DATA), writer, IMAGE, DIGESTS)
    assert mover.run_bytes == 3 * CHUNK
    digest = await pump(ChunkBook.for_image(IMAGE), mover, rec).run()
    assert digest == IMAGE.digest
    assert all(len(run.chunks) <= 3 for run in writer.writes)
    assert writer.flushes == len(writer.writes)


async def test_into_a_checking_target_the_relay_streams_pieces_across_chunks() -> None:
    reader, target, rec = FakePieceReader(DATA), CheckingTarget(), Recorder()
    mover = RelayMover(reader, target, IMAGE, DIGESTS)
    digest = await pump(ChunkBook.for_image(IMAGE), mover, rec, n=2).run()
    assert digest == IMAGE.digest
    assert bytes(target.data) == DATA
    assert any(offset % CHUNK for offset, _ in reader.reads)  # pieces cut chunks
    assert sum(length for _, length in reader.reads) == len(DATA)  # nothing twice


async def test_a_bad_chunk_is_refused_by_a_checking_target_and_not_acknowledged() -> None:
    damaged = bytearray(DATA)
    damaged[6 * CHUNK + 10] ^= 0xFF
    target, rec = CheckingTarget(), Recorder()
    mover = RelayMover(FakePieceReader(bytes(damaged)), target, IMAGE, DIGESTS)
    with pytest.raises(IntegrityError, match="chunk 6"):
        await pump(ChunkBook.for_image(IMAGE), mover, rec, n=1).run()
    assert 6 not in {i for i, _ in rec.acks}


def one_call_pieces(data: bytes, piece: int, fail_at: int | None = None) -> FakePieceReader:
    """A reader whose pieces are one call each (``piece`` bytes, larger than a chunk)."""

    class Failing(FakePieceReader):
        async def read_at(self, offset: int, length: int) -> Buffer:
            if fail_at is not None and offset <= fail_at < offset + length:
                raise ic.AccessDenied("not a controller")
            return await super().read_at(offset, length)

    reader = Failing(data, piece)
    reader.run_bytes = piece
    return reader


async def test_a_streaming_relay_moves_full_pieces_and_acks_each_chunk_once_covered() -> None:
    reader, target, rec = one_call_pieces(DATA, 6000), CheckingTarget(), Recorder()
    mover = RelayMover(reader, target, IMAGE, DIGESTS)
    assert mover.piecewise
    assert await pump(ChunkBook.for_image(IMAGE), mover, rec, n=3).run() == IMAGE.digest
    assert bytes(target.data) == DATA
    # 9 calls of ~5,689 bytes, where runs of whole 4,096-byte chunks took 13.
    assert len(reader.reads) == 9
    assert sorted(i for i, _ in rec.acks) == list(range(IMAGE.chunk_count))  # each once
    assert sum(n for n, _ in rec.advanced) == len(DATA)


async def test_a_failed_piece_keeps_the_chunks_acked_before_it_and_releases_the_rest() -> None:
    fail_at = 5 * 5689 + 100  # in the sixth piece
    reader, target, rec = one_call_pieces(DATA, 6000, fail_at), CheckingTarget(), Recorder()
    book = ChunkBook.for_image(IMAGE)
    with pytest.raises(ic.AccessDenied):
        await pump(book, RelayMover(reader, target, IMAGE, DIGESTS), rec, n=1).run()
    # Five pieces (28,445 bytes) cover chunks 0-5 whole and chunk 6 in part:
    # acknowledged piece by piece, not lost with the run; chunk 6 is not acknowledged.
    assert sorted(i for i, _ in rec.acks) == [0, 1, 2, 3, 4, 5]
    assert book.acked_count == 6
    assert book.in_flight_count == 0
    resumed = Recorder()
    reader = one_call_pieces(DATA, 6000)
    assert await pump(book, RelayMover(reader, target, IMAGE, DIGESTS), resumed).run() == (
        IMAGE.digest
    )
    assert sorted(i for i, _ in resumed.acks) == list(range(6, IMAGE.chunk_count))
    assert min(offset for offset, _ in reader.reads) == 6 * CHUNK  # from chunk 6's start


async def test_pieces_stop_at_chunks_acked_before() -> None:
    acked = {i: DIGESTS[i] for i in (3, 4, 9)}
    reader, target, rec = one_call_pieces(DATA, 6000), CheckingTarget(), Recorder()
    book = ChunkBook.for_image(IMAGE, acked)
    await pump(book, RelayMover(reader, target, IMAGE, DIGESTS), rec, n=2).run()
    assert sorted(i for i, _ in rec.acks) == [0, 1, 2, 5, 6, 7, 8, 10, 11, 12]
    written = {offset // CHUNK for offset, n in reader.reads} | {
        (offset + n - 1) // CHUNK for offset, n in reader.reads
    }
    assert not written & set(acked)


async def test_runs_are_shared_out_so_every_worker_has_one() -> None:
    target, rec = FakeTarget(), Recorder()
    book = ChunkBook.for_image(IMAGE)  # 13 chunks
    mover = DirectMover(target, sizer(ceiling=8 * CHUNK), DIGESTS)
    assert mover.run_bytes == 8 * CHUNK  # one transfer: 8 chunks
    await pump(book, mover, rec, n=4).run()
    assert max(n for _, n in rec.advanced) <= 4  # ceil(13 / 4): no worker left idle
    assert 1 < target.peak <= 4


async def test_a_verify_reads_without_writing() -> None:
    rec = Recorder()
    mover = RelayMover(FakeReader(DATA), None, IMAGE, DIGESTS)
    assert await pump(ChunkBook.for_image(IMAGE), mover, rec).run() == IMAGE.digest


async def test_cancellation_propagates_and_releases_chunks_in_flight() -> None:
    started = asyncio.Event()

    class Stuck:
        async def push(self, offset: int, length: int) -> None:
            started.set()
            await asyncio.sleep(60)

    book = ChunkBook.for_image(IMAGE)
    task = asyncio.create_task(pump(book, DirectMover(Stuck(), sizer(), DIGESTS), Recorder()).run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert book.in_flight_count == 0
    assert book.acked_count == 0


def test_runs_cover_whole_chunks() -> None:
    run = Run.of(range(11, 13), IMAGE)
    assert (run.offset, run.length) == (11 * CHUNK, len(DATA) - 11 * CHUNK)
    assert list(run.chunks) == [11, 12]


@pytest.mark.parametrize("max_piece", [1, 7, 1000, 2_000_000])
@pytest.mark.parametrize("length", [1, 6, 7, 8, 999, 1001, 2_000_001, 3 << 30])
def test_first_piece_is_the_first_of_split_evenly(length: int, max_piece: int) -> None:
    if length // max_piece > 100_000:
        max_piece = length // 3  # split_evenly would list too many pieces
    assert first_piece(length, max_piece) == split_evenly(0, length, max_piece)[0][1]
