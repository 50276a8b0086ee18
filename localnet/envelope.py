"""Decode and authenticate request envelopes the way a replica does.

Follows the interface spec ("HTTPS Interface", "Authentication") and, where
the spec leaves room, the replica's HTTP handler and ``ic-validator``:

- the body is CBOR, optionally behind the self-describe tag 55799; the
  ``content`` map's ``request_type`` must be the endpoint's;
- the request id is the representation-independent hash of ``content``;
- ``ingress_expiry`` must lie in ``[now, now + 5 min + 30 s]`` (the replica's
  ``MAX_INGRESS_TTL`` plus ``PERMITTED_DRIFT_AT_VALIDATOR``); anonymous
  queries and read_state requests are exempt, as on the replica;
- the sender is anonymous (``0x04``, no key, no signature) or the
  self-authenticating principal ``sha224(DER key) · 0x02`` of
  ``sender_pubkey``; ``sender_sig`` signs ``"\\x0Aic-request" · request id``
  with Ed25519 or ECDSA (secp256k1, P-256; 64-byte ``r‖s`` over SHA-256);
- ``sender_delegation`` chains: at most 20, none expired, no key twice, at
  most 1000 ``targets`` each, each signed with
  ``"\\x1Aic-request-auth-delegation" · hash_of_map(delegation)`` by the
  previous key; the targets restrict which canisters the request may address.

Validation failures are HTTP 400 like on the replica (it reports bad
signatures and expired requests as 400, not 403); a call larger than the
ingress limit is 413.  Not supported: canister signatures (Internet Identity
delegations signed by a canister) and WebAuthn keys; they are refused with an
"Invalid public key" message that says so.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from localnet import ids
from localnet.node_api import Request, RequestType
from localnet.rihash import hash_of_map, request_id

MAX_INGRESS_TTL_NS = 5 * 60 * 1_000_000_000
PERMITTED_DRIFT_NS = 30 * 1_000_000_000
MAX_DELEGATIONS = 20
MAX_TARGETS_PER_DELEGATION = 1000
MAX_NONCE_BYTES = 32
MAX_PATHS = 1000
MAX_LABELS_PER_PATH = 127
MAX_PRINCIPAL_BYTES = 29
REQUEST_ID_BYTES = 32

REQUEST_DOMAIN = b"\x0aic-request"
DELEGATION_DOMAIN = b"\x1aic-request-auth-delegation"
_SELF_DESCRIBE_TAG = b"\xd9\xd9\xf7"
_CBOR_MAX_DEPTH = 64
# The replica's CountBytes for a signed ingress message adds the 32-byte id.
_INGRESS_ID_OVERHEAD = 32
# DER OID 1.3.6.1.4.1.56387.1.2 (IC canister signatures), to say why such keys fail.
_CANISTER_SIG_OID = bytes.fromhex("060a2b0601040183b8430102")

Clock = Callable[[], int]
"""Nanoseconds since the Unix epoch, like ``time.time_ns``."""

ReadStateEndpoint = Literal["canister", "subnet"]


class EnvelopeError(Exception):
    """A request the replica would refuse, with the HTTP status it would answer."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


@dataclass(frozen=True)
class _Delegation:
    fields: Mapping[str, Any]  # the signed map, hashed as received
    pubkey: bytes
    expiration: int
    targets: frozenset[bytes] | None
    signature: bytes


@dataclass(frozen=True)
class _Envelope:
    content: Mapping[str, Any]
    sender_pubkey: bytes | None
    sender_sig: bytes | None
    delegations: tuple[_Delegation, ...] | None


