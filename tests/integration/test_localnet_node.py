"""localnet as a whole: restart with --state-dir, the CLI, faults end to end, HTTP errors."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import cbor2
import httpx
import pytest
from icp_candid import Types, decode, encode

from canister_iface.agent import Agent
from canister_iface.errors import PermanentError, TransientError
from localnet import LocalNet, ids
from localnet.clock import Clock
from localnet.process import LocalNetProcess

pytestmark = pytest.mark.integration

COUNTER = (Path(__file__).resolve().parents[1] / "canisters/wasm/counter.wasm").read_bytes()
CALLER = (Path(__file__).resolve().parents[1] / "canisters/wasm/caller.wasm").read_bytes()
EMPTY = encode([])


def nat(reply: bytes) -> int:
    value = decode(reply, [Types.Nat])[0]["value"]
    assert isinstance(value, int)
    return value


async def test_state_dir_survives_a_clean_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with LocalNet(state_dir=state) as net:
        canister = await net.create_canister()
        await net.install_code(canister, COUNTER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            for _ in range(3):
                await agent.update(canister, "inc", EMPTY)
        root_key = net.root_key
        await net.management(
            "take_canister_snapshot",
            encode(
                [
                    {
                        "type": Types.Record({"canister_id": Types.Principal}),
                        "value": {"canister_id": canister},
                    }
                ]
            ),
            caller=ids.ANONYMOUS,
        )
    async with LocalNet(state_dir=state) as net:
        assert net.root_key == root_key  # agents keep trusting the same key
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            assert nat(await agent.query(canister, "get", EMPTY)) == 3
            assert nat(await agent.update(canister, "inc", EMPTY)) == 4
        assert len(net.replica.canisters[canister].snapshots) == 1
        second = await net.create_canister()
        assert second != canister  # ids are not reused after a restart


async def test_damaged_state_dir_is_refused_with_a_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "localnet.cbor").write_bytes(b"\xff not cbor")
    with pytest.raises(Exception, match="damaged"):
        LocalNet(state_dir=state)


async def test_cli_process_serves_and_stops_cleanly_with_saved_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = LocalNetProcess(state_dir=state)
    await proc.start()
    async with httpx.AsyncClient() as http:
        status = cbor2.loads((await http.get(f"{proc.url}/api/v2/status")).content)
    assert status["root_key"] == proc.root_key
    assert await proc.stop(signal.SIGTERM) == 0
    assert (state / "localnet.cbor").exists()


async def test_injected_transient_rejects_and_http_faults_reach_the_client() -> None:
    async with LocalNet(seed=7) as net:
        canister = await net.create_canister()
        await net.install_code(canister, COUNTER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            net.faults.set(transient_reject=1.0, transient_methods={"inc"})
            with pytest.raises(TransientError) as err:
                await agent.update(canister, "inc", EMPTY)
            assert "reject code 2" in str(err.value)
            net.faults.reset()
            async with httpx.AsyncClient() as http:
                response = await http.put(
                    f"{net.url}/_/faults", json={"http_429": {"query": 1.0}, "retry_after_s": 3}
                )
                assert response.status_code == 200
            with pytest.raises(TransientError) as err:
                await agent.query(canister, "get", EMPTY)
            assert err.value.retry_after == 3
            net.faults.reset()
            assert nat(await agent.query(canister, "get", EMPTY)) == 0


async def test_injected_latency_slows_calls_down() -> None:
    async with LocalNet() as net:
        canister = await net.create_canister()
        await net.install_code(canister, COUNTER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            net.faults.set(latency_s={"query": 0.2})
            start = time.perf_counter()
            await agent.query(canister, "get", EMPTY)
            assert time.perf_counter() - start >= 0.2


async def test_stopped_canister_fault_gives_the_ic_reject() -> None:
    async with LocalNet() as net:
        canister = await net.create_canister()
        await net.install_code(canister, COUNTER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            net.faults.set(stopped_canisters={canister})
            # The agent treats a stopped canister as transient: it may be mid-upgrade.
            with pytest.raises(TransientError) as err:
                await agent.update(canister, "inc", EMPTY)
            assert err.value.error_code == "IC0508"


async def test_bad_envelopes_get_the_replicas_http_status() -> None:
    async with LocalNet() as net:
        canister = await net.create_canister()
        text = ids.to_text(canister)
        async with httpx.AsyncClient(base_url=net.url) as http:
            garbage = await http.post(
                f"/api/v3/canister/{text}/query",
                content=b"\x00garbage",
                headers={"content-type": "application/cbor"},
            )
            assert garbage.status_code == 400
            assert garbage.text  # a readable reason
            expired = {
                "request_type": "call",
                "canister_id": canister,
                "method_name": "inc",
                "arg": EMPTY,
                "sender": ids.ANONYMOUS,
                "ingress_expiry": 1,
            }
            response = await http.post(
                f"/api/v4/canister/{text}/call",
                content=cbor2.dumps({"content": expired}),
                headers={"content-type": "application/cbor"},
            )
            assert response.status_code == 400
            assert "ingress_expiry" in response.text
            big = await http.post(
                f"/api/v4/canister/{text}/call",
                content=b"x" * (6 << 20),
                headers={"content-type": "application/cbor"},
            )
            assert big.status_code == 413


async def test_timers_fire_on_their_own_in_a_running_localnet() -> None:
    async with LocalNet() as net:
        canister = await net.create_canister()
        await net.install_code(canister, CALLER)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await agent.update(canister, "schedule", encode([{"type": Types.Nat, "value": 1}]))
            assert nat(await agent.query(canister, "fired", EMPTY)) == 0
            deadline = time.monotonic() + 10
            while nat(await agent.query(canister, "fired", EMPTY)) == 0:
                assert time.monotonic() < deadline, "the 1 s timer did not fire within 10 s"
                await asyncio.sleep(0.1)


async def test_controllable_time_fires_timers_without_waiting() -> None:
    # Frozen at "now": ingress expiry is checked against localnet's time, as on the IC.
    async with LocalNet(clock=Clock(frozen_at_ns=time.time_ns())) as net:
        canister = await net.create_canister()
        await net.install_code(canister, CALLER)
        # The agent checks certificate times against its clock: let it follow localnet's.
        async with Agent(
            net.url, network="local", root_key=net.root_key, clock=lambda: net.clock.peek_ns() / 1e9
        ) as agent:
            await agent.update(canister, "schedule", encode([{"type": Types.Nat, "value": 3600}]))
            net.clock.advance(3601)
            await net.tick()
            assert nat(await agent.query(canister, "fired", EMPTY)) == 1


async def test_an_injected_payload_cap_refuses_larger_messages() -> None:
    async with LocalNet() as net:
        canister = await net.create_canister()
        await net.install_code(canister, COUNTER)
        blob = encode([{"type": Types.Vec(Types.Nat8), "value": b"x" * 5000}])
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            assert nat(await agent.update(canister, "store_size", blob)) == 5000
            net.faults.set(payload_cap=4096)
            with pytest.raises(PermanentError, match="larger than the max allowed 4096"):
                await agent.update(canister, "store_size", blob)
            # Replies are capped too: a 5000-byte reply traps like an oversized one on the IC.
            with pytest.raises(PermanentError, match="application payload size"):
                await agent.update(
                    canister, "big_reply", encode([{"type": Types.Nat, "value": 5000}])
                )
