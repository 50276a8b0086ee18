"""The checkpoint store on PostgreSQL: several orchestrators, one shared store.

:class:`PostgresStore` implements :class:`~replicator.checkpoints.Store` with
psycopg 3 (async, a small connection pool) with the semantics of
:class:`~replicator.checkpoints.SqliteStore` — the same test suite runs
against both (``tests/store``).  Selected by ``--state postgresql://…`` or
``[store] url`` (:func:`replicator.stores.open_configured_store`).  Every
method is one transaction; it commits before returning.

What differs from SQLite, and why:

- **Concurrency.** Many processes on many machines write at once.  A job's
  lock row is read ``FOR SHARE`` by every write of that job (the fence) and
  ``FOR UPDATE`` by a takeover, so a takeover and a write of the old holder
  never interleave: the old holder's write either lands before the takeover
  or is refused (:class:`~replicator.joblock.JobLocked`).  Budgets lock their
  period's row (``FOR UPDATE``), so processes never spend beyond a budget
  together.
- **Schema versions.** ``replicator_schema`` records each migration applied;
  :data:`MIGRATIONS` lists them in order, and :meth:`PostgresStore.open`
  applies the missing ones in one transaction under an advisory lock (three
  workers starting at once migrate once).  A database migrated by a newer
  replicator is refused with :class:`~replicator.errors.CheckpointError`.
- **The job queue.** Migration 2 is the schema of the queue library
  (procrastinate, pinned to one minor version: its schema is part of ours),
  which :mod:`replicator.workers` uses to share scheduled jobs between
  ``replicator serve`` workers.
- **Secrets.** The URL may carry a password; messages name the server with
  :func:`redact` (no password), never the URL as given.

Schema (version 7), every table prefixed ``replicator_`` beside the queue's
``procrastinate_*`` tables::

    replicator_schema(version PK, applied_at, applied_by)
    replicator_jobs(id PK, kind, fingerprint, phase, created_at, updated_at, state BYTEA)
    replicator_chunk_acks(job_id → jobs ON DELETE CASCADE, chunk, digest, acked_at)
    replicator_canister_registry(network, source, role, canister, state, request_ns, updated_at)
    replicator_cycles_spent(scope, period, cycles, updated_at)
    replicator_job_locks(fingerprint PK, token, pid, host, since, lease_until, what)
    replicator_schedule_runs(name, tick, outcome, worker, started_at, finished_at,
                             PK (name, tick))  /* version 3: one row per scheduled tick run */
    replicator_fleet_members(...)  /* version 4: the fleets' member table, as SQLite's;
                                      version 5 adds its subnet column */
    replicator_rate_buckets(scope PK, tokens, stamp)   /* version 6: shared rates */
    replicator_rate_leases(scope, at, tokens, worker)  /* version 6: their lease log */
    /* version 7: the registry indexed by (network, role, state, updated_at) and by
       canister, as SQLite's schema 6: the warm pool counts without a scan */

Migration 3 adds ``replicator_schedule_runs``, the record that a scheduled
job's tick ran (:meth:`PostgresStore.record_run`): a worker taking a tick
over first asks whether it already ran, so a tick runs once however often
the queue hands it out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from replicator import __version__, codec
from replicator.checkpoints import Checkpoint, JobSummary, job_summaries
from replicator.errors import CheckpointError, IntegrityError, ReplicatorError, UsageError
from replicator.fleetstore import (
    FLEET_COLUMNS,
    FleetTable,
    MemberResult,
    MemberRow,
    Membership,
    MemberState,
    member_row,
)
from replicator.integrity import DIGEST_SIZE
from replicator.job import Job, JobState, Phase, new_state
from replicator.joblock import Holder, JobLocked
from replicator.limits import BucketRow, Lease, RateLeases, Spending, lease_tokens
from replicator.registry import POOL_ROLE, Entry, Registry, entry_from_row

# psycopg is an optional extra (``postgresql``), imported where a store opens:
# its connection and pool are typed loosely here.
_Connection = Any  # psycopg.AsyncConnection
_Pool = Any  # psycopg_pool.AsyncConnectionPool

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")
_KEEP_SPENDING = 90 * 86400.0  # as SQLite: spending of long-ended periods is dropped
_MIGRATION_LOCK = 0x7265706C  # advisory lock id ("repl") held while migrating
_CONNECT_TIMEOUT = 10.0

_STORE_TABLES = """
CREATE TABLE replicator_jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    phase       TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    state       BYTEA NOT NULL
);
CREATE INDEX replicator_jobs_by_fingerprint ON replicator_jobs (fingerprint, created_at);
CREATE TABLE replicator_chunk_acks (
    job_id   TEXT NOT NULL REFERENCES replicator_jobs (id) ON DELETE CASCADE,
    chunk    BIGINT NOT NULL,
    digest   BYTEA NOT NULL,
    acked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, chunk)
);
CREATE TABLE replicator_canister_registry (
    network    TEXT NOT NULL,
    source     TEXT NOT NULL,
    role       TEXT NOT NULL,
    canister   TEXT,
    state      TEXT NOT NULL,
    request_ns BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (network, source, role)
);
CREATE TABLE replicator_cycles_spent (
    scope      TEXT NOT NULL,
    period     BIGINT NOT NULL,
    cycles     NUMERIC NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, period)
);
CREATE TABLE replicator_job_locks (
    fingerprint TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    since       DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL,
    what        TEXT NOT NULL
);
"""


def _queue_schema() -> str:
    # Read from the installed library, whose version the package pins (pyproject).
    from procrastinate.schema import SchemaManager

    return str(SchemaManager.get_schema())


# One row per run of a scheduled job's tick, written by the worker that ran it.
_RUNS_TABLE = """
CREATE TABLE replicator_schedule_runs (
    name        TEXT NOT NULL,
    tick        BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, tick)
);
"""

# The fleets' member table (:mod:`replicator.fleetstore`), as in the SQLite store.
_FLEETS_TABLE = """
CREATE TABLE replicator_fleet_members (
    fleet       TEXT NOT NULL,
    network     TEXT NOT NULL,
    member      TEXT NOT NULL,
    state       TEXT NOT NULL,
    added_at    DOUBLE PRECISION NOT NULL,
    seen_at     DOUBLE PRECISION NOT NULL,
    gone_at     DOUBLE PRECISION,
    next_due    DOUBLE PRECISION NOT NULL,
    last_run_at DOUBLE PRECISION,
    last_ok_at  DOUBLE PRECISION,
    failures    INTEGER NOT NULL DEFAULT 0,
    runs        INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    error_class TEXT,
    round       TEXT,
    backup      TEXT,
    PRIMARY KEY (fleet, network, member)
);
CREATE INDEX replicator_fleet_members_due ON replicator_fleet_members (fleet, network, next_due);
"""

# The shared rates' token buckets (:class:`~replicator.limits.SharedRate`): one
# row per bucket, its tokens at ``stamp`` (the server's clock, so that workers
# on machines whose clocks differ share one time), and a log of the leases
# granted (kept an hour: who took how much, and what the benchmark measures).
_RATE_TABLES = """
CREATE TABLE replicator_rate_buckets (
    scope  TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    stamp  DOUBLE PRECISION NOT NULL
);
CREATE TABLE replicator_rate_leases (
    scope  TEXT NOT NULL,
    at     DOUBLE PRECISION NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    worker TEXT NOT NULL
);
CREATE INDEX replicator_rate_leases_by_time ON replicator_rate_leases (scope, at);
"""
_KEEP_LEASES = 3600.0  # seconds of lease log kept
LEASE_RETRY = 0.05  # seconds before asking a bucket again that vanished

_REGISTRY_INDEXES = """
CREATE INDEX replicator_canister_registry_by_role
    ON replicator_canister_registry (network, role, state, updated_at);
