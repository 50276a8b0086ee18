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
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"cycles_spent", "job_locks"} <= tables
