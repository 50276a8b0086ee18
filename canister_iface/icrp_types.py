"""The ICRP's types (``canister_iface/icrp.did``) as Python dataclasses and Candid.

``icrp.did`` is the authority: its methods, their kinds and argument types
are loaded from it (:mod:`ic_did`), so a method added to the ``.did`` is
callable without editing a table here.  Requests are encoded with those
types; replies are read through :mod:`canister_iface.candid_value`, so a
canister that adds fields stays readable.  The dataclasses below are the
typed Python side; ``tests/canister_iface/test_icrp_client.py`` checks them
against the ``.did`` (through a fake canister that decodes with icp_candid's
own loader).
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from canister_iface.candid_value import (
    CandidType,
    Rec,
    as_blob,
    as_bool,
    as_rec,
    as_text,
    as_variant,
    as_vec,
)
from canister_iface.errors import ProtocolError
from canister_iface.principal import Principal
from ic_did import load_did

PROTOCOL_VERSION = 1

# ------------------------------------------------------------------- Candid

DID_PATH = Path(__file__).with_name("icrp.did")
ICRP = load_did(DID_PATH)

# method -> (query or update, argument types), as icrp.did declares them
METHODS: dict[str, tuple[Literal["query", "update"], tuple[CandidType, ...]]] = {
    name: ("query" if method.is_query else "update", method.args)
    for name, method in ICRP.methods.items()
}

# --------------------------------------------------------------- dataclasses

Role = Literal["app", "backup", "shard"]
ROLES: tuple[Role, ...] = ("app", "backup", "shard")
# The capabilities icrp.did defines.
CAPABILITIES = (
    "image",
    "import",
    "push",
    "journal",
    "apply",
    "key_range",
    "multi_image",
    "mode",
    "export_at",
    "backlog",
    "push_changes",
    "range_changes",
    "journal_reset",
    "key_distribution",
    "range_digest",
    "fences",
    "routing",
    "fleet",
    "read_for_write",
)

Mode = Literal["primary", "standby", "read_only"]
MODES: tuple[Mode, ...] = ("primary", "standby", "read_only")


def _mode(value: object, what: str) -> Mode:
    tag, _ = as_variant(value, MODES, what)
    return "standby" if tag == "standby" else "read_only" if tag == "read_only" else "primary"


def mode_to_candid(mode: Mode) -> dict[str, None]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return {mode: None}


def _role(value: object, what: str) -> Role:
    tag, _ = as_variant(value, ROLES, what)
    return "backup" if tag == "backup" else "shard" if tag == "shard" else "app"


@dataclass(frozen=True)
class KeyRange:
    """Keys ``k`` with ``lower <= k < upper`` (bytewise); ``upper=None``: unbounded."""

    lower: bytes = b""
    upper: bytes | None = None

    def contains(self, key: bytes) -> bool:
        return self.lower <= key and (self.upper is None or key < self.upper)

    def to_candid(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": [] if self.upper is None else [self.upper]}

    @classmethod
    def from_rec(cls, rec: Rec) -> KeyRange:
        return cls(rec.blob("lower"), rec.opt_blob("upper"))


@dataclass(frozen=True)
class ImageInfo:
    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes | None

    @classmethod
    def from_rec(cls, rec: Rec) -> ImageInfo:
        return cls(
            rec.nat("snapshot_id"), rec.nat("size"), rec.nat("chunk_size"), rec.opt_blob("digest")
        )


@dataclass(frozen=True)
class JournalInfo:
    head_seq: int
    oldest_seq: int
    entries: int
    bytes: int

    @classmethod
    def from_rec(cls, rec: Rec) -> JournalInfo:
        return cls(rec.nat("head_seq"), rec.nat("oldest_seq"), rec.nat("entries"), rec.nat("bytes"))


@dataclass(frozen=True)
class ModeInfo:
    """How the canister accepts writes (``icrp_set_mode``).

    ``journal_seq`` is the journal head when the mode was set: for
    ``read_only`` the last sequence a standby must apply to be as new.
    """

    mode: Mode
    redirect: Principal | None
    changed_at: int
    journal_seq: int

    @classmethod
    def from_rec(cls, rec: Rec) -> ModeInfo:
        return cls(
            mode=_mode(rec.get("mode"), f"{rec.what}.mode"),
            redirect=rec.opt_principal("redirect"),
            changed_at=rec.nat("changed_at"),
            journal_seq=rec.nat("journal_seq"),
        )


@dataclass(frozen=True)
class Info:
    protocol_version: int
    role: Role
    capabilities: tuple[str, ...]
    trusted: bool
    max_transfer_bytes: int
    image: ImageInfo | None
    journal: JournalInfo | None
    key_range: KeyRange | None
    mode: ModeInfo | None = None  # with the "mode" capability, for trusted callers

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    @classmethod
    def from_rec(cls, rec: Rec) -> Info:
        image, journal, key_range = rec.opt_rec("image"), rec.opt_rec("journal"), None
        if (range_rec := rec.opt_rec("key_range")) is not None:
            key_range = KeyRange.from_rec(range_rec)
        mode = rec.opt_rec("mode")
        at = f"{rec.what}.capabilities"
        return cls(
            protocol_version=rec.nat("protocol_version"),
            role=_role(rec.get("role"), f"{rec.what}.role"),
            capabilities=tuple(as_text(v, at) for v in rec.vec("capabilities")),
            trusted=rec.boolean("trusted"),
            max_transfer_bytes=rec.nat("max_transfer_bytes"),
            image=None if image is None else ImageInfo.from_rec(image),
            journal=None if journal is None else JournalInfo.from_rec(journal),
            key_range=key_range,
            mode=None if mode is None else ModeInfo.from_rec(mode),
        )


@dataclass(frozen=True)
class ImageOrigin:
    source: Principal
    snapshot_id: int
    received_at: int

    @classmethod
    def from_rec(cls, rec: Rec) -> ImageOrigin:
        return cls(rec.principal("source"), rec.nat("snapshot_id"), rec.nat("received_at"))


@dataclass(frozen=True)
class ExportTicket:
    snapshot_id: int
    ready: bool
    done_bytes: int  # while preparing: bytes serialised; once ready: size
    size: int
    chunk_size: int
    chunk_count: int
    digest: bytes | None
    journal_seq: int
    created_at: int
    origin: ImageOrigin | None

    @classmethod
    def from_rec(cls, rec: Rec) -> ExportTicket:
        state, payload = rec.variant("state", ("preparing", "ready"))
        size = rec.nat("size")
        done = size if state == "ready" else as_rec(payload, f"{rec.what}.state").nat("done_bytes")
        origin = rec.opt_rec("origin")
        return cls(
            snapshot_id=rec.nat("snapshot_id"),
            ready=state == "ready",
            done_bytes=done,
            size=size,
            chunk_size=rec.nat("chunk_size"),
            chunk_count=rec.nat("chunk_count"),
            digest=rec.opt_blob("digest"),
            journal_seq=rec.nat("journal_seq"),
            created_at=rec.nat("created_at"),
            origin=None if origin is None else ImageOrigin.from_rec(origin),
        )


@dataclass(frozen=True)
class PushAck:
    bytes: int
    committed_bytes: int

    @classmethod
    def from_rec(cls, rec: Rec) -> PushAck:
        return cls(rec.nat("bytes"), rec.nat("committed_bytes"))


@dataclass(frozen=True)
class ImportSpec:
    source: Principal
    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes
    journal_seq: int = 0
    chunk_digests: tuple[bytes, ...] | None = None

    @classmethod
    def for_ticket(
        cls, source: Principal, ticket: ExportTicket, chunk_digests: Sequence[bytes] | None = None
    ) -> ImportSpec:
        """The spec that imports the (ready) image ``ticket`` describes."""
        if not ticket.ready or ticket.digest is None:
            raise ValueError(
                f"snapshot {ticket.snapshot_id} is still preparing: wait until it is ready"
            )
        return cls(
            source=source,
            snapshot_id=ticket.snapshot_id,
            size=ticket.size,
            chunk_size=ticket.chunk_size,
            digest=ticket.digest,
            journal_seq=ticket.journal_seq,
            chunk_digests=None if chunk_digests is None else tuple(chunk_digests),
        )

    def to_candid(self) -> dict[str, Any]:
        digests = self.chunk_digests
        return {
            "source": self.source.raw,
            "snapshot_id": self.snapshot_id,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "digest": self.digest,
            "chunk_digests": [] if digests is None else [list(digests)],
            "journal_seq": self.journal_seq,
        }


ImportStateKind = Literal["receiving", "committing", "committed", "aborted"]
_IMPORT_STATES: tuple[ImportStateKind, ...] = ("receiving", "committing", "committed", "aborted")


@dataclass(frozen=True)
class ImportStatus:
    import_id: int
    source: Principal
    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes
    received_bytes: int
    chunks_done: tuple[bool, ...]
    state: ImportStateKind
    done_bytes: int | None = None  # committing
    committed_snapshot_id: int | None = None  # committed (backups)
    abort_reason: str | None = None  # aborted

    @classmethod
    def from_rec(cls, rec: Rec) -> ImportStatus:
        state, payload = rec.variant("state", _IMPORT_STATES)
        detail = as_rec(payload, f"{rec.what}.state") if isinstance(payload, dict) else None
        at = f"{rec.what}.chunks_done"
        return cls(
            import_id=rec.nat("import_id"),
            source=rec.principal("source"),
            snapshot_id=rec.nat("snapshot_id"),
            size=rec.nat("size"),
            chunk_size=rec.nat("chunk_size"),
            digest=rec.blob("digest"),
            received_bytes=rec.nat("received_bytes"),
            chunks_done=tuple(as_bool(v, at) for v in rec.vec("chunks_done")),
            state=_import_state(state),
            done_bytes=detail.nat("done_bytes") if state == "committing" and detail else None,
            committed_snapshot_id=detail.opt_nat("snapshot_id")
            if state == "committed" and detail
            else None,
            abort_reason=detail.text("reason") if state == "aborted" and detail else None,
        )


def _import_state(tag: str) -> ImportStateKind:
    for state in _IMPORT_STATES:
        if state == tag:
            return state
    raise AssertionError(tag)


@dataclass(frozen=True)
class CommitState:
    """``committed`` (with the backup's new snapshot id and that image's digest) or
    still ``restoring``. ``digest`` is None from apps and from canisters of an earlier
    ICRP version, which leave it out."""

    committed: bool
    done_bytes: int | None = None
    snapshot_id: int | None = None
    digest: bytes | None = None

    @classmethod
    def from_candid(cls, value: object, what: str) -> CommitState:
        tag, payload = as_variant(value, ("restoring", "committed"), what)
        rec = as_rec(payload, f"{what}.{tag}")
        if tag == "restoring":
            return cls(False, done_bytes=rec.nat("done_bytes"))
        return cls(True, snapshot_id=rec.opt_nat("snapshot_id"), digest=rec.opt_blob("digest"))


@dataclass(frozen=True)
class Op:
    """A journaled change: ``put`` (key, value), ``delete`` (key) or ``app`` (payload)."""

    kind: Literal["put", "delete", "app"]
    key: bytes = b""
    value: bytes = b""

    def to_candid(self) -> dict[str, Any]:
        if self.kind == "put":
            return {"put": {"key": self.key, "value": self.value}}
        if self.kind == "delete":
            return {"delete": {"key": self.key}}
        return {"app": self.value}

    @classmethod
    def from_candid(cls, value: object, what: str) -> Op:
        tag, payload = as_variant(value, ("put", "delete", "app"), what)
        if tag == "app":
            return cls("app", value=as_blob(payload, what))
        rec = as_rec(payload, f"{what}.{tag}")
        if tag == "put":
            return cls("put", rec.blob("key"), rec.blob("value"))
        return cls("delete", rec.blob("key"))


# Bytes a journal counts for a change besides its key and value (icrp.did,
# "Journal capacity"): max_bytes, Backlog.bytes and journal_max_bytes use it.
CHANGE_OVERHEAD = 48


@dataclass(frozen=True)
class Change:
    seq: int
    time: int  # ns since the epoch, when the change was made in the canister it started in
    op: Op

    @property
    def size(self) -> int:
        """The bytes the journal counts for this change."""
        return CHANGE_OVERHEAD + len(self.op.key) + len(self.op.value)

    def to_candid(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "op": self.op.to_candid()}

    @classmethod
    def from_rec(cls, rec: Rec) -> Change:
        return cls(rec.nat("seq"), rec.nat("time"), Op.from_candid(rec.get("op"), rec.what))


@dataclass(frozen=True)
class ChangeBatch:
    """The changes with ``from_seq < seq <= to_seq`` (possibly filtered)."""

    from_seq: int
    to_seq: int
    head_seq: int
    changes: tuple[Change, ...] = field(default=())

    def to_candid(self) -> dict[str, Any]:
        return {
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "head_seq": self.head_seq,
            "changes": [c.to_candid() for c in self.changes],
        }

    @classmethod
    def from_rec(cls, rec: Rec) -> ChangeBatch:
        at = f"{rec.what}.changes"
        return cls(
            from_seq=rec.nat("from_seq"),
            to_seq=rec.nat("to_seq"),
            head_seq=rec.nat("head_seq"),
            changes=tuple(Change.from_rec(as_rec(c, at)) for c in rec.vec("changes")),
        )


@dataclass(frozen=True)
class Backlog:
    """How far a replica that applied up to ``since_seq`` is behind."""

    since_seq: int
    head_seq: int
    changes: int
    bytes: int
    oldest_time: int | None  # ns since the epoch of the first missing change
    head_time: int | None

    def lag_seconds(self, now_ns: int) -> float:
        """Age of the oldest change not yet applied (0 when none is missing)."""
        if self.oldest_time is None:
            return 0.0
        return max(0, now_ns - self.oldest_time) / 1e9

    @classmethod
    def from_rec(cls, rec: Rec) -> Backlog:
        return cls(
            since_seq=rec.nat("since_seq"),
            head_seq=rec.nat("head_seq"),
            changes=rec.nat("changes"),
            bytes=rec.nat("bytes"),
            oldest_time=rec.opt_nat("oldest_time"),
            head_time=rec.opt_nat("head_time"),
        )


@dataclass(frozen=True)
class PushChangesAck:
    to_seq: int
    head_seq: int
    changes: int
    bytes: int
    applied_seq: int

    @classmethod
    def from_rec(cls, rec: Rec) -> PushChangesAck:
        return cls(
            to_seq=rec.nat("to_seq"),
            head_seq=rec.nat("head_seq"),
            changes=rec.nat("changes"),
            bytes=rec.nat("bytes"),
            applied_seq=rec.nat("applied_seq"),
        )


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes

    def to_candid(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


@dataclass(frozen=True)
class RecordBatch:
    records: tuple[Record, ...]
    next_cursor: bytes | None
    journal_seq: int

    @classmethod
    def from_rec(cls, rec: Rec) -> RecordBatch:
        at = f"{rec.what}.records"
        records = [as_rec(r, at) for r in rec.vec("records")]
        return cls(
            records=tuple(Record(r.blob("key"), r.blob("value")) for r in records),
            next_cursor=rec.opt_blob("next_cursor"),
            journal_seq=rec.nat("journal_seq"),
        )


@dataclass(frozen=True)
class DeleteProgress:
    deleted: int
    next_cursor: bytes | None
    bytes: int | None = None  # freed by this call (None: an older canister does not say)

    @classmethod
    def from_rec(cls, rec: Rec) -> DeleteProgress:
        return cls(rec.nat("deleted"), rec.opt_blob("next_cursor"), rec.newer_nat("bytes"))


@dataclass(frozen=True)
class KeyBucket:
    """The records with ``first_key <= key <`` the next bucket's ``first_key``."""

    first_key: bytes
    records: int
    bytes: int

    @classmethod
    def from_rec(cls, rec: Rec) -> KeyBucket:
        return cls(rec.blob("first_key"), rec.nat("records"), rec.nat("bytes"))


