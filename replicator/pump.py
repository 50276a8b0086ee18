"""The pump: moves an image's chunks with bounded concurrency and checkpoints them.

One copy is::

    plan runs of chunks → (per run) permit → call → verify → ack → checkpoint

- **Plan**: the :class:`~replicator.chunkbook.ChunkBook` hands out runs of
  contiguous chunks that are not yet acknowledged, lowest first: as many
  per run as the mover wants (:attr:`Mover.run_bytes`:
  :data:`PIECES_PER_RUN` transfers), but no more than an even share of
  what is left per worker, so that a small image still keeps every worker
  busy.  A run is moved in *pieces* of the current transfer size, which
  need not line up with chunks.
- **Move**: a :class:`Mover` moves one run.  :class:`DirectMover` asks the
  source canister to ``icrp_push`` each piece into the target (the bytes
  never leave the IC); :class:`RelayMover` reads the run from a
  :class:`ChunkReader` (``icrp_read`` queries in pieces, or archive frames),
  checks it, and writes it to a :class:`ChunkWriter` (``icrp_write``
  updates in pieces, or archive frames).  When the writer is a canister
  that checks every chunk itself (:attr:`ChunkWriter.verifies_chunks`) and
  the reader reads any range (:class:`PieceReader`), the relay streams:
  each piece is written as soon as it is read, one piece in memory per
  run.  Where the source can answer a read as the target's write argument
  (:class:`ForwardingWriter`; ICRP ``icrp_read_for_write``), the reply is
  sent on as it came: each byte is hashed once (the reply's signature
  check and the write's request id share the SHA-256) and never
  re-encoded, and released once the node has taken the write (not when
  it is certified: a retry reads the piece again), so the runs in flight
  hold only the replies not yet sent; other sources are read and written
  as before.  Every call
  goes through :class:`~replicator.calls.CallRunner`: limits, retries of
  transient errors, metrics.
- **Adapt**: pieces are cut to the current
  :class:`~replicator.chunking.TransferSize` of their path (:class:`Sizer`:
  push, read, write); a call that fails for its size
  (HTTP 413, a payload or reply over a limit, the instruction limit) shrinks
  it and the rest of the run is cut again; successes grow it back.
- **Verify**: every chunk is checked once against the digest the source
  published (``icrp_chunk_digests`` or the archive's frame).  A canister
  target that was given the chunk digests in its import spec checks each
  chunk as it completes and refuses a bad one (``icrp.did``), whether the
  bytes came pushed (direct) or relayed; so the relay hashes only what goes
  elsewhere (an archive file, or nowhere for a verify job), and does so
  *before* writing it.
- **Ack**: a run counts as done only after every piece was acknowledged by
  the target (and, for an archive, fsynced); then its chunks are recorded in
  the checkpoint store (durably) and in the book, and the metrics and
  progress advance.
- **Pieces across chunks**: a streaming relay (:attr:`RelayMover.piecewise`)
  does not move runs of whole chunks: the pump cuts the planned chunks into
  pieces of the full transfer size that need not line up with chunks (a
  1 MiB-chunk image goes in ~1.94 MiB writes, not 1 MiB ones: half the calls,
  so half the signatures, certificates and per-call work), and acknowledges
  a chunk as soon as every piece covering it is acknowledged: a kill loses
  at most the pieces in flight, never a long run (:class:`_PieceCutter`).

Workers: ``concurrency`` tasks in an :class:`asyncio.TaskGroup` take runs
until none are left.  The first failure cancels the others and is raised
as itself (not as an ``ExceptionGroup``); chunks in flight stay
unacknowledged and are copied again by the next run of the job.
Cancellation propagates unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from canister_iface import errors as ic
from replicator.chunkbook import ChunkBook
from replicator.chunking import Path, TransferSize, shrink_reason
from replicator.errors import IntegrityError, JobFailed
from replicator.integrity import ImageInfo, chunk_digest, chunk_span

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
# Transfers per run.  A run is acknowledged, and so checkpointed, only when
# all of it is; under a binding byte budget the runs in flight advance
# together and finish together, so long runs (8 transfers were tried) made
# progress come in bursts and a kill lose up to concurrency x run bytes: a
# run is one transfer, as many whole chunks as fit it.
PIECES_PER_RUN = 1

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Run:
    """Chunks ``first .. stop - 1`` of an image: bytes ``[offset, offset + length)``."""

    first: int
    stop: int
    offset: int
    length: int

    @property
    def chunks(self) -> range:
        return range(self.first, self.stop)

    @classmethod
    def of(cls, chunks: range, image: ImageInfo) -> Run:
        offset, _ = chunk_span(chunks.start, image.size, image.chunk_size)
        last_offset, last_length = chunk_span(chunks.stop - 1, image.size, image.chunk_size)
        return cls(chunks.start, chunks.stop, offset, last_offset + last_length - offset)


class TransferTooLarge(JobFailed):
    """Even the smallest transfer size fails for its size."""


# ------------------------------------------------------------------ sizing


def first_piece(length: int, max_piece: int) -> int:
    """The length of the first of :func:`~replicator.chunking.split_evenly`'s pieces of
    ``length`` bytes (the longest), without listing them all: a stretch of a large
    image has thousands, and a piece is cut from what is left of it each time."""
    count = -(-length // max_piece)
    base, extra = divmod(length, count)
    return base + (1 if extra else 0)


class Sizer:
    """The adaptive transfer size of one path, reported to the metrics."""

    def __init__(
        self,
        size: TransferSize,
        path: Path,
        on_change: Callable[[Path, int], None] | None = None,
    ) -> None:
        self.size = size
        self.path = path
        self._on_change = on_change
        self._report()

    @property
    def current(self) -> int:
        return self.size.size

    async def sized(
        self, offset: int, length: int, step: Callable[[int, int], Awaitable[None]]
    ) -> None:
        """Call ``step(offset, n)`` over ``[offset, offset + length)`` in adaptive pieces."""
        position, end = offset, offset + length
        while position < end:
            piece = first_piece(end - position, self.size.size)
            try:
                await step(position, piece)
            except ic.IcError as exc:
                if shrink_reason(exc) is None:
                    raise
                self._shrink(piece, exc)
                continue
            self.size.on_success()
            self._report()
            position += piece

    def _shrink(self, piece: int, exc: ic.IcError) -> None:
        before = self.size.size
        if not self.size.on_too_large(piece):
            raise TransferTooLarge(
                f"a transfer of {piece:,} bytes on the {self.path} path failed for its size even "
                f"at the smallest allowed size ({exc}); lower limits.min_chunk_size or check "
                "the canister's message limits"
            ) from exc
        log.info(
            "%s transfer of %d bytes too large (%s); now %d", self.path, piece, exc, self.size.size
        )
        if self.size.size != before:
            self._report()

    def _report(self) -> None:
        if self._on_change is not None:
            self._on_change(self.path, self.size.size)


# ------------------------------------------------------------------ movers


class Mover(Protocol):
    """Moves one run to the target; returns the digest of each of its chunks."""

    route: str  # "direct" or "relay": the metrics label

    @property
    def run_bytes(self) -> int:
        """How many bytes one run should cover now (the pump takes whole chunks)."""
        ...

    async def move(self, run: Run) -> list[bytes]: ...

    async def flush(self) -> None:
        """Make everything moved so far durable at the target (before acks)."""
        ...


@runtime_checkable
class PieceMover(Mover, Protocol):
    """A mover that may also move any byte range, where :attr:`piecewise`."""

    @property
    def piecewise(self) -> bool:
        """It moves any byte range (:meth:`move_piece`), each acknowledged piece durable
        at a target that checks every chunk: the pump may cut pieces across chunks."""
        ...

    async def move_piece(self, offset: int, length: int) -> None:
        """Move ``[offset, offset + length)`` (only where :attr:`piecewise`)."""
        ...

    def digest(self, index: int) -> bytes:
        """The digest chunk ``index`` was acknowledged with (only where :attr:`piecewise`)."""
        ...


class ChunkReader(Protocol):
    """Where the relay reads bytes from."""

    @property
    def run_bytes(self) -> int: ...

    async def read_run(self, run: Run) -> Buffer:
        """Exactly the ``run.length`` bytes of ``run``."""
        ...


@runtime_checkable
class PieceReader(Protocol):
    """A reader that serves any byte range, one adaptive piece per call (a canister)."""

    sizer: Sizer

    async def read_at(self, offset: int, length: int) -> Buffer:
        """Exactly ``length`` bytes at ``offset``, in one call."""
        ...


class ChunkWriter(Protocol):
    """Where the relay writes bytes to."""

    @property
    def run_bytes(self) -> int: ...

    @property
    def verifies_chunks(self) -> bool:
        """The target checks every chunk it completes against the digest the source
        published and refuses a bad one; it takes bytes at any offset (``write_at``)."""
        ...

    @property
    def charges_bytes(self) -> bool:
        """Its calls count the bytes against the bytes-per-second budget (a canister);
        then the reader does not, so each byte moved is counted once."""
        ...

    async def write_run(self, run: Run, data: Buffer) -> None:
        """Write the (verified) bytes of ``run``; done only once acknowledged."""
        ...

    async def write_at(self, offset: int, data: Buffer) -> None:
        """Write ``data`` at ``offset`` (only where ``verifies_chunks``); done once acknowledged."""
        ...

    async def flush(self) -> None:
        """Make every write so far durable (files: fsync)."""
        ...


Step = Callable[[int, int], Awaitable[None]]


@runtime_checkable
class ForwardingWriter(Protocol):
    """A writer that can have a piece read as its own call's argument."""

    def forwarder(self, reader: PieceReader) -> Step | None:
        """A step moving ``(offset, length)`` from ``reader`` whose read reply is sent on
        as the write's argument, unchanged (each byte hashed once, never copied),
        or ``None`` where ``reader`` cannot answer so."""
        ...


