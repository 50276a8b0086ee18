"""Where a repository's files live: the backend protocol and the directory backend.

Modelled on restic's ``internal/backend``: the repository logic
(:mod:`replicator.repository.repo`) sees named, immutable objects of three
types and nothing of the medium.  A backend stores whole objects atomically
and durably; it never exposes a half-written one.  An object store (S3,
GCS, ...) can be added later by implementing :class:`Backend`; wrappers
(retries, rate limits, fault injection) wrap the same protocol.

Errors are classified here, once: a missing object is ``FileNotFoundError``
(from :meth:`Backend.load` only; the other methods answer ``None`` or
``False``), a full file system is :class:`RepositoryFull`, anything else is
:class:`RepositoryIOError` naming the path and what was being done.

Concurrency without locks.  ``prune`` deletes an unreferenced chunk only if
nobody touched it within a grace period, and a backup touches every chunk it
deduplicates against (:meth:`Backend.touch`) and every chunk its manifest
names right before writing it.  :meth:`Backend.remove_if_untouched` makes
"check the age, then delete" atomic with respect to ``touch``; see its
docstring for how the directory backend does it.

The directory backend (:class:`LocalBackend`)::

    REPO/config.json            the repository's configuration
    REPO/chunks/ab/ab12…ef      chunk objects, named by SHA-256 (hex), fanned out by 2 hex
    REPO/snapshots/<id>.json    manifests, named by the SHA-256 of their bytes
    REPO/tmp/                   files being written (renamed into place when whole)
    REPO/trash/                 chunks prune is about to delete (see remove_if_untouched)

A write goes to ``tmp/``, is fsynced, renamed into place and the directory
fsynced: after a crash an object is either absent or whole.  Objects are
made read-only (0444) against accidental modification, as restic does.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from replicator.repository.errors import RepositoryFull, RepositoryIOError

_FULL = {errno.ENOSPC, errno.EDQUOT}
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_READ_ONLY = 0o444
_TMP_SUFFIX = ".tmp"


class FileType(enum.Enum):
    """The kinds of object a repository holds."""

    CONFIG = "config"
    CHUNK = "chunks"
    SNAPSHOT = "snapshots"


@dataclass(frozen=True)
class Handle:
    """One object: its type and name (``config`` for the config, else 64 hex digits)."""

    type: FileType
    name: str

    def __post_init__(self) -> None:
        if self.type is FileType.CONFIG:
            if self.name != "config":
                raise ValueError(f"the config object is named 'config', not {self.name!r}")
        elif not _HEX64.match(self.name):
            raise ValueError(f"a {self.type.value} object is named by 64 hex digits: {self.name!r}")


CONFIG = Handle(FileType.CONFIG, "config")


@dataclass(frozen=True)
class FileInfo:
    """What a listing or a stat tells about one object."""

    name: str
    size: int  # bytes as stored
    mtime: float  # seconds since the epoch: last write or touch


class Backend(Protocol):
    """Storage for a repository's objects.  Every method is synchronous and thread-safe."""

    @property
    def location(self) -> str:
        """Where the objects live, for messages (a path or a URL)."""
        ...

    def create(self) -> None:
        """Prepare empty storage (directories); the caller then saves the config."""
        ...

    def save(self, h: Handle, data: bytes, *, exclusive: bool = False) -> None:
        """Store ``data`` under ``h`` atomically and durably.

        An existing object is replaced (objects are content-addressed, so a
        replacement holds the same bytes) unless ``exclusive``, which raises
        ``FileExistsError`` instead.
        """
        ...

    def load(self, h: Handle) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when there is none."""
        ...

    def stat(self, h: Handle) -> FileInfo | None:
        """Size and age of the object, or ``None`` when there is none."""
        ...

    def touch(self, h: Handle) -> bool:
        """Mark the object as used now (protects it from prune's grace check).

        ``False`` when there is no such object: the caller must store it.
        """
        ...

    def list(self, t: FileType) -> Iterator[FileInfo]:
        """Every object of type ``t`` (in no particular order)."""
        ...

    def remove(self, h: Handle) -> bool:
        """Delete the object; ``False`` when it was not there."""
        ...

    def remove_if_untouched(self, h: Handle, cutoff: float) -> bool:
        """Delete the object unless it was written or touched at or after ``cutoff``.

        Atomic with respect to :meth:`touch`: a touch that returned ``True``
        before or during this call keeps the object.  ``True`` when deleted.
        """
        ...

    def clean_temporary(self, cutoff: float) -> int:
        """Undo interrupted deletes; delete leftovers of writes older than ``cutoff``.

        Returns how many leftovers were deleted.
        """
        ...


class LocalBackend:
    """A repository in a local directory (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        # durable=False skips fsync: only for throw-away repositories in tests.
        self.root = Path(root)
        self.durable = durable
        self._tmp = self.root / "tmp"
        self._trash = self.root / "trash"

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, h: Handle) -> Path:
        """The file that holds ``h``."""
        if h.type is FileType.CONFIG:
            return self.root / "config.json"
        if h.type is FileType.CHUNK:
            return self.root / "chunks" / h.name[:2] / h.name
        return self.root / "snapshots" / f"{h.name}.json"

    # ----------------------------------------------------------------- write

    def create(self) -> None:
        with self._classified("create", self.root):
            for sub in ("snapshots", "tmp", "trash"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            chunks = self.root / "chunks"
            for i in range(256):
                (chunks / f"{i:02x}").mkdir(parents=True, exist_ok=True)
            self._sync_dir(self.root)

    def save(self, h: Handle, data: bytes, *, exclusive: bool = False) -> None:
        final = self.path(h)
        tmp = self._tmp / f"{h.name}-{secrets.token_hex(8)}{_TMP_SUFFIX}"
        try:
            with self._classified("write", final):
                self._write_synced(tmp, data)
                os.chmod(tmp, _READ_ONLY)
                self._put_in_place(tmp, final, exclusive=exclusive)
                self._sync_dir(final.parent)
        finally:
            _unlink_quietly(tmp)

    @staticmethod
    def _put_in_place(tmp: Path, final: Path, *, exclusive: bool) -> None:
        if not exclusive:
            os.replace(tmp, final)
            return
        # link() fails with FileExistsError if the name exists: create-if-absent.
        os.link(tmp, final)

    def _write_synced(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_dir(self, directory: Path) -> None:
        # A renamed file's new name is durable only once its directory is.
        if not self.durable:
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ read

    def load(self, h: Handle) -> bytes:
        path = self.path(h)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if h.type is FileType.CHUNK and self._restore_from_trash(h):
                with self._classified("read", path):
                    return path.read_bytes()
            raise
        except OSError as exc:
            raise classify_os_error(exc, "read", path, self.root) from exc

    def stat(self, h: Handle) -> FileInfo | None:
        path = self.path(h)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not (h.type is FileType.CHUNK and self._restore_from_trash(h)):
                return None
            with self._classified("stat", path):
                st = os.stat(path)
        except OSError as exc:
            raise classify_os_error(exc, "stat", path, self.root) from exc
        return FileInfo(h.name, st.st_size, st.st_mtime)

    def touch(self, h: Handle) -> bool:
        path = self.path(h)
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise classify_os_error(exc, "touch", path, self.root) from exc
        if h.type is not FileType.CHUNK or not self._restore_from_trash(h):
            return False
        try:
            os.utime(path)
        except FileNotFoundError:
            return False  # deleted again in between: the caller stores it anew
        except OSError as exc:
            raise classify_os_error(exc, "touch", path, self.root) from exc
        return True

    def list(self, t: FileType) -> Iterator[FileInfo]:
        if t is FileType.CONFIG:
            info = self.stat(CONFIG)
            if info is not None:
                yield info
            return
        if t is FileType.SNAPSHOT:
            yield from self._scan(self.root / "snapshots", ".json")
            return
        chunks = self.root / "chunks"
        with self._classified("list", chunks):
            subdirs = sorted(p for p in chunks.iterdir() if p.is_dir())
        for sub in subdirs:
            yield from self._scan(sub, "")

    def _scan(self, directory: Path, suffix: str) -> Iterator[FileInfo]:
        with self._classified("list", directory):
            entries = list(os.scandir(directory))
        for entry in entries:
            name = entry.name.removesuffix(suffix) if suffix else entry.name
            if (suffix and not entry.name.endswith(suffix)) or not _HEX64.match(name):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # removed while listing
            except OSError as exc:
                raise classify_os_error(exc, "stat", Path(entry.path), self.root) from exc
            yield FileInfo(name, st.st_size, st.st_mtime)

    # ---------------------------------------------------------------- delete

    def remove(self, h: Handle) -> bool:
        path = self.path(h)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise classify_os_error(exc, "delete", path, self.root) from exc
        self._sync_dir(path.parent)
        return True

    def remove_if_untouched(self, h: Handle, cutoff: float) -> bool:
        # Move the chunk out of reach first, then judge its age where no
        # touch can reach it.  A touch that came before the rename shows in
        # the mtime (the chunk goes back); one that comes after finds no file,
        # restores it from the trash itself or, if it is already gone, makes
        # its caller store the chunk anew.  Either way a chunk somebody uses
        # survives.  A crash between the two steps leaves it in trash/, from
        # where load/stat/touch restore it on first use.
        path = self.path(h)
        trashed = self._trash / h.name
        try:
            os.rename(path, trashed)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise classify_os_error(exc, "delete", path, self.root) from exc
        try:
            mtime = os.stat(trashed).st_mtime
        except FileNotFoundError:
            return False  # restored by a concurrent touch
        if mtime >= cutoff:
            self._restore_from_trash(h)
            return False
        try:
            os.unlink(trashed)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise classify_os_error(exc, "delete", trashed, self.root) from exc
        return True

    def clean_temporary(self, cutoff: float) -> int:
        # Chunks in trash/ are from a prune that was interrupted between its
        # two steps (or is running now): put them back, to be judged again.
        with self._classified("list", self._trash):
            trashed = [e.name for e in os.scandir(self._trash) if _HEX64.match(e.name)]
        for name in trashed:
            self._restore_from_trash(Handle(FileType.CHUNK, name))
        removed = 0
        with self._classified("list", self._tmp):
            entries = list(os.scandir(self._tmp))
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise classify_os_error(exc, "delete", Path(entry.path), self.root) from exc
        return removed

    def _restore_from_trash(self, h: Handle) -> bool:
        try:
            os.rename(self._trash / h.name, self.path(h))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise classify_os_error(exc, "restore", self.path(h), self.root) from exc
        return True

    @contextmanager
    def _classified(self, action: str, path: Path) -> Iterator[None]:
        try:
            yield
        except FileExistsError:
            raise  # save(exclusive=True) reports an existing object as such
        except OSError as exc:
            raise classify_os_error(exc, action, path, self.root) from exc


def classify_os_error(exc: OSError, action: str, path: Path, root: Path) -> Exception:
    """The repository error for an OS error (the one place they are classified)."""
    if exc.errno in _FULL:
        return RepositoryFull(root)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return RepositoryIOError(
            f"cannot {action} {path}: permission denied; run as the repository's owner "
            "or fix the permissions"
        )
    if exc.errno == errno.EROFS:
        return RepositoryIOError(f"cannot {action} {path}: the file system is read-only")
    return RepositoryIOError(f"cannot {action} {path}: {exc.strerror or exc}")


def _unlink_quietly(path: Path) -> None:
    # Only the temporary file of a failed write: freeing its space matters
    # more than reporting a second error.
    with suppress(OSError):
        os.unlink(path)
