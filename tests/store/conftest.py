"""The store suite runs every test against each store: SQLite and PostgreSQL (a real server).

``kit`` opens stores at one location (a file, or a fresh database) and reaches
under them for the tests that tamper with what is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_kit import StoreKit

from replicator.checkpoints import Store


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
