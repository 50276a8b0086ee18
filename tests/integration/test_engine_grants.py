"""Peer grants of the direct path end with the job (localnet over HTTP).

After any job — done, failed, cancelled, or unable to revoke and run
again — every canister trusts exactly the peers it trusted before (the e2e
crash test checks the same after SIGKILL).  Grants are changes of the peer
set (``icrp_update_peers``), never a read-modify-write that a concurrent job
could lose, and a grant two unfinished jobs need is revoked by the last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import FAST_LIMITS, World, ref, run_backup, run_restore, world

from canister_iface.icrp import IcrpClient
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.checkpoints import JobSummary, SqliteStore
from replicator.engine import Engine
from replicator.flows.image.grants import Grants
from replicator.flows.image.machine import GRANTS_KEY, Grant, grants_of
from replicator.job import Job, Phase
from replicator.progress import RecordingProgress
from replicator.retry import RetryPolicy
from replicator.settings import Transfer

pytestmark = pytest.mark.integration

OTHER = Identity.generate_ed25519().principal  # a peer someone configured by hand
# Slow enough to act while a 1 MiB image is being copied in 64 KiB pieces.
CHUNK = 64 * 1024
SLOW = replace(FAST_LIMITS, bytes_per_second=256 * 1024, byte_burst=CHUNK)
SMALL = Transfer(max_size=CHUNK)
FEW_RETRIES = RetryPolicy(max_attempts=3, max_seconds=5.0, initial_wait=0.02, max_wait=0.05)


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


async def peers(w: World, *canisters: Principal) -> dict[Principal, frozenset[Principal]]:
    return {c: frozenset((await IcrpClient(w.agent, c).peers()).peers) for c in canisters}


async def recorded(engine: Engine, job_id: str) -> tuple[Grant, ...]:
    return grants_of((await engine.store.load(job_id)).state.detail)


class Copying(RecordingProgress):
    """Says when bytes of the job ``kind`` were acknowledged."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.copying = asyncio.Event()

    def advanced(self, job: Job, nbytes: int) -> None:
        super().advanced(job, nbytes)
        if job.kind == self.kind:
            self.copying.set()


# ------------------------------------------------------------------ one job


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_after_a_backup_and_a_restore_the_peer_lists_are_as_before(
    w: World, via: str
) -> None:
    demo = await w.demo(mib=1)
    await IcrpClient(w.agent, demo).set_peers([OTHER])
    backup = await w.backup_canister(demo, peers=(OTHER,))
    before = await peers(w, demo, backup)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo), ref(backup), via=via)
        assert backed.ok, backed.error
        assert backed.route == via
        assert await peers(w, demo, backup) == before
        restored = await run_restore(engine, ref(backup), ref(demo), via=via)
        assert restored.ok, restored.error
        assert restored.route == via
        assert await recorded(engine, restored.job.id) == ()
    assert await peers(w, demo, backup) == before  # the app does not keep trusting its backup
    if via == "direct":
        assert any("no longer trusts" in n for n in restored.notes), restored.notes


async def test_a_peer_trusted_before_the_job_stays_trusted(w: World) -> None:
    demo = await w.demo(mib=1)
    backup = await w.backup_canister(demo, peers=(demo,))
    await IcrpClient(w.agent, demo).set_peers([backup])  # configured by hand for the direct path
    before = await peers(w, demo, backup)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo), ref(backup))
        restored = await run_restore(engine, ref(backup), ref(demo))
        assert await recorded(engine, backed.job.id) == ()
    assert backed.ok, backed.error
    assert restored.ok, restored.error
    assert (backed.route, restored.route) == ("direct", "direct")
    assert await peers(w, demo, backup) == before
    assert not any("no longer trusts" in n for n in backed.notes + restored.notes)


async def test_a_failed_copy_revokes_its_grants(w: World) -> None:
    demo = await w.demo(mib=1)
    backup = await w.backup_canister(demo)
    before = await peers(w, demo, backup)
    w.net.faults.set(transient_reject=1.0, transient_methods=frozenset({"icrp_push"}))
    async with w.engine() as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via="direct")
    assert not outcome.ok
    assert outcome.state.phase == Phase.FAILED
    assert await peers(w, demo, backup) == before


async def test_a_cancelled_copy_revokes_its_grants_and_so_does_its_resumption(w: World) -> None:
    demo = await w.demo(mib=1, chunk_size=CHUNK)
    backup = await w.backup_canister(demo)
    before = await peers(w, demo, backup)
    w.progress = copying = Copying("backup")
    engine = w.engine(limits=SLOW, transfer=SMALL)
    task = asyncio.create_task(run_backup(engine, ref(demo), ref(backup)))
    await asyncio.wait_for(copying.copying.wait(), 30)
    assert backup in (await peers(w, demo))[demo]  # granted while the copy runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await peers(w, demo, backup) == before
    async with w.engine() as again:
        outcome = await run_backup(again, ref(demo), ref(backup))
    assert outcome.ok, outcome.error
    assert outcome.resumed
    assert await peers(w, demo, backup) == before


