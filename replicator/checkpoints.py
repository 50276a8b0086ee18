"""Durable checkpoints: one row per job, one row per acknowledged chunk.

The engine records a job's state after every transition (:meth:`Store.save`)
and every chunk once the *target* acknowledged it (:meth:`Store.ack_chunks`);
a resumed job loads both (:meth:`Store.load`) and continues.  Re-running the
same command finds the unfinished job by its fingerprint
(:meth:`Store.find_resumable`).  The store also keeps the registry of
canisters the orchestrator created (:attr:`Store.registry`,
:mod:`replicator.registry`).

:class:`Store` is the protocol, asynchronous: a commit's fsync never stalls
the event loop.  :class:`SqliteStore` is the embedded default (stdlib
``sqlite3``): every operation runs on the store's own worker thread, one at
a time.  A store for several orchestrators sharing a fleet implements the
same protocol.

The store also keeps what the cycles budgets spent (:attr:`Store.spending`,
per network and period, see :class:`~replicator.limits.CyclesBudget`) and a
lock per job (:mod:`replicator.joblock`), so that every process using one
store shares its budgets and no two run the same job.  Writes to a job whose
lock another live process holds are refused (:class:`JobLocked`).

SQLite details:

- The file, and SQLite's ``-wal`` and ``-shm`` files beside it, have mode
  0600 whatever the umask (they hold canister state); a directory the store
  creates has mode 0700.  An existing file with looser permissions is
  tightened when opened.
- Problems are reported with the path and the fix: a read-only file or
  directory (:class:`~replicator.errors.UsageError`, exit 2), a damaged file
  (:class:`~replicator.errors.CheckpointError`, exit 1).
- WAL journal with ``synchronous=FULL``: a commit returns only after the WAL
  is fsynced, so an acknowledged checkpoint survives a power cut; readers
  (``replicator jobs`` in another process) never block the writer.
- Writes take ``BEGIN IMMEDIATE`` and wait up to ``timeout`` seconds for
  another writer.
- Job states are msgpack (:meth:`JobState.to_payload`); chunk digests are
  plain BLOB columns.
- The schema version is ``PRAGMA user_version``; a newer version than this
  code knows is refused rather than misread, an older one is migrated.

Schema (version 3)::

    jobs(id TEXT PK, kind, fingerprint, phase, created_at REAL, updated_at REAL,
         state BLOB /* msgpack */)
    chunk_acks(job_id → jobs ON DELETE CASCADE, chunk INTEGER, digest BLOB,
               acked_at REAL, PK (job_id, chunk))
    canister_registry(network, source, role, canister, state, request_ns,
                      updated_at, PK (network, source, role))
    cycles_spent(scope /* network */, period INTEGER /* Unix start */, cycles INTEGER,
                 updated_at REAL, PK (scope, period))
    job_locks(fingerprint PK, token, pid, host, since REAL, lease_until REAL, what)
    fleet_members(fleet, network, member, ..., PK (fleet, network, member))

Version 1 kept the image kinds' fields at the top of the job state; version
2 keeps every kind's own fields in ``detail`` (:class:`~replicator.job.JobState`
reads both) and the registry table in the schema (version 1 files created it
beside the schema); version 3 adds ``cycles_spent`` and ``job_locks``; version 4
adds ``fleet_members`` (:mod:`replicator.fleetstore`); version 5 its ``subnet``;
version 6 indexes ``canister_registry`` by (network, role, state, updated_at)
and by canister (the warm pool's count, :meth:`Registry.holds`).

Finished jobs are pruned (:meth:`Store.prune`): a job that is done, or that
a newer run of the same command (same fingerprint) superseded, once it is
older than the retention (``job_retention``, 30 days by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from replicator import codec
from replicator.errors import CheckpointError, IntegrityError, ReplicatorError, UsageError
from replicator.fleetstore import (
    FLEET_SUBNET_COLUMN,
    FLEET_TABLE,
    FleetTable,
    MemberResult,
    MemberRow,
    Membership,
    SqliteFleetTable,
)
from replicator.integrity import DIGEST_SIZE
from replicator.job import TERMINAL_PHASES, Job, JobState, Phase, new_state
from replicator.joblock import LOCK_TABLE, Holder, JobLocked, SqliteLockTable
from replicator.limits import RateLeases, Spending
from replicator.registry import (
    REGISTRY_INDEXES,
    REGISTRY_TABLE,
    Entry,
    Registry,
    SqliteRegistryTable,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
FILE_MODE = 0o600  # the store holds which canisters exist and how far their copies got
DIR_MODE = 0o700
_SIDE_FILES = ("-wal", "-shm", "-journal")
# Spending of periods that ended this long ago is dropped when pruning.
_KEEP_SPENDING = 90 * 86400.0
P = ParamSpec("P")
R = TypeVar("R")

_SCHEMA = (
    """
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    phase       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    state       BLOB NOT NULL
);
CREATE INDEX jobs_by_fingerprint ON jobs (fingerprint, created_at);
CREATE TABLE chunk_acks (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk    INTEGER NOT NULL,
    digest   BLOB NOT NULL,
    acked_at REAL NOT NULL,
    PRIMARY KEY (job_id, chunk)
) WITHOUT ROWID;
"""
    + REGISTRY_TABLE
    + LOCK_TABLE
)
# Version 3 adds the budgets' spending and the job locks (both IF NOT EXISTS).
CYCLES_TABLE = """
CREATE TABLE IF NOT EXISTS cycles_spent (
    scope      TEXT NOT NULL,
    period     INTEGER NOT NULL,
    cycles     INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, period)
) WITHOUT ROWID;
"""
_SCHEMA += CYCLES_TABLE + FLEET_TABLE + REGISTRY_INDEXES
_MIGRATIONS = {  # from version → the script that brings it to SCHEMA_VERSION
    1: REGISTRY_TABLE + LOCK_TABLE + CYCLES_TABLE + FLEET_TABLE + REGISTRY_INDEXES,
    2: LOCK_TABLE + CYCLES_TABLE + FLEET_TABLE + REGISTRY_INDEXES,
    3: FLEET_TABLE + REGISTRY_INDEXES,  # version 4 adds the fleets' member table
    4: FLEET_SUBNET_COLUMN + REGISTRY_INDEXES,  # version 5 caches the members' subnets
    5: REGISTRY_INDEXES,  # version 6 indexes the registry by role and by canister
}


@dataclass(frozen=True)
class Checkpoint:
    """Everything recorded about one job."""

    state: JobState
    acked: dict[int, bytes]  # chunk index → digest, acknowledged by the target
    updated_at: float


@dataclass(frozen=True)
class JobSummary:
    """One line of ``replicator jobs``."""

    id: str
    kind: str
    phase: str
    source: str
    target: str | None
    created_at: float
    updated_at: float
    chunks_acked: int
    chunks_total: int | None  # unknown until the source offered an image
    error: str | None
    fingerprint: str = ""
    holder: Holder | None = None  # the live process running it now, if any
    superseded: bool = False  # a newer run of the same command exists: nothing to resume


class Store(Protocol):
    """Where checkpoints live.  Every method commits durably before returning."""

    @property
    def registry(self) -> Registry:
        """The canisters the orchestrator created, in the same store."""
        ...

    @property
    def spending(self) -> Spending:
        """What the cycles budgets spent, per network and period, in the same store."""
        ...

    @property
    def rate_leases(self) -> RateLeases | None:
        """The buckets of the rates all processes of the store share (None: one process)."""
        ...

    async def create_job(self, job: Job) -> JobState:
        """Record a new job; returns its pending state."""
        ...

    async def save(self, state: JobState) -> float:
        """Record a job's new state; returns the commit time (Unix seconds)."""
        ...

    async def ack_chunks(self, job_id: str, acks: Sequence[tuple[int, bytes]]) -> float:
        """Record chunks the target acknowledged, ``(index, sha256)``; returns the commit time.

        Re-acknowledging a chunk with the same digest is a no-op; with another
        digest it raises :class:`~replicator.errors.IntegrityError` and records nothing.
        """
        ...

    async def reset_chunks(self, job_id: str) -> None:
        """Forget every acknowledged chunk of a job (its image changed)."""
        ...

    async def load(self, job_id: str) -> Checkpoint:
        """The job's state and acknowledged chunks, read consistently."""
        ...

    async def list_jobs(
        self, phases: Iterable[str] | None = None, *, unfinished: bool = False
    ) -> list[JobSummary]:
        """Jobs, oldest first, optionally only those in ``phases`` or not yet ended
        (``unfinished``: not in a terminal phase)."""
        ...

    async def find_resumable(self, fingerprint: str) -> str | None:
        """The newest unfinished job with this fingerprint (see ``Job.fingerprint``)."""
        ...

    async def delete_job(self, job_id: str) -> None:
        """Forget a job and its chunks."""
        ...

    async def prune(self, older_than: float) -> list[str]:
        """Forget finished jobs (done or superseded) not updated for ``older_than`` seconds.

        Returns their ids.  A job whose lock a live process holds is kept.
        """
        ...

    async def lock_job(self, fingerprint: str, me: Holder) -> tuple[bool, Holder | None]:
        """Take a job's lock (see :mod:`replicator.joblock`)."""
        ...

    async def renew_lock(self, fingerprint: str, token: str, until: float) -> bool: ...

    async def unlock_job(self, fingerprint: str, token: str) -> None: ...

    async def close(self) -> None: ...


