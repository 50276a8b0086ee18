"""Canister snapshots: take, list, delete, load, and the download / upload round trip."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from icp_candid import Types
from mgmt_util import (
    STRANGER,
    FakeHost,
    assert_reject,
    candid,
    canister_wasm,
    cid_arg,
    nat,
    settings_arg,
    value_of,
)

from localnet import ids
from localnet.errors import ErrorCode
from localnet.limits import Limits
from localnet.sandbox import WasmEngine
from localnet.snapshots import snapshot_id

BLOB = Types.Vec(Types.Nat8)


@pytest.fixture
def host(engine: WasmEngine) -> FakeHost:
    return FakeHost(engine)


def stateful(host: FakeHost, count: int = 2, stored: bytes = b"stable bytes") -> bytes:
    cid = host.create()
    host.install(cid, canister_wasm("mg_state"))
    for _ in range(count):
        host.update(cid, "inc")
    host.update(cid, "add_note", candid((Types.Text, f"note {count}")))
    host.update(cid, "store", candid((BLOB, stored)))
    return cid


def count_of(host: FakeHost, cid: bytes) -> int:
    return int(value_of(host.query(cid, "get"), Types.Nat))


def image_of(host: FakeHost, cid: bytes) -> tuple[Any, ...]:
    canister = host.canisters[cid]
    assert canister.sandbox is not None
    image = canister.sandbox.capture()
    return (canister.module_hash, image.heap, image.stable, image.globals, canister.certified_data)


def take(host: FakeHost, cid: bytes, replace: bytes | None = None, **kw: Any) -> dict[str, Any]:
    value = {
        "canister_id": cid,
        "replace_snapshot": [] if replace is None else [replace],
        "uninstall_code": [],
        "sender_canister_version": [],
    }
    value.update(kw.pop("extra", {}))
    result: dict[str, Any] = host.ok("take_canister_snapshot", value, **kw)
    return result


def load(host: FakeHost, cid: bytes, sid: bytes, **kw: Any) -> None:
    host.ok(
        "load_canister_snapshot",
        {"canister_id": cid, "snapshot_id": sid, "sender_canister_version": []},
        **kw,
    )


def sid_args(cid: bytes, sid: bytes) -> dict[str, Any]:
    return {"canister_id": cid, "snapshot_id": sid}


# --- take / list / load / delete ---------------------------------------------------------


def test_take_and_load_restore_the_canister_exactly(host: FakeHost) -> None:
    cid = stateful(host)
    host.canisters[cid].certified_data = b"certified"
    before = image_of(host, cid)
    info = take(host, cid)
    sid = bytes(info["id"])
    assert sid == snapshot_id(cid, 0)
    assert sid[:8] == bytes(8)  # counter first, then the canister id
    snap = host.canisters[cid].snapshots[sid]
    assert info["total_size"] == snap.total_size > 0
    assert info["taken_at_timestamp"] == snap.taken_at_ns
    host.update(cid, "inc")
    host.update(cid, "store", candid((BLOB, b"changed!!!!!")))
    host.canisters[cid].certified_data = b"other"
    version = host.canisters[cid].canister_version
    load(host, cid, sid)
    assert image_of(host, cid) == before
    assert count_of(host, cid) == 2
    assert value_of(host.query(cid, "load", nat(12)), BLOB) == b"stable bytes"
    canister = host.canisters[cid]
    assert canister.canister_version == version + 1
    change = canister.history[-1]["details"]["load_snapshot"]
    assert change["snapshot_id"] == sid
    assert change["from_canister_id"] == []
    assert change["source"] == {"taken_from_canister": None}


def test_loading_brings_back_the_module_too(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid)["id"])
    upgrade = {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]}
    host.install(cid, canister_wasm("mg_state_v2"), mode=upgrade)
    load(host, cid, sid)
    assert value_of(host.query(cid, "version"), Types.Text) == "v1"
    assert host.canisters[cid].wasm_module == canister_wasm("mg_state")


def test_list_and_delete(host: FakeHost) -> None:
    cid = stateful(host)
    first = bytes(take(host, cid)["id"])
    second = bytes(take(host, cid)["id"])
    listed = host.ok("list_canister_snapshots", cid_arg(cid))
    assert [bytes(s["id"]) for s in listed] == [first, second]
    host.ok("delete_canister_snapshot", sid_args(cid, first))
    listed = host.ok("list_canister_snapshots", cid_arg(cid))
    assert [bytes(s["id"]) for s in listed] == [second]
    reject = host.fails("delete_canister_snapshot", sid_args(cid, first))
    assert_reject(
        reject,
        ErrorCode.CANISTER_SNAPSHOT_NOT_FOUND,
        f"Could not find the snapshot ID {first.hex()}",
    )
    assert reject.code == 3


def test_snapshot_limit_and_replace(engine: WasmEngine) -> None:
    host = FakeHost(engine, limits=Limits(max_snapshots_per_canister=2))
    cid = stateful(host)
    first = bytes(take(host, cid)["id"])
    take(host, cid)
    reject = host.fails(
        "take_canister_snapshot",
        {
            "canister_id": cid,
            "replace_snapshot": [],
            "uninstall_code": [],
            "sender_canister_version": [],
        },
    )
    assert_reject(
        reject, ErrorCode.CANISTER_REJECTED_MESSAGE, "maximum number of snapshots allowed: 2"
    )
    third = bytes(take(host, cid, replace=first)["id"])
    assert sorted(host.canisters[cid].snapshots) == sorted([snapshot_id(cid, 1), third])
    assert third == snapshot_id(cid, 2)


def test_take_with_uninstall_code(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid, extra={"uninstall_code": [True]})["id"])
    canister = host.canisters[cid]
    assert canister.sandbox is None
    assert host.rejected_calls == [(cid, "Canister has been uninstalled.")]
    load(host, cid, sid)
    assert count_of(host, cid) == 2


def test_snapshot_errors(host: FakeHost) -> None:
    cid = stateful(host)
    empty = host.create()
    reject = host.fails(
        "take_canister_snapshot",
        {
            "canister_id": empty,
            "replace_snapshot": [],
            "uninstall_code": [],
            "sender_canister_version": [],
        },
    )
    assert_reject(
        reject, ErrorCode.CANISTER_REJECTED_MESSAGE, "Failed to create snapshot for empty canister"
    )
    reject = host.fails(
        "take_canister_snapshot",
        {
            "canister_id": cid,
            "replace_snapshot": [],
            "uninstall_code": [],
            "sender_canister_version": [],
        },
        caller=STRANGER,
    )
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    sid = bytes(take(host, cid)["id"])
    # A snapshot of another canister cannot be deleted or read through this one.
    other = stateful(host)
    reject = host.fails("delete_canister_snapshot", sid_args(other, sid))
    assert_reject(reject, ErrorCode.CANISTER_REJECTED_MESSAGE, "does not belong to canister")
    reject = host.fails("read_canister_snapshot_metadata", sid_args(cid, b"\x00" * 3))
    assert reject.error_code == ErrorCode.CANISTER_SNAPSHOT_NOT_FOUND
    for method in ("list_canister_snapshots",):
        reject = host.fails(method, cid_arg(cid), caller=STRANGER)
        assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER


def test_loading_another_canisters_snapshot_needs_control_of_both(host: FakeHost) -> None:
    source = stateful(host, count=5)
    sid = bytes(take(host, source)["id"])
    target = host.create()
    load(host, target, sid)
    assert count_of(host, target) == 5
    change = host.canisters[target].history[-1]["details"]["load_snapshot"]
    assert bytes(change["from_canister_id"][0]) == source
    foreign_source = host.create(controllers=[STRANGER])
    host.install(foreign_source, canister_wasm("mg_state"), caller=STRANGER)
    foreign_sid = bytes(take(host, foreign_source, caller=STRANGER)["id"])
    reject = host.fails(
        "load_canister_snapshot",
        {"canister_id": target, "snapshot_id": foreign_sid, "sender_canister_version": []},
    )
    assert_reject(reject, ErrorCode.CANISTER_INVALID_CONTROLLER, "not a controller of the canister")


def test_snapshot_visibility_opens_reads_to_viewers(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid)["id"])
    host.fails("read_canister_snapshot_metadata", sid_args(cid, sid), caller=STRANGER)
    settings = settings_arg(snapshot_visibility={"allowed_viewers": [STRANGER]})
    host.ok(
        "update_settings", {"canister_id": cid, "settings": settings, "sender_canister_version": []}
    )
    host.ok("read_canister_snapshot_metadata", sid_args(cid, sid), caller=STRANGER)
    host.ok("list_canister_snapshots", cid_arg(cid), caller=STRANGER)
    reject = host.fails("delete_canister_snapshot", sid_args(cid, sid), caller=STRANGER)
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER


# --- download and upload -------------------------------------------------------------------


def read_all(host: FakeHost, cid: bytes, sid: bytes, kind: str, size: int, step: int) -> bytes:
    out = bytearray()
    for offset in range(0, size, step):
        n = min(step, size - offset)
        args = {**sid_args(cid, sid), "kind": {kind: {"offset": offset, "size": n}}}
        out += host.ok("read_canister_snapshot_data", args)["chunk"]
    return bytes(out)


def write_all(host: FakeHost, cid: bytes, sid: bytes, kind: str, data: bytes, step: int) -> None:
    for offset in range(0, len(data), step):
        args = {
            **sid_args(cid, sid),
            "kind": {kind: {"offset": offset}},
            "chunk": data[offset : offset + step],
        }
        host.ok("upload_canister_snapshot_data", args)


def test_download_upload_load_round_trip(host: FakeHost) -> None:
    source = stateful(host, count=7, stored=b"round trip!!")
    chunk = b"chunk in the store"
    host.ok("upload_chunk", {"canister_id": source, "chunk": chunk})
    host.canisters[source].certified_data = b"certified"
    expected = image_of(host, source)
    sid = bytes(take(host, source)["id"])
    meta = host.ok("read_canister_snapshot_metadata", sid_args(source, sid))
    assert meta["source"] == {"taken_from_canister": None}
    assert meta["wasm_module_size"] == len(canister_wasm("mg_state"))
    assert meta["wasm_memory_size"] % 65536 == 0
    assert meta["certified_data"] == b"certified"
    assert [bytes(h["hash"]) for h in meta["wasm_chunk_store"]] == [hashlib.sha256(chunk).digest()]
    assert {next(iter(g)) for g in meta["globals"]} <= {"i32", "i64", "f32", "f64", "v128"}
    step = 700_000
    module = read_all(host, source, sid, "wasm_module", meta["wasm_module_size"], step)
    heap = read_all(host, source, sid, "wasm_memory", meta["wasm_memory_size"], step)
    stable = read_all(host, source, sid, "stable_memory", meta["stable_memory_size"], step)
    stored = host.ok(
        "read_canister_snapshot_data",
        {**sid_args(source, sid), "kind": {"wasm_chunk": {"hash": hashlib.sha256(chunk).digest()}}},
    )["chunk"]
    assert module == canister_wasm("mg_state")
    assert stored == chunk

    # Upload it all to a fresh canister and load it there.
    target = host.create()
    host.install(target, canister_wasm("mg_state"))  # the snapshot's globals must fit its module
    uploaded = host.ok(
        "upload_canister_snapshot_metadata",
        {
            "canister_id": target,
            "replace_snapshot": [],
            "wasm_module_size": len(module),
            "globals": meta["globals"],
            "wasm_memory_size": len(heap),
            "stable_memory_size": len(stable),
            "certified_data": meta["certified_data"],
            "global_timer": meta["global_timer"],
            "on_low_wasm_memory_hook_status": meta["on_low_wasm_memory_hook_status"],
        },
    )
    new_sid = bytes(uploaded["snapshot_id"])
    write_all(host, target, new_sid, "wasm_module", module, step)
    write_all(host, target, new_sid, "wasm_memory", heap, step)
    write_all(host, target, new_sid, "stable_memory", stable, step)
    host.ok(
        "upload_canister_snapshot_data",
        {**sid_args(target, new_sid), "kind": {"wasm_chunk": None}, "chunk": chunk},
    )
    load(host, target, new_sid)
    assert image_of(host, target)[1:] == expected[1:]
    assert count_of(host, target) == 7
    assert value_of(host.query(target, "load", nat(12)), BLOB) == b"round trip!!"
    assert host.canisters[target].chunk_store == {hashlib.sha256(chunk).digest(): chunk}
    source_change = host.canisters[target].history[-1]["details"]["load_snapshot"]["source"]
    assert source_change == {"metadata_upload": None}


def test_read_data_checks_slices(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid)["id"])
    size = len(canister_wasm("mg_state"))

    def read(kind: dict[str, Any]) -> Any:
        return host.fails("read_canister_snapshot_data", {**sid_args(cid, sid), "kind": kind})

    assert_reject(
        read({"wasm_module": {"offset": 0, "size": 2_000_001}}),
        ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        "Requested slice too large: 2000001 > 2000000",
    )
    assert_reject(
        read({"wasm_module": {"offset": size - 10, "size": 11}}),
        ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        f"offset: {size - 10}, size: 11",
    )
    assert_reject(
        read({"wasm_chunk": {"hash": bytes(32)}}),
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        "not found",
    )
    assert_reject(
        read({"wasm_chunk": {"hash": b"x"}}),
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        "not a valid WasmChunkHash",
    )


def test_taken_snapshots_are_immutable_and_uploads_are_checked(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid)["id"])
    reject = host.fails(
        "upload_canister_snapshot_data",
        {**sid_args(cid, sid), "kind": {"wasm_module": {"offset": 0}}, "chunk": b"x"},
    )
    assert_reject(
        reject,
        ErrorCode.CANISTER_SNAPSHOT_IMMUTABLE,
        "Only canister snapshots created by metadata upload can be mutated.",
    )
    assert reject.code == 4

    def metadata(**fields: Any) -> dict[str, Any]:
        value: dict[str, Any] = {
            "canister_id": cid,
            "replace_snapshot": [],
            "wasm_module_size": 10,
            "globals": [],
            "wasm_memory_size": 65536,
            "stable_memory_size": 0,
            "certified_data": b"",
            "global_timer": [],
            "on_low_wasm_memory_hook_status": [],
        }
        value.update(fields)
        return value

    for bad, fragment in [
        (metadata(wasm_memory_size=1000), "multiples of the Wasm page size"),
        (metadata(wasm_module_size=0), "must not be 0"),
        (metadata(stable_memory_size=600 * 1024**3), "stable_memory_size"),
    ]:
        reject = host.fails("upload_canister_snapshot_metadata", bad)
        assert_reject(
            reject,
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            "Snapshot Metadata contains invalid data",
            fragment,
        )
    new_sid = bytes(host.ok("upload_canister_snapshot_metadata", metadata())["snapshot_id"])
    reject = host.fails(
        "upload_canister_snapshot_data",
        {**sid_args(cid, new_sid), "kind": {"wasm_memory": {"offset": 65530}}, "chunk": bytes(7)},
    )
    assert_reject(reject, ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "offset: 65530, size: 7")
    # Globals of the wrong shape for the module are refused at load time.
    write_all(host, cid, new_sid, "wasm_module", canister_wasm("mg_state")[:10], 10)
    reject = host.fails(
        "load_canister_snapshot",
        {"canister_id": cid, "snapshot_id": new_sid, "sender_canister_version": []},
    )
    assert reject.error_code in {
        ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        ErrorCode.CANISTER_INVALID_WASM,
    }
    assert count_of(host, cid) == 2  # the failed load changed nothing


def test_uploaded_globals_must_match_the_module(host: FakeHost) -> None:
    cid = stateful(host)
    sid = bytes(take(host, cid)["id"])
    meta = host.ok("read_canister_snapshot_metadata", sid_args(cid, sid))
    module = canister_wasm("mg_state")
    wrong = host.ok(
        "upload_canister_snapshot_metadata",
        {
            "canister_id": cid,
            "replace_snapshot": [],
            "wasm_module_size": len(module),
            "globals": meta["globals"][:-1],
            "wasm_memory_size": meta["wasm_memory_size"],
            "stable_memory_size": 0,
            "certified_data": b"",
            "global_timer": [],
            "on_low_wasm_memory_hook_status": [],
        },
    )
    new_sid = bytes(wrong["snapshot_id"])
    write_all(host, cid, new_sid, "wasm_module", module, 1_000_000)
    reject = host.fails(
        "load_canister_snapshot",
        {"canister_id": cid, "snapshot_id": new_sid, "sender_canister_version": []},
    )
    assert_reject(
        reject,
        ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        "Wasm exported globals of canister module and snapshot metadata do not match.",
    )


def test_snapshots_count_in_memory_and_survive_uninstall_but_not_delete(host: FakeHost) -> None:
    cid = stateful(host)
    take(host, cid)
    status = host.ok("canister_status", cid_arg(cid))
    snaps = host.canisters[cid].snapshots
    assert status["memory_metrics"]["snapshots_size"] == sum(s.total_size for s in snaps.values())
    host.ok("uninstall_code", {"canister_id": cid, "sender_canister_version": []})
    assert len(host.canisters[cid].snapshots) == 1
    host.ok("stop_canister", cid_arg(cid))
    host.ok("delete_canister", cid_arg(cid))
    assert cid not in host.canisters
    assert ids.canister_index(cid) is not None
