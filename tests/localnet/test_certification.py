"""localnet's hash trees and certificates, checked against the spec and independent verifiers.

The verifier here is written from the spec with py-arkworks directly (icp-py-core's
Certificate insists on ``blst`` for the pairing, so it only supplies the root hash,
the signed message and the lookups).  It is anchored on a certificate made by the
real replica, so a bug shared by localnet and this verifier cannot pass unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from icp_agent.agent import build_query_response_signable, to_request_id
from icp_candid.candid import LEB128
from icp_certificate.certificate import Certificate as IcpCertificate
from py_arkworks_bls12381 import GT, G1Point, G2Point

from localnet import hashtree
from localnet.certification import (
    BLS_DER_PREFIX,
    CanisterView,
    Certifier,
    NodeSigner,
    RequestStatus,
    RootKey,
    StateView,
    full_state_tree,
    state_tree,
)
from localnet.hashtree import EMPTY, Fork, Labeled, Leaf, LookupStatus, lookup, prune, reconstruct
from localnet.ids import canister_id

VECTORS = Path(__file__).parent.parent / "vectors"
MAINNET_ROOT_KEY = bytes.fromhex(
    "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100814c0e6ec71fab5"
    "83b08bd81373c255c3c371b2e84863c98a4f1e08b74235d14fb5d9c0cd546d9685f913a0c0b2cc5341583bf4b"
    "4392e467db96d65b9bb4cb717112f8472e0d5a4d14505ffd7484b01291091c5f87b98883463f98091a0baaae"
)
DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"


# ------------------------------------------------------- independent verifier


def _bls_verify(signature: bytes, message: bytes, key_der: bytes) -> bool:
    """e(sig, g2) == e(H(m), pk), from the spec's ciphersuite."""
    assert key_der[:37] == MAINNET_ROOT_KEY[:37], "not a DER-wrapped IC BLS key"
    try:
        sig = G1Point.from_compressed_bytes(signature)
        key = G2Point.from_compressed_bytes(key_der[37:])
    except Exception:
        return False
    hashed = G1Point.hash_to_curve(message, DST)
    return bool(GT.pairing_check([sig, -hashed], [G2Point(), key]))


def _verify(cert_cbor: bytes, root_key_der: bytes, canister: bytes | None = None) -> IcpCertificate:
    """verify_cert from the spec; returns the parsed certificate."""
    cert = IcpCertificate(cbor2.loads(cert_cbor))
    key_der = root_key_der
    if cert.delegation is not None:
        assert canister is not None, "a delegated certificate needs a canister id to check"
        subnet_id = bytes(cert.delegation["subnet_id"])
        parent = _verify(bytes(cert.delegation["certificate"]), root_key_der)
        assert parent.delegation is None
        if parent.lookup_tree([b"canister_ranges", subnet_id]) is not None:
            # Sharded ranges: icp-py-core checks them (it skips the crypto we did above).
            cert.check_delegation(canister, must_verify=False)
        else:
            flat = parent.lookup([b"subnet", subnet_id, b"canister_ranges"])
            assert flat is not None, "delegation without canister ranges"
            if not any(lo <= canister <= hi for lo, hi in cbor2.loads(flat)):
                raise ValueError("CertificateNotAuthorized")
        key_der = parent.lookup([b"subnet", subnet_id, b"public_key"]) or b""
    message = b"\x0dic-state-root" + cert.root_hash()
    if not _bls_verify(bytes(cert.signature or b""), message, key_der):
        raise AssertionError("BLS signature does not verify")
    return cert


def test_independent_verifier_accepts_a_real_replica_certificate() -> None:
    vector = json.loads((VECTORS / "ic_delegated_certificate.json").read_text())
    cert = _verify(
        bytes.fromhex(vector["certificate"]),
        bytes.fromhex(vector["root_key"]),
        canister=bytes.fromhex("00000000001000000101"),
    )
    path = [b"canister", bytes.fromhex("00000000001000000101"), b"certified_data"]
    assert cert.lookup(path) == bytes.fromhex(vector["certified_data"])