@dataclass(frozen=True)
class KeyDistribution:
    buckets: tuple[KeyBucket, ...]
    next_cursor: bytes | None
    journal_seq: int

    @classmethod
    def from_rec(cls, rec: Rec) -> KeyDistribution:
        at = f"{rec.what}.buckets"
        return cls(
            buckets=tuple(KeyBucket.from_rec(as_rec(b, at)) for b in rec.vec("buckets")),
            next_cursor=rec.opt_blob("next_cursor"),
            journal_seq=rec.nat("journal_seq"),
        )


RANGE_DIGEST_MODULUS = 2**256


def record_digest(key: bytes, value: bytes) -> int:
    """SHA-256(be32(key length) ‖ key ‖ value) as a number, the term of a range digest."""
    data = len(key).to_bytes(4, "big") + key + value
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


@dataclass(frozen=True)
class RangeDigest:
    """Records, bytes and digest of a key range (or of one page of it).

    Digests add up modulo 2^256, so pages combine with ``+`` whatever their
    size (``icrp.did``, ``RangeDigest``).
    """

    records: int = 0
    bytes: int = 0
    # (``bytes`` the field shadows the type in this class body)
    digest: builtins.bytes = b"\0" * 32
    next_cursor: builtins.bytes | None = None
    journal_seq: int = 0

    def __add__(self, page: RangeDigest) -> RangeDigest:
        total = (self.value + page.value) % RANGE_DIGEST_MODULUS
        return RangeDigest(
            records=self.records + page.records,
            bytes=self.bytes + page.bytes,
            digest=total.to_bytes(32, "big"),
            next_cursor=page.next_cursor,
            journal_seq=page.journal_seq,
        )

    @property
    def value(self) -> int:
        return int.from_bytes(self.digest, "big")

    def same_records(self, other: RangeDigest) -> bool:
        """Same count, bytes and digest (cursors and sequences aside)."""
        return (self.records, self.bytes, self.digest) == (other.records, other.bytes, other.digest)

    @classmethod
    def of_records(cls, records: Iterable[Record]) -> RangeDigest:
        """The digest a canister holding exactly ``records`` reports."""
        count = size = total = 0
        for r in records:
            count += 1
            size += len(r.key) + len(r.value)
            total = (total + record_digest(r.key, r.value)) % RANGE_DIGEST_MODULUS
        return cls(count, size, total.to_bytes(32, "big"))

    @classmethod
    def from_rec(cls, rec: Rec) -> RangeDigest:
        digest = rec.blob("digest")
        if len(digest) != 32:
            raise ProtocolError(f"{rec.what}.digest: expected 32 bytes, got {len(digest)}")
        return cls(
            records=rec.nat("records"),
            bytes=rec.nat("bytes"),
            digest=digest,
            next_cursor=rec.opt_blob("next_cursor"),
            journal_seq=rec.nat("journal_seq"),
        )


