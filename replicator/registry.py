"""Which canister the orchestrator created for which source: the registry.

``replicator backup app`` without a target backs ``app`` up into *its*
backup canister: the one the registry names, or a new one that is recorded
here before anything else happens to it, so a crash between creating and
installing it cannot leave an orphan that a re-run would duplicate.

The registry lives in the checkpoint file (its own table, created if
missing; the checkpoint schema and its version are untouched, so older and
newer replicators keep reading the file).  One row per (network, source,
role)::

    canister_registry(network, source, role, canister /* NULL until created */,
                      state /* requested | created | ready */,
                      request_ns /* cycles-ledger dedup time */, updated_at)

``requested``: a creation is under way; ``request_ns`` is the
``created_at_time`` every retry of the cycles-ledger call repeats, so the
ledger deduplicates it.  ``created``: the canister exists (code may be
missing).  ``ready``: installed, controllers checked.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from replicator.checkpoints import SqliteStore, Store
from replicator.errors import CheckpointError

EntryState = Literal["requested", "created", "ready"]
_STATES: tuple[EntryState, ...] = ("requested", "created", "ready")

_TABLE = """
CREATE TABLE IF NOT EXISTS canister_registry (
    network    TEXT NOT NULL,
    source     TEXT NOT NULL,
    role       TEXT NOT NULL,
    canister   TEXT,
    state      TEXT NOT NULL,
    request_ns INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (network, source, role)
)
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


class Registry:
    """Source → created canister, durable in SQLite (``path=None``: in memory)."""

    def __init__(self, path: str | os.PathLike[str] | None, *, timeout: float = 30.0) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                ":memory:" if self.path is None else self.path,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self.path is not None:
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(_TABLE)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot use the canister registry in {path}: {exc}") from exc

    @classmethod
    def beside(cls, store: Store) -> Registry:
        """The registry in the checkpoint store's file (in memory for other stores)."""
        return cls(store.path if isinstance(store, SqliteStore) else None)

    def get(self, network: str, source: str, role: str = "backup") -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT network, source, role, canister, state, request_ns, updated_at"
                " FROM canister_registry WHERE network = ? AND source = ? AND role = ?",
                (network, source, role),
            ).fetchone()
        return None if row is None else _entry(row)

    def put(self, entry: Entry) -> Entry:
        stamped = Entry(
            entry.network,
            entry.source,
            entry.role,
            entry.canister,
            entry.state,
            entry.request_ns,
            time.time(),
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO canister_registry"
                " (network, source, role, canister, state, request_ns, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
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

    def forget(self, network: str, source: str, role: str = "backup") -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM canister_registry WHERE network = ? AND source = ? AND role = ?",
                (network, source, role),
            )

    def entries(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT network, source, role, canister, state, request_ns, updated_at"
                " FROM canister_registry ORDER BY network, source, role"
            ).fetchall()
        return [_entry(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _entry(row: tuple[object, ...]) -> Entry:
    network, source, role, canister, state, request_ns, updated_at = row
    if state not in _STATES:
        raise CheckpointError(f"the canister registry has an entry in unknown state {state!r}")
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
    raise CheckpointError(f"unknown registry state {text!r}")
