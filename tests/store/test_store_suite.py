"""The Store protocol's semantics, the same for every store (SQLite and PostgreSQL).

Each test runs twice (``kit``/``store`` fixtures, ``conftest.py``): against a
SQLite file and against a fresh database of a real PostgreSQL server.  Locks
are tested with real processes: a child holds a job's lock, the test tries
to run the same job, kills the child with SIGKILL and takes over.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace

import pytest
from store_kit import StoreKit

from replicator.checkpoints import Store
from replicator.errors import CheckpointError, IntegrityError
from replicator.fleetstore import MemberResult, fleet_table
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
from replicator.joblock import Holder, JobLocked, holding
from replicator.limits import CallSpec, CyclesBudget, Direct
from replicator.machine import Start, Step
from replicator.registry import POOL_ROLE, Entry

APP = CanisterRef("plfju-2iaaa-fake4-aaaaa-cai", "local")  # made-up ids
BACKUP = CanisterRef("xmf3k-3iaaa-fake5-aaaaa-cai", "local")
IMAGE = ImageInfo(snapshot_id=3, size=5000, chunk_size=1000, digest=b"\x07" * 32)
DAY = 86400


def _d(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def _job() -> Job:
    return Job("backup", APP, BACKUP, options={"route": "direct"}, id=new_job_id("backup"))


def advance(state: JobState, event: object) -> Step:
    return advance_copy(state, event)


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


# ------------------------------------------------------------------ jobs


async def test_create_save_load_round_trip(store: Store) -> None:
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


async def test_chunk_acks_are_idempotent_and_refuse_a_changed_digest(store: Store) -> None:
    job = _job()
    await store.create_job(job)
    await store.ack_chunks(job.id, [(0, _d(0)), (1, _d(1))])
    await store.ack_chunks(job.id, [(1, _d(1)), (2, _d(2))])  # 1 again: fine
    await store.ack_chunks(job.id, [])
    with pytest.raises(IntegrityError, match="chunk 2"):
        await store.ack_chunks(job.id, [(3, _d(3)), (2, _d(99))])
    # the failing batch recorded nothing, not even chunk 3
    assert (await store.load(job.id)).acked == {0: _d(0), 1: _d(1), 2: _d(2)}
    await store.reset_chunks(job.id)
    assert (await store.load(job.id)).acked == {}


async def test_unknown_jobs_and_bad_acks_are_errors(store: Store) -> None:
    with pytest.raises(CheckpointError, match="no job 'nope'"):
        await store.load("nope")
    with pytest.raises(CheckpointError, match="no job"):
        await store.ack_chunks("nope", [(0, _d(0))])
    with pytest.raises(CheckpointError, match="no job"):
        await store.delete_job("nope")
    with pytest.raises(CheckpointError, match="no job"):
        await store.save(JobState(_job()))
    job = _job()
    await store.create_job(job)
    with pytest.raises(ValueError, match="bad chunk ack"):
        await store.ack_chunks(job.id, [(0, b"short")])
    with pytest.raises(ValueError, match="bad chunk ack"):
        await store.ack_chunks(job.id, [(-1, _d(0))])


async def test_list_unfinished_decodes_only_those(store: Store) -> None:
    # A kind's own phase counts as unfinished; done, failed and cancelled do not.
    # Supersession is still judged over every row: the older run of a
    # fingerprint whose newer run is done stays superseded.
    older, newer, failed, own = _job(), _job(), _job(), _job()
    other = Job("archive-export", APP, ArchiveRef("/x.icra"), id="export-2")
    for job in (older, newer, failed, own, other):
        await store.create_job(job)
    for job, phase in ((newer, Phase.DONE), (failed, Phase.FAILED), (own, "catching_up")):
        state = (await store.load(job.id)).state
        await store.save(replace(state, phase=phase))
    await store.save(replace((await store.load(other.id)).state, phase=Phase.CANCELLED))
    found = {s.id: s for s in await store.list_jobs(unfinished=True)}
    assert {i: s.phase for i, s in found.items()} == {older.id: "pending", own.id: "catching_up"}
    # the four backups share one fingerprint: only its newest run is not superseded
    newest = [s for s in await store.list_jobs() if s.kind == "backup" and not s.superseded]
    assert len(newest) == 1
    assert {i: s.superseded for i, s in found.items()} == {i: i != newest[0].id for i in found}
    assert [s.id for s in await store.list_jobs([Phase.PENDING], unfinished=True)] == [older.id]
    assert {s.id for s in await store.list_jobs()} == {
        j.id for j in (older, newer, failed, own, other)
    }


async def test_list_and_find_resumable(store: Store) -> None:
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


async def test_delete_removes_chunk_rows(store: Store, kit: StoreKit) -> None:
    job = _job()
    await store.create_job(job)
    await store.ack_chunks(job.id, [(i, _d(i)) for i in range(5)])
    await store.delete_job(job.id)
    assert kit.sql("SELECT COUNT(*) FROM {chunk_acks}") == [(0,)]


async def test_concurrent_writers_are_serialised(store: Store) -> None:
    job = _job()
    await store.create_job(job)

    async def ack_range(start: int) -> None:
        for i in range(start, start + 25):
            await store.ack_chunks(job.id, [(i, _d(i))])

    await asyncio.gather(*(ack_range(k * 25) for k in range(4)))
    assert len((await store.load(job.id)).acked) == 100


async def test_two_stores_see_each_others_commits(kit: StoreKit) -> None:
    """Two processes on one store: what one commits, the other reads at once."""
    first, second = await kit.open(), await kit.open()
    try:
        job = _job()
        await first.create_job(job)
        await first.ack_chunks(job.id, [(0, _d(0))])
        assert (await second.load(job.id)).acked == {0: _d(0)}
        assert await second.find_resumable(job.fingerprint) == job.id
    finally:
        await first.close()
        await second.close()


async def test_an_unreadable_state_names_the_job(store: Store, kit: StoreKit) -> None:
    job = _job()
    await store.create_job(job)
    kit.sql("UPDATE {jobs} SET state = ? WHERE id = ?", (b"\xc1garbage", job.id))
    with pytest.raises(CheckpointError, match=f"checkpoint of job {job.id}"):
        await store.load(job.id)


# ------------------------------------------------------------------ registry


async def test_registry_entries_survive_a_reopen_and_update_in_place(kit: StoreKit) -> None:
    store = await kit.open()
    cid = "plfju-2iaaa-fake4-aaaaa-cai"
    try:
        await store.registry.put(Entry("local", "src", "backup", None, "requested", 42))
        await store.registry.put(Entry("local", "src", "backup", cid, "created", 42))
    finally:
        await store.close()
    again = await kit.open()
    try:
        entry = await again.registry.get("local", "src")
        assert entry is not None
        assert (entry.canister, entry.state, entry.request_ns) == (cid, "created", 42)
        assert entry.updated_at > 0
        assert await again.registry.get("ic", "src") is None
        assert await again.registry.get("local", "src", "restore-1") is None
        assert [e.source for e in await again.registry.entries()] == ["src"]
        await again.registry.forget("local", "src")
        assert await again.registry.entries() == []
    finally:
        await again.close()


# ------------------------------------------------------------------ budgets


def _spec(cycles: int) -> CallSpec:
    return CallSpec("c", "icrp_write", cycles=cycles)


async def _ok() -> str:
    return "ok"


async def test_pool_claims_give_each_ready_canister_once(store: Store) -> None:
    reg = store.registry
    for i in range(3):
        await reg.put(Entry("local", f"pool-{i}", POOL_ROLE, f"c{i}", "ready", i))
    await reg.put(Entry("local", "pool-9", POOL_ROLE, None, "requested", 9))
    await reg.put(Entry("ic", "pool-5", POOL_ROLE, "elsewhere", "ready", 5))
    claims = await asyncio.gather(*(reg.claim("local", f"member-{i}") for i in range(5)))
    given = [c.canister for c in claims if c is not None]
    assert sorted(given) == ["c0", "c1", "c2"]  # not the one being made, not ic's
    assert all(c is None or c.state == "claimed" for c in claims)
    assert await reg.claim("local", "member-0") is None  # it has its entry already
    entries = await reg.entries()
    assert [e.source for e in entries if e.role == POOL_ROLE] == ["pool-5", "pool-9"]
    assert len({e.canister for e in entries if e.canister}) == 4


async def test_the_pool_is_counted_and_listed_by_role_and_backups_found_by_canister(
    store: Store,
) -> None:
    """The look-ups the warm pool and the keep-alive make per member: index reads, not scans."""
    reg = store.registry
    for i in range(200):
        await reg.put(Entry("local", f"m{i}", "backup", f"b{i}", "ready", i))
    await reg.put(Entry("local", "pool-1", POOL_ROLE, "p1", "ready", 1))
    await reg.put(Entry("local", "pool-2", POOL_ROLE, None, "requested", 2))
    await reg.put(Entry("ic", "pool-3", POOL_ROLE, "p3", "ready", 3))
    assert await reg.counts("local", POOL_ROLE) == {"ready": 1, "requested": 1}
    assert await reg.counts("local", "backup") == {"ready": 200}
    assert await reg.counts("ic", "backup") == {}
    assert [e.source for e in await reg.in_role("local", POOL_ROLE)] == ["pool-1", "pool-2"]
    assert await reg.holds("local", "b199", "backup")
    assert not await reg.holds("local", "p1", "backup")  # a pool canister is no backup yet
    assert not await reg.holds("ic", "b1", "backup")
    await reg.claim("local", "m-new")
    assert await reg.counts("local", POOL_ROLE) == {"requested": 1}
    assert await reg.holds("local", "p1", "backup")  # claimed: now a member's


async def test_spending_is_kept_in_the_store_across_restarts(kit: StoreKit) -> None:
    at = time.time()
    store = await kit.open()
    try:
        budget = CyclesBudget(Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at)
        await budget.call(_spec(70), _ok)
    finally:
        await store.close()
    store = await kit.open()  # a restart: the same period, the same budget
    try:
        budget = CyclesBudget(Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at)
        assert await budget.refresh() == 30
        with pytest.raises(Exception, match="would exceed the cycles budget"):
            await budget.call(_spec(31), _ok)
        tomorrow = CyclesBudget(
            Direct(), 100, spending=store.spending, scope="ic", wall=lambda: at + DAY
        )
        assert await tomorrow.refresh() == 100
    finally:
        await store.close()


def test_processes_never_spend_beyond_the_budget_together(kit: StoreKit) -> None:
    """Four stores (as four processes would) spend from one budget at once."""

    async def prepare() -> None:
        await (await kit.open()).close()

    asyncio.run(prepare())
    granted: list[int] = []

    def spender() -> None:
        async def run() -> None:
            store = await kit.open()
            try:
                for _ in range(30):
                    added, _total = await store.spending.spend("ic", 0, 7, 500)
                    if added:
                        granted.append(7)
            finally:
                await store.close()

        asyncio.run(run())

    threads = [threading.Thread(target=spender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 497  # 71 grants of 7: as many as fit, and not one more

    async def spent() -> int:
        store = await kit.open()
        try:
            return await store.spending.spent("ic", 0)
        finally:
            await store.close()

    assert asyncio.run(spent()) == 497


# ------------------------------------------------------------------ locks

_HOLDER = """
import asyncio, sys
from replicator.stores import open_state
from replicator.joblock import holding