# ----------------------------------------------------- the spec's tree example

SPEC_TREE = Fork(
    Fork(
        Labeled(
            b"a",
            Fork(Fork(Labeled(b"x", Leaf(b"hello")), EMPTY), Labeled(b"y", Leaf(b"world"))),
        ),
        Labeled(b"b", Leaf(b"good")),
    ),
    Fork(Labeled(b"c", EMPTY), Labeled(b"d", Leaf(b"morning"))),
)
SPEC_TREE_CBOR = (
    "8301830183024161830183018302417882034568656c6c6f810083024179820345776f726c64830241628203"
    "44676f6f648301830241638100830241648203476d6f726e696e67"
)
SPEC_PRUNED_CBOR = (
    "83018301830241618301820458201b4feff9bef8131788b0c9dc6dbad6e81e524249c879e9f10f71ce3749f5"
    "a63883024179820345776f726c6483024162820458207b32ac0c6ba8ce35ac82c255fc7906f7fc130dab2a09"
    "0f80fe12f9c2cae83ba6830182045820ec8324b8a1f1ac16bd2e806edba78006479c9877fed4eb464a254854"
    "65af601d830241648203476d6f726e696e67"
)
SPEC_ROOT = "eb5c5b2195e62d996b84c9bcc8259d19a83786a2f59e0878cec84c811f669aa0"


def test_spec_example_encoding_and_root_hash() -> None:
    assert cbor2.dumps(hashtree.to_cbor_value(SPEC_TREE)).hex() == SPEC_TREE_CBOR
    assert reconstruct(SPEC_TREE).hex() == SPEC_ROOT
    assert hashtree.from_cbor_value(cbor2.loads(bytes.fromhex(SPEC_TREE_CBOR))) == SPEC_TREE


def test_spec_example_pruning() -> None:
    pruned = prune(SPEC_TREE, [[b"a", b"y"], [b"ax"], [b"d"]])
    assert cbor2.dumps(hashtree.to_cbor_value(pruned)).hex() == SPEC_PRUNED_CBOR
    assert reconstruct(pruned).hex() == SPEC_ROOT


@pytest.mark.parametrize(
    ("path", "status", "value"),
    [
        (["a", "a"], LookupStatus.UNKNOWN, None),
        (["a", "y"], LookupStatus.FOUND, b"world"),
        (["aa"], LookupStatus.ABSENT, None),
        (["ax"], LookupStatus.ABSENT, None),
        (["b"], LookupStatus.UNKNOWN, None),
        (["bb"], LookupStatus.UNKNOWN, None),
        (["d"], LookupStatus.FOUND, b"morning"),
        (["e"], LookupStatus.ABSENT, None),
    ],
)
def test_spec_example_lookups(path: list[str], status: LookupStatus, value: bytes | None) -> None:
    pruned = hashtree.from_cbor_value(cbor2.loads(bytes.fromhex(SPEC_PRUNED_CBOR)))
    result = lookup(pruned, path)
    assert (result.status, result.value) == (status, value)


def test_lookup_error_and_empty_semantics() -> None:
    assert lookup(SPEC_TREE, ["a"]).status is LookupStatus.ERROR  # inner node, no value
    assert lookup(SPEC_TREE, ["c"]).status is LookupStatus.ABSENT  # Labeled c Empty
    assert lookup(SPEC_TREE, ["d", "deeper"]).status is LookupStatus.ABSENT  # past a leaf
    assert lookup(EMPTY, ["anything"]).status is LookupStatus.ABSENT


@pytest.mark.parametrize(
    "bad", [[], [9], [1, [0]], [2, "text", [0]], [3], [4, b"short"], "not a node"]
)
def test_malformed_cbor_trees_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"hash tree|digest"):
        hashtree.from_cbor_value(bad)


