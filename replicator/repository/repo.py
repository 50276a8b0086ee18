"""The snapshot repository: content-addressed chunks plus one manifest per snapshot.

restic's idea, for canister state.  Chunks are named by the SHA-256 of their
plain bytes (:mod:`~replicator.repository.chunks`), so an unchanged region
of memory is stored once however many snapshots, or per-user canisters of
one app, contain it.  A manifest (:mod:`~replicator.repository.manifest`)
lists a snapshot's chunks and metadata; its id is the SHA-256 of its bytes.

Writing order is what keeps a repository consistent without a lock:

1. every chunk is stored atomically and durably (temp file, fsync, rename,
   directory fsync) before :meth:`Repository.put_chunk` returns;
2. :meth:`Repository.write_manifest` checks that every chunk it names is
   stored (and touches it), then writes the manifest, again atomically.

A crash at any point leaves at most chunks no manifest names, which
:meth:`Repository.prune` collects.  ``prune`` runs safely next to backups:
it deletes an unreferenced chunk only when nothing touched it for ``grace``
(default 24 h) — a running backup touches every chunk it stores or
deduplicates against, and ``write_manifest`` touches them all again — and
the deletion itself is atomic with respect to a touch
(:meth:`Backend.remove_if_untouched`).  A backup that takes longer than the
grace period can lose early chunks to a concurrent prune; its
``write_manifest`` then fails naming them (:class:`ChunksUnavailable`) and
re-running the job stores them again.

The API is synchronous and thread-safe.  From asyncio, call it through
``asyncio.to_thread`` (hashing, zstd and fsync then run off the event loop
and, as hashlib and zstandard release the GIL, in parallel);
:func:`aiter_part` does that for a streaming restore.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from canister_iface.management_types import SnapshotMemory
from replicator.repository import chunks, manifest
from replicator.repository.chunks import (
    COMPRESSIONS,
    DEFAULT_ZSTD_LEVEL,
    MAX_CHUNK_SIZE,
    ChunkRef,
    Compression,
)
from replicator.repository.errors import (
    ChunkDamaged,
    ChunkMissing,
    ChunksUnavailable,
    FormatTooNew,
    ManifestDamaged,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
)
from replicator.repository.manifest import DEFAULT_CHUNK_SIZE, Manifest, StoredManifest
from replicator.repository.retention import Decision, Policy, apply_policy
from replicator.repository.store import CONFIG, Backend, FileType, Handle, LocalBackend

CONFIG_FORMAT = "ic-replicator-repository"
CONFIG_VERSION = 1
DEFAULT_GRACE = dt.timedelta(hours=24)
_VERIFY_WORKERS = max(1, min(4, os.cpu_count() or 1))
# Chunks of one slice are stored by this many threads at once: each is fsynced,
# and the file system commits concurrent fsyncs together (with 64 KiB chunks one
# thread manages ~110 chunks/s on the development machine, four ~1,500).
_PUT_WORKERS = 8
_put_pool: ThreadPoolExecutor | None = None
_put_pool_lock = threading.Lock()


@dataclass(frozen=True)
class RepositoryConfig:
    """``config.json``: fixed when the repository is created."""

    id: str
    created_at: str
    chunk_size: int = DEFAULT_CHUNK_SIZE  # for new snapshots; each manifest records its own
    compression: Compression = "zstd"
    zstd_level: int = DEFAULT_ZSTD_LEVEL
    version: int = CONFIG_VERSION

    def encode(self) -> bytes:
        doc = {
            "format": CONFIG_FORMAT,
            "version": self.version,
            "id": self.id,
            "created_at": self.created_at,
            "tool": manifest.TOOL,
            "chunk_hash": "sha256",
            "chunk_size": self.chunk_size,
            "compression": self.compression,
            "zstd_level": self.zstd_level,
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> RepositoryConfig:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != CONFIG_FORMAT:
                raise ValueError(f"not an {CONFIG_FORMAT} config")
            version = int(doc["version"])
            if version > CONFIG_VERSION:
                raise FormatTooNew(f"the repository at {where}", version, CONFIG_VERSION)
            if doc.get("chunk_hash") != "sha256" or doc["compression"] not in COMPRESSIONS:
                raise ValueError("unknown chunk hash or compression")
            config = cls(
                id=str(doc["id"]),
                created_at=str(doc["created_at"]),
                chunk_size=int(doc["chunk_size"]),
                compression=doc["compression"],
                zstd_level=int(doc["zstd_level"]),
                version=version,
            )
        except FormatTooNew:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise RepositoryError(
                f"{where}/config.json is damaged or not a repository config ({exc}); restore "
                "it from a copy of the repository (chunks and snapshots do not depend on it)"
            ) from None
        return config


@dataclass
class VerifyReport:
    """What :meth:`Repository.verify` found; ``ok`` when nothing is wrong."""

    snapshots: int = 0
    chunks: int = 0  # distinct chunks checked
    bytes_read: int = 0  # stored bytes read and re-hashed
    missing: dict[bytes, list[str]] = field(default_factory=dict)  # digest → snapshot ids
    damaged: dict[bytes, str] = field(default_factory=dict)  # digest → reason
    bad_manifests: dict[str, str] = field(default_factory=dict)  # snapshot id → reason
    unreferenced: int = 0  # chunks no manifest names (prune collects them)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.damaged or self.bad_manifests)

    def problems(self) -> list[str]:
        """One line per problem, naming the chunk or snapshot."""
        lines = [f"snapshot {sid[:12]}: {why}" for sid, why in self.bad_manifests.items()]
        lines += [
            f"chunk {d.hex()} missing (needed by {', '.join(s[:8] for s in ids)})"
            for d, ids in self.missing.items()
        ]
        lines += [f"chunk {d.hex()} damaged: {why}" for d, why in self.damaged.items()]
        return lines


@dataclass(frozen=True)
class GroupDecisions:
    """The policy's decisions for the snapshots of one canister on one network."""

    network: str
    canister: str
    decisions: list[Decision[StoredManifest]]


