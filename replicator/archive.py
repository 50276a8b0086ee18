"""The archive file: a canister image off-chain, verifiable chunk by chunk.

Format, version 1 (also in ``docs/archive-format.md``).  Integers are
big-endian; maps are msgpack with string keys; ``bin`` values are raw bytes::

    file     := preamble header-frame chunk-frame* trailer-frame
    preamble := magic (8 bytes: 89 49 43 52 0D 0A 1A 0A, i.e. "\\x89ICR\\r\\n\\x1a\\n")
                version (u16, = 1)
    frame    := type (1 byte) length (u32) payload (length bytes, msgpack map)
                crc32 (u32, zlib CRC-32 over type ‖ length ‖ payload)

    header  (type "H"): {source: str, snapshot_id: int, size: int, chunk_size: int,
                         chunks: int, digest: bin(32), created_at: str (ISO 8601 UTC),
                         tool: str}
    chunk   (type "C"): {index: int, offset: int, sha256: bin(32), data: bin}
    trailer (type "T"): {chunks: int, size: int, digest: bin(32)}

- The image is cut into ``chunks = ceil(size / chunk_size)`` chunks; chunk
  *i* holds bytes ``[i·chunk_size, min((i+1)·chunk_size, size))`` and
  ``offset = i·chunk_size``.
- ``digest`` is the image digest: SHA-256 over the ordered chunk SHA-256s
  (:mod:`replicator.integrity`), the same value the source canister reports.
- Chunk frames may come in any order (exports run concurrently); each index
  appears exactly once.  The trailer marks a finished export and repeats the
  chunk count, size and digest.
- The magic's first byte is not ASCII and it contains CR LF and ^Z, like
  PNG's, so text-mode transfers and truncation are caught at once.  The
  CRC catches torn and damaged frames; the SHA-256s catch everything else.

Files are created with mode 0600 whatever the umask: an archive holds a
canister's private state.

Writing (:class:`ArchiveWriter`) appends frames.  Opening an existing file
for the same image resumes it: frames are checked from the start, and the
file is truncated at the first frame that is torn (a crash in the middle of
a write) or damaged; the export then continues with the chunks that are
missing.  A file of another image, or not an archive, is never touched.
:meth:`ArchiveWriter.sync` fsyncs; only chunks written before a ``sync``
may be counted as done.  :meth:`ArchiveWriter.finish` checks the image
digest and writes the trailer.

Reading (:class:`ArchiveReader`) is strict: :meth:`~ArchiveReader.verify`
checks every frame's CRC, every chunk's SHA-256, position and length, that
every chunk is present exactly once, the trailer, and the image digest, and
raises :class:`ArchiveError` naming the chunk and file offset at the first
problem.  An import verifies the whole file before it writes anything to a
canister, and :meth:`~ArchiveReader.read_chunk` re-checks each chunk it
returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from replicator import __version__, codec
from replicator.errors import IntegrityError, UsageError
from replicator.integrity import (
    DIGEST_SIZE,
    chunk_count,
    chunk_digest,
    chunk_span,
    image_digest,
)

log = logging.getLogger(__name__)
_V = TypeVar("_V")

MAGIC = b"\x89ICR\r\n\x1a\n"  # PNG-style: high bit, CR LF, ^Z, LF
VERSION = 1
_PREAMBLE = struct.Struct(f">{len(MAGIC)}sH")
_FRAME_HEAD = struct.Struct(">cI")
_CRC = struct.Struct(">I")
HEADER, CHUNK, TRAILER = b"H", b"C", b"T"
_MAX_META_FRAME = 64 * 1024
_CHUNK_FRAME_SLACK = 4096  # msgpack map around the data
MAX_CHUNK_SIZE = 64 * 1024 * 1024


class ArchiveError(IntegrityError):
    """The file is not a valid archive, or its content does not match its digests."""


@dataclass(frozen=True)
class ArchiveHeader:
    """What an archive holds: which image of which source."""

    source: str
    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes
    created_at: str = ""
    tool: str = f"ic-replicator {__version__}"

    def __post_init__(self) -> None:
        if not 0 < self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be in 1..{MAX_CHUNK_SIZE}, got {self.chunk_size}")
        chunk_count(self.size, self.chunk_size)
        if len(self.digest) != DIGEST_SIZE:
            raise ValueError(f"the image digest is {DIGEST_SIZE} bytes, got {len(self.digest)}")
        if not self.created_at:
            object.__setattr__(self, "created_at", _now_iso())

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def same_image(self, other: ArchiveHeader) -> bool:
        """Same source, snapshot, geometry and digest (creation time and tool aside)."""
        keys = ("source", "snapshot_id", "size", "chunk_size", "digest")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def same_content(self, other: ArchiveHeader) -> bool:
        """The same bytes of the same source, whatever snapshot id they were exported as."""
        keys = ("source", "size", "chunk_size", "digest")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "snapshot_id": self.snapshot_id,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": self.chunk_count,
            "digest": self.digest,
            "created_at": self.created_at,
            "tool": self.tool,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ArchiveHeader:
        header = cls(
            source=_typed(data, "source", str),
            snapshot_id=_typed(data, "snapshot_id", int),
            size=_typed(data, "size", int),
            chunk_size=_typed(data, "chunk_size", int),
            digest=_typed(data, "digest", bytes),
            created_at=_typed(data, "created_at", str),
            tool=_typed(data, "tool", str),
        )
        if _typed(data, "chunks", int) != header.chunk_count:
            raise ValueError("chunk count does not match size and chunk size")
        return header


@dataclass(frozen=True)
class ArchiveChunk:
    """One verified chunk."""

    index: int
    offset: int
    data: bytes
    sha256: bytes


# --------------------------------------------------------------------- frames


class _Damaged(Exception):
    """A frame that is torn or fails its checks (internal)."""

    def __init__(
        self, offset: int, reason: str, *, torn: bool = False, chunk: int | None = None
    ) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason if chunk is None else f"chunk {chunk}: {reason}"
        self.torn = torn  # the file ends inside the frame


@dataclass(frozen=True)
class _Frame:
    offset: int
    kind: bytes
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + _FRAME_HEAD.size + len(self.payload) + _CRC.size


def _encode_frame(kind: bytes, payload: Mapping[str, Any]) -> bytes:
    body = codec.pack(dict(payload))
    head = _FRAME_HEAD.pack(kind, len(body))
    return head + body + _CRC.pack(zlib.crc32(body, zlib.crc32(head)))


def _read_frame(f: BinaryIO, offset: int, max_payload: int) -> _Frame | None:
    """The frame at ``offset``, ``None`` at a clean end of file; raises :class:`_Damaged`."""
    f.seek(offset)
    head = f.read(_FRAME_HEAD.size)
    if not head:
        return None
    if len(head) < _FRAME_HEAD.size:
        raise _Damaged(offset, "the file ends inside a frame header", torn=True)
    kind, length = _FRAME_HEAD.unpack(head)
    if kind not in (HEADER, CHUNK, TRAILER):
        raise _Damaged(offset, f"unknown frame type {kind!r}")
    if length > max_payload:
        raise _Damaged(offset, f"a frame claims {length} bytes, more than {max_payload} allowed")
    body = f.read(length + _CRC.size)
    if len(body) < length + _CRC.size:
        raise _Damaged(offset, "the file ends inside a frame", torn=True)
    payload = body[:length]
    (crc,) = _CRC.unpack(body[length:])
    if zlib.crc32(payload, zlib.crc32(head)) != crc:
        reason = "frame checksum mismatch (damaged or torn write)"
        raise _Damaged(offset, reason, chunk=_guess_index(kind, payload))
    return _Frame(offset, kind, payload)


def _guess_index(kind: bytes, payload: bytes) -> int | None:
    """The index a damaged chunk frame claims, to name it in the error (if still legible)."""
    if kind != CHUNK:
        return None
    try:
        index = codec.unpack_map(payload, "chunk frame", max_bin_len=MAX_CHUNK_SIZE).get("index")
    except codec.DecodeError:
        return None
    return index if isinstance(index, int) else None


def _read_preamble(f: BinaryIO, path: Path) -> None:
    f.seek(0)
    raw = f.read(_PREAMBLE.size)
    if len(raw) < _PREAMBLE.size or raw[: len(MAGIC)] != MAGIC:
        raise ArchiveError(f"{path} is not a replicator archive (no archive magic at offset 0)")
    _, version = _PREAMBLE.unpack(raw)
    if version != VERSION:
        raise ArchiveError(
            f"{path} is archive format version {version}; this replicator reads version "
            f"{VERSION}: use a matching replicator version"
        )


def _read_header(f: BinaryIO, path: Path) -> tuple[ArchiveHeader, int]:
    """The header and the offset of the first frame after it; raises :class:`_Damaged`."""
    frame = _read_frame(f, _PREAMBLE.size, _MAX_META_FRAME)
    if frame is None:
        raise _Damaged(_PREAMBLE.size, "the file ends before the header", torn=True)
    if frame.kind != HEADER:
        raise _Damaged(frame.offset, f"expected the header frame, found type {frame.kind!r}")
    try:
        header = ArchiveHeader.from_payload(codec.unpack_map(frame.payload, "archive header"))
    except (codec.DecodeError, ValueError) as exc:
        raise _Damaged(frame.offset, f"invalid header: {exc}") from exc
    return header, frame.end


def _decode_chunk(frame: _Frame, header: ArchiveHeader) -> ArchiveChunk:
    """A chunk frame, checked against the header and its own SHA-256; raises :class:`_Damaged`."""
    try:
        data = codec.unpack_map(frame.payload, "chunk frame", max_bin_len=MAX_CHUNK_SIZE)
        index = _typed(data, "index", int)
        chunk = ArchiveChunk(
            index=index,
            offset=_typed(data, "offset", int),
            data=_typed(data, "data", bytes),
            sha256=_typed(data, "sha256", bytes),
        )
    except (codec.DecodeError, ValueError) as exc:
        raise _Damaged(frame.offset, f"invalid chunk frame: {exc}") from exc
    if not 0 <= index < header.chunk_count:
        raise _Damaged(
            frame.offset, f"outside the image's {header.chunk_count} chunks", chunk=index
        )
    offset, length = chunk_span(index, header.size, header.chunk_size)
    if chunk.offset != offset or len(chunk.data) != length:
        raise _Damaged(
            frame.offset,
            f"claims offset {chunk.offset} and {len(chunk.data)} bytes; "
            f"expected offset {offset} and {length} bytes",
            chunk=index,
        )
    if chunk_digest(chunk.data) != chunk.sha256:
        raise _Damaged(frame.offset, "its data does not match its SHA-256", chunk=index)
    return chunk


def _decode_trailer(frame: _Frame) -> tuple[int, int, bytes]:
    try:
        data = codec.unpack_map(frame.payload, "trailer")
        return _typed(data, "chunks", int), _typed(data, "size", int), _typed(data, "digest", bytes)
    except (codec.DecodeError, ValueError) as exc:
        raise _Damaged(frame.offset, f"invalid trailer: {exc}") from exc


def _max_chunk_frame(header: ArchiveHeader) -> int:
    return header.chunk_size + _CHUNK_FRAME_SLACK


def _typed(data: Mapping[str, Any], key: str, kind: type[_V]) -> _V:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------- writer


class ArchiveWriter:
    """Writes one image into an archive file, resuming a partly written one.

    ``written`` maps the chunks already in the file to their digests; the
    pump skips those.  Not safe for concurrent use from several threads.
    """

    def __init__(self, path: Path, header: ArchiveHeader, f: BinaryIO) -> None:
        self.path = path
        self.header = header
        self._f = f
        self._digests: dict[int, bytes] = {}
        self.complete = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], header: ArchiveHeader) -> ArchiveWriter:
        """Create ``path``, or resume it if it is a partly written archive of the same image."""
        path = Path(path)
        if not path.exists() or path.stat().st_size == 0:
            return cls._create(path, header)
        f = open(path, "r+b")  # noqa: SIM115 - owned by the writer, closed by close()
        try:
            writer = cls._resume(path, header, f)
        except BaseException:
            f.close()
            raise
        return writer

    @classmethod
    def _create(cls, path: Path, header: ArchiveHeader) -> ArchiveWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open_private(path)
        writer = cls(path, header, f)
        f.write(_PREAMBLE.pack(MAGIC, VERSION))
        f.write(_encode_frame(HEADER, header.to_payload()))
        writer.sync()
        _fsync_dir(path.parent)
        return writer

    @classmethod
    def _resume(cls, path: Path, wanted: ArchiveHeader, f: BinaryIO) -> ArchiveWriter:
        start = f.read(_PREAMBLE.size)
        if len(start) < _PREAMBLE.size and _PREAMBLE.pack(MAGIC, VERSION).startswith(start):
            f.close()
            return cls._create(path, wanted)  # crashed while creating: nothing to keep
        _read_preamble(f, path)
        try:
            header, offset = _read_header(f, path)
        except _Damaged as exc:
            if not exc.torn:
                raise ArchiveError(f"{path}: {exc.reason}; move the file away") from exc
            f.close()
            return cls._create(path, wanted)  # crashed while creating: nothing to keep
        if not header.same_image(wanted):
            raise UsageError(
                f"{path} holds snapshot {header.snapshot_id} of {header.source} "
                f"({header.size} bytes), not snapshot {wanted.snapshot_id} of {wanted.source}; "
                "choose another file name or move it away"
            )
        writer = cls(path, header, f)
        writer._scan(offset)
        return writer

    @property
    def written(self) -> dict[int, bytes]:
        """Chunks in the file (not necessarily fsynced yet), index → SHA-256."""
        return dict(self._digests)

    def write_chunk(self, index: int, data: bytes) -> bytes:
        """Append chunk ``index``; returns its SHA-256.  Writing it again is a no-op."""
        if self.complete:
            raise ValueError(f"{self.path} is complete; nothing more can be written")
        offset, length = chunk_span(index, self.header.size, self.header.chunk_size)
        if len(data) != length:
            raise ValueError(f"chunk {index} has {length} bytes, got {len(data)}")
        digest = chunk_digest(data)
        known = self._digests.get(index)
        if known is not None:
            if known != digest:
                raise IntegrityError(
                    f"chunk {index} of snapshot {self.header.snapshot_id} is already in "
                    f"{self.path} with another digest; the source changed under the export"
                )
            return digest
        frame = {"index": index, "offset": offset, "sha256": digest, "data": data}
        self._f.seek(0, os.SEEK_END)
        self._f.write(_encode_frame(CHUNK, frame))
        self._digests[index] = digest
        return digest

    def sync(self) -> None:
        """Make every chunk written so far durable."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def missing(self) -> list[int]:
        return [i for i in range(self.header.chunk_count) if i not in self._digests]

    def finish(self) -> bytes:
        """Check the image digest, write the trailer, fsync; returns the digest."""
        if self.complete:
            return self.header.digest
        missing = self.missing()
        if missing:
            raise ValueError(f"{len(missing)} chunks are not written yet (first: {missing[0]})")
        digest = image_digest(self._digests[i] for i in range(self.header.chunk_count))
        if digest != self.header.digest:
            raise IntegrityError(
                f"the chunks written to {self.path} hash to {digest.hex()}, but snapshot "
                f"{self.header.snapshot_id} has digest {self.header.digest.hex()}; the archive "
                "was left unfinished. Delete it and export again"
            )
        trailer = {"chunks": self.header.chunk_count, "size": self.header.size, "digest": digest}
        self._f.seek(0, os.SEEK_END)
        self._f.write(_encode_frame(TRAILER, trailer))
        self.sync()
        _fsync_dir(self.path.parent)
        self.complete = True
        return digest

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _scan(self, offset: int) -> None:
        """Collect the intact chunks after the header; truncate at the first bad frame."""
        while True:
            try:
                frame = _read_frame(self._f, offset, _max_chunk_frame(self.header))
                if frame is None:
                    return
                if frame.kind == TRAILER:
                    self._accept_trailer(frame)
                    return
                if frame.kind != CHUNK:
                    raise _Damaged(frame.offset, f"unexpected frame type {frame.kind!r}")
                chunk = _decode_chunk(frame, self.header)
                if chunk.index in self._digests:
                    raise _Damaged(frame.offset, f"chunk {chunk.index} appears twice")
            except _Damaged as exc:
                self._truncate(exc)
                return
            self._digests[chunk.index] = chunk.sha256
            offset = frame.end

    def _accept_trailer(self, frame: _Frame) -> None:
        chunks, size, digest = _decode_trailer(frame)
        expected = (self.header.chunk_count, self.header.size, self.header.digest)
        if (chunks, size, digest) != expected or self.missing():
            raise _Damaged(frame.offset, "the trailer does not match the chunks before it")
        self.complete = True
        self._f.truncate(frame.end)  # nothing belongs after the trailer

    def _truncate(self, exc: _Damaged) -> None:
        size = self._f.seek(0, os.SEEK_END)
        log.warning(
            "%s: %s at offset %d; truncating %d bytes and continuing the export from there",
            self.path,
            exc.reason,
            exc.offset,
            size - exc.offset,
        )
        self._f.truncate(exc.offset)
        self.sync()


