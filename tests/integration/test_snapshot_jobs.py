"""Snapshot backups, restores and copies of a canister that does not speak ICRP, on localnet.

The subject is ``plain_kv`` (heap entries, a stable-memory region, certified
data, a timer), talked to over HTTP with the real agent; the jobs run through
the engine as the command line runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import COUNTER_WASM, World, counter, world
from snapshot_support import PLAIN_WASM, Plain, backup, copy, plain, restore

from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.management_types import CanisterSettings, Visibility
from canister_iface.principal import Principal
from replicator.errors import EXIT_ACCESS_DENIED, EXIT_FAILED, EXIT_INTEGRITY, EXIT_USAGE
from replicator.job import Phase
from replicator.repository import Repository

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


async def _status(w: World, canister: Principal) -> str:
    return (await w.mgmt.canister_status(canister)).status


async def test_round_trip_into_a_new_canister_answers_the_same_queries(w: World) -> None:
    app = await plain(w, heap=300_000, stable=500_000)
    await app.arm(3600)
    before = await app.state()
    sample = await app.get(7)
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        stored = await backup(engine, app.canister, repo)
        assert stored.ok, stored.error
        restored = await restore(engine, repo, app.canister, new_canister=True)
    assert restored.ok, restored.error
    # The source: stopped for the snapshot, running again, its IC snapshot deleted.
    assert await _status(w, app.canister) == "running"
    assert await w.mgmt.list_canister_snapshots(app.canister) == []
    assert stored.details["downtime_seconds"] is not None
    assert stored.route == "snapshot"
    assert stored.bytes_copied > 0
    manifest = Repository.open(repo).load_manifest(stored.details["snapshot"]).manifest
    assert manifest.canister == app.canister.to_text()
    assert manifest.metadata.global_timer is not None  # the timer is in the snapshot
    assert manifest.metadata.global_timer.at_ns is not None
    assert manifest.metadata.certified_data == before.writes.to_bytes(8, "big")
    # The new canister answers the same queries with the same state.
    assert restored.job.target is not None
    new = Principal.from_text(restored.job.target.canister_id)  # type: ignore[union-attr]
    assert new != app.canister
    copy_ = Plain(w.agent, new)
    assert await copy_.state() == before
    assert await copy_.get(7) == sample
    assert await copy_.load(0, 500_000) == await app.load(0, 500_000)
    assert await _status(w, new) == "running"
    assert await w.mgmt.list_canister_snapshots(new) == []  # the uploaded one is deleted
    assert await w.agent.module_hash(new) == hashlib.sha256(PLAIN_WASM).digest()
    assert set(await w.agent.controllers(new)) == {w.me.principal}
    # Its certified data came along (read through a snapshot of the new canister).
    probe = await w.mgmt.take_canister_snapshot(new)
    meta = await w.mgmt.read_canister_snapshot_metadata(new, probe.id)
    assert meta.certified_data == before.writes.to_bytes(8, "big")
    await w.mgmt.delete_canister_snapshot(new, probe.id)
    assert restored.details["module_hash"] == hashlib.sha256(PLAIN_WASM).hexdigest()
    assert (
        counter(
            w.metrics, "replicator_copied_bytes_total", kind="snapshot-restore", route="snapshot"
        )
        > 0
    )
    assert counter(w.metrics, "replicator_snapshot_canisters_stopped") == 0


async def test_restore_brings_the_same_canister_back_and_a_second_backup_dedupes(
    w: World,
) -> None:
    app = await plain(w, heap=200_000, stable=2_000_000)
    before = await app.state()
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        first = await backup(engine, app.canister, repo)
        assert first.ok, first.error
        await app.store(100_000, b"\x01" * 4096)  # one page of stable memory changes
        second = await backup(engine, app.canister, repo)
        assert second.ok, second.error
        assert (await app.state()).fingerprint != before.fingerprint
        back = await restore(engine, repo, app.canister, snapshot=first.details["snapshot"])
    assert back.ok, back.error
    assert await app.state() == before
    # The second snapshot stored only what changed: a few 64 KiB chunks, not the memory.
    assert second.details["bytes_new"] < first.details["bytes_new"] / 4
    stats = Repository.open(repo).stats()
    assert stats.snapshots == 2
    assert stats.dedup_ratio > 1.7


async def test_copy_into_another_canister_on_the_same_subnet_loads_it_directly(w: World) -> None:
    app = await plain(w, heap=100_000, stable=300_000)
    other = await w.create(PLAIN_WASM)
    async with w.engine() as engine:
        outcome = await copy(engine, app.canister, other)
    assert outcome.ok, outcome.error
    assert outcome.details["same_subnet"] is True
    assert outcome.bytes_copied == 0  # nothing left the IC
    assert await Plain(w.agent, other).state() == await app.state()
    assert await w.mgmt.list_canister_snapshots(app.canister) == []
    assert await _status(w, app.canister) == "running"
    assert await _status(w, other) == "running"


async def test_copy_streams_through_this_machine_when_asked(w: World) -> None:
    app = await plain(w, heap=100_000, stable=3_000_000)
    other = await w.create(COUNTER_WASM)  # runs other code: the copy replaces it
    async with w.engine() as engine:
        outcome = await copy(engine, app.canister, other, via="relay")
    assert outcome.ok, outcome.error
    assert outcome.details["same_subnet"] is False
    assert outcome.bytes_copied > 3_000_000
    assert await Plain(w.agent, other).state() == await app.state()
    assert await w.agent.module_hash(other) == hashlib.sha256(PLAIN_WASM).digest()
    assert await w.mgmt.list_canister_snapshots(other) == []


async def test_a_snapshot_viewer_backs_up_but_cannot_restore(w: World) -> None:
    app = await plain(w, heap=50_000, stable=100_000)
    viewer = Identity.generate_ed25519()
    await w.mgmt.update_settings(
        app.canister,
        CanisterSettings(snapshot_visibility=Visibility.allowed_viewers([viewer.principal])),
    )
    taken = await w.mgmt.take_canister_snapshot(app.canister)  # the controller's own schedule
    repo = w.tmp / "repo"
    agent = Agent(w.net.url, viewer, network="local", root_key=w.net.root_key)
    async with agent, w.engine(agent=agent) as engine:
        stored = await backup(engine, app.canister, repo)
        assert stored.ok, stored.error
        assert stored.details["viewer"] is True
        assert any("snapshot viewer" in n for n in stored.notes)
    # The viewer neither stopped the canister nor deleted the controller's snapshot.
    assert [s.id for s in await w.mgmt.list_canister_snapshots(app.canister)] == [taken.id]
    manifest = Repository.open(repo).load_manifest(stored.details["snapshot"]).manifest
    assert manifest.ic_snapshot_id == taken.id


async def test_the_viewer_restore_is_refused_before_anything_changes(w: World) -> None:
    app = await plain(w, heap=50_000, stable=0)
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        assert (await backup(engine, app.canister, repo)).ok
    viewer = Identity.generate_ed25519()
    agent = Agent(w.net.url, viewer, network="local", root_key=w.net.root_key)
    async with agent, w.engine(agent=agent) as engine:
        with pytest.raises(Exception, match="needs a controller") as caught:
            await restore(engine, repo, app.canister)
    assert getattr(caught.value, "exit_code", None) == EXIT_ACCESS_DENIED


async def test_a_canister_the_identity_does_not_control_is_refused_and_nothing_is_taken(
    w: World,
) -> None:
    app = await plain(w, heap=10_000, stable=0)
    async with w.engine(agent=w.stranger) as engine:
        outcome = await backup(engine, app.canister, w.tmp / "repo")
    assert outcome.exit_code == EXIT_ACCESS_DENIED
    assert "nothing was taken" in (outcome.error or "")
    assert await w.mgmt.list_canister_snapshots(app.canister) == []
    assert await _status(w, app.canister) == "running"


async def test_full_slots_of_others_fail_clearly_and_ours_are_replaced(w: World) -> None:
    app = await plain(w, heap=10_000, stable=0)
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        kept = await backup(engine, app.canister, repo, keep_on_chain=True)
        assert kept.ok, kept.error
        for _ in range(9):
            await w.mgmt.take_canister_snapshot(app.canister)  # not ours
        theirs = [s.id for s in await w.mgmt.list_canister_snapshots(app.canister)]
        assert len(theirs) == 10
        replaced = await backup(engine, app.canister, repo, keep_on_chain=True)
        assert replaced.ok, replaced.error
        assert any("replacing the oldest one ic-replicator took" in n for n in replaced.notes)
        now = [s.id for s in await w.mgmt.list_canister_snapshots(app.canister)]
        ours = Repository.open(repo).load_manifest(kept.details["snapshot"]).manifest
        assert ours.ic_snapshot_id not in now  # ours was replaced, theirs all stay
        assert set(theirs) - {ours.ic_snapshot_id} <= set(now)
        # Now delete ours: the ten left are all someone else's.
        await w.mgmt.delete_canister_snapshot(
            app.canister, bytes.fromhex(replaced.details["ic_snapshot_id"])
        )
        await w.mgmt.take_canister_snapshot(app.canister)
        full = [s.id for s in await w.mgmt.list_canister_snapshots(app.canister)]
        refused = await backup(engine, app.canister, repo)
    assert refused.exit_code == EXIT_FAILED
    assert "none of them was taken by ic-replicator" in (refused.error or "")
    assert [s.id for s in await w.mgmt.list_canister_snapshots(app.canister)] == full
    assert await _status(w, app.canister) == "running"


async def test_a_target_whose_memory_limit_is_too_small_is_refused_untouched(w: World) -> None:
    app = await plain(w, heap=2_000_000, stable=0)
    repo = w.tmp / "repo"
    small = await w.create(COUNTER_WASM)
    await w.mgmt.update_settings(small, CanisterSettings(wasm_memory_limit=1024 * 1024))
    async with w.engine() as engine:
        assert (await backup(engine, app.canister, repo)).ok
        refused = await restore(engine, repo, app.canister, into=small)
    assert refused.exit_code == EXIT_USAGE
    assert "Wasm memory limit" in (refused.error or "")
    assert await w.agent.module_hash(small) == hashlib.sha256(COUNTER_WASM).digest()
    assert await w.mgmt.list_canister_snapshots(small) == []


async def test_a_damaged_chunk_stops_the_restore_before_the_target_is_touched(w: World) -> None:
    app = await plain(w, heap=100_000, stable=200_000)
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        stored = await backup(engine, app.canister, repo)
        assert stored.ok
        r = Repository.open(repo)
        m = r.load_manifest(stored.details["snapshot"]).manifest
        path = r.backend.path(_chunk_handle(m.stable_memory.chunks[1]))  # type: ignore[attr-defined]
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        await app.put([(1, b"changed after the backup")])
        after = await app.state()
        refused = await restore(engine, repo, app.canister)
    assert refused.exit_code == EXIT_INTEGRITY
    assert "damaged" in (refused.error or "")
    assert await app.state() == after
    assert await w.mgmt.list_canister_snapshots(app.canister) == []


async def test_a_manifest_of_a_newer_format_is_refused(w: World) -> None:
    app = await plain(w, heap=10_000, stable=0)
    repo = w.tmp / "repo"
    async with w.engine() as engine:
        stored = await backup(engine, app.canister, repo)
        r = Repository.open(repo)
        doc = json.loads(r.backend.load(_snapshot_handle(stored.details["snapshot"])))
        doc["version"] = 99
        data = (json.dumps(doc) + "\n").encode()
        r.backend.save(_snapshot_handle(hashlib.sha256(data).hexdigest()), data)
        r.remove_snapshot(stored.details["snapshot"])
        with pytest.raises(Exception, match="upgrade ic-replicator") as caught:
            await restore(engine, repo, app.canister)
    assert getattr(caught.value, "exit_code", None) == EXIT_USAGE


async def test_no_stop_takes_it_from_the_running_canister_and_says_what_that_means(
    w: World,
) -> None:
    app = await plain(w, heap=10_000, stable=0)
    async with w.engine() as engine:
        outcome = await backup(engine, app.canister, w.tmp / "repo", stop=False)
    assert outcome.ok, outcome.error
    assert outcome.details["downtime_seconds"] is None
    assert any("calls it made and had no reply to yet" in n for n in outcome.notes)


async def test_a_failed_run_starts_the_source_again(w: World) -> None:
    app = await plain(w, heap=10_000, stable=0)
    w.net.faults.set(transient_reject=1.0, transient_methods=["take_canister_snapshot"])
    try:
        async with w.engine() as engine:
            failed = await backup(engine, app.canister, w.tmp / "repo")
    finally:
        w.net.faults.reset()
    assert not failed.ok
    assert failed.phase == Phase.FAILED
    assert await _status(w, app.canister) == "running"
    assert any("started" in n and "again" in n for n in failed.notes)
    async with w.engine() as engine:
        again = await backup(engine, app.canister, w.tmp / "repo")
    assert again.ok, again.error
    assert again.resumed


def _chunk_handle(digest: bytes) -> object:
    from replicator.repository.store import FileType, Handle

    return Handle(FileType.CHUNK, digest.hex())


def _snapshot_handle(snapshot_id: str) -> object:
    from replicator.repository.store import FileType, Handle

    return Handle(FileType.SNAPSHOT, snapshot_id)
