"""Envelope decoding and authentication, checked against the replica's rules."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from icp_agent.agent import sign_request, to_request_id
from icp_identity import Identity

from localnet import ids
from localnet.envelope import (
    DELEGATION_DOMAIN,
    MAX_INGRESS_TTL_NS,
    PERMITTED_DRIFT_NS,
    REQUEST_DOMAIN,
    EnvelopeError,
    check_read_state_paths,
    self_authenticating_id,
    validate_envelope,
)
from localnet.rihash import hash_of_map, request_id

NOW = 1_700_000_000 * 1_000_000_000
CANISTER = ids.canister_id(7)
OTHER = ids.canister_id(8)


def clock() -> int:
    return NOW


@dataclass
class Signer:
    """A user key: DER public key, principal and the IC's signature format."""

    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, scheme: str) -> Signer:
        if scheme == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        curve = ec.SECP256K1() if scheme == "secp256k1" else ec.SECP256R1()
        return cls(ec.generate_private_key(curve))

    @property
    def der(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def principal(self) -> bytes:
        return self_authenticating_id(self.der)

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(message)
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def content(request_type: str = "call", sender: bytes = ids.ANONYMOUS, **fields: Any) -> dict:
    base: dict[str, Any] = {
        "request_type": request_type,
        "sender": sender,
        "ingress_expiry": NOW + 60 * 1_000_000_000,
    }
    if request_type == "read_state":
        base["paths"] = [[b"time"]]
    else:
        base |= {"canister_id": CANISTER, "method_name": "greet", "arg": b"DIDL\x00\x00"}
    return base | fields


def envelope(body: dict, signer: Signer | None = None, **extra: Any) -> dict:
    env: dict[str, Any] = {"content": body}
    if signer is not None:
        env["sender_pubkey"] = signer.der
        env["sender_sig"] = signer.sign(REQUEST_DOMAIN + request_id(body))
    return env | extra


def encode(env: dict, tagged: bool = True) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(55799, env) if tagged else env)


def signed(signer: Signer, request_type: str = "call", **fields: Any) -> bytes:
    return encode(envelope(content(request_type, signer.principal, **fields), signer))


def validate(body: bytes, request_type: str = "call", ecid: bytes = CANISTER, **kw: Any) -> Any:
    return validate_envelope(body, request_type, ecid, clock=clock, **kw)  # type: ignore[arg-type]


def rejected(body: bytes, request_type: str = "call", ecid: bytes = CANISTER, **kw: Any) -> Any:
    with pytest.raises(EnvelopeError) as info:
        validate(body, request_type, ecid, **kw)
    return info.value


@pytest.mark.parametrize("scheme", ["ed25519", "secp256k1", "p256"])
@pytest.mark.parametrize("tagged", [True, False])
def test_signed_call_is_accepted(scheme: str, tagged: bool) -> None:
    signer = Signer.new(scheme)
    body = content("call", signer.principal, nonce=b"n" * 32)
    request = validate(encode(envelope(body, signer), tagged))
    assert request.request_type == "call"
    assert request.request_id == request_id(body)
    assert request.sender == signer.principal
    assert (request.canister_id, request.method_name, request.arg) == (
        CANISTER,
        "greet",
        b"DIDL\x00\x00",
    )
    assert request.nonce == b"n" * 32
    assert request.effective_canister_id == CANISTER


def test_anonymous_query_and_read_state_skip_the_expiry_check() -> None:
    stale = NOW - 3600 * 1_000_000_000
    query = validate(encode(envelope(content("query", ingress_expiry=stale))), "query")
    assert query.sender == ids.ANONYMOUS
    read = validate(encode(envelope(content("read_state", ingress_expiry=stale))), "read_state")
    assert read.paths == [[b"time"]]


def test_anonymous_call_is_still_expiry_checked() -> None:
    error = rejected(encode(envelope(content("call", ingress_expiry=NOW - 1))))
    assert error.http_status == 400
    assert "ingress_expiry not within expected range" in error.message


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (-1, False),
        (0, True),
        (MAX_INGRESS_TTL_NS + PERMITTED_DRIFT_NS, True),
        (MAX_INGRESS_TTL_NS + PERMITTED_DRIFT_NS + 1, False),
    ],
)
def test_ingress_expiry_window(offset: int, ok: bool) -> None:
    signer = Signer.new("ed25519")
    body = signed(signer, "query", ingress_expiry=NOW + offset)
    if ok:
        validate(body, "query")
    else:
        error = rejected(body, "query")
        assert error.http_status == 400
        assert error.message.startswith("Invalid request expiry: Specified ingress_expiry")
        assert "2023-11-14 22:13:20.000000000 UTC" in error.message  # NOW, as the replica prints it


