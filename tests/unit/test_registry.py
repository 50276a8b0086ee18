"""The canister registry: durable, beside the checkpoints, schema untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from replicator.checkpoints import SCHEMA_VERSION, SqliteStore
from replicator.registry import Entry, Registry


def test_entries_survive_a_reopen_and_update_in_place(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    registry = Registry(path)
    registry.put(Entry("local", "src", "backup", None, "requested", 42))
    registry.put(Entry("local", "src", "backup", "bkyz2-fmaaa-aaaaa-qaaaq-cai", "created", 42))
    registry.close()
    again = Registry(path)
    entry = again.get("local", "src")
    assert entry is not None
    assert (entry.canister, entry.state, entry.request_ns) == (
        "bkyz2-fmaaa-aaaaa-qaaaq-cai",
        "created",
        42,
    )
    assert entry.updated_at > 0
    assert again.get("ic", "src") is None
    assert again.get("local", "src", "restore-1") is None
    again.forget("local", "src")
    assert again.entries() == []
    again.close()


def test_the_registry_lives_beside_the_checkpoints_without_touching_their_schema(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    store = SqliteStore(path)
    registry = Registry.beside(store)
    registry.put(Entry("ic", "a", "backup", "b", "ready", 1))
    registry.close()
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    reopened = SqliteStore(path)  # still a valid store
    assert reopened.list_jobs() == []
    reopened.close()
    assert Registry(path).get("ic", "a") is not None


def test_an_in_memory_registry_for_other_stores() -> None:
    registry = Registry(None)
    registry.put(Entry("local", "s", "backup", "c", "ready", 0))
    assert [e.canister for e in registry.entries()] == ["c"]
