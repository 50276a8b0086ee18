"""Snapshot manifests: what one stored canister snapshot consists of.

A manifest names, for one snapshot of one canister, the ordered chunks of
each memory, the chunks of the Wasm chunk store and the snapshot's metadata
(globals, certified data, timer, hook status, canister version, time).  It
is JSON, meant to be read with ``jq`` as well as by this module; its id is
the SHA-256 of its bytes (like restic's snapshots), so a manifest that was
changed by one byte no longer matches its name.  The full specification is
``docs/repository-format.md``; the shape, version 1::

    {
      "format": "ic-replicator-snapshot", "version": 1, "tool": "ic-replicator 0.1.0",
      "canister": "<principal>", "network": "ic", "time": "<taken at, ISO 8601 UTC, ns>",
      "created_at": "<stored at>", "tags": [], "ic_snapshot_id": "<hex>" | null,
      "chunk_size": 2000000,
      "metadata": {"source", "taken_at_timestamp", "canister_version", "globals",
                   "certified_data", "global_timer", "on_low_wasm_memory_hook_status"},
      "parts": {"wasm_module":   {"size": N, "chunks": ["<sha256 hex>", ...]},
                "wasm_memory":   {...}, "stable_memory": {...},
                "wasm_chunk_store": [{"hash": "<sha256 hex>", "size": N}, ...]},
      "summary": {"chunks_new": N, "bytes_new": N, "stored_new": N}      (optional)
    }

Readers ignore keys they do not know; a change that an older reader would
misread raises ``version``, and a manifest of a newer version is refused
(:class:`FormatTooNew`) rather than guessed at.

:class:`ManifestBuilder` collects the chunks of a snapshot as a job stores
them, in any order, and builds the manifest once everything is there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from canister_iface.management_types import (
    MAX_SNAPSHOT_SLICE,
    SNAPSHOT_MEMORIES,
    Global,
    GlobalKind,
    GlobalTimer,
    HookStatus,
    SnapshotMemory,
    SnapshotMetadata,
    SnapshotSource,
)
from canister_iface.principal import Principal
from replicator import __version__
from replicator.integrity import DIGEST_SIZE, chunk_count, chunk_span
from replicator.repository.chunks import MAX_CHUNK_SIZE, ChunkRef
from replicator.repository.errors import FormatTooNew, ManifestDamaged

FORMAT = "ic-replicator-snapshot"
FORMAT_VERSION = 1
TOOL = f"ic-replicator {__version__}"
# 62,500 bytes, 1/32 of the IC's 2,000,000-byte read slice: canister memory
# changes in place, a dirty 4 KiB page at a time, so small fixed chunks dedupe
# what an app did not touch.  Measured on a plain canister
# (benchmarks/snapshot_bench.py): with 1 % of the pages changed at scattered
# places about 15 % of these chunks are new, but every 2,000,000-byte one.
# Content-defined chunking did worse at every size (nothing shifts in a Wasm
# memory), and page-aligned 64 KiB chunks barely better (a page straddles two
# of these chunks 6.5 % of the time) at the price of 1.7 % more read calls.
DEFAULT_CHUNK_SIZE = MAX_SNAPSHOT_SLICE // 32
WASM_CHUNK_STORE = "wasm_chunk_store"
PARTS: tuple[str, ...] = (*SNAPSHOT_MEMORIES, WASM_CHUNK_STORE)

_SOURCES: tuple[SnapshotSource, ...] = ("taken_from_canister", "metadata_upload")
_HOOKS: tuple[HookStatus, ...] = ("condition_not_satisfied", "ready", "executed")
_GLOBAL_KINDS: tuple[GlobalKind, ...] = ("i32", "i64", "f32", "f64", "v128")
_INT_RANGES = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1), "v128": (0, 2**128 - 1)}
_FLOAT_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Memory:
    """One memory of a snapshot: its size and its chunks, in order."""

    size: int
    chunks: tuple[bytes, ...] = ()

    def spans(self, chunk_size: int) -> Iterator[tuple[int, int, bytes]]:
        """``(offset, length, digest)`` of every chunk."""
        for i, digest in enumerate(self.chunks):
            offset, length = chunk_span(i, self.size, chunk_size)
            yield offset, length, digest


@dataclass(frozen=True)
class WasmChunk:
    """One chunk of the snapshot's Wasm chunk store; its IC hash is its SHA-256."""

    digest: bytes
    size: int