def validate_envelope(
    body: bytes,
    request_type: RequestType,
    effective_canister_id: bytes,
    *,
    clock: Clock = time.time_ns,
    max_ingress_bytes: int | None = None,
) -> Request:
    """Decode ``body`` posted to a ``request_type`` endpoint and authenticate it.

    ``max_ingress_bytes`` applies to calls only: the replica refuses a signed
    call whose size (envelope bytes + 32) exceeds the subnet's limit with 413.
    Raises :class:`EnvelopeError` with the replica's status and wording.
    """
    envelope = _parse_envelope(_decode_cbor(body))
    request = _parse_content(envelope.content, request_type, effective_canister_id)
    if request_type != "read_state":
        _check_effective_canister_id(request)
    if request_type == "call" and max_ingress_bytes is not None:
        _check_ingress_size(request, len(body), max_ingress_bytes)
    now = clock()
    anonymous = request.sender == ids.ANONYMOUS
    if request_type == "call" or not anonymous:
        _check_ingress_expiry(request.ingress_expiry, now)
    _check_nonce(request.nonce)
    targets = _authenticate(envelope, request, now)
    _check_targets(request, targets)
    return request


def check_read_state_paths(
    paths: Sequence[Sequence[bytes]], effective_id: bytes, endpoint: ReadStateEndpoint
) -> None:
    """Refuse read_state paths the replica's handler refuses (400 / 404).

    Authorization that needs the state (who sent a request, who controls a
    canister) is left to the node, which raises ``node_api.Forbidden``.
    """
    request_ids: set[bytes] = set()
    for path in paths:
        if endpoint == "subnet":
            _check_subnet_path(path, effective_id)
        else:
            _check_canister_path(path, effective_id, request_ids)


# --- decoding ---------------------------------------------------------------


def _decode_cbor(body: bytes) -> Any:
    # Strip the self-describe tag by hand: cbor2 decodes tagged content as
    # immutable (frozendict, tuples), which callers would have to special-case.
    data = body[len(_SELF_DESCRIBE_TAG) :] if body.startswith(_SELF_DESCRIBE_TAG) else body
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, max_depth=_CBOR_MAX_DEPTH, allow_duplicate_keys=False)
    try:
        value = decoder.decode()
    except Exception as exc:  # cbor2 raises assorted types on garbage
        raise _bad_cbor(f"{exc}") from exc
    if stream.tell() != len(data):
        raise _bad_cbor(f"trailing data after the envelope at byte {stream.tell()}")
    return value


def _bad_cbor(reason: str) -> EnvelopeError:
    return EnvelopeError(400, f"Failed to deserialize cbor request: {reason}")


def _parse_envelope(value: Any) -> _Envelope:
    if not isinstance(value, Mapping):
        raise _bad_cbor(f"expected an envelope map, got {type(value).__name__}")
    content = value.get("content")
    if not isinstance(content, Mapping):
        raise _bad_cbor("missing field `content` (a map)")
    pubkey = _optional_blob(value, "sender_pubkey")
    sig = _optional_blob(value, "sender_sig")
    raw_delegations = value.get("sender_delegation")
    delegations = None
    if raw_delegations is not None:
        if not isinstance(raw_delegations, list):
            raise _bad_cbor("field `sender_delegation` must be an array of maps")
        delegations = tuple(_parse_delegation(d) for d in raw_delegations)
    _check_authentication_fields(pubkey, sig, delegations)
    return _Envelope(content, pubkey, sig, delegations)


def _check_authentication_fields(
    pubkey: bytes | None, sig: bytes | None, delegations: tuple[_Delegation, ...] | None
) -> None:
    if (pubkey is None) != (sig is None) or (pubkey is None and delegations is not None):
        given = {"sender_pubkey": pubkey, "sender_sig": sig, "sender_delegation": delegations}
        present = [name for name, v in given.items() if v is not None]
        raise EnvelopeError(
            400,
            "Malformed request: MissingPubkeyOrSignature: sender_pubkey and sender_sig must be "
            f"given together (got only {', '.join(present)})",
        )


def _parse_delegation(value: Any) -> _Delegation:
    if not isinstance(value, Mapping) or not isinstance(value.get("delegation"), Mapping):
        raise _bad_cbor("each `sender_delegation` entry must be a map with a `delegation` map")
    fields = value["delegation"]
    pubkey = fields.get("pubkey")
    expiration = fields.get("expiration")
    signature = value.get("signature")
    if not isinstance(pubkey, bytes) or not isinstance(signature, bytes):
        raise _bad_cbor("a delegation needs blob fields `delegation.pubkey` and `signature`")
    if not _is_nat64(expiration):
        raise _bad_cbor("a delegation needs a nat64 field `delegation.expiration`")
    return _Delegation(fields, pubkey, expiration, _parse_targets(fields.get("targets")), signature)


