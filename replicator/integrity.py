"""Image geometry and digests, shared by jobs, checkpoints and archives.

An image of ``size`` bytes is cut into fixed chunks of ``chunk_size`` bytes
(the last one may be shorter).  Each chunk has its own SHA-256; the **image
digest** is the SHA-256 over the ordered chunk SHA-256s (32 bytes each,
concatenated).  Chunks therefore verify independently and in any order, and a
resumed job can re-verify what it already copied without reading everything.
An empty image has no chunks; its digest is ``sha256(b"")``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DIGEST_SIZE = 32


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks an image of ``size`` bytes has."""
    _check_geometry(size, chunk_size)
    return -(-size // chunk_size)


def chunk_span(index: int, size: int, chunk_size: int) -> tuple[int, int]:
    """``(offset, length)`` of chunk ``index``."""
    count = chunk_count(size, chunk_size)
    if not 0 <= index < count:
        raise IndexError(f"chunk {index} is outside an image of {count} chunks")
    offset = index * chunk_size
    return offset, min(chunk_size, size - offset)


def chunk_digest(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 of one chunk."""
    return hashlib.sha256(data).digest()


def image_digest(chunk_digests: Iterable[bytes]) -> bytes:
    """SHA-256 over the ordered chunk digests."""
    hasher = hashlib.sha256()
    for digest in chunk_digests:
        if len(digest) != DIGEST_SIZE:
            raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes, got {len(digest)}")
        hasher.update(digest)
    return hasher.digest()


def image_digest_of(data: bytes, chunk_size: int) -> bytes:
    """The image digest of ``data`` held in memory (tests, small images)."""
    count = chunk_count(len(data), chunk_size)
    return image_digest(
        chunk_digest(data[i * chunk_size : (i + 1) * chunk_size]) for i in range(count)
    )


def _check_geometry(size: int, chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    if size < 0:
        raise ValueError(f"image size must not be negative, got {size}")


@dataclass(frozen=True)
class ImageInfo:
    """One consistent image of a source: what ``icrp_begin_export`` returns."""

    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes | None = None  # known once the export is ready

    def __post_init__(self) -> None:
        chunk_count(self.size, self.chunk_size)  # validates the geometry
        if self.digest is not None and len(self.digest) != DIGEST_SIZE:
            raise ValueError(f"an image digest is {DIGEST_SIZE} bytes, got {len(self.digest)}")

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def same_geometry(self, other: ImageInfo) -> bool:
        return (self.size, self.chunk_size) == (other.size, other.chunk_size)

    def to_payload(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "digest": self.digest,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ImageInfo:
        digest = data["digest"]
        return cls(
            snapshot_id=int(data["snapshot_id"]),
            size=int(data["size"]),
            chunk_size=int(data["chunk_size"]),
            digest=None if digest is None else bytes(digest),
        )
