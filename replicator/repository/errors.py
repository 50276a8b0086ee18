"""What the snapshot repository reports when it cannot do what was asked.

Every error is classified once, where it happens: operating-system errors
become one of these in the backend (:mod:`replicator.repository.store`),
never a bare ``OSError`` further up.  Each is also one of the job-level
errors of :mod:`replicator.errors`, so the command line maps it to its exit
code without knowing the repository::

    RepositoryError                       (base; no exit code of its own)
    ├── RepositoryNotFound   UsageError   no repository at the path
    ├── RepositoryExists     UsageError   init on a path that already holds one
    ├── FormatTooNew         UsageError   a repository or manifest from a newer ic-replicator
    ├── SnapshotNotFound     UsageError   unknown or ambiguous snapshot id
    ├── RepositoryFull       exit 75      no space left: free space, re-run (resumes)
    ├── RepositoryIOError    JobFailed    permissions, read-only file system, other I/O
    ├── ChunkMissing         Integrity    a chunk a snapshot names is not stored
    ├── ChunkDamaged         Integrity    a stored chunk does not hash to its name
    ├── ChunksUnavailable    Integrity    several of the above, named, for one snapshot
    └── ManifestDamaged      Integrity    a manifest that does not hash to its id or does not parse
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from replicator.errors import (
    EXIT_TEMPORARY,
    IntegrityError,
    JobFailed,
    ReplicatorError,
    UsageError,
)

# How many digests a message names before it says "and N more".
_NAMED = 5


class RepositoryError(ReplicatorError):
    """Base of every repository error."""


class RepositoryNotFound(RepositoryError, UsageError):
    """The path holds no repository."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} is not a snapshot repository (no config.json): initialise one there first"
        )
        self.path = path


class RepositoryExists(RepositoryError, UsageError):
    """``init`` on a path that is already a repository or a non-empty directory."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"cannot create a repository in {path}: {what}")
        self.path = path


class FormatTooNew(RepositoryError, UsageError):
    """Written by a newer ic-replicator than this one; never misread."""

    def __init__(self, what: str, found: int, supported: int) -> None:
        super().__init__(
            f"{what} has format version {found}; this ic-replicator reads up to version "
            f"{supported}: upgrade ic-replicator to use it (nothing was changed)"
        )
        self.found = found
        self.supported = supported


class SnapshotNotFound(RepositoryError, UsageError):
    """No snapshot with that id (or prefix), or a prefix that names several."""


class RepositoryFull(RepositoryError):
    """The repository's file system has no space left (ENOSPC or EDQUOT).

    Nothing half-written is referenced: the chunk or manifest being written
    was removed, earlier chunks are whole, and no manifest names a chunk that
    is not stored.  A job stops at its last checkpoint; freeing space and
    re-running resumes it.
    """

    exit_code = EXIT_TEMPORARY

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no space left in {path}: stopped at a checkpoint; free space in {path} "
            "(or run prune) and re-run the same command to resume"
        )
        self.path = path


class RepositoryIOError(RepositoryError, JobFailed):
    """Any other failure of the repository's storage (permissions, read-only, I/O)."""


class ChunkMissing(RepositoryError, IntegrityError):
    """A chunk that should be stored is not."""

    def __init__(self, digest: bytes) -> None:
        super().__init__(f"chunk {digest.hex()} is missing from the repository")
        self.digest = digest


class ChunkDamaged(RepositoryError, IntegrityError):
    """A stored chunk that does not decode to bytes hashing to its name."""

    def __init__(self, digest: bytes, reason: str) -> None:
        super().__init__(f"chunk {digest.hex()} is damaged: {reason}")
        self.digest = digest
        self.reason = reason


class ChunksUnavailable(RepositoryError, IntegrityError):
    """Chunks a snapshot needs are missing or damaged; all of them are named.

    Raised before anything is written: by ``write_manifest`` (a manifest is
    never written over a missing chunk) and by ``ensure_restorable`` (a
    restore never touches its target).
    """

    def __init__(
        self,
        what: str,
        missing: Iterable[bytes] = (),
        damaged: Mapping[bytes, str] | None = None,
        *,
        advice: str,
    ) -> None:
        self.missing = tuple(missing)
        self.damaged = dict(damaged or {})
        problems = []
        if self.missing:
            problems.append(f"{len(self.missing)} missing ({_names(self.missing)})")
        if self.damaged:
            problems.append(f"{len(self.damaged)} damaged ({_names(self.damaged)})")
        super().__init__(f"{what}: chunks {' and '.join(problems)}; {advice}")


class ManifestDamaged(RepositoryError, IntegrityError):
    """A snapshot manifest that does not hash to its id, or is not a valid manifest."""

    def __init__(self, snapshot_id: str, reason: str) -> None:
        super().__init__(f"snapshot {snapshot_id[:12]} cannot be read: {reason}")
        self.snapshot_id = snapshot_id
        self.reason = reason


def _names(digests: Iterable[bytes]) -> str:
    listed = list(digests)
    shown = ", ".join(d.hex()[:16] for d in listed[:_NAMED])
    more = len(listed) - _NAMED
    return shown + (f" and {more} more" if more > 0 else "")
