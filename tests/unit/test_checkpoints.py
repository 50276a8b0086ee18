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
from replicator.errors import CheckpointError, IntegrityError
from replicator.flows.image.machine import (
    ChunksDone,
    Committed,
    SourceReady,
    TargetReady,
    Verified,
    advance_copy,
)
from replicator.integrity import ImageInfo
from replicator.job import ArchiveRef, CanisterRef, Job, JobState, Phase, new_job_id
from replicator.machine import Start, Step

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


async def test_create_save_load_round_trip(store: SqliteStore) -> None:
    job = _job()
    state = await store.create_job(job)
    assert state.phase == Phase.PENDING
    for event in (Start(), SourceReady(IMAGE), TargetReady(9)):
        state = advance(state, event).state
        assert await store.save(state) == 1000.0
    loaded = await store.load(job.id)
    assert loaded.state == state
    assert loaded.acked == {}
    assert loaded.updated_at == 1000.0
    with pytest.raises(CheckpointError, match="already exists"):
        await store.create_job(job)


async def test_chunk_acks_are_idempotent_and_refuse_a_changed_digest(store: SqliteStore) -> None:
    job = _job()
    await store.create_job(job)
    await store.ack_chunks(job.id, [(0, _d(0)), (1, _d(1))])
    await store.ack_chunks(job.id, [(1, _d(1)), (2, _d(2))])  # 1 again: fine
    with pytest.raises(IntegrityError, match="chunk 2"):
        await store.ack_chunks(job.id, [(3, _d(3)), (2, _d(99))])
    # the failing batch recorded nothing, not even chunk 3
    assert (await store.load(job.id)).acked == {0: _d(0), 1: _d(1), 2: _d(2)}
    await store.reset_chunks(job.id)
    assert (await store.load(job.id)).acked == {}


async def test_unknown_jobs_and_bad_acks_are_errors(store: SqliteStore) -> None:
    with pytest.raises(CheckpointError, match="no job 'nope'"):
        await store.load("nope")
    with pytest.raises(CheckpointError, match="no job"):
        await store.ack_chunks("nope", [(0, _d(0))])
    with pytest.raises(CheckpointError, match="no job"):
        await store.delete_job("nope")
    job = _job()
    await store.create_job(job)
    with pytest.raises(ValueError, match="bad chunk ack"):
        await store.ack_chunks(job.id, [(0, b"short")])


async def test_list_and_find_resumable(store: SqliteStore) -> None:
    first, second = _job(), _job()
    other = Job("archive-export", APP, ArchiveRef("/x.icra"), id="export-1")
    for job in (first, second, other):
        await store.create_job(job)
    loaded = (await store.load(second.id)).state
    state = advance(advance(loaded, Start()).state, SourceReady(IMAGE)).state
    await store.save(state)
    await store.ack_chunks(second.id, [(0, _d(0)), (4, _d(4))])
    summaries = {s.id: s for s in await store.list_jobs()}
    assert summaries[second.id].phase == Phase.PREPARING
    assert summaries[second.id].chunks_acked == 2
    assert summaries[second.id].chunks_total == 5
    assert summaries[first.id].chunks_total is None
    assert summaries[other.id].target == "file:/x.icra"
    assert [s.id for s in await store.list_jobs([Phase.PREPARING])] == [second.id]
    # both backup jobs share a fingerprint; either is resumable, the store picks one
    assert await store.find_resumable(first.fingerprint) in {first.id, second.id}
    assert await store.find_resumable(other.fingerprint) == other.id
    await store.delete_job(first.id)
    assert await store.find_resumable(first.fingerprint) == second.id
    done = advance(state, TargetReady(1)).state
    for event in (ChunksDone(b"\x07" * 32), Committed(), Verified(b"\x07" * 32)):
        done = advance(done, event).state
    await store.save(done)
    assert await store.find_resumable(first.fingerprint) is None


async def test_delete_removes_chunk_rows(store: SqliteStore, tmp_path: Path) -> None:
    job = _job()
    await store.create_job(job)
    await store.ack_chunks(job.id, [(i, _d(i)) for i in range(5)])
    await store.delete_job(job.id)
    raw = sqlite3.connect(store.path)
    assert raw.execute("SELECT COUNT(*) FROM chunk_acks").fetchone() == (0,)
    raw.close()


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


async def test_concurrent_writers_are_serialised(store: SqliteStore) -> None:
    job = _job()
    await store.create_job(job)

    async def ack_range(start: int) -> None:
        for i in range(start, start + 25):
            await store.ack_chunks(job.id, [(i, _d(i))])

    await asyncio.gather(*(ack_range(k * 25) for k in range(4)))
    assert len((await store.load(job.id)).acked) == 100


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


async def test_an_unreadable_state_names_the_job(store: SqliteStore) -> None:
    job = _job()
    await store.create_job(job)
    raw = sqlite3.connect(store.path)
    raw.execute("UPDATE jobs SET state = ? WHERE id = ?", (b"\xc1garbage", job.id))
    raw.commit()
    raw.close()
    with pytest.raises(CheckpointError, match=f"checkpoint of job {job.id}"):
        await store.load(job.id)


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
