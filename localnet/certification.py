"""Certified state for localnet: BLS-signed state trees and signed query responses.

What the IC does, on one subnet:

- the subnet signs the root hash of its state tree with a BLS12-381 threshold
  key (signature in G1, public key in G2, ciphersuite
  ``BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_``, message
  ``\\x0Dic-state-root · root_hash``); localnet has one ordinary key instead
  of a threshold key, which verifies the same way;
- ``read_state`` and the v4 call endpoint return a *certificate*: a pruned
  state tree, the signature and, for subnets other than the root subnet, a
  *delegation* (a root-signed certificate of the subnet's key and canister
  ranges);
- every query response is signed by the node that ran it (Ed25519), and the
  node's key is in the state tree under ``/subnet/<id>/node/<node_id>``.

:class:`StateView` is the part of the replicated state the tree is built
from; :func:`state_tree` turns it into the pruned tree for the requested
paths.  Leaves are encoded as the interface spec's "The system state tree"
section says: nats as LEB128, text as UTF-8, blobs as is, principal lists and
canister ranges as CBOR with the self-describing tag 55799.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from py_arkworks_bls12381 import G1Point, G2Point, Scalar

from localnet import hashtree
from localnet.hashtree import HashTree, Label, LabeledValue, domain_sep
from localnet.rihash import hash_of_map, leb128

BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
STATE_ROOT_DOMAIN = domain_sep("ic-state-root")
QUERY_RESPONSE_DOMAIN = domain_sep("ic-response")
# RFC 5480 SubjectPublicKeyInfo with the IC's OIDs (algorithm
# 1.3.6.1.4.1.44668.5.3.1.2.1, curve 1.3.6.1.4.1.44668.5.3.2.1) and a 96-byte
# BIT STRING: the prefix of every root and subnet key, mainnet's included.
BLS_DER_PREFIX = bytes.fromhex(
    "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100"
)
SELF_DESCRIBE_TAG = 55799
REQUEST_STATUSES = frozenset({"received", "processing", "replied", "rejected", "done"})


def cbor_self_describing(value: Any) -> bytes:
    """CBOR with the self-describing tag 55799, as certificates and leaves use."""
    return cbor2.dumps(cbor2.CBORTag(SELF_DESCRIBE_TAG, value))


def self_authenticating_id(public_key_der: bytes) -> bytes:
    """The principal ``SHA-224(der) · 0x02`` of a DER public key."""
    return hashlib.sha224(public_key_der).digest() + b"\x02"


# ------------------------------------------------------------------------ keys


class RootKey:
    """A BLS12-381 key that signs state roots (localnet's subnet "threshold" key)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError(f"a BLS secret key is 32 bytes (big-endian scalar), got {len(secret)}")
        self._scalar = Scalar.from_be_bytes(secret)
        if self._scalar.is_zero():
            raise ValueError("a BLS secret key must not be zero")
        self._secret = secret
        self.public_key = (G2Point() * self._scalar).to_compressed_bytes()

    @classmethod
    def generate(cls) -> RootKey:
        # 64 random bytes reduced mod r: uniform enough, and never zero in practice.
        scalar = Scalar.from_be_bytes_mod_order(secrets.token_bytes(64))
        return cls(scalar.to_be_bytes())

    @classmethod
    def from_bytes(cls, secret: bytes) -> RootKey:
        """Load a key saved with :meth:`to_bytes` (``--state-dir`` persistence)."""
        return cls(secret)

    def to_bytes(self) -> bytes:
        return self._secret

    @property
    def public_key_der(self) -> bytes:
        """The 133-byte DER form ``/api/v2/status`` publishes as ``root_key``."""
        return BLS_DER_PREFIX + self.public_key

    def sign(self, message: bytes) -> bytes:
        """A 48-byte compressed G1 signature under the IC's ciphersuite."""
        return (G1Point.hash_to_curve(message, BLS_DST) * self._scalar).to_compressed_bytes()


class NodeSigner:
    """An Ed25519 node key that signs query responses."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key_der = private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        self.node_id = self_authenticating_id(self.public_key_der)

    @classmethod
    def generate(cls) -> NodeSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> NodeSigner:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def to_bytes(self) -> bytes:
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign_query_response(
        self, request_id: bytes, response: Mapping[str, Any], timestamp_ns: int
    ) -> dict[str, Any]:
        """The ``signatures`` entry for a v3 query response body.

        ``response`` is the body without ``signatures``: ``{"status": "replied",
        "reply": {"arg": ...}}`` or ``{"status": "rejected", "reject_code",
        "reject_message", "error_code"?}``.
        """
        signed = _signed_query_fields(response)
        signed |= {"timestamp": timestamp_ns, "request_id": request_id}
        signature = self._key.sign(QUERY_RESPONSE_DOMAIN + hash_of_map(signed))
        return {"timestamp": timestamp_ns, "signature": signature, "identity": self.node_id}


def _signed_query_fields(response: Mapping[str, Any]) -> dict[str, Any]:
    """The response fields the spec's ``verify_response`` covers."""
    status = response.get("status")
    if status == "replied":
        return {"status": "replied", "reply": response["reply"]}
    if status == "rejected":
        fields = {key: response.get(key) for key in ("reject_code", "reject_message")}
        if None in fields.values():
            raise ValueError("a rejected query response needs reject_code and reject_message")
        return {"status": "rejected", **fields, "error_code": response.get("error_code")}
    raise ValueError(f"query response status must be 'replied' or 'rejected', got {status!r}")


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Delegation:
    """A subnet delegation: the root-signed certificate of a subnet's key and ranges."""

    subnet_id: bytes
    certificate: bytes  # CBOR certificate, itself without a delegation
    root_key_der: bytes  # the key that signed ``certificate``


class Certifier:
    """Signs state trees; produces the CBOR certificates the HTTP layer returns."""

    def __init__(self, key: RootKey, delegation: Delegation | None = None) -> None:
        self.key = key
        self.delegation = delegation

    @property
    def root_key_der(self) -> bytes:
        """The root of trust agents must know (``/api/v2/status`` ``root_key``)."""
        return self.delegation.root_key_der if self.delegation else self.key.public_key_der

    def certificate(self, tree: HashTree) -> bytes:
        """``tagged{tree, signature, delegation?}``, signing ``tree``'s root hash."""
        body: dict[str, Any] = {
            "tree": hashtree.to_cbor_value(tree),
            "signature": self.key.sign(STATE_ROOT_DOMAIN + hashtree.reconstruct(tree)),
        }
        if self.delegation is not None:
            body["delegation"] = {
                "subnet_id": self.delegation.subnet_id,
                "certificate": self.delegation.certificate,
            }
        return cbor_self_describing(body)

    def delegate(
        self,
        subnet_key: RootKey,
        subnet_id: bytes,
        canister_ranges: Sequence[tuple[bytes, bytes]],
        time_ns: int,
    ) -> Certifier:
        """A certifier for another subnet whose certificates carry a delegation from us.

        The delegation certificate reveals ``/subnet/<id>/public_key``, both
        forms of the subnet's canister ranges and ``/time``, as the NNS's does.
        """
        if self.delegation is not None:
            raise ValueError("a delegated certifier cannot delegate again: the spec allows one hop")
        tree = hashtree.build(
            {
                "subnet": {
                    subnet_id: {
                        "public_key": subnet_key.public_key_der,
                        "canister_ranges": encode_canister_ranges(canister_ranges),
                    }
                },
                "canister_ranges": {subnet_id: _range_shards(canister_ranges)},
                "time": leb128(time_ns),
            }
        )
        certificate = self.certificate(tree)
        return Certifier(subnet_key, Delegation(subnet_id, certificate, self.root_key_der))


# ------------------------------------------------------------------ state tree


@dataclass
class CanisterView:
    """What the state tree shows of one canister."""

    certified_data: bytes = b""
    module_hash: bytes | None = None  # None while the canister is empty
    controllers: list[bytes] = field(default_factory=list)
    # Custom sections ``icp:public <name>`` / ``icp:private <name>`` by name;
    # the HTTP layer decides who may read the private ones.
    metadata: dict[str, bytes] = field(default_factory=dict)


@dataclass
class RequestStatus:
    """``/request_status/<id>``: the fields present depend on ``status``."""

    status: str  # received | processing | replied | rejected | done
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None

    def __post_init__(self) -> None:
        if self.status not in REQUEST_STATUSES:
            raise ValueError(f"request status must be one of {sorted(REQUEST_STATUSES)}")
        if self.status == "replied" and self.reply is None:
            raise ValueError("a replied request needs its reply bytes")
        if self.status == "rejected" and (self.reject_code is None or self.reject_message is None):
            raise ValueError("a rejected request needs reject_code and reject_message")


@dataclass(frozen=True)
class SubnetInfo:
    """What every subnet's state tree shows of another subnet (the routing table)."""

    subnet_id: bytes
    public_key_der: bytes
    canister_ranges: list[tuple[bytes, bytes]]
    subnet_type: str = "application"


@dataclass
class StateView:
    """The certified part of one subnet's state at one instant."""

    time_ns: int
    subnet_id: bytes
    subnet_public_key_der: bytes
    canister_ranges: list[tuple[bytes, bytes]]  # closed intervals, ordered
    nodes: dict[bytes, bytes] = field(default_factory=dict)  # node id -> Ed25519 DER key
    canisters: dict[bytes, CanisterView] = field(default_factory=dict)
    request_status: dict[bytes, RequestStatus] = field(default_factory=dict)
    # ``/subnet/<id>/type`` (certification version 25 on): agent-rs reads it when present.
    subnet_type: str = "application"
    # The other subnets of the network: their keys and ranges, never their nodes
    # (the replica's read_state shows only its own subnet's node keys).
    other_subnets: list[SubnetInfo] = field(default_factory=list)


def encode_canister_ranges(ranges: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``tagged<[*[principal principal]]>``, ordered by lower bound."""
    return cbor_self_describing([[lo, hi] for lo, hi in sorted(ranges)])


def encode_controllers(controllers: Iterable[bytes]) -> bytes:
    """``#6.55799([* bytes])``."""
    return cbor_self_describing(list(controllers))


def _range_shards(ranges: Sequence[tuple[bytes, bytes]]) -> dict[Label, LabeledValue]:
    """The sharded form ``/canister_ranges/<subnet>/<lower bound>``: one range per shard.

    Newer agents look the effective canister id up here (the largest shard
    label not above it) instead of in ``/subnet/<id>/canister_ranges``.
    """
    return {lo: encode_canister_ranges([(lo, hi)]) for lo, hi in ranges}


def _subnet_subtree(info: SubnetInfo) -> dict[Label, LabeledValue]:
    return {
        "public_key": info.public_key_der,
        "canister_ranges": encode_canister_ranges(info.canister_ranges),
        "type": info.subnet_type.encode(),
    }


def _canister_subtree(view: CanisterView) -> dict[Label, LabeledValue]:
    node: dict[Label, LabeledValue] = {
        "certified_data": view.certified_data,
        "controllers": encode_controllers(view.controllers),
    }
    if view.module_hash is not None:
        node["module_hash"] = view.module_hash
    if view.metadata:
        node["metadata"] = {name: content for name, content in view.metadata.items()}
    return node


def _request_status_subtree(status: RequestStatus) -> dict[Label, LabeledValue]:
    node: dict[Label, LabeledValue] = {"status": status.status.encode()}
    if status.reply is not None:
        node["reply"] = status.reply
    if status.reject_code is not None:
        node["reject_code"] = leb128(status.reject_code)
    if status.reject_message is not None:
        node["reject_message"] = status.reject_message.encode()
    if status.error_code is not None:
        node["error_code"] = status.error_code.encode()
    return node


def full_state_tree(view: StateView) -> HashTree:
    """The whole certified state as a hash tree (nothing pruned).

    The topology part, and who reads it (client versions as tested,
    ``tests/integration/test_official_clients.py``):

    - ``/subnet/<id>/public_key`` for every subnet: agent-js 3.4.3 and agent-rs
      0.49.1 (inside icp-cli 1.5.0) take a delegated subnet's key from the delegation's
      copy; ``canister_iface.certificate`` likewise.
    - ``/subnet/<id>/canister_ranges`` (one CBOR list): agent-js 3.4.3
      (``check_canister_ranges``, in the delegation and, for ``CanisterStatus``
      ``subnet``, in the certificate itself); agent-rs's fallback.
    - ``/canister_ranges/<id>/<lower bound>`` (sharded, one range per shard):
      agent-rs 0.49 ``check_delegation`` and ``fetch_subnet_by_id`` prefer it.
    - ``/subnet/<own id>/node/<node id>/public_key`` (Ed25519, 44-byte DER),
      the own subnet's nodes only, as on the IC: both agents verify query
      signatures with these keys (agent-js ``fetchNodeKeys``, agent-rs
      ``lookup_incomplete_subnet``).
    - ``/subnet/<id>/type``: agent-rs 0.49 reads it when present
      (certification version 25 on).
    """
    own = SubnetInfo(
        view.subnet_id, view.subnet_public_key_der, view.canister_ranges, view.subnet_type
    )
    subnets: dict[Label, LabeledValue] = {}
    shards: dict[Label, LabeledValue] = {}
    for info in [own, *view.other_subnets]:
        subnets[info.subnet_id] = _subnet_subtree(info)
        shards[info.subnet_id] = _range_shards(info.canister_ranges)
    own_subtree = subnets[view.subnet_id]
    assert isinstance(own_subtree, dict)
    own_subtree["node"] = {node_id: {"public_key": der} for node_id, der in view.nodes.items()}
    data: dict[Label, LabeledValue] = {
        "time": leb128(view.time_ns),
        "subnet": subnets,
        "canister_ranges": shards,
    }
    if view.canisters:
        data["canister"] = {cid: _canister_subtree(c) for cid, c in view.canisters.items()}
    if view.request_status:
        data["request_status"] = {
            rid: _request_status_subtree(s) for rid, s in view.request_status.items()
        }
    return hashtree.build(data)


def state_tree(view: StateView, paths: Iterable[Sequence[Label]]) -> HashTree:
    """The state tree pruned to ``paths``, always revealing ``/time``.

    Who may read which path is the HTTP layer's business (it raises
    ``Forbidden``); this only assembles and prunes.
    """
    return hashtree.prune(full_state_tree(view), [*paths, [b"time"]])