@dataclass(frozen=True)
class Summary:
    """What storing the snapshot added to the repository."""

    chunks_new: int
    bytes_new: int  # plain bytes of the chunks that were new
    stored_new: int  # bytes those chunks take in the repository


@dataclass(frozen=True)
class Manifest:
    """One stored snapshot (see the module docstring); checked when built."""

    canister: str  # textual principal
    network: str
    metadata: SnapshotMetadata  # sizes and chunk-store hashes agree with the parts
    chunk_size: int
    wasm_module: Memory
    wasm_memory: Memory
    stable_memory: Memory
    wasm_chunks: tuple[WasmChunk, ...] = ()
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    ic_snapshot_id: bytes | None = None
    tags: tuple[str, ...] = ()
    tool: str = TOOL
    summary: Summary | None = None

    def __post_init__(self) -> None:
        _check_manifest(self)

    @property
    def time(self) -> dt.datetime:
        """When the IC took the snapshot (UTC, microseconds)."""
        return ns_to_datetime(self.metadata.taken_at_timestamp)

    @property
    def size(self) -> int:
        """Plain bytes of all parts."""
        return sum(m.size for m in self.memories().values()) + sum(c.size for c in self.wasm_chunks)

    def memory(self, name: SnapshotMemory) -> Memory:
        return self.memories()[name]

    def memories(self) -> dict[SnapshotMemory, Memory]:
        return {
            "wasm_module": self.wasm_module,
            "wasm_memory": self.wasm_memory,
            "stable_memory": self.stable_memory,
        }

    def chunk_sizes(self) -> Iterator[tuple[bytes, int]]:
        """``(digest, plain size)`` of every chunk the manifest names (repeats included)."""
        for memory in self.memories().values():
            for _offset, length, digest in memory.spans(self.chunk_size):
                yield digest, length
        for chunk in self.wasm_chunks:
            yield chunk.digest, chunk.size

    def digests(self) -> set[bytes]:
        return {digest for digest, _ in self.chunk_sizes()}


@dataclass(frozen=True)
class StoredManifest:
    """A manifest and its id (SHA-256 of its bytes, hex)."""

    id: str
    manifest: Manifest

    @property
    def short_id(self) -> str:
        return self.id[:8]


# ------------------------------------------------------------------- builder


