"""Two subnets and the subnet model over HTTP, with our agent (``canister_iface.agent``).

- a canister on subnet B called from subnet A answers rounds later than a
  call that stays on A;
- certificates from subnet B carry a delegation from the root subnet and
  verify through it; a B certificate cannot vouch for a canister of A;
- queries to B are signed by B's node, whose key the agent reads from a
  certified ``/subnet`` through the delegation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from icp_candid import Types, encode

from canister_iface.agent import Agent
from canister_iface.certificate import CertificateError, verify_certificate
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from localnet import LocalNet, ids
from localnet.fabric import SubnetModel

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
    deadline = time.monotonic() + 30
    while net.fabric.waiting_ingress() == 0:  # the call reached the ingress pool
        assert time.monotonic() < deadline
        assert not call.done()
        await asyncio.sleep(0.005)
    while not call.done():
        assert time.monotonic() < deadline, "the call did not complete"
        await net.run_rounds(1)
        await asyncio.sleep(0.02)  # let the HTTP answer reach the agent
    await call
    return net.round


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
