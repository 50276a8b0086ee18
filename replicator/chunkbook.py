"""Which chunks of one image are planned, in flight or acknowledged: the chunk book.

A chunk counts as done only once the target acknowledged it; the pump then
records it with ``store.ack_chunks`` and here.  I/O-free.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from replicator.errors import IntegrityError
from replicator.integrity import DIGEST_SIZE, ImageInfo, chunk_span, image_digest

_PLANNED, _IN_FLIGHT, _ACKED = 0, 1, 2


class ChunkBook:
    """Which chunks of one image are planned, in flight or acknowledged.

    ``take`` hands out contiguous runs of planned chunks, lowest index first;
    ``ack`` records a chunk the target acknowledged, with its digest;
    ``release`` returns chunks whose transfer failed to the plan.  Acking a
    chunk twice with the same digest is harmless (resumes, idempotent
    writes); with different digests it is an :class:`IntegrityError`.
    Mutable and I/O-free; one instance per running job, one asyncio thread.
    """

    def __init__(self, count: int, acked: Mapping[int, bytes] | None = None) -> None:
        if count < 0:
            raise ValueError(f"chunk count must not be negative, got {count}")
        self.count = count
        self._state = bytearray(count)
        self._digests: dict[int, bytes] = {}
        self._in_flight = 0
        for index, digest in (acked or {}).items():
            self.ack(index, digest)
        self._heap = [i for i in range(count) if self._state[i] == _PLANNED]  # sorted: a heap

    @classmethod
    def for_image(cls, image: ImageInfo, acked: Mapping[int, bytes] | None = None) -> ChunkBook:
        return cls(image.chunk_count, acked)

    # -- queries

    @property
    def acked_count(self) -> int:
        return len(self._digests)

    @property
    def in_flight_count(self) -> int:
        return self._in_flight

    @property
    def planned_count(self) -> int:
        return self.count - self.acked_count - self._in_flight

    @property
    def done(self) -> bool:
        return self.acked_count == self.count

    def is_acked(self, index: int) -> bool:
        return self._state[self._checked(index)] == _ACKED

    def is_in_flight(self, index: int) -> bool:
        return self._state[self._checked(index)] == _IN_FLIGHT

    def digest(self, index: int) -> bytes | None:
        return self._digests.get(self._checked(index))

    def acked(self) -> dict[int, bytes]:
        """Acknowledged chunks and their digests."""
        return dict(self._digests)

    def acked_bytes(self, size: int, chunk_size: int) -> int:
        """Bytes covered by acknowledged chunks of an image of ``size`` bytes."""
        return sum(chunk_span(i, size, chunk_size)[1] for i in self._digests)

    def image_digest(self) -> bytes:
        """The image digest over every chunk's digest; all must be acknowledged."""
        if not self.done:
            raise ValueError(f"{self.count - self.acked_count} chunks are not acknowledged yet")
        return image_digest(self._digests[i] for i in range(self.count))

    # -- changes

    def take(self, max_chunks: int) -> range:
        """Mark up to ``max_chunks`` planned chunks in flight: a contiguous run, lowest first.

        An empty range when nothing is planned.
        """
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        start = last = -1
        heap = self._heap
        while heap and (start < 0 or last - start + 1 < max_chunks):
            index = heap[0]
            if self._state[index] != _PLANNED:
                heapq.heappop(heap)  # acked while planned: a stale entry
                continue
            if start >= 0 and index != last + 1:
                break
            heapq.heappop(heap)
            self._state[index] = _IN_FLIGHT
            self._in_flight += 1
            start = index if start < 0 else start
            last = index
        return range(start, last + 1) if start >= 0 else range(0)

    def ack(self, index: int, digest: bytes) -> None:
        """The target acknowledged chunk ``index`` with ``digest``."""
        self._checked(index)
        if len(digest) != DIGEST_SIZE:
            raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes, got {len(digest)}")
        known = self._digests.get(index)
        if known is not None:
            if known != digest:
                raise IntegrityError(
                    f"chunk {index} was acknowledged with digest {known.hex()} and now with "
                    f"{digest.hex()}: the same chunk of one image changed; restart the job"
                )
            return
        if self._state[index] == _IN_FLIGHT:
            self._in_flight -= 1
        self._state[index] = _ACKED
        self._digests[index] = bytes(digest)

    def release(self, indices: Iterable[int]) -> None:
        """Chunks whose transfer failed go back to the plan (taken again first)."""
        for index in indices:
            if self._state[self._checked(index)] != _IN_FLIGHT:
                continue  # acknowledged meanwhile (or never taken): nothing to return
            self._state[index] = _PLANNED
            self._in_flight -= 1
            heapq.heappush(self._heap, index)

    def _checked(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is outside an image of {self.count} chunks")
        return index