class ManifestBuilder:
    """Collects a snapshot's chunks as they are stored, in any order.

    ``add`` checks each chunk's length against the memory's geometry, so a
    manifest can only be built over exactly the bytes of the snapshot.
    ``missing`` tells a resumed job what is left; ``build`` refuses while
    anything is.
    """

    def __init__(
        self,
        *,
        canister: str,
        network: str,
        metadata: SnapshotMetadata,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        ic_snapshot_id: bytes | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        _check_chunk_size(chunk_size)
        self.canister = canister
        self.network = network
        self.metadata = metadata
        self.chunk_size = chunk_size
        self.ic_snapshot_id = ic_snapshot_id
        self.tags = tuple(tags)
        self._chunks: dict[SnapshotMemory, list[bytes | None]] = {
            m: [None] * chunk_count(metadata.size_of(m), chunk_size) for m in SNAPSHOT_MEMORIES
        }
        self._wasm: dict[bytes, WasmChunk] = {}
        self._new = [0, 0, 0]  # chunks, plain bytes, stored bytes

    def add(self, memory: SnapshotMemory, index: int, ref: ChunkRef) -> None:
        """Chunk ``index`` of ``memory`` is stored as ``ref``."""
        slots = self._chunks[memory]
        size = self.metadata.size_of(memory)
        _offset, length = chunk_span(index, size, self.chunk_size)
        if ref.size != length:
            raise ValueError(
                f"chunk {index} of {memory} ({size:,} bytes in chunks of {self.chunk_size:,}) "
                f"has {length:,} bytes, got {ref.size:,}"
            )
        if slots[index] not in (None, ref.digest):
            raise ValueError(f"chunk {index} of {memory} was already added with other bytes")
        if slots[index] is None:
            self._count(ref)
        slots[index] = ref.digest

    def add_wasm_chunk(self, ref: ChunkRef) -> None:
        """A chunk of the Wasm chunk store (its IC hash is its SHA-256) is stored as ``ref``."""
        if ref.digest not in self.metadata.wasm_chunk_store:
            raise ValueError(f"{ref.name} is not in the snapshot's Wasm chunk store")
        if ref.digest not in self._wasm:
            self._count(ref)
        self._wasm[ref.digest] = WasmChunk(ref.digest, ref.size)

    def _count(self, ref: ChunkRef) -> None:
        if ref.new:
            self._new[0] += 1
            self._new[1] += ref.size
            self._new[2] += ref.stored_size

    @property
    def new_counts(self) -> tuple[int, int, int]:
        """Chunks added as new so far: how many, their plain bytes, their stored bytes."""
        chunks, plain, stored = self._new
        return chunks, plain, stored

    def missing(self, memory: SnapshotMemory) -> list[int]:
        """Indices of the chunks of ``memory`` not added yet."""
        return [i for i, d in enumerate(self._chunks[memory]) if d is None]

    def missing_wasm_chunks(self) -> list[bytes]:
        return [h for h in self.metadata.wasm_chunk_store if h not in self._wasm]

    @property
    def complete(self) -> bool:
        return not self.missing_wasm_chunks() and not any(
            self.missing(m) for m in SNAPSHOT_MEMORIES
        )

    def build(self, *, created_at: dt.datetime | None = None) -> Manifest:
        """The manifest; ``ValueError`` naming what is missing if anything is."""
        gaps = {m: len(self.missing(m)) for m in SNAPSHOT_MEMORIES if self.missing(m)}
        if gaps or self.missing_wasm_chunks():
            wasm = len(self.missing_wasm_chunks())
            raise ValueError(
                f"the snapshot is incomplete: chunks missing {gaps or ''}"
                + (f", {wasm} Wasm chunk-store chunks missing" if wasm else "")
            )

        def memory(name: SnapshotMemory) -> Memory:
            return Memory(
                self.metadata.size_of(name), tuple(d for d in self._chunks[name] if d is not None)
            )

        return Manifest(
            canister=self.canister,
            network=self.network,
            metadata=self.metadata,
            chunk_size=self.chunk_size,
            wasm_module=memory("wasm_module"),
            wasm_memory=memory("wasm_memory"),
            stable_memory=memory("stable_memory"),
            wasm_chunks=tuple(self._wasm[h] for h in self.metadata.wasm_chunk_store),
            created_at=created_at or dt.datetime.now(dt.UTC),
            ic_snapshot_id=self.ic_snapshot_id,
            tags=self.tags,
            summary=Summary(*self._new),
        )


# ------------------------------------------------------------------ encoding


def encode(manifest: Manifest) -> bytes:
    """The manifest's bytes (deterministic for a given manifest)."""
    meta = manifest.metadata
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tool": manifest.tool,
        "canister": manifest.canister,
        "network": manifest.network,
        "time": ns_to_iso(meta.taken_at_timestamp),
        "created_at": _iso(manifest.created_at),
        "tags": list(manifest.tags),
        "ic_snapshot_id": None
        if manifest.ic_snapshot_id is None
        else manifest.ic_snapshot_id.hex(),
        "chunk_size": manifest.chunk_size,
        "metadata": {
            "source": meta.source,
            "taken_at_timestamp": meta.taken_at_timestamp,
            "canister_version": meta.canister_version,
            "globals": [_encode_global(g) for g in meta.globals],
            "certified_data": meta.certified_data.hex(),
            "global_timer": _encode_timer(meta.global_timer),
            "on_low_wasm_memory_hook_status": meta.on_low_wasm_memory_hook_status,
        },
        "parts": {
            **{
                name: {"size": m.size, "chunks": [d.hex() for d in m.chunks]}
                for name, m in manifest.memories().items()
            },
            WASM_CHUNK_STORE: [
                {"hash": c.digest.hex(), "size": c.size} for c in manifest.wasm_chunks
            ],
        },
    }
    if manifest.summary is not None:
        s = manifest.summary
        doc["summary"] = {
            "chunks_new": s.chunks_new,
            "bytes_new": s.bytes_new,
            "stored_new": s.stored_new,
        }
    return (json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode()


def manifest_id(data: bytes) -> str:
    """A manifest's id: the SHA-256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, snapshot_id: str | None = None) -> Manifest:
    """Parse and check a manifest; ``snapshot_id`` (its file name) is verified when given.

    Raises :class:`ManifestDamaged` (with the reason and the JSON path of the
    problem) or :class:`FormatTooNew`.
    """
    actual = manifest_id(data)
    name = snapshot_id or actual
    if snapshot_id is not None and actual != snapshot_id:
        raise ManifestDamaged(name, f"its content hashes to {actual[:12]}, not to its id")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestDamaged(name, f"not JSON ({exc})") from None
    try:
        return _decode_doc(_Obj(doc, "$"), name)
    except _Invalid as exc:
        raise ManifestDamaged(name, str(exc)) from None
    except ValueError as exc:  # a check of Manifest.__post_init__
        raise ManifestDamaged(name, str(exc)) from None


def _decode_doc(doc: _Obj, name: str) -> Manifest:
    if doc.text("format") != FORMAT:
        doc.fail("format", f"expected {FORMAT!r}")
    version = doc.nat("version")
    if version > FORMAT_VERSION:
        raise FormatTooNew(f"snapshot {name[:12]}", version, FORMAT_VERSION)
    if version < 1:
        doc.fail("version", "expected a positive integer")
    meta = doc.obj("metadata")
    parts = doc.obj("parts")
    memories = {m: _decode_memory(parts.obj(m)) for m in SNAPSHOT_MEMORIES}
    wasm = tuple(
        WasmChunk(item.blob("hash", DIGEST_SIZE), item.nat("size"))
        for item in parts.objs(WASM_CHUNK_STORE)
    )
    taken_at = meta.nat("taken_at_timestamp")
    if doc.text("time") != ns_to_iso(taken_at):
        doc.fail("time", f"does not match metadata.taken_at_timestamp ({ns_to_iso(taken_at)})")
    metadata = SnapshotMetadata(
        source=meta.choice("source", _SOURCES),
        taken_at_timestamp=taken_at,
        wasm_module_size=memories["wasm_module"].size,
        globals=tuple(_decode_global(g) for g in meta.objs("globals")),
        wasm_memory_size=memories["wasm_memory"].size,
        stable_memory_size=memories["stable_memory"].size,
        wasm_chunk_store=tuple(c.digest for c in wasm),
        canister_version=meta.nat("canister_version"),
        certified_data=meta.blob("certified_data"),
        global_timer=_decode_timer(meta),
        on_low_wasm_memory_hook_status=meta.optional_choice(
            "on_low_wasm_memory_hook_status", _HOOKS
        ),
    )
    snapshot_id = doc.optional_text("ic_snapshot_id")
    return Manifest(
        canister=doc.text("canister"),
        network=doc.text("network"),
        metadata=metadata,
        chunk_size=doc.nat("chunk_size"),
        wasm_module=memories["wasm_module"],
        wasm_memory=memories["wasm_memory"],
        stable_memory=memories["stable_memory"],
        wasm_chunks=wasm,
        created_at=doc.when("created_at"),
        ic_snapshot_id=None if snapshot_id is None else doc.blob("ic_snapshot_id"),
        tags=tuple(doc.texts("tags")),
        tool=doc.text("tool"),
        summary=_decode_summary(doc),
    )


def _decode_memory(part: _Obj) -> Memory:
    return Memory(part.nat("size"), tuple(part.blobs("chunks", DIGEST_SIZE)))


def _decode_summary(doc: _Obj) -> Summary | None:
    if doc.get("summary") is None:
        return None
    s = doc.obj("summary")
    return Summary(s.nat("chunks_new"), s.nat("bytes_new"), s.nat("stored_new"))


def _encode_global(g: Global) -> dict[str, object]:
    value = g.value
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or infinities; the words keep the manifest strict JSON.
        word = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return {g.kind: word}
    return {g.kind: value}


def _decode_global(item: _Obj) -> Global:
    if len(item.keys()) != 1:
        item.fail("", "expected one of {i32|i64|f32|f64|v128: value}")
    (key,) = item.keys()
    kind = next((k for k in _GLOBAL_KINDS if k == key), None)
    if kind is None:
        item.fail(key, "unknown global type (expected i32, i64, f32, f64 or v128)")
    raw = item.get(key)
    if kind in ("f32", "f64"):
        if isinstance(raw, str) and raw in _FLOAT_WORDS:
            return Global(kind, _FLOAT_WORDS[raw])
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            item.fail(key, "expected a number or one of 'nan', 'inf', '-inf'")
        return Global(kind, float(raw))
    low, high = _INT_RANGES[kind]
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        item.fail(key, f"expected an integer in [{low}, {high}]")
    return Global(kind, raw)


def _encode_timer(timer: GlobalTimer | None) -> object:
    if timer is None:
        return None
    return "inactive" if timer.at_ns is None else {"active": timer.at_ns}


def _decode_timer(meta: _Obj) -> GlobalTimer | None:
    raw = meta.get("global_timer")
    if raw is None:
        return None
    if raw == "inactive":
        return GlobalTimer(None)
    timer = meta.obj("global_timer")
    return GlobalTimer(timer.nat("active"))


# --------------------------------------------------------------------- time


def ns_to_datetime(ns: int) -> dt.datetime:
    """Nanoseconds since the epoch as an aware UTC datetime (microseconds)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def ns_to_iso(ns: int) -> str:
    """``2026-05-01T12:00:00.123456789Z``: exact, nanoseconds included."""
    seconds, rest = divmod(ns, 10**9)
    whole = _EPOCH + dt.timedelta(seconds=seconds)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{rest:09d}Z"


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------- checks


def _check_chunk_size(chunk_size: int) -> None:
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE:,}, got {chunk_size:,}")