async def main() -> None:
    store = await open_state(sys.argv[1])
    async with holding(store, sys.argv[2], what="the backup job under test"):
        print("holding", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def _hold_in_a_child(location: str, fingerprint: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), location, fingerprint],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "holding"
    return child


async def test_a_second_process_cannot_run_a_held_job_and_takes_over_a_dead_one(
    kit: StoreKit,
) -> None:
    job = _job()
    store = await kit.open()
    state = await store.create_job(job)
    child = await asyncio.to_thread(_hold_in_a_child, kit.location, job.fingerprint)
    try:
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
            await store.ack_chunks(job.id, [(0, _d(0))])
        with pytest.raises(JobLocked):
            await store.reset_chunks(job.id)
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
        await store.close()


async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    kit: StoreKit,
) -> None:
    old, new = await kit.open(), await kit.open()  # two processes
    try:
        job = _job()
        state = await old.create_job(job)
        far = Holder("t0ken", 1, "another-host", time.time() - 600, time.time() - 1, "the job")
        assert await old.lock_job(job.fingerprint, far) == (True, None)
        await old.save(state)  # the holder writes
        async with holding(new, job.fingerprint, what="the job") as taken:
            assert taken.note is not None
            assert "another-host" in taken.note
            assert "lease expired" in taken.note
            await new.save(state)
            with pytest.raises(JobLocked):  # the old holder lost the job: refused
                await old.save(state)
            assert not await old.renew_lock(job.fingerprint, "t0ken", time.time() + 60)
    finally:
        await old.close()
        await new.close()