FILE_MODE = 0o600


def open_private(path: Path) -> BinaryIO:
    """``path`` created (or truncated) for writing with mode 0600, whatever the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open: make it private
        return os.fdopen(fd, "w+b")
    except BaseException:
        os.close(fd)
        raise


def read_header(path: str | os.PathLike[str]) -> ArchiveHeader | None:
    """The header of the archive at ``path``; ``None`` if there is no file.

    Raises :class:`ArchiveError` for a file that is not an archive (or whose
    header is damaged or torn).
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with f:
        _read_preamble(f, path)
        try:
            header, _ = _read_header(f, path)
        except _Damaged as exc:
            raise ArchiveError(f"{path}: {exc.reason}") from exc
    return header


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed directory entry durable."""
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    # A new file's directory entry is durable only once the directory is fsynced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------- reader


class ArchiveReader:
    """Reads and verifies an archive file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise UsageError(f"cannot open archive {self.path}: {exc.strerror}") from exc
        try:
            _read_preamble(self._f, self.path)
            with self._checking():
                self.header, self._first = _read_header(self._f, self.path)
        except BaseException:
            self._f.close()
            raise
        self._index: dict[int, int] | None = None  # chunk → frame offset, after verify()

    def verify(self) -> bytes:
        """Check the whole file; returns the image digest.  Raises :class:`ArchiveError`."""
        index: dict[int, int] = {}
        for frame, chunk in self._scan():
            index[chunk.index] = frame.offset
        self._index = index
        return self.header.digest

    def chunks(self) -> Iterator[ArchiveChunk]:
        """Every chunk in file order, each verified before it is yielded.

        The file-level checks (completeness, trailer, image digest) run when
        the iteration ends, so call :meth:`verify` first before acting on chunks.
        """
        for _frame, chunk in self._scan():
            yield chunk

    def read_chunk(self, index: int) -> ArchiveChunk:
        """Chunk ``index``, re-verified; :meth:`verify` must have succeeded."""
        if self._index is None:
            raise ValueError("verify() the archive before reading chunks out of order")
        if index not in self._index:
            raise IndexError(f"{self.path} has no chunk {index}")
        offset = self._index[index]
        with self._checking():
            frame = _read_frame(self._f, offset, _max_chunk_frame(self.header))
        if frame is None or frame.kind != CHUNK:
            raise self._error(offset, f"chunk {index} is gone; the file changed since verify()")
        with self._checking():
            chunk = _decode_chunk(frame, self.header)
        if chunk.index != index:
            raise self._error(offset, f"chunk {index} is gone; the file changed since verify()")
        return chunk

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _scan(self) -> Iterator[tuple[_Frame, ArchiveChunk]]:
        header = self.header
        digests: dict[int, bytes] = {}
        offset = self._first
        while True:
            with self._checking():
                frame = _read_frame(self._f, offset, _max_chunk_frame(header))
            if frame is None:
                raise self._incomplete(digests)
            if frame.kind == TRAILER:
                self._check_end(frame, digests)
                return
            if frame.kind != CHUNK:
                raise self._error(frame.offset, f"unexpected frame type {frame.kind!r}")
            with self._checking():
                chunk = _decode_chunk(frame, header)
            if chunk.index in digests:
                raise self._error(frame.offset, f"chunk {chunk.index} appears twice")
            digests[chunk.index] = chunk.sha256
            yield frame, chunk
            offset = frame.end

    def _check_end(self, trailer: _Frame, digests: dict[int, bytes]) -> None:
        header = self.header
        missing = [i for i in range(header.chunk_count) if i not in digests]
        if missing:
            raise self._error(
                trailer.offset, f"{len(missing)} chunks are missing (first: chunk {missing[0]})"
            )
        with self._checking():
            chunks, size, digest = _decode_trailer(trailer)
        if (chunks, size) != (header.chunk_count, header.size) or digest != header.digest:
            raise self._error(trailer.offset, "the trailer does not match the header")
        actual = image_digest(digests[i] for i in range(header.chunk_count))
        if actual != header.digest:
            raise self._error(
                trailer.offset,
                f"the chunks hash to image digest {actual.hex()}, the header says "
                f"{header.digest.hex()}",
            )
        self._f.seek(0, os.SEEK_END)
        if self._f.tell() != trailer.end:
            raise self._error(trailer.end, "there is data after the trailer")

    @contextmanager
    def _checking(self) -> Iterator[None]:
        try:
            yield
        except _Damaged as exc:
            raise self._error(exc.offset, exc.reason) from exc

    def _incomplete(self, digests: Mapping[int, bytes]) -> ArchiveError:
        return ArchiveError(
            f"{self.path} is incomplete: {len(digests)} of {self.header.chunk_count} chunks "
            "and no trailer; the export did not finish. Re-run the export to complete it"
        )

    def _error(self, offset: int, reason: str) -> ArchiveError:
        return ArchiveError(
            f"{self.path}: {reason} (file offset {offset}); the archive is damaged and will not "
            "be used. Restore from another copy of the archive or export the canister again"
        )