def _check_manifest(m: Manifest) -> None:
    try:
        Principal.from_text(m.canister)
    except ValueError as exc:
        raise ValueError(f"canister: {exc}") from None
    if not m.network or not m.network.isprintable():
        raise ValueError(f"network must be a printable, non-empty name, got {m.network!r}")
    _check_chunk_size(m.chunk_size)
    if m.created_at.tzinfo is None:
        raise ValueError("created_at must be an aware datetime")
    for name, memory in m.memories().items():
        _check_memory(name, memory, m.metadata.size_of(name), m.chunk_size)
    hashes = tuple(c.digest for c in m.wasm_chunks)
    if hashes != m.metadata.wasm_chunk_store:
        raise ValueError("the Wasm chunk store's chunks do not match the metadata's hashes")
    for chunk in m.wasm_chunks:
        if len(chunk.digest) != DIGEST_SIZE or not 0 <= chunk.size <= MAX_CHUNK_SIZE:
            raise ValueError(f"bad Wasm chunk-store entry {chunk.digest.hex()} ({chunk.size})")
    if m.metadata.taken_at_timestamp < 0 or m.metadata.canister_version < 0:
        raise ValueError("taken_at_timestamp and canister_version must not be negative")


def _check_memory(name: str, memory: Memory, size: int, chunk_size: int) -> None:
    if memory.size != size:
        raise ValueError(f"{name} has {memory.size:,} bytes, the metadata says {size:,}")
    expected = chunk_count(memory.size, chunk_size)
    if len(memory.chunks) != expected:
        raise ValueError(
            f"{name}: {memory.size:,} bytes in chunks of {chunk_size:,} are {expected} chunks, "
            f"the manifest lists {len(memory.chunks)}"
        )
    if any(len(d) != DIGEST_SIZE for d in memory.chunks):
        raise ValueError(f"{name}: a chunk digest is not {DIGEST_SIZE} bytes")


