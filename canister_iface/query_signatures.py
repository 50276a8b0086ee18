"""Replica-signed queries: checking that a query answer comes from a node of the right subnet.

A query is answered by one node, without consensus, so its answer carries no
certificate.  Instead (interface spec, "Query call", ``verify_response``) the
node signs, with its Ed25519 node key::

    "\\x0Bic-response" · hash_of_map({status, reply | reject fields, timestamp, request_id})

What this module checks, given a certificate that the caller already verified
against the root key:

- which subnet hosts the canister: the certificate's delegation names it; a
  certificate without delegation comes from the root subnet (or a one-subnet
  local network), whose id is found in ``/subnet`` — and the canister must
  lie in that subnet's certified canister ranges;
- the node keys of that subnet (``/subnet/<id>/node/<node>/public_key``);
- that every signature in the answer is by one of those nodes, over exactly
  the fields received, for this request id, and recent (``timestamp`` within
  the tolerance).

What it cannot check: that the node executed the query honestly — one node
answers, and a malicious node of the right subnet can still lie.  Only
update calls (certified by the subnet) protect against that.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from canister_iface import certificate as cert_mod
from canister_iface.certificate import Certificate, LookupStatus
from canister_iface.errors import CertificateError, StaleCertificate
from canister_iface.principal import Principal
from canister_iface.rihash import Hashed, Value, hash_of_map

RESPONSE_DOMAIN = b"\x0bic-response"
# DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410): node keys are 44 bytes.
ED25519_DER_PREFIX = bytes.fromhex("302a300506032b6570032100")


@dataclass
class Subnet:
    """A subnet's id, certified canister ranges and node keys, as a certificate showed them."""

    subnet_id: bytes
    ranges: list[tuple[bytes, bytes]]
    node_keys: dict[bytes, bytes]  # node id -> DER Ed25519 key
    fetched_at: float = field(default_factory=time.monotonic)

    def hosts(self, canister_id: bytes) -> bool:
        return any(lo <= canister_id <= hi for lo, hi in self.ranges)


def subnet_from_certificate(cert: Certificate, canister_id: bytes, root_key: bytes) -> Subnet:
    """The subnet hosting ``canister_id``, from a verified read_state of ``/subnet``."""
    if cert.delegation is not None:
        subnet_id = cert.delegation.subnet_id
        # verify_certificate already checked the canister against the delegation's ranges.
        ranges = cert_mod.delegation_canister_ranges(cert.delegation)
    else:
        subnet_id = _root_subnet_id(cert, canister_id, root_key)
        ranges = _ranges(cert, subnet_id)
    subnet = Subnet(subnet_id, ranges, _node_keys(cert, subnet_id))
    if not subnet.hosts(canister_id):
        raise CertificateError(
            f"canister {Principal(canister_id)} is outside the certified canister ranges of "
            f"subnet {Principal(subnet_id)}",
            reason="not_hosted",
        )
    if not subnet.node_keys:
        raise CertificateError(
            f"the certificate lists no nodes of subnet {Principal(subnet_id)}", reason="incomplete"
        )
    return subnet


def _root_subnet_id(cert: Certificate, canister_id: bytes, root_key: bytes) -> bytes:
    """Without a delegation the root key's subnet signed: find it under ``/subnet``.

    On mainnet that is the NNS subnet, whose id is the self-authenticating id
    of the root key; a local network may use any id, so failing that, the
    subnet whose certified ranges hold the canister is taken.
    """
    subnets = cert_mod.lookup_subtree(cert.tree, [b"subnet"])
    if isinstance(subnets, LookupStatus):
        raise CertificateError("the certificate does not reveal /subnet", reason="incomplete")
    ids = [label for label, _ in cert_mod.labeled_children(subnets)]
    nns = Principal.self_authenticating(root_key).raw
    if nns in ids:
        return nns
    for subnet_id in ids:
        if any(lo <= canister_id <= hi for lo, hi in _ranges(cert, subnet_id, missing_ok=True)):
            return subnet_id
    raise CertificateError(
        f"no subnet in the certificate hosts canister {Principal(canister_id)} "
        f"(subnets: {', '.join(str(Principal(i)) for i in ids) or 'none'})",
        reason="not_hosted",
    )


def _ranges(
    cert: Certificate, subnet_id: bytes, missing_ok: bool = False
) -> list[tuple[bytes, bytes]]:
    """Canister ranges from ``/subnet/<id>/canister_ranges`` or the sharded ``/canister_ranges``."""
    flat = cert.lookup("subnet", subnet_id, "canister_ranges")
    if flat.status is LookupStatus.FOUND:
        return cert_mod.decode_canister_ranges(flat.value)
    ranges: list[tuple[bytes, bytes]] = []
    shards = cert_mod.lookup_subtree(cert.tree, [b"canister_ranges", subnet_id])
    if not isinstance(shards, LookupStatus):
        for _, shard in cert_mod.labeled_children(shards):
            if shard[0] == 3:
                ranges += cert_mod.decode_canister_ranges(shard[1])
    if not ranges and not missing_ok:
        raise CertificateError(
            f"the certificate reveals no canister ranges of subnet {Principal(subnet_id)}",
            reason="incomplete",
        )
    return ranges