CREATE INDEX replicator_canister_registry_by_canister
    ON replicator_canister_registry (canister);
"""

# Migration N (1-based) brings a database from version N - 1 to N.  Append only.
MIGRATIONS: tuple[Callable[[], str], ...] = (
    lambda: _STORE_TABLES,
    _queue_schema,
    lambda: _RUNS_TABLE,
    lambda: _FLEETS_TABLE,
    # 5: each member's subnet, cached for the per-subnet limits (as SQLite's schema 5).
    lambda: "ALTER TABLE replicator_fleet_members ADD COLUMN subnet TEXT;",
    # 6: the token buckets of the rates shared by all workers, and their lease log.
    lambda: _RATE_TABLES,
    # 7: the registry by role and by canister (as SQLite's schema 6).
    lambda: _REGISTRY_INDEXES,
)
SCHEMA_VERSION = len(MIGRATIONS)


def is_url(location: object) -> bool:
    """Does ``location`` (a ``--state`` value) name a PostgreSQL server?"""
    return isinstance(location, str) and location.startswith(SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = urllib.parse.quote(parts.username or "", safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True)
class ScheduledRun:
    """One tick of a scheduled job that a worker ran (``replicator_schedule_runs``)."""

    name: str
    tick: int  # Unix seconds of the scheduled start
    outcome: str  # done | failed
    worker: str
    started_at: float
    finished_at: float


class PostgresStore:
    """The shared :class:`~replicator.checkpoints.Store` on a PostgreSQL server.

    Use :meth:`open` (it connects and migrates); ``pool_size`` bounds the
    connections this process keeps.
    """

    def __init__(
        self,
        url: str,
        pool: _Pool,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self._pool = pool
        self._clock = clock
        self._tokens: set[str] = set()  # job locks this store's process holds
        self._registry = _PgRegistry(self)
        self._spending = _PgSpending(self)
        self._fleets = _PgFleets(self)
        self._leases = _PgLeases(self)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        pool_size: int = 4,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> PostgresStore:
        """Connect to ``url``, apply missing migrations, refuse a newer schema."""
        pool = _pool(url, pool_size, connect_timeout)
        where = redact(url)
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            await pool.close()
            raise _unreachable(where, exc) from None
        store = cls(url, pool, clock=clock)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def __aenter__(self) -> PostgresStore:
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
    def fleets(self) -> FleetTable:
        """The fleets' member table (:mod:`replicator.fleetstore`), shared by all workers."""
        return self._fleets

    @property
    def rate_leases(self) -> RateLeases:
        """The token buckets of the rates every worker shares (``[limits] global_*``)."""
        return self._leases

    async def close(self) -> None:
        await self._pool.close()

    async def schema_version(self) -> int:
        """The migrations applied to the database (0: none)."""
        async with self._tx() as db:
            return await _version(db)

    # -- writes

    async def create_job(self, job: Job) -> JobState:
        state = new_state(job)
        now = self._clock()
        from psycopg import errors as pg_errors

        async with self._tx() as db:
            await self._fence(db, job.fingerprint, now)
            try:
                await db.execute(
                    "INSERT INTO replicator_jobs"
                    " (id, kind, fingerprint, phase, created_at, updated_at, state)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
            except pg_errors.UniqueViolation as exc:
                raise CheckpointError(
                    f"a job with id {job.id} already exists in {self.where}"
                ) from exc
        return state

    async def save(self, state: JobState) -> float:
        now = self._clock()
        async with self._tx() as db:
            await self._fence(db, state.job.fingerprint, now)
            cursor = await db.execute(
                "UPDATE replicator_jobs SET phase = %s, updated_at = %s, state = %s WHERE id = %s",
                (str(state.phase), now, codec.pack(state.to_payload()), state.job.id),
            )
            if cursor.rowcount == 0:
                raise self._unknown(state.job.id)
        return now

    async def ack_chunks(self, job_id: str, acks: Sequence[tuple[int, bytes]]) -> float:
        acks = list(acks)
        for index, digest in acks:
            if index < 0 or len(digest) != DIGEST_SIZE:
                raise ValueError(f"bad chunk ack ({index}, {len(digest)}-byte digest)")
        now = self._clock()
        async with self._tx() as db:
            await self._touch(db, job_id, now)
            if acks:
                await self._insert_acks(db, job_id, acks, now)
        return now

    async def _insert_acks(
        self, db: _Connection, job_id: str, acks: list[tuple[int, bytes]], now: float
    ) -> None:
        # One statement for the batch; chunks already there must carry the same digest.
        chunks = [i for i, _ in acks]
        digests = [bytes(d) for _, d in acks]
        cursor = await db.execute(
            "INSERT INTO replicator_chunk_acks (job_id, chunk, digest, acked_at)"
            " SELECT %s, c, d, %s FROM unnest(%s::bigint[], %s::bytea[]) AS t (c, d)"
            " ON CONFLICT (job_id, chunk) DO NOTHING RETURNING chunk",
            (job_id, now, chunks, digests),
        )
        inserted = {int(r[0]) for r in await cursor.fetchall()}
        again = {i: bytes(d) for i, d in acks if i not in inserted}
        if not again:
            return
        cursor = await db.execute(
            "SELECT chunk, digest FROM replicator_chunk_acks WHERE job_id = %s AND chunk = ANY(%s)",
            (job_id, list(again)),
        )
        for chunk, stored in await cursor.fetchall():
            if bytes(stored) != again[int(chunk)]:
                raise IntegrityError(
                    f"job {job_id}: chunk {chunk} was acknowledged with digest "
                    f"{bytes(stored).hex()} and now with {again[int(chunk)].hex()}; the image "
                    "changed under the job. Nothing was recorded; restart the job"
                )

    async def reset_chunks(self, job_id: str) -> None:
        async with self._tx() as db:
            await self._touch(db, job_id, self._clock())
            await db.execute("DELETE FROM replicator_chunk_acks WHERE job_id = %s", (job_id,))

    async def delete_job(self, job_id: str) -> None:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM replicator_jobs WHERE id = %s", (job_id,))
            if cursor.rowcount == 0:
                raise self._unknown(job_id)

    async def prune(self, older_than: float) -> list[str]:
        now = self._clock()
        async with self._tx() as db:
            locked = await _live_locks(db, now)
            cursor = await db.execute(
                "SELECT j.id, j.fingerprint FROM replicator_jobs j WHERE j.updated_at < %s"
                " AND (j.phase = %s OR EXISTS (SELECT 1 FROM replicator_jobs n"
                " WHERE n.fingerprint = j.fingerprint AND (n.created_at > j.created_at"
                " OR (n.created_at = j.created_at AND n.id > j.id))))",
                (now - older_than, Phase.DONE.value),
            )
            rows = await cursor.fetchall()
            pruned = [str(r[0]) for r in rows if str(r[1]) not in locked]
            if pruned:
                await db.execute("DELETE FROM replicator_jobs WHERE id = ANY(%s)", (pruned,))
            await db.execute(
                "DELETE FROM replicator_cycles_spent WHERE period < %s", (now - _KEEP_SPENDING,)
            )
        return pruned

    # -- reads

    async def load(self, job_id: str) -> Checkpoint:
        async with self._tx() as db:  # one snapshot for the job and its chunks
            await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor = await db.execute(
                "SELECT state, updated_at FROM replicator_jobs WHERE id = %s", (job_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                raise self._unknown(job_id)
            cursor = await db.execute(
                "SELECT chunk, digest FROM replicator_chunk_acks WHERE job_id = %s ORDER BY chunk",
                (job_id,),
            )
            acks = await cursor.fetchall()
        return Checkpoint(
            state=self._decode(job_id, bytes(row[0])),
            acked={int(i): bytes(d) for i, d in acks},
            updated_at=float(row[1]),
        )

    async def list_jobs(
        self, phases: Iterable[str] | None = None, *, unfinished: bool = False
    ) -> list[JobSummary]:
        wanted = None if phases is None else {str(p) for p in phases}
        async with self._tx() as db:
            await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor = await db.execute(
                "SELECT j.id, j.state, j.created_at, j.updated_at,"
                " (SELECT COUNT(*) FROM replicator_chunk_acks c WHERE c.job_id = j.id),"
                " j.fingerprint, j.phase FROM replicator_jobs j ORDER BY j.created_at, j.id"
            )
            rows = await cursor.fetchall()
            locked = await _live_locks(db, self._clock())
        return job_summaries(rows, locked, wanted, self._decode, unfinished=unfinished)

    async def find_resumable(self, fingerprint: str) -> str | None:
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT id FROM replicator_jobs WHERE fingerprint = %s AND phase != %s"
                " ORDER BY created_at DESC, id DESC LIMIT 1",
                (fingerprint, Phase.DONE.value),
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def ping(self) -> None:
        """One round trip to the server (``/readyz``)."""
        async with self._tx() as db:
            await db.execute("SELECT 1")

    # -- scheduled runs (serve workers, replicator.workers)

    async def record_run(self, run: ScheduledRun, lock: str) -> None:
        """Record that a tick ran; :class:`JobLocked` if another live process holds ``lock``."""
        async with self._tx() as db:
            await self._fence(db, lock, self._clock())
            await db.execute(
                "INSERT INTO replicator_schedule_runs"
                " (name, tick, outcome, worker, started_at, finished_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, tick) DO NOTHING",
                (run.name, run.tick, run.outcome, run.worker, run.started_at, run.finished_at),
            )

    async def runs(self, name: str | None = None) -> list[ScheduledRun]:
        """Recorded runs (of ``name``, or all), oldest tick first."""
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT name, tick, outcome, worker, started_at, finished_at"
                " FROM replicator_schedule_runs WHERE %s::text IS NULL OR name = %s"
                " ORDER BY tick, name",
                (name, name),
            )
            rows = await cursor.fetchall()
        return [ScheduledRun(str(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4], r[5]) for r in rows]

    async def run_recorded(self, name: str, tick: int) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT 1 FROM replicator_schedule_runs WHERE name = %s AND tick = %s",
                (name, tick),
            )
            return await cursor.fetchone() is not None

    async def last_successes(self) -> dict[str, float]:
        """Per scheduled job, when its last successful run ended (every worker's runs)."""
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT name, MAX(finished_at) FROM replicator_schedule_runs"
                " WHERE outcome = 'done' GROUP BY name"
            )
            return {str(r[0]): float(r[1]) for r in await cursor.fetchall()}

    async def lock_holders(self, prefix: str = "") -> dict[str, Holder]:
        """Every job lock whose key starts with ``prefix``, live or not."""
        async with self._tx() as db:
            cursor = await db.execute(
                f"SELECT fingerprint, {_LOCK_COLUMNS} FROM replicator_job_locks"
                " WHERE starts_with(fingerprint, %s)",
                (prefix,),
            )
            return {str(r[0]): _holder(r[1:]) for r in await cursor.fetchall()}

    # -- job locks

    async def lock_job(self, fingerprint: str, me: Holder) -> tuple[bool, Holder | None]:
        now = self._clock()
        async with self._tx() as db:
            taken, other = await _take_lock(db, fingerprint, me, now)
        if taken:
            self._tokens.add(me.token)
        return taken, other

    async def renew_lock(self, fingerprint: str, token: str, until: float) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE replicator_job_locks SET lease_until = %s"
                " WHERE fingerprint = %s AND token = %s",
                (until, fingerprint, token),
            )
            return bool(cursor.rowcount > 0)

    async def unlock_job(self, fingerprint: str, token: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "DELETE FROM replicator_job_locks WHERE fingerprint = %s AND token = %s",
                (fingerprint, token),
            )
        self._tokens.discard(token)

    # -- internals

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Connection]:
        """A connection inside one transaction, the server's errors as the user's."""
        import psycopg

        try:
            async with self._pool.connection() as db, db.transaction():
                yield db
        except ReplicatorError:
            raise
        except psycopg.OperationalError as exc:
            raise _unreachable(self.where, exc) from None
        except psycopg.Error as exc:
            raise CheckpointError(
                f"the checkpoint store {self.where} failed: {exc}".rstrip()
            ) from exc
        except TimeoutError as exc:  # the pool had no connection for us in time
            raise _unreachable(self.where, exc) from None

    async def _migrate(self) -> None:
        async with self._tx() as db:
            # The lock first: workers starting together on an empty database would
            # otherwise race to create the schema table itself.
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await db.execute(_SCHEMA_TABLE)
            version = await _version(db)
            if version > SCHEMA_VERSION:
                raise CheckpointError(
                    f"the checkpoint store {self.where} was migrated by a newer replicator "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade replicator "
                    "on this machine, or use another database"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                log.info("%s: applying schema migration %d", self.where, number)
                await db.execute(MIGRATIONS[number - 1]().encode())
                await db.execute(
                    "INSERT INTO replicator_schema (version, applied_at, applied_by)"
                    " VALUES (%s, now(), %s)",
                    (number, f"replicator {__version__} on {socket.gethostname()}"),
                )

    async def _fence(self, db: _Connection, fingerprint: str, now: float) -> None:
        # Only the run holding a job's lock records its state; a run that lost it stops.
        cursor = await db.execute(
            f"SELECT {_LOCK_COLUMNS} FROM replicator_job_locks WHERE fingerprint = %s FOR SHARE",
            (fingerprint,),
        )
        row = await cursor.fetchone()
        if row is None:
            return
        holder = _holder(row)
        if holder.token not in self._tokens and holder.gone(now) is None:
            raise JobLocked(holder.what or "this job", holder)

    async def _touch(self, db: _Connection, job_id: str, now: float) -> None:
        cursor = await db.execute(
            "SELECT fingerprint FROM replicator_jobs WHERE id = %s", (job_id,)
        )
        row = await cursor.fetchone()
        if row is None:
            raise self._unknown(job_id)
        await self._fence(db, str(row[0]), now)
        await db.execute("UPDATE replicator_jobs SET updated_at = %s WHERE id = %s", (now, job_id))

    def _unknown(self, job_id: str) -> CheckpointError:
        return CheckpointError(
            f"no job {job_id!r} in {self.where}; `replicator jobs` lists the known jobs"
        )

    def _decode(self, job_id: str, blob: bytes) -> JobState:
        try:
            return JobState.from_payload(codec.unpack_map(blob, f"job {job_id}"))
        except (codec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the checkpoint of job {job_id} in {self.where} is unreadable ({exc!r}); "
                "delete the job and start it again"
            ) from exc


_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS replicator_schema (
    version    INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL,
    applied_by TEXT NOT NULL
)
"""
_LOCK_COLUMNS = "token, pid, host, since, lease_until, what"


def _pool(url: str, size: int, timeout: float) -> _Pool:
    try:
        from psycopg_pool import AsyncConnectionPool
    except ImportError:
        raise UsageError(
            "a PostgreSQL checkpoint store needs the postgresql extra: "
            "pip install 'ic-replicator[postgresql]'"
        ) from None
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max(1, size),
        open=False,
        timeout=timeout,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
        check=AsyncConnectionPool.check_connection,  # a restarted server: reconnect
        name="replicator-store",
    )


def _unreachable(where: str, exc: BaseException) -> CheckpointError:
    text = str(exc).strip() or type(exc).__name__
    return CheckpointError(
        f"cannot reach the checkpoint store {where} ({text}); check that the PostgreSQL "
        "server runs and that the URL, user and password are right (--state, or [store] url "
        "in the config file)"
    )


async def _version(db: _Connection) -> int:
    cursor = await db.execute("SELECT to_regclass('replicator_schema') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await db.execute("SELECT COALESCE(MAX(version), 0) FROM replicator_schema")
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


def _holder(row: Sequence[Any]) -> Holder:
    token, pid, host, since, lease_until, what = row
    return Holder(str(token), int(pid), str(host), float(since), float(lease_until), str(what))


async def _take_lock(
    db: _Connection, fingerprint: str, me: Holder, now: float
) -> tuple[bool, Holder | None]:
    values = (fingerprint, me.token, me.pid, me.host, me.since, me.lease_until, me.what)
    for _ in range(3):  # a row released between the insert and the select: insert again
        cursor = await db.execute(
            f"INSERT INTO replicator_job_locks (fingerprint, {_LOCK_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING"
            " RETURNING token",
            values,
        )
        if await cursor.fetchone() is not None:
            return True, None
        cursor = await db.execute(
            f"SELECT {_LOCK_COLUMNS} FROM replicator_job_locks WHERE fingerprint = %s FOR UPDATE",
            (fingerprint,),
        )
        row = await cursor.fetchone()
        if row is None:
            continue
        current = _holder(row)
        if current.token != me.token and current.gone(now) is None:
            return False, current
        await db.execute(
            "UPDATE replicator_job_locks SET token = %s, pid = %s, host = %s, since = %s,"
            " lease_until = %s, what = %s WHERE fingerprint = %s",
            (*values[1:], fingerprint),
        )
        return True, current
    raise CheckpointError(f"the lock of {me.what or fingerprint} kept changing; re-run")


async def _live_locks(db: _Connection, now: float) -> dict[str, Holder]:
    cursor = await db.execute(f"SELECT fingerprint, {_LOCK_COLUMNS} FROM replicator_job_locks")
    holders = {str(r[0]): _holder(r[1:]) for r in await cursor.fetchall()}
    return {f: h for f, h in holders.items() if h.gone(now) is None}


class _PgRegistry:
    """The registry table of a :class:`PostgresStore`."""

    _COLUMNS = "network, source, role, canister, state, request_ns, updated_at"

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def get(self, network: str, source: str, role: str = "backup") -> Entry | None:
        async with self._store._tx() as db:
            cursor = await db.execute(
                f"SELECT {self._COLUMNS} FROM replicator_canister_registry"
                " WHERE network = %s AND source = %s AND role = %s",
                (network, source, role),
            )
            row = await cursor.fetchone()
        return None if row is None else entry_from_row(tuple(row))

    async def put(self, entry: Entry) -> Entry:
        stamped = replace(entry, updated_at=self._store._clock())
        async with self._store._tx() as db:
            await db.execute(
                f"INSERT INTO replicator_canister_registry ({self._COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (network, source, role) DO UPDATE SET canister = excluded.canister,"
                " state = excluded.state, request_ns = excluded.request_ns,"
                " updated_at = excluded.updated_at",
                (
                    stamped.network,
                    stamped.source,
                    stamped.role,
                    stamped.canister,
                    stamped.state,
                    stamped.request_ns,
                    stamped.updated_at,
                ),
            )
        return stamped

    async def forget(self, network: str, source: str, role: str = "backup") -> None:
        async with self._store._tx() as db:
            await db.execute(
                "DELETE FROM replicator_canister_registry"
                " WHERE network = %s AND source = %s AND role = %s",
                (network, source, role),
            )

    async def entries(self) -> list[Entry]:
        async with self._store._tx() as db:
            cursor = await db.execute(
                f"SELECT {self._COLUMNS} FROM replicator_canister_registry"
                " ORDER BY network, source, role"
            )
            rows = await cursor.fetchall()
        return [entry_from_row(tuple(r)) for r in rows]

    async def in_role(self, network: str, role: str) -> list[Entry]:
        async with self._store._tx() as db:
            cursor = await db.execute(
                f"SELECT {self._COLUMNS} FROM replicator_canister_registry"
                " WHERE network = %s AND role = %s ORDER BY state, updated_at, source",
                (network, role),
            )
            rows = await cursor.fetchall()
        return [entry_from_row(tuple(r)) for r in rows]

    async def counts(self, network: str, role: str) -> dict[str, int]:
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT state, COUNT(*) FROM replicator_canister_registry"
                " WHERE network = %s AND role = %s GROUP BY state",
                (network, role),
            )
            rows = await cursor.fetchall()
        return {str(state): int(n) for state, n in rows}

    async def holds(self, network: str, canister: str, role: str) -> bool:
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT 1 FROM replicator_canister_registry"
                " WHERE canister = %s AND network = %s AND role = %s LIMIT 1",
                (canister, network, role),
            )
            return await cursor.fetchone() is not None

    async def claim(self, network: str, source: str, role: str = "backup") -> Entry | None:
        """As SQLite's: one transaction; the pool row is locked (workers claiming at
        once take different canisters, never the same one)."""
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT 1 FROM replicator_canister_registry"
                " WHERE network = %s AND source = %s AND role = %s",
                (network, source, role),
            )
            if await cursor.fetchone() is not None:
                return None
            cursor = await db.execute(
                f"SELECT {self._COLUMNS} FROM replicator_canister_registry"
                " WHERE network = %s AND role = %s AND state = 'ready' AND canister IS NOT NULL"
                " ORDER BY updated_at, source LIMIT 1 FOR UPDATE SKIP LOCKED",
                (network, POOL_ROLE),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            pooled = entry_from_row(tuple(row))
            await db.execute(
                "DELETE FROM replicator_canister_registry"
                " WHERE network = %s AND source = %s AND role = %s",
                (network, pooled.source, POOL_ROLE),
            )
            claimed = Entry(
                network,
                source,
                role,
                pooled.canister,
                "claimed",
                pooled.request_ns,
                updated_at=self._store._clock(),
            )
            await db.execute(
                f"INSERT INTO replicator_canister_registry ({self._COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    claimed.network,
                    claimed.source,
                    claimed.role,
                    claimed.canister,
                    claimed.state,
                    claimed.request_ns,
                    claimed.updated_at,
                ),
            )
        return claimed


class _PgSpending:
    """The budgets' spending in a :class:`PostgresStore`: one locked row per period."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def spend(self, scope: str, period: int, cycles: int, budget: int) -> tuple[bool, int]:
        now = self._store._clock()
        async with self._store._tx() as db:
            await db.execute(
                "INSERT INTO replicator_cycles_spent (scope, period, cycles, updated_at)"
                " VALUES (%s, %s, 0, %s) ON CONFLICT (scope, period) DO NOTHING",
                (scope, period, now),
            )
            cursor = await db.execute(
                "SELECT cycles FROM replicator_cycles_spent WHERE scope = %s AND period = %s"
                " FOR UPDATE",
                (scope, period),
            )
            row = await cursor.fetchone()
            total = 0 if row is None else int(row[0])
            if total + cycles > budget:
                return False, total
            await db.execute(
                "UPDATE replicator_cycles_spent SET cycles = cycles + %s, updated_at = %s"
                " WHERE scope = %s AND period = %s",
                (cycles, now, scope, period),
            )
            return True, total + cycles

    async def spent(self, scope: str, period: int) -> int:
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT cycles FROM replicator_cycles_spent WHERE scope = %s AND period = %s",
                (scope, period),
            )
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])