# ------------------------------------------------------------- JSON access


class _Invalid(Exception):
    """A manifest value of the wrong shape; the message names its JSON path."""


class _Obj:
    """Typed access to one JSON object; every failure names the path."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise _Invalid(f"{path}: expected an object")
        self._d: Mapping[str, object] = value
        self.path = path

    def fail(self, key: str, expected: str) -> NoReturn:
        where = f"{self.path}.{key}" if key else self.path
        raise _Invalid(f"{where}: {expected}")

    def keys(self) -> list[str]:
        return list(self._d)

    def get(self, key: str) -> object:
        return self._d.get(key)

    def _required(self, key: str) -> object:
        if key not in self._d:
            self.fail(key, "missing")
        return self._d[key]

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str):
            self.fail(key, "expected a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self._d.get(key) is None else self.text(key)

    def nat(self, key: str) -> int:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(key, "expected a non-negative integer")
        return value

    def blob(self, key: str, length: int | None = None) -> bytes:
        return _hex(self.text(key), length, lambda why: self.fail(key, why))

    def obj(self, key: str) -> _Obj:
        return _Obj(self._required(key), f"{self.path}.{key}")

    def _list(self, key: str) -> list[object]:
        value = self._required(key)
        if not isinstance(value, list):
            self.fail(key, "expected a list")
        return value

    def objs(self, key: str) -> list[_Obj]:
        return [_Obj(v, f"{self.path}.{key}[{i}]") for i, v in enumerate(self._list(key))]

    def texts(self, key: str) -> list[str]:
        items = self._list(key)
        if not all(isinstance(v, str) for v in items):
            self.fail(key, "expected a list of strings")
        return [str(v) for v in items]

    def blobs(self, key: str, length: int) -> list[bytes]:
        return [
            _hex(v, length, lambda why, i=i: self.fail(f"{key}[{i}]", why))
            for i, v in enumerate(self.texts(key))
        ]

    def choice(self, key: str, allowed: tuple[_T, ...]) -> _T:
        value = self._required(key)
        for option in allowed:
            if value == option:
                return option
        return self.fail(key, f"expected one of {', '.join(map(repr, allowed))}")

    def optional_choice(self, key: str, allowed: tuple[_T, ...]) -> _T | None:
        return None if self._d.get(key) is None else self.choice(key, allowed)

    def when(self, key: str) -> dt.datetime:
        text = self.text(key)
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(key, "expected an ISO 8601 time")
        if when.tzinfo is None:
            self.fail(key, "expected a time with a zone (…Z)")
        return when


def _hex(value: object, length: int | None, fail: Any) -> bytes:
    if not isinstance(value, str) or value != value.lower():
        fail("expected lowercase hex")
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        fail("expected lowercase hex")
    if length is not None and len(raw) != length:
        fail(f"expected {length} bytes of hex, got {len(raw)}")
    return raw
