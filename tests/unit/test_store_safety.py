"""The checkpoint store keeps what must outlive a process: private files, budgets, job locks.

Locks are tested with real processes: a child holds a job's lock, the test
tries to run the same job, kills the child with SIGKILL and takes over.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
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
from replicator.joblock import Holder, JobLocked, holding
from replicator.limits import CallSpec, CyclesBudget, Direct
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


# ------------------------------------------------------------------ budgets


async def test_spending_is_kept_in_the_store_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    at = time.time()
    async with SqliteStore(path) as store:
        budget = CyclesBudget(Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at)
        await budget.call(_spec(70), _ok)
    async with SqliteStore(path) as store:  # a restart: the same period, the same budget
        budget = CyclesBudget(Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at)
        assert await budget.refresh() == 30
        with pytest.raises(Exception, match="would exceed the cycles budget"):
            await budget.call(_spec(31), _ok)
        tomorrow = CyclesBudget(
            Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at + DAY
        )
        assert await tomorrow.refresh() == 100


def test_two_processes_never_spend_beyond_the_budget_together(tmp_path: Path) -> None:
    """Four stores (as four processes would) spend from one budget at once."""
    path = tmp_path / "checkpoints.sqlite3"
    asyncio.run(SqliteStore(path).close())
    granted: list[int] = []

    def spender() -> None:
        async def run() -> None:
            async with SqliteStore(path) as store:
                for _ in range(30):
                    added, _total = await store.spending.spend("ic", 0, 7, 500)
                    if added:
                        granted.append(7)

        asyncio.run(run())

    threads = [threading.Thread(target=spender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 497  # 71 grants of 7: as many as fit, and not one more

    async def spent() -> int:
        async with SqliteStore(path) as store:
            return await store.spending.spent("ic", 0)

    assert asyncio.run(spent()) == 497


# ------------------------------------------------------------------ locks

_HOLDER = """
import asyncio, sys
from replicator.checkpoints import SqliteStore
from replicator.joblock import holding

async def main() -> None:
    async with SqliteStore(sys.argv[1]) as store:
        async with holding(store, sys.argv[2], what="the backup job under test"):
            print("holding", flush=True)
            await asyncio.sleep(600)

asyncio.run(main())
"""


def _hold_in_a_child(path: Path, fingerprint: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(path), fingerprint],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "holding"
    return child


async def test_a_second_process_cannot_run_a_held_job_and_takes_over_a_dead_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    job = _job()
    async with SqliteStore(path) as store:
        state = await store.create_job(job)
    child = _hold_in_a_child(path, job.fingerprint)
    try:
        async with SqliteStore(path) as store:
            with pytest.raises(JobLocked) as info:
                async with holding(store, job.fingerprint, what="the backup job"):
                    pytest.fail("ran a job another process holds")
            message = str(info.value)
            assert f"pid {child.pid} on host {socket.gethostname()} (since " in message
            assert info.value.exit_code == 75
            # the store refuses what the holder alone may record
            with pytest.raises(JobLocked):
                await store.save(state)
            with pytest.raises(JobLocked):
                await store.ack_chunks(job.id, [(0, hashlib.sha256(b"0").digest())])
            summary = (await store.list_jobs())[0]
            assert summary.holder is not None
            assert summary.holder.pid == child.pid
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            async with holding(store, job.fingerprint, what="the backup job") as taken:
                assert taken.note is not None
                assert f"pid {child.pid}" in taken.note
                assert "its process is gone" in taken.note
                await store.save(state)  # ours now
            await store.save(state)  # released: nobody holds it
    finally:
        child.kill()
        child.wait(30)
        assert child.stdout is not None
        child.stdout.close()


async def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "c.sqlite3") as store:
        far = Holder("t0ken", 1, "another-host", time.time() - 600, time.time() - 1, "the job")
        assert await store.lock_job("fp", far) == (True, None)
        store._file._tokens.clear()  # as if that holder were another process
        async with holding(store, "fp", what="the job") as taken:
            assert taken.note is not None
            assert "another-host" in taken.note
            assert "lease expired" in taken.note


async def test_a_lock_is_released_when_the_run_is_cancelled(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "c.sqlite3") as store:
        entered = asyncio.Event()

        async def run() -> None:
            async with holding(store, "fp", what="the job"):
                entered.set()
                await asyncio.sleep(600)

        task = asyncio.create_task(run())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with holding(store, "fp", what="the job") as taken:
            assert taken.note is None  # released cleanly, nothing to take over


# ------------------------------------------------------------------ pruning


async def test_prune_forgets_old_finished_jobs_only(tmp_path: Path) -> None:
    now = [1_000_000.0]
    async with SqliteStore(tmp_path / "c.sqlite3", clock=lambda: now[0]) as store:
        old_done, older, superseded = _job(), _job(), _job()
        newer = Job("backup", APP, BACKUP, id="backup-newer")  # same command as `superseded`
        for job in (old_done, older, superseded):
            await store.create_job(job)
        other = Job("backup", BACKUP, APP, id="backup-other")
        await store.create_job(other)
        await store.save(_done(old_done))
        await store.ack_chunks(old_done.id, [(0, hashlib.sha256(b"0").digest())])
        now[0] += 1
        await store.create_job(newer)
        now[0] += 40 * DAY
        recent = Job("backup", BACKUP, APP, id="backup-recent")
        await store.create_job(recent)
        await store.save(_done(recent))
        listed = {s.id: s for s in await store.list_jobs()}
        assert listed[superseded.id].superseded  # a newer run of the same command exists
        assert not listed[newer.id].superseded
        pruned = await store.prune(30 * DAY)
        # done and old, or superseded and old; the unfinished newest run stays
        assert set(pruned) == {old_done.id, older.id, superseded.id, other.id}
        assert {s.id for s in await store.list_jobs()} == {newer.id, recent.id}
        raw = sqlite3.connect(store.path)
        assert raw.execute("SELECT COUNT(*) FROM chunk_acks").fetchone() == (0,)
        raw.close()


async def test_prune_keeps_a_job_that_is_running(tmp_path: Path) -> None:
    now = [1_000_000.0]
    async with SqliteStore(tmp_path / "c.sqlite3", clock=lambda: now[0]) as store:
        job = _job()
        await store.create_job(job)
        await store.save(_done(job))
        now[0] += 40 * DAY
        me = Holder("tok", os.getpid(), socket.gethostname(), now[0], now[0] + 60, "x")
        assert (await store.lock_job(job.fingerprint, me))[0]
        assert await store.prune(DAY) == []


def _spec(cycles: int) -> CallSpec:
    return CallSpec("c", "icrp_write", cycles=cycles)


async def _ok() -> str:
    return "ok"