# ------------------------------------------------------- building and pruning

_labels = st.binary(min_size=0, max_size=3)
_values = st.recursive(
    st.binary(max_size=8),
    lambda children: st.dictionaries(_labels, children, min_size=1, max_size=5),
    max_leaves=20,
)


def _leaf_paths(data: Any, prefix: tuple[bytes, ...] = ()) -> dict[tuple[bytes, ...], bytes]:
    if isinstance(data, bytes):
        return {prefix: data}
    out: dict[tuple[bytes, ...], bytes] = {}
    for label, value in data.items():
        out |= _leaf_paths(value, (*prefix, label))
    return out


@settings(max_examples=80, deadline=None)
@given(
    data=st.dictionaries(_labels, _values, max_size=6),
    probes=st.lists(st.lists(_labels, min_size=1, max_size=3), max_size=4),
    pick=st.integers(min_value=0),
)
def test_pruned_trees_keep_requested_leaves_and_prove_absence(
    data: dict[bytes, Any], probes: list[list[bytes]], pick: int
) -> None:
    full = hashtree.build(data)
    leaves = _leaf_paths(data)
    wanted = [list(path) for index, path in enumerate(leaves) if (pick >> index) & 1]
    pruned = prune(full, wanted + probes)
    assert reconstruct(pruned) == reconstruct(full)
    for path, value in leaves.items():
        result = lookup(pruned, path)
        if list(path) in wanted:
            assert (result.status, result.value) == (LookupStatus.FOUND, value)
    for probe in probes:
        in_full = lookup(full, probe)
        in_pruned = lookup(pruned, probe)
        # A requested path answers exactly as the full tree does: never "unknown".
        assert (in_pruned.status, in_pruned.value) == (in_full.status, in_full.value)


def test_build_sorts_labels_and_accepts_str_labels() -> None:
    tree = hashtree.build({"b": b"2", b"a": b"1", "c": {}})
    assert [n.label for n in hashtree.flatten_forks(tree) if isinstance(n, Labeled)] == [
        b"a",
        b"b",
        b"c",
    ]
    assert lookup(tree, ["c"]).status is LookupStatus.ABSENT
    with pytest.raises(ValueError, match="twice"):
        hashtree.build({"a": b"1", b"a": b"2"})


def test_unrequested_paths_are_unknown_after_pruning() -> None:
    tree = hashtree.build({"k" + str(i): b"v" for i in range(10)})
    pruned = prune(tree, [["k3"]])
    assert lookup(pruned, ["k3"]).status is LookupStatus.FOUND
    assert lookup(pruned, ["k7"]).status is LookupStatus.UNKNOWN


# --------------------------------------------------------------- certificates

CANISTER = canister_id(7)
REQUEST = bytes(range(32))


def _view(**overrides: Any) -> StateView:
    node = NodeSigner.from_bytes(b"\x01" * 32)
    fields: dict[str, Any] = {
        "time_ns": 1_700_000_000_123_456_789,
        "subnet_id": b"\x05" * 29,
        "subnet_public_key_der": ROOT.public_key_der,
        "canister_ranges": [(canister_id(0), canister_id(0xFFFFF))],
        "nodes": {node.node_id: node.public_key_der},
        "canisters": {
            CANISTER: CanisterView(
                certified_data=b"cd", module_hash=b"\xaa" * 32, controllers=[b"\x04", b"\x07"]
            ),
            canister_id(8): CanisterView(),
        },
        "request_status": {
            REQUEST: RequestStatus("replied", reply=b"DIDL\x00\x00"),
            b"\x02" * 32: RequestStatus(
                "rejected", reject_code=5, reject_message="trapped ☹", error_code="IC0503"
            ),
        },
    }
    return StateView(**(fields | overrides))


ROOT = RootKey.from_bytes(bytes.fromhex("2a" * 32))