def test_tampered_signature_is_rejected() -> None:
    signer = Signer.new("ed25519")
    env = envelope(content("call", signer.principal), signer)
    env["sender_sig"] = bytes([env["sender_sig"][0] ^ 1]) + env["sender_sig"][1:]
    error = rejected(encode(env))
    assert error.http_status == 400
    assert error.message.startswith("Invalid signature: Invalid basic signature: Ed25519")


@pytest.mark.parametrize("scheme", ["secp256k1", "p256"])
def test_ecdsa_signature_over_other_content_is_rejected(scheme: str) -> None:
    signer = Signer.new(scheme)
    env = envelope(content("call", signer.principal), signer)
    env["content"]["arg"] = b"DIDL\x00\x01"  # signature now covers a different request id
    assert rejected(encode(env)).message.startswith("Invalid signature:")


def test_ecdsa_signature_must_be_raw_64_bytes() -> None:
    signer = Signer.new("secp256k1")
    body = content("call", signer.principal)
    der_sig = signer.key.sign(REQUEST_DOMAIN + request_id(body), ec.ECDSA(hashes.SHA256()))
    env = envelope(body, signer, sender_sig=der_sig)  # DER-encoded, as some libraries emit
    assert "expected 64 bytes" in rejected(encode(env)).message


def test_sender_must_be_derived_from_the_public_key() -> None:
    signer, impostor = Signer.new("ed25519"), Signer.new("ed25519")
    env = envelope(content("call", impostor.principal), signer)
    error = rejected(encode(env))
    assert error.http_status == 400
    assert error.message.startswith(f"The user id '{ids.to_text(impostor.principal)}' does not")


def test_missing_signature_for_a_named_sender() -> None:
    signer = Signer.new("ed25519")
    error = rejected(encode(envelope(content("call", signer.principal))))
    assert error.message == f"Missing signature from user: {ids.to_text(signer.principal)}"


def test_anonymous_sender_may_not_sign() -> None:
    signer = Signer.new("ed25519")
    error = rejected(encode(envelope(content("call"), signer)))
    assert error.message == "Signature is not allowed for the anonymous user."


def test_public_key_without_signature_is_malformed() -> None:
    signer = Signer.new("ed25519")
    env = envelope(content("call", signer.principal), sender_pubkey=signer.der)
    assert "MissingPubkeyOrSignature" in rejected(encode(env)).message


def test_compressed_ecdsa_key_is_not_canonical() -> None:
    signer = Signer.new("secp256k1")
    point = signer.key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    spki_prefix = bytes.fromhex("3036301006072a8648ce3d020106052b8104000a032200")
    der = spki_prefix + point
    body = content("call", self_authenticating_id(der))
    env = envelope(
        body, sender_pubkey=der, sender_sig=signer.sign(REQUEST_DOMAIN + request_id(body))
    )
    error = rejected(encode(env))
    assert error.message.startswith("Invalid signature: Invalid public key")
    assert "non-canonical" in error.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\xff\x00garbage", "Failed to deserialize cbor request"),
        (cbor2.dumps([1, 2]), "expected an envelope map"),
        (cbor2.dumps({"content": content()}) + b"\x00", "trailing data"),
        (cbor2.dumps({"content": {"request_type": "call"}}), "missing field"),
        (cbor2.dumps({"content": content(arg="text")}), "field `arg` must be a blob"),
        (cbor2.dumps({"content": content(ingress_expiry=2**64)}), "nat64"),
        (cbor2.dumps({"content": content(sender=b"x" * 30)}), "at most 29"),
    ],
)
def test_malformed_envelopes_are_400(body: bytes, needle: str) -> None:
    error = rejected(body)
    assert error.http_status == 400
    assert needle in error.message


def test_request_type_must_match_the_endpoint() -> None:
    error = rejected(encode(envelope(content("query"))), "call")
    assert error.http_status == 400
    assert "unknown variant `query`, expected `call`" in error.message