class _SqliteFile:
    """The checkpoint file, synchronously; :class:`SqliteStore` runs it on its thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._tokens: set[str] = set()  # job locks this store's process holds
        if not read_only:
            _prepare_file(self.path)
        target: str | Path = self.path
        if read_only:  # listing needs no write access to the file
            target = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            self._db = sqlite3.connect(
                target,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=read_only,
            )
        except sqlite3.Error as exc:
            raise self._problem(exc) from exc
        try:
            if read_only:
                self._check_readable()
            else:
                self._setup(timeout)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes

    def create_job(self, job: Job) -> JobState:
        state = new_state(job)
        now = self._clock()
        with self._write() as db:
            self._fence(db, job.fingerprint, now)
            try:
                db.execute(
                    "INSERT INTO jobs (id, kind, fingerprint, phase, created_at, updated_at, state)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.kind,
                        job.fingerprint,
                        str(state.phase),
                        now,
                        now,
                        codec.pack(state.to_payload()),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise CheckpointError(
                    f"a job with id {job.id} already exists in {self.path}"
                ) from exc
        return state

    def save(self, state: JobState) -> float:
        now = self._clock()
        with self._write() as db:
            self._fence(db, state.job.fingerprint, now)
            cursor = db.execute(
                "UPDATE jobs SET phase = ?, updated_at = ?, state = ? WHERE id = ?",
                (str(state.phase), now, codec.pack(state.to_payload()), state.job.id),
            )
            if cursor.rowcount == 0:
                raise self._unknown(state.job.id)
        return now

    def ack_chunks(self, job_id: str, acks: Sequence[tuple[int, bytes]]) -> float:
        for index, digest in acks:
            if index < 0 or len(digest) != DIGEST_SIZE:
                raise ValueError(f"bad chunk ack ({index}, {len(digest)}-byte digest)")
        now = self._clock()
        with self._write() as db:
            self._touch(db, job_id, now)
            for index, digest in acks:
                cursor = db.execute(
                    "INSERT INTO chunk_acks (job_id, chunk, digest, acked_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (job_id, chunk) DO NOTHING",
                    (job_id, index, bytes(digest), now),
                )
                if cursor.rowcount == 0:
                    _check_same_digest(db, job_id, index, digest)
        return now

    def reset_chunks(self, job_id: str) -> None:
        with self._write() as db:
            self._touch(db, job_id, self._clock())
            db.execute("DELETE FROM chunk_acks WHERE job_id = ?", (job_id,))

    def delete_job(self, job_id: str) -> None:
        with self._write() as db:
            if db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise self._unknown(job_id)

    def prune(self, older_than: float) -> list[str]:
        now = self._clock()
        cutoff = now - older_than
        with self._write() as db:
            locked = SqliteLockTable.live(db.connection, now)
            rows = db.execute(
                "SELECT j.id, j.fingerprint FROM jobs j WHERE j.updated_at < ? AND (j.phase = ?"
                " OR EXISTS (SELECT 1 FROM jobs n WHERE n.fingerprint = j.fingerprint"
                " AND (n.created_at > j.created_at"
                " OR (n.created_at = j.created_at AND n.id > j.id))))",
                (cutoff, Phase.DONE.value),
            ).fetchall()
            pruned = [str(r[0]) for r in rows if str(r[1]) not in locked]
            for job_id in pruned:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM cycles_spent WHERE period < ?", (now - _KEEP_SPENDING,))
        return pruned

    # -- reads

    def load(self, job_id: str) -> Checkpoint:
        with self._read() as db:
            row = db.execute(
                "SELECT state, updated_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise self._unknown(job_id)
            acks = db.execute(
                "SELECT chunk, digest FROM chunk_acks WHERE job_id = ? ORDER BY chunk", (job_id,)
            ).fetchall()
        return Checkpoint(
            state=self._decode(job_id, row[0]),
            acked={int(i): bytes(d) for i, d in acks},
            updated_at=float(row[1]),
        )

    def list_jobs(
        self, phases: Iterable[str] | None = None, *, unfinished: bool = False
    ) -> list[JobSummary]:
        wanted = None if phases is None else {str(p) for p in phases}
        with self._read() as db:
            rows = db.execute(
                "SELECT j.id, j.state, j.created_at, j.updated_at,"
                " (SELECT COUNT(*) FROM chunk_acks c WHERE c.job_id = j.id), j.fingerprint,"
                " j.phase FROM jobs j ORDER BY j.created_at, j.id"
            ).fetchall()
            locked = SqliteLockTable.live(db, self._clock())
        return job_summaries(rows, locked, wanted, self._decode, unfinished=unfinished)

    def find_resumable(self, fingerprint: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE fingerprint = ? AND phase != ?"
                " ORDER BY created_at DESC, id DESC LIMIT 1",
                (fingerprint, Phase.DONE.value),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- the registry table

    def registry_get(self, network: str, source: str, role: str) -> Entry | None:
        with self._read() as db:
            return SqliteRegistryTable.get(db, network, source, role)

    def registry_put(self, entry: Entry) -> Entry:
        with self._write() as tx:
            return SqliteRegistryTable.put(tx.connection, entry, self._clock())

    def registry_forget(self, network: str, source: str, role: str) -> None:
        with self._write() as tx:
            SqliteRegistryTable.forget(tx.connection, network, source, role)

    def registry_claim(self, network: str, source: str, role: str) -> Entry | None:
        with self._write() as tx:
            return SqliteRegistryTable.claim(tx.connection, network, source, role, self._clock())

    def registry_in_role(self, network: str, role: str) -> list[Entry]:
        with self._read() as db:
            return SqliteRegistryTable.in_role(db, network, role)

    def registry_counts(self, network: str, role: str) -> dict[str, int]:
        with self._read() as db:
            return SqliteRegistryTable.counts(db, network, role)

    def registry_holds(self, network: str, canister: str, role: str) -> bool:
        with self._read() as db:
            return SqliteRegistryTable.holds(db, network, canister, role)

    def registry_entries(self) -> list[Entry]:
        with self._read() as db:
            return SqliteRegistryTable.entries(db)

    # -- the budgets' spending

    def spend(self, scope: str, period: int, cycles: int, budget: int) -> tuple[bool, int]:
        with self._write() as db:
            total = self._spent(db.connection, scope, period)
            if total + cycles > budget:
                return False, total
            db.execute(
                "INSERT INTO cycles_spent (scope, period, cycles, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, period) DO UPDATE SET cycles = cycles + excluded.cycles,"
                " updated_at = excluded.updated_at",
                (scope, period, cycles, self._clock()),
            )
            return True, total + cycles

    def spent(self, scope: str, period: int) -> int:
        with self._read() as db:
            return self._spent(db, scope, period)

    @staticmethod
    def _spent(db: sqlite3.Connection, scope: str, period: int) -> int:
        row = db.execute(
            "SELECT cycles FROM cycles_spent WHERE scope = ? AND period = ?", (scope, period)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- fleet members

    def fleet_sync(self, fleet: str, network: str, members: list[str], now: float) -> Membership:
        with self._write() as tx:
            return SqliteFleetTable.sync(tx.connection, fleet, network, members, now)

    def fleet_due(
        self, fleet: str, network: str, round_id: str, now: float | None
    ) -> list[MemberRow]:
        with self._read() as db:
            return SqliteFleetTable.due(db, fleet, network, round_id, now)

    def fleet_finish(self, fleet: str, network: str, round_id: str, result: MemberResult) -> None:
        with self._write() as tx:
            SqliteFleetTable.finish(tx.connection, fleet, network, round_id, result)

    def fleet_members(self, fleet: str, network: str | None) -> list[MemberRow]:
        with self._read() as db:
            return SqliteFleetTable.members(db, fleet, network)

    def fleet_names(self) -> list[str]:
        with self._read() as db:
            return SqliteFleetTable.fleets(db)

    # -- job locks

    def lock_job(self, fingerprint: str, me: Holder) -> tuple[bool, Holder | None]:
        with self._write() as db:
            taken, other = SqliteLockTable.take(db.connection, fingerprint, me, self._clock())
        if taken:
            self._tokens.add(me.token)
        return taken, other

    def renew_lock(self, fingerprint: str, token: str, until: float) -> bool:
        with self._write() as db:
            return SqliteLockTable.renew(db.connection, fingerprint, token, until)

    def unlock_job(self, fingerprint: str, token: str) -> None:
        with self._write() as db:
            SqliteLockTable.release(db.connection, fingerprint, token)
        self._tokens.discard(token)

    # -- internals

    def _setup(self, timeout: float) -> None:
        db = self._db
        try:
            db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._problem(exc) from exc
        if mode.lower() != "wal":
            raise CheckpointError(
                f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the checkpoint "
                "store on a local file system"
            )
        if version == 0:
            with self._write() as tx:
                if int(tx.execute("PRAGMA user_version").fetchone()[0]) == 0:
                    tx.executescript_in_tx(_SCHEMA, SCHEMA_VERSION)
        elif version in _MIGRATIONS:
            with self._write() as tx:
                if int(tx.execute("PRAGMA user_version").fetchone()[0]) == version:
                    tx.executescript_in_tx(_MIGRATIONS[version], SCHEMA_VERSION)
        elif version > SCHEMA_VERSION:
            raise CheckpointError(
                f"{self.path} was written by a newer replicator (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade replicator or use another checkpoint file"
            )
        _tighten_side_files(self.path)

    def _check_readable(self) -> None:
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._problem(exc) from exc
        if version != SCHEMA_VERSION:
            raise CheckpointError(
                f"{self.path} has schema {version}, this replicator reads {SCHEMA_VERSION}: "
                "run a command that writes to it (e.g. `replicator jobs --prune`) with write "
                "access once, to migrate it"
            )

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        with self._lock, self._translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self._db)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction: the job row and its chunk rows come from one snapshot.
        with self._lock, self._translated():
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("COMMIT")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's errors as the user's: the path, what is wrong, what to do."""
        try:
            yield
        except ReplicatorError:
            raise
        except sqlite3.Error as exc:
            raise self._problem(exc) from exc

    def _problem(self, exc: sqlite3.Error) -> ReplicatorError:
        return store_problem(self.path, exc, self._timeout)

    def _fence(self, db: _Tx, fingerprint: str, now: float) -> None:
        # Only the run holding a job's lock records its state; a run that lost it stops.
        holder = SqliteLockTable.foreign_holder(db.connection, fingerprint, self._tokens, now)
        if holder is not None:
            raise JobLocked(holder.what or "this job", holder)

    def _touch(self, db: _Tx, job_id: str, now: float) -> None:
        row = db.execute("SELECT fingerprint FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise self._unknown(job_id)
        self._fence(db, str(row[0]), now)
        db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))

    def _unknown(self, job_id: str) -> CheckpointError:
        return CheckpointError(
            f"no job {job_id!r} in {self.path}; `replicator jobs` lists the known jobs"
        )

    def _decode(self, job_id: str, blob: bytes) -> JobState:
        try:
            return JobState.from_payload(codec.unpack_map(blob, f"job {job_id}"))
        except (codec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the checkpoint of job {job_id} in {self.path} is unreadable ({exc!r}); "
                "delete the job and start it again"
            ) from exc


