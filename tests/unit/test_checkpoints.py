"""The SQLite checkpoint store."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from replicator.checkpoints import SCHEMA_VERSION, SqliteStore, Store
from replicator.errors import CheckpointError
from replicator.flows.image.machine import (
    advance_copy,
)
from replicator.integrity import ImageInfo
from replicator.job import CanisterRef, Job, JobState, new_job_id
from replicator.machine import Step

APP = CanisterRef("plfju-2iaaa-fake4-aaaaa-cai", "local")
BACKUP = CanisterRef("xmf3k-3iaaa-fake5-aaaaa-cai", "local")
IMAGE = ImageInfo(snapshot_id=3, size=5000, chunk_size=1000, digest=b"\x07" * 32)


def _d(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "state" / "checkpoints.sqlite3", clock=lambda: 1000.0) as s:
        yield s


def _job() -> Job:
    return Job("backup", APP, BACKUP, options={"route": "direct"}, id=new_job_id("backup"))


def advance(state: JobState, event: object) -> Step:
    return advance_copy(state, event)


async def test_sqlite_store_implements_the_protocol(store: SqliteStore) -> None:
    checker: Store = store
    assert checker is store


async def test_wal_mode_lets_readers_in_while_a_writer_holds_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    async with SqliteStore(path) as writer_store:
        job = _job()
        await writer_store.create_job(job)
        await writer_store.ack_chunks(job.id, [(0, _d(0))])
    raw = sqlite3.connect(path, isolation_level=None)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute(
        "INSERT INTO chunk_acks (job_id, chunk, digest, acked_at) VALUES (?, 1, ?, 0)",
        (job.id, _d(1)),
    )
    async with SqliteStore(path, timeout=0.5) as reader:
        assert (await reader.load(job.id)).acked == {
            0: _d(0)
        }  # not blocked, sees only committed rows
        assert len(await reader.list_jobs()) == 1
    raw.execute("COMMIT")
    raw.close()


async def test_commits_are_durable_without_a_clean_close(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    script = textwrap.dedent(
        f"""
        import asyncio, hashlib, os
        from replicator.checkpoints import SqliteStore
        from replicator.job import CanisterRef, Job
        async def main():
            store = SqliteStore({str(path)!r})
            job = Job("backup", CanisterRef({APP.canister_id!r}, "local"),
                      CanisterRef({BACKUP.canister_id!r}, "local"), id="crashy")
            await store.create_job(job)
            await store.ack_chunks("crashy", [(7, hashlib.sha256(b"7").digest())])
            os._exit(0)  # no close, no atexit: only what was committed survives
        asyncio.run(main())
        """
    )
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], check=True, timeout=60)
    async with SqliteStore(path) as store:
        assert (await store.load("crashy")).acked == {7: hashlib.sha256(b"7").digest()}


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    await SqliteStore(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(CheckpointError, match="newer replicator"):
        SqliteStore(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CheckpointError, match="not a usable checkpoint store"):
        SqliteStore(path)


async def test_a_slow_commit_does_not_stall_the_event_loop(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync-heavy writes run on the store's thread: a ticker on the loop keeps its pace."""
    job = _job()
    state = await store.create_job(job)
    file = store._file
    original = file.save

    def slow_save(state: JobState) -> float:
        time.sleep(0.5)  # a disk that takes half a second to fsync
        return original(state)

    monkeypatch.setattr(file, "save", slow_save)
    delays: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            before = loop.time()
            await asyncio.sleep(0.02)
            delays.append(loop.time() - before - 0.02)

    await asyncio.gather(ticker(), store.save(state))
    assert max(delays) < 0.2, f"the loop stalled for {max(delays):.3f} s"
