"""Where each chunk of a snapshot sits in the job's one checkpoint index.

The checkpoint store records acknowledged chunks as ``(index, digest)`` of
one image; a snapshot has three memories and a Wasm chunk store.  They are
laid end to end: the chunks of ``wasm_module``, then ``wasm_memory``, then
``stable_memory`` (each cut at multiples of ``chunk_size``), then one index
per chunk of the chunk store, in the metadata's order.  Pure arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from canister_iface.management_types import SNAPSHOT_MEMORIES, SnapshotMemory, SnapshotMetadata
from replicator.integrity import ImageInfo, chunk_count


@dataclass(frozen=True)
class Layout:
    """The chunk index space of one snapshot at one chunk size."""

    chunk_size: int
    sizes: Mapping[SnapshotMemory, int]
    wasm_chunks: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, metadata: SnapshotMetadata, chunk_size: int) -> Layout:
        sizes = {m: metadata.size_of(m) for m in SNAPSHOT_MEMORIES}
        return cls(chunk_size, sizes, metadata.wasm_chunk_store)

    def image(self, memory: SnapshotMemory) -> ImageInfo:
        """``memory`` as an image the pump can move (its own chunk numbering)."""
        return ImageInfo(snapshot_id=0, size=self.sizes[memory], chunk_size=self.chunk_size)

    def count(self, memory: SnapshotMemory) -> int:
        return chunk_count(self.sizes[memory], self.chunk_size)

    def base(self, memory: SnapshotMemory) -> int:
        """The index of the first chunk of ``memory``."""
        total = 0
        for m in SNAPSHOT_MEMORIES:
            if m == memory:
                return total
            total += self.count(m)
        raise ValueError(f"not a snapshot memory: {memory!r}")

    @property
    def wasm_base(self) -> int:
        return sum(self.count(m) for m in SNAPSHOT_MEMORIES)

    @property
    def total_chunks(self) -> int:
        return self.wasm_base + len(self.wasm_chunks)

    @property
    def memory_bytes(self) -> int:
        return sum(self.sizes.values())

    def local(self, acked: Mapping[int, bytes], memory: SnapshotMemory) -> dict[int, bytes]:
        """The acknowledged chunks of ``memory``, numbered within it."""
        base, count = self.base(memory), self.count(memory)
        return {i - base: d for i, d in acked.items() if base <= i < base + count}

    def wasm_acked(self, acked: Mapping[int, bytes]) -> Iterator[tuple[int, bytes]]:
        """``(position in the chunk store, digest)`` of acknowledged chunk-store chunks."""
        base = self.wasm_base
        for i in range(len(self.wasm_chunks)):
            digest = acked.get(base + i)
            if digest is not None:
                yield i, digest