def _prepare_file(path: Path) -> None:
    """Create the directory (0700) and the file (0600), or tighten an existing file.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file,
    whatever the umask, so a private database file keeps them private too.
    """
    _check_directory(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except PermissionError:
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(
                f"the checkpoint store {path} is read-only for this user; make it writable "
                f"(chmod u+w {path}, or fix its owner) or choose another file (--state PATH, "
                "or checkpoints = ... in the config file)"
            ) from None
        raise
    except IsADirectoryError:
        raise UsageError(
            f"the checkpoint store {path} is a directory; give a file path (--state PATH, "
            "or checkpoints = ... in the config file)"
        ) from None
    try:
        _private(fd, path)
    finally:
        os.close(fd)


def _check_directory(path: Path) -> None:
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    elif not os.access(directory, os.W_OK | os.X_OK):
        # SQLite creates its write-ahead log and shared-memory files beside the store.
        raise UsageError(
            f"the directory {directory} of the checkpoint store is read-only for this user; "
            f"SQLite keeps its -wal and -shm files next to {path.name} there. Make the "
            f"directory writable (chmod u+w {directory}) or choose another --state (or "
            "checkpoints = ... in the config file)"
        )


def _private(fd: int, path: Path) -> None:
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode == FILE_MODE:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    except PermissionError:
        log.warning("%s has mode %o, readable by others; could not change it to 0600", path, mode)
        return
    if mode & 0o077:
        log.info("%s had mode %o; made it private (0600)", path, mode)


def _tighten_side_files(path: Path) -> None:
    # -wal/-shm left by an older replicator (or made under a loose umask) get 0600 too.
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if stat.S_IMODE(side.stat().st_mode) & 0o077:
                side.chmod(FILE_MODE)


def store_problem(path: Path, exc: sqlite3.Error, timeout: float = 30.0) -> ReplicatorError:
    """The user-facing error for SQLite's ``exc`` on the store at ``path``."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    where = "(--state PATH, or checkpoints = ... in the config file)"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return UsageError(
            f"the checkpoint store {path} cannot be written ({text}): make the file and its "
            f"directory {path.parent} writable for this user, or choose another file {where}"
        )
    if name.startswith("SQLITE_NOTADB") or "not a database" in text:
        return CheckpointError(
            f"{path} is not a usable checkpoint store ({text}): it is not an SQLite file. "
            f"Check that it is the file you meant, and choose another one {where}"
        )
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return CheckpointError(
            f"the checkpoint store {path} is damaged ({text}). Move it away "
            f"(mv {path} {path}.damaged) and re-run: a new store starts empty, so unfinished "
            "jobs start over and created canisters are no longer known by name; or try to "
            f"salvage it first: sqlite3 {path}.damaged .recover | sqlite3 {path}"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return CheckpointError(
            f"the checkpoint store {path} stayed locked by another process for {timeout:g} s "
            f"({text}); wait for it, or use another file {where}"
        )
    if name.startswith("SQLITE_FULL") or "full" in text:
        return CheckpointError(
            f"the disk holding the checkpoint store {path} is full ({text}); free some space "
            "and re-run the same command"
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return UsageError(
            f"cannot open the checkpoint store {path} ({text}); check the path {where}"
        )
    return CheckpointError(f"the checkpoint store {path} failed: {text}; check the file {where}")


class SqliteStore:
    """The embedded :class:`Store` in one SQLite file (created if missing).

    Opening reads and, if needed, creates or migrates the schema (quick, and
    synchronous: open it before the event loop is busy, or with
    :meth:`open`).  Every operation then runs on the store's own worker
    thread, one at a time, so fsyncs never stall the event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        self._file = _SqliteFile(path, timeout=timeout, clock=clock, read_only=read_only)
        self.path = self._file.path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        self._registry = _SqliteRegistry(self)
        self._spending = _SqliteSpending(self)
        self._fleets = _SqliteFleets(self)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SqliteStore:
        """Open without blocking the event loop."""
        return await asyncio.to_thread(cls, path)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def spending(self) -> Spending:
        return self._spending

    @property
    def rate_leases(self) -> RateLeases | None:
        # One machine, usually one process: the global rates stay in memory.
        return None

    @property
    def fleets(self) -> FleetTable:
        """The fleets' member table (:mod:`replicator.fleetstore`), in the same file."""
        return self._fleets

    async def create_job(self, job: Job) -> JobState:
        return await self._run(self._file.create_job, job)

    async def save(self, state: JobState) -> float:
        return await self._run(self._file.save, state)

    async def ack_chunks(self, job_id: str, acks: Sequence[tuple[int, bytes]]) -> float:
        return await self._run(self._file.ack_chunks, job_id, list(acks))

    async def reset_chunks(self, job_id: str) -> None:
        await self._run(self._file.reset_chunks, job_id)

    async def load(self, job_id: str) -> Checkpoint:
        return await self._run(self._file.load, job_id)

    async def list_jobs(
        self, phases: Iterable[str] | None = None, *, unfinished: bool = False
    ) -> list[JobSummary]:
        wanted = None if phases is None else list(phases)
        return await self._run(self._file.list_jobs, wanted, unfinished=unfinished)

    async def find_resumable(self, fingerprint: str) -> str | None:
        return await self._run(self._file.find_resumable, fingerprint)

    async def delete_job(self, job_id: str) -> None:
        await self._run(self._file.delete_job, job_id)

    async def prune(self, older_than: float) -> list[str]:
        return await self._run(self._file.prune, older_than)

    async def lock_job(self, fingerprint: str, me: Holder) -> tuple[bool, Holder | None]:
        return await self._run(self._file.lock_job, fingerprint, me)

    async def renew_lock(self, fingerprint: str, token: str, until: float) -> bool:
        return await self._run(self._file.renew_lock, fingerprint, token, until)

    async def unlock_job(self, fingerprint: str, token: str) -> None:
        await self._run(self._file.unlock_job, fingerprint, token)

    async def close(self) -> None:
        await self._run(self._file.close)
        self._thread.shutdown(wait=False)

    async def _run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))


