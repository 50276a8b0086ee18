"""The standby kind through the engine, against the demo app on localnet over HTTP.

A standby is seeded with the source's image and then follows its journal
while the source keeps taking writes; a restarted job continues from the
standby's applied sequence; a journal that no longer reaches the standby
makes it seed again (and the old state serves meanwhile); a second writer
on the standby (``Gap``) stops the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from engine_support import DEMO_WASM, SETTINGS, World, ref, world

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.candid_value import encode_value
from canister_iface.icrp import IcrpClient
from canister_iface.principal import Principal
from replicator.engine import Engine
from replicator.errors import EXIT_FAILED
from replicator.flows.standby import kind as standby
from replicator.flows.standby.promote import promote
from replicator.job import JobOutcome, Phase

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


async def head(w: World, canister: Principal) -> int:
    journal = (await IcrpClient(w.agent, canister).info()).journal
    assert journal is not None
    return journal.head_seq


async def caught_up(w: World, source: Principal, stb: Principal) -> int:
    """Wait (at most 30 s) until the standby applied the source's head; return it."""
    async with asyncio.timeout(30):
        while (want := await head(w, source)) != await head(w, stb):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return want


async def writes(w: World, canister: Principal, count: int, prefix: str = "u") -> None:
    for i in range(count):
        await w.add_user(canister, f"{prefix}{i}")


async def journal_entries(w: World, canister: Principal, entries: int) -> None:
    settings = {
        "chunk_size": 256 * 1024,
        "journal_max_entries": entries,
        "journal_max_bytes": 1 << 20,
        "step_instructions": 20_000_000_000,
        "step_bytes": 64 << 20,
    }
    await w.ok(canister, "set_replication_settings", encode_value(SETTINGS, settings))


def sample(w: World, metric: str, **labels: str) -> float:
    value = w.metrics.registry.get_sample_value(metric, {"name": "t", **labels})
    return 0.0 if value is None else value


async def stop(task: asyncio.Task[JobOutcome]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def follow(engine: Engine, source: Principal, stb: Principal, **options: Any) -> JobOutcome:
    return await engine.submit(standby.request(ref(source), ref(stb), name="t", **options))


async def test_a_standby_is_seeded_and_follows_its_source_under_writes(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb, check_interval=0.3, poll_max=0.2))
        await writes(w, source, 40)
        seq = await caught_up(w, source, stb)
        assert await w.fingerprint(stb) == await w.fingerprint(source)
        await writes(w, source, 10, "more")  # and on, with a consistency check meanwhile
        assert await caught_up(w, source, stb) == seq + 10
        await asyncio.sleep(0.8)
        await stop(job)
    assert await w.fingerprint(stb) == await w.fingerprint(source)
    # The standby refuses application writes.
    with pytest.raises(AssertionError, match="create_user"):
        await w.add_user(stb, "eve")
    assert sample(w, "replicator_standby_applied_changes_total") >= 10  # some came with the seed
    assert sample(w, "replicator_standby_applied_seq") == seq + 10
    assert sample(w, "replicator_standby_lag_changes") == 0
    assert sample(w, "replicator_standby_consistency_checks_total", outcome="match") >= 1
    assert sample(w, "replicator_standby_consistency_checks_total", outcome="mismatch") == 0


async def test_a_restarted_job_continues_from_the_standbys_sequence(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb))
        await caught_up(w, source, stb)
        await stop(job)
    await writes(w, source, 25)  # while nobody follows
    async with w.engine() as engine:  # a new process: only the store and the standby know
        again = await follow(engine, source, stb, once=True)
    assert again.ok, again.error
    assert again.resumed
    assert again.bytes_copied == 0  # no second seed
    assert again.details["changes_applied"] == 25
    assert again.details["resyncs"] == 0
    assert await head(w, stb) == await head(w, source)
    assert await w.fingerprint(stb) == await w.fingerprint(source)


async def test_a_journal_that_no_longer_reaches_the_standby_makes_it_seed_again(
    w: World,
) -> None:
    source = await w.demo(mib=1)
    await journal_entries(w, source, 10)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb))
        await caught_up(w, source, stb)
        await stop(job)
        old = await w.fingerprint(stb)
        await writes(w, source, 30)  # 30 changes > 10 kept: the standby's sequence is gone
        with pytest.raises(ie.TooOld):
            await IcrpClient(w.agent, source).changes(await head(w, stb), 1000)
        job = asyncio.ensure_future(follow(engine, source, stb, once=True))
        # The standby keeps answering with its old state until the new image commits.
        while not job.done():
            assert await w.fingerprint(stb) in (old, await w.fingerprint(source))
            await asyncio.sleep(0.02)
        again = await job
    assert again.ok, again.error
    assert again.details["resyncs"] == 1
    assert again.bytes_copied > 0
    assert sample(w, "replicator_standby_resyncs_total", reason="too_old") == 1
    assert await w.fingerprint(stb) == await w.fingerprint(source)
    assert any("no longer reaches back" in n for n in again.notes)


