"""PostgreSQL store schema: migrations applied once at start, a newer schema refused."""

from __future__ import annotations

import asyncio

import pytest
from workers_harness import sql

from replicator.errors import CheckpointError
from replicator.pgstore import SCHEMA_VERSION, PostgresStore


async def test_workers_starting_together_on_an_empty_database_migrate_once(pg_url: str) -> None:
    # Each open is a process starting: they race for the empty database.
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    try:
        versions = sql(pg_url, "SELECT version FROM replicator_schema ORDER BY version")
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
        for store in stores:
            assert await store.schema_version() == SCHEMA_VERSION
    finally:
        for store in stores:
            await store.close()


async def test_a_store_migrated_by_a_newer_replicator_is_refused(pg_url: str) -> None:
    await (await PostgresStore.open(pg_url)).close()
    sql(
        pg_url,
        "INSERT INTO replicator_schema (version, applied_at, applied_by) "
        "VALUES (%s, now(), 'replicator 99')",
        (SCHEMA_VERSION + 1,),
    )
    with pytest.raises(CheckpointError, match=r"newer replicator .*upgrade replicator"):
        await PostgresStore.open(pg_url)