class _SqliteRegistry:
    """The registry table of a :class:`SqliteStore`, on the store's thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, network: str, source: str, role: str = "backup") -> Entry | None:
        return await self._store._run(self._store._file.registry_get, network, source, role)

    async def put(self, entry: Entry) -> Entry:
        return await self._store._run(self._store._file.registry_put, entry)

    async def forget(self, network: str, source: str, role: str = "backup") -> None:
        await self._store._run(self._store._file.registry_forget, network, source, role)

    async def entries(self) -> list[Entry]:
        return await self._store._run(self._store._file.registry_entries)

    async def in_role(self, network: str, role: str) -> list[Entry]:
        return await self._store._run(self._store._file.registry_in_role, network, role)

    async def counts(self, network: str, role: str) -> dict[str, int]:
        return await self._store._run(self._store._file.registry_counts, network, role)

    async def holds(self, network: str, canister: str, role: str) -> bool:
        return await self._store._run(self._store._file.registry_holds, network, canister, role)

    async def claim(self, network: str, source: str, role: str = "backup") -> Entry | None:
        return await self._store._run(self._store._file.registry_claim, network, source, role)


class _SqliteSpending:
    """The budgets' spending in a :class:`SqliteStore`, on the store's thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def spend(self, scope: str, period: int, cycles: int, budget: int) -> tuple[bool, int]:
        return await self._store._run(self._store._file.spend, scope, period, cycles, budget)

    async def spent(self, scope: str, period: int) -> int:
        return await self._store._run(self._store._file.spent, scope, period)


