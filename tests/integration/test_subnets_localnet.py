"""Two subnets and the subnet model over HTTP, with our agent (``canister_iface.agent``).

- a canister on subnet B called from subnet A answers rounds later than a
  call that stays on A;
- certificates from subnet B carry a delegation from the root subnet and
  verify through it; a B certificate cannot vouch for a canister of A;
- queries to B are signed by B's node, whose key the agent reads from a
  certified ``/subnet`` through the delegation;
- a client picks the subnet of a new canister by the effective canister id,
  as on PocketIC; a full ingress pool answers 503; a state dir keeps both
  subnets, their keys and ids.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import httpx
import pytest
from icp_agent.agent import sign_request
from icp_candid import Types, encode
from icp_identity import Identity as IcpIdentity

from canister_iface.agent import Agent
from canister_iface.certificate import (
    CertificateError,
    LookupStatus,
    decode_canister_ranges,
    verify_certificate,
)
from canister_iface.errors import TransientError
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from localnet import LocalNet, SubnetModel, ids
from localnet.persist import StateDirError
from localnet.process import LocalNetProcess
from localnet.subnets import RANGE_SIZE, canister_range

pytestmark = pytest.mark.integration

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
CALLER = (WASM / "caller.wasm").read_bytes()
NAT_ONE = b"DIDL\x00\x01\x7d\x01"


@pytest.fixture
async def net() -> AsyncIterator[LocalNet]:
    async with LocalNet(subnets=2, subnet_model=SubnetModel(rounds_per_second=0)) as net:
        yield net


@pytest.fixture
async def agent(net: LocalNet) -> AsyncIterator[Agent]:
    async with Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent:
        yield agent


async def deploy(net: LocalNet, wasm: bytes, subnet: int = 0) -> bytes:
    canister = await net.create_canister(subnet=subnet)
    await net.install_code(canister, wasm)
    return canister


async def answered_in_round(net: LocalNet, call: asyncio.Task[bytes]) -> int:
    """Run rounds by hand until ``call`` completes; the round that answered it."""
    await reached_the_pool(net, call)
    deadline = time.monotonic() + 30
    while not call.done():
        assert time.monotonic() < deadline, "the call did not complete"
        await net.run_rounds(1)
        await asyncio.sleep(0.02)  # let the HTTP answer reach the agent
    await call
    return net.round


async def reached_the_pool(net: LocalNet, call: asyncio.Task[bytes]) -> None:
    """Wait until ``call`` waits in the ingress pool for a block."""
    deadline = time.monotonic() + 30
    while net.fabric.waiting_ingress() == 0:
        assert time.monotonic() < deadline
        assert not call.done()
        await asyncio.sleep(0.005)


def _principal(canister: bytes) -> bytes:
    return encode([{"type": Types.Principal, "value": ids.to_text(canister)}])


async def test_a_cross_subnet_call_answers_rounds_later_than_a_local_one(
    net: LocalNet, agent: Agent
) -> None:
    caller = await deploy(net, CALLER)
    local, remote = await deploy(net, COUNTER), await deploy(net, COUNTER, subnet=1)

    start = net.round
    call = asyncio.create_task(agent.update(Principal(caller), "call_inc", _principal(local)))
    local_rounds = await answered_in_round(net, call) - start

    start = net.round
    call = asyncio.create_task(agent.update(Principal(caller), "call_inc", _principal(remote)))
    remote_rounds = await answered_in_round(net, call) - start

    # ingress round + 1 there + 1 back, against ingress round + 2 there + 2 back
    assert (local_rounds, remote_rounds) == (3, 5)
    assert net.fabric.stats.xnet_messages == 2


async def test_subnet_b_certificates_verify_through_the_root_delegation(
    net: LocalNet, agent: Agent
) -> None:
    remote = await deploy(net, COUNTER, subnet=1)
    home = await deploy(net, COUNTER)
    subnet_b = net.subnet_of(remote)

    cert = await agent.read_state(Principal(remote), [["canister", remote, "module_hash"]])
    assert cert.delegation is not None
    assert cert.delegation.subnet_id == subnet_b.subnet_id
    assert await agent.module_hash(Principal(remote)) is not None

    # Updates are certified by B (through the delegation); queries signed by B's node.
    update = asyncio.create_task(agent.update(Principal(remote), "inc"))
    await answered_in_round(net, update)
    assert update.result() == NAT_ONE
    assert await agent.query(Principal(remote), "get") == NAT_ONE

    # The delegation's ranges scope it: B cannot vouch for a canister of subnet A.
    certificate = await _raw_certificate(net, remote)
    verify_certificate(certificate, net.root_key, canister_id=remote)
    with pytest.raises(CertificateError, match="outside the canister ranges"):
        verify_certificate(certificate, net.root_key, canister_id=home)


async def _raw_certificate(net: LocalNet, canister: bytes) -> bytes:
    return await net.node.read_state(ids.ANONYMOUS, canister, [[b"time"]])


async def test_root_subnet_certificates_have_no_delegation(net: LocalNet, agent: Agent) -> None:
    home = await deploy(net, COUNTER)
    cert = await agent.read_state(Principal(home), [["subnet", net.subnet_id, "public_key"]])
    assert cert.delegation is None
    assert cert.lookup("subnet", net.subnet_id, "public_key").value == net.root_key
    # Both subnets' keys and ranges are in every subnet's state (the routing table).
    other = net.subnets[1].subnet_id
    cert = await agent.read_state(Principal(home), [["subnet", other, "canister_ranges"]])
    assert cert.lookup("subnet", other, "canister_ranges").value is not None


async def test_the_state_tree_shows_the_topology_as_the_agents_expect(net: LocalNet) -> None:
    """What agent-js and agent-rs read, in a certified subnet read_state of subnet B.

    Every subnet's ``/subnet/<id>/{public_key,canister_ranges}`` (the routing
    table), B's sharded ``/canister_ranges/<B>/<lower bound>``, and the node
    keys of B only (a replica shows no other subnet's nodes).
    """
    subnet_a, subnet_b = net.subnets
    identity = IcpIdentity()
    body = {
        "request_type": "read_state",
        "sender": identity.sender().bytes,
        "ingress_expiry": time.time_ns() + 120 * 1_000_000_000,
        "paths": [[b"canister_ranges", subnet_b.subnet_id], [b"subnet"]],
    }
    _, data = sign_request(body, identity)
    async with httpx.AsyncClient(base_url=net.url) as http:
        response = await http.post(
            f"/api/v3/subnet/{ids.to_text(subnet_b.subnet_id)}/read_state",
            content=data,
            headers={"Content-Type": "application/cbor"},
        )
    assert response.status_code == 200, response.text
    raw = cbor2.loads(response.content)["certificate"]
    cert = verify_certificate(raw, net.root_key, subnet_id=subnet_b.subnet_id)
    assert cert.delegation is not None
    assert cert.delegation.subnet_id == subnet_b.subnet_id

    for subnet in (subnet_a, subnet_b):
        assert cert.value("subnet", subnet.subnet_id, "public_key") == subnet.key.public_key_der
        ranges = cert.value("subnet", subnet.subnet_id, "canister_ranges")
        assert ranges is not None
        assert decode_canister_ranges(ranges) == subnet.canister_ranges
    lo, hi = subnet_b.canister_ranges[0]
    shard = cert.value("canister_ranges", subnet_b.subnet_id, lo)
    assert shard is not None
    assert decode_canister_ranges(shard) == [(lo, hi)]
    node_key = cert.value(
        "subnet", subnet_b.subnet_id, "node", subnet_b.signer.node_id, "public_key"
    )
    assert node_key == subnet_b.signer.public_key_der
    assert len(node_key) == 44
    assert cert.lookup("subnet", subnet_a.subnet_id, "node").status is LookupStatus.ABSENT
    assert subnet_a.key.public_key_der == net.root_key


async def test_a_client_creates_a_canister_on_the_subnet_it_chooses() -> None:
    """As on PocketIC: the effective canister id of the creation picks the subnet."""
    async with (
        LocalNet(subnets=2) as net,
        Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent,
    ):
        await _create_on_each_subnet(net, ManagementClient(agent))


async def _create_on_each_subnet(net: LocalNet, management: ManagementClient) -> None:
    for subnet in net.subnets:
        lo, hi = subnet.canister_ranges[0]
        created = await management.provisional_create_canister_with_cycles(
            effective_canister_id=Principal(lo)
        )
        assert lo <= created.raw <= hi
        assert net.subnet_of(created.raw) is subnet
    chosen = ids.canister_id(RANGE_SIZE + 7)  # an id of subnet 1's range
    created = await management.provisional_create_canister_with_cycles(
        specified_id=Principal(chosen)
    )
    assert created.raw == chosen
    assert net.subnet_of(chosen).index == 1


async def test_a_full_ingress_pool_answers_503_as_the_replica_does() -> None:
    model = SubnetModel(rounds_per_second=0, ingress_pool_messages=1)
    async with (
        LocalNet(subnet_model=model) as net,
        Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent,
    ):
        counter = await deploy(net, COUNTER)
        waiting = asyncio.create_task(agent.update(Principal(counter), "inc"))
        await reached_the_pool(net, waiting)
        with pytest.raises(TransientError) as shed:
            await agent.update(Principal(counter), "inc")
        assert shed.value.http_status == 503
        assert "Service is overloaded, try again later." in str(shed.value)
        await net.run_rounds(1)
        assert await waiting == NAT_ONE


@pytest.mark.parametrize(
    "model", [None, SubnetModel(rounds_per_second=50)], ids=["at-once", "in-rounds"]
)
async def test_two_subnets_keep_their_canisters_and_ids_in_a_state_dir(
    tmp_path: Path, model: SubnetModel | None
) -> None:
    state_dir = tmp_path / "state"
    async with LocalNet(subnets=2, state_dir=state_dir, subnet_model=model) as net:
        ids_before = [s.subnet_id for s in net.subnets]
        counters = [await deploy(net, COUNTER, subnet=i) for i in range(2)]
        async with Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent:
            for counter in counters:
                await agent.update(Principal(counter), "inc")
        # A crash instead of a clean stop: what the journals hold at this point.
        shutil.copytree(state_dir, tmp_path / "crashed")
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "subnet-0",
        "subnet-1",
        "subnets.cbor",
    ]
    for folder in (state_dir, tmp_path / "crashed"):
        async with (
            LocalNet(subnets=2, state_dir=folder, subnet_model=model) as net,
            Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent,
        ):
            assert [s.subnet_id for s in net.subnets] == ids_before
            for index, counter in enumerate(counters):
                assert net.subnet_of(counter).index == index
                assert await agent.query(Principal(counter), "get") == NAT_ONE
    with pytest.raises(StateDirError, match="--subnets 2"):
        LocalNet(state_dir=state_dir)


async def test_the_cli_runs_two_modelled_subnets_in_a_child_process() -> None:
    model = SubnetModel(rounds_per_second=20)
    async with (
        LocalNetProcess(subnets=2, subnet_model=model) as proc,
        Agent(proc.url, Identity.generate_ed25519(), root_key=proc.root_key) as agent,
        httpx.AsyncClient(base_url=proc.url) as http,
    ):
        described = (await http.get("/_/subnets")).json()
        assert [s["subnet_id"] for s in described["subnets"]] == proc.subnet_ids
        assert described["model"] == model.to_json()
        management = ManagementClient(agent)
        canisters = []
        for first in (canister_range(0)[0], canister_range(1)[0]):
            created = await management.provisional_create_canister_with_cycles(
                effective_canister_id=Principal(first)
            )
            await management.install_code(created.raw, COUNTER)
            canisters.append(created)
        remote = canisters[1]
        assert await agent.update(remote, "inc") == NAT_ONE
        stats = (await http.get("/_/subnets")).json()["stats"]
        assert stats["rounds"] > 0
        assert stats["ingress_messages"] >= 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subnet-model=rounds_per_second"], "NAME=VALUE"),
        (["--subnet-model=queue_capacity=0"], "queue_capacity must be a whole number >= 1"),
        (["--subnets", "9"], "subnets must be a whole number from 1 to 8"),
    ],
)
async def test_the_cli_refuses_a_bad_subnet_setup_with_exit_2(
    args: list[str], message: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "localnet", "--port", "0", *args, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert message in err.decode()


async def test_injected_latency_comes_before_the_ingress_pool_and_rounds_after(
    net: LocalNet, agent: Agent
) -> None:
    """The fault injector's latency and the model's rounds add up."""
    counter = await deploy(net, COUNTER)
    net.faults.set(latency_s={"call": 0.3})
    started = time.monotonic()
    call = asyncio.create_task(agent.update(Principal(counter), "inc"))
    await reached_the_pool(net, call)
    assert time.monotonic() - started >= 0.3  # the latency delayed the submission
    await asyncio.sleep(0.1)
    assert not call.done()  # and now it waits for a block
    first_round = net.round + 1
    assert await answered_in_round(net, call) == first_round  # the next block carries it
    assert call.result() == NAT_ONE
