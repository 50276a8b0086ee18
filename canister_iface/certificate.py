"""Verifying IC certificates: what makes an answer from a single node trustworthy.

A certificate (interface spec, "Certification") is CBOR ``{tree, signature,
delegation?}``.  It is valid when the BLS signature over
``\\x0Dic-state-root · reconstruct(tree)`` verifies under the subnet's key, and
that key is either the root key itself or comes from a *delegation*: a
root-signed certificate that lists the subnet's public key and canister
ranges.  Values are then read with :meth:`Certificate.lookup`, which tells a
value that is provably absent from one that was pruned away (unknown), as
the spec's ``lookup_path`` does.

Every failure raises :class:`~canister_iface.errors.CertificateError` saying
what is wrong, with a ``reason`` code; callers should treat it as "do not
trust this node's answer", never as a canister error.  A certificate that is
only too old or too new (``/time`` outside the tolerance) raises
:class:`~canister_iface.errors.StaleCertificate` instead, a transient error:
the node is behind or the local clock is off.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import cbor2
from pyblst import BlstP1Element, BlstP2Element, final_verify, miller_loop

from canister_iface.errors import CertificateError, StaleCertificate

# DER SubjectPublicKeyInfo prefix of an IC BLS12-381 G2 key (RFC 5480 with the
# IC's OIDs 1.3.6.1.4.1.44668.5.3.1.2.1 / 1.3.6.1.4.1.44668.5.3.2.1).
BLS_KEY_DER_PREFIX = bytes.fromhex(
    "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100"
)
# The NNS root key of IC mainnet, as agents ship it.
MAINNET_ROOT_KEY = BLS_KEY_DER_PREFIX + bytes.fromhex(
    "814c0e6ec71fab583b08bd81373c255c3c371b2e84863c98a4f1e08b74235d14fb5d9c0cd546d9685f913a0c"
    "0b2cc5341583bf4b4392e467db96d65b9bb4cb717112f8472e0d5a4d14505ffd7484b01291091c5f87b98883"
    "463f98091a0baaae"
)
BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
# Spec: certificates and query signatures should be at most about 5 minutes old.
DEFAULT_MAX_AGE_NS = 5 * 60 * 1_000_000_000


def _sep(name: bytes) -> bytes:
    return bytes([len(name)]) + name


_STATE_ROOT = _sep(b"ic-state-root")
_EMPTY_DIGEST = hashlib.sha256(_sep(b"ic-hashtree-empty")).digest()
_FORK = _sep(b"ic-hashtree-fork")
_LABELED = _sep(b"ic-hashtree-labeled")
_LEAF = _sep(b"ic-hashtree-leaf")


# ------------------------------------------------------------------ hash trees
#
# A tree node is kept as a tuple in the spec's CBOR shape, decoded and checked
# once: (0,) | (1, left, right) | (2, label, subtree) | (3, value) | (4, digest).
Node = tuple[Any, ...]


def _parse_tree(raw: Any, depth: int = 0) -> Node:
    if depth > 256:
        raise CertificateError("hash tree nested deeper than 256 levels", reason="malformed")
    if not isinstance(raw, list | tuple) or not raw or not isinstance(raw[0], int):
        raise CertificateError(
            f"hash tree node is not a tagged array: {raw!r:.60}", reason="malformed"
        )
    tag = raw[0]
    arity = {0: 1, 1: 3, 2: 3, 3: 2, 4: 2}.get(tag)
    if arity != len(raw):
        raise CertificateError(
            f"hash tree node tag {tag} with {len(raw) - 1} fields", reason="malformed"
        )
    if tag == 1:
        return (1, _parse_tree(raw[1], depth + 1), _parse_tree(raw[2], depth + 1))
    if tag in (2, 3, 4) and not isinstance(raw[1], bytes):
        raise CertificateError(
            f"hash tree node tag {tag} needs a blob, got {raw[1]!r:.60}", reason="malformed"
        )
    if tag == 2:
        return (2, raw[1], _parse_tree(raw[2], depth + 1))
    if tag == 4 and len(raw[1]) != 32:
        raise CertificateError(
            f"pruned hash tree node has a {len(raw[1])}-byte digest", reason="malformed"
        )
    return tuple(raw)


def tree_digest(node: Node) -> bytes:
    """The spec's ``reconstruct``."""
    tag = node[0]
    if tag == 0:
        return _EMPTY_DIGEST
    if tag == 1:
        return hashlib.sha256(_FORK + tree_digest(node[1]) + tree_digest(node[2])).digest()
    if tag == 2:
        return hashlib.sha256(_LABELED + node[1] + tree_digest(node[2])).digest()
    if tag == 3:
        return hashlib.sha256(_LEAF + node[1]).digest()
    digest: bytes = node[1]
    return digest