class _SqliteFleets:
    """The fleet member table of a :class:`SqliteStore`, on the store's thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def sync(
        self, fleet: str, network: str, members: Sequence[str], now: float
    ) -> Membership:
        file = self._store._file
        return await self._store._run(file.fleet_sync, fleet, network, list(members), now)

    async def due(
        self, fleet: str, network: str, round_id: str, now: float | None
    ) -> list[MemberRow]:
        return await self._store._run(self._store._file.fleet_due, fleet, network, round_id, now)

    async def finish(self, fleet: str, network: str, round_id: str, result: MemberResult) -> None:
        await self._store._run(self._store._file.fleet_finish, fleet, network, round_id, result)

    async def members(self, fleet: str, network: str | None = None) -> list[MemberRow]:
        return await self._store._run(self._store._file.fleet_members, fleet, network)

    async def fleets(self) -> list[str]:
        return await self._store._run(self._store._file.fleet_names)


class _Tx:
    """The connection inside a write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executescript_in_tx(self, script: str, version: int) -> None:
        # executescript() would COMMIT first; run the statements one by one instead.
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {int(version)}")


def _check_same_digest(db: _Tx, job_id: str, index: int, digest: bytes) -> None:
    row = db.execute(
        "SELECT digest FROM chunk_acks WHERE job_id = ? AND chunk = ?", (job_id, index)
    ).fetchone()
    if row is not None and bytes(row[0]) != digest:
        raise IntegrityError(
            f"job {job_id}: chunk {index} was acknowledged with digest {bytes(row[0]).hex()} "
            f"and now with {digest.hex()}; the image changed under the job. Nothing was "
            "recorded; restart the job"
        )