def test_effective_canister_id_must_match_except_for_the_management_canister() -> None:
    error = rejected(encode(envelope(content("call"))), "call", OTHER)
    assert error.http_status == 400
    assert error.message.startswith("Specified CanisterId")
    management = encode(envelope(content("call", canister_id=ids.MANAGEMENT_CANISTER)))
    assert validate(management, "call", OTHER).effective_canister_id == OTHER


def test_nonce_longer_than_32_bytes_is_rejected() -> None:
    error = rejected(encode(envelope(content("call", nonce=b"n" * 33))))
    assert "Nonce in request is too big: got 33 bytes" in error.message


def test_call_over_the_ingress_limit_is_413() -> None:
    body = encode(envelope(content("call", arg=b"x" * 1000)))
    limit = len(body) + 32  # the replica counts the envelope plus the 32-byte id
    assert validate(body, max_ingress_bytes=limit).arg == b"x" * 1000
    error = rejected(body, max_ingress_bytes=limit - 1)
    assert error.http_status == 413
    assert f"Message byte size {limit} is larger than the max allowed {limit - 1}" in error.message


# --- delegations ---


def delegate(
    issuer: Signer, to: Signer, expiration: int = NOW + 10**12, targets: list | None = None
) -> dict:
    fields: dict[str, Any] = {"pubkey": to.der, "expiration": expiration}
    if targets is not None:
        fields["targets"] = targets
    return {"delegation": fields, "signature": issuer.sign(DELEGATION_DOMAIN + hash_of_map(fields))}


def delegated_call(chain: list[Signer], delegations: list[dict], **fields: Any) -> bytes:
    body = content("call", chain[0].principal, **fields)
    env = envelope(body, sender_pubkey=chain[0].der, sender_delegation=delegations)
    env["sender_sig"] = chain[-1].sign(REQUEST_DOMAIN + request_id(body))
    return encode(env)


def test_delegation_chain_is_accepted() -> None:
    chain = [Signer.new("ed25519"), Signer.new("secp256k1"), Signer.new("p256")]
    delegations = [delegate(chain[0], chain[1]), delegate(chain[1], chain[2])]
    assert validate(delegated_call(chain, delegations)).sender == chain[0].principal


def test_request_signed_by_the_root_instead_of_the_delegate_is_rejected() -> None:
    root, session = Signer.new("ed25519"), Signer.new("ed25519")
    body = delegated_call([root, root], [delegate(root, session)])
    assert rejected(body).message.startswith("Invalid signature:")


def test_forged_delegation_is_rejected() -> None:
    root, session, forger = Signer.new("ed25519"), Signer.new("ed25519"), Signer.new("ed25519")
    error = rejected(delegated_call([root, session], [delegate(forger, session)]))
    assert error.message.startswith("Invalid delegation: Invalid basic signature")


def test_expired_delegation_is_rejected() -> None:
    root, session = Signer.new("ed25519"), Signer.new("ed25519")
    error = rejected(delegated_call([root, session], [delegate(root, session, NOW - 1)]))
    assert error.message.startswith("Invalid delegation expiry: Specified sender delegation")


def test_delegation_targets_restrict_the_canister() -> None:
    root, session = Signer.new("ed25519"), Signer.new("ed25519")
    allowed = delegated_call([root, session], [delegate(root, session, targets=[CANISTER])])
    assert validate(allowed).canister_id == CANISTER
    narrowed = [delegate(root, session, targets=[OTHER])]
    error = rejected(delegated_call([root, session], narrowed))
    assert (
        error.message == f"Canister '{ids.to_text(CANISTER)}' is not one of the delegation targets."
    )


def test_delegation_chain_length_and_cycles() -> None:
    keys = [Signer.new("ed25519") for _ in range(22)]
    too_long = [delegate(a, b) for a, b in itertools.pairwise(keys)]
    assert "got 21 delegations, but at most 20" in rejected(delegated_call(keys, too_long)).message
    a, b = keys[0], keys[1]
    cycle = delegated_call([a, b, a], [delegate(a, b), delegate(b, a)])
    assert "contains at least one cycle" in rejected(cycle).message


# --- read_state ---


