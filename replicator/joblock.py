"""One run of a job at a time, across processes: a lock per job in the checkpoint store.

Two processes that run the same job (same kind, source and target, hence
the same :attr:`~replicator.job.Job.fingerprint`) against the same store
would both copy, and whichever saved last would decide what the checkpoint
says.  So a run first takes the job's lock (:func:`holding`), in the store,
and gives it back when it ends::

    async with holding(store, job.fingerprint, what="backup of app") as taken:
        ...                       # taken.note: a takeover worth telling the user

The lock names its holder — process id, host, since when — and carries a
*lease*: the holder renews it every ``renew`` seconds while it runs, so a
holder that stopped renewing (killed, its machine gone) loses it after
``lease`` seconds.  A second run of the same job

- exits at once with :class:`JobLocked` (exit code 75, "try again later"),
  naming the holder, while the holder is alive;
- takes the lock over, with a note, when the holder's process is gone on
  this host (a crash, ``kill -9``) or its lease expired (another host).

The store refuses writes to a job whose lock another live holder has
(:meth:`replicator.checkpoints.Store.save`), so a holder that lost its lock
— suspended beyond its lease, then taken over — cannot overwrite what the
new holder recorded: its run stops instead.

A process id can be reused after its process ended; a lock whose pid now
belongs to an unrelated process is taken over when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from replicator.errors import EXIT_TEMPORARY, ReplicatorError

log = logging.getLogger(__name__)

DEFAULT_LEASE = 120.0  # seconds a holder that stopped renewing keeps the lock
DEFAULT_RENEW = 30.0  # seconds between renewals

LOCK_TABLE = """
CREATE TABLE IF NOT EXISTS job_locks (
    fingerprint TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    since       REAL NOT NULL,
    lease_until REAL NOT NULL,
    what        TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Holder:
    """Who holds (or asks for) a job's lock."""

    token: str  # unique per run: tells this run's lock from an earlier one of the same pid
    pid: int
    host: str
    since: float  # Unix seconds
    lease_until: float
    what: str = ""  # the job, for messages: "backup of a@local → b@local"

    @classmethod
    def me(cls, now: float, lease: float, what: str = "") -> Holder:
        return cls(secrets.token_hex(8), os.getpid(), socket.gethostname(), now, now + lease, what)

    def __str__(self) -> str:
        since = dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} on host {self.host} (since {since})"

    def gone(self, now: float) -> str | None:
        """Why this holder no longer holds its lock, or ``None`` while it may still run."""
        if self.lease_until < now:
            return "its lease expired (the process stopped renewing it)"
        if self.host == socket.gethostname() and not _alive(self.pid):
            return "its process is gone"
        return None


class JobLocked(ReplicatorError):
    """Another live process runs the job now."""

    exit_code = EXIT_TEMPORARY

    def __init__(self, what: str, holder: Holder) -> None:
        super().__init__(
            f"{what} is already running: {holder} holds its lock in the checkpoint store. "
            "Wait for that run to finish (or stop it), then re-run the same command; a lock "
            "whose process died is taken over automatically"
        )
        self.holder = holder


@dataclass(frozen=True)
class Taken:
    """A lock this run holds."""

    holder: Holder
    note: str | None = None  # set when it was taken over from a dead holder


class LockStore(Protocol):
    """The lock operations of a checkpoint store (atomic each)."""

    async def lock_job(self, fingerprint: str, me: Holder) -> tuple[bool, Holder | None]:
        """Take the lock: ``(True, previous dead holder or None)`` or ``(False, holder)``."""
        ...

    async def renew_lock(self, fingerprint: str, token: str, until: float) -> bool:
        """Extend the lease; ``False`` if the lock is no longer ours."""
        ...

    async def unlock_job(self, fingerprint: str, token: str) -> None:
        """Give the lock back (nothing if it is no longer ours)."""
        ...