JobRow = Sequence[Any]


def job_summaries(
    rows: Sequence[JobRow],
    locked: Mapping[str, Holder],
    wanted: Collection[str] | None,
    decode: Callable[[str, bytes], JobState],
    *,
    unfinished: bool = False,
) -> list[JobSummary]:
    """``list_jobs`` from rows ``(id, state, created_at, updated_at, acked, fingerprint, phase)``.

    Rows come oldest first; the newest run of a fingerprint supersedes the older ones and
    alone shows the lock's holder.  Shared by every store.  Only the wanted phases'
    states are decoded: a fleet's backups ask for the few unfinished jobs among
    thousands of done ones, once per member.
    """
    summaries = []
    newest: dict[str, str] = {}  # fingerprint → id of its newest job (rows are oldest first)
    for r in rows:
        newest[str(r[5])] = str(r[0])
    for r in rows:
        phase = str(r[6])
        if (wanted is not None and phase not in wanted) or (
            unfinished and phase in TERMINAL_PHASES
        ):
            continue
        job_id, fingerprint = str(r[0]), str(r[5])
        state = decode(job_id, bytes(r[1]))
        summary = _summary(state, float(r[2]), float(r[3]), int(r[4]))
        summaries.append(
            replace(
                summary,
                fingerprint=fingerprint,
                holder=locked.get(fingerprint) if newest[fingerprint] == job_id else None,
                superseded=newest[fingerprint] != job_id,
            )
        )
    return summaries


def _summary(state: JobState, created_at: float, updated_at: float, acked: int) -> JobSummary:
    job = state.job
    return JobSummary(
        id=job.id,
        kind=job.kind,
        phase=state.phase,
        source=str(job.source),
        target=None if job.target is None else str(job.target),
        created_at=float(created_at),
        updated_at=float(updated_at),
        chunks_acked=int(acked),
        chunks_total=_chunks_total(state),
        error=state.error,
    )


def _chunks_total(state: JobState) -> int | None:
    # Kinds that copy chunks keep their count in ``detail["chunks_total"]``.
    total = state.detail.get("chunks_total")
    return total if isinstance(total, int) else None