def test_read_state_request() -> None:
    signer = Signer.new("ed25519")
    rid = b"r" * 32
    paths = [[b"time"], [b"request_status", rid, b"status"]]
    request = validate(signed(signer, "read_state", paths=paths), "read_state")
    assert request.paths == paths
    assert request.canister_id == b""


def test_read_state_limits_paths() -> None:
    body = encode(envelope(content("read_state", paths=[[b"time"]] * 1001)))
    assert "got 1001 paths" in rejected(body, "read_state").message
    body = encode(envelope(content("read_state", paths=[[b"a"] * 128])))
    assert "got 128 labels" in rejected(body, "read_state").message


def test_read_state_polling_outside_delegation_targets_is_403() -> None:
    root, session = Signer.new("ed25519"), Signer.new("ed25519")
    body = content("read_state", root.principal, paths=[[b"request_status", b"r" * 32]])
    env = envelope(
        body,
        sender_pubkey=root.der,
        sender_delegation=[delegate(root, session, targets=[OTHER])],
        sender_sig=session.sign(REQUEST_DOMAIN + request_id(body)),
    )
    assert rejected(encode(env), "read_state").http_status == 403


@pytest.mark.parametrize(
    ("paths", "status", "needle"),
    [
        ([[b"time"], [b"subnet", b"s", b"public_key"]], None, ""),
        ([[b"canister", CANISTER, b"module_hash"]], None, ""),
        ([[b"canister", CANISTER, b"metadata", b"candid:service"]], None, ""),
        ([[b"request_status", b"r" * 32, b"reply"], [b"request_status", b"r" * 32]], None, ""),
        ([[b"canister", OTHER, b"controllers"]], 400, "does not match requested principal"),
        ([[b"canister", CANISTER, b"metadata", b"\xff"]], 400, "custom section name"),
        ([[b"request_status", b"short"]], 400, "Invalid request id"),
        ([[b"request_status", b"a" * 32], [b"request_status", b"b" * 32]], 400, "non-unique"),
        ([[b"canister", CANISTER, b"certified_data"]], 404, "Invalid path requested."),
        ([[b"time", b"x"]], 404, "Invalid path requested."),
        ([[]], 404, "Invalid path requested."),
    ],
)
def test_canister_read_state_paths(paths: list, status: int | None, needle: str) -> None:
    if status is None:
        check_read_state_paths(paths, CANISTER, "canister")
        return
    with pytest.raises(EnvelopeError) as info:
        check_read_state_paths(paths, CANISTER, "canister")
    assert info.value.http_status == status
    assert needle in info.value.message


def test_subnet_read_state_paths() -> None:
    subnet = b"\x01" * 29
    check_read_state_paths([[b"subnet", subnet, b"metrics"], [b"time"]], subnet, "subnet")
    for bad in ([[b"request_status", b"r" * 32]], [[b"canister", CANISTER, b"module_hash"]]):
        with pytest.raises(EnvelopeError) as info:
            check_read_state_paths(bad, subnet, "subnet")
        assert info.value.http_status == 404


# --- a third-party agent's envelopes ---


@pytest.mark.parametrize("scheme", ["ed25519", "secp256k1", "p256", "anonymous"])
@pytest.mark.parametrize("request_type", ["call", "query", "read_state"])
def test_icp_agent_envelopes_pass(scheme: str, request_type: str) -> None:
    identity = Identity(anonymous=True) if scheme == "anonymous" else Identity(type=scheme)
    body: dict[str, Any] = {
        "request_type": request_type,
        "sender": identity.sender().bytes,
        "ingress_expiry": NOW + 180 * 1_000_000_000,
    }
    if request_type == "read_state":
        body["paths"] = [[b"time"]]
    else:
        body |= {"canister_id": CANISTER, "method_name": "greet", "arg": b"DIDL\x00\x00"}
    rid, cbor = sign_request(body, identity)
    request = validate(cbor, request_type)
    assert request.request_id == rid == to_request_id(body)
    assert request.sender == bytes(identity.sender().bytes)


def test_self_authenticating_id_matches_icp_principal() -> None:
    identity = Identity(type="secp256k1")
    assert self_authenticating_id(identity.der_pubkey) == identity.sender().bytes
    assert self_authenticating_id(b"k") == hashlib.sha224(b"k").digest() + b"\x02"
