"""The snapshot repository: canister snapshots as deduplicated, verifiable chunks.

See :mod:`replicator.repository.repo` for the design and
``docs/repository-format.md`` for the on-disk format.  The public API::

    Repository.init(path, compression="zstd") / Repository.open(path)
    repo.put_chunk(data) -> ChunkRef       repo.get_chunk(digest, size) -> bytes
    ManifestBuilder(...).add(...) / .build() -> Manifest
    repo.write_manifest(manifest) -> StoredManifest
    repo.manifests(canister) / repo.load_manifest(id) / repo.iter_part(manifest, part)
    repo.verify(id | None, read_data=True) / repo.ensure_restorable(stored)
    repo.prune(Policy(...), dry_run=...) / repo.stats()
    import_icp_cli_dir(repo, dir, ...) / export_icp_cli_dir(repo, stored, dir)
"""

from replicator.repository.chunks import (
    DEFAULT_ZSTD_LEVEL,
    MAX_CHUNK_SIZE,
    ChunkRef,
    Compression,
    split_slice,
)
from replicator.repository.errors import (
    ChunkDamaged,
    ChunkMissing,
    ChunksUnavailable,
    FormatTooNew,
    ManifestDamaged,
    RepositoryError,
    RepositoryExists,
    RepositoryFull,
    RepositoryIOError,
    RepositoryNotFound,
    SnapshotNotFound,
)
from replicator.repository.icp_cli_dir import export_icp_cli_dir, import_icp_cli_dir
from replicator.repository.manifest import (
    DEFAULT_CHUNK_SIZE,
    Manifest,
    ManifestBuilder,
    Memory,
    StoredManifest,
    Summary,
    WasmChunk,
)
from replicator.repository.repo import (
    DEFAULT_GRACE,
    GroupDecisions,
    PruneReport,
    Repository,
    RepositoryConfig,
    RepositoryStats,
    VerifyReport,
    aiter_part,
)
from replicator.repository.retention import Decision, Duration, Policy, apply_policy
from replicator.repository.store import Backend, FileInfo, FileType, Handle, LocalBackend

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GRACE",
    "DEFAULT_ZSTD_LEVEL",
    "MAX_CHUNK_SIZE",
    "Backend",
    "ChunkDamaged",
    "ChunkMissing",
    "ChunkRef",
    "ChunksUnavailable",
    "Compression",
    "Decision",
    "Duration",
    "FileInfo",
    "FileType",
    "FormatTooNew",
    "GroupDecisions",
    "Handle",
    "LocalBackend",
    "Manifest",
    "ManifestBuilder",
    "ManifestDamaged",
    "Memory",
    "Policy",
    "PruneReport",
    "Repository",
    "RepositoryConfig",
    "RepositoryError",
    "RepositoryExists",
    "RepositoryFull",
    "RepositoryIOError",
    "RepositoryNotFound",
    "RepositoryStats",
    "SnapshotNotFound",
    "StoredManifest",
    "Summary",
    "VerifyReport",
    "WasmChunk",
    "aiter_part",
    "apply_policy",
    "export_icp_cli_dir",
    "import_icp_cli_dir",
    "split_slice",
]