def _flatten(node: Node) -> list[Node]:
    if node[0] == 0:
        return []
    if node[0] == 1:
        return _flatten(node[1]) + _flatten(node[2])
    return [node]


class LookupStatus(Enum):
    FOUND = "found"
    ABSENT = "absent"  # provably not in the state
    UNKNOWN = "unknown"  # pruned: this certificate cannot tell
    ERROR = "error"  # the path names an inner node, not a value


@dataclass(frozen=True)
class Lookup:
    status: LookupStatus
    value: bytes = b""


def _find_label(label: bytes, forest: list[Node]) -> Node | LookupStatus:
    """The spec's ``find_label``: the subtree, or ABSENT / UNKNOWN."""
    previous: Node | None = None
    for node in forest:
        if node[0] == 2 and node[1] == label:
            return node[2]  # type: ignore[no-any-return]
        if node[0] == 2 and node[1] > label:
            proven = previous is None or (previous[0] == 2 and previous[1] < label)
            return LookupStatus.ABSENT if proven else LookupStatus.UNKNOWN
        previous = node
    if not forest or (len(forest) == 1 and forest[0][0] == 3):
        return LookupStatus.ABSENT
    last = forest[-1]
    return LookupStatus.ABSENT if last[0] == 2 and last[1] < label else LookupStatus.UNKNOWN


def lookup_subtree(tree: Node, path: Sequence[bytes | str]) -> Node | LookupStatus:
    """The subtree at ``path``, or why there is none."""
    node = tree
    for label in path:
        found = _find_label(_label(label), _flatten(node))
        if isinstance(found, LookupStatus):
            return found
        node = found
    return node


def lookup_path(tree: Node, path: Sequence[bytes | str]) -> Lookup:
    """The spec's ``lookup_path``."""
    node = lookup_subtree(tree, path)
    if isinstance(node, LookupStatus):
        return Lookup(node)
    tag = node[0]
    if tag == 3:
        return Lookup(LookupStatus.FOUND, node[1])
    if tag == 0:
        return Lookup(LookupStatus.ABSENT)
    return Lookup(LookupStatus.UNKNOWN if tag == 4 else LookupStatus.ERROR)


def _label(label: bytes | str) -> bytes:
    return label.encode("utf-8") if isinstance(label, str) else label


def labeled_children(node: Node) -> list[tuple[bytes, Node]]:
    """The ``(label, subtree)`` pairs present (not pruned) directly under ``node``."""
    return [(child[1], child[2]) for child in _flatten(node) if child[0] == 2]


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Delegation:
    subnet_id: bytes
    certificate: Certificate
    raw_certificate: bytes


@dataclass(frozen=True)
class Certificate:
    """A decoded (not yet verified) certificate."""

    tree: Node
    signature: bytes
    delegation: Delegation | None

    def root_hash(self) -> bytes:
        return tree_digest(self.tree)

    def lookup(self, *path: bytes | str) -> Lookup:
        return lookup_path(self.tree, path)

    def value(self, *path: bytes | str) -> bytes | None:
        """The value at ``path`` if present, ``None`` if provably absent.

        Raises :class:`CertificateError` when the certificate cannot tell
        (pruned) or the path names an inner node: a node that answers a
        ``read_state`` must reveal what was asked.
        """
        result = self.lookup(*path)
        if result.status is LookupStatus.FOUND:
            return result.value
        if result.status is LookupStatus.ABSENT:
            return None
        raise CertificateError(
            f"certificate cannot answer {_show(path)}: {result.status.value}", reason="incomplete"
        )

    @property
    def time_ns(self) -> int:
        raw = self.value("time")
        if raw is None:
            raise CertificateError("certificate has no /time", reason="incomplete")
        return decode_uleb128(raw, "/time")


