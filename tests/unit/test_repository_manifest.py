"""Snapshot manifests: JSON round trips, ids, damage and newer versions refused, the builder."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canister_iface.management_types import Global, GlobalTimer, SnapshotMetadata
from replicator.errors import IntegrityError, UsageError
from replicator.repository.chunks import ChunkRef
from replicator.repository.errors import FormatTooNew, ManifestDamaged
from replicator.repository.manifest import (
    FORMAT_VERSION,
    Manifest,
    ManifestBuilder,
    Memory,
    decode,
    encode,
    manifest_id,
    ns_to_iso,
)

CANISTER = "kipf3-nqaaa-fake3-aaaaa-cai"
CHUNK = 1000


def _ref(data: bytes, new: bool = True) -> ChunkRef:
    return ChunkRef(hashlib.sha256(data).digest(), len(data), len(data) // 2, new)


def _metadata(
    module: int = 10, memory: int = 2500, stable: int = 0, **kw: object
) -> SnapshotMetadata:
    fields: dict[str, object] = {
        "source": "taken_from_canister",
        "taken_at_timestamp": 1_750_000_000_123_456_789,
        "wasm_module_size": module,
        "globals": (Global("i32", -5), Global("i64", 2**63 - 1), Global("v128", 2**127 + 3)),
        "wasm_memory_size": memory,
        "stable_memory_size": stable,
        "wasm_chunk_store": (),
        "canister_version": 42,
        "certified_data": b"\x00\xff",
        "global_timer": GlobalTimer(1_750_000_001_000_000_000),
        "on_low_wasm_memory_hook_status": "condition_not_satisfied",
    }
    fields.update(kw)
    return SnapshotMetadata(**fields)  # type: ignore[arg-type]


def _build(metadata: SnapshotMetadata, wasm_chunks: dict[bytes, bytes] | None = None) -> Manifest:
    builder = ManifestBuilder(canister=CANISTER, network="ic", metadata=metadata, chunk_size=CHUNK)
    for memory in ("wasm_module", "wasm_memory", "stable_memory"):
        size = metadata.size_of(memory)  # type: ignore[arg-type]
        data = bytes([len(memory)]) * size
        for index in reversed(range(-(-size // CHUNK))):  # any order
            builder.add(memory, index, _ref(data[index * CHUNK : (index + 1) * CHUNK]))  # type: ignore[arg-type]
    for data in (wasm_chunks or {}).values():
        builder.add_wasm_chunk(_ref(data))
    return builder.build(created_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC))


def test_round_trip_and_jq_readable() -> None:
    chunk = b"wasm chunk"
    m = _build(_metadata(wasm_chunk_store=(hashlib.sha256(chunk).digest(),)), {b"": chunk})
    data = encode(m)
    assert decode(data, manifest_id(data)) == m
    doc = json.loads(data)
    assert doc["version"] == FORMAT_VERSION
    assert doc["canister"] == CANISTER
    assert doc["time"] == "2025-06-15T15:06:40.123456789Z"
    assert doc["created_at"] == "2026-01-02T03:04:05.678901Z"
    assert doc["parts"]["wasm_memory"]["size"] == 2500
    assert len(doc["parts"]["wasm_memory"]["chunks"]) == 3
    assert doc["parts"]["wasm_chunk_store"] == [
        {"hash": hashlib.sha256(chunk).hexdigest(), "size": 10}
    ]
    assert doc["metadata"]["globals"][2] == {"v128": 2**127 + 3}
    assert doc["metadata"]["global_timer"] == {"active": 1_750_000_001_000_000_000}
    assert doc["summary"] == {"chunks_new": 5, "bytes_new": 2520, "stored_new": 1260}
    assert m.size == 2520
    assert m.time == dt.datetime(2025, 6, 15, 15, 6, 40, 123456, tzinfo=dt.UTC)


def test_the_id_is_the_sha256_of_the_bytes() -> None:
    data = encode(_build(_metadata()))
    assert manifest_id(data) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ManifestDamaged, match="hashes to"):
        decode(data, "0" * 64)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_changed_byte_is_caught(data: st.DataObject) -> None:
    raw = bytearray(encode(_build(_metadata())))
    snapshot_id = manifest_id(bytes(raw))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ManifestDamaged) as caught:
        decode(bytes(raw), snapshot_id)
    assert isinstance(caught.value, IntegrityError)


def test_a_newer_version_is_refused_not_misread() -> None:
    doc = json.loads(encode(_build(_metadata())))
    doc["version"] = FORMAT_VERSION + 1
    doc["parts"] = "something a newer version means"
    data = json.dumps(doc).encode()
    with pytest.raises(
        FormatTooNew, match="format version 2; this ic-replicator reads up to version 1"
    ) as caught:
        decode(data, manifest_id(data))
    assert isinstance(caught.value, UsageError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("canister"), r"\$\.canister: missing"),
        (
            lambda d: d.update(canister="not-a-principal"),
            "canister: 'not-a-principal' is not a principal",
        ),
        (
            lambda d: d["parts"]["wasm_memory"]["chunks"].pop(),
            "wasm_memory: 2,500 bytes in chunks of 1,000 are 3",
        ),
        (
            lambda d: d["parts"]["wasm_memory"]["chunks"].__setitem__(0, "ab"),
            r"chunks\[0\]: expected 32 bytes",
        ),
        (lambda d: d["metadata"].update(source="stolen"), "source: expected one of"),
        (
            lambda d: d["metadata"]["globals"].append({"i32": 2**31}),
            r"globals\[3\]\.i32: expected an integer",
        ),
        (lambda d: d.update(time="2020-01-01T00:00:00.000000000Z"), "time: does not match"),
        (lambda d: d.update(format="restic"), "format: expected"),
        (lambda d: d.update(chunk_size=0), "chunk_size must be in"),
    ],
)
def test_invalid_manifests_name_the_problem(change: object, message: str) -> None:
    doc = json.loads(encode(_build(_metadata())))
    change(doc)  # type: ignore[operator]
    data = json.dumps(doc).encode()
    with pytest.raises(ManifestDamaged, match=message):
        decode(data, manifest_id(data))


def test_unknown_keys_are_ignored() -> None:
    m = _build(_metadata())
    doc = json.loads(encode(m))
    doc["added_by_a_minor_change"] = {"x": 1}
    assert decode(json.dumps(doc).encode()) == m


def test_non_finite_floats_stay_strict_json() -> None:
    globals_ = (
        Global("f32", math.inf),
        Global("f64", -math.inf),
        Global("f64", math.nan),
        Global("f32", -0.0),
    )
    m = _build(_metadata(globals=globals_))
    data = encode(m)
    assert json.loads(data)["metadata"]["globals"][:3] == [
        {"f32": "inf"},
        {"f64": "-inf"},
        {"f64": "nan"},
    ]
    back = decode(data).metadata.globals
    assert back[0].value == math.inf
    assert back[1].value == -math.inf
    assert math.isnan(back[2].value)
    assert math.copysign(1.0, back[3].value) == -1.0


@settings(max_examples=100, deadline=None)
@given(
    module=st.integers(0, 3000),
    memory=st.integers(0, 5000),
    stable=st.integers(0, 3000),
    ts=st.integers(0, 2**64 - 1),
    version=st.integers(0, 2**64 - 1),
    certified=st.binary(max_size=32),
    timer=st.one_of(
        st.none(), st.just(GlobalTimer(None)), st.builds(GlobalTimer, st.integers(0, 2**64 - 1))
    ),
    hook=st.sampled_from([None, "condition_not_satisfied", "ready", "executed"]),
    globals_=st.lists(
        st.one_of(
            st.builds(Global, st.just("i32"), st.integers(-(2**31), 2**31 - 1)),
            st.builds(Global, st.just("i64"), st.integers(-(2**63), 2**63 - 1)),
            st.builds(Global, st.just("f64"), st.floats(allow_nan=False)),
            st.builds(Global, st.just("v128"), st.integers(0, 2**128 - 1)),
        ),
        max_size=5,
    ),
)
def test_round_trip_of_any_metadata(
    module: int,
    memory: int,
    stable: int,
    ts: int,
    version: int,
    certified: bytes,
    timer: GlobalTimer | None,
    hook: str | None,
    globals_: list[Global],
) -> None:
    metadata = _metadata(
        module,
        memory,
        stable,
        taken_at_timestamp=ts,
        canister_version=version,
        certified_data=certified,
        global_timer=timer,
        on_low_wasm_memory_hook_status=hook,
        globals=tuple(globals_),
    )
    m = _build(metadata)
    assert decode(encode(m)) == m
    assert decode(encode(m)).metadata == metadata


def test_ns_to_iso_is_exact() -> None:
    assert ns_to_iso(0) == "1970-01-01T00:00:00.000000000Z"
    assert ns_to_iso(1) == "1970-01-01T00:00:00.000000001Z"


# ------------------------------------------------------------------- builder


def test_builder_checks_each_chunk_against_the_geometry() -> None:
    builder = ManifestBuilder(
        canister=CANISTER, network="ic", metadata=_metadata(), chunk_size=CHUNK
    )
    with pytest.raises(ValueError, match=r"chunk 2 of wasm_memory .* has 500 bytes, got 1,000"):
        builder.add("wasm_memory", 2, _ref(bytes(1000)))
    with pytest.raises(IndexError):
        builder.add("wasm_memory", 3, _ref(bytes(1000)))
    builder.add("wasm_memory", 0, _ref(bytes(1000)))
    with pytest.raises(ValueError, match="already added with other bytes"):
        builder.add("wasm_memory", 0, _ref(b"\x01" * 1000))
    builder.add("wasm_memory", 0, _ref(bytes(1000), new=False))  # the same again: fine


def test_builder_says_what_is_missing() -> None:
    builder = ManifestBuilder(
        canister=CANISTER, network="ic", metadata=_metadata(), chunk_size=CHUNK
    )
    builder.add("wasm_memory", 1, _ref(bytes(1000)))
    assert builder.missing("wasm_memory") == [0, 2]
    assert builder.missing("wasm_module") == [0]
    assert not builder.complete
    with pytest.raises(ValueError, match="incomplete"):
        builder.build()


def test_builder_refuses_a_foreign_wasm_chunk() -> None:
    builder = ManifestBuilder(
        canister=CANISTER, network="ic", metadata=_metadata(), chunk_size=CHUNK
    )
    with pytest.raises(ValueError, match="not in the snapshot's Wasm chunk store"):
        builder.add_wasm_chunk(_ref(b"x"))


def test_manifest_checks_parts_against_metadata() -> None:
    with pytest.raises(ValueError, match="wasm_module has 5 bytes, the metadata says 10"):
        Manifest(
            canister=CANISTER,
            network="ic",
            metadata=_metadata(memory=0),
            chunk_size=CHUNK,
            wasm_module=Memory(5, (bytes(32),)),
            wasm_memory=Memory(0),
            stable_memory=Memory(0),
        )