@dataclass(frozen=True)
class Fence:
    """A range the canister refuses writes to, and who owns it now."""

    range: KeyRange
    owner: Principal | None = None

    def to_candid(self) -> dict[str, Any]:
        owner = [] if self.owner is None else [self.owner.raw]
        return {"range": self.range.to_candid(), "owner": owner}

    @classmethod
    def from_rec(cls, rec: Rec) -> Fence:
        return cls(KeyRange.from_rec(rec.rec("range")), rec.opt_principal("owner"))


@dataclass(frozen=True)
class Route:
    range: KeyRange
    canister: Principal

    def to_candid(self) -> dict[str, Any]:
        return {"range": self.range.to_candid(), "canister": self.canister.raw}

    @classmethod
    def from_rec(cls, rec: Rec) -> Route:
        return cls(KeyRange.from_rec(rec.rec("range")), rec.principal("canister"))


@dataclass(frozen=True)
class Routing:
    """Which canister owns which keys; ``version`` grows with every change."""

    version: int = 0
    routes: tuple[Route, ...] = ()

    def owner(self, key: bytes) -> Principal | None:
        """The canister a route names for ``key`` (None: ask the table's canister)."""
        for route in self.routes:
            if route.range.contains(key):
                return route.canister
        return None

    def to_candid(self) -> dict[str, Any]:
        return {"version": self.version, "routes": [r.to_candid() for r in self.routes]}

    @classmethod
    def from_rec(cls, rec: Rec) -> Routing:
        at = f"{rec.what}.routes"
        return cls(
            version=rec.nat("version"),
            routes=tuple(Route.from_rec(as_rec(r, at)) for r in rec.vec("routes")),
        )


