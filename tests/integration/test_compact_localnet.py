"""``compact`` on localnet over HTTP: a canister that deleted half its data shrinks.

The demo app's memory never shrinks after a delete; compact freezes its
image, verifies it in a backup canister, reinstalls the canister and
restores the image, so ``memory_size`` drops and every record stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import World, ref, world
from icp_candid import Types

from canister_iface import icrp_errors as errs
from canister_iface.candid_value import as_variant, decode_single, encode_values
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_errors import error_from_candid
from canister_iface.icrp_types import KeyRange, Record
from canister_iface.principal import Principal
from replicator.errors import ReplicatorError
from replicator.flows.compact import kind as compact
from replicator.flows.compact import machine as cm
from replicator.job import Phase

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as made:
        yield made


async def records_of(icrp: IcrpClient) -> dict[bytes, bytes]:
    held: dict[bytes, bytes] = {}
    cursor: bytes | None = None
    while True:
        batch = await icrp.export_range(KeyRange(), cursor, 1_000_000)
        held.update((r.key, r.value) for r in batch.records)
        if batch.next_cursor is None:
            return held
        cursor = batch.next_cursor


async def half_deleted(w: World) -> Principal:
    """A demo app of ~6 MiB that deleted about half of its records."""
    demo = await w.demo(mib=6)
    icrp = IcrpClient(w.agent, demo)
    keys = sorted(await records_of(icrp))
    upper = keys[len(keys) // 2]
    cursor: bytes | None = None
    while True:
        step = await icrp.delete_range(KeyRange(b"", upper), cursor, 10_000)
        if step.next_cursor is None:
            return demo
        cursor = step.next_cursor


async def test_compact_shrinks_memory_and_keeps_every_record(w: World) -> None:
    demo = await half_deleted(w)
    icrp = IcrpClient(w.agent, demo)
    before = await records_of(icrp)
    async with w.engine() as engine:
        outcome = await engine.submit(compact.request(ref(demo), name="demo-compact"))
    assert outcome.ok, outcome.error
    details = outcome.to_json()
    assert details["memory_after"] < details["memory_before"]
    assert await records_of(icrp) == before
    info = await icrp.info()
    assert info.mode is not None
    assert info.mode.mode == "primary"
    await icrp.import_records([Record(b"\xffafter", b"writes work again")])
    # The image stays in the backup canister, verified.
    backup = IcrpClient(w.agent, Principal.from_text(details["backup"].split("@")[0]))
    images = await backup.list_images()
    assert images[-1].digest is not None
    assert images[-1].digest.hex() == details["digest"]


async def test_compact_resumes_after_a_cancel_without_losing_anything(w: World) -> None:
    demo = await half_deleted(w)
    icrp = IcrpClient(w.agent, demo)
    before = await records_of(icrp)
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(compact.request(ref(demo))))
        job_id = await _at_step(w, "restore")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    state = (await w.stores[-1].load(job_id)).state
    assert state.phase == Phase.CANCELLED
    # Fenced or being restored: app writes are refused, not lost.
    arg = encode_values([(Types.Text, "late"), (Types.Text, "refused")])
    reply = decode_single(await w.agent.update(demo, "create_user", arg), "create_user")
    tag, why = as_variant(reply, ("ok", "err"), "create_user")
    assert tag == "err"
    refusal = error_from_candid(as_variant(why, ("invalid", "refused"), "WriteError")[1])
    assert isinstance(refusal, errs.NotWritable)
    async with w.engine() as engine:
        outcome = await engine.submit(compact.request(ref(demo)))
    assert outcome.ok, outcome.error
    assert outcome.resumed
    assert await records_of(icrp) == before


async def _at_step(w: World, step: str, steps: tuple[str, ...] = cm.STEPS) -> str:
    order = steps.index(step)
    for _ in range(5000):
        store = w.stores[-1]
        for job in await store.list_jobs():
            at = (await store.load(job.id)).state.detail.get("step")
            if at in steps and steps.index(at) >= order:
                return job.id
        await asyncio.sleep(0.005)
    raise AssertionError(f"the job never reached {step}")


async def test_compact_refuses_a_canister_it_does_not_control(w: World) -> None:
    demo = await w.demo(mib=1)
    async with w.engine(agent=w.stranger) as engine:
        with pytest.raises(ReplicatorError):
            await engine.submit(compact.request(ref(demo)))
    assert await w.store().registry.entries() == []


# ------------------------------------------------------ into a new canister


async def _write_user(w: World, canister: Principal, name: str) -> tuple[str, object]:
    """create_user on ``canister``: ("ok", id) or ("refused", the ICRP error)."""
    arg = encode_values([(Types.Text, name), (Types.Text, "bio")])
    reply = decode_single(await w.agent.update(canister, "create_user", arg), "create_user")
    tag, payload = as_variant(reply, ("ok", "err"), "create_user")
    if tag == "ok":
        return tag, payload
    return "refused", error_from_candid(as_variant(payload, ("invalid", "refused"), "err")[1])


async def _check_moved(
    w: World, old: Principal, new: Principal, before: dict[bytes, bytes]
) -> None:
    """Every record is in ``new``, which takes writes; ``old`` routes everything to it."""
    fresh = IcrpClient(w.agent, new)
    assert await records_of(fresh) == before
    assert await w.agent.controllers(new) == [w.me.principal]  # exactly the configured ones
    info = await fresh.info()
    assert info.mode is not None
    assert info.mode.mode == "primary"
    tag, refusal = await _write_user(w, old, "late")
    assert tag == "refused"
    assert isinstance(refusal, errs.OutOfRange)
    assert refusal.owner == new  # a client follows it
    routing = await IcrpClient(w.agent, old).routing()
    assert [r.canister for r in routing.routes] == [new]
    assert routing.owner(b"any key") == new
    assert await fresh.routing() == routing
    assert (await _write_user(w, new, "followed"))[0] == "ok"


async def test_compact_into_a_new_canister_switches_routing(w: World) -> None:
    demo = await half_deleted(w)
    before = await records_of(IcrpClient(w.agent, demo))
    async with w.engine() as engine:
        outcome = await engine.submit(compact.request(ref(demo), new_canister=True, name="n"))
    assert outcome.ok, outcome.error
    details = outcome.to_json()
    new = Principal.from_text(details["new_canister"].split("@")[0])
    assert new != demo
    assert details["memory_after"] < details["memory_before"]
    await _check_moved(w, demo, new, before)
    # The old canister keeps its records (no free_old) and is left for the operator.
    assert await records_of(IcrpClient(w.agent, demo)) == before
    assert any("left in place for you to delete" in n for n in outcome.notes)
    assert await w.stores[-1].registry.get("local", demo.to_text(), "compact-new") is None
    # Compacting the old canister again is refused: its keys belong to the new one.
    async with w.engine() as engine:
        with pytest.raises(ReplicatorError, match="fenced key ranges"):
            await engine.submit(compact.request(ref(demo), new_canister=True))


async def test_compact_into_a_new_canister_resumes_and_creates_one_canister(w: World) -> None:
    demo = await half_deleted(w)
    before = await records_of(IcrpClient(w.agent, demo))
    request = compact.request(ref(demo), new_canister=True, free_old=True)
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(request))
        job_id = await _at_step(w, "copy", cm.NEW_CANISTER_STEPS)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    planned = (await w.stores[-1].load(job_id)).state.job.target
    async with w.engine() as engine:
        outcome = await engine.submit(compact.request(ref(demo), new_canister=True, free_old=True))
    assert outcome.ok, outcome.error
    assert outcome.resumed
    details = outcome.to_json()
    assert details["new_canister"] == str(planned)  # the same canister: none created twice
    new = Principal.from_text(details["new_canister"].split("@")[0])
    await _check_moved(w, demo, new, before)
    # free_old: the old canister's records are deleted.
    assert details["old_records_deleted"] == len(before)
    assert await records_of(IcrpClient(w.agent, demo)) == {}


async def test_free_old_without_a_new_canister_is_refused(w: World) -> None:
    demo = await w.demo(mib=1)
    async with w.engine() as engine:
        with pytest.raises(ReplicatorError, match="needs new_canister"):
            await engine.submit(compact.request(ref(demo), free_old=True))
