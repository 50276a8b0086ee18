"""ManagementClient against a fake agent that speaks the management canister's Candid.

The fake decodes every request with localnet's independently written
``ic.did`` types (a typed decode: a field of the wrong type or a missing
field fails) and encodes replies with them, so these tests check the
client's Candid against a second reading of the spec, not against itself.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from icp_candid import Types, encode

from canister_iface.candid_value import EMPTY_ARGS
from canister_iface.errors import ProtocolError
from canister_iface.management import (
    DIRECT_INSTALL_LIMIT,
    FIRST_CANISTER_ID,
    ManagementClient,
)
from canister_iface.management_types import (
    MAX_SNAPSHOT_SLICE,
    MAX_WASM_CHUNK,
    CanisterSettings,
    EnvironmentVariable,
    Global,
    GlobalTimer,
    InstallMode,
    SnapshotMetadataUpload,
    SnapshotSlice,
    SnapshotWasmChunk,
    UploadTarget,
    Visibility,
)
from canister_iface.principal import Principal
from localnet import mgmt_types

CANISTER = Principal(bytes.fromhex("00000000000000050101"))
ALICE = Principal(b"\x01" * 29)
BOB = Principal(b"\x02" * 29)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class Call:
    method: str
    arg: dict[str, Any]
    effective: bytes | None


@dataclass
class FakeManagement:
    """A management canister in memory: enough state for chunked installs and snapshots."""

    calls: list[Call] = field(default_factory=list)
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)
    installed: bytes | None = None
    memory: bytes = b""
    overrides: dict[str, Callable[[dict[str, Any]], bytes]] = field(default_factory=dict)

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        raise AssertionError("the management canister is only called with update calls")

    async def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        *,
        effective_canister_id: bytes | None = None,
    ) -> bytes:
        assert canister_id == b"", "management calls go to aaaaa-aa"
        decoded = mgmt_types.decode_args(method, arg)
        self.calls.append(Call(method, decoded, effective_canister_id))
        if method in self.overrides:
            return self.overrides[method](decoded)
        return mgmt_types.encode_result(method, self._answer(method, decoded))

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def _answer(self, method: str, arg: dict[str, Any]) -> Any:
        if method == "provisional_create_canister_with_cycles":
            specified = mgmt_types.opt(arg["specified_id"])
            return {"canister_id": specified or CANISTER.raw}
        if method == "upload_chunk":
            self.chunk_store[_sha(arg["chunk"])] = arg["chunk"]
            return {"hash": _sha(arg["chunk"])}
        if method == "stored_chunks":
            return [{"hash": h} for h in self.chunk_store]
        if method == "clear_chunk_store":
            self.chunk_store.clear()
        if method == "install_chunked_code":
            module = b"".join(self.chunk_store[c["hash"]] for c in arg["chunk_hashes_list"])
            assert _sha(module) == arg["wasm_module_hash"]
            self.installed = module
        if method == "install_code":
            self.installed = arg["wasm_module"]
        if method == "read_canister_snapshot_data":
            tag, where = mgmt_types.variant(arg["kind"])
            assert tag == "wasm_memory"
            return {"chunk": self.memory[where["offset"] : where["offset"] + where["size"]]}
        return None


@pytest.fixture
def fake() -> FakeManagement:
    return FakeManagement()


@pytest.fixture
def mgmt(fake: FakeManagement) -> ManagementClient:
    return ManagementClient(fake)


# ------------------------------------------------------------------ creation


async def test_provisional_create_routes_to_the_first_canister_range_by_default(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    settings = CanisterSettings(controllers=(ALICE,), freezing_threshold=3600)
    created = await mgmt.provisional_create_canister_with_cycles(amount=10**13, settings=settings)
    assert created == CANISTER
    (call,) = fake.calls
    assert call.effective == FIRST_CANISTER_ID
    assert call.arg["amount"] == [10**13]
    (sent,) = call.arg["settings"]
    assert [mgmt_types.principal_bytes(p) for p in sent["controllers"][0]] == [ALICE.raw]
    assert sent["freezing_threshold"] == [3600]
    assert sent["compute_allocation"] == []


async def test_provisional_create_with_specified_id_uses_it_as_effective_id(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    wanted = Principal(bytes.fromhex("00000000001000000101"))
    assert await mgmt.provisional_create_canister_with_cycles(specified_id=wanted) == wanted
    assert fake.calls[0].effective == wanted.raw
    assert fake.calls[0].arg["amount"] == []


# ---------------------------------------------------------------- settings


async def test_update_settings_sends_exactly_the_fields_set(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    settings = CanisterSettings(
        controllers=(ALICE, BOB),
        wasm_memory_limit=3 * 2**30,
        log_visibility=Visibility.allowed_viewers([BOB]),
        snapshot_visibility=Visibility.public(),
        environment_variables=(EnvironmentVariable("MODE", "backup"),),
    )
    await mgmt.update_settings(CANISTER.to_text(), settings)
    (call,) = fake.calls
    assert call.method == "update_settings"
    assert call.effective == CANISTER.raw
    sent = call.arg["settings"]
    assert [mgmt_types.principal_bytes(p) for p in sent["controllers"][0]] == [ALICE.raw, BOB.raw]
    assert sent["wasm_memory_limit"] == [3 * 2**30]
    viewers = sent["log_visibility"][0]["allowed_viewers"]
    assert [mgmt_types.principal_bytes(p) for p in viewers] == [BOB.raw]
    assert sent["snapshot_visibility"] == [{"public": None}]
    assert sent["environment_variables"] == [[{"name": "MODE", "value": "backup"}]]
    unset = {k for k, v in sent.items() if v == []}
    assert unset == {
        "compute_allocation",
        "memory_allocation",
        "freezing_threshold",
        "reserved_cycles_limit",
        "minimum_incoming_canister_call_cycles",
        "log_memory_limit",
        "status_visibility",
        "wasm_memory_threshold",
    }
    assert sorted(settings.set_fields()) == sorted(set(sent) - unset)


async def test_set_controllers_replaces_the_set_without_duplicates(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    await mgmt.set_controllers(CANISTER, [BOB, ALICE.to_text(), BOB.raw])
    sent = fake.calls[0].arg["settings"]
    assert [mgmt_types.principal_bytes(p) for p in sent["controllers"][0]] == [BOB.raw, ALICE.raw]
    assert all(v == [] for k, v in sent.items() if k != "controllers")


async def test_set_controllers_to_nobody_sends_an_empty_list(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    await mgmt.set_controllers(CANISTER, [])
    assert fake.calls[0].arg["settings"]["controllers"] == [[]]


# ----------------------------------------------------------------- status

_STATUS = {
    "status": {"stopping": None},
    "ready_for_migration": False,
    "version": 7,
    "settings": {
        "controllers": [ALICE.raw],
        "compute_allocation": 0,
        "memory_allocation": 0,
        "freezing_threshold": 2_592_000,
        "reserved_cycles_limit": 5 * 10**12,
        "minimum_incoming_canister_call_cycles": 0,
        "log_visibility": {"controllers": None},
        "log_memory_limit": 4096,
        "snapshot_visibility": {"allowed_viewers": [BOB.raw]},
        "status_visibility": {"public": None},
        "wasm_memory_limit": 3 * 2**30,
        "wasm_memory_threshold": 0,
        "environment_variables": [{"name": "A", "value": "1"}],
    },
    "module_hash": [b"\xaa" * 32],
    "memory_size": 12345,
    "memory_metrics": {
        "wasm_memory_size": 1,
        "stable_memory_size": 2,
        "global_memory_size": 3,
        "wasm_binary_size": 4,
        "custom_sections_size": 5,
        "canister_history_size": 6,
        "wasm_chunk_store_size": 7,
        "snapshots_size": 8,
        "log_memory_store_size": 9,
    },
    "cycles": 10**14,
    "reserved_cycles": 11,
    "idle_cycles_burned_per_day": 12,
    "query_stats": {
        "num_calls_total": 1,
        "num_instructions_total": 2,
        "request_payload_bytes_total": 3,
        "response_payload_bytes_total": 4,
    },
}


async def test_canister_status_reads_every_field(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["canister_status"] = lambda _: mgmt_types.encode_result(
        "canister_status", _STATUS
    )
    status = await mgmt.canister_status(CANISTER)
    assert fake.calls[0].effective == CANISTER.raw
    assert status.status == "stopping"
    assert status.version == 7
    assert status.ready_for_migration is False
    assert status.module_hash == b"\xaa" * 32
    assert status.cycles == 10**14
    assert status.settings.controllers == (ALICE,)
    assert status.settings.snapshot_visibility == Visibility("allowed_viewers", (BOB,))
    assert status.settings.status_visibility == Visibility.public()
    assert status.settings.log_visibility == Visibility.controllers()
    assert status.settings.environment_variables == (EnvironmentVariable("A", "1"),)
    assert status.memory_metrics is not None
    assert status.memory_metrics.log_memory_store_size == 9
    assert status.query_stats is not None
    assert status.query_stats.response_payload_bytes_total == 4


def _old_schema_status() -> bytes:
    """A reply as a replica answering with the 2024 ``ic.did`` sends it."""
    visibility = Types.Variant({"controllers": Types.Null, "public": Types.Null})
    settings = Types.Record(
        {
            "controllers": Types.Vec(Types.Principal),
            "compute_allocation": Types.Nat,
            "memory_allocation": Types.Nat,
            "freezing_threshold": Types.Nat,
            "reserved_cycles_limit": Types.Nat,
            "log_visibility": visibility,
        }
    )
    reply = Types.Record(
        {
            "status": Types.Variant({"running": Types.Null, "stopped": Types.Null}),
            "settings": settings,
            "module_hash": Types.Opt(Types.Vec(Types.Nat8)),
            "memory_size": Types.Nat,
            "cycles": Types.Nat,
            "idle_cycles_burned_per_day": Types.Nat,
        }
    )
    value = {
        "status": {"running": None},
        "settings": {
            "controllers": [ALICE.raw, BOB.raw],
            "compute_allocation": 1,
            "memory_allocation": 2,
            "freezing_threshold": 3,
            "reserved_cycles_limit": 4,
            "log_visibility": {"public": None},
        },
        "module_hash": [],
        "memory_size": 5,
        "cycles": 6,
        "idle_cycles_burned_per_day": 7,
    }
    return bytes(encode([{"type": reply, "value": value}]))


async def test_canister_status_from_an_older_replica_leaves_newer_fields_none(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["canister_status"] = lambda _: _old_schema_status()
    status = await mgmt.canister_status(CANISTER)
    assert status.status == "running"
    assert status.module_hash is None
    assert status.settings.controllers == (ALICE, BOB)
    assert status.settings.log_visibility == Visibility.public()
    assert status.version is None
    assert status.memory_metrics is None
    assert status.settings.wasm_memory_limit is None
    assert status.settings.snapshot_visibility is None


async def test_a_reply_missing_a_required_field_is_a_protocol_error(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    reply = Types.Record({"status": Types.Variant({"running": Types.Null})})
    fake.overrides["canister_status"] = lambda _: bytes(
        encode([{"type": reply, "value": {"status": {"running": None}}}])
    )
    with pytest.raises(ProtocolError, match=r"canister_status: field 'settings' is missing"):
        await mgmt.canister_status(CANISTER)


async def test_a_reply_that_is_not_candid_is_a_protocol_error(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["stop_canister"] = lambda _: b"not candid"
    with pytest.raises(ProtocolError, match="stop_canister: the reply is not valid Candid"):
        await mgmt.stop_canister(CANISTER)


async def test_an_unknown_status_is_a_protocol_error_naming_the_known_ones(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    reply = Types.Record({"status": Types.Variant({"migrating": Types.Null})})
    fake.overrides["canister_status"] = lambda _: bytes(
        encode([{"type": reply, "value": {"status": {"migrating": None}}}])
    )
    with pytest.raises(ProtocolError, match=r"unknown variant case.*running"):
        await mgmt.canister_status(CANISTER)


# ----------------------------------------------------------------- install


async def test_small_modules_install_in_one_call(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    await mgmt.install_code(CANISTER, b"\x00asm small", arg=b"DIDL\x00\x01\x7d\x05")
    (call,) = fake.calls
    assert call.method == "install_code"
    assert call.effective == CANISTER.raw
    assert call.arg["mode"] == {"install": None}
    assert call.arg["arg"] == b"DIDL\x00\x01\x7d\x05"
    assert fake.installed == b"\x00asm small"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (InstallMode.reinstall(), {"reinstall": None}),
        (InstallMode.upgrade(), {"upgrade": []}),
        (
            InstallMode.upgrade(wasm_memory_persistence="keep"),
            {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]},
        ),
        (
            InstallMode.upgrade(skip_pre_upgrade=True, wasm_memory_persistence="replace"),
            {
                "upgrade": [
                    {"skip_pre_upgrade": [True], "wasm_memory_persistence": [{"replace": None}]}
                ]
            },
        ),
    ],
)
async def test_install_modes_encode_as_the_spec_says(
    fake: FakeManagement, mgmt: ManagementClient, mode: InstallMode, expected: dict[str, Any]
) -> None:
    await mgmt.install_code(CANISTER, b"\x00asm", mode=mode)
    assert fake.calls[0].arg["mode"] == expected
    assert fake.calls[0].arg["arg"] == EMPTY_ARGS


async def test_upgrade_and_reinstall_shortcuts(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    await mgmt.upgrade_code(CANISTER, b"\x00asm", wasm_memory_persistence="keep")
    await mgmt.reinstall_code(CANISTER, b"\x00asm")
    modes = [c.arg["mode"] for c in fake.calls]
    assert modes == [
        {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]},
        {"reinstall": None},
    ]


def test_upgrade_options_on_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="upgrades only"):
        InstallMode("install", wasm_memory_persistence="keep")


async def test_large_modules_go_through_the_chunk_store(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    module = random.Random(1).randbytes(DIRECT_INSTALL_LIMIT + 300_000)
    assert len(module) > DIRECT_INSTALL_LIMIT
    await mgmt.install_code(CANISTER, module, mode=InstallMode.upgrade())
    assert fake.methods() == [
        "stored_chunks",
        "upload_chunk",
        "upload_chunk",
        "upload_chunk",
        "install_chunked_code",
        "clear_chunk_store",
    ]
    uploads = [c.arg["chunk"] for c in fake.calls if c.method == "upload_chunk"]
    assert all(len(chunk) <= MAX_WASM_CHUNK for chunk in uploads)
    assert b"".join(uploads) == module
    install = fake.calls[4].arg
    assert mgmt_types.principal_bytes(install["target_canister"]) == CANISTER.raw
    assert install["store_canister"] == []
    assert install["mode"] == {"upgrade": []}
    assert [h["hash"] for h in install["chunk_hashes_list"]] == [_sha(c) for c in uploads]
    assert fake.installed == module
    assert fake.chunk_store == {}
    assert {c.effective for c in fake.calls} == {CANISTER.raw}


async def test_chunked_install_reuses_chunks_already_stored(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    module = b"a" * 1000 + b"b" * 1000 + b"c" * 500
    fake.chunk_store[_sha(b"b" * 1000)] = b"b" * 1000
    await mgmt.install_chunked(CANISTER, module, chunk_size=1000)
    uploads = [c.arg["chunk"] for c in fake.calls if c.method == "upload_chunk"]
    assert uploads == [b"a" * 1000, b"c" * 500]
    assert fake.installed == module


async def test_repeated_chunks_of_a_module_are_uploaded_once(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    module = b"same" * 3000
    await mgmt.install_chunked(CANISTER, module, chunk_size=4000)
    assert fake.methods().count("upload_chunk") == 1
    install = next(c for c in fake.calls if c.method == "install_chunked_code")
    assert len(install.arg["chunk_hashes_list"]) == 3
    assert fake.installed == module


async def test_chunked_install_with_a_separate_store_canister(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    store = Principal(bytes.fromhex("00000000000000060101"))
    await mgmt.install_chunked(CANISTER, b"x" * 10, store_canister=store, chunk_size=4)
    by_method = {c.method: c for c in fake.calls}
    assert by_method["upload_chunk"].effective == store.raw
    install = by_method["install_chunked_code"]
    assert install.effective == CANISTER.raw
    assert [mgmt_types.principal_bytes(p) for p in install.arg["store_canister"]] == [store.raw]
    assert by_method["clear_chunk_store"].effective == store.raw


async def test_an_upload_answered_with_the_wrong_hash_is_a_protocol_error(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["upload_chunk"] = lambda _: mgmt_types.encode_result(
        "upload_chunk", {"hash": b"\x00" * 32}
    )
    with pytest.raises(ProtocolError, match="upload_chunk: the IC answered hash"):
        await mgmt.upload_chunk(CANISTER, b"chunk")


async def test_oversized_chunks_are_refused_before_sending(mgmt: ManagementClient) -> None:
    with pytest.raises(ValueError, match="at most 1048576 bytes"):
        await mgmt.upload_chunk(CANISTER, b"x" * (MAX_WASM_CHUNK + 1))


# ---------------------------------------------------------------- lifecycle


async def test_lifecycle_calls_name_the_canister_as_effective_id(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    await mgmt.stop_canister(CANISTER)
    await mgmt.start_canister(CANISTER)
    await mgmt.deposit_cycles(CANISTER)
    await mgmt.uninstall_code(CANISTER)
    await mgmt.delete_canister(CANISTER)
    await mgmt.provisional_top_up_canister(CANISTER, 5)
    assert fake.methods() == [
        "stop_canister",
        "start_canister",
        "deposit_cycles",
        "uninstall_code",
        "delete_canister",
        "provisional_top_up_canister",
    ]
    for call in fake.calls:
        assert call.effective == CANISTER.raw
        assert mgmt_types.principal_bytes(call.arg["canister_id"]) == CANISTER.raw
    assert fake.calls[-1].arg["amount"] == 5


# ---------------------------------------------------------------- snapshots

_METADATA = {
    "source": {"taken_from_canister": None},
    "taken_at_timestamp": 1_700_000_000_000_000_000,
    "wasm_module_size": 1000,
    "globals": [{"i32": -5}, {"i64": 2**40}, {"f32": 1.5}, {"f64": -0.25}, {"v128": 2**100}],
    "wasm_memory_size": 4_500_000,
    "stable_memory_size": 0,
    "wasm_chunk_store": [{"hash": b"\x01" * 32}],
    "canister_version": 9,
    "certified_data": b"certified",
    "global_timer": [{"active": 123}],
    "on_low_wasm_memory_hook_status": [{"ready": None}],
}


async def test_snapshot_metadata_round_trips_into_an_upload(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["read_canister_snapshot_metadata"] = lambda _: mgmt_types.encode_result(
        "read_canister_snapshot_metadata", _METADATA
    )
    fake.overrides["upload_canister_snapshot_metadata"] = lambda _: mgmt_types.encode_result(
        "upload_canister_snapshot_metadata", {"snapshot_id": b"new-id"}
    )
    meta = await mgmt.read_canister_snapshot_metadata(CANISTER, b"snap")
    assert meta.source == "taken_from_canister"
    assert meta.globals == (
        Global("i32", -5),
        Global("i64", 2**40),
        Global("f32", 1.5),
        Global("f64", -0.25),
        Global("v128", 2**100),
    )
    assert meta.global_timer == GlobalTimer(123)
    assert meta.on_low_wasm_memory_hook_status == "ready"
    assert meta.wasm_chunk_store == (b"\x01" * 32,)
    assert meta.size_of("wasm_memory") == 4_500_000

    other = Principal(bytes.fromhex("00000000000000090101"))
    new_id = await mgmt.upload_canister_snapshot_metadata(other, meta.for_upload())
    assert new_id == b"new-id"
    sent = fake.calls[-1].arg
    assert fake.calls[-1].effective == other.raw
    for key in ("globals", "wasm_memory_size", "certified_data", "global_timer"):
        assert sent[key] == _METADATA[key]
    assert sent["on_low_wasm_memory_hook_status"] == _METADATA["on_low_wasm_memory_hook_status"]
    assert sent["replace_snapshot"] == []


async def test_take_list_load_delete_snapshots(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    info = {"id": b"snap-1", "taken_at_timestamp": 5, "total_size": 4096}
    fake.overrides["take_canister_snapshot"] = lambda _: mgmt_types.encode_result(
        "take_canister_snapshot", info
    )
    fake.overrides["list_canister_snapshots"] = lambda _: mgmt_types.encode_result(
        "list_canister_snapshots", [info, {**info, "id": b"snap-2"}]
    )
    snapshot = await mgmt.take_canister_snapshot(CANISTER, replace_snapshot=b"snap-0")
    assert (snapshot.id, snapshot.taken_at_timestamp, snapshot.total_size) == (b"snap-1", 5, 4096)
    assert fake.calls[0].arg["replace_snapshot"] == [b"snap-0"]
    assert [s.id for s in await mgmt.list_canister_snapshots(CANISTER)] == [b"snap-1", b"snap-2"]
    await mgmt.load_canister_snapshot(CANISTER, b"snap-1")
    await mgmt.delete_canister_snapshot(CANISTER, b"snap-2")
    assert fake.calls[2].arg["snapshot_id"] == b"snap-1"
    assert fake.calls[3].arg["snapshot_id"] == b"snap-2"
    assert {c.effective for c in fake.calls} == {CANISTER.raw}


async def test_streaming_a_memory_reads_slices_of_at_most_two_million_bytes(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.memory = bytes(i % 251 for i in range(4_500_000))
    fake.overrides["read_canister_snapshot_metadata"] = lambda _: mgmt_types.encode_result(
        "read_canister_snapshot_metadata", _METADATA
    )
    slices = [s async for s in mgmt.stream_snapshot_memory(CANISTER, b"snap", "wasm_memory")]
    assert [(offset, len(data)) for offset, data in slices] == [
        (0, 2_000_000),
        (2_000_000, 2_000_000),
        (4_000_000, 500_000),
    ]
    assert b"".join(data for _, data in slices) == fake.memory
    reads = [c.arg["kind"] for c in fake.calls if c.method == "read_canister_snapshot_data"]
    assert reads[-1] == {"wasm_memory": {"offset": 4_000_000, "size": 500_000}}


async def test_streaming_resumes_from_an_offset_with_a_known_size(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.memory = b"0123456789"
    whole = await mgmt.read_snapshot_memory(CANISTER, b"snap", "wasm_memory", size=10)
    assert whole == fake.memory
    tail = [
        s
        async for s in mgmt.stream_snapshot_memory(
            CANISTER, b"snap", "wasm_memory", size=10, start=4, slice_size=4
        )
    ]
    assert tail == [(4, b"4567"), (8, b"89")]


async def test_a_short_slice_is_a_protocol_error(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.memory = b"short"
    with pytest.raises(ProtocolError, match="asked for 10 bytes of wasm_memory at 0, got 5"):
        await mgmt.read_canister_snapshot_data(CANISTER, b"s", SnapshotSlice("wasm_memory", 0, 10))


async def test_reading_a_chunk_store_entry(fake: FakeManagement, mgmt: ManagementClient) -> None:
    fake.overrides["read_canister_snapshot_data"] = lambda _: mgmt_types.encode_result(
        "read_canister_snapshot_data", {"chunk": b"chunk bytes"}
    )
    data = await mgmt.read_canister_snapshot_data(CANISTER, b"s", SnapshotWasmChunk(b"\x02" * 32))
    assert data == b"chunk bytes"
    assert fake.calls[0].arg["kind"] == {"wasm_chunk": {"hash": b"\x02" * 32}}


def test_slices_above_the_ic_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="2,000,000"):
        SnapshotSlice("stable_memory", 0, MAX_SNAPSHOT_SLICE + 1)


async def test_uploading_a_memory_in_slices(fake: FakeManagement, mgmt: ManagementClient) -> None:
    data = b"z" * 5_000_000
    await mgmt.upload_snapshot_memory(CANISTER, b"snap", "stable_memory", data)
    sent = [(c.arg["kind"], len(c.arg["chunk"])) for c in fake.calls]
    assert sent == [
        ({"stable_memory": {"offset": 0}}, 2_000_000),
        ({"stable_memory": {"offset": 2_000_000}}, 2_000_000),
        ({"stable_memory": {"offset": 4_000_000}}, 1_000_000),
    ]
    await mgmt.upload_canister_snapshot_data(
        CANISTER, b"snap", UploadTarget("wasm_chunk"), b"chunk"
    )
    assert fake.calls[-1].arg["kind"] == {"wasm_chunk": None}
    with pytest.raises(ValueError, match="at most 2,000,000 bytes"):
        await mgmt.upload_canister_snapshot_data(
            CANISTER, b"snap", UploadTarget("wasm_memory"), b"x" * 2_000_001
        )


async def test_uploaded_metadata_without_timer_or_hook(
    fake: FakeManagement, mgmt: ManagementClient
) -> None:
    fake.overrides["upload_canister_snapshot_metadata"] = lambda _: mgmt_types.encode_result(
        "upload_canister_snapshot_metadata", {"snapshot_id": b"id"}
    )
    upload = SnapshotMetadataUpload(wasm_module_size=1, wasm_memory_size=2, stable_memory_size=3)
    await mgmt.upload_canister_snapshot_metadata(CANISTER, upload, replace_snapshot=b"old")
    sent = fake.calls[0].arg
    assert sent["global_timer"] == []
    assert sent["on_low_wasm_memory_hook_status"] == []
    assert sent["replace_snapshot"] == [b"old"]
    assert sent["globals"] == []
