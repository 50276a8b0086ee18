"""Chunks: how a piece of canister state is named, stored and cut.

A chunk is named by the SHA-256 of its *plain* bytes, so the same bytes
dedupe whether they were stored compressed or not, and whichever canister or
snapshot they came from.  The stored object (``chunks/ab/ab12…``) is::

    object := magic ("ICRK", 4 bytes) codec (1 byte) payload
    codec  := 0 plain: payload is the chunk's bytes
              1 zstd:  payload is one zstd frame with the content size in its header

The codec is recorded per chunk: a chunk that zstd does not shrink (random
or already compressed memory) is stored plain even in a compressing
repository.  Decoding verifies everything: the magic, the codec, the frame,
the length and the SHA-256; any damaged byte is reported as
:class:`ChunkDamaged`, never returned.

Geometry.  A memory of a snapshot (``wasm_module``, ``wasm_memory``,
``stable_memory``) is cut at fixed multiples of the chunk size (by default
2,000,000 bytes, the IC's largest read slice), so that an unchanged region
of memory gives the same chunks in every snapshot.  :func:`split_slice` cuts
a slice read from the IC (at a chunk boundary, as long as a multiple of the
chunk size) into chunks; :mod:`replicator.integrity` has the spans.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import zstandard

from replicator.integrity import DIGEST_SIZE
from replicator.repository.errors import ChunkDamaged

MAGIC = b"ICRK"
CODEC_PLAIN = 0
CODEC_ZSTD = 1
_HEADER = len(MAGIC) + 1
# The largest chunk the repository accepts: bounds memory per chunk and
# what a damaged zstd frame may claim to decompress to.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_ZSTD_LEVEL = 3

Compression = Literal["none", "zstd"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "zstd")


@dataclass(frozen=True)
class ChunkRef:
    """A stored chunk, as :meth:`Repository.put_chunk` reports it."""

    digest: bytes  # SHA-256 of the plain bytes: the chunk's name
    size: int  # plain bytes
    stored_size: int  # bytes the object takes in the repository
    new: bool  # stored by this call (False: it was there already)

    @property
    def name(self) -> str:
        return self.digest.hex()


def chunk_name(data: bytes | memoryview) -> bytes:
    """The chunk's digest (its name): SHA-256 of its plain bytes."""
    return hashlib.sha256(data).digest()


def encode(data: bytes | memoryview, compression: Compression, level: int) -> bytes:
    """The stored object for ``data``; compressed only where zstd helps."""
    if compression == "zstd":
        packed = _compressor(level).compress(data)
        if len(packed) < len(data):
            return MAGIC + bytes([CODEC_ZSTD]) + packed
    return MAGIC + bytes([CODEC_PLAIN]) + bytes(data)


def decode(digest: bytes, blob: bytes, size: int | None = None) -> bytes:
    """The plain bytes of a stored object, verified against its name (and ``size``)."""
    if len(blob) < _HEADER or blob[: len(MAGIC)] != MAGIC:
        raise ChunkDamaged(digest, "not a chunk object (bad magic)")
    codec = blob[len(MAGIC)]
    payload = memoryview(blob)[_HEADER:]
    if codec == CODEC_PLAIN:
        data = bytes(payload)
    elif codec == CODEC_ZSTD:
        data = _decompress(digest, payload)
    else:
        raise ChunkDamaged(digest, f"unknown codec {codec}")
    if size is not None and len(data) != size:
        raise ChunkDamaged(digest, f"holds {len(data):,} bytes, the manifest says {size:,}")
    if chunk_name(data) != digest:
        raise ChunkDamaged(digest, "its content does not hash to its name")
    return data


def codec_of(blob: bytes) -> str:
    """``plain``, ``zstd`` or ``unknown``: what a stored object's header says."""
    if len(blob) >= _HEADER and blob[: len(MAGIC)] == MAGIC:
        return {CODEC_PLAIN: "plain", CODEC_ZSTD: "zstd"}.get(blob[len(MAGIC)], "unknown")
    return "unknown"


def split_slice(offset: int, data: bytes, chunk_size: int) -> Iterator[tuple[int, bytes]]:
    """``(chunk index, bytes)`` of a slice read at ``offset`` of a memory.

    The slice must start at a chunk boundary; every piece but the last is
    ``chunk_size`` long (a short last piece must be the memory's tail, which
    the manifest builder checks).  Read slices of ``k × chunk_size`` bytes.
    """
    if chunk_size <= 0 or offset < 0 or offset % chunk_size:
        raise ValueError(
            f"a slice must start at a multiple of the chunk size {chunk_size:,}, got offset "
            f"{offset:,}"
        )
    first = offset // chunk_size
    view = memoryview(data)
    for i, start in enumerate(range(0, len(data), chunk_size)):
        yield first + i, bytes(view[start : start + chunk_size])


def check_digest(digest: bytes) -> bytes:
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes, got {len(digest)}")
    return digest


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # A zstd context is not safe to share between threads; one per thread
    # and level (the repository is called from asyncio.to_thread's pool).
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def _decompress(digest: bytes, payload: memoryview) -> bytes:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    try:
        params = zstandard.get_frame_parameters(payload)
        if params.content_size > MAX_CHUNK_SIZE:
            raise ChunkDamaged(digest, f"its zstd frame claims {params.content_size:,} bytes")
        return decompressor.decompress(payload, max_output_size=MAX_CHUNK_SIZE)
    except zstandard.ZstdError as exc:
        raise ChunkDamaged(digest, f"its zstd frame does not decode ({exc})") from None
