"""Durable checkpoints: one row per job, one row per acknowledged chunk.

The pump records a job's state after every transition (:meth:`Store.save`)
and every chunk once the *target* acknowledged it (:meth:`Store.ack_chunks`);
a resumed job loads both (:meth:`Store.load`) and continues.  Re-running the
same command finds the unfinished job by its fingerprint
(:meth:`Store.find_resumable`).

:class:`Store` is the protocol; :class:`SqliteStore` the embedded default
(stdlib ``sqlite3``).  PostgreSQL, for several orchestrators sharing a
fleet, implements the same protocol later.  The API is synchronous and
thread-safe: from asyncio, call it through ``asyncio.to_thread`` where a
commit's fsync must not stall the loop.

SQLite details:

- WAL journal with ``synchronous=FULL``: a commit returns only after the WAL
  is fsynced, so an acknowledged checkpoint survives a power cut; readers
  (``replicator status`` in another process) never block the writer.
- Writes take ``BEGIN IMMEDIATE`` and wait up to ``timeout`` seconds for
  another writer.
- Job states are msgpack (:meth:`JobState.to_payload`); chunk digests are
  plain BLOB columns.
- The schema version is ``PRAGMA user_version``; a newer version than this
  code knows is refused rather than misread.

Schema (version 1)::

    jobs(id TEXT PK, kind, fingerprint, phase, created_at REAL, updated_at REAL,
         state BLOB /* msgpack */)
    chunk_acks(job_id → jobs ON DELETE CASCADE, chunk INTEGER, digest BLOB,
               acked_at REAL, PK (job_id, chunk))
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from replicator import codec
from replicator.errors import CheckpointError, IntegrityError
from replicator.integrity import DIGEST_SIZE
from replicator.jobs import Job, JobState, Phase, new_state

SCHEMA_VERSION = 1

_SCHEMA = """
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
    phase: Phase
    source: str
    target: str | None
    created_at: float
    updated_at: float
    chunks_acked: int
    chunks_total: int | None  # unknown until the source offered an image
    error: str | None


class Store(Protocol):
    """Where checkpoints live.  Every method commits durably before returning."""

    def create_job(self, job: Job) -> JobState:
        """Record a new job; returns its pending state."""
        ...

    def save(self, state: JobState) -> float:
        """Record a job's new state; returns the commit time (Unix seconds)."""
        ...

    def ack_chunks(self, job_id: str, acks: Sequence[tuple[int, bytes]]) -> float:
        """Record chunks the target acknowledged, ``(index, sha256)``; returns the commit time.

        Re-acknowledging a chunk with the same digest is a no-op; with another
        digest it raises :class:`~replicator.errors.IntegrityError` and records nothing.
        """
        ...

    def reset_chunks(self, job_id: str) -> None:
        """Forget every acknowledged chunk of a job (its image changed)."""
        ...

    def load(self, job_id: str) -> Checkpoint:
        """The job's state and acknowledged chunks, read consistently."""
        ...

    def list_jobs(self, phases: Iterable[Phase] | None = None) -> list[JobSummary]:
        """Jobs, oldest first, optionally only those in ``phases``."""
        ...

    def find_resumable(self, fingerprint: str) -> str | None:
        """The newest unfinished job with this fingerprint (see ``Job.fingerprint``)."""
        ...

    def delete_job(self, job_id: str) -> None:
        """Forget a job and its chunks."""
        ...

    def close(self) -> None: ...


class SqliteStore:
    """The embedded :class:`Store` in one SQLite file (created if missing)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot open checkpoint store {self.path}: {exc}") from exc
        try:
            self._setup(timeout)
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes

    def create_job(self, job: Job) -> JobState:
        state = new_state(job)
        now = self._clock()
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO jobs (id, kind, fingerprint, phase, created_at, updated_at, state)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.kind.value,
                        job.fingerprint,
                        state.phase.value,
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
            cursor = db.execute(
                "UPDATE jobs SET phase = ?, updated_at = ?, state = ? WHERE id = ?",
                (state.phase.value, now, codec.pack(state.to_payload()), state.job.id),
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

    def list_jobs(self, phases: Iterable[Phase] | None = None) -> list[JobSummary]:
        wanted = None if phases is None else {Phase(p) for p in phases}
        with self._read() as db:
            rows = db.execute(
                "SELECT j.id, j.state, j.created_at, j.updated_at,"
                " (SELECT COUNT(*) FROM chunk_acks c WHERE c.job_id = j.id)"
                " FROM jobs j ORDER BY j.created_at, j.id"
            ).fetchall()
        summaries = [_summary(self._decode(r[0], r[1]), r[2], r[3], r[4]) for r in rows]
        return [s for s in summaries if wanted is None or s.phase in wanted]

    def find_resumable(self, fingerprint: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE fingerprint = ? AND phase != ?"
                " ORDER BY created_at DESC, id DESC LIMIT 1",
                (fingerprint, Phase.DONE.value),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- internals

    def _setup(self, timeout: float) -> None:
        db = self._db
        try:
            db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(
                f"{self.path} is not a usable checkpoint store ({exc}); use another file "
                "(--state PATH, or `checkpoints` in the config file)"
            ) from exc
        if mode.lower() != "wal":
            raise CheckpointError(
                f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the checkpoint "
                "store on a local file system"
            )
        if version == 0:
            with self._write() as tx:
                if int(tx.execute("PRAGMA user_version").fetchone()[0]) == 0:
                    tx.executescript_in_tx(_SCHEMA, SCHEMA_VERSION)
        elif version > SCHEMA_VERSION:
            raise CheckpointError(
                f"{self.path} was written by a newer replicator (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade replicator or use another checkpoint file"
            )

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction: the job row and its chunk rows come from one snapshot.
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _touch(self, db: _Tx, job_id: str, now: float) -> None:
        cursor = db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))
        if cursor.rowcount == 0:
            raise self._unknown(job_id)

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


class _Tx:
    """The connection inside a write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

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


def _summary(state: JobState, created_at: float, updated_at: float, acked: int) -> JobSummary:
    job = state.job
    return JobSummary(
        id=job.id,
        kind=job.kind.value,
        phase=state.phase,
        source=str(job.source),
        target=None if job.target is None else str(job.target),
        created_at=float(created_at),
        updated_at=float(updated_at),
        chunks_acked=int(acked),
        chunks_total=None if state.image is None else state.image.chunk_count,
        error=state.error,
    )
