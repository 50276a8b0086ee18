"""The SQLite store's files: private whatever the umask, a damaged file named with the way out.

Budgets, job locks and pruning are the same for every store: ``tests/store``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.checkpoints import SqliteStore
from replicator.errors import CheckpointError
from replicator.flows.image.machine import (
    ChunksDone,
    Committed,
    SourceReady,
    TargetReady,
    Verified,
    advance_copy,
)
from replicator.integrity import ImageInfo
from replicator.job import CanisterRef, Job, JobState, Phase, new_job_id
from replicator.machine import Start

APP = CanisterRef("sppxf-mqaaa-fake2-aaaaa-cai", "local")  # made-up ids
BACKUP = CanisterRef("kipf3-nqaaa-fake3-aaaaa-cai", "local")
IMAGE = ImageInfo(snapshot_id=3, size=5000, chunk_size=1000, digest=b"\x07" * 32)
DAY = 86400


def _job() -> Job:
    return Job("backup", APP, BACKUP, id=new_job_id("backup"))


def _done(job: Job) -> JobState:
    state = advance_copy(JobState(job), Start()).state
    for event in (
        SourceReady(IMAGE),
        TargetReady(1),
        ChunksDone(IMAGE.digest or b""),
        Committed(),
        Verified(IMAGE.digest or b""),
    ):
        state = advance_copy(state, event).state
    assert state.phase == Phase.DONE
    return state


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0)  # files would be world-writable if the store left it to the umask
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ files


@pytest.mark.usefixtures("loose_umask")
async def test_store_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "checkpoints.sqlite3"
    async with SqliteStore(path) as store:
        await store.create_job(_job())
        sides = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in sides)  # WAL mode: both exist while the store is open
        assert [_mode(p) for p in (path, *sides)] == [0o600, 0o600, 0o600]
    assert _mode(path.parent) == 0o700


@pytest.mark.usefixtures("loose_umask")
async def test_an_existing_loose_store_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    await SqliteStore(path).close()
    path.chmod(0o666)
    async with SqliteStore(path) as store:
        await store.create_job(_job())
        assert _mode(path) == 0o600
        assert _mode(path.with_name(path.name + "-wal")) == 0o600


async def test_a_malformed_store_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    async with SqliteStore(path) as store:
        for _ in range(40):  # enough rows for several pages
            job = _job()
            await store.create_job(job)
            await store.ack_chunks(
                job.id, [(i, hashlib.sha256(bytes([i])).digest()) for i in range(50)]
            )
    _damage_pages(path)
    with pytest.raises(CheckpointError) as info:
        async with SqliteStore(path) as store:
            await store.list_jobs()
    text = str(info.value)
    assert "malformed" in text
    assert str(path) in text
    assert "mv " in text  # what to do
    assert ".recover" in text


def _damage_pages(path: Path) -> None:
    """Overwrite the middle of the file (b-tree pages, not the header) with garbage."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    for offset in range(page, len(data) - page, page):
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
