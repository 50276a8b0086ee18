"""Archive files as sources and targets (:mod:`replicator.archive`).

Source (:class:`ArchiveSource`): ``prepare`` verifies the *whole* file —
every frame's CRC, every chunk's SHA-256, completeness, trailer, image
digest — before the job touches a canister, so a damaged or foreign file
never reaches a target (``ArchiveError``, exit code 5).  Its chunk digests
come from the file; each chunk is re-verified as it is read.

Target (:class:`ArchiveTarget`): ``prepare`` creates the file or resumes a
partly written one of the same image (the writer keeps the intact frames
and truncates a torn tail); ``held`` are the chunks already in the file;
writes are fsynced before the pump acknowledges them; ``commit`` writes the
trailer after checking the image digest; ``digest`` re-reads and verifies
the finished file.  A file holding another image is refused, never
overwritten; a partial file this job wrote for an image the source no
longer offers is removed when the job starts over.

File I/O runs in a worker thread, one operation at a time (the writer is
not thread-safe), so the event loop keeps serving the calls of other jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path as FsPath

from canister_iface.principal import Principal
from replicator.archive import ArchiveError, ArchiveHeader, ArchiveReader, ArchiveWriter
from replicator.errors import UsageError
from replicator.flow import Calls
from replicator.flows.image.sides import Prepared
from replicator.integrity import ImageInfo
from replicator.job import ArchiveRef
from replicator.pump import Buffer, Run

log = logging.getLogger(__name__)

# No call limits apply to a local file: runs of this many bytes (the other
# side's transfer size still bounds a run).
FILE_RUN_BYTES = 64 * 1024 * 1024


class ArchiveSource:
    """An archive file whose image a job imports or verifies."""

    def __init__(self, ref: ArchiveRef, ctx: Calls) -> None:
        self.endpoint = ref
        self.ctx = ctx
        self.path = FsPath(ref.path)
        self._reader: ArchiveReader | None = None
        self._header: ArchiveHeader | None = None
        self._digests: list[bytes] | None = None

    @property
    def origin(self) -> Principal:
        header = self._need_header()
        try:
            return Principal.from_text(header.source)
        except ValueError:
            raise UsageError(
                f"{self.path} names its source {header.source!r}, which is not a canister id; "
                "the archive cannot be imported"
            ) from None

    @property
    def journal_seq(self) -> int:
        return 0  # archives do not record the journal head (format version 1)

    async def prepare(self, resume: ImageInfo | None) -> ImageInfo:
        del resume  # a file's image never changes under a job
        if self._reader is None:
            reader, self._digests = await asyncio.to_thread(_open_verified, self.path)
            self._reader, self._header = reader, reader.header
        header = self._need_header()
        return ImageInfo(header.snapshot_id, header.size, header.chunk_size, header.digest)

    async def chunk_digests(self, image: ImageInfo) -> list[bytes]:
        del image
        if self._digests is None:
            raise UsageError(f"{self.path} has not been verified yet")
        return self._digests

    def reader(self, image: ImageInfo, *, charged: bool = True) -> ArchiveChunkReader:
        del image, charged  # a file is read without calls: nothing to charge
        if self._reader is None:
            raise UsageError(f"{self.path} has not been verified yet")
        return ArchiveChunkReader(self._reader)

    async def release(self, image: ImageInfo) -> None:
        del image

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _need_header(self) -> ArchiveHeader:
        if self._header is None:
            raise UsageError(f"{self.path} has not been verified yet")
        return self._header


def _open_verified(path: FsPath) -> tuple[ArchiveReader, list[bytes]]:
    reader = ArchiveReader(path)
    try:
        reader.verify()
        digests = [reader.read_chunk(i).sha256 for i in range(reader.header.chunk_count)]
    except BaseException:
        reader.close()
        raise
    return reader, digests


class ArchiveChunkReader:
    """Chunks of a verified archive (each re-verified as it is read)."""

    def __init__(self, reader: ArchiveReader) -> None:
        self._reader = reader
        self._lock = asyncio.Lock()

    @property
    def run_bytes(self) -> int:
        return FILE_RUN_BYTES

    async def read_run(self, run: Run) -> bytes:
        async with self._lock:
            return await asyncio.to_thread(self._read, run)

    def _read(self, run: Run) -> bytes:
        return b"".join(self._reader.read_chunk(i).data for i in run.chunks)


class ArchiveTarget:
    """An archive file a job writes an image into."""

    def __init__(self, ref: ArchiveRef, ctx: Calls) -> None:
        self.endpoint = ref
        self.ctx = ctx
        self.path = FsPath(ref.path)
        self._writer: ArchiveWriter | None = None
        self._lock = asyncio.Lock()

    async def prepare(
        self,
        image: ImageInfo,
        origin: Principal,
        journal_seq: int,
        digests: Sequence[bytes],
        resume_import_id: int | None,
    ) -> Prepared:
        del journal_seq, digests, resume_import_id
        if image.digest is None:
            raise ValueError(f"snapshot {image.snapshot_id} has no digest yet")
        header = ArchiveHeader(
            source=origin.to_text(),
            snapshot_id=image.snapshot_id,
            size=image.size,
            chunk_size=image.chunk_size,
            digest=image.digest,
        )
        async with self._lock:
            if self._writer is not None:
                self._writer.close()
            self._writer = await asyncio.to_thread(ArchiveWriter.open, self.path, header)
            writer = self._writer
        if writer.written and not writer.complete:
            self.ctx.note(f"resuming {self.path}: {len(writer.written)} chunks already written")
        return Prepared(None, committed=writer.complete)

    async def held(self, image: ImageInfo, import_id: int | None) -> set[int]:
        del image, import_id
        return set(self._need_writer().written)

    def writer(self, image: ImageInfo, import_id: int | None) -> ArchiveChunkWriter:
        del import_id
        return ArchiveChunkWriter(self._need_writer(), image, self._lock)

    async def commit(self, image: ImageInfo, import_id: int | None) -> None:
        del image, import_id
        writer = self._need_writer()
        async with self._lock:
            await asyncio.to_thread(writer.finish)

    async def digest(self, image: ImageInfo, import_id: int | None) -> bytes:
        del image, import_id
        return await asyncio.to_thread(_verified_digest, self.path)

    async def abort(self, import_id: int) -> None:
        del import_id

    async def discard(self) -> None:
        async with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            await asyncio.to_thread(_remove_partial, self.path)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _need_writer(self) -> ArchiveWriter:
        if self._writer is None:
            raise UsageError(f"{self.path} is not open for writing")
        return self._writer


class ArchiveChunkWriter:
    """Writes runs as chunk frames; ``flush`` fsyncs before the pump acknowledges.

    A file checks nothing and costs no calls: the relay hashes every chunk
    before writing it here, and its reads are what the byte budget counts.
    """

    verifies_chunks = False
    charges_bytes = False

    def __init__(self, writer: ArchiveWriter, image: ImageInfo, lock: asyncio.Lock) -> None:
        self._writer = writer
        self._image = image
        self._lock = lock

    @property
    def run_bytes(self) -> int:
        return FILE_RUN_BYTES

    async def write_run(self, run: Run, data: Buffer) -> None:
        async with self._lock:
            await asyncio.to_thread(self._write, run, data)

    async def write_at(self, offset: int, data: Buffer) -> None:
        raise TypeError("an archive holds whole chunks: write runs (verifies_chunks is False)")

    def _write(self, run: Run, data: Buffer) -> None:
        chunk_size = self._image.chunk_size
        for index in run.chunks:
            start = index * chunk_size - run.offset
            self._writer.write_chunk(index, bytes(data[start : start + chunk_size]))

    async def flush(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._writer.sync)


def _verified_digest(path: FsPath) -> bytes:
    with ArchiveReader(path) as reader:
        return reader.verify()


def _remove_partial(path: FsPath) -> None:
    """Remove ``path`` if it is an unfinished archive (never a complete one)."""
    if not path.exists():
        return
    try:
        with ArchiveReader(path) as reader:
            reader.verify()
    except ArchiveError as exc:
        if "incomplete" in str(exc) or "ends" in str(exc):
            log.info("removing the unfinished archive %s: %s", path, exc)
            path.unlink()
            return
        raise
    # A complete archive stays; the writer refuses it if it holds another image.