@dataclass
class PruneReport:
    """What :meth:`Repository.prune` removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    policy: str
    groups: list[GroupDecisions] = field(default_factory=list)
    removed_snapshots: list[str] = field(default_factory=list)
    chunks_removed: int = 0
    bytes_removed: int = 0  # stored bytes freed
    chunks_kept: int = 0  # still referenced
    chunks_spared: int = 0  # unreferenced, but touched within the grace period
    temporary_removed: int = 0  # leftovers of interrupted writes


@dataclass(frozen=True)
class RepositoryStats:
    """Sizes of a repository; the ratios are 0 for an empty one."""

    snapshots: int
    chunks: int  # chunk objects stored
    stored_bytes: int  # bytes all chunk objects take
    logical_bytes: int  # plain bytes of all snapshots, as if each were stored whole
    unique_bytes: int  # plain bytes of the distinct chunks the snapshots name
    referenced_stored_bytes: int  # stored bytes of those chunks
    unreadable_snapshots: int = 0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 0.0

    @property
    def compression_ratio(self) -> float:
        stored = self.referenced_stored_bytes
        return self.unique_bytes / stored if stored else 0.0


class Repository:
    """An opened repository; create with :meth:`init`, open with :meth:`open`."""

    def __init__(
        self,
        backend: Backend,
        config: RepositoryConfig,
        *,
        compression: Compression | None = None,
        zstd_level: int | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.compression: Compression = compression or config.compression
        self.zstd_level = config.zstd_level if zstd_level is None else zstd_level
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")

    # --------------------------------------------------------------- opening

    @classmethod
    def init(
        cls,
        location: str | os.PathLike[str] | Backend,
        *,
        compression: Compression = "zstd",
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Repository:
        """Create a repository in an empty (or new) directory, or an empty backend."""
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE:,}, got {chunk_size:,}")
        backend = _backend(location)
        if isinstance(backend, LocalBackend):
            _check_empty(backend.root)
        config = RepositoryConfig(
            id=secrets.token_hex(16),
            created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            chunk_size=chunk_size,
            compression=compression,
            zstd_level=zstd_level,
        )
        backend.create()
        try:
            backend.save(CONFIG, config.encode(), exclusive=True)
        except FileExistsError:
            raise RepositoryExists(Path(backend.location), "it already holds one") from None
        return cls(backend, config)

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | Backend,
        *,
        compression: Compression | None = None,
        zstd_level: int | None = None,
    ) -> Repository:
        """Open an existing repository; ``compression`` overrides its default for new chunks."""
        backend = _backend(location)
        try:
            data = backend.load(CONFIG)
        except FileNotFoundError:
            raise RepositoryNotFound(Path(backend.location)) from None
        config = RepositoryConfig.decode(data, backend.location)
        return cls(backend, config, compression=compression, zstd_level=zstd_level)

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def chunk_size(self) -> int:
        """The chunk size for new snapshots (keep it: other sizes do not dedupe)."""
        return self.config.chunk_size

    # ---------------------------------------------------------------- chunks

    def has_chunk(self, digest: bytes) -> bool:
        return self.backend.stat(_chunk(digest)) is not None

    def put_chunk(self, data: bytes, *, check_existing: bool = False) -> ChunkRef:
        """Store ``data`` unless a chunk of the same bytes is stored; durable on return.

        An existing chunk is touched (see the module docstring) and not read;
        ``check_existing`` reads and verifies it, and replaces it if damaged.
        """
        if len(data) > MAX_CHUNK_SIZE:
            raise ValueError(f"a chunk has at most {MAX_CHUNK_SIZE:,} bytes, got {len(data):,}")
        digest = chunks.chunk_name(data)
        h = _chunk(digest)
        if self.backend.touch(h) and not (check_existing and self._damaged(digest, len(data))):
            info = self.backend.stat(h)
            return ChunkRef(digest, len(data), info.size if info else 0, new=False)
        blob = chunks.encode(data, self.compression, self.zstd_level)
        self.backend.save(h, blob)
        return ChunkRef(digest, len(data), len(blob), new=True)

    def put_chunks(self, pieces: Sequence[bytes]) -> list[ChunkRef]:
        """:meth:`put_chunk` of every piece, in parallel threads; durable on return.

        The refs are in the order of ``pieces``.  The first error is raised
        once every write has ended (a full disk: :class:`RepositoryFull`).
        """
        if len(pieces) <= 1:
            return [self.put_chunk(p) for p in pieces]
        return list(_pool().map(self.put_chunk, pieces))

    def keep(self, digests: Iterable[bytes]) -> list[bytes]:
        """Touch the chunks (so that prune spares them); the digests of those not stored."""
        return [d for d in digests if not self.backend.touch(_chunk(d))]

    def _damaged(self, digest: bytes, size: int) -> bool:
        try:
            self.get_chunk(digest, size)
        except (ChunkDamaged, ChunkMissing):
            return True
        return False

    def get_chunk(self, ref: bytes | ChunkRef, size: int | None = None) -> bytes:
        """The chunk's plain bytes, verified (:class:`ChunkDamaged`, :class:`ChunkMissing`).

        ``ref`` is a digest (then ``size``, if given, is checked too) or a
        :class:`ChunkRef` (its size is checked).
        """
        if isinstance(ref, ChunkRef):
            digest, size = ref.digest, ref.size
        else:
            digest = ref
        try:
            blob = self.backend.load(_chunk(digest))
        except FileNotFoundError:
            raise ChunkMissing(digest) from None
        return chunks.decode(digest, blob, size)

    # ------------------------------------------------------------- manifests

    def write_manifest(self, m: Manifest) -> StoredManifest:
        """Store the manifest, after checking that every chunk it names is stored.

        Raises :class:`ChunksUnavailable` naming the missing chunks (and
        writes nothing) if any is not.
        """
        missing = [d for d in sorted(m.digests()) if not self.backend.touch(_chunk(d))]
        if missing:
            raise ChunksUnavailable(
                f"snapshot of {m.canister} not written",
                missing,
                advice="store those chunks again (re-run the job); no manifest names them",
            )
        data = manifest.encode(m)
        snapshot_id = manifest.manifest_id(data)
        self.backend.save(Handle(FileType.SNAPSHOT, snapshot_id), data)
        return StoredManifest(snapshot_id, m)

    def snapshot_ids(self) -> list[str]:
        return sorted(info.name for info in self.backend.list(FileType.SNAPSHOT))

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of the one snapshot whose id starts with ``id_or_prefix``."""
        prefix = id_or_prefix.strip().lower()
        matches = [i for i in self.snapshot_ids() if prefix and i.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SnapshotNotFound(
                f"no snapshot {id_or_prefix!r} in {self.location}: list them to see the ids"
            )
        raise SnapshotNotFound(
            f"{id_or_prefix!r} names {len(matches)} snapshots "
            f"({', '.join(i[:12] for i in matches[:5])}): give more of the id"
        )

    def load_manifest(self, id_or_prefix: str) -> StoredManifest:
        """One manifest, checked against its id.

        Raises :class:`ManifestDamaged` or :class:`FormatTooNew`.
        """
        snapshot_id = self.resolve(id_or_prefix)
        try:
            data = self.backend.load(Handle(FileType.SNAPSHOT, snapshot_id))
        except FileNotFoundError:
            raise SnapshotNotFound(f"snapshot {snapshot_id[:12]} was removed meanwhile") from None
        return StoredManifest(snapshot_id, manifest.decode(data, snapshot_id))

    def scan_manifests(self) -> tuple[list[StoredManifest], dict[str, RepositoryError]]:
        """Every readable manifest (oldest first) and, by id, why the others are not."""
        good: list[StoredManifest] = []
        bad: dict[str, RepositoryError] = {}
        for snapshot_id in self.snapshot_ids():
            try:
                data = self.backend.load(Handle(FileType.SNAPSHOT, snapshot_id))
                good.append(StoredManifest(snapshot_id, manifest.decode(data, snapshot_id)))
            except FileNotFoundError:
                continue  # removed while listing
            except (ManifestDamaged, FormatTooNew) as exc:
                bad[snapshot_id] = exc
        good.sort(key=lambda s: (s.manifest.time, s.id))
        return good, bad

    def manifests(
        self,
        canister: str | None = None,
        *,
        network: str | None = None,
        skip_unreadable: bool = False,
    ) -> list[StoredManifest]:
        """Manifests, oldest first, of one canister (and network) or all.

        An unreadable manifest raises its error unless ``skip_unreadable``.
        """
        good, bad = self.scan_manifests()
        if bad and not skip_unreadable:
            raise next(iter(bad.values()))
        return [
            s
            for s in good
            if (canister is None or s.manifest.canister == canister)
            and (network is None or s.manifest.network == network)
        ]

    def find(self, *, canister: str, network: str, ic_snapshot_id: bytes) -> StoredManifest | None:
        """The readable manifest of that IC snapshot of that canister, if one is stored.

        An IC snapshot id names one snapshot of one canister for good, so a job
        that stored it before (and died before it could say so) finds it here.
        """
        for stored in self.manifests(canister, network=network, skip_unreadable=True):
            if stored.manifest.ic_snapshot_id == ic_snapshot_id:
                return stored
        return None

    def remove_snapshot(self, id_or_prefix: str) -> str:
        """Forget one snapshot (its chunks stay until prune); returns its full id."""
        snapshot_id = self.resolve(id_or_prefix)
        self.backend.remove(Handle(FileType.SNAPSHOT, snapshot_id))
        return snapshot_id

    # ------------------------------------------------------------- restoring

    def iter_part(
        self,
        m: Manifest,
        part: SnapshotMemory,
        *,
        start: int = 0,
        slice_size: int | None = None,
    ) -> Iterator[tuple[int, bytes]]:
        """``(offset, bytes)`` of a memory from ``start``, each chunk verified.

        Pieces are one chunk, or ``slice_size`` bytes (a multiple of the
        manifest's chunk size) for uploads in IC slices; memory is bounded by
        one piece.  ``start`` (a multiple of the piece size) resumes.
        """
        step = slice_size or m.chunk_size
        if step % m.chunk_size or start % step or start < 0:
            raise ValueError(
                f"slice_size ({step:,}) must be a multiple of the chunk size ({m.chunk_size:,}) "
                f"and start ({start:,}) a multiple of slice_size"
            )
        memory = m.memory(part)
        per_piece = step // m.chunk_size
        spans = list(memory.spans(m.chunk_size))
        for first in range(start // m.chunk_size, len(spans), per_piece):
            group = spans[first : first + per_piece]
            data = b"".join(self.get_chunk(digest, length) for _, length, digest in group)
            yield group[0][0], data

    def iter_wasm_chunks(self, m: Manifest) -> Iterator[tuple[bytes, bytes]]:
        """``(IC hash, bytes)`` of every chunk of the Wasm chunk store, verified."""
        for chunk in m.wasm_chunks:
            yield chunk.digest, self.get_chunk(chunk.digest, chunk.size)

    def ensure_restorable(self, stored: StoredManifest, *, read_data: bool = True) -> None:
        """Raise :class:`ChunksUnavailable` naming every missing or damaged chunk.

        Call before touching a restore's target: a restore from a snapshot
        that cannot be read whole must not start.
        """
        report = VerifyReport(snapshots=1)
        needed = {d: (size, [stored.id]) for d, size in stored.manifest.chunk_sizes()}
        self._check_chunks(needed, report, read_data=read_data)
        if not report.ok:
            raise ChunksUnavailable(
                f"snapshot {stored.short_id} cannot be restored",
                report.missing,
                report.damaged,
                advice="nothing was written to the target; restore another snapshot",
            )

    # ------------------------------------------------------------- checking

    def verify(self, snapshot: str | None = None, *, read_data: bool = True) -> VerifyReport:
        """Check one snapshot (id or prefix) or all: manifests, chunk presence, and
        with ``read_data`` every chunk re-hashed (each distinct chunk once)."""
        report = VerifyReport()
        if snapshot is None:
            good, bad = self.scan_manifests()
            report.bad_manifests = {i: getattr(e, "reason", str(e)) for i, e in bad.items()}
        else:
            snapshot_id = self.resolve(snapshot)
            try:
                good = [self.load_manifest(snapshot_id)]
            except (ManifestDamaged, FormatTooNew) as exc:
                report.bad_manifests[snapshot_id] = getattr(exc, "reason", str(exc))
                good = []
        report.snapshots = len(good) + len(report.bad_manifests)
        needed: dict[bytes, tuple[int, list[str]]] = {}
        for stored in good:
            for digest, size in stored.manifest.chunk_sizes():
                needed.setdefault(digest, (size, []))[1].append(stored.id)
        self._check_chunks(needed, report, read_data=read_data)
        if snapshot is None:
            names = {bytes.fromhex(i.name) for i in self.backend.list(FileType.CHUNK)}
            report.unreferenced = len(names - needed.keys())
        return report

    def _check_chunks(
        self,
        needed: dict[bytes, tuple[int, list[str]]],
        report: VerifyReport,
        *,
        read_data: bool,
    ) -> None:
        report.chunks = len(needed)

        def check(digest: bytes) -> tuple[bytes, int, str | None]:
            size, _ = needed[digest]
            h = _chunk(digest)
            if not read_data:
                info = self.backend.stat(h)
                return digest, 0, None if info is not None else "missing"
            try:
                blob = self.backend.load(h)
            except FileNotFoundError:
                return digest, 0, "missing"
            try:
                chunks.decode(digest, blob, size)
            except ChunkDamaged as exc:
                return digest, len(blob), exc.reason
            return digest, len(blob), None

        with ThreadPoolExecutor(max_workers=_VERIFY_WORKERS) as pool:
            for digest, read, problem in pool.map(check, sorted(needed)):
                report.bytes_read += read
                if problem == "missing":
                    report.missing[digest] = needed[digest][1]
                elif problem is not None:
                    report.damaged[digest] = problem

    # ------------------------------------------------------------ retention

    def prune(
        self,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        grace: dt.timedelta = DEFAULT_GRACE,
        now: dt.datetime | None = None,
        tz: dt.tzinfo = dt.UTC,
    ) -> PruneReport:
        """Forget the snapshots ``policy`` does not keep, then delete unreferenced chunks.

        The policy applies per (network, canister).  Without a policy (or an
        empty one) no snapshot is forgotten and only garbage is collected.
        Refuses to run while any manifest cannot be read, since the chunks it
        names cannot be known.  ``grace`` spares chunks touched recently
        (a backup in progress); ``now`` is for the policy's calendar only.
        """
        good, bad = self.scan_manifests()
        if bad:
            sid, exc = next(iter(bad.items()))
            if isinstance(exc, FormatTooNew):
                raise exc
            raise ManifestDamaged(
                sid,
                f"{getattr(exc, 'reason', exc)}; prune deletes nothing while a manifest cannot "
                "be read (it cannot know which chunks that snapshot needs): remove it first",
            )
        report = PruneReport(dry_run=dry_run, policy=str(policy or Policy()))
        keep = self._decide(good, policy, report, now=now, tz=tz)
        if not dry_run:
            for snapshot_id in report.removed_snapshots:
                self.backend.remove(Handle(FileType.SNAPSHOT, snapshot_id))
        cutoff = time.time() - grace.total_seconds()
        if not dry_run:
            report.temporary_removed = self.backend.clean_temporary(cutoff)
        referenced = {d.hex() for s in keep for d in s.manifest.digests()}
        self._collect(referenced, cutoff, report)
        return report

    @staticmethod
    def _decide(
        good: list[StoredManifest],
        policy: Policy | None,
        report: PruneReport,
        *,
        now: dt.datetime | None,
        tz: dt.tzinfo,
    ) -> list[StoredManifest]:
        groups: dict[tuple[str, str], list[StoredManifest]] = {}
        for stored in good:
            groups.setdefault((stored.manifest.network, stored.manifest.canister), []).append(
                stored
            )
        keep: list[StoredManifest] = []
        for (network, canister), items in sorted(groups.items()):
            decisions = apply_policy(
                items,
                policy or Policy(),
                time_of=lambda s: s.manifest.time,
                tags_of=lambda s: s.manifest.tags,
                now=now,
                tz=tz,
            )
            report.groups.append(GroupDecisions(network, canister, decisions))
            keep += [d.item for d in decisions if d.keep]
            report.removed_snapshots += [d.item.id for d in decisions if not d.keep]
        return keep

    def _collect(self, referenced: set[str], cutoff: float, report: PruneReport) -> None:
        for info in self.backend.list(FileType.CHUNK):
            if info.name in referenced:
                report.chunks_kept += 1
            elif info.mtime >= cutoff:
                report.chunks_spared += 1
            elif report.dry_run or self.backend.remove_if_untouched(
                Handle(FileType.CHUNK, info.name), cutoff
            ):
                report.chunks_removed += 1
                report.bytes_removed += info.size
            else:
                report.chunks_spared += 1

    def stats(self) -> RepositoryStats:
        """Sizes and ratios (reads no chunk data)."""
        good, bad = self.scan_manifests()
        stored = {info.name: info.size for info in self.backend.list(FileType.CHUNK)}
        unique: dict[bytes, int] = {}
        for s in good:
            unique.update(s.manifest.chunk_sizes())
        return RepositoryStats(
            snapshots=len(good),
            chunks=len(stored),
            stored_bytes=sum(stored.values()),
            logical_bytes=sum(s.manifest.size for s in good),
            unique_bytes=sum(unique.values()),
            referenced_stored_bytes=sum(stored.get(d.hex(), 0) for d in unique),
            unreadable_snapshots=len(bad),
        )


async def aiter_part(
    repo: Repository,
    m: Manifest,
    part: SnapshotMemory,
    *,
    start: int = 0,
    slice_size: int | None = None,
) -> AsyncIterator[tuple[int, bytes]]:
    """:meth:`Repository.iter_part` for asyncio: each piece is read in a thread."""
    pieces = repo.iter_part(m, part, start=start, slice_size=slice_size)
    done = object()
    while True:
        piece = await asyncio.to_thread(next, pieces, done)
        if piece is done:
            return
        assert isinstance(piece, tuple)
        yield piece


def _pool() -> ThreadPoolExecutor:
    global _put_pool
    with _put_pool_lock:
        if _put_pool is None:
            _put_pool = ThreadPoolExecutor(_PUT_WORKERS, thread_name_prefix="repository-put")
        return _put_pool


def _chunk(digest: bytes) -> Handle:
    return Handle(FileType.CHUNK, chunks.check_digest(digest).hex())


def _backend(location: str | os.PathLike[str] | Backend) -> Backend:
    if isinstance(location, str | os.PathLike):
        return LocalBackend(location)
    return location


def _check_empty(root: Path) -> None:
    if (root / "config.json").exists():
        raise RepositoryExists(root, "it already holds one")
    if root.exists() and not root.is_dir():
        raise RepositoryExists(root, "it is a file")
    if root.is_dir() and any(root.iterdir()):
        raise RepositoryExists(root, "the directory is not empty (choose a new or empty one)")
