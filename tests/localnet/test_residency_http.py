"""Sleeping canisters over the real HTTP interface: concurrent load with two live
canisters out of twelve, ``--state-dir`` starting everything asleep, and
``kill -9`` while canisters fall asleep and wake under load."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from pathlib import Path

import pytest
from icp_candid import Types, decode, encode

from canister_iface.agent import Agent
from canister_iface.management import ManagementClient
from localnet import LocalNet
from localnet.process import LocalNetProcess
from localnet.residency import ResidencyLimits

pytestmark = pytest.mark.integration

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
JOURNAL = (WASM / "journal.wasm").read_bytes()
EMPTY = encode([])


def nat(reply: bytes) -> int:
    value = decode(reply, [Types.Nat])[0]["value"]
    assert isinstance(value, int)
    return value


async def test_concurrent_calls_to_many_canisters_with_two_live(tmp_path: Path) -> None:
    limits = ResidencyLimits(max_resident=2, idle_seconds=0, spill_dir=tmp_path)
    rng = random.Random(7)
    async with LocalNet(residency=limits) as net:
        canisters = []
        for _ in range(12):
            canisters.append(await net.create_canister())
            await net.install_code(canisters[-1], COUNTER)
        incs = dict.fromkeys(canisters, 0)

        async def worker(agent: Agent, seed: int) -> None:
            local = random.Random(seed)
            seen = dict.fromkeys(canisters, 0)  # what this worker saw: never goes back
            for _ in range(25):
                canister = local.choice(canisters)
                if local.random() < 0.6:
                    after = nat(await agent.update(canister, "inc", EMPTY))
                    incs[canister] += 1
                    assert after > seen[canister]
                else:
                    after = nat(await agent.query(canister, "get", EMPTY))
                    assert after >= seen[canister]
                seen[canister] = after

        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await asyncio.gather(*(worker(agent, rng.randrange(1 << 30)) for _ in range(16)))
            for canister in canisters:
                assert nat(await agent.query(canister, "get", EMPTY)) == incs[canister]
        stats = net.engine.residency.stats
        assert stats.wakes >= 100  # nearly every message woke its canister
        assert net.engine.residency.resident <= 2


async def test_a_restarted_state_dir_starts_with_every_canister_asleep(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with LocalNet(state_dir=state) as net:
        canisters = []
        for _ in range(3):
            canisters.append(await net.create_canister())
            await net.install_code(canisters[-1], COUNTER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            for i, canister in enumerate(canisters):
                for _ in range(i + 1):
                    await agent.update(canister, "inc", EMPTY)
    async with LocalNet(state_dir=state) as net:
        assert net.engine.residency.resident == 0
        sandboxes = [net.replica.canisters[c].sandbox for c in canisters]
        assert all(s is not None and s.asleep for s in sandboxes)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            assert [nat(await agent.query(c, "get", EMPTY)) for c in canisters] == [1, 2, 3]
            assert nat(await agent.update(canisters[0], "inc", EMPTY)) == 2
        assert net.engine.residency.resident == 3


JOURNAL_STATE = Types.Record(
    {
        "count": Types.Nat64,
        "heapValues": Types.Vec(Types.Nat64),
        "stableValues": Types.Vec(Types.Nat64),
        "sum": Types.Nat64,
    }
)


async def _add_until_killed(
    agent: Agent, canisters: list[bytes], acked: dict[bytes, set[int]], seed: int
) -> None:
    local = random.Random(seed)
    value = seed * 1_000_000
    with contextlib.suppress(Exception):  # the kill ends the stream
        while True:
            canister = local.choice(canisters)
            value += 1
            await agent.update(canister, "add", encode([{"type": Types.Nat64, "value": value}]))
            acked[canister].add(value)


async def test_kill_9_while_canisters_sleep_and_wake_keeps_every_acknowledged_update(
    tmp_path: Path,
) -> None:
    state_dir, rng = tmp_path / "state", random.Random(99)
    args = ["--max-live-canisters", "1", "--sleep-after", "0", "--spill-dir", str(tmp_path)]
    proc = LocalNetProcess(state_dir=state_dir, extra_args=args)
    await proc.start()
    try:
        root_key = proc.root_key
        async with Agent(proc.url, network="local", root_key=root_key) as agent:
            management = ManagementClient(agent)
            canisters = []
            for _ in range(3):
                canister = (await management.provisional_create_canister_with_cycles()).raw
                await management.install_code(canister, JOURNAL)
                canisters.append(canister)
        acked: dict[bytes, set[int]] = {c: set() for c in canisters}
        for round_ in range(2):
            async with Agent(proc.url, network="local", root_key=root_key) as agent:
                workers = [
                    asyncio.create_task(_add_until_killed(agent, canisters, acked, seed))
                    for seed in range(10 * round_ + 1, 10 * round_ + 7)
                ]
                await asyncio.sleep(rng.uniform(1.0, 2.0))
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
                await asyncio.gather(*workers)
            proc = LocalNetProcess(state_dir=state_dir, extra_args=args)
            await proc.start()
            async with Agent(proc.url, network="local", root_key=root_key) as agent:
                for canister in canisters:
                    reply = await agent.query(canister, "state", EMPTY)
                    state = decode(reply, [JOURNAL_STATE])[0]["value"]
                    values = list(state["heapValues"])
                    assert list(state["stableValues"]) == values
                    assert state["count"] == len(values)
                    missing = acked[canister] - set(values)
                    assert not missing, f"{len(missing)} acknowledged updates lost"
        assert all(acked[c] for c in canisters), "some canister saw no update: the test saw nothing"
    finally:
        await proc.stop(signal.SIGKILL)