def test_root_key_der_has_the_ic_prefix_and_round_trips() -> None:
    assert MAINNET_ROOT_KEY[:37] == BLS_DER_PREFIX
    assert len(ROOT.public_key_der) == 133
    assert G2Point.from_compressed_bytes(MAINNET_ROOT_KEY[37:]).is_in_subgroup()
    fresh = RootKey.generate()
    assert RootKey.from_bytes(fresh.to_bytes()).public_key_der == fresh.public_key_der
    assert fresh.public_key_der != ROOT.public_key_der
    with pytest.raises(ValueError, match="32 bytes"):
        RootKey.from_bytes(b"\x01")
    with pytest.raises(ValueError, match="zero"):
        RootKey.from_bytes(bytes(32))


def test_certificate_verifies_and_reveals_requested_paths() -> None:
    view = _view()
    paths = [[b"request_status", REQUEST], [b"canister", CANISTER, b"controllers"]]
    cert_cbor = Certifier(ROOT).certificate(state_tree(view, paths))
    assert cert_cbor[:3] == b"\xd9\xd9\xf7"  # self-describing tag
    cert = _verify(cert_cbor, ROOT.public_key_der)
    assert cert.lookup_time() == view.time_ns
    assert cert.lookup_request_status(REQUEST) == b"replied"
    assert cert.lookup_reply(REQUEST) == b"DIDL\x00\x00"
    controllers = cbor2.loads(cert.lookup([b"canister", CANISTER, b"controllers"]))
    assert list(controllers) == [b"\x04", b"\x07"]
    assert cert.lookup([b"canister", CANISTER, b"certified_data"]) is None  # not requested


def test_state_tree_leaf_encodings() -> None:
    view = _view()
    tree = full_state_tree(view)

    def found(*path: bytes) -> bytes:
        result = lookup(tree, path)
        assert result.status is LookupStatus.FOUND, path
        assert result.value is not None
        return result.value

    rejected = b"\x02" * 32
    assert LEB128.decode_u_bytes(found(b"time")) == view.time_ns
    assert found(b"request_status", rejected, b"reject_code") == b"\x05"
    assert found(b"request_status", rejected, b"reject_message") == "trapped ☹".encode()
    assert found(b"request_status", rejected, b"error_code") == b"IC0503"
    assert found(b"request_status", rejected, b"status") == b"rejected"
    assert lookup(tree, [b"request_status", rejected, b"reply"]).status is LookupStatus.ABSENT
    assert found(b"canister", CANISTER, b"module_hash") == b"\xaa" * 32
    assert found(b"canister", CANISTER, b"certified_data") == b"cd"
    ranges = found(b"subnet", view.subnet_id, b"canister_ranges")
    assert ranges[:3] == b"\xd9\xd9\xf7"
    assert [list(r) for r in cbor2.loads(ranges)] == [[canister_id(0), canister_id(0xFFFFF)]]
    assert found(b"canister_ranges", view.subnet_id, canister_id(0)) == ranges
    assert found(b"subnet", view.subnet_id, b"public_key") == ROOT.public_key_der
    node_id, node_der = next(iter(view.nodes.items()))
    assert found(b"subnet", view.subnet_id, b"node", node_id, b"public_key") == node_der


def test_absent_paths_are_provably_absent_in_a_certificate() -> None:
    view = _view()
    unknown_request = b"\x01" * 32
    empty_canister = canister_id(8)
    paths = [
        [b"request_status", unknown_request],
        [b"canister", empty_canister, b"module_hash"],
        [b"canister", canister_id(99), b"controllers"],
    ]
    tree = state_tree(view, paths)
    for path in paths:
        assert lookup(tree, path).status is LookupStatus.ABSENT, path
    assert lookup(tree, [b"request_status", REQUEST, b"status"]).status is LookupStatus.UNKNOWN


