"""localnet's HTTP interface driven by a third-party client: icp-py-core's agent.

We test conformance, not just agreement with ourselves: envelopes, request ids,
CBOR, the v3/v4 endpoints, read_state paths and node-signed query responses as
another implementation of the spec produces and checks them. icp-py-core
verifies BLS certificates only with the ``blst`` binding, which has no wheel, so
certificates are verified here with our own verifier (``canister_iface``),
which is itself tested against a certificate produced by the real IC.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from icp_agent import Agent, Client
from icp_agent.agent import build_query_response_signable, sign_request
from icp_candid import encode
from icp_identity import Identity

from canister_iface.certificate import decode_certificate, verify_certificate
from localnet import LocalNet, ids

pytestmark = pytest.mark.integration

COUNTER = (Path(__file__).resolve().parents[1] / "canisters/wasm/counter.wasm").read_bytes()
EMPTY = encode([])


@pytest.fixture
async def net():
    async with LocalNet() as net:
        yield net


@pytest.fixture
def identity() -> Identity:
    return Identity(type="ed25519")


def agent_for(net: LocalNet, identity: Identity) -> Agent:
    return Agent(identity, Client(url=net.url), root_key=net.root_key)


async def deploy(net: LocalNet, identity: Identity) -> bytes:
    me = bytes(identity.sender().bytes)
    canister = await net.create_canister(controllers=[me])
    await net.install_code(canister, COUNTER, caller=me)
    return canister


async def test_status_publishes_the_root_key(net: LocalNet, identity: Identity) -> None:
    client = Client(url=net.url)
    status = cbor2.loads(await client.status_async())
    assert status["root_key"] == net.root_key
    assert len(net.root_key) == 133


async def test_update_and_query_round_trip(net: LocalNet, identity: Identity) -> None:
    canister = await deploy(net, identity)
    agent = agent_for(net, identity)
    text = ids.to_text(canister)
    reply = await agent.update_raw_async(text, "inc", EMPTY, verify_certificate=False)
    assert _nat(reply) == 1
    reply = await agent.query_raw_async(text, "get", EMPTY)
    assert _nat(reply) == 1
    caller = await agent.query_raw_async(text, "whoami", EMPTY)
    assert caller[0]["value"].to_str() == identity.sender().to_str()


async def test_query_signatures_verify_with_the_node_key(net: LocalNet, identity: Identity) -> None:
    # icp-py-core builds the signed form of the response (the spec's
    # QueryResponseSignable); the node key comes from a certified subnet read_state.
    # (Its own verify_query_signatures=True path rejects any response decoded from
    # a self-describing CBOR tag: cbor2 then yields tuples where it expects lists.)
    canister = await deploy(net, identity)
    agent = agent_for(net, identity)
    content = {
        "request_type": "query",
        "sender": identity.sender().bytes,
        "canister_id": canister,
        "method_name": "get",
        "arg": EMPTY,
        "ingress_expiry": agent.get_expiry_date(),
    }
    request_id, envelope = sign_request(content, identity)
    body = await agent.query_endpoint_async(ids.to_text(canister), envelope)
    assert body["status"] == "replied"
    (signature,) = body["signatures"]
    signable = build_query_response_signable(
        "replied", request_id, signature["timestamp"], reply=dict(body["reply"])
    )
    subnet_id, node_id = net.subnet_id, bytes(signature["identity"])
    path = [b"subnet", subnet_id, b"node", node_id, b"public_key"]
    raw = await Client(url=net.url).read_state_subnet_async(
        ids.to_text(subnet_id), _read_state_envelope(agent, identity, [path])
    )
    certificate = decode_certificate(bytes(cbor2.loads(raw)["certificate"]))
    verify_certificate(certificate, net.root_key, subnet_id=subnet_id, now_ns=time.time_ns())
    node_key = certificate.value(*path)
    assert node_key is not None
    Ed25519PublicKey.from_public_bytes(node_key[-32:]).verify(
        bytes(signature["signature"]), signable
    )


def _read_state_envelope(agent: Agent, identity: Identity, paths: list[list[bytes]]) -> bytes:
    content = {
        "request_type": "read_state",
        "sender": identity.sender().bytes,
        "paths": paths,
        "ingress_expiry": agent.get_expiry_date(),
    }
    return sign_request(content, identity)[1]


async def test_read_state_certificate_verifies(net: LocalNet, identity: Identity) -> None:
    canister = await deploy(net, identity)
    agent = agent_for(net, identity)
    paths = [[b"canister", canister, b"module_hash"], [b"canister", canister, b"controllers"]]
    # icp-py-core parses the certificate and looks the paths up in our hash tree ...
    theirs = await agent.read_state_raw_async(
        ids.to_text(canister), paths, verify_certificate=False
    )
    assert theirs.lookup(paths[0]) == hashlib.sha256(COUNTER).digest()
    assert list(cbor2.loads(theirs.lookup(paths[1]))) == [bytes(identity.sender().bytes)]
    # ... and the BLS signature over the same kind of reply verifies against the root key.
    raw = await Client(url=net.url).read_state_async(
        ids.to_text(canister), _read_state_envelope(agent, identity, paths)
    )
    certificate = decode_certificate(bytes(cbor2.loads(raw)["certificate"]))
    verify_certificate(certificate, net.root_key, canister_id=canister, now_ns=time.time_ns())
    assert certificate.value(*paths[0]) == hashlib.sha256(COUNTER).digest()


async def test_reject_reaches_the_client(net: LocalNet, identity: Identity) -> None:
    canister = await deploy(net, identity)
    agent = agent_for(net, identity)
    with pytest.raises(Exception, match="boom"):
        await agent.update_raw_async(ids.to_text(canister), "boom", EMPTY, verify_certificate=False)


async def test_secp256k1_identity_is_accepted(net: LocalNet) -> None:
    identity = Identity(type="secp256k1")
    canister = await deploy(net, identity)
    reply = await agent_for(net, identity).update_raw_async(
        ids.to_text(canister), "whoami_update", EMPTY, verify_certificate=False
    )
    assert reply[0]["value"].to_str() == identity.sender().to_str()


def _nat(reply: object) -> int:
    assert isinstance(reply, list), reply
    value = reply[0]["value"]
    assert isinstance(value, int)
    return value
