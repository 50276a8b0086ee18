"""The engine under injected faults, bad input and cancellation (localnet over HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import COUNTER_WASM, World, counter, ref, run_backup, run_restore, world

from canister_iface.icrp import IcrpClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from replicator.errors import EXIT_ACCESS_DENIED, EXIT_FAILED, EXIT_NOT_ICRP, JobFailed
from replicator.flows.image.machine import image_of
from replicator.job import CanisterRef, Job, Phase
from replicator.progress import RecordingProgress
from replicator.settings import Transfer

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


def retries(w: World, reason: str) -> float:
    return counter(w.metrics, "replicator_retries_total", reason=reason)


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_backup_completes_through_429_503_rejects_and_latency(w: World, via: str) -> None:
    demo = await w.demo(mib=2, chunk_size=64 * 1024)
    backup = await w.backup_canister(demo)
    w.net.faults.set(
        seed=3,
        http_429={"call": 0.3},
        http_503={"query": 0.2},
        transient_reject=0.2,
        transient_methods={"icrp_write", "icrp_push"},
        latency_s={"query": 0.02, "call": 0.05},
    )
    async with w.engine(transfer=Transfer(max_size=256 * 1024)) as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via=via)
    w.net.faults.reset()
    assert outcome.ok, outcome.error
    assert outcome.target_digest == outcome.digest
    assert retries(w, "rate_limited") > 0
    assert retries(w, "overloaded") > 0
    assert retries(w, "reject_transient") > 0
    assert counter(w.metrics, "replicator_calls_total", method="icrp_begin_import", outcome="ok")
    transient = sum(
        counter(w.metrics, "replicator_calls_total", method=m, outcome="transient")
        for m in ("icrp_push", "icrp_write", "icrp_read", "icrp_begin_export", "icrp_begin_import")
    )
    assert transient > 0
    assert w.progress.named("retried")


async def test_the_transfer_size_shrinks_to_a_payload_cap(w: World) -> None:
    demo = await w.demo(mib=2, chunk_size=64 * 1024)
    backup = await w.backup_canister(demo)
    w.net.faults.set(payload_cap=300_000)
    async with w.engine() as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via="relay")
    w.net.faults.reset()
    assert outcome.ok, outcome.error
    # Calls too large for the cap failed (permanently, for their size) and
    # were made again in smaller pieces; nothing else failed.  The relay
    # streams each piece it read into a write, so the read replies meet the
    # cap first and the writes follow the smaller pieces.
    too_large = sum(
        counter(w.metrics, "replicator_calls_total", method=method, outcome="permanent")
        for method in ("icrp_read", "icrp_read_for_write", "icrp_write")
    )
    written = counter(w.metrics, "replicator_calls_total", method="icrp_write", outcome="ok")
    assert too_large > 0
    assert written > too_large
    for path in ("read", "write"):
        size = counter(w.metrics, "replicator_chunk_size_bytes", path=path)
        assert 0 < size < 2 * 1024 * 1024 - 64 * 1024, path


async def test_a_wrong_canister_id_fails_clearly_and_creates_nothing(w: World) -> None:
    demo = await w.demo(mib=1)
    unused = Principal.of(bytes(5) + b"\x00\x01\xf4" + b"\x01\x01")  # in range, not created
    async with w.engine() as engine:
        for wrong in ("lxzze-o7777-77777-aaaaa-cai", unused.to_text()):  # outside any subnet
            nowhere = CanisterRef(wrong, "local")
            with pytest.raises(JobFailed, match="check the canister id") as caught:
                await run_backup(
                    engine, nowhere
                )  # a backup canister would be created: checked first
            assert caught.value.exit_code == EXIT_FAILED
        outcome = await run_backup(engine, ref(demo), nowhere)
        assert await engine.store.registry.entries() == []
    assert not outcome.ok
    assert outcome.exit_code == EXIT_FAILED
    assert "check the canister id" in (outcome.error or "")
    assert counter(w.metrics, "replicator_canisters_created_total", network="local") == 0


async def test_a_canister_without_icrp_fails_with_exit_code_3(w: World) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    plain = await w.create(COUNTER_WASM)
    async with w.engine() as engine:
        as_target = await run_backup(engine, ref(demo), ref(plain))
        as_source = await run_backup(engine, ref(plain), ref(demo))
    for outcome in (as_target, as_source):
        assert outcome.phase == Phase.FAILED
        assert outcome.exit_code == EXIT_NOT_ICRP
        assert "does not implement the replication protocol" in (outcome.error or "")
    assert await w.fingerprint(demo) == before


async def test_a_canister_without_code_fails_with_exit_code_3(w: World) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    empty = await w.mgmt.provisional_create_canister_with_cycles(
        amount=10**13, settings=CanisterSettings(controllers=(w.me.principal,))
    )
    async with w.engine() as engine:
        as_target = await run_backup(engine, ref(demo), ref(empty))
        as_source = await run_restore(engine, ref(empty), ref(demo))
    for outcome in (as_target, as_source):
        assert outcome.phase == Phase.FAILED
        assert outcome.exit_code == EXIT_NOT_ICRP, outcome.error
        assert f"{empty} has no code installed" in (outcome.error or "")
    assert as_source.job.target == ref(demo)
    assert await w.fingerprint(demo) == before


async def test_a_caller_without_rights_fails_with_exit_code_4_and_changes_nothing(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    backup = await w.backup_canister(demo)
    async with w.engine(agent=w.stranger) as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup))
        restore = await run_restore(engine, ref(backup), ref(demo))
    assert outcome.exit_code == EXIT_ACCESS_DENIED
    assert "does not trust" in (outcome.error or "")
    assert restore.exit_code == EXIT_ACCESS_DENIED
    assert await IcrpClient(w.agent, backup).list_images() == []
    assert await w.fingerprint(demo) == before


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_cancelled_mid_copy_then_resumed_rewrites_no_acknowledged_chunk(
    w: World, via: str
) -> None:
    demo = await w.demo(mib=3, chunk_size=64 * 1024)
    backup = await w.backup_canister(demo)
    w.net.faults.set(latency_s={"call": 0.05, "query": 0.01})
    w.progress = halfway = _Halfway(512 * 1024)
    engine = w.engine(concurrency=2, transfer=Transfer(max_size=256 * 1024))
    task = asyncio.create_task(run_backup(engine, ref(demo), ref(backup), via=via))
    await halfway.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    w.net.faults.reset()
    first = (await engine.store.list_jobs())[0]
    assert first.phase == Phase.CANCELLED
    acked_before = (await engine.store.load(first.id)).acked
    assert acked_before
    moved = w.progress.bytes_advanced()

    async with w.engine(concurrency=2, transfer=Transfer(max_size=256 * 1024)) as again:
        outcome = await run_backup(again, ref(demo), ref(backup), via=via)
    assert outcome.ok, outcome.error
    assert outcome.resumed
    assert outcome.job.id == first.id
    # Copied are exactly the chunks the target did not hold, and it held at
    # least every chunk acknowledged before the cancellation.
    image = image_of(outcome.state)
    assert image is not None
    assert outcome.chunks_skipped >= len(acked_before)
    assert outcome.chunks_copied + outcome.chunks_skipped == image.chunk_count
    assert moved < image.size
    # The cancelled run and the run that finished the job each ended once;
    # the finished job is no longer in the gauge.
    finished = "replicator_jobs_finished_total"
    assert counter(w.metrics, finished, kind="backup", outcome="done") == 1
    assert counter(w.metrics, finished, kind="backup", outcome="cancelled") == 1
    for phase in ("pending", "preparing", "copying", "committing", "verifying"):
        assert counter(w.metrics, "replicator_jobs", kind="backup", state=phase) == 0
    assert outcome.target_digest == outcome.digest


class _Halfway(RecordingProgress):
    """Records events and says when ``threshold`` bytes were acknowledged."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.reached = asyncio.Event()

    def advanced(self, job: Job, nbytes: int) -> None:
        super().advanced(job, nbytes)
        if self.bytes_advanced() >= self.threshold:
            self.reached.set()


async def test_a_trusted_peer_backs_up_through_the_relay_when_it_may_not_grant_pushes(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    peer = w.stranger.identity.principal
    await IcrpClient(w.agent, demo).set_peers([peer])  # read rights, no controller rights
    backup = await w.backup_canister(demo, peers=(peer,))
    async with w.engine(agent=w.stranger) as engine:
        insisted = await run_backup(engine, ref(demo), ref(backup), via="direct")
        outcome = await run_backup(engine, ref(demo), ref(backup))  # the default path: direct
    assert insisted.exit_code == EXIT_ACCESS_DENIED
    assert "--via relay" in (insisted.error or "")
    assert outcome.ok, outcome.error
    assert outcome.route == "relay"
    assert any("using the relay path" in note for note in outcome.notes)