def _parse_targets(value: Any) -> frozenset[bytes] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, bytes) for t in value):
        raise _bad_cbor("delegation field `targets` must be an array of principals (blobs)")
    return frozenset(value)


def _optional_blob(fields: Mapping[str, Any], name: str) -> bytes | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, bytes):
        raise _bad_cbor(f"field `{name}` must be a blob, got {type(value).__name__}")
    return value


def _required(fields: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in fields:
        raise _bad_cbor(f"missing field `{name}`")
    value = fields[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad_cbor(f"field `{name}` must be a {_KIND_NAMES[kind]}, got {type(value).__name__}")
    return value


_KIND_NAMES = {bytes: "blob", str: "text", int: "nat", list: "array"}


def _is_nat64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _parse_content(
    content: Mapping[str, Any], expected: RequestType, effective_canister_id: bytes
) -> Request:
    actual = content.get("request_type")
    if actual != expected:
        raise _bad_cbor(f"unknown variant `{actual}`, expected `{expected}` (field `request_type`)")
    sender = _principal(_required(content, "sender", bytes), "sender")
    expiry = _required(content, "ingress_expiry", int)
    if not _is_nat64(expiry):
        raise _bad_cbor(f"field `ingress_expiry` must be a nat64, got {expiry}")
    nonce = _optional_blob(content, "nonce")
    rid = _request_id(content)
    if expected == "read_state":
        paths = _parse_paths(_required(content, "paths", list))
        return Request(
            "read_state", rid, sender, expiry, effective_canister_id, nonce=nonce, paths=paths
        )
    return Request(
        expected,
        rid,
        sender,
        expiry,
        effective_canister_id,
        canister_id=_principal(_required(content, "canister_id", bytes), "canister_id"),
        method_name=_required(content, "method_name", str),
        arg=_required(content, "arg", bytes),
        nonce=nonce,
    )


def _request_id(content: Mapping[str, Any]) -> bytes:
    try:
        return request_id(content)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(
            400, f"Malformed request: cannot compute the request id: {exc}"
        ) from exc


def _principal(raw: bytes, name: str) -> bytes:
    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise EnvelopeError(
            400,
            f"Malformed request: field `{name}` is {len(raw)} bytes, "
            f"a principal has at most {MAX_PRINCIPAL_BYTES}",
        )
    return raw


def _parse_paths(paths: list[Any]) -> list[list[bytes]]:
    if len(paths) > MAX_PATHS:
        raise EnvelopeError(
            400,
            f"Too many paths in read state request: got {len(paths)} paths, "
            f"but at most {MAX_PATHS} are allowed.",
        )
    parsed = []
    for path in paths:
        if not isinstance(path, list) or not all(isinstance(label, bytes) for label in path):
            raise _bad_cbor("field `paths` must be an array of arrays of blobs")
        if len(path) > MAX_LABELS_PER_PATH:
            raise EnvelopeError(
                400,
                "At least one path in read state request is too deep: got "
                f"{len(path)} labels, but at most {MAX_LABELS_PER_PATH} are allowed.",
            )
        parsed.append(list(path))
    return parsed


# --- checks before authentication -------------------------------------------


def _check_effective_canister_id(request: Request) -> None:
    # Management canister calls route by an id inside `arg`; the node checks those.
    if request.canister_id != ids.MANAGEMENT_CANISTER and (
        request.canister_id != request.effective_canister_id
    ):
        raise EnvelopeError(
            400,
            f"Specified CanisterId {ids.to_text(request.canister_id)} does not match "
            f"effective canister id in URL {ids.to_text(request.effective_canister_id)}",
        )


def _check_ingress_size(request: Request, body_bytes: int, limit: int) -> None:
    size = body_bytes + _INGRESS_ID_OVERHEAD
    if size > limit:
        raise EnvelopeError(
            413,
            f"Request {request.request_id.hex()} is too large. Message byte size {size} "
            f"is larger than the max allowed {limit}.",
        )


def _check_ingress_expiry(expiry: int, now: int) -> None:
    latest = now + MAX_INGRESS_TTL_NS + PERMITTED_DRIFT_NS
    if not now <= expiry <= latest:
        raise EnvelopeError(
            400,
            "Invalid request expiry: Specified ingress_expiry not within expected range: "
            f"Minimum allowed expiry: {_fmt_time(now)}, "
            f"Maximum allowed expiry: {_fmt_time(latest)}, "
            f"Provided expiry:        {_fmt_time(expiry)}",
        )


def _fmt_time(ns: int) -> str:
    """The replica's ``Time`` display: ``2024-05-01 12:00:00.000000000 UTC``."""
    secs, nanos = divmod(ns, 1_000_000_000)
    try:
        stamp = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns since the epoch"
    return f"{stamp}.{nanos:09d} UTC"


def _check_nonce(nonce: bytes | None) -> None:
    if nonce is not None and len(nonce) > MAX_NONCE_BYTES:
        raise EnvelopeError(
            400,
            f"Nonce in request is too big: got {len(nonce)} bytes, "
            f"but at most {MAX_NONCE_BYTES} are allowed.",
        )


# --- authentication ---------------------------------------------------------


def self_authenticating_id(der_public_key: bytes) -> bytes:
    """The principal a DER public key authenticates: ``sha224(der) · 0x02``."""
    return hashlib.sha224(der_public_key).digest() + b"\x02"


def _authenticate(envelope: _Envelope, request: Request, now: int) -> frozenset[bytes] | None:
    """Check sender, delegations and signature; return the delegation targets (None = all)."""
    sender_text = ids.to_text(request.sender)
    if envelope.sender_pubkey is None or envelope.sender_sig is None:
        if request.sender == ids.ANONYMOUS:
            return None
        raise EnvelopeError(400, f"Missing signature from user: {sender_text}")
    if request.sender == ids.ANONYMOUS:
        raise EnvelopeError(400, "Signature is not allowed for the anonymous user.")
    if self_authenticating_id(envelope.sender_pubkey) != request.sender:
        raise EnvelopeError(
            400,
            f"The user id '{sender_text}' does not match the public key "
            f"'{envelope.sender_pubkey.hex()}'",
        )
    delegations = envelope.delegations or ()
    _check_delegation_chain(envelope.sender_pubkey, delegations, now)
    signer, targets = _verify_delegations(envelope.sender_pubkey, delegations)
    message = REQUEST_DOMAIN + request.request_id
    failure = _verify_signature(signer, envelope.sender_sig, message)
    if failure:
        raise EnvelopeError(400, f"Invalid signature: {failure}")
    return targets


def _check_delegation_chain(sender_pubkey: bytes, chain: Sequence[_Delegation], now: int) -> None:
    if len(chain) > MAX_DELEGATIONS:
        raise EnvelopeError(
            400,
            "Invalid delegation: Chain of delegations is too long: got "
            f"{len(chain)} delegations, but at most {MAX_DELEGATIONS} are allowed.",
        )
    for delegation in chain:
        if delegation.expiration < now:
            raise EnvelopeError(
                400,
                "Invalid delegation expiry: Specified sender delegation has expired:\n"
                f"Provided expiry:    {_fmt_time(delegation.expiration)}\n"
                f"Local replica time: {_fmt_time(now)}",
            )
    seen = {sender_pubkey}
    for delegation in chain:
        if delegation.pubkey in seen:
            raise EnvelopeError(
                400,
                "Invalid delegation: Chain of delegations contains at least one cycle: "
                f"first repeating public key encountered {delegation.pubkey.hex()}",
            )
        seen.add(delegation.pubkey)
    for delegation in chain:
        if delegation.targets is not None and len(delegation.targets) > MAX_TARGETS_PER_DELEGATION:
            raise EnvelopeError(
                400,
                "Invalid delegation: Delegation target error: expected at most "
                f"{MAX_TARGETS_PER_DELEGATION} targets per delegation, "
                f"but got {len(delegation.targets)}",
            )


def _verify_delegations(
    sender_pubkey: bytes, chain: Sequence[_Delegation]
) -> tuple[bytes, frozenset[bytes] | None]:
    """Walk the chain; return the key that must sign the request and the allowed targets."""
    signer = sender_pubkey
    targets: frozenset[bytes] | None = None
    for delegation in chain:
        try:
            message = DELEGATION_DOMAIN + hash_of_map(delegation.fields)
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(400, f"Invalid delegation: cannot hash it: {exc}") from exc
        failure = _verify_signature(signer, delegation.signature, message)
        if failure:
            raise EnvelopeError(400, f"Invalid delegation: {failure}")
        if delegation.targets is not None:
            targets = delegation.targets if targets is None else targets & delegation.targets
        signer = delegation.pubkey
    return signer, targets


def _check_targets(request: Request, targets: frozenset[bytes] | None) -> None:
    if targets is None:
        return
    if request.request_type != "read_state":
        if request.canister_id not in targets:
            raise EnvelopeError(
                400,
                f"Canister '{ids.to_text(request.canister_id)}' is not one of the "
                "delegation targets.",
            )
        return
    # The replica checks the receiver of a polled request against the targets;
    # for ordinary calls the receiver is the effective canister id.
    polls = any(path[:1] == [b"request_status"] for path in request.paths)
    if polls and request.effective_canister_id not in targets:
        raise EnvelopeError(
            403,
            "The user tries to access request IDs for canisters not belonging to "
            "sender delegation targets.",
        )


# --- signatures -------------------------------------------------------------


def _verify_signature(der_key: bytes, signature: bytes, message: bytes) -> str | None:
    """None if ``signature`` over ``message`` verifies, else the reason, worded like the IC."""
    key = _load_public_key(der_key)
    if isinstance(key, str):
        return key
    if isinstance(key, Ed25519PublicKey):
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return _bad_signature("Ed25519", der_key, signature, "verification failed")
        return None
    return _verify_ecdsa(key, der_key, signature, message)


def _verify_ecdsa(
    key: ec.EllipticCurvePublicKey, der_key: bytes, signature: bytes, message: bytes
) -> str | None:
    algorithm = "EcdsaSecp256k1" if isinstance(key.curve, ec.SECP256K1) else "EcdsaP256"
    if len(signature) != 64:
        return (
            f"Invalid basic signature: Malformed {algorithm} signature: expected 64 bytes "
            f"(r ‖ s), got {len(signature)}"
        )
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return _bad_signature(algorithm, der_key, signature, "verification failed")
    return None


def _bad_signature(algorithm: str, der_key: bytes, signature: bytes, reason: str) -> str:
    return (
        f"Invalid basic signature: {algorithm} signature could not be verified: "
        f"public key {der_key.hex()}, signature {signature.hex()}, error: {reason}"
    )


_PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


def _load_public_key(der_key: bytes) -> _PublicKey | str:
    """The key, or why it is not one the IC accepts for basic signatures."""
    if _CANISTER_SIG_OID in der_key:
        return _unsupported_key(der_key, "canister signatures are not supported by localnet")
    try:
        key = serialization.load_der_public_key(der_key)
    except (ValueError, UnsupportedAlgorithm) as exc:
        return _unsupported_key(der_key, f"not a DER-encoded Ed25519/ECDSA key: {exc}")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256K1 | ec.SECP256R1):
            return _unsupported_key(der_key, f"unsupported ECDSA curve {key.curve.name}")
    elif not isinstance(key, Ed25519PublicKey):
        return _unsupported_key(der_key, f"unsupported key type {type(key).__name__}")
    # The IC accepts only the canonical encoding (uncompressed EC points), so
    # that one key cannot stand for two self-authenticating principals.
    canonical = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if canonical != der_key:
        return _unsupported_key(der_key, "non-canonical encoding")
    return key


def _unsupported_key(der_key: bytes, reason: str) -> str:
    return f"Invalid public key: Malformed public key {der_key.hex()}: {reason}"


# --- read_state paths ---------------------------------------------------------


def _check_canister_path(path: Sequence[bytes], effective_id: bytes, seen: set[bytes]) -> None:
    head = path[0] if path else b""
    if head in (b"time", b"subnet", b"api_boundary_nodes"):
        _check_common_path(path)
    elif head == b"canister":
        _check_canister_info_path(path, effective_id)
    elif head == b"request_status":
        _check_request_status_path(path, seen)
    else:
        raise _invalid_path()


def _check_subnet_path(path: Sequence[bytes], effective_id: bytes) -> None:
    if len(path) == 3 and path[0] == b"subnet" and path[2] == b"metrics":
        _check_same_principal(path[1], effective_id)
        return
    if path and path[0] == b"canister_ranges":
        # The sharded routing table of the subnet itself (agent-rs fetch_subnet_by_id).
        if len(path) != 2:
            raise _invalid_path()
        _check_same_principal(path[1], effective_id)
        return
    if not path or path[0] not in (b"time", b"subnet", b"api_boundary_nodes"):
        raise _invalid_path()
    _check_common_path(path)


def _check_common_path(path: Sequence[bytes]) -> None:
    """``/time``, ``/subnet/…`` and ``/api_boundary_nodes/…``: readable by anyone."""
    head, rest = path[0], list(path[1:])
    if head == b"time":
        ok = not rest
    elif head == b"api_boundary_nodes":
        ok = len(rest) <= 1 or (
            len(rest) == 2 and rest[1] in (b"domain", b"ipv4_address", b"ipv6_address")
        )
    else:
        ok = (
            len(rest) <= 1
            or (len(rest) == 2 and rest[1] in (b"public_key", b"canister_ranges", b"node"))
            or (len(rest) == 3 and rest[1] == b"node")
            or (len(rest) == 4 and rest[1] == b"node" and rest[3] == b"public_key")
        )
    if not ok:
        raise _invalid_path()


def _check_canister_info_path(path: Sequence[bytes], effective_id: bytes) -> None:
    if len(path) == 3 and path[2] in (b"controllers", b"module_hash"):
        _check_same_principal(path[1], effective_id)
    elif len(path) == 4 and path[2] == b"metadata":
        try:
            path[3].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(400, f"Could not parse the custom section name: {exc}.") from exc
        _check_same_principal(path[1], effective_id)
    else:
        raise _invalid_path()


def _check_request_status_path(path: Sequence[bytes], seen: set[bytes]) -> None:
    leaves = (b"status", b"reply", b"reject_code", b"reject_message", b"error_code")
    if not (len(path) == 2 or (len(path) == 3 and path[2] in leaves)):
        raise _invalid_path()
    rid = path[1]
    if len(rid) != REQUEST_ID_BYTES:
        raise EnvelopeError(
            400,
            "Invalid request id in paths. Maybe the request ID is not of "
            f"{REQUEST_ID_BYTES} bytes in length?!",
        )
    if seen and rid not in seen:
        raise EnvelopeError(
            400,
            "More than one non-unique request ID exists in request_status paths: "
            f"{next(iter(seen)).hex()} and {rid.hex()}.",
        )
    seen.add(rid)


def _check_same_principal(raw: bytes, effective_id: bytes) -> None:
    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise EnvelopeError(
            400, f"Could not parse principal ID: {len(raw)} bytes is longer than a principal."
        )
    if raw != effective_id:
        raise EnvelopeError(
            400,
            f"Effective principal id in URL {ids.to_text(effective_id)} does not match "
            f"requested principal id: {ids.to_text(raw)}.",
        )


def _invalid_path() -> EnvelopeError:
    return EnvelopeError(404, "Invalid path requested.")
