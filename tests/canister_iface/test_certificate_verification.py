"""The agent's certificate verification against localnet, the replica and the spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from py_arkworks_bls12381 import G2Point

from canister_iface.certificate import (
    BLS_KEY_DER_PREFIX,
    MAINNET_ROOT_KEY,
    Certificate,
    LookupStatus,
    bls_public_key,
    decode_certificate,
    lookup_path,
    request_status,
    verify_certificate,
)
from canister_iface.errors import CertificateError, StaleCertificate, TransientError
from localnet import hashtree
from localnet.certification import (
    CanisterView,
    Certifier,
    Delegation,
    RequestStatus,
    RootKey,
    StateView,
    cbor_self_describing,
    encode_canister_ranges,
    state_tree,
)
from localnet.certification import RequestStatus as LocalStatus
from localnet.ids import canister_id

VECTOR = json.loads(
    (Path(__file__).parent.parent / "vectors/ic_delegated_certificate.json").read_text()
)
NOW = 1_700_000_000_000_000_000
ROOT = RootKey.from_bytes(bytes.fromhex("11" * 32))
SUBNET_KEY = RootKey.from_bytes(bytes.fromhex("22" * 32))
SUBNET = b"\x33" * 29
CANISTER = canister_id(5)
REQUEST = b"\x44" * 32


def _view(time_ns: int = NOW) -> StateView:
    return StateView(
        time_ns=time_ns,
        subnet_id=SUBNET,
        subnet_public_key_der=SUBNET_KEY.public_key_der,
        canister_ranges=[(canister_id(0), canister_id(99))],
        canisters={CANISTER: CanisterView(certified_data=b"data", controllers=[b"\x04"])},
        request_status={REQUEST: RequestStatus("replied", reply=b"DIDL\x00\x00")},
    )


def _cert(certifier: Certifier | None = None, time_ns: int = NOW) -> bytes:
    paths = [[b"request_status", REQUEST], [b"canister", CANISTER, b"certified_data"]]
    return (certifier or Certifier(ROOT)).certificate(state_tree(_view(time_ns), paths))


def _delegated(ranges: list[tuple[bytes, bytes]] | None = None, root: RootKey = ROOT) -> Certifier:
    ranges = ranges or [(canister_id(0), canister_id(99))]
    return Certifier(root).delegate(SUBNET_KEY, SUBNET, ranges, time_ns=NOW)


# --------------------------------------------------------------- root-signed


def test_localnet_certificate_verifies_and_values_read() -> None:
    cert = verify_certificate(_cert(), ROOT.public_key_der, now_ns=NOW)
    assert cert.time_ns == NOW
    assert cert.value("request_status", REQUEST, "status") == b"replied"
    assert cert.value("request_status", REQUEST, "reply") == b"DIDL\x00\x00"
    assert cert.value("canister", CANISTER, "certified_data") == b"data"
    assert cert.value("request_status", b"\x00" * 32, "status") is None  # provably absent
    with pytest.raises(CertificateError, match="unknown"):
        cert.value("canister", CANISTER, "controllers")  # pruned: not requested


def test_wrong_root_key_is_rejected() -> None:
    with pytest.raises(CertificateError, match="does not verify under the root key"):
        verify_certificate(_cert(), RootKey.generate().public_key_der, now_ns=NOW)
    with pytest.raises(CertificateError, match="does not verify"):
        verify_certificate(_cert(), MAINNET_ROOT_KEY, now_ns=NOW)


def _tamper(cert: bytes, **fields: Any) -> bytes:
    body = dict(cbor2.loads(cert))
    return cbor_self_describing(body | fields)


def _swap_leaf(node: Any, old: bytes, new: bytes) -> Any:
    if node[0] == 3:
        return [3, new] if node[1] == old else list(node)
    if node[0] in (1, 2):
        return [
            node[0],
            *(_swap_leaf(c, old, new) if isinstance(c, tuple | list) else c for c in node[1:]),
        ]
    return list(node)


def test_tampered_tree_and_signature_are_rejected() -> None:
    cert = _cert()
    tree = cbor2.loads(cert)["tree"]
    forged = _tamper(cert, tree=_swap_leaf(tree, b"DIDL\x00\x00", b"DIDL\x00\x01"))
    with pytest.raises(CertificateError, match="signature does not verify"):
        verify_certificate(forged, ROOT.public_key_der, now_ns=NOW)
    signature = bytearray(cbor2.loads(cert)["signature"])
    signature[10] ^= 0x01
    with pytest.raises(CertificateError, match="signature does not verify"):
        verify_certificate(
            _tamper(cert, signature=bytes(signature)), ROOT.public_key_der, now_ns=NOW
        )


def _off_subgroup_g1() -> bytes:
    """A compressed G1 point on the curve but outside the prime-order subgroup."""
    p = int(
        "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feff"
        "ffffffaaab",
        16,
    )
    x = next(x for x in range(1, 100) if pow((x**3 + 4) % p, (p - 1) // 2, p) == 1)
    return bytes([0x80 | x.to_bytes(48, "big")[0]]) + x.to_bytes(48, "big")[1:]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(_off_subgroup_g1(), id="off-subgroup"),
        pytest.param(b"\xc0" + bytes(47), id="identity"),
    ],
)
def test_a_signature_outside_the_group_or_the_identity_is_refused(signature: bytes) -> None:
    cert = _tamper(_cert(), signature=signature)
    with pytest.raises(CertificateError, match="signature does not verify"):
        verify_certificate(cert, ROOT.public_key_der, now_ns=NOW)


def test_the_identity_as_a_key_is_refused() -> None:
    identity_key = BLS_KEY_DER_PREFIX + b"\xc0" + bytes(95)
    with pytest.raises(CertificateError, match="identity point") as caught:
        verify_certificate(_cert(), identity_key, now_ns=NOW)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\x00", "CBOR"),
        (cbor2.dumps([1, 2]), "map with a 'tree'"),
        (cbor2.dumps({"tree": [0], "signature": b"short"}), "48-byte"),
        (cbor2.dumps({"tree": [7], "signature": bytes(48)}), "tag 7"),
        (cbor2.dumps({"tree": [4, b"x"], "signature": bytes(48)}), "digest"),
        (cbor2.dumps({"tree": [0], "signature": bytes(48), "delegation": 1}), "delegation"),
    ],
)
def test_malformed_certificates_say_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason) as caught:
        verify_certificate(data, ROOT.public_key_der, max_age_ns=None)
    assert caught.value.reason == "malformed"


# ---------------------------------------------------------------- freshness


@pytest.mark.parametrize(("offset_s", "word"), [(-301, "old"), (301, "future")])
def test_stale_or_future_certificates_are_rejected(offset_s: int, word: str) -> None:
    cert = _cert(time_ns=NOW + offset_s * 1_000_000_000)
    with pytest.raises(StaleCertificate, match=word) as caught:
        verify_certificate(cert, ROOT.public_key_der, now_ns=NOW)
    # A clock problem (ours or the node's), not a forgery: retried, never exit 5.
    assert isinstance(caught.value, TransientError)
    assert not isinstance(caught.value, CertificateError)
    assert caught.value.skew_seconds == offset_s
    assert "clock" in str(caught.value)
    verify_certificate(cert, ROOT.public_key_der, now_ns=NOW, max_age_ns=400 * 10**9)
    verify_certificate(cert, ROOT.public_key_der, max_age_ns=None)


def test_freshness_defaults_to_the_system_clock() -> None:
    with pytest.raises(StaleCertificate, match="old"):
        verify_certificate(_cert(time_ns=1), ROOT.public_key_der)


# --------------------------------------------------------------- delegation


def test_delegated_certificate_is_accepted_for_a_canister_in_range() -> None:
    certifier = _delegated()
    cert = verify_certificate(
        _cert(certifier), ROOT.public_key_der, canister_id=CANISTER, now_ns=NOW
    )
    assert cert.delegation is not None
    assert cert.delegation.subnet_id == SUBNET
    verify_certificate(_cert(certifier), ROOT.public_key_der, subnet_id=SUBNET, now_ns=NOW)


def test_delegation_scope_and_signer_are_enforced() -> None:
    cert = _cert(_delegated(ranges=[(canister_id(10), canister_id(20))]))
    with pytest.raises(CertificateError, match="outside the canister ranges") as caught:
        verify_certificate(cert, ROOT.public_key_der, canister_id=CANISTER, now_ns=NOW)
    assert caught.value.reason == "delegation"
    with pytest.raises(CertificateError, match="subnet") as caught:
        verify_certificate(cert, ROOT.public_key_der, subnet_id=b"\x01", now_ns=NOW)
    assert caught.value.reason == "delegation"
    with pytest.raises(CertificateError, match="pass the canister_id"):
        verify_certificate(cert, ROOT.public_key_der, now_ns=NOW)
    foreign = _cert(_delegated(root=RootKey.generate()))
    with pytest.raises(CertificateError, match="delegation certificate signature") as caught:
        verify_certificate(foreign, ROOT.public_key_der, canister_id=CANISTER, now_ns=NOW)
    assert caught.value.reason == "signature"


def test_subnet_key_must_sign_the_outer_certificate() -> None:
    delegation = _delegated().delegation
    assert delegation is not None
    impostor = Certifier(RootKey.generate(), delegation)  # valid delegation, wrong signer
    with pytest.raises(CertificateError, match="delegated subnet key") as caught:
        verify_certificate(_cert(impostor), ROOT.public_key_der, canister_id=CANISTER, now_ns=NOW)
    assert caught.value.reason == "signature"


def test_nested_delegation_is_rejected() -> None:
    inner = _cert(_delegated())
    outer = _tamper(
        _cert(),
        delegation={"subnet_id": SUBNET, "certificate": inner},
    )
    with pytest.raises(CertificateError, match="one hop"):
        verify_certificate(outer, ROOT.public_key_der, now_ns=NOW)


@pytest.mark.parametrize("layout", ["flat", "sharded"])
def test_either_canister_range_layout_is_understood(layout: str) -> None:
    ranges = [(canister_id(0), canister_id(9)), (canister_id(50), canister_id(60))]
    encoded = encode_canister_ranges(ranges)
    subnet: dict[str | bytes, Any] = {"public_key": SUBNET_KEY.public_key_der}
    data: dict[str | bytes, Any] = {"subnet": {SUBNET: subnet}, "time": b"\x01"}
    if layout == "flat":  # older replicas: one blob under the subnet
        subnet["canister_ranges"] = encoded
    else:  # newer replicas: shards keyed by their lowest canister id
        data["canister_ranges"] = {SUBNET: {canister_id(0): encoded}}
    delegation_cert = Certifier(ROOT).certificate(hashtree.build(data))
    certifier = Certifier(SUBNET_KEY, Delegation(SUBNET, delegation_cert, ROOT.public_key_der))
    cert = _cert(certifier)
    verify_certificate(cert, ROOT.public_key_der, canister_id=canister_id(55), now_ns=NOW)
    with pytest.raises(CertificateError, match="outside"):
        verify_certificate(cert, ROOT.public_key_der, canister_id=canister_id(30), now_ns=NOW)


def test_delegation_without_ranges_is_rejected() -> None:
    data = {"subnet": {SUBNET: {"public_key": SUBNET_KEY.public_key_der}}, "time": b"\x01"}
    delegation_cert = Certifier(ROOT).certificate(hashtree.build(data))
    certifier = Certifier(SUBNET_KEY, Delegation(SUBNET, delegation_cert, ROOT.public_key_der))
    with pytest.raises(CertificateError, match="no canister ranges"):
        verify_certificate(_cert(certifier), ROOT.public_key_der, canister_id=CANISTER, now_ns=NOW)


# ------------------------------------------------------- real replica vector


def test_real_replica_certificate_with_delegation_verifies() -> None:
    data = bytes.fromhex(VECTOR["certificate"])
    root = bytes.fromhex(VECTOR["root_key"])
    ii = bytes.fromhex("00000000001000000101")  # 5v3p4-iyaaa-aaaaa-qaaaa-cai
    cert = verify_certificate(data, root, canister_id=ii, max_age_ns=None)
    assert cert.value("canister", ii, "certified_data") == bytes.fromhex(VECTOR["certified_data"])
    with pytest.raises(StaleCertificate, match="old"):
        verify_certificate(data, root, canister_id=ii)  # minted years ago
    with pytest.raises(CertificateError, match="outside"):
        verify_certificate(data, root, canister_id=canister_id(1), max_age_ns=None)


def test_mainnet_root_key_parses() -> None:
    key = bls_public_key(MAINNET_ROOT_KEY)
    assert len(MAINNET_ROOT_KEY) == 133
    assert G2Point.from_compressed_bytes(key).is_in_subgroup()
    with pytest.raises(CertificateError, match="133 bytes"):
        bls_public_key(MAINNET_ROOT_KEY[:-1])


# ------------------------------------------------------------ lookup semantics

SPEC_PRUNED = bytes.fromhex(
    "83018301830241618301820458201b4feff9bef8131788b0c9dc6dbad6e81e524249c879e9f10f71ce3749f5"
    "a63883024179820345776f726c6483024162820458207b32ac0c6ba8ce35ac82c255fc7906f7fc130dab2a09"
    "0f80fe12f9c2cae83ba6830182045820ec8324b8a1f1ac16bd2e806edba78006479c9877fed4eb464a254854"
    "65af601d830241648203476d6f726e696e67"
)


@pytest.mark.parametrize(
    ("path", "status", "value"),
    [
        (["a", "a"], LookupStatus.UNKNOWN, b""),
        (["a", "y"], LookupStatus.FOUND, b"world"),
        (["aa"], LookupStatus.ABSENT, b""),
        (["ax"], LookupStatus.ABSENT, b""),
        (["b"], LookupStatus.UNKNOWN, b""),
        (["bb"], LookupStatus.UNKNOWN, b""),
        (["d"], LookupStatus.FOUND, b"morning"),
        (["e"], LookupStatus.ABSENT, b""),
        (["a"], LookupStatus.ERROR, b""),
        (["d", "x"], LookupStatus.ABSENT, b""),
    ],
)
def test_spec_lookup_examples(path: list[str], status: LookupStatus, value: bytes) -> None:
    cert = Certificate(decode_certificate(_wrap(SPEC_PRUNED)).tree, bytes(48), None)
    result = lookup_path(cert.tree, path)
    assert (result.status, result.value) == (status, value)
    assert cert.root_hash().hex() == (
        "eb5c5b2195e62d996b84c9bcc8259d19a83786a2f59e0878cec84c811f669aa0"
    )


def _wrap(tree_cbor: bytes) -> bytes:
    return cbor2.dumps({"tree": cbor2.loads(tree_cbor), "signature": bytes(48)})


# ----------------------------------------------------------- request status


def _status_cert(status: LocalStatus | None) -> Certificate:
    view = _view()
    view.request_status = {REQUEST: status} if status else {}
    tree = state_tree(view, [[b"request_status", REQUEST]])
    return verify_certificate(Certifier(ROOT).certificate(tree), ROOT.public_key_der, now_ns=NOW)


def test_request_status_reads_every_state() -> None:
    assert request_status(_status_cert(None), REQUEST) is None
    processing = request_status(_status_cert(LocalStatus("processing")), REQUEST)
    assert processing is not None
    assert not processing.terminal
    replied = request_status(_status_cert(LocalStatus("replied", reply=b"ok")), REQUEST)
    assert replied is not None
    assert (replied.status, replied.reply, replied.terminal) == ("replied", b"ok", True)
    rejected = request_status(
        _status_cert(LocalStatus("rejected", reject_code=4, reject_message="no", error_code="X")),
        REQUEST,
    )
    assert rejected is not None
    assert (rejected.reject_code, rejected.reject_message, rejected.error_code) == (4, "no", "X")


def test_request_status_refuses_a_certificate_that_does_not_reveal_it() -> None:
    view = _view()
    others = {bytes([n]) * 32: LocalStatus("processing") for n in range(1, 9)}
    view.request_status |= others
    tree = state_tree(view, [[b"request_status", REQUEST]])
    cert = verify_certificate(Certifier(ROOT).certificate(tree), ROOT.public_key_der, now_ns=NOW)
    assert request_status(cert, REQUEST) is not None
    with pytest.raises(CertificateError, match="unknown") as caught:
        request_status(cert, b"\x02" * 32)  # exists, but pruned: this certificate cannot tell
    assert caught.value.reason == "incomplete"
