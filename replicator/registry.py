"""Which canister the orchestrator created for which source: the registry.

``replicator backup app`` without a target backs ``app`` up into *its*
backup canister: the one the registry names, or a new one that is recorded
here before anything else happens to it, so a crash between creating and
installing it cannot leave an orphan that a re-run would duplicate.

The registry lives in the checkpoint store (:attr:`replicator.checkpoints.Store.registry`;
in SQLite, its own table of the checkpoint file).  One row per (network,
source, role)::

    canister_registry(network, source, role, canister /* NULL until created */,
                      state /* requested | created | ready */,
                      request_ns /* cycles-ledger dedup time */, updated_at)

``requested``: a creation is under way; ``request_ns`` is the
``created_at_time`` every retry of the cycles-ledger call repeats, so the
ledger deduplicates it.  ``created``: the canister exists (code may be
missing).  ``ready``: installed, controllers checked.

The **warm pool** (:mod:`replicator.pool`) keeps backup canisters created
and installed ahead of need, under role ``pool`` and a source that is only
a key of its own (``pool-<request_ns>``).  :meth:`Registry.claim` gives the
oldest ready one to a source in one transaction — its pool row deleted, the
source's row written in state ``claimed`` (installed for no source yet: the
provisioner reinstalls it for its source) — so no pooled canister is given
to two sources, and one is never in no row at all.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from replicator.errors import CheckpointError

EntryState = Literal["requested", "created", "claimed", "ready"]
_STATES: tuple[EntryState, ...] = ("requested", "created", "claimed", "ready")
POOL_ROLE = "pool"

REGISTRY_TABLE = """
CREATE TABLE IF NOT EXISTS canister_registry (
    network    TEXT NOT NULL,
    source     TEXT NOT NULL,
    role       TEXT NOT NULL,
    canister   TEXT,
    state      TEXT NOT NULL,
    request_ns INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (network, source, role)
);
"""
# Schema 6: the pool counts and lists its rows, and a backup canister is
# recognised, without scanning the registry (10,000 members: 10,000 rows).
REGISTRY_INDEXES = """
CREATE INDEX IF NOT EXISTS canister_registry_by_role
    ON canister_registry (network, role, state, updated_at);
CREATE INDEX IF NOT EXISTS canister_registry_by_canister ON canister_registry (canister);
"""


@dataclass(frozen=True)
class Entry:
    network: str
    source: str  # canister id of the source
    role: str  # "backup"
    canister: str | None
    state: EntryState
    request_ns: int
    updated_at: float = 0.0


class Registry(Protocol):
    """Source → created canister, durable (part of the checkpoint store)."""

    async def get(self, network: str, source: str, role: str = "backup") -> Entry | None: ...

    async def put(self, entry: Entry) -> Entry:
        """Insert or replace the entry of (network, source, role); returns it stamped."""
        ...

    async def forget(self, network: str, source: str, role: str = "backup") -> None: ...

    async def entries(self) -> list[Entry]: ...

    async def in_role(self, network: str, role: str) -> list[Entry]:
        """The entries of ``role`` on ``network`` (an index look-up, not a scan)."""
        ...

    async def counts(self, network: str, role: str) -> dict[str, int]:
        """How many entries of ``role`` on ``network`` are in each state (counted by index)."""
        ...

    async def holds(self, network: str, canister: str, role: str) -> bool:
        """Is ``canister`` recorded under ``role`` on ``network`` (an index look-up)?"""
        ...

    async def claim(self, network: str, source: str, role: str = "backup") -> Entry | None:
        """Give the oldest ready pool canister of ``network`` to (``source``, ``role``).

        Atomic; ``None`` when the pool has none ready or the source has an entry already.
        """
        ...


class SqliteRegistryTable:
    """The registry's SQL on one SQLite connection (the caller holds the transaction)."""

    _COLUMNS = "network, source, role, canister, state, request_ns, updated_at"

    @classmethod
    def get(cls, db: sqlite3.Connection, network: str, source: str, role: str) -> Entry | None:
        row = db.execute(
            f"SELECT {cls._COLUMNS} FROM canister_registry"
            " WHERE network = ? AND source = ? AND role = ?",
            (network, source, role),
        ).fetchone()
        return None if row is None else _entry(row)

    @classmethod
    def put(cls, db: sqlite3.Connection, entry: Entry, now: float) -> Entry:
        stamped = replace(entry, updated_at=now)
        db.execute(
            f"INSERT INTO canister_registry ({cls._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
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

    @staticmethod
    def forget(db: sqlite3.Connection, network: str, source: str, role: str) -> None:
        db.execute(
            "DELETE FROM canister_registry WHERE network = ? AND source = ? AND role = ?",
            (network, source, role),
        )

    @classmethod
    def claim(
        cls, db: sqlite3.Connection, network: str, source: str, role: str, now: float
    ) -> Entry | None:
        if cls.get(db, network, source, role) is not None:
            return None
        row = db.execute(
            f"SELECT {cls._COLUMNS} FROM canister_registry WHERE network = ? AND role = ?"
            " AND state = 'ready' AND canister IS NOT NULL ORDER BY updated_at, source LIMIT 1",
            (network, POOL_ROLE),
        ).fetchone()
        if row is None:
            return None
        pooled = _entry(row)
        cls.forget(db, network, pooled.source, POOL_ROLE)
        claimed = Entry(network, source, role, pooled.canister, "claimed", pooled.request_ns)
        return cls.put(db, claimed, now)

    @classmethod
    def in_role(cls, db: sqlite3.Connection, network: str, role: str) -> list[Entry]:
        rows = db.execute(
            f"SELECT {cls._COLUMNS} FROM canister_registry WHERE network = ? AND role = ?"
            " ORDER BY state, updated_at, source",
            (network, role),
        ).fetchall()
        return [_entry(r) for r in rows]

    @staticmethod
    def counts(db: sqlite3.Connection, network: str, role: str) -> dict[str, int]:
        rows = db.execute(
            "SELECT state, COUNT(*) FROM canister_registry WHERE network = ? AND role = ?"
            " GROUP BY state",
            (network, role),
        ).fetchall()
        return {str(state): int(n) for state, n in rows}

    @staticmethod
    def holds(db: sqlite3.Connection, network: str, canister: str, role: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM canister_registry WHERE canister = ? AND network = ? AND role = ?"
            " LIMIT 1",
            (canister, network, role),
        ).fetchone()
        return row is not None

    @classmethod
    def entries(cls, db: sqlite3.Connection) -> list[Entry]:
        rows = db.execute(
            f"SELECT {cls._COLUMNS} FROM canister_registry ORDER BY network, source, role"
        ).fetchall()
        return [_entry(r) for r in rows]


def _entry(row: tuple[object, ...]) -> Entry:
    network, source, role, canister, state, request_ns, updated_at = row
    return Entry(
        network=str(network),
        source=str(source),
        role=str(role),
        canister=None if canister is None else str(canister),
        state=_state(str(state)),
        request_ns=int(str(request_ns)),
        updated_at=float(str(updated_at)),
    )


def _state(text: str) -> EntryState:
    for state in _STATES:
        if state == text:
            return state
    raise CheckpointError(f"the canister registry has an entry in unknown state {text!r}")


def entry_from_row(row: tuple[object, ...]) -> Entry:
    """An entry from a row of the registry's columns, in order (any store)."""
    return _entry(row)