def decode_uleb128(raw: bytes, what: str) -> int:
    number = 0
    for index, byte in enumerate(raw):
        number |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if index != len(raw) - 1:
                break
            return number
    raise CertificateError(
        f"{what} is not a LEB128 natural number: {raw.hex()}", reason="malformed"
    )


def decode_certificate(data: bytes) -> Certificate:
    """Parse CBOR (with or without tag 55799); checks shape, not signatures."""
    try:
        body = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise CertificateError(f"certificate is not valid CBOR: {exc}", reason="malformed") from exc
    return _certificate_from(body)


def _certificate_from(body: Any) -> Certificate:
    if isinstance(body, cbor2.CBORTag) and body.tag == 55799:
        body = body.value
    if not isinstance(body, Mapping) or "tree" not in body:
        raise CertificateError("certificate is not a map with a 'tree'", reason="malformed")
    signature = body.get("signature")
    if not isinstance(signature, bytes) or len(signature) != 48:
        raise CertificateError(
            "certificate signature must be a 48-byte BLS G1 point", reason="malformed"
        )
    delegation = None
    if body.get("delegation") is not None:
        delegation = _delegation_from(body["delegation"])
    return Certificate(_parse_tree(body["tree"]), signature, delegation)


def _delegation_from(raw: Any) -> Delegation:
    if not isinstance(raw, Mapping):
        raise CertificateError("certificate delegation is not a map", reason="malformed")
    subnet_id, inner = raw.get("subnet_id"), raw.get("certificate")
    if not isinstance(subnet_id, bytes) or not isinstance(inner, bytes):
        raise CertificateError(
            "certificate delegation needs blob subnet_id and certificate", reason="malformed"
        )
    parent = decode_certificate(inner)
    if parent.delegation is not None:
        raise CertificateError(
            "delegation certificate has its own delegation (one hop only)", reason="delegation"
        )
    return Delegation(subnet_id, parent, inner)


# ------------------------------------------------------------- request status


@dataclass(frozen=True)
class RequestStatus:
    """``/request_status/<id>`` as a verified certificate shows it."""

    status: str  # received | processing | replied | rejected | done
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in ("replied", "rejected", "done")


def request_status(cert: Certificate, request_id: bytes) -> RequestStatus | None:
    """The certified status of a call; ``None`` while the IC provably has not seen it.

    Raises :class:`CertificateError` when the certificate does not reveal the
    status (pruned) or a replied/rejected status lacks its fields.
    """
    raw = cert.value("request_status", request_id, "status")
    if raw is None:
        return None
    status = raw.decode("utf-8", "replace")
    if status == "replied":
        reply = cert.value("request_status", request_id, "reply")
        if reply is None:
            raise CertificateError(
                f"request {request_id.hex()} is replied but has no reply", reason="incomplete"
            )
        return RequestStatus(status, reply=reply)
    if status == "rejected":
        return _rejected_status(cert, request_id)
    return RequestStatus(status)


def _rejected_status(cert: Certificate, request_id: bytes) -> RequestStatus:
    code = cert.value("request_status", request_id, "reject_code")
    message = cert.value("request_status", request_id, "reject_message")
    if code is None or message is None:
        raise CertificateError(
            f"request {request_id.hex()} is rejected without code or message", reason="incomplete"
        )
    error_code = cert.value("request_status", request_id, "error_code")
    return RequestStatus(
        "rejected",
        reject_code=decode_uleb128(code, "reject_code"),
        reject_message=message.decode("utf-8", "replace"),
        error_code=error_code.decode("utf-8", "replace") if error_code is not None else None,
    )


# ---------------------------------------------------------------- verification


def bls_public_key(der: bytes) -> bytes:
    """The 96-byte G2 key inside an IC BLS DER key; checks prefix and length."""
    if len(der) != len(BLS_KEY_DER_PREFIX) + 96 or not der.startswith(BLS_KEY_DER_PREFIX):
        raise CertificateError(
            f"not a DER-encoded IC BLS12-381 key ({len(der)} bytes, prefix {der[:8].hex()}…): "
            "expected 133 bytes starting with the IC's BLS OIDs",
            reason="malformed",
        )
    return der[len(BLS_KEY_DER_PREFIX) :]