async def test_only_one_of_many_contenders_gets_a_lock(kit: StoreKit) -> None:
    stores = [await kit.open() for _ in range(4)]
    try:
        now = time.time()
        holders = [Holder(f"tok{i}", os.getpid(), "h", now, now + 60, "j") for i in range(4)]
        results = await asyncio.gather(
            *(s.lock_job("fp", h) for s, h in zip(stores, holders, strict=True))
        )
        assert sum(1 for taken, _ in results if taken) == 1
        loser = next(other for taken, other in results if not taken)
        assert loser is not None
        winner = next(h for h, (taken, _) in zip(holders, results, strict=True) if taken)
        assert loser.token == winner.token
    finally:
        for s in stores:
            await s.close()


async def test_a_lock_is_released_when_the_run_is_cancelled(store: Store) -> None:
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


async def test_prune_forgets_old_finished_jobs_only(kit: StoreKit) -> None:
    now = [1_000_000.0]
    store = await kit.open(clock=lambda: now[0])
    try:
        old_done, older, superseded = _job(), _job(), _job()
        newer = Job("backup", APP, BACKUP, id="backup-newer")  # same command as `superseded`
        for job in (old_done, older, superseded):
            await store.create_job(job)
        other = Job("backup", BACKUP, APP, id="backup-other")
        await store.create_job(other)
        await store.save(_done(old_done))
        await store.ack_chunks(old_done.id, [(0, _d(0))])
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
        assert kit.sql("SELECT COUNT(*) FROM {chunk_acks}") == [(0,)]
    finally:
        await store.close()


