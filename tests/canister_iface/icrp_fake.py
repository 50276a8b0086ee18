"""An ICRP canister in Python, speaking the Candid of ``canister_iface/icrp.did``.

For unit tests of the ICRP client and the conformance suite without a
replica.  Arguments are decoded and replies encoded with the types parsed
from the ``.did`` file itself, so the client's Candid is checked against the
authority on every call.  Semantics follow ``icrp.did`` (and the Motoko
reference where the ``.did`` leaves a choice): a key-value state, one export
image, one staged import, a bounded journal, key ranges.

``bugs`` switches single requirements off so tests can check that the
conformance suite notices: see :data:`BUGS`.
"""

from __future__ import annotations

import hashlib
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

    @property
    def ready(self) -> bool:
        return self.steps_left == 0


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
            "capabilities": ["image", "import", "journal", "apply", "key_range"],
            "trusted": trusted,
            "max_transfer_bytes": MAX_TRANSFER,
            "image": image,
            "journal": [journal] if shows else [],
            "key_range": [self.key_range] if shows and self.key_range else [],
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

    def icrp_export_status(self, caller: bytes, snapshot_id: int) -> dict[str, Any]:
        self.require_trusted(caller)
        e = self.export
        if e is None or e.id != snapshot_id:
            raise self._stale(snapshot_id)
        if not e.ready:
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
            return {"committed": {"snapshot_id": []}}
        if "aborted" in st.state:
            raise Err("NotFound", f"import {import_id} was aborted")
        missing = [i for i in range(st.chunks()) if not st.chunk_done(i)]
        if missing:
            raise Err("Incomplete", {"missing_chunks": len(missing), "first_missing": missing[0]})
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
        return {"committed": {"snapshot_id": []}}

    def icrp_abort_import(self, caller: bytes, import_id: int) -> None:
        st = self._staged(caller, import_id)
        if "committed" in st.state:
            raise Err("InvalidArgument", "already committed")
        if "abort_ignored" not in self.bugs:
            st.state = {"aborted": {"reason": "aborted by the caller"}}

    # ---- journal ---------------------------------------------------------------------------

    def icrp_changes(self, caller: bytes, since_seq: int, max_bytes: int) -> dict[str, Any]:
        self.require_trusted(caller)
        if since_seq < self.oldest_seq() and "no_too_old" not in self.bugs:
            raise Err("TooOld", {"oldest_seq": self.oldest_seq()})
        changes = [c for c in self.journal if c["seq"] > since_seq][: max(1, max_bytes // 64)]
        to_seq = changes[-1]["seq"] if changes else max(since_seq, self.head)
        return {
            "from_seq": since_seq,
            "to_seq": to_seq,
            "head_seq": self.head,
            "changes": changes,
        }

    def icrp_apply(self, caller: bytes, batch: dict[str, Any]) -> int:
        self.require_trusted(caller)
        if batch["from_seq"] > self.head:
            raise Err("Gap", {"applied_seq": self.head, "from_seq": batch["from_seq"]})
        for change in batch["changes"]:
            if change["seq"] > self.head:
                op = change["op"]
                if "put" in op:
                    self.kv[op["put"]["key"]] = op["put"]["value"]
                elif "delete" in op:
                    self.kv.pop(op["delete"]["key"], None)
        self.head = max(self.head, batch["to_seq"])
        return self.head

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
        for record in records:
            if self.key_range and not self._in(self.key_range, record["key"]):
                raise Err("OutOfRange", {"key": record["key"]})
        for record in records:
            self.put(record["key"], record["value"])
        return len(records)

    def icrp_delete_range(
        self, caller: bytes, rng: dict[str, Any], cursor: list[bytes], max_records: int
    ) -> dict[str, Any]:
        self.require_trusted(caller)
        keys = self._range_keys(rng, cursor)
        for key in keys[:max_records]:
            del self.kv[key]
            self._journal({"delete": {"key": key}})
        return {"deleted": min(len(keys), max_records), "next_cursor": keys[max_records:][:1]}

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
