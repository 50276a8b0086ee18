"""The pump's movers for snapshots: IC → repository, repository → IC, IC → IC.

Each memory of a snapshot (``wasm_module``, ``wasm_memory``,
``stable_memory``) is pumped as an image of its own
(:class:`~replicator.integrity.ImageInfo` with the job's chunk size), so
everything the pump does for the image kinds holds here too: bounded
concurrency, runs of whole chunks, the adaptive transfer size on the
``snapshot`` path (capped at the IC's 2,000,000 bytes per call, shrunk when
a call fails for its size), retries and limits on every call, and an ack —
a checkpoint — once the run's chunks are durable at the destination.

- :class:`SliceReader` reads a run from an IC snapshot in slices;
  :class:`SliceWriter` uploads one into an uploaded snapshot;
  :class:`RepositoryReader` reads one from a stored snapshot (each chunk
  verified against its name).
- :class:`StoreMover` stores what it reads as repository chunks (in parallel
  threads, each fsynced) and tells each chunk's :class:`ChunkRef`.
- :class:`StreamMover` writes what it reads; memory is bounded by one run
  per pump worker, so a copy between canisters needs no local copy.
- Verification re-reads with the pump's own
  :class:`~replicator.pump.RelayMover` and no writer: every chunk must hash
  to the digest expected.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from canister_iface.management_types import SnapshotMemory
from replicator.flows.snapshot.ic import SnapshotCanister
from replicator.pump import Buffer, ChunkReader, ChunkWriter, Run, Sizer
from replicator.repository import ChunkRef, Manifest, Repository

ROUTE = "snapshot"


class SliceReader:
    """Reads runs of one memory of an IC snapshot."""

    def __init__(
        self,
        side: SnapshotCanister,
        snapshot_id: bytes,
        memory: SnapshotMemory,
        sizer: Sizer,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self.side = side
        self.snapshot_id = snapshot_id
        self.memory = memory
        self.sizer = sizer
        self._on_read = on_read

    @property
    def run_bytes(self) -> int:
        return self.sizer.current

    async def read_run(self, run: Run) -> bytes:
        buffer = bytearray(run.length)

        async def piece(offset: int, size: int) -> None:
            data = await self.side.read(self.snapshot_id, self.memory, offset, size)
            start = offset - run.offset
            buffer[start : start + size] = data
            if self._on_read is not None:
                self._on_read(size)

        await self.sizer.sized(run.offset, run.length, piece)
        return bytes(buffer)


class SliceWriter:
    """Uploads runs of one memory into an uploaded (still mutable) IC snapshot."""

    # The IC checks nothing per chunk (the job re-reads what it uploaded), and
    # the snapshot flow counts its bytes on the read side.
    verifies_chunks = False
    charges_bytes = False

    def __init__(
        self, side: SnapshotCanister, snapshot_id: bytes, memory: SnapshotMemory, sizer: Sizer
    ) -> None:
        self.side = side
        self.snapshot_id = snapshot_id
        self.memory = memory
        self.sizer = sizer

    @property
    def run_bytes(self) -> int:
        return self.sizer.current

    async def write_run(self, run: Run, data: Buffer) -> None:
        async def piece(offset: int, size: int) -> None:
            start = offset - run.offset
            await self.side.upload(
                self.snapshot_id, self.memory, offset, bytes(data[start : start + size])
            )

        await self.sizer.sized(run.offset, run.length, piece)

    async def write_at(self, offset: int, data: Buffer) -> None:
        raise TypeError("snapshot uploads are written by runs (verifies_chunks is False)")

    async def flush(self) -> None:
        return None  # an answered upload is in the IC's replicated state


class RepositoryReader:
    """Reads runs of one memory of a stored snapshot, each chunk verified."""

    def __init__(
        self, repo: Repository, manifest: Manifest, memory: SnapshotMemory, run_bytes: int
    ) -> None:
        self.repo = repo
        self.spans = list(manifest.memory(memory).spans(manifest.chunk_size))
        self._run_bytes = run_bytes

    @property
    def run_bytes(self) -> int:
        return self._run_bytes

    async def read_run(self, run: Run) -> bytes:
        wanted = [self.spans[i] for i in run.chunks]

        def read() -> bytes:
            return b"".join(self.repo.get_chunk(digest, length) for _, length, digest in wanted)

        return await asyncio.to_thread(read)


class StoreMover:
    """Reads a run and stores it as repository chunks; the digests are their names."""

    route = ROUTE

    def __init__(
        self,
        reader: ChunkReader,
        repo: Repository,
        chunk_size: int,
        on_stored: Callable[[int, ChunkRef], None],
    ) -> None:
        self.reader = reader
        self.repo = repo
        self.chunk_size = chunk_size
        self._on_stored = on_stored

    @property
    def run_bytes(self) -> int:
        return self.reader.run_bytes

    async def move(self, run: Run) -> list[bytes]:
        data = await self.reader.read_run(run)
        size = self.chunk_size
        pieces = [bytes(data[i : i + size]) for i in range(0, len(data), size)]
        refs = await asyncio.to_thread(self.repo.put_chunks, pieces)
        for index, ref in zip(run.chunks, refs, strict=True):
            self._on_stored(index, ref)
        return [ref.digest for ref in refs]

    async def flush(self) -> None:
        return None  # put_chunks returns once every chunk is durable


class StreamMover:
    """Reads a run and writes it; returns the digest of each chunk that passed."""

    route = ROUTE

    def __init__(self, reader: ChunkReader, writer: ChunkWriter, chunk_size: int) -> None:
        self.reader = reader
        self.writer = writer
        self.chunk_size = chunk_size

    @property
    def run_bytes(self) -> int:
        return min(self.reader.run_bytes, self.writer.run_bytes)

    async def move(self, run: Run) -> list[bytes]:
        data = await self.reader.read_run(run)
        await self.writer.write_run(run, data)
        return _digests(data, self.chunk_size)

    async def flush(self) -> None:
        await self.writer.flush()


def _digests(data: Buffer, chunk_size: int) -> list[bytes]:
    view = memoryview(data)
    return [
        hashlib.sha256(view[i : i + chunk_size]).digest() for i in range(0, len(data), chunk_size)
    ]
