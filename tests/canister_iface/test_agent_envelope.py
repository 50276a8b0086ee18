"""Envelopes and request ids: what the agent signs, checked independently."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from canister_iface import rihash
from canister_iface.candid_value import ArgParts, Blob, Nat64, encode_values, encode_with_blob
from canister_iface.identity import Identity
from canister_iface.transport import REQUEST_DOMAIN, new_nonce, sign_request
from localnet import rihash as localnet_rihash
from localnet.envelope import EnvelopeError, validate_envelope

CANISTER = bytes.fromhex("00000000000000070101")

# The interface spec's request id example (section "Request ids").
SPEC_CONTENT: dict[str, rihash.Value | None] = {
    "request_type": "call",
    "sender": b"\x04",
    "ingress_expiry": 1685570400000000000,
    "canister_id": bytes.fromhex("00000000000004D2"),
    "method_name": "hello",
    "arg": b"DIDL\x00\xfd*",
}
SPEC_REQUEST_ID = "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"


def _content(identity: Identity, **extra: Any) -> dict[str, rihash.Value | None]:
    return {
        "request_type": "call",
        "sender": identity.principal.raw,
        "ingress_expiry": (int(time.time()) + 120) * 10**9,
        "canister_id": CANISTER,
        "method_name": "inc",
        "arg": b"DIDL\x00\x00",
        "nonce": new_nonce(),
        **extra,
    }


def _decode(body: bytes) -> dict[str, Any]:
    assert body.startswith(b"\xd9\xd9\xf7")  # the self-describe tag 55799
    value = cbor2.loads(body[3:])
    assert isinstance(value, dict)
    return value


def test_spec_request_id() -> None:
    signed = sign_request(SPEC_CONTENT, Identity.anonymous())
    assert signed.request_id.hex() == SPEC_REQUEST_ID


def test_anonymous_envelope_has_no_key_or_signature() -> None:
    anonymous = Identity.anonymous()
    signed = sign_request(_content(anonymous), anonymous)
    envelope = _decode(signed.body)
    assert set(envelope) == {"content"}
    validate_envelope(signed.body, "call", CANISTER)


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1"])
def test_signed_envelope_verifies_and_ids_agree(kind: str) -> None:
    identity = Identity.generate_ed25519() if kind == "ed25519" else Identity.generate_secp256k1()
    signed = sign_request(_content(identity), identity)
    envelope = _decode(signed.body)
    content = dict(envelope["content"])

    # Three independent computations of the request id agree.
    assert signed.request_id == rihash.request_id(content)
    assert signed.request_id == localnet_rihash.request_id(content)

    # The signature verifies with cryptography over "\x0Aic-request" · request id.
    assert envelope["sender_pubkey"] == identity.public_key_der
    message = REQUEST_DOMAIN + signed.request_id
    public = serialization.load_der_public_key(envelope["sender_pubkey"])
    signature = envelope["sender_sig"]
    assert len(signature) == 64
    if isinstance(public, Ed25519PublicKey):
        public.verify(signature, message)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))

    # And a replica-faithful validator accepts the envelope as a call from this principal.
    request = validate_envelope(signed.body, "call", CANISTER)
    assert request.request_id == signed.request_id
    assert request.sender == identity.principal.raw


def test_a_changed_field_breaks_the_signature() -> None:
    identity = Identity.generate_ed25519()
    signed = sign_request(_content(identity), identity)
    envelope = _decode(signed.body)
    envelope["content"] = {**envelope["content"], "method_name": "set"}
    forged = cbor2.dumps(cbor2.CBORTag(55799, envelope))
    with pytest.raises(EnvelopeError, match=r"(?i)signature"):
        validate_envelope(forged, "call", CANISTER)


def test_none_fields_are_left_out_of_content_and_id() -> None:
    identity = Identity.generate_ed25519()
    with_none = sign_request(_content(identity, nonce=None), identity)
    assert "nonce" not in _decode(with_none.body)["content"]
    assert with_none.request_id == rihash.request_id(
        {k: v for k, v in with_none.content.items() if v is not None}
    )


def test_read_state_paths_envelope() -> None:
    identity = Identity.generate_secp256k1()
    content: dict[str, rihash.Value | None] = {
        "request_type": "read_state",
        "sender": identity.principal.raw,
        "ingress_expiry": (int(time.time()) + 120) * 10**9,
        "paths": [[b"request_status", bytes(32)], [b"canister", CANISTER, b"controllers"]],
    }
    signed = sign_request(content, identity)
    request = validate_envelope(signed.body, "read_state", CANISTER)
    assert request.paths == [
        [b"request_status", bytes(32)],
        [b"canister", CANISTER, b"controllers"],
    ]
    assert signed.request_id == localnet_rihash.request_id(dict(_decode(signed.body)["content"]))


def test_an_arg_in_parts_gives_the_same_envelope_and_id_as_one_arg() -> None:
    identity = Identity.generate_ed25519()
    blob = bytes(range(256)) * (3 * 1024)  # 768 KiB: kept as its own part
    types = [(Nat64, 7), (Blob, blob)]
    parts = encode_with_blob(types)
    assert parts.joined() == encode_values(types)
    content = _content(identity, arg=parts.joined())
    joined = sign_request(content, identity)
    split = sign_request({**content, "arg": parts}, identity)
    assert split.request_id == joined.request_id == rihash.request_id(content)
    assert any(part is not None and len(part) == len(blob) for part in split.parts)
    # Signatures differ only if the content did: ed25519 is deterministic.
    assert split.body == joined.body
    assert _decode(split.body)["content"]["arg"] == encode_values(types)
    validate_envelope(split.body, "call", CANISTER)


def test_a_hashed_arg_gives_the_same_envelope_and_id_without_hashing_again() -> None:
    identity = Identity.generate_ed25519()
    message = encode_values([(Nat64, 7), (Nat64, 9), (Blob, bytes(range(256)) * 1024)])
    content = _content(identity, arg=message)
    plain = sign_request(content, identity)
    digest = hashlib.sha256(message).digest()
    hashed = sign_request({**content, "arg": ArgParts((memoryview(message),), digest)}, identity)
    assert hashed.request_id == plain.request_id == rihash.request_id(content)
    assert hashed.body == plain.body
    validate_envelope(hashed.body, "call", CANISTER)
    # The digest given is the one used: a wrong one names another request, whose
    # signature the IC (computing the id from the bytes it gets) refuses.
    wrong = sign_request({**content, "arg": ArgParts((message,), bytes(32))}, identity)
    assert wrong.request_id != plain.request_id
    with pytest.raises(EnvelopeError):
        validate_envelope(wrong.body, "call", CANISTER)


def test_a_prehashed_value_hashes_as_its_blob() -> None:
    reply = {"arg": b"DIDL\x00\x00" * 1000}
    prehashed = {"arg": rihash.Hashed(hashlib.sha256(reply["arg"]).digest())}
    assert rihash.hash_of_map(prehashed) == rihash.hash_of_map(reply)
