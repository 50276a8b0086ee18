"""Archive files as sources and targets (:mod:`replicator.archive`).

Source (:class:`ArchiveSource`): ``prepare`` verifies the *whole* file —
every frame's CRC, every chunk's SHA-256, completeness, trailer, image
digest — before the job touches a canister, so a damaged or foreign file
never reaches a target (``ArchiveError``, exit code 5).  Its chunk digests
come from the file; each chunk is re-verified as it is read.

Target (:class:`ArchiveTarget`): the archive is written to ``PATH.partial``
and renamed to ``PATH`` once complete, so ``PATH`` is only ever a complete
archive.  Re-running an export to the same file (by hand, or a scheduled
job under ``serve``) follows one rule:

- ``PATH`` already holds this image of this source (same bytes, verified):
  nothing to do;
- ``PATH`` holds an older image of the same source: the new image is
  written beside it and replaces it atomically when complete (the old
  archive stays until then);
- ``PATH`` is not an archive, or one of another canister: refused (exit 2),
  never overwritten.

``PATH`` may be a template: ``{canister}`` (the source's id) and
``{snapshot}`` (the image's snapshot id) make a new file per image, e.g.
``archives/{canister}-{snapshot}.icra``; a re-run of the same image is then
"nothing to do".

``prepare`` creates ``PATH.partial`` or resumes it if it holds a part of the
same image (the writer keeps the intact frames and truncates a torn tail; a
part of another image is dropped); ``held`` are the chunks already in it;
writes are fsynced before the pump acknowledges them; ``commit`` writes the
trailer after checking the image digest and renames the file into place;
``digest`` re-reads and verifies the finished file.  Archive files have
mode 0600.

File I/O runs in a worker thread, one operation at a time (the writer is
not thread-safe), so the event loop keeps serving the calls of other jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path as FsPath

from canister_iface.principal import Principal
from replicator.archive import (
    ArchiveError,
    ArchiveHeader,
    ArchiveReader,
    ArchiveWriter,
    fsync_dir,
    read_header,
)
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
PARTIAL_SUFFIX = ".partial"
PLACEHOLDERS = ("canister", "snapshot")


def archive_path(template: str, canister: str, snapshot: int) -> FsPath:
    """The file an export writes: ``template`` with ``{canister}`` and ``{snapshot}`` filled in."""
    check_template(template)
    return FsPath(template.format(canister=canister, snapshot=snapshot))


def check_template(template: str) -> None:
    """A usage error for placeholders other than ``{canister}`` and ``{snapshot}``."""
    try:
        template.format(canister="c", snapshot=0)
    except (KeyError, IndexError, ValueError) as exc:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise UsageError(
            f"the archive path {template!r} has a placeholder this replicator does not fill "
            f"({exc}); use {known}, or double the braces ({{{{ }}}}) for literal ones"
        ) from None


def partial_path(path: FsPath) -> FsPath:
    """Where an archive is written until it is complete."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


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
    """An archive file a job writes an image into (see the module docstring)."""

    def __init__(self, ref: ArchiveRef, ctx: Calls) -> None:
        self.endpoint = ref
        self.ctx = ctx
        self.template = ref.path
        self.path = FsPath(ref.path)  # the resolved file once the image is known
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
        self.path = archive_path(self.template, header.source, header.snapshot_id)
        async with self._lock:
            await self._close_writer()
            held = await asyncio.to_thread(_holds, self.path, header)
            if held:
                self.ctx.note(f"{self.path} already holds this image: nothing to write")
                return Prepared(None, committed=True)
            self._writer = await asyncio.to_thread(_open_partial, self.path, header)
            writer = self._writer
            if writer.complete:  # finished before a crash, not yet renamed into place
                await asyncio.to_thread(_publish, writer, self.path)
                return Prepared(None, committed=True)
        if writer.written:
            self.ctx.note(f"resuming {writer.path}: {len(writer.written)} chunks already written")
        return Prepared(None)

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
            await asyncio.to_thread(_publish, writer, self.path)
        self.ctx.note(f"wrote {self.path}")  # digest() reads the file back

    async def digest(self, image: ImageInfo, import_id: int | None) -> bytes:
        del image, import_id
        return await asyncio.to_thread(_verified_digest, self.path)

    async def abort(self, import_id: int) -> None:
        del import_id

    async def discard(self) -> None:
        async with self._lock:
            await self._close_writer()
            await asyncio.to_thread(_remove_partial, partial_path(self.path))

    async def close(self) -> None:
        await self._close_writer()

    async def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _need_writer(self) -> ArchiveWriter:
        if self._writer is None:
            raise UsageError(f"{self.path} is not open for writing")
        return self._writer


def _holds(path: FsPath, wanted: ArchiveHeader) -> bool:
    """Does ``path`` already hold ``wanted``'s bytes, complete and intact?

    Refuses (a usage error) a file that an export must not replace: one that
    is not an archive, or an archive of another canister.
    """
    try:
        found = read_header(path)
    except ArchiveError as exc:
        raise UsageError(
            f"{path} exists and is not an archive this export may replace ({exc}); choose "
            "another file name, or move the file away"
        ) from None
    if found is None:
        return False
    if found.source != wanted.source:
        raise UsageError(
            f"{path} holds an archive of canister {found.source}, not of {wanted.source}; "
            "choose another file name (a template such as {canister}-{snapshot}.icra names "
            "each archive after its source and snapshot)"
        )
    if not found.same_content(wanted):
        log.info(
            "%s holds snapshot %d; replacing it once the new one is complete",
            path,
            found.snapshot_id,
        )
        return False
    try:
        _verified_digest(path)
    except ArchiveError as exc:
        log.warning("%s holds this image but is damaged (%s); writing it again", path, exc)
        return False
    return True


def _open_partial(path: FsPath, header: ArchiveHeader) -> ArchiveWriter:
    """The writer of ``PATH.partial``: resumed if it holds a part of this image, else new."""
    partial = partial_path(path)
    try:
        found = read_header(partial)
    except ArchiveError:
        found = None  # torn while it was created, or garbage under our own temporary name
        if partial.exists():
            _check_ours(partial)
    if found is not None and not found.same_image(header):
        log.info("%s holds a part of snapshot %d; starting over", partial, found.snapshot_id)
        partial.unlink()
    return ArchiveWriter.open(partial, header)


def _check_ours(partial: FsPath) -> None:
    # A file under our temporary name that is not an archive at all is left alone.
    with open(partial, "rb") as f:
        start = f.read(4)
    if start and not start.startswith(b"\x89ICR"[: len(start)]):
        raise UsageError(
            f"{partial} exists and is not a partial archive; move it away, then re-run"
        )
    partial.unlink()


def _publish(writer: ArchiveWriter, path: FsPath) -> None:
    """Rename the complete ``PATH.partial`` to ``PATH`` (atomically replacing an older archive)."""
    writer.close()
    os.replace(writer.path, path)
    fsync_dir(path.parent)


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


def _remove_partial(partial: FsPath) -> None:
    """Remove an unfinished archive under our temporary name (never the archive itself)."""
    if partial.exists():
        log.info("removing the unfinished archive %s", partial)
        partial.unlink()