class Pusher(Protocol):
    """The direct path: makes the source write a byte range into the target."""

    async def push(self, offset: int, length: int) -> None: ...


class DirectMover:
    """Asks the source to push each piece to the target (``icrp_push``)."""

    route = "direct"

    def __init__(self, pusher: Pusher, sizer: Sizer, expected: Sequence[bytes]) -> None:
        self.pusher = pusher
        self.sizer = sizer
        self.expected = expected

    @property
    def run_bytes(self) -> int:
        return PIECES_PER_RUN * self.sizer.current

    async def move(self, run: Run) -> list[bytes]:
        await self.sizer.sized(run.offset, run.length, self.pusher.push)
        # The target verified every completed chunk against these digests (they
        # are in its import spec), so they are what it acknowledged.
        return [self.expected[i] for i in run.chunks]

    async def flush(self) -> None:
        return None


class RelayMover:
    """Reads a run from the source, checks every chunk, writes it to the target.

    ``writer=None`` only reads and checks (verify jobs).
    """

    route = "relay"

    def __init__(
        self,
        reader: ChunkReader,
        writer: ChunkWriter | None,
        image: ImageInfo,
        expected: Sequence[bytes],
        *,
        describe: str = "the source",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.image = image
        self.expected = expected
        self.describe = describe
        self._pair: tuple[PieceReader, ChunkWriter] | None = None  # move_piece's, once known
        self._step: Step | None = None  # a streaming piece's, once known

    @property
    def run_bytes(self) -> int:
        if self.writer is None:
            return self.reader.run_bytes
        return min(self.reader.run_bytes, self.writer.run_bytes)

    @property
    def piecewise(self) -> bool:
        """Streaming into a target that checks every chunk, from a reader of any range:
        a canister writer's acknowledged write is durable (its flush does nothing)."""
        return self._streams() is not None

    def _streams(self) -> tuple[PieceReader, ChunkWriter] | None:
        writer, reader = self.writer, self.reader
        if writer is not None and writer.verifies_chunks and isinstance(reader, PieceReader):
            return reader, writer
        return None

    async def move(self, run: Run) -> list[bytes]:
        writer = self.writer
        if writer is not None and writer.verifies_chunks:
            # The target checks every chunk: hashing here too would only repeat it.
            if isinstance(self.reader, PieceReader):
                await self._stream(self.reader, writer, run.offset, run.length)
            else:
                await writer.write_run(run, await self._read(run))
            return [self.expected[i] for i in run.chunks]
        data = await self._read(run)
        digests = self._check(run, data)
        if writer is not None:
            await writer.write_run(run, data)
        return digests

    async def _read(self, run: Run) -> Buffer:
        data = await self.reader.read_run(run)
        if len(data) != run.length:
            raise ic.ProtocolError(
                f"{self.describe} returned {len(data):,} bytes for chunks {run.first}.."
                f"{run.stop - 1} ({run.length:,} bytes at offset {run.offset:,})"
            )
        return data

    async def move_piece(self, offset: int, length: int) -> None:
        if self._pair is None:  # once: a protocol isinstance check costs ~50 µs
            self._pair = self._streams()
            if self._pair is None:
                raise TypeError("only a streaming relay into a checking target moves pieces")
        await self._stream(*self._pair, offset, length)

    def digest(self, index: int) -> bytes:
        # Only where piecewise: the target checked the chunk against this digest.
        return self.expected[index]

    async def _stream(
        self, reader: PieceReader, writer: ChunkWriter, offset: int, length: int
    ) -> None:
        """Each piece is written as soon as it is read (the writer sizes its own calls),
        forwarded as it came where the writer and the reader can (:class:`ForwardingWriter`)."""
        step = self._step
        if step is None:
            step = writer.forwarder(reader) if isinstance(writer, ForwardingWriter) else None
            if step is None:

                async def step(at: int, size: int) -> None:
                    await writer.write_at(at, await reader.read_at(at, size))

            self._step = step
        await reader.sizer.sized(offset, length, step)

    async def flush(self) -> None:
        if self.writer is not None:
            await self.writer.flush()

    def _check(self, run: Run, data: Buffer) -> list[bytes]:
        digests = []
        view = memoryview(data)
        for index in run.chunks:
            offset, length = chunk_span(index, self.image.size, self.image.chunk_size)
            start = offset - run.offset
            digest = chunk_digest(view[start : start + length])
            if digest != self.expected[index]:
                raise IntegrityError(
                    f"chunk {index} read from {self.describe} (snapshot "
                    f"{self.image.snapshot_id}) hashes to {digest.hex()}, but the source "
                    f"published {self.expected[index].hex()}; it was not written anywhere. "
                    "Re-run the job; if it happens again the source image is damaged"
                )
            digests.append(digest)
        return digests


# -------------------------------------------------------------------- pump

AckSink = Callable[[Sequence[tuple[int, bytes]]], Awaitable[None]]
Advance = Callable[[int, int], None]


class Pump:
    """Copies every unacknowledged chunk of ``book`` with ``mover``.

    ``ack(acks)`` records acknowledged ``(index, digest)`` pairs durably (the
    checkpoint store); ``advanced(nbytes, nchunks)`` is told afterwards.
    """

    def __init__(
        self,
        image: ImageInfo,
        book: ChunkBook,
        mover: Mover,
        *,
        ack: AckSink,
        advanced: Advance,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.image = image
        self.book = book
        self.mover = mover
        self._ack = ack
        self._advanced = advanced
        self.concurrency = concurrency
        self._workers = concurrency

    async def run(self) -> bytes:
        """Copy until every chunk is acknowledged; returns the image digest."""
        workers = self._workers = min(self.concurrency, max(1, self.book.planned_count))
        mover = self.mover
        piecewise = isinstance(mover, PieceMover) and mover.piecewise
        cutter = _PieceCutter(self.book, self.image) if piecewise else None
        if self.book.planned_count:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        work = self._work() if cutter is None else self._pieces(cutter)
                        group.create_task(work)
            except BaseExceptionGroup as group_error:
                raise _primary(group_error) from None
            finally:
                if cutter is not None:
                    cutter.release()
        return self.book.image_digest()

    def _per_run(self) -> int:
        """Chunks the next run takes: what the mover wants, but no more than an even
        share of what is left per worker (so no worker idles while another has a
        long run), and at least one."""
        wanted = self.mover.run_bytes // self.image.chunk_size
        share = -(-self.book.planned_count // self._workers)
        return max(1, min(wanted, share))

    async def _work(self) -> None:
        while True:
            chunks = self.book.take(self._per_run())
            if not chunks:
                return
            try:
                digests = await self.mover.move(Run.of(chunks, self.image))
                await self.mover.flush()
            except BaseException:
                self.book.release(chunks)
                raise
            await self._record(list(zip(chunks, digests, strict=True)))

    async def _pieces(self, cutter: _PieceCutter) -> None:
        """Move pieces of the full transfer size; ack each chunk once all of it is."""
        mover = self.mover
        assert isinstance(mover, PieceMover)  # run() made a cutter for no other
        while True:
            piece = cutter.take(mover.run_bytes)
            if piece is None:
                return
            await mover.move_piece(piece.offset, piece.length)
            done = cutter.finished(piece)
            if done:
                await self._record([(index, mover.digest(index)) for index in done])

    async def _record(self, acks: Sequence[tuple[int, bytes]]) -> None:
        await self._ack(acks)
        for index, digest in acks:
            self.book.ack(index, digest)
        nbytes = sum(chunk_span(i, self.image.size, self.image.chunk_size)[1] for i, _ in acks)
        self._advanced(nbytes, len(acks))


@dataclass(frozen=True)
class _Piece:
    """Bytes ``[offset, offset + length)``, touching chunks ``chunks``."""

    offset: int
    length: int
    chunks: range


class _PieceCutter:
    """Cuts the planned chunks into pieces that need not line up with chunks.

    It takes each contiguous stretch of planned chunks from the book at once
    (in flight from then on) and hands out pieces of it in order, cut evenly
    to the size asked (no short last piece).  A chunk is finished once the
    pieces handed out have passed its end and none of those covering it is
    still in flight.  A failed piece fails the pump (its task group), so a
    chunk is never left half-covered and then finished: :meth:`release`
    returns whatever was taken and not finished to the plan.
    """

    def __init__(self, book: ChunkBook, image: ImageInfo) -> None:
        self.book = book
        self.image = image
        self._stretch = range(0)
        self._position = self._end = 0
        self._taken: list[range] = []
        self._in_flight: dict[int, int] = {}  # chunk -> pieces covering it not yet acknowledged

    def take(self, size: int) -> _Piece | None:
        if self._position >= self._end and not self._next_stretch():
            return None
        offset = self._position
        length = first_piece(self._end - offset, size)
        chunk_size = self.image.chunk_size
        chunks = range(offset // chunk_size, (offset + length - 1) // chunk_size + 1)
        for index in chunks:
            self._in_flight[index] = self._in_flight.get(index, 0) + 1
        self._position = offset + length
        return _Piece(offset, length, chunks)

    def finished(self, piece: _Piece) -> list[int]:
        """``piece`` was acknowledged: the chunks that are now complete."""
        done = []
        for index in piece.chunks:
            left = self._in_flight[index] - 1
            if left == 0 and self._handed_out(index):
                del self._in_flight[index]
                done.append(index)
            else:
                self._in_flight[index] = left
        return done

    def release(self) -> None:
        for stretch in self._taken:
            self.book.release(stretch)  # finished chunks are acked: release skips them
        self._taken.clear()

    def _handed_out(self, index: int) -> bool:
        """Every byte of chunk ``index`` is in a piece handed out (stretches go in order)."""
        if index not in self._stretch:
            return True
        offset, length = chunk_span(index, self.image.size, self.image.chunk_size)
        return offset + length <= self._position

    def _next_stretch(self) -> bool:
        stretch = self.book.take(max(1, self.book.count))
        if not stretch:
            return False
        self._taken.append(stretch)
        run = Run.of(stretch, self.image)
        self._stretch, self._position, self._end = stretch, run.offset, run.offset + run.length
        return True


def _primary(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that made a task group fail: the first that is not a cancellation."""
    leaves = list(_leaves(group))
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0] if leaves else asyncio.CancelledError()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found