async def test_prune_keeps_a_job_that_is_running(kit: StoreKit) -> None:
    now = [1_000_000.0]
    store = await kit.open(clock=lambda: now[0])
    try:
        job = _job()
        await store.create_job(job)
        await store.save(_done(job))
        now[0] += 40 * DAY
        me = Holder("tok", os.getpid(), socket.gethostname(), now[0], now[0] + 60, "x")
        assert (await store.lock_job(job.fingerprint, me))[0]
        assert await store.prune(DAY) == []
    finally:
        await store.close()


async def test_prune_drops_spending_of_long_ended_periods(kit: StoreKit) -> None:
    now = [200 * DAY]
    store = await kit.open(clock=lambda: now[0])
    try:
        await store.spending.spend("ic", 0, 5, 100)  # 200 days ago
        await store.spending.spend("ic", int(now[0]), 5, 100)
        await store.prune(DAY)
        assert await store.spending.spent("ic", 0) == 0
        assert await store.spending.spent("ic", int(now[0])) == 5
    finally:
        await store.close()


async def test_the_fleet_member_table_tracks_membership_and_rounds(kit: StoreKit) -> None:
    a, b, c = "aaaaa-aa-fake1", "bbbbb-bb-fake2", "ccccc-cc-fake3"  # made up: table keys only
    store = await kit.open()
    try:
        table = fleet_table(store)
        change = await table.sync("f", "local", [a, b], now=10.0)
        assert (change.added, change.gone, change.total) == (2, 0, 2)
        assert [r.member for r in await table.due("f", "local", "r1", 10.0)] == [a, b]
        await table.finish("f", "local", "r1", MemberResult(a, True, 11.0, next_due=100.0))
        await table.finish("f", "local", "r1", MemberResult(b, False, 12.0, 50.0, "no", "x"))
        assert await table.due("f", "local", "r1", None) == []  # both finished this round
        assert [r.member for r in await table.due("f", "local", "r2", 60.0)] == [b]
        # Never backed up first, then the oldest success.
        await table.sync("f", "local", [a, b, c], now=70.0)
        assert [r.member for r in await table.due("f", "local", "r2", None)] == [b, c, a]
        change = await table.sync("f", "local", [c], now=80.0)
        assert (change.added, change.gone) == (0, 2)
        rows = {r.member: r for r in await table.members("f")}
        assert rows[a].gone
        assert rows[a].state == "ok"
        assert rows[b].failures == 1
        assert rows[b].last_error == "no"
        assert [r.member for r in await table.due("f", "local", "r3", None)] == [c]
        assert (await table.sync("f", "local", [a, c], now=90.0)).returned == 1
        assert await table.fleets() == ["f"]
    finally:
        await store.close()