@dataclass(frozen=True)
class FleetMember:
    canister: Principal
    added_at: int

    @classmethod
    def from_rec(cls, rec: Rec) -> FleetMember:
        return cls(rec.principal("canister"), rec.nat("added_at"))


@dataclass(frozen=True)
class FleetPage:
    members: tuple[FleetMember, ...]
    next_cursor: Principal | None

    @classmethod
    def from_rec(cls, rec: Rec) -> FleetPage:
        at = f"{rec.what}.members"
        return cls(
            members=tuple(FleetMember.from_rec(as_rec(m, at)) for m in rec.vec("members")),
            next_cursor=rec.opt_principal("next_cursor"),
        )


@dataclass(frozen=True)
class Config:
    role: Role
    peers: tuple[Principal, ...]
    key_range: KeyRange | None
    chunk_size: int
    journal_max_entries: int
    journal_max_bytes: int
    fences: tuple[Fence, ...] = ()
    mode: ModeInfo | None = None

    @classmethod
    def from_rec(cls, rec: Rec) -> Config:
        key_range, mode = rec.opt_rec("key_range"), rec.opt_rec("mode")
        fences = rec.vec("fences") if rec.has("fences") else []
        return cls(
            role=_role(rec.get("role"), f"{rec.what}.role"),
            peers=rec.principals("peers"),
            key_range=None if key_range is None else KeyRange.from_rec(key_range),
            chunk_size=rec.nat("chunk_size"),
            journal_max_entries=rec.nat("journal_max_entries"),
            journal_max_bytes=rec.nat("journal_max_bytes"),
            fences=tuple(Fence.from_rec(as_rec(f, f"{rec.what}.fences")) for f in fences),
            mode=None if mode is None else ModeInfo.from_rec(mode),
        )