def _node_keys(cert: Certificate, subnet_id: bytes) -> dict[bytes, bytes]:
    nodes = cert_mod.lookup_subtree(cert.tree, [b"subnet", subnet_id, b"node"])
    if isinstance(nodes, LookupStatus):
        return {}
    keys: dict[bytes, bytes] = {}
    for node_id, _ in cert_mod.labeled_children(nodes):
        found = cert.lookup("subnet", subnet_id, "node", node_id, "public_key")
        if found.status is LookupStatus.FOUND:
            keys[node_id] = found.value
    return keys


# -------------------------------------------------------------------- responses


def signed_fields(response: Mapping[str, Any]) -> dict[str, Value | None]:
    """The fields of a query response the node signature covers (without timestamp/id)."""
    status = response.get("status")
    if status == "replied":
        reply = response.get("reply")
        if not isinstance(reply, Mapping) or not isinstance(reply.get("arg"), bytes | memoryview):
            raise CertificateError(
                "a replied query response needs reply.arg (a blob)", reason="malformed"
            )
        # reply.arg is hashed once here (it is most of the bytes): every node's
        # signature check, and a relay sending it on (reply_arg_digest), reuse it.
        fields = {str(key): _value(item) for key, item in reply.items() if key != "arg"}
        fields["arg"] = Hashed(sha256(reply["arg"]).digest())
        return {"status": "replied", "reply": fields}
    if status == "rejected":
        return {
            "status": "rejected",
            "reject_code": response.get("reject_code"),
            "reject_message": response.get("reject_message"),
            "error_code": response.get("error_code"),
        }
    raise CertificateError(
        f"query response status {status!r} cannot be verified", reason="malformed"
    )


def reply_arg_digest(fields: Mapping[str, Value | None]) -> bytes | None:
    """SHA-256 of reply.arg, from the fields :func:`signed_fields` returned (a reply)."""
    reply = fields.get("reply")
    arg = reply.get("arg") if isinstance(reply, Mapping) else None
    return arg.digest if isinstance(arg, Hashed) else None


def _value(raw: Any) -> Value:
    """Check that a decoded CBOR value is hashable representation-independently."""
    if isinstance(raw, bytes | memoryview | str) or (
        isinstance(raw, int) and not isinstance(raw, bool)
    ):
        return raw
    if isinstance(raw, Mapping):
        return {str(key): _value(item) for key, item in raw.items()}
    if isinstance(raw, Sequence):
        return [_value(item) for item in raw]
    raise CertificateError(
        f"query response holds a {type(raw).__name__}, which is not signable", reason="malformed"
    )


@dataclass(frozen=True)
class NodeSignature:
    timestamp_ns: int
    signature: bytes
    node_id: bytes


def node_signatures(response: Mapping[str, Any]) -> list[NodeSignature]:
    raw = response.get("signatures")
    if not isinstance(raw, Sequence) or isinstance(raw, bytes | str) or not raw:
        raise CertificateError(
            "the query response carries no node signatures; the node may be too old or the "
            "answer was stripped on the way",
            reason="signature",
        )
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise CertificateError("a query response signature is not a map", reason="malformed")
        timestamp, signature, identity = (
            item.get("timestamp"),
            item.get("signature"),
            item.get("identity"),
        )
        if not (
            isinstance(timestamp, int)
            and isinstance(signature, bytes)
            and isinstance(identity, bytes)
        ):
            raise CertificateError(
                "a query response signature lacks timestamp/signature/identity", reason="malformed"
            )
        out.append(NodeSignature(timestamp, signature, identity))
    return out


def verify_node_signature(
    fields: Mapping[str, Value | None],
    request_id: bytes,
    signature: NodeSignature,
    node_key_der: bytes,
) -> None:
    """Raise :class:`CertificateError` unless ``signature`` signs ``fields`` for ``request_id``."""
    if len(node_key_der) != 44 or not node_key_der.startswith(ED25519_DER_PREFIX):
        raise CertificateError(
            f"node {Principal(signature.node_id)} has a key that is not DER Ed25519",
            reason="malformed",
        )
    key = Ed25519PublicKey.from_public_bytes(node_key_der[len(ED25519_DER_PREFIX) :])
    signed = {**fields, "timestamp": signature.timestamp_ns, "request_id": request_id}
    try:
        key.verify(signature.signature, RESPONSE_DOMAIN + hash_of_map(signed))
    except InvalidSignature:
        raise CertificateError(
            f"the query response signature of node {Principal(signature.node_id)} does not "
            "verify: the answer was altered or the node is not who it claims",
            reason="signature",
        ) from None


def check_timestamp(signature: NodeSignature, now_ns: int, max_age_ns: int) -> None:
    """Refuse a node signature whose timestamp is too far from ``now_ns`` (transient)."""
    skew = signature.timestamp_ns - now_ns
    if abs(skew) > max_age_ns:
        direction = "in the future" if skew > 0 else "old"
        raise StaleCertificate(
            f"the query response was signed {abs(skew) / 1e9:.1f} s {direction} (tolerance "
            f"{max_age_ns / 1e9:.0f} s): a replayed answer, a node that is behind or this "
            "machine's clock is off; retry, and check the clock (NTP) if it persists",
            skew_seconds=skew / 1e9,
        )