# A pure function of its three byte strings, so remembering its answer is
# exact.  It pays: every certificate of one state height (all the calls a
# subnet answered in one round, the relay has dozens in flight) carries the
# same signature over the same root hash.  blst (pyblst) rather than arkworks:
# a check costs 1.0 ms instead of 1.7 (hash to curve 0.06 vs 0.22 ms, the two
# Miller loops and final exponentiation 0.9 vs 1.4), and localnet signs with
# arkworks, so the tests check one implementation against the other.
@lru_cache(maxsize=256)
def _bls_verify(signature: bytes, message: bytes, key_der: bytes) -> bool:
    key = _g2_key(bls_public_key(key_der))
    try:
        # uncompress checks that the point is on the curve and in the subgroup
        sig = BlstP1Element.uncompress(signature)
    except Exception:  # malformed, not on the curve, not in the subgroup
        return False
    if signature == _G1_IDENTITY:
        return False  # e(O, g2) = 1: it would verify under the identity key alone
    hashed = BlstP1Element.hash_to_group(message, BLS_DST)
    # e(sig, g2) == e(H(m), pk)
    return bool(final_verify(miller_loop(sig, _G2_GENERATOR), miller_loop(hashed, key)))


_G1_IDENTITY = bytes([0xC0]) + bytes(47)
_G2_IDENTITY = bytes([0xC0]) + bytes(95)
_G2_GENERATOR = BlstP2Element.uncompress(
    bytes.fromhex(
        "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d05"
        "5d042b7e024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbef"
        "d48056c8c121bdb8"
    )
)


@lru_cache(maxsize=32)
def _g2_key(raw: bytes) -> BlstP2Element:
    if raw == _G2_IDENTITY:
        raise CertificateError(
            "BLS public key is the identity point, which no subnet uses", reason="malformed"
        )
    try:
        return BlstP2Element.uncompress(raw)
    except Exception as exc:
        raise CertificateError(
            f"BLS public key is not a valid G2 point: {exc}", reason="malformed"
        ) from exc


def verify_certificate(
    certificate: bytes | Certificate,
    root_key: bytes = MAINNET_ROOT_KEY,
    *,
    canister_id: bytes | None = None,
    subnet_id: bytes | None = None,
    now_ns: int | None = None,
    max_age_ns: int | None = DEFAULT_MAX_AGE_NS,
) -> Certificate:
    """Decode and verify; returns the certificate whose values can be trusted.

    ``canister_id`` (the effective canister id of the request) must lie in a
    delegation's canister ranges; ``subnet_id`` (for subnet read_state) must be
    the delegation's subnet.  ``/time`` must be within ``max_age_ns`` of
    ``now_ns`` (default: the system clock) in either direction; pass
    ``max_age_ns=None`` to skip the freshness check (e.g. for test vectors).
    """
    cert = decode_certificate(certificate) if isinstance(certificate, bytes) else certificate
    key = root_key
    if cert.delegation is not None:
        key = _delegated_key(cert.delegation, root_key, canister_id, subnet_id)
    if not _bls_verify(cert.signature, _STATE_ROOT + cert.root_hash(), key):
        signer = "the delegated subnet key" if cert.delegation else "the root key"
        raise CertificateError(
            f"certificate signature does not verify under {signer}", reason="signature"
        )
    if max_age_ns is not None:
        check_freshness(cert, max_age_ns, now_ns)
    return cert


def check_freshness(cert: Certificate, max_age_ns: int, now_ns: int | None = None) -> None:
    """Refuse a certificate whose ``/time`` is more than ``max_age_ns`` off ``now_ns``."""
    now = time.time_ns() if now_ns is None else now_ns
    skew = cert.time_ns - now
    if abs(skew) > max_age_ns:
        direction = "in the future" if skew > 0 else "old"
        raise StaleCertificate(
            f"the certificate's time is {abs(skew) / 1e9:.1f} s {direction} (tolerance "
            f"{max_age_ns / 1e9:.0f} s): the node is behind or this machine's clock is off; "
            "retry, and check the clock (NTP) if it persists",
            skew_seconds=skew / 1e9,
        )


