"""localnet --state-dir survives kill -9: every answered update call is kept.

A child localnet (``LocalNetProcess``) serves a stream of concurrent
``add(v)`` calls to the ``journal`` test canister, which records each value
in its heap, in stable memory and in its certified data. It is killed with
SIGKILL at a random moment, several times; after each restart with the same
``--state-dir`` every acknowledged value must be present, and the heap, the
stable memory and the certified data must describe the same values.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from icp_candid import DIDLoader
from icp_candid.candid import decode, encode

from canister_iface.agent import Agent
from canister_iface.certificate import decode_certificate
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from localnet import LocalNet, dirty, persist
from localnet.process import LocalNetProcess

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

WASM = Path(__file__).parents[1] / "canisters" / "wasm"
METHODS = DIDLoader().load_did_source((WASM / "journal.did").read_text())["methods"]
WORKERS = 6


async def call(agent: Agent, canister: Principal, method: str, *args: Any) -> Any:
    func = METHODS[method]
    arg = bytes(encode([{"type": t, "value": v} for t, v in zip(func.argTypes, args, strict=True)]))
    if "query" in func.annotations:
        reply = await agent.query(canister, method, arg)
    else:
        reply = await agent.update(canister, method, arg)
    return decode(reply, func.retTypes)[0]["value"]


@pytest.fixture
def needs_dirty_tracking_for(rollback: str) -> None:
    reason = dirty.probe()
    if rollback == "dirty" and reason is not None:
        pytest.skip(f"dirty-page tracking unavailable here: {reason}")


async def check_consistent(agent: Agent, canister: Principal, acked: set[int]) -> int:
    state = await call(agent, canister, "state")
    values = list(state["heapValues"])
    assert list(state["stableValues"]) == values, "stable memory and heap disagree"
    assert state["count"] == len(values)
    assert state["sum"] == sum(values) % 2**64
    missing = acked - set(values)
    assert not missing, f"{len(missing)} acknowledged updates lost, e.g. {sorted(missing)[:5]}"
    (raw,) = await call(agent, canister, "certificate")
    certified = decode_certificate(bytes(raw)).value("canister", canister.raw, "certified_data")
    assert certified == len(values).to_bytes(8, "big"), "certified data and memories disagree"
    return len(values)


async def load(agent: Agent, canister: Principal, first: int, acked: set[int]) -> None:
    """Sends add(first), add(first + WORKERS), ... until the connection fails."""
    value = first
    with contextlib.suppress(Exception):  # the kill ends the stream
        while True:
            await call(agent, canister, "add", value)
            acked.add(value)
            value += WORKERS


async def test_kill_9_under_load_keeps_every_acknowledged_update(tmp_path: Path) -> None:
    state_dir, rng = tmp_path / "state", random.Random(15)
    proc = LocalNetProcess(state_dir=state_dir)
    await proc.start()
    try:
        root_key = proc.root_key
        async with Agent(proc.url, network="local", root_key=root_key) as agent:
            management = ManagementClient(agent)
            canister = (await management.provisional_create_canister_with_cycles()).raw
            await management.install_code(canister, (WASM / "journal.wasm").read_bytes())
            await call(agent, Principal(canister), "ballast", 8)
        acked: set[int] = set()
        recorded = 0
        for round_ in range(4):
            async with Agent(proc.url, network="local", root_key=root_key) as agent:
                base = 1_000_000 * (round_ + 1)
                workers = [
                    asyncio.create_task(load(agent, Principal(canister), base + w, acked))
                    for w in range(WORKERS)
                ]
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
                await asyncio.gather(*workers)
            proc = LocalNetProcess(state_dir=state_dir)
            await proc.start()
            assert proc.root_key == root_key
            async with Agent(proc.url, network="local", root_key=root_key) as agent:
                now = await check_consistent(agent, Principal(canister), acked)
            assert now > recorded, "no update got through before the kill: the test saw nothing"
            recorded = now
    finally:
        await proc.stop(signal.SIGKILL)


@pytest.mark.parametrize("rollback", ["dirty", "copy"])
async def test_a_torn_journal_tail_is_cut_off(
    tmp_path: Path, rollback: str, needs_dirty_tracking_for: None
) -> None:
    state_dir = tmp_path / "state"
    async with LocalNet(state_dir=state_dir, rollback=rollback) as net:
        canister = await net.create_canister()
        await net.install_code(canister, (WASM / "journal.wasm").read_bytes())
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            for value in range(5):
                await call(agent, Principal(canister), "add", value)
        # A crash instead of a clean stop: keep the journal, lose the rest.
        net._journal.close()  # type: ignore[union-attr]
        journal = (state_dir / persist.JOURNAL).read_bytes()
        shutil.copytree(state_dir, tmp_path / "crashed")
    crashed = tmp_path / "crashed"
    assert journal, "updates must be journaled before they are answered"
    # The last record half written, then garbage: both are dropped.
    (crashed / persist.JOURNAL).write_bytes(journal[:-7] + b"\x00garbage")
    async with (
        LocalNet(state_dir=crashed, rollback=rollback) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        count = await check_consistent(agent, Principal(canister), set(range(4)))
        assert count == 4  # the torn record held the fifth value
        assert await call(agent, Principal(canister), "add", 99) == 5


# Settling Motoko's GC over a 16 MiB heap journals (and fsyncs) many pages:
# ~2 s alone, but 30 s and more while the machine's disk is shared.
@pytest.mark.timeout(420)
@pytest.mark.parametrize("rollback", ["dirty", "copy"])
async def test_the_journal_holds_written_pages_not_the_heap(
    tmp_path: Path, rollback: str, needs_dirty_tracking_for: None
) -> None:
    state_dir = tmp_path / "state"
    async with LocalNet(state_dir=state_dir, rollback=rollback) as net:
        canister = await net.create_canister()
        await net.install_code(canister, (WASM / "journal.wasm").read_bytes())
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await call(agent, Principal(canister), "ballast", 16)
            # Motoko's incremental GC works through the new heap in the
            # next calls: measure after it settled.
            for value in range(40):
                await call(agent, Principal(canister), "add", value)
            journal = state_dir / persist.JOURNAL
            before = journal.stat().st_size
            for value in range(20):
                await call(agent, Principal(canister), "add", value)
            per_call = (journal.stat().st_size - before) / 20
    assert per_call < 256 * 1024, f"{per_call:.0f} bytes journaled per call of a 16 MiB heap"


async def test_grown_stable_memory_is_journaled_as_its_written_pages(tmp_path: Path) -> None:
    # The first `add` makes Motoko's region manager grow stable memory by
    # megabytes of zeros: the journal holds the pages written, and a replay
    # after a crash reads the grown memory back (zeros and the values).
    state_dir, crashed = tmp_path / "state", tmp_path / "crashed"
    async with LocalNet(state_dir=state_dir) as net:
        canister = Principal(await net.create_canister())
        await net.install_code(canister.raw, (WASM / "journal.wasm").read_bytes())
        before = (state_dir / persist.JOURNAL).stat().st_size
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await call(agent, canister, "add", 7)
            await call(agent, canister, "add", 8)
        assert (state_dir / persist.JOURNAL).stat().st_size - before < 256 * 1024
        net._journal.close()  # type: ignore[union-attr]  # a crash: the journal stays
        shutil.copytree(state_dir, crashed)
    async with (
        LocalNet(state_dir=crashed) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        assert await check_consistent(agent, canister, {7, 8}) == 2


async def test_a_crash_between_the_checkpoint_renames_is_repaired(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    async with LocalNet(state_dir=state_dir) as net:
        canister = await net.create_canister()
        await net.install_code(canister, (WASM / "journal.wasm").read_bytes())
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await call(agent, Principal(canister), "add", 7)
    # state-dir was renamed to .old, the new checkpoint is half written.
    state_dir.rename(tmp_path / "state.old")
    (tmp_path / "state.tmp" / "canisters").mkdir(parents=True)
    async with (
        LocalNet(state_dir=state_dir) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        assert await check_consistent(agent, Principal(canister), {7}) == 1
    assert not (tmp_path / "state.old").exists()
    assert not (tmp_path / "state.tmp").exists()