def test_tampered_tree_or_signature_fails() -> None:
    cert_cbor = Certifier(ROOT).certificate(state_tree(_view(), [[b"request_status", REQUEST]]))
    body = dict(cbor2.loads(cert_cbor))
    tampered_tree = cbor2.dumps(body | {"tree": _replace_leaf(body["tree"], b"DIDL\x00\x00")})
    with pytest.raises(AssertionError, match="BLS"):
        _verify(tampered_tree, ROOT.public_key_der)
    signature = bytearray(body["signature"])
    signature[-1] ^= 1
    with pytest.raises(AssertionError, match="BLS"):
        _verify(cbor2.dumps(body | {"signature": bytes(signature)}), ROOT.public_key_der)
    with pytest.raises(AssertionError, match="BLS"):
        _verify(cert_cbor, RootKey.generate().public_key_der)


def _replace_leaf(node: Any, old: bytes) -> Any:
    if node[0] == 3 and node[1] == old:
        return [3, b"DIDL\x00\x01"]
    return [
        node[0],
        *(_replace_leaf(c, old) if isinstance(c, list | tuple) else c for c in node[1:]),
    ]


def test_delegated_certificate_verifies_through_the_root() -> None:
    subnet_key = RootKey.generate()
    subnet_id = b"\x09" * 29
    ranges = [(canister_id(0), canister_id(99)), (canister_id(1000), canister_id(1999))]
    subnet = Certifier(ROOT).delegate(subnet_key, subnet_id, ranges, time_ns=1)
    assert subnet.root_key_der == ROOT.public_key_der
    view = _view(subnet_id=subnet_id, subnet_public_key_der=subnet_key.public_key_der)
    cert_cbor = subnet.certificate(state_tree(view, [[b"request_status", REQUEST]]))
    cert = _verify(cert_cbor, ROOT.public_key_der, canister=canister_id(1500))
    assert cert.lookup_reply(REQUEST) == b"DIDL\x00\x00"
    with pytest.raises(ValueError, match="NotAuthorized"):  # outside every range
        _verify(cert_cbor, ROOT.public_key_der, canister=canister_id(500))
    with pytest.raises(AssertionError, match="BLS"):  # delegation signed by another root
        _verify(cert_cbor, RootKey.generate().public_key_der, canister=canister_id(5))
    with pytest.raises(ValueError, match="one hop"):
        subnet.delegate(RootKey.generate(), b"\x0a", ranges, time_ns=1)


# ---------------------------------------------------------- query signatures


@pytest.mark.parametrize(
    "response",
    [
        {"status": "replied", "reply": {"arg": b"DIDL\x00\x00"}},
        {"status": "rejected", "reject_code": 3, "reject_message": "no such canister"},
        {
            "status": "rejected",
            "reject_code": 5,
            "reject_message": "trapped",
            "error_code": "IC0503",
        },
    ],
)
def test_query_response_signature_verifies_with_icp_agent_signable(
    response: dict[str, Any],
) -> None:
    node = NodeSigner.generate()
    query = {"request_type": "query", "sender": b"\x04", "ingress_expiry": 1, "arg": b""}
    rid = to_request_id(query)
    entry = node.sign_query_response(rid, response, timestamp_ns=42)
    assert entry["identity"] == node.node_id
    assert len(node.node_id) == 29
    reject = response if response["status"] == "rejected" else None
    signable = build_query_response_signable(
        response["status"], rid, 42, reply=response.get("reply"), reject=reject
    )
    key = Ed25519PublicKey.from_public_bytes(node.public_key_der[-32:])
    key.verify(entry["signature"], signable)  # raises InvalidSignature on mismatch
    assert NodeSigner.from_bytes(node.to_bytes()).node_id == node.node_id


def test_query_response_without_reject_fields_is_refused() -> None:
    node = NodeSigner.generate()
    with pytest.raises(ValueError, match="reject_code"):
        node.sign_query_response(REQUEST, {"status": "rejected"}, 1)
    with pytest.raises(ValueError, match="replied"):
        node.sign_query_response(REQUEST, {"status": "pending"}, 1)