async def test_grants_a_run_could_not_revoke_are_revoked_by_its_next_run(w: World) -> None:
    demo = await w.demo(mib=1, chunk_size=CHUNK)
    backup = await w.backup_canister(demo)
    before = await peers(w, demo, backup)
    w.progress = copying = Copying("backup")
    engine = w.engine(limits=SLOW, transfer=SMALL, retry=FEW_RETRIES)
    task = asyncio.create_task(run_backup(engine, ref(demo), ref(backup)))
    await asyncio.wait_for(copying.copying.wait(), 30)
    # From now on pushes fail, and so does every change of the peers: the run
    # fails with its grant made, and cannot take it back (as if it had died).
    w.net.faults.set(
        transient_reject=1.0, transient_methods=frozenset({"icrp_push", "icrp_update_peers"})
    )
    failed = await task
    assert not failed.ok
    w.net.faults.reset()
    grant = Grant("local", demo.to_text(), backup.to_text())
    assert await recorded(engine, failed.job.id) == (grant,)
    assert backup in (await peers(w, demo))[demo]
    async with w.engine() as again:
        outcome = await run_backup(again, ref(demo), ref(backup))
        assert outcome.ok, outcome.error
        assert outcome.resumed
        assert await recorded(again, outcome.job.id) == ()
    assert await peers(w, demo, backup) == before


async def test_without_rights_to_grant_nothing_is_recorded_and_the_relay_is_used(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    peer = w.stranger.identity.principal
    await IcrpClient(w.agent, demo).set_peers([peer])  # may read, may not grant
    backup = await w.backup_canister(demo, peers=(peer,))
    before = await peers(w, demo, backup)
    async with w.engine(agent=w.stranger) as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup))
        assert outcome.ok, outcome.error
        assert outcome.route == "relay"
        assert await recorded(engine, outcome.job.id) == ()
    assert await peers(w, demo, backup) == before


# ----------------------------------------------------------- several jobs


async def test_two_backups_of_one_app_at_once_keep_both_grants(w: World) -> None:
    """Two jobs grant peers of the same canister at once: neither grant is lost."""
    demo = await w.demo(mib=1)
    first, second = await w.backup_canister(demo), await w.backup_canister(demo)
    before = await peers(w, demo, first, second)
    async with w.engine(transfer=SMALL) as one, w.engine(transfer=SMALL) as two:
        a, b = await asyncio.gather(
            run_backup(one, ref(demo), ref(first)), run_backup(two, ref(demo), ref(second))
        )
    assert a.ok, a.error
    assert b.ok, b.error
    assert (a.route, b.route) == ("direct", "direct")
    assert await peers(w, demo, first, second) == before


async def test_a_grant_two_jobs_need_is_revoked_by_the_last_of_them(w: World) -> None:
    """A slow restore and a backup both need the app to trust its backup canister."""
    demo = await w.demo(mib=1, chunk_size=CHUNK)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        assert (await run_backup(engine, ref(demo), ref(backup))).ok
    await w.add_user(demo, "mallory")  # the next backup has a new image to copy
    before = await peers(w, demo, backup)
    w.progress = copying = Copying("restore")
    async with w.engine(limits=SLOW, transfer=SMALL) as slow, w.engine() as fast:
        restore = asyncio.create_task(run_restore(slow, ref(backup), ref(demo)))
        await asyncio.wait_for(copying.copying.wait(), 30)
        backed = await run_backup(fast, ref(demo), ref(backup))
        assert backed.ok, backed.error
        assert backed.route == "direct"
        assert any("another unfinished job needs it" in n for n in backed.notes), backed.notes
        assert backup in (await peers(w, demo))[demo]  # the restore still pushes
        restored = await restore
    assert restored.ok, restored.error
    assert restored.route == "direct"
    assert await peers(w, demo, backup) == before


async def test_a_revocation_racing_a_new_grant_leaves_the_peer(w: World) -> None:
    """Job 1 read the peers and found no other holder; then job 2 records and grants
    the same peer; job 1's compare-and-set fails, and its second look sees job 2."""
    demo = await w.demo(mib=1)
    backup = await w.backup_canister(demo)
    grant = Grant("local", demo.to_text(), backup.to_text())
    store = w.store()
    calls = w.engine().calls(lambda text: None)
    one = await _copying_job(store, demo, backup, "backup-one", grant)
    await Grants(calls, store, one.id).grant([grant])

    async def second_job_grants() -> None:
        two = await _copying_job(store, demo, backup, "backup-two", grant)
        await Grants(calls, store, two.id).grant([grant])

    racing = _RacingStore(store, second_job_grants)
    await Grants(calls, racing, one.id).revoke([grant])
    assert racing.raced
    assert backup in (await peers(w, demo))[demo]  # job 2 holds it now
    await store.save(replace((await store.load(one.id)).state, phase=Phase.DONE, detail={}))
    await Grants(calls, store, "backup-two").revoke([grant])
    assert backup not in (await peers(w, demo))[demo]


async def _copying_job(
    store: SqliteStore, demo: Principal, backup: Principal, job_id: str, grant: Grant
) -> Job:
    job = Job("backup", ref(demo), ref(backup), id=job_id)
    state = await store.create_job(job)
    detail = {GRANTS_KEY: [grant.to_payload()]}
    await store.save(replace(state, phase=Phase.COPYING, detail=detail))
    return job


class _RacingStore:
    """The store, but another job records and makes its grant right after the first
    look for other holders (which therefore does not see it)."""

    def __init__(self, store: SqliteStore, race: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._race = race
        self.raced = False

    async def list_jobs(
        self, phases: Iterable[str] | None = None, *, unfinished: bool = False
    ) -> list[JobSummary]:
        found = await self._store.list_jobs(phases, unfinished=unfinished)
        if not self.raced:
            self.raced = True
            await self._race()
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)
