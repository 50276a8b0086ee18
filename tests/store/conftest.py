"""The store suite runs every test against each store: SQLite and PostgreSQL (a real server).

``kit`` opens stores at one location (a file, or a fresh database) and reaches
under them for the tests that tamper with what is stored.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(params=["sqlite", "postgresql"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    if request.param == "postgresql":
        yield StoreKit("postgresql", request.getfixturevalue("pg_url"))
    else:
        yield StoreKit("sqlite", str(tmp_path / "state" / "checkpoints.sqlite3"))


@pytest.fixture
async def store(kit: StoreKit) -> AsyncIterator[Store]:
    opened = await kit.open(clock=lambda: 1000.0)
    try:
        yield opened
    finally:
        await opened.close()
