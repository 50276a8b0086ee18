"""The subnet model: rounds, block limits, delivery rounds, queue bounds, routing.

Rounds are driven by hand (``rounds_per_second=0``) and ingress messages are
submitted to the node the way the HTTP layer does after validating an
envelope, so each test can say exactly in which round something happens.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from icp_candid import Types, decode, encode

from localnet import LocalNet, ids
from localnet.errors import RejectCode
from localnet.execution import RejectResponse
from localnet.fabric import SubnetModel
from localnet.limits import MiB
from localnet.node_api import Overloaded, Request
from localnet.replica import CallMessage, CanisterOrigin, ResponseMessage
from localnet.subnets import RANGE_SIZE, canister_range

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
CALLER = (WASM / "caller.wasm").read_bytes()
MANUAL = SubnetModel(rounds_per_second=0)


@pytest.fixture
async def net() -> AsyncIterator[LocalNet]:
    async with LocalNet(subnets=2, subnet_model=MANUAL) as net:
        yield net


async def deploy(net: LocalNet, wasm: bytes, subnet: int = 0) -> bytes:
    canister = await net.create_canister(subnet=subnet)
    await net.install_code(canister, wasm)
    return canister


async def submit(
    net: LocalNet, canister: bytes, method: str, arg: bytes = b"DIDL\x00\x00"
) -> bytes:
    request_id = os.urandom(32)
    request = Request(
        request_type="call",
        request_id=request_id,
        sender=ids.ANONYMOUS,
        ingress_expiry=time.time_ns() + 240 * 10**9,
        effective_canister_id=canister,
        canister_id=canister,
        method_name=method,
        arg=arg,
    )
    await net.node.submit_call(request)
    return request_id


def status(net: LocalNet, request_id: bytes) -> str:
    for subnet in net.subnets:
        if (record := subnet.replica.requests.get(request_id)) is not None:
            return record.status
    return "unknown"


async def rounds_until_done(net: LocalNet, request_id: bytes, limit: int = 20) -> int:
    """Run rounds until the call is answered; returns the round that answered it."""
    for _ in range(limit):
        await net.run_rounds(1)
        if status(net, request_id) in ("replied", "rejected"):
            return net.round
    raise AssertionError(f"not answered after {limit} rounds: {status(net, request_id)}")


def principal_arg(canister: bytes) -> bytes:
    return encode([{"type": Types.Principal, "value": ids.to_text(canister)}])


def reply_of(net: LocalNet, request_id: bytes) -> object:
    record = net.replica.requests[request_id]
    assert record.reply is not None, record.reject
    return decode(record.reply)[0]["value"]


# --- delivery rounds ------------------------------------------------------------------


async def test_ingress_waits_for_the_next_block(net: LocalNet) -> None:
    counter = await deploy(net, COUNTER)
    request_id = await submit(net, counter, "inc")
    await net.node.executor.run(net.fabric.drain)  # what the HTTP path does after a submit
    assert status(net, request_id) == "received"
    assert await rounds_until_done(net, request_id) == 1


async def test_same_subnet_call_takes_a_round_each_way(net: LocalNet) -> None:
    caller, counter = await deploy(net, CALLER), await deploy(net, COUNTER)
    request_id = await submit(net, caller, "call_inc", principal_arg(counter))
    # round 1: caller runs and calls; round 2: counter runs; round 3: the response.
    assert await rounds_until_done(net, request_id) == 3
    assert reply_of(net, request_id) == 1


async def test_cross_subnet_call_lands_rounds_later(net: LocalNet) -> None:
    caller, remote = await deploy(net, CALLER), await deploy(net, COUNTER, subnet=1)
    assert net.subnet_of(remote).index == 1
    request_id = await submit(net, caller, "call_inc", principal_arg(remote))
    # round 1: the call leaves subnet 0; round 3: subnet 1 runs it; round 5: the reply.
    assert await rounds_until_done(net, request_id) == 5
    assert reply_of(net, request_id) == 1


async def test_inner_rounds_deliver_same_subnet_calls_in_the_round() -> None:
    async with LocalNet(subnet_model=SubnetModel(rounds_per_second=0, local_delay_rounds=0)) as net:
        caller, counter = await deploy(net, CALLER), await deploy(net, COUNTER)
        request_id = await submit(net, caller, "call_inc", principal_arg(counter))
        assert await rounds_until_done(net, request_id) == 1


async def test_without_a_model_two_subnets_run_everything_at_once() -> None:
    async with LocalNet(subnets=2) as net:
        caller, remote = await deploy(net, CALLER), await deploy(net, COUNTER, subnet=1)
        request_id = await submit(net, caller, "call_inc", principal_arg(remote))
        await net.tick()
        assert status(net, request_id) == "replied"
        assert net.round == 0


# --- block limits -----------------------------------------------------------------


async def test_a_block_carries_at_most_the_message_limit() -> None:
    async with LocalNet(
        subnet_model=SubnetModel(rounds_per_second=0, block_ingress_messages=3)
    ) as net:
        counter = await deploy(net, COUNTER)
        requests = [await submit(net, counter, "inc") for _ in range(7)]
        done = []
        for _ in range(3):
            await net.run_rounds(1)
            done.append(sum(status(net, r) == "replied" for r in requests))
        assert done == [3, 6, 7]
        assert net.fabric.stats.full_blocks == 2
        # FIFO: the counter saw the messages in submission order.
        assert [reply_of(net, r) for r in requests] == list(range(1, 8))


async def test_a_block_carries_at_most_the_byte_limit() -> None:
    model = SubnetModel(rounds_per_second=0, block_bytes=2 * MiB)
    async with LocalNet(subnet_model=model) as net:
        counter = await deploy(net, COUNTER)
        blob = encode([{"type": Types.Vec(Types.Nat8), "value": b"x" * (900 * 1024)}])
        requests = [await submit(net, counter, "store_size", blob) for _ in range(5)]
        done = []
        for _ in range(3):
            await net.run_rounds(1)
            done.append(sum(status(net, r) == "replied" for r in requests))
        assert done == [2, 4, 5]  # two 900 KiB messages fit into 2 MiB, three do not
        assert net.fabric.stats.ingress_bytes >= 5 * 900 * 1024


async def test_expired_ingress_is_dropped_before_a_block_carries_it(net: LocalNet) -> None:
    counter = await deploy(net, COUNTER)
    request_id = await submit(net, counter, "inc")
    net.clock.advance(600)  # past the 4-minute expiry
    await net.run_rounds(1)
    assert status(net, request_id) == "unknown"
    assert net.fabric.stats.ingress_expired == 1


# --- queue bounds --------------------------------------------------------------------


async def test_a_full_ingress_pool_sheds_load_with_503() -> None:
    # The IC bounds no canister's ingress queue, only the node's ingress pool.
    model = SubnetModel(rounds_per_second=0, ingress_pool_messages=3, ingress_pool_bytes=400)
    async with LocalNet(subnet_model=model) as net:
        counter = await deploy(net, COUNTER)
        for _ in range(3):
            await submit(net, counter, "inc")
        with pytest.raises(Overloaded, match=r"^Service is overloaded, try again later\.$"):
            await submit(net, counter, "inc")
        await net.run_rounds(1)  # the block empties the pool
        await submit(net, counter, "inc")
        with pytest.raises(Overloaded):  # 9 bytes waiting + about 400 > 400
            await submit(net, counter, "store_size", blob_arg(380))
        assert net.fabric.stats.ingress_refused == 2


async def test_a_call_holds_its_queue_slot_until_the_response_is_back() -> None:
    async with LocalNet(subnet_model=SubnetModel(rounds_per_second=0, queue_capacity=3)) as net:
        caller, counter = await deploy(net, CALLER), await deploy(net, COUNTER)
        first = await submit(net, caller, "send_many", _two(counter, 3))
        await net.run_rounds(1)  # round 1: three requests leave, each reserving a slot
        assert net.fabric.call_room(net.replica, caller, counter) == 0
        second = await submit(net, caller, "send_many", _two(counter, 1))
        # Round 2: the counter runs the three requests; their responses are still
        # on the way back, so the slots are taken and the fourth call is not made.
        await net.run_rounds(1)
        assert status(net, second) == "rejected"
        assert status(net, first) == "processing"
        await net.run_rounds(1)  # round 3: the responses are back, the slots free
        assert status(net, first) == "replied"
        assert net.fabric.call_room(net.replica, caller, counter) == 3
        third = await submit(net, caller, "send_many", _two(counter, 3))
        await rounds_until_done(net, third)
        assert status(net, third) == "replied"
        assert await _query(net, counter, "log") == [0, 1, 2, 0, 1, 2]


def blob_arg(size: int) -> bytes:
    return encode([{"type": Types.Vec(Types.Nat8), "value": b"x" * size}])


async def test_a_full_canister_queue_fails_call_perform_with_sys_transient() -> None:
    async with LocalNet(subnet_model=SubnetModel(rounds_per_second=0, queue_capacity=10)) as net:
        caller, counter = await deploy(net, CALLER), await deploy(net, COUNTER)
        request_id = await submit(net, caller, "send_many", _two(counter, 15))
        await rounds_until_done(net, request_id)
        record = net.replica.requests[request_id]
        # The 11th ic0.call_perform failed (SYS_TRANSIENT): Motoko throws "could not
        # perform remote call", the message is rejected, and the ten calls already
        # queued were sent and ran.
        assert record.status == "rejected"
        assert record.reject is not None
        assert (record.reject.code, record.reject.message) == (4, "could not perform remote call")
        for _ in range(3):
            await net.run_rounds(1)
        log = await _query(net, counter, "log")
        assert log == list(range(10))


def _two(canister: bytes, n: int) -> bytes:
    return encode(
        [
            {"type": Types.Principal, "value": ids.to_text(canister)},
            {"type": Types.Nat, "value": n},
        ]
    )


async def _query(net: LocalNet, canister: bytes, method: str) -> object:
    request = Request(
        request_type="query",
        request_id=os.urandom(32),
        sender=ids.ANONYMOUS,
        ingress_expiry=time.time_ns() + 60 * 10**9,
        effective_canister_id=canister,
        canister_id=canister,
        method_name=method,
        arg=b"DIDL\x00\x00",
    )
    body = await net.node.query(request)
    assert body["status"] == "replied", body
    return decode(body["reply"]["arg"])[0]["value"]


# --- routing -------------------------------------------------------------------------


async def test_subnets_allocate_from_their_own_ranges(net: LocalNet) -> None:
    first, second = await net.create_canister(), await net.create_canister(subnet=1)
    assert ids.canister_index(first) == 0
    assert ids.canister_index(second) == RANGE_SIZE
    assert canister_range(1)[0] <= second <= canister_range(1)[1]
    chosen = ids.canister_id(RANGE_SIZE + 77)
    assert await net.create_canister(specified_id=chosen) == chosen
    assert net.subnet_of(chosen).index == 1
    assert net.subnets[0].subnet_id != net.subnets[1].subnet_id


async def test_a_cross_subnet_request_over_2_mib_is_rejected_by_the_stream_builder(
    net: LocalNet,
) -> None:
    caller, remote = await deploy(net, CALLER), await deploy(net, COUNTER, subnet=1)
    request = CallMessage(
        callee=remote,
        method="store_size",
        arg=b"x" * (2 * MiB),
        cycles=5,
        sender=caller,
        origin=CanisterOrigin(caller, callback_id=41),
    )
    await net.node.executor.run(net.fabric.send, net.replica, remote, request)
    (bounced,) = net.fabric.pending(0)
    assert isinstance(bounced, ResponseMessage)
    assert bounced.callback_id == 41
    assert bounced.refund == 5
    assert isinstance(bounced.response, RejectResponse)
    assert bounced.response.code == RejectCode.CANISTER_ERROR
    assert bounced.response.message == (
        f"Canister {ids.to_text(caller)} violated contract: attempted to send a message of "
        f"size {2 * MiB + len('store_size')} exceeding the limit {2 * MiB}"
    )
    assert net.fabric.pending(1) == []


def test_the_model_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rounds_per_second"):
        SubnetModel(rounds_per_second=-1)
    with pytest.raises(ValueError, match="xnet_delay_rounds"):
        SubnetModel(xnet_delay_rounds=0)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        SubnetModel.parse("rounds_per_second")
    assert SubnetModel.parse("rounds_per_second=20, queue_capacity=7") == SubnetModel(
        rounds_per_second=20, queue_capacity=7
    )