@dataclass(frozen=True)
class Peers:
    """The trusted peers of a canister and the version of that set (``icrp_peers``)."""

    peers: tuple[Principal, ...]
    version: int

    def __contains__(self, principal: object) -> bool:
        return principal in self.peers

    @classmethod
    def from_rec(cls, rec: Rec) -> Peers:
        return cls(peers=rec.principals("peers"), version=rec.nat("version"))


@dataclass(frozen=True)
class PeersUpdate:
    """``icrp_update_peers``: applied, or refused for a stale ``expected_version``.

    ``peers``: the set and version after the call (unchanged on a conflict).
    """

    updated: bool
    peers: Peers

    @classmethod
    def from_candid(cls, value: object, what: str) -> PeersUpdate:
        tag, payload = as_variant(value, ("updated", "conflict"), what)
        return cls(tag == "updated", Peers.from_rec(as_rec(payload, f"{what}.{tag}")))


def blobs(value: object, what: str) -> list[bytes]:
    return [as_blob(v, what) for v in as_vec(value, what)]


def ensure_version(info: Info) -> None:
    """Refuse to talk to a canister speaking another protocol version."""
    if info.protocol_version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"the canister speaks ICRP version {info.protocol_version}; this client speaks "
            f"version {PROTOCOL_VERSION}: upgrade the orchestrator or the canister"
        )
