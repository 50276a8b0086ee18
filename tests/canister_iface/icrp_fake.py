"""An ICRP canister in Python, speaking the Candid of ``canister_iface/icrp.did``.

For unit tests of the ICRP client and the conformance suite without a
replica.  Arguments are decoded and replies encoded with the types parsed
from the ``.did`` file itself, so the client's Candid is checked against the
authority on every call.  Semantics follow ``icrp.did`` (and the Motoko
reference where the ``.did`` leaves a choice): a key-value state, one export
image (also at a chosen journal sequence), one staged import, a bounded
journal (filtered by range, backlog), key ranges (distribution, digests,
fences), modes, a routing table and a fleet.

``bugs`` switches single requirements off so tests can check that the
conformance suite notices: see :data:`BUGS`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icp_candid import DIDLoader, decode, encode

DID_PATH = Path(__file__).parents[2] / "canister_iface/icrp.did"
DID_METHODS: dict[str, Any] = DIDLoader().load_did_source(DID_PATH.read_text())["methods"]
MAX_TRANSFER = 2_000_000
MIN_CHUNK = 4096

BUGS = {
    "no_auth",  # serves everyone
    "stale_ok",  # reads of ended snapshots still work
    "short_read",  # reads return one byte less
    "bad_chunk_digest",  # icrp_chunk_digests answers a wrong digest for chunk 0
    "ids_repeat",  # begin_export after end_export reuses the old id
    "conflict_ok",  # overwrites different bytes without Conflict
    "commit_ignores_digest",  # commits an image whose digest does not match
    "abort_ignored",  # abort leaves the import receiving
    "no_too_old",  # icrp_changes serves since_seq below oldest_seq
    "leaky_info",  # icrp_info shows the image to untrusted callers
    "range_unordered",  # icrp_export_range returns records in reverse order
    "fence_ignored",  # read_only mode still accepts icrp_apply and icrp_import_records
    "fence_no_owner",  # OutOfRange for a fenced key does not name the owner
    "routing_private",  # icrp_routing refuses untrusted callers
    "range_digest_wrong",  # range digests leave the key length out
    "fleet_unsorted",  # icrp_fleet_members pages come in reverse order
    "export_at_now",  # icrp_begin_export_at freezes at the head, whatever it was asked
    "reset_ignored",  # icrp_reset_journal keeps the journal and its numbering
}


class Err(Exception):
    def __init__(self, case: str, payload: Any = None) -> None:
        super().__init__(case)
        self.value = {case: payload}


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _digests(image: bytes, chunk_size: int) -> list[bytes]:
    return [sha(image[i : i + chunk_size]) for i in range(0, len(image), chunk_size)]


def _serialise(kv: dict[bytes, bytes]) -> bytes:
    out = bytearray()
    for key in sorted(kv):
        value = kv[key]
        out += len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value
    return bytes(out)


def _record_digest(key: bytes, value: bytes, *, buggy: bool = False) -> int:
    prefix = b"" if buggy else len(key).to_bytes(4, "big")
    return int.from_bytes(sha(prefix + key + value), "big")


def _deserialise(image: bytes) -> dict[bytes, bytes]:
    kv, pos = {}, 0
    while pos < len(image):
        n = int.from_bytes(image[pos : pos + 4], "big")
        key = image[pos + 4 : pos + 4 + n]
        pos += 4 + n
        m = int.from_bytes(image[pos : pos + 4], "big")
        kv[key] = image[pos + 4 : pos + 4 + m]
        pos += 4 + m
    return kv


@dataclass
class Export:
    id: int
    image: bytes
    journal_seq: int
    chunk_size: int
    steps_left: int  # > 0: still preparing
    waiting: bool = False  # begin_export_at ahead of the head: not frozen yet

    @property
    def ready(self) -> bool:
        return self.steps_left == 0 and not self.waiting


@dataclass
class Staging:
    id: int
    spec: dict[str, Any]
    data: bytearray
    written: bytearray  # 1 per byte written
    state: dict[str, Any] = field(default_factory=lambda: {"receiving": None})

    def chunk_range(self, index: int) -> tuple[int, int]:
        size, chunk = self.spec["size"], self.spec["chunk_size"]
        return index * chunk, min(size, (index + 1) * chunk)

    def chunks(self) -> int:
        return -(-self.spec["size"] // self.spec["chunk_size"])

    def chunk_done(self, index: int) -> bool:
        start, end = self.chunk_range(index)
        return all(self.written[start:end])


@dataclass
class FakeIcrpCanister:
    canister_id: bytes
    controllers: set[bytes]
    bugs: set[str] = field(default_factory=set)
    chunk_size: int = MIN_CHUNK
    prepare_steps: int = 0  # begin_export answers `preparing` this many times
    journal_max_entries: int = 100
    kv: dict[bytes, bytes] = field(default_factory=dict)
    peers: set[bytes] = field(default_factory=set)
    peers_version: int = 1
    key_range: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = field(default_factory=list)
    head: int = 0
    last_snapshot: int = 0
    last_import: int = 0
    export: Export | None = None
    staging: Staging | None = None
    calls: list[tuple[bytes, str]] = field(default_factory=list)
    mode: dict[str, Any] = field(
        default_factory=lambda: {
            "mode": {"primary": None},
            "redirect": [],
            "changed_at": 0,
            "journal_seq": 0,
        }
    )
    fences: list[dict[str, Any]] = field(default_factory=list)
    routing: dict[str, Any] = field(default_factory=lambda: {"version": 0, "routes": []})
    fleet: dict[bytes, int] | None = None  # member -> added_at; None: no fleet
    capabilities: tuple[str, ...] = (
        "image",
        "import",
        "journal",
        "apply",
        "key_range",
        "mode",
        "export_at",
        "backlog",
        "range_changes",
        "journal_reset",
        "key_distribution",
        "range_digest",
        "fences",
        "routing",
    )

    def __post_init__(self) -> None:
        assert self.bugs <= BUGS, self.bugs - BUGS

    # ---- the app ------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        self.kv[key] = value
        self._journal({"put": {"key": key, "value": value}})

    def _journal(self, op: dict[str, Any]) -> None:
        self.head += 1
        self.journal.append({"seq": self.head, "time": 1_000 + self.head, "op": op})
        del self.journal[: max(0, len(self.journal) - self.journal_max_entries)]
        self._reached(self.head)

    def _reached(self, seq: int) -> None:
        """An image waiting for ``seq`` is frozen now."""
        e = self.export
        if e is not None and e.waiting and e.journal_seq <= seq:
            e.waiting, e.image = False, _serialise(self.kv)

    def oldest_seq(self) -> int:
        return self.journal[0]["seq"] - 1 if self.journal else self.head

    # ---- transport ------------------------------------------------------------

    def handle(self, caller: bytes, method: str, arg: bytes, *, query: bool) -> bytes:
        func = DID_METHODS[method]
        assert ("query" in func.annotations) == query, f"{method} called as the wrong kind"
        args = [v["value"] for v in decode(arg, func.argTypes)] if func.argTypes else []
        assert len(args) == len(func.argTypes)
        self.calls.append((caller, method))
        handler = getattr(self, method)
        if method == "icrp_info":
            value = handler(caller)
        else:
            try:
                value = {"ok": handler(caller, *args)}
            except Err as err:
                value = {"err": err.value}
        return bytes(encode([{"type": func.retTypes[0], "value": value}]))

    # ---- access -----------------------------------------------------------------

    def trusted(self, caller: bytes) -> bool:
        return "no_auth" in self.bugs or caller in self.controllers or caller in self.peers

    def require_trusted(self, caller: bytes) -> None:
        if not self.trusted(caller):
            raise Err("NotAuthorized", {"caller": caller})

    def require_controller(self, caller: bytes) -> None:
        if caller not in self.controllers and "no_auth" not in self.bugs:
            raise Err("NotAuthorized", {"caller": caller})

    # ---- discovery -----------------------------------------------------------------

    def icrp_info(self, caller: bytes) -> dict[str, Any]:
        trusted = self.trusted(caller)
        shows = trusted or "leaky_info" in self.bugs
        image = []
        if shows and self.export is not None:
            e = self.export
            digest = [sha(b"".join(_digests(e.image, e.chunk_size)))] if e.ready else []
            image = [
                {
                    "snapshot_id": e.id,
                    "size": len(e.image),
                    "chunk_size": e.chunk_size,
                    "digest": digest,
                }
            ]
        journal = {
            "head_seq": self.head,
            "oldest_seq": self.oldest_seq(),
            "entries": len(self.journal),
            "bytes": 64 * len(self.journal),
        }
        return {
            "protocol_version": 1,
            "role": {"shard": None} if self.key_range else {"app": None},
            "capabilities": [*self.capabilities, *(["fleet"] if self.fleet is not None else [])],
            "trusted": trusted,
            "max_transfer_bytes": MAX_TRANSFER,
            "image": image,
            "journal": [journal] if shows else [],
            "key_range": [self.key_range] if shows and self.key_range else [],
            "mode": [self.mode] if shows else [],
        }

    # ---- export ------------------------------------------------------------------------

    def _ticket(self, e: Export) -> dict[str, Any]:
        digests = _digests(e.image, e.chunk_size)
        return {
            "snapshot_id": e.id,
            "state": {"ready": None}
            if e.ready
            else {"preparing": {"done_bytes": len(e.image) // 2}},
            "size": len(e.image),
            "chunk_size": e.chunk_size,
            "chunk_count": len(digests) if e.ready else 0,
            "digest": [sha(b"".join(digests))] if e.ready else [],
            "journal_seq": e.journal_seq,
            "created_at": 5,
            "origin": [],
        }

    def icrp_begin_export(self, caller: bytes) -> dict[str, Any]:
        self.require_trusted(caller)
        e = self.export
        if e is not None and e.waiting:
            e = self.export = None
        if e is not None and not e.ready:
            e.steps_left -= 1
            return self._ticket(e)
        if e is not None and e.journal_seq == self.head:
            return self._ticket(e)
        if "ids_repeat" not in self.bugs or self.last_snapshot == 0:
            self.last_snapshot += 1
        image = _serialise(self.kv)
        self.export = Export(
            self.last_snapshot, image, self.head, self.chunk_size, self.prepare_steps
        )
        return self._ticket(self.export)

    def icrp_begin_export_at(self, caller: bytes, seq: int) -> dict[str, Any]:
        self.require_trusted(caller)
        if "export_at_now" in self.bugs:
            seq = self.head
        e = self.export
        if e is not None and e.journal_seq == seq:
            return self._ticket(e)
        if seq < self.head:
            raise Err("TooOld", {"oldest_seq": self.head})
        self.last_snapshot += 1
        waiting = seq > self.head
        image = b"" if waiting else _serialise(self.kv)
        self.export = Export(self.last_snapshot, image, seq, self.chunk_size, 0, waiting)
        return self._ticket(self.export)

    def icrp_export_status(self, caller: bytes, snapshot_id: int) -> dict[str, Any]:
        self.require_trusted(caller)
        e = self.export
        if e is None or e.id != snapshot_id:
            raise self._stale(snapshot_id)
        if not e.ready and not e.waiting:
            e.steps_left -= 1
        return self._ticket(e)

    def icrp_list_images(self, caller: bytes) -> list[dict[str, Any]]:
        self.require_trusted(caller)
        return [self._ticket(self.export)] if self.export and self.export.ready else []

    def _stale(self, snapshot_id: int) -> Err:
        current = [] if self.export is None else [self.export.id]
        return Err("StaleSnapshot", {"requested": snapshot_id, "current": current})

    def _readable(self, caller: bytes, snapshot_id: int) -> Export:
        self.require_trusted(caller)
        e = self.export
        if "stale_ok" in self.bugs and snapshot_id <= self.last_snapshot:
            # serves whatever image is current: pages of two images get mixed
            return e or Export(snapshot_id, _serialise(self.kv), self.head, self.chunk_size, 0)
        if e is None or e.id != snapshot_id:
            raise self._stale(snapshot_id)
        if not e.ready:
            raise Err("NotReady", {"snapshot_id": snapshot_id, "done_bytes": 0})
        return e

    def icrp_read(self, caller: bytes, snapshot_id: int, offset: int, length: int) -> bytes:
        e = self._readable(caller, snapshot_id)
        if length > MAX_TRANSFER:
            raise Err("InvalidArgument", f"len {length} exceeds max_transfer_bytes")
        if offset > len(e.image):
            raise Err("InvalidArgument", "offset beyond the image")
        data = e.image[offset : offset + length]
        return data[:-1] if "short_read" in self.bugs and data else data

    def icrp_chunk_digests(
        self, caller: bytes, snapshot_id: int, first: int, count: int
    ) -> list[bytes]:
        e = self._readable(caller, snapshot_id)
        digests = _digests(e.image, e.chunk_size)
        if "bad_chunk_digest" in self.bugs and digests:
            digests[0] = sha(b"wrong")
        return digests[first : first + min(count, 50_000)]

    def icrp_push(self, caller: bytes, *args: Any) -> dict[str, Any]:
        self.require_trusted(caller)
        raise Err("Unsupported", "this fake does not push")

    def icrp_end_export(self, caller: bytes, snapshot_id: int) -> None:
        self.require_trusted(caller)
        if self.export is not None and self.export.id == snapshot_id:
            self.export = None

    # ---- import --------------------------------------------------------------------------

    def icrp_begin_import(self, caller: bytes, spec: dict[str, Any]) -> int:
        self.require_trusted(caller)
        if not MIN_CHUNK <= spec["chunk_size"] <= 16 * 2**20:
            raise Err("InvalidArgument", "chunk_size out of bounds")
        if len(spec["digest"]) != 32:
            raise Err("InvalidArgument", "digest must be a 32-byte SHA-256")
        st = self.staging
        same = ("source", "snapshot_id", "size", "chunk_size", "digest")
        if st is not None and "receiving" in st.state and all(st.spec[k] == spec[k] for k in same):
            return st.id
        self.last_import += 1
        self.staging = Staging(
            self.last_import, spec, bytearray(spec["size"]), bytearray(spec["size"])
        )
        return self.last_import

    def _staged(self, caller: bytes, import_id: int) -> Staging:
        self.require_trusted(caller)
        if self.staging is None or self.staging.id != import_id:
            raise Err("NotFound", f"no import {import_id}")
        return self.staging

    def icrp_write(self, caller: bytes, import_id: int, offset: int, data: bytes) -> int:
        st = self._staged(caller, import_id)
        if "aborted" in st.state:
            raise Err("NotFound", f"import {import_id} was aborted")
        if "receiving" not in st.state:
            raise Err("Busy", "import is not receiving")
        if offset + len(data) > st.spec["size"]:
            raise Err("InvalidArgument", "write beyond the image size")
        for i, byte in enumerate(data):
            pos = offset + i
            if st.written[pos] and st.data[pos] != byte and "conflict_ok" not in self.bugs:
                raise Err("Conflict", {"offset": pos})
        st.data[offset : offset + len(data)] = data
        st.written[offset : offset + len(data)] = b"\x01" * len(data)
        self._check_chunks(st, offset, len(data))
        return sum(st.written)

    def _check_chunks(self, st: Staging, offset: int, length: int) -> None:
        digests = st.spec["chunk_digests"]
        if not digests or not length:
            return
        chunk = st.spec["chunk_size"]
        for index in range(offset // chunk, (offset + length - 1) // chunk + 1):
            start, end = st.chunk_range(index)
            if st.chunk_done(index) and sha(bytes(st.data[start:end])) != digests[0][index]:
                st.written[start:end] = bytes(end - start)
                actual = sha(bytes(st.data[start:end]))
                raise Err(
                    "DigestMismatch",
                    {"chunk": [index], "expected": digests[0][index], "actual": actual},
                )

    def icrp_import_status(self, caller: bytes, import_id: int) -> dict[str, Any]:
        st = self._staged(caller, import_id)
        spec = st.spec
        return {
            "import_id": st.id,
            "source": spec["source"],
            "snapshot_id": spec["snapshot_id"],
            "size": spec["size"],
            "chunk_size": spec["chunk_size"],
            "digest": spec["digest"],
            "received_bytes": sum(st.written),
            "chunks_done": [st.chunk_done(i) for i in range(st.chunks())],
            "state": st.state,
        }

    def icrp_commit_import(self, caller: bytes, import_id: int) -> dict[str, Any]:
        st = self._staged(caller, import_id)
        if "committed" in st.state:
            return {"committed": {"snapshot_id": [], "digest": []}}  # an app: no digest
        if "aborted" in st.state:
            raise Err("NotFound", f"import {import_id} was aborted")
        missing = [i for i in range(st.chunks()) if not st.chunk_done(i)]
        if missing:
            raise Err("Incomplete", {"missing_chunks": len(missing), "first_missing": missing[0]})
        self._writable("commit")
        actual = sha(b"".join(_digests(bytes(st.data), st.spec["chunk_size"])))
        if actual != st.spec["digest"] and "commit_ignores_digest" not in self.bugs:
            st.state = {"aborted": {"reason": "image digest mismatch"}}
            raise Err(
                "DigestMismatch", {"chunk": [], "expected": st.spec["digest"], "actual": actual}
            )
        self.kv = _deserialise(bytes(st.data))
        self.journal, self.head = [], st.spec["journal_seq"]
        self.export = None
        st.state = {"committed": {"snapshot_id": []}}
        return {"committed": {"snapshot_id": [], "digest": []}}

    def icrp_abort_import(self, caller: bytes, import_id: int) -> None:
        st = self._staged(caller, import_id)
        if "committed" in st.state:
            raise Err("InvalidArgument", "already committed")
        if "abort_ignored" not in self.bugs:
            st.state = {"aborted": {"reason": "aborted by the caller"}}

    # ---- journal ---------------------------------------------------------------------------

    def _since(self, since_seq: int) -> list[dict[str, Any]]:
        if since_seq > self.head:
            raise Err("InvalidArgument", f"since_seq {since_seq} is ahead of the head")
        if since_seq < self.oldest_seq() and "no_too_old" not in self.bugs:
            raise Err("TooOld", {"oldest_seq": self.oldest_seq()})
        return [c for c in self.journal if c["seq"] > since_seq]

    def icrp_changes(
        self, caller: bytes, since_seq: int, max_bytes: int, rng: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        held = self._since(since_seq)
        wanted = [c for c in held if not rng or self._op_in(rng[0], c["op"])]
        changes = wanted[: max(1, max_bytes // 64)]
        to_seq = self.head
        if len(changes) < len(wanted):
            to_seq = wanted[len(changes)]["seq"] - 1
        return {
            "from_seq": since_seq,
            "to_seq": to_seq,
            "head_seq": self.head,
            "changes": changes,
        }

    def _op_in(self, rng: dict[str, Any], op: dict[str, Any]) -> bool:
        if "app" in op:
            return True
        return self._in(rng, (op.get("put") or op["delete"])["key"])

    def icrp_backlog(self, caller: bytes, since_seq: int) -> dict[str, Any]:
        self.require_trusted(caller)
        held = self._since(since_seq)
        return {
            "since_seq": since_seq,
            "head_seq": self.head,
            "changes": len(held),
            "bytes": 64 * len(held),
            "oldest_time": [held[0]["time"]] if held else [],
            "head_time": [self.journal[-1]["time"]] if self.journal else [],
        }

    def icrp_push_changes(self, caller: bytes, *args: Any) -> dict[str, Any]:
        self.require_trusted(caller)
        raise Err("Unsupported", "this fake does not push")

    def icrp_apply(self, caller: bytes, batch: dict[str, Any]) -> int:
        self.require_trusted(caller)
        self._writable("replication")
        if batch["from_seq"] > self.head:
            raise Err("Gap", {"applied_seq": self.head, "from_seq": batch["from_seq"]})
        for change in batch["changes"]:
            op = change["op"]
            if change["seq"] > self.head and "app" not in op:
                self._check_key((op.get("put") or op["delete"])["key"])
        for change in batch["changes"]:
            if change["seq"] > self.head:
                self._reached(change["seq"] - 1)
                op = change["op"]
                if "put" in op:
                    self.kv[op["put"]["key"]] = op["put"]["value"]
                elif "delete" in op:
                    self.kv.pop(op["delete"]["key"], None)
                self.journal.append(change)
                self.head = change["seq"]
        self.head = max(self.head, batch["to_seq"])
        self._reached(self.head)
        return self.head

    # ---- modes, fences, routing, fleet ------------------------------------------------------

    def _writable(self, kind: str) -> None:
        """NotWritable when the mode refuses a change of ``kind``."""
        mode = next(iter(self.mode["mode"]))
        refused = mode == "read_only" or (mode == "standby" and kind in ("app", "delete"))
        if refused and "fence_ignored" not in self.bugs:
            raise Err("NotWritable", {"mode": self.mode["mode"], "redirect": self.mode["redirect"]})

    def _check_key(self, key: bytes) -> None:
        if self.key_range and not self._in(self.key_range, key):
            raise Err("OutOfRange", {"key": key, "owner": self._owner(key)})
        for fence in self.fences:
            if self._in(fence["range"], key):
                owner = [] if "fence_no_owner" in self.bugs else fence["owner"] or self._owner(key)
                raise Err("OutOfRange", {"key": key, "owner": owner})

    def _owner(self, key: bytes) -> list[Any]:
        for route in self.routing["routes"]:
            if self._in(route["range"], key):
                return [route["canister"]]
        return []

    def icrp_set_mode(self, caller: bytes, mode: dict[str, Any], redirect: list[Any]) -> Any:
        self.require_controller(caller)
        if (mode, redirect) != (self.mode["mode"], self.mode["redirect"]):
            self.mode = {
                "mode": mode,
                "redirect": redirect,
                "changed_at": 7,
                "journal_seq": self.head,
            }
        return self.mode

    def icrp_set_fences(self, caller: bytes, fences: list[dict[str, Any]]) -> int:
        self.require_controller(caller)
        ordered = sorted(fences, key=lambda f: f["range"]["lower"])
        self._check_ordered([f["range"] for f in ordered])
        self.fences = ordered
        return self.head

    def _check_ordered(self, ranges: list[dict[str, Any]]) -> None:
        for before, after in itertools.pairwise(ranges):
            if not before["upper"] or before["upper"][0] > after["lower"]:
                raise Err("InvalidArgument", "ranges overlap or are not in key order")

    def icrp_set_routing(self, caller: bytes, routing: dict[str, Any]) -> None:
        self.require_controller(caller)
        self._check_ordered([r["range"] for r in routing["routes"]])
        if routing == self.routing:
            return
        if routing["version"] <= self.routing["version"]:
            raise Err("InvalidArgument", "the routing version must grow")
        self.routing = routing

    def icrp_routing(self, caller: bytes) -> dict[str, Any]:
        if "routing_private" in self.bugs:
            self.require_trusted(caller)
        return self.routing

    def icrp_fleet_members(self, caller: bytes, cursor: list[Any], limit: int) -> dict[str, Any]:
        self.require_trusted(caller)
        if self.fleet is None:
            raise Err("Unsupported", "no fleet")
        start = bytes(cursor[0].bytes) if cursor else b""
        ids = sorted(p for p in self.fleet if p >= start)
        page = ids[: max(1, min(limit, 5000))]
        rest = ids[len(page) :]
        members = [{"canister": p, "added_at": self.fleet[p]} for p in page]
        if "fleet_unsorted" in self.bugs:
            members.reverse()
        return {"members": members, "next_cursor": rest[:1]}

    # ---- key ranges -------------------------------------------------------------------------

    @staticmethod
    def _in(rng: dict[str, Any], key: bytes) -> bool:
        upper = rng["upper"]
        return rng["lower"] <= key and (not upper or key < upper[0])

    def _range_keys(self, rng: dict[str, Any], cursor: list[bytes]) -> list[bytes]:
        start = cursor[0] if cursor else rng["lower"]
        return sorted(k for k in self.kv if self._in(rng, k) and k >= start)

    def icrp_export_range(
        self, caller: bytes, rng: dict[str, Any], cursor: list[bytes], max_bytes: int
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        keys, out, size = self._range_keys(rng, cursor), [], 0
        for key in keys:
            if out and size + len(key) + len(self.kv[key]) > max_bytes:
                break
            out.append({"key": key, "value": self.kv[key]})
            size += len(key) + len(self.kv[key])
        if "range_unordered" in self.bugs:
            out.reverse()
        rest = keys[len(out) :]
        return {"records": out, "next_cursor": rest[:1], "journal_seq": self.head}

    def icrp_import_records(self, caller: bytes, records: list[dict[str, Any]]) -> int:
        self.require_trusted(caller)
        self._writable("replication")
        for record in records:
            self._check_key(record["key"])
        for record in records:
            self.put(record["key"], record["value"])
        return len(records)

    def icrp_delete_range(
        self, caller: bytes, rng: dict[str, Any], cursor: list[bytes], max_records: int
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        self._writable("delete")
        keys = self._range_keys(rng, cursor)
        freed = 0
        for key in keys[:max_records]:
            freed += len(key) + len(self.kv.pop(key))
            self._journal({"delete": {"key": key}})
        return {
            "deleted": min(len(keys), max_records),
            "next_cursor": keys[max_records:][:1],
            "bytes": freed,
        }

    def icrp_key_distribution(
        self, caller: bytes, rng: dict[str, Any], cursor: list[bytes], bucket_bytes: int
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        buckets: list[dict[str, Any]] = []
        for key in self._range_keys(rng, cursor):
            size = len(key) + len(self.kv[key])
            if not buckets or buckets[-1]["bytes"] >= bucket_bytes:
                buckets.append({"first_key": key, "records": 0, "bytes": 0})
            buckets[-1]["records"] += 1
            buckets[-1]["bytes"] += size
        return {"buckets": buckets, "next_cursor": [], "journal_seq": self.head}

    def icrp_range_digest(
        self, caller: bytes, rng: dict[str, Any], cursor: list[bytes]
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        keys = self._range_keys(rng, cursor)
        page, rest = keys[:7], keys[7:]  # small pages, so callers must add them up
        total = 0
        for key in page:
            digest = _record_digest(key, self.kv[key], buggy="range_digest_wrong" in self.bugs)
            total = (total + digest) % 2**256
        return {
            "records": len(page),
            "bytes": sum(len(k) + len(self.kv[k]) for k in page),
            "digest": total.to_bytes(32, "big"),
            "next_cursor": rest[:1],
            "journal_seq": self.head,
        }

    # ---- configuration ------------------------------------------------------------------------

    def icrp_set_peers(self, caller: bytes, peers: list[Any]) -> None:
        self.require_controller(caller)
        self.peers = {bytes(p.bytes) for p in peers}
        self.peers_version += 1

    def icrp_peers(self, caller: bytes) -> dict[str, Any]:
        self.require_trusted(caller)
        return {"peers": sorted(self.peers), "version": self.peers_version}

    def icrp_update_peers(
        self, caller: bytes, add: list[Any], remove: list[Any], expected: list[int]
    ) -> dict[str, Any]:
        self.require_controller(caller)
        if expected and expected[0] != self.peers_version:
            return {"conflict": self.icrp_peers(caller)}
        if add or remove:
            self.peers -= {bytes(p.bytes) for p in remove}
            self.peers |= {bytes(p.bytes) for p in add}
            self.peers_version += 1
        return {"updated": self.icrp_peers(caller)}

    def icrp_reset_journal(self, caller: bytes, seq: int) -> None:
        self.require_controller(caller)
        self._writable("commit")
        if "reset_ignored" not in self.bugs:
            self.journal, self.head, self.export = [], seq, None

    def icrp_set_key_range(self, caller: bytes, rng: list[dict[str, Any]]) -> None:
        self.require_controller(caller)
        self.key_range = rng[0] if rng else None

    def icrp_config(self, caller: bytes) -> dict[str, Any]:
        self.require_trusted(caller)
        return {
            "role": {"shard": None} if self.key_range else {"app": None},
            "peers": sorted(self.peers),
            "key_range": [self.key_range] if self.key_range else [],
            "chunk_size": self.chunk_size,
            "journal_max_entries": self.journal_max_entries,
            "journal_max_bytes": 1 << 20,
            "fences": self.fences,
            "mode": [self.mode],
        }


@dataclass
class FakeAgent:
    """A caller bound to one identity, talking to fake canisters by id."""

    canisters: dict[bytes, FakeIcrpCanister]
    sender: bytes

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        return self.canisters[canister_id].handle(self.sender, method, arg, query=True)

    async def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        *,
        effective_canister_id: bytes | None = None,
    ) -> bytes:
        return self.canisters[canister_id].handle(self.sender, method, arg, query=False)