def _delegated_key(
    delegation: Delegation, root_key: bytes, canister_id: bytes | None, subnet_id: bytes | None
) -> bytes:
    if canister_id is None and subnet_id is None:
        # Without a scope a subnet could certify canisters it does not host.
        raise CertificateError(
            "certificate carries a subnet delegation: pass the canister_id (or subnet_id) "
            "the request was for, so the delegation's scope can be checked",
            reason="delegation",
        )
    subnet_key = _verified_subnet_key(delegation.raw_certificate, delegation.subnet_id, root_key)
    if subnet_id is not None and subnet_id != delegation.subnet_id:
        raise CertificateError(
            f"certificate is delegated to subnet {delegation.subnet_id.hex()}, "
            f"but subnet {subnet_id.hex()} was asked",
            reason="delegation",
        )
    if canister_id is not None:
        ranges = delegation_canister_ranges(delegation)
        if not any(lo <= canister_id <= hi for lo, hi in ranges):
            raise CertificateError(
                f"canister {canister_id.hex()} is outside the canister ranges delegated to "
                f"subnet {delegation.subnet_id.hex()}",
                reason="delegation",
            )
    return subnet_key


@lru_cache(maxsize=64)
def _verified_subnet_key(raw_certificate: bytes, subnet_id: bytes, root_key: bytes) -> bytes:
    """Verify a delegation certificate once; agents see the same one for hours."""
    parent = decode_certificate(raw_certificate)
    if not _bls_verify(parent.signature, _STATE_ROOT + parent.root_hash(), root_key):
        raise CertificateError(
            "delegation certificate signature does not verify under root key", reason="signature"
        )
    key = parent.value("subnet", subnet_id, "public_key")
    if key is None:
        raise CertificateError(
            f"delegation certificate has no key for subnet {subnet_id.hex()}", reason="delegation"
        )
    bls_public_key(key)  # shape check before anything is verified with it
    return key


def delegation_canister_ranges(delegation: Delegation) -> list[tuple[bytes, bytes]]:
    """The canister ranges the delegation certifies, from either layout.

    Older certificates carry ``/subnet/<id>/canister_ranges``; newer ones
    shard them under ``/canister_ranges/<id>/<lower bound>`` and reveal only
    the shard that matters.  Every revealed shard is certified, so the union
    of the revealed ones is a sound (if partial) set.
    """
    parent, subnet = delegation.certificate, delegation.subnet_id
    flat = parent.lookup("subnet", subnet, "canister_ranges")
    if flat.status is LookupStatus.FOUND:
        return decode_canister_ranges(flat.value)
    shards = lookup_subtree(parent.tree, [b"canister_ranges", subnet])
    ranges: list[tuple[bytes, bytes]] = []
    if not isinstance(shards, LookupStatus):
        for label, shard in labeled_children(shards):
            if shard[0] != 3:
                raise CertificateError(
                    f"canister range shard {label.hex()} is not a leaf", reason="malformed"
                )
            ranges += decode_canister_ranges(shard[1])
    if not ranges:
        raise CertificateError(
            f"delegation reveals no canister ranges for {subnet.hex()}", reason="delegation"
        )
    return ranges


def decode_canister_ranges(raw: bytes) -> list[tuple[bytes, bytes]]:
    """``tagged<[*[principal principal]]>`` -> ``[(lo, hi), ...]``."""
    try:
        decoded = cbor2.loads(raw)
    except Exception as exc:
        raise CertificateError(
            f"canister ranges are not valid CBOR: {exc}", reason="malformed"
        ) from exc
    if isinstance(decoded, cbor2.CBORTag):
        decoded = decoded.value
    if not isinstance(decoded, list | tuple):
        raise CertificateError(
            f"canister ranges are not an array: {decoded!r:.60}", reason="malformed"
        )
    ranges = []
    for item in decoded:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise CertificateError(
                f"canister range is not a [lo, hi] pair: {item!r:.60}", reason="malformed"
            )
        lo, hi = item
        if not isinstance(lo, bytes) or not isinstance(hi, bytes):
            raise CertificateError(
                "canister range bounds must be principal blobs", reason="malformed"
            )
        ranges.append((lo, hi))
    return ranges


def _show(path: Sequence[bytes | str]) -> str:
    return "/" + "/".join(_readable(_label(label)) for label in path)


def _readable(raw: bytes) -> str:
    text = raw.decode("ascii", "replace")
    return text if raw and raw.isascii() and text.isprintable() else raw.hex()