class _PgLeases:
    """The shared rates' buckets: a lease locks its bucket's row for one short transaction."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._worker = f"{os.getpid()}@{socket.gethostname()}"

    async def lease(self, scope: str, want: float, rate: float, capacity: float) -> Lease:
        async with self._store._tx() as db:
            await db.execute(
                "INSERT INTO replicator_rate_buckets (scope, tokens, stamp)"
                " VALUES (%s, 0, extract(epoch FROM clock_timestamp()))"
                " ON CONFLICT (scope) DO NOTHING",
                (scope,),
            )
            # The server's clock read after the row lock: leases are ordered by it.
            cursor = await db.execute(
                "SELECT tokens, stamp, extract(epoch FROM clock_timestamp())"
                " FROM replicator_rate_buckets WHERE scope = %s FOR UPDATE",
                (scope,),
            )
            row = await cursor.fetchone()
            if row is None:  # deleted by hand between the two statements: an empty bucket
                return Lease(0.0, LEASE_RETRY)
            tokens, stamp, now = (float(v) for v in row)
            lease, after = lease_tokens(BucketRow(tokens, stamp), now, want, rate, capacity)
            await db.execute(
                "UPDATE replicator_rate_buckets SET tokens = %s, stamp = %s WHERE scope = %s",
                (after.tokens, after.stamp, scope),
            )
            if lease.granted > 0:
                await db.execute(
                    "INSERT INTO replicator_rate_leases (scope, at, tokens, worker)"
                    " VALUES (%s, %s, %s, %s)",
                    (scope, now, lease.granted, self._worker),
                )
                await db.execute(
                    "DELETE FROM replicator_rate_leases WHERE scope = %s AND at < %s",
                    (scope, now - _KEEP_LEASES),
                )
            return lease


class _PgFleets:
    """The fleets' member table: the statements of the SQLite store's, on PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def sync(
        self, fleet: str, network: str, members: Sequence[str], now: float
    ) -> Membership:
        listed = set(members)
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT member, gone_at FROM replicator_fleet_members"
                " WHERE fleet = %s AND network = %s FOR UPDATE",
                (fleet, network),
            )
            known = {str(r[0]): r[1] for r in await cursor.fetchall()}
            added = sorted(m for m in listed if m not in known)
            returned = [m for m in listed if m in known and known[m] is not None]
            gone = [m for m, g in known.items() if m not in listed and g is None]
            async with db.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO replicator_fleet_members ({FLEET_COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, NULL, %s, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL,"
                    " NULL) ON CONFLICT DO NOTHING",
                    [(fleet, network, m, MemberState.NEVER.value, now, now, now) for m in added],
                )
                await cur.executemany(
                    "UPDATE replicator_fleet_members SET seen_at = %s, gone_at = NULL"
                    " WHERE fleet = %s AND network = %s AND member = %s",
                    [(now, fleet, network, m) for m in listed if m in known],
                )
                await cur.executemany(
                    "UPDATE replicator_fleet_members SET gone_at = %s"
                    " WHERE fleet = %s AND network = %s AND member = %s",
                    [(now, fleet, network, m) for m in gone],
                )
        return Membership(len(added), len(returned), len(gone), len(listed))

    async def due(
        self, fleet: str, network: str, round_id: str, now: float | None
    ) -> list[MemberRow]:
        async with self._store._tx() as db:
            cursor = await db.execute(
                f"SELECT {FLEET_COLUMNS} FROM replicator_fleet_members"
                " WHERE fleet = %s AND network = %s AND gone_at IS NULL"
                " AND (round IS NULL OR round != %s) AND next_due <= %s"
                " ORDER BY last_ok_at IS NOT NULL, last_ok_at, next_due, member",
                (fleet, network, round_id, float("inf") if now is None else now),
            )
            return [member_row(r) for r in await cursor.fetchall()]

    async def finish(self, fleet: str, network: str, round_id: str, result: MemberResult) -> None:
        ok = result.ok
        async with self._store._tx() as db:
            await db.execute(
                "UPDATE replicator_fleet_members SET state = %s, last_run_at = %s,"
                " last_ok_at = CASE WHEN %s THEN %s ELSE last_ok_at END,"
                " failures = CASE WHEN %s THEN 0 ELSE failures + 1 END, runs = runs + 1,"
                " last_error = %s, error_class = %s, round = %s, next_due = %s,"
                " backup = COALESCE(%s, backup), subnet = COALESCE(%s, subnet)"
                " WHERE fleet = %s AND network = %s AND member = %s",
                (
                    (MemberState.OK if ok else MemberState.FAILING).value,
                    result.at,
                    ok,
                    result.at,
                    ok,
                    None if ok else result.error,
                    None if ok else result.error_class,
                    round_id,
                    result.next_due,
                    result.backup,
                    result.subnet,
                    fleet,
                    network,
                    result.member,
                ),
            )

    async def members(self, fleet: str, network: str | None = None) -> list[MemberRow]:
        where, params = (
            ("fleet = %s", (fleet,))
            if network is None
            else (
                "fleet = %s AND network = %s",
                (fleet, network),
            )
        )
        async with self._store._tx() as db:
            cursor = await db.execute(
                f"SELECT {FLEET_COLUMNS} FROM replicator_fleet_members WHERE {where}"
                " ORDER BY network, member",
                params,
            )
            return [member_row(r) for r in await cursor.fetchall()]

    async def fleets(self) -> list[str]:
        async with self._store._tx() as db:
            cursor = await db.execute(
                "SELECT DISTINCT fleet FROM replicator_fleet_members ORDER BY fleet"
            )
            return [str(r[0]) for r in await cursor.fetchall()]
