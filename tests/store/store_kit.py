"""The store location the store suite runs against: a SQLite file or a PostgreSQL database.

A module of its own (not ``conftest``), so that the suite imports it by a
name no other test directory's ``conftest`` shadows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replicator.checkpoints import SqliteStore, Store
from replicator.pgstore import PostgresStore

Clock = Callable[[], float]


@dataclass
class StoreKit:
    """One store location; ``open()`` gives a store there (as a process would)."""

    name: str
    location: str  # a file path or a postgresql:// URL

    async def open(self, clock: Clock = time.time) -> Store:
        if self.name == "postgresql":
            return await PostgresStore.open(self.location, clock=clock)
        return SqliteStore(self.location, clock=clock)

    def table(self, name: str) -> str:
        return f"replicator_{name}" if self.name == "postgresql" else name

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` parameters and ``{jobs}``-style table names, committed."""
        names = {t: self.table(t) for t in ("jobs", "chunk_acks", "job_locks", "cycles_spent")}
        statement = statement.format(**names)
        if self.name == "postgresql":
            import psycopg

            with psycopg.connect(self.location, autocommit=True) as db:
                cursor = db.execute(statement.replace("?", "%s").encode(), params)
                return list(cursor.fetchall()) if cursor.description else []
        with sqlite3.connect(self.location) as db:
            return list(db.execute(statement, params).fetchall())
