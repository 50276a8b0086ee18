"""The canister registry: durable, in the checkpoint store, migrated from schema 1 files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from replicator.checkpoints import SCHEMA_VERSION, SqliteStore
from replicator.codec import pack
from replicator.registry import REGISTRY_TABLE


async def test_a_schema_1_file_is_migrated_keeping_jobs_and_registry(tmp_path: Path) -> None:
    """A file written by the previous release: its registry table and job payloads survive."""
    path = tmp_path / "checkpoints.sqlite3"
    await SqliteStore(path).close()
    old_state = {
        "job": {
            "id": "backup-old",
            "kind": "backup",
            "source": {"canister": "aaaaa-aa", "network": "local"},
            "target": {"canister": "plfju-2iaaa-fake4-aaaaa-cai", "network": "local"},
            "options": {},
        },
        "phase": "copying",
        "image": {"snapshot_id": 3, "size": 5000, "chunk_size": 1000, "digest": b"\x07" * 32},
        "import_id": 9,
        "error": None,
        "exit_code": None,
        "starts": 1,
    }
    with sqlite3.connect(path) as db:  # shape it like a schema 1 file
        db.execute("DROP TABLE canister_registry")
        db.execute(REGISTRY_TABLE)
        db.execute("INSERT INTO canister_registry VALUES ('ic', 'a', 'backup', 'b', 'ready', 1, 0)")
        db.execute(
            "INSERT INTO jobs VALUES ('backup-old', 'backup', 'f', 'copying', 0, 0, ?)",
            (pack(old_state),),
        )
        db.execute("PRAGMA user_version = 1")
    async with SqliteStore(path) as store:
        assert (await store.registry.get("ic", "a")) is not None
        state = (await store.load("backup-old")).state
        assert state.detail["import_id"] == 9
        assert [s.chunks_total for s in await store.list_jobs()] == [5]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"cycles_spent", "job_locks"} <= tables


async def test_a_schema_5_file_gains_the_registry_indexes_and_the_pool_counts_by_index(
    tmp_path: Path,
) -> None:
    """10,000 backup rows and a pool of 3: counting and listing the pool read its rows only."""
    path = tmp_path / "checkpoints.sqlite3"
    await SqliteStore(path).close()
    with sqlite3.connect(path) as db:  # a schema 5 file: no indexes on the registry
        db.execute("DROP INDEX canister_registry_by_role")
        db.execute("DROP INDEX canister_registry_by_canister")
        db.executemany(
            "INSERT INTO canister_registry VALUES ('local', ?, 'backup', ?, 'ready', 1, 0)",
            [(f"m{i}", f"b{i}") for i in range(10_000)],
        )
        db.executemany(
            "INSERT INTO canister_registry VALUES ('local', ?, 'pool', ?, ?, 1, 0)",
            [("pool-1", "p1", "ready"), ("pool-2", "p2", "ready"), ("pool-3", None, "requested")],
        )
        db.execute("PRAGMA user_version = 5")
    async with SqliteStore(path) as store:
        reg = store.registry
        assert await reg.counts("local", "pool") == {"ready": 2, "requested": 1}
        assert [e.source for e in await reg.in_role("local", "pool")] == [
            "pool-1",
            "pool-2",
            "pool-3",
        ]
        assert await reg.holds("local", "b9999", "backup")
        assert not await reg.holds("local", "p1", "backup")
        assert not await reg.holds("ic", "b1", "backup")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6

        def plan(sql: str, *args: str) -> str:
            rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            return " ".join(str(r[-1]) for r in rows)

        counting = plan(
            "SELECT state, COUNT(*) FROM canister_registry WHERE network = ? AND role = ?"
            " GROUP BY state",
            "local",
            "pool",
        )
        assert "USING COVERING INDEX canister_registry_by_role" in counting
        holding = plan(
            "SELECT 1 FROM canister_registry WHERE canister = ? AND network = ? AND role = ?",
            "b1",
            "local",
            "backup",
        )
        assert "USING INDEX canister_registry_by_canister" in holding