async def test_a_second_writer_on_the_standby_stops_the_job(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb, poll_max=0.1))
        await caught_up(w, source, stb)
        await writes(w, source, 1, "first")
        seq = await caught_up(w, source, stb)
        while sample(w, "replicator_standby_applied_seq") != seq:  # noqa: ASYNC110 (a gauge)
            await asyncio.sleep(0.01)  # the tail applied it
        # Someone else moves the standby's sequence back under the job's feet.
        await IcrpClient(w.agent, stb).reset_journal(seq - 5)
        await writes(w, source, 3)
        outcome = await asyncio.wait_for(job, 30)
    assert outcome.phase == Phase.FAILED
    assert outcome.exit_code == EXIT_FAILED
    assert outcome.state.error is not None
    assert "second writer" in outcome.state.error


# ------------------------------------------------------------------ promote


async def refused(w: World, canister: Principal) -> bool:
    try:
        await w.add_user(canister, "late")
    except AssertionError:
        return True
    return False


async def test_promote_fences_drains_compares_and_switches(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb, poll_max=0.5))
        await caught_up(w, source, stb)
        await writes(w, source, 20)  # the last of them still on their way when we promote
        notes: list[str] = []
        done = await promote(engine.calls(notes.append), ref(stb))
        await stop(job)
        assert done.new_primary == ref(stb)
        assert done.old_primary == ref(source)
        assert done.fenced
        assert not done.forced
        assert done.applied_seq == done.final_seq == await head(w, source)
        assert done.digest is not None
        assert done.to_json()["rpo"]["lost_changes"] == 0
        # The fenced primary refuses writes; the new one takes them.
        assert await refused(w, source)
        assert await w.fingerprint(stb) == await w.fingerprint(source)
        await w.add_user(stb, "after the failover")
        # A standby job does not demote a promoted canister behind the operator's back.
        again = await follow(engine, source, stb, once=True)
        assert again.phase == Phase.FAILED
        assert again.state.error is not None
        assert "does not demote" in again.state.error
        # Reverse: the old primary becomes the standby of the new one.
        back = await follow(engine, stb, source, once=True)
    assert back.ok, back.error
    assert await w.fingerprint(source) == await w.fingerprint(stb)
    assert await refused(w, source)  # a standby now


async def test_a_forced_promotion_states_what_may_be_lost(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb))
        applied = await caught_up(w, source, stb)
        await stop(job)
        await writes(w, source, 5)  # nobody follows: these are lost in a failover
        done = await promote(engine.calls(lambda _t: None), ref(stb), force=True)
    assert done.forced
    assert done.fenced  # it answered, so it is fenced: no split brain
    assert done.applied_seq == applied
    assert done.final_seq == applied + 5
    assert done.lost_changes == 5
    rpo = done.to_json()["rpo"]
    assert rpo["window_seconds"] is not None
    assert rpo["window_seconds"] >= 0
    assert await refused(w, source)
    await w.add_user(stb, "after")


async def test_a_forced_promotion_of_a_standby_whose_primary_is_stopped(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb))
        await caught_up(w, source, stb)
        await writes(w, source, 3)  # applied by the tail: in the standby's own journal
        applied = await caught_up(w, source, stb)
        await stop(job)
        await w.mgmt.stop_canister(source)
        with pytest.raises(Exception, match=r"stopped|Stopped|not running|reject"):
            await promote(engine.calls(lambda _t: None), ref(stb))  # the normal way needs it
        assert (await IcrpClient(w.agent, stb).info()).mode.mode == "standby"  # type: ignore[union-attr]
        notes: list[str] = []
        done = await promote(engine.calls(notes.append), ref(stb), force=True)
    assert not done.fenced
    assert done.lost_changes is None
    assert done.applied_seq == applied
    assert done.last_applied_ns is not None
    assert any("does not answer" in n for n in notes), notes
    await w.add_user(stb, "after")


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """Our own calls meet the injected faults too (refused before they ran): again."""
    while True:
        try:
            return await call()
        except ic.TransientError:
            await asyncio.sleep(0.01)


REASONS = ("rate_limited", "overloaded", "reject_transient")


def retried(w: World, reason: str) -> float:
    return w.metrics.registry.get_sample_value("replicator_retries_total", {"reason": reason}) or 0


async def test_a_standby_follows_through_429_503_and_transient_rejects(w: World) -> None:
    source = await w.demo(mib=1)
    stb = await w.create(DEMO_WASM)
    async with w.engine() as engine:
        job = asyncio.ensure_future(follow(engine, source, stb, poll_max=0.2))
        await caught_up(w, source, stb)
        w.net.faults.set(
            seed=5,
            http_429={"call": 0.3},
            http_503={"query": 0.3},
            transient_reject=0.3,
            transient_methods={"icrp_apply"},
        )
        try:
            # Write until the standby has met each fault at least once: how many
            # of its calls a 30 % fault hits depends on how it batches.
            for i in range(400):
                await patiently(lambda i=i: w.add_user(source, f"f{i}"))
                if i >= 30 and all(retried(w, r) for r in REASONS):
                    break
            want = await patiently(lambda: head(w, source))
            async with asyncio.timeout(60):
                while sample(w, "replicator_standby_applied_seq") != want:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            w.net.faults.reset()
        await stop(job)
    assert await w.fingerprint(stb) == await w.fingerprint(source)
    seen = {r: retried(w, r) for r in REASONS}
    assert all(seen.values()), seen
