"""Where sleeping canisters keep their memories: page images in an unlinked file.

A canister that sleeps (``localnet.residency``) gives its Wasm instance back
and leaves the non-zero 4 KiB pages of its committed heap and stable memory
here, as the IC's replica keeps idle canisters' memories in checkpoint files
rather than in RAM. A Motoko canister's 5 MiB heap holds a dozen non-zero
pages after ``canister_init``, so its image is some tens of KiB, read back
in one ``pread`` when the canister is next used.

Images are appended to one temporary file that has no name (``O_TMPFILE``
where the file system allows it), so nothing is left behind, even after
``kill -9``, and 10,000 sleeping canisters need one file descriptor, not
10,000. A freed image's blocks are returned with ``FALLOC_FL_PUNCH_HOLE``;
the file is replaced by a fresh one once its end passes
:data:`SEGMENT_BYTES`, and the old one closes with its last image.

The file lives in the page cache: not in localnet's RSS, and reclaimable by
the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

PAGE = 4096
SEGMENT_BYTES = 64 * 1024**3  # a new file after this much was appended to one
_HEADER = struct.Struct("<4sQQ")  # magic, heap pages, stable pages
_MAGIC = b"LNS1"
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.fallocate.restype = ctypes.c_int

Pages = list[tuple[int, bytes]]  # (offset, 4 KiB of content), ascending offsets


class SpillError(OSError):
    """A page image could not be written or read back; the message says which and why."""


@dataclass(frozen=True)
class PageImage:
    """The non-zero pages of a canister's committed memories (the rest is zero)."""

    heap: Pages
    stable: Pages

    @property
    def nbytes(self) -> int:
        return PAGE * (len(self.heap) + len(self.stable))


class _Segment:
    """One unlinked file; images are appended at :attr:`end`."""

    def __init__(self, directory: Path) -> None:
        self.fd = _unlinked_file(directory)
        self.end = 0
        self.live = 0  # images not yet freed
        self._finalizer = weakref.finalize(self, os.close, self.fd)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


def _unlinked_file(directory: Path) -> int:
    """A new file without a name in ``directory`` (O_TMPFILE, else created and unlinked)."""
    flags = os.O_RDWR | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(directory, flags | tmpfile, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    fd, name = tempfile.mkstemp(dir=directory, prefix="localnet-spill-")
    os.unlink(name)
    return fd


@dataclass(frozen=True)
class SpillRef:
    """Where one image is: its file and byte range."""

    segment: _Segment
    offset: int
    length: int


class Spill:
    """Writes, reads and frees :class:`PageImage` s; thread-safe."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self.images = 0  # live images (a statistic)
        self.bytes = 0  # bytes of live images

    def put(self, image: PageImage) -> SpillRef:
        blob = _encode(image)
        length = len(blob)
        padded = -(-length // PAGE) * PAGE  # whole blocks, so a freed image's can be punched
        with self._lock:
            segment = self._segment_for(padded)
            offset = segment.end
            segment.end += padded
            segment.live += 1
            self.images += 1
            self.bytes += length
        try:
            written = _write_all(segment.fd, blob, offset)
        except OSError as exc:
            self.free(SpillRef(segment, offset, length))
            raise SpillError(
                exc.errno, f"cannot write a sleeping canister's memory to {self.directory}: "
                f"{exc.strerror}; free some space there or point --spill-dir elsewhere",
            ) from exc  # fmt: skip
        if written != length:
            self.free(SpillRef(segment, offset, length))
            raise SpillError(f"short write of a page image to {self.directory}")
        return SpillRef(segment, offset, length)

    def get(self, ref: SpillRef) -> PageImage:
        blob = _read_all(ref.segment.fd, ref.length, ref.offset)
        if len(blob) != ref.length:
            raise SpillError(f"a page image in {self.directory} is truncated")
        return _decode(blob)

    def free(self, ref: SpillRef) -> None:
        """Forget an image and give its blocks back to the file system."""
        padded = -(-ref.length // PAGE) * PAGE
        # Best effort: a file system without hole punching keeps the blocks
        # until the segment is closed.
        _libc.fallocate(
            ref.segment.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, ref.offset, padded
        )
        with self._lock:
            ref.segment.live -= 1
            self.images -= 1
            self.bytes -= ref.length
            if ref.segment.live == 0 and ref.segment is not self._current:
                ref.segment.close()

    def close(self) -> None:
        with self._lock:
            if self._current is not None and self._current.live == 0:
                self._current.close()
            self._current = None

    def _segment_for(self, length: int) -> _Segment:
        current = self._current
        if current is None or current.end + length > SEGMENT_BYTES:
            if current is not None and current.live == 0:
                current.close()
            try:
                current = self._current = _Segment(self.directory)
            except OSError as exc:
                raise SpillError(
                    exc.errno, f"cannot create a spill file for sleeping canisters in "
                    f"{self.directory}: {exc.strerror}; point --spill-dir at a writable directory",
                ) from exc  # fmt: skip
        return current


# Linux moves at most 0x7FFFF000 bytes per read/write call, and a canister's
# image can be larger than that (a 2 GiB heap): loop in pieces below it.
_IO_MAX = 1 << 30


def _write_all(fd: int, blob: bytes, offset: int) -> int:
    view = memoryview(blob)
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done : done + _IO_MAX], offset + done)
        if written <= 0:
            break
        done += written
    return done


def _read_all(fd: int, length: int, offset: int) -> bytes | bytearray:
    if length <= _IO_MAX:
        return os.pread(fd, length, offset)
    blob = bytearray(length)
    view = memoryview(blob)
    done = 0
    while done < length:
        got = os.preadv(fd, [view[done : done + _IO_MAX]], offset + done)
        if got <= 0:
            return blob[:done]
        done += got
    return blob


def _encode(image: PageImage) -> bytes:
    offsets = [offset for offset, _ in image.heap] + [offset for offset, _ in image.stable]
    parts = [
        _HEADER.pack(_MAGIC, len(image.heap), len(image.stable)),
        struct.pack(f"<{len(offsets)}Q", *offsets),
    ]
    for _, data in image.heap:
        parts.append(_page(data))
    for _, data in image.stable:
        parts.append(_page(data))
    return b"".join(parts)


def _page(data: bytes) -> bytes:
    if len(data) == PAGE:
        return data
    if len(data) > PAGE:
        raise ValueError(f"a page image holds {PAGE}-byte pages, not {len(data)} bytes")
    return data + bytes(PAGE - len(data))


def _decode(blob: bytes | bytearray) -> PageImage:
    magic, heap_n, stable_n = _HEADER.unpack_from(blob)
    count = heap_n + stable_n
    start = _HEADER.size + 8 * count
    if magic != _MAGIC or len(blob) != start + PAGE * count:
        raise SpillError("a page image read back from the spill file is damaged")
    offsets = struct.unpack_from(f"<{count}Q", blob, _HEADER.size)
    view = memoryview(blob)
    pages = [
        (offset, bytes(view[start + i * PAGE : start + (i + 1) * PAGE]))
        for i, offset in enumerate(offsets)
    ]
    return PageImage(heap=pages[:heap_n], stable=pages[heap_n:])