@contextlib.asynccontextmanager
async def holding(
    store: LockStore,
    fingerprint: str,
    *,
    what: str,
    lease: float = DEFAULT_LEASE,
    renew: float = DEFAULT_RENEW,
) -> AsyncIterator[Taken]:
    """Hold the job's lock while the body runs; :class:`JobLocked` if another run has it."""
    me = Holder.me(time.time(), lease, what)
    taken, other = await store.lock_job(fingerprint, me)
    if not taken:
        assert other is not None
        raise JobLocked(what, other)
    note = None
    if other is not None:
        why = other.gone(time.time()) or "it was released"
        note = f"took over the lock of {other}: {why}"
        log.warning("%s: %s", what, note)
    renewing = asyncio.create_task(_renew(store, fingerprint, me.token, lease, renew, what))
    try:
        yield Taken(me, note)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        await asyncio.shield(_release(store, fingerprint, me.token))


async def _renew(
    store: LockStore, fingerprint: str, token: str, lease: float, every: float, what: str
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            if not await store.renew_lock(fingerprint, token, time.time() + lease):
                log.error(
                    "%s: another process took the job's lock over; this run's writes "
                    "are refused from now on",
                    what,
                )
                return
        except Exception as exc:  # a busy store: the next renewal tries again
            log.warning("%s: could not renew the job's lock: %s", what, exc)


async def _release(store: LockStore, fingerprint: str, token: str) -> None:
    try:
        await store.unlock_job(fingerprint, token)
    except Exception as exc:  # the lease runs out on its own
        log.warning("could not release a job lock: %s", exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


# ----------------------------------------------------------------- SQLite


class SqliteLockTable:
    """The lock table's SQL on one SQLite connection (the caller holds the transaction)."""

    _COLUMNS = "token, pid, host, since, lease_until, what"

    @classmethod
    def holder(cls, db: sqlite3.Connection, fingerprint: str) -> Holder | None:
        row = db.execute(
            f"SELECT {cls._COLUMNS} FROM job_locks WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return None if row is None else _holder(row)

    @classmethod
    def take(
        cls, db: sqlite3.Connection, fingerprint: str, me: Holder, now: float
    ) -> tuple[bool, Holder | None]:
        current = cls.holder(db, fingerprint)
        if current is not None and current.token != me.token and current.gone(now) is None:
            return False, current
        db.execute(
            f"INSERT OR REPLACE INTO job_locks (fingerprint, {cls._COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (fingerprint, me.token, me.pid, me.host, me.since, me.lease_until, me.what),
        )
        return True, current

    @staticmethod
    def renew(db: sqlite3.Connection, fingerprint: str, token: str, until: float) -> bool:
        cursor = db.execute(
            "UPDATE job_locks SET lease_until = ? WHERE fingerprint = ? AND token = ?",
            (until, fingerprint, token),
        )
        return cursor.rowcount > 0

    @staticmethod
    def release(db: sqlite3.Connection, fingerprint: str, token: str) -> None:
        db.execute(
            "DELETE FROM job_locks WHERE fingerprint = ? AND token = ?", (fingerprint, token)
        )

    @classmethod
    def live(cls, db: sqlite3.Connection, now: float) -> dict[str, Holder]:
        """Every lock whose holder may still run, by fingerprint."""
        rows = db.execute(f"SELECT fingerprint, {cls._COLUMNS} FROM job_locks").fetchall()
        holders = {str(r[0]): _holder(r[1:]) for r in rows}
        return {f: h for f, h in holders.items() if h.gone(now) is None}

    @classmethod
    def foreign_holder(
        cls, db: sqlite3.Connection, fingerprint: str, mine: Collection[str], now: float
    ) -> Holder | None:
        """A live holder of the lock that is not one of ``mine`` (tokens), if any."""
        holder = cls.holder(db, fingerprint)
        if holder is None or holder.token in mine or holder.gone(now) is not None:
            return None
        return holder


def _holder(row: Sequence[object]) -> Holder:
    token, pid, host, since, lease_until, what = row
    return Holder(
        token=str(token),
        pid=int(str(pid)),
        host=str(host),
        since=float(str(since)),
        lease_until=float(str(lease_until)),
        what=str(what),
    )
