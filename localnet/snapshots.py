"""Canister snapshots: take, load, list, delete, and download / upload them in pieces.

A snapshot holds what restoring a canister needs: the module as installed,
the Wasm heap, stable memory, the mutable globals (with their Wasm types),
certified data, the global timer and a copy of the Wasm chunk store. Ids are
an 8-byte big-endian counter followed by the canister id, as on the IC.

Download (``read_canister_snapshot_metadata`` / ``_data``) and upload
(``upload_canister_snapshot_metadata`` / ``_data``) move a snapshot in slices
of at most ``limits.max_snapshot_read_bytes`` (2,000,000) bytes. An uploaded
snapshot starts as zeroed memories of the declared sizes and can be written
until it is loaded; snapshots taken from a canister are immutable.

Loading replaces module, memories, globals, certified data and chunk store,
atomically. A snapshot of *another* canister can be loaded if the caller
controls both. As on the IC, the global timer is restored only from uploaded
snapshots (restoring it from taken ones would break existing canisters).
"""

from __future__ import annotations

import hashlib
from typing import Any

from localnet import cycles
from localnet.errors import ErrorCode, Reject
from localnet.mgmt_base import (
    CHUNK_SLOT_BYTES,
    ManagementCall,
    canister_or_reject,
    charge,
    fail,
    help_line,
    record_change,
    require_controller,
    require_snapshot_access,
    text,
)
from localnet.mgmt_install import uninstall
from localnet.mgmt_types import EMPTY_REPLY, encode_result, opt, principal_bytes, variant
from localnet.sandbox import CanisterSandbox, InvalidModule
from localnet.state import CanisterState, Snapshot
from localnet.wasm_module import decompress, parse

WASM_PAGE = 65536
_SNAPSHOT_FAILED = "Canister snapshotting failed with: `{detail}`"
# Largest memories an uploaded snapshot may declare (the IC's limits).
_MAX_HEAP_32 = 4 * 1024**3
_MAX_HEAP_64 = 6 * 1024**3
_MAX_STABLE = 500 * 1024**3
_GLOBAL_TYPES = ("i32", "i64", "f32", "f64", "v128")


def snapshot_id(canister_id: bytes, index: int) -> bytes:
    return index.to_bytes(8, "big") + canister_id


def _owner(sid: bytes) -> bytes | None:
    return sid[8:] if len(sid) > 8 else None


def _find(call: ManagementCall, canister: CanisterState, sid: bytes) -> Snapshot:
    """The IC's ``get_snapshot``: the snapshot must exist and belong to ``canister``."""
    owner_id = _owner(sid)
    owner = call.host.canisters.get(owner_id) if owner_id else None
    snapshot = owner.snapshots.get(sid) if owner else None
    if snapshot is None:
        raise fail(
            ErrorCode.CANISTER_SNAPSHOT_NOT_FOUND,
            f"Could not find the snapshot ID {sid.hex()} for canister "
            f"{text(canister.canister_id)}."
            + help_line(
                "Use the `list_canister_snapshot` API to see which snapshots are present.",
                "canister-snapshot-not-found",
            ),
        )
    if owner_id != canister.canister_id:
        raise fail(
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            f"The snapshot {sid.hex()} does not belong to canister "
            f"{text(canister.canister_id)}."
            + help_line(
                "Use the `list_canister_snapshot` API to see which snapshots are present.",
                "canister-snapshot-invalid-ownership",
            ),
        )
    return snapshot


def _replaceable(call: ManagementCall, canister: CanisterState, replace: bytes | None) -> None:
    """Either ``replace`` names one of the canister's snapshots, or there is room for one more."""
    if replace is not None:
        _find(call, canister, replace)
        return
    limit = call.host.limits.max_snapshots_per_canister
    if len(canister.snapshots) >= limit:
        raise fail(
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            f"Canister {text(canister.canister_id)} has reached the maximum number of snapshots "
            f"allowed: {limit}."
            + help_line(
                "Consider deleting an unnecessary snapshot of the specified canister before "
                "creating a new one.",
                "canister-snapshot-limit-exceeded",
            ),
        )


def _new_id(canister: CanisterState) -> bytes:
    sid = snapshot_id(canister.canister_id, canister.next_snapshot_index)
    canister.next_snapshot_index += 1
    return sid


def _info(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "id": snapshot.snapshot_id,
        "taken_at_timestamp": snapshot.taken_at_ns,
        "total_size": snapshot.total_size,
    }


def _instructions_cost(instructions: int) -> int:
    return cycles.execution_fee(instructions)


# --- take / load / list / delete ----------------------------------------------------------


def take_canister_snapshot(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    replace = opt(args["replace_snapshot"])
    _replaceable(call, canister, replace)
    sandbox = canister.sandbox
    if sandbox is None or canister.wasm_module is None:
        raise fail(
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            f"Failed to create snapshot for empty canister {text(canister.canister_id)}: it has "
            "no Wasm module installed.",
        )
    image = sandbox.capture()
    size = len(canister.wasm_module) + len(image.heap) + len(image.stable)
    size += len(canister.chunk_store) * CHUNK_SLOT_BYTES
    replaced = canister.snapshots[replace].total_size if replace is not None else 0
    charge(
        canister,
        call,
        _instructions_cost(cycles.SNAPSHOT_BASELINE_INSTRUCTIONS + size),
        _SNAPSHOT_FAILED,
        extra_memory=max(0, size - replaced),
    )
    if replace is not None:
        del canister.snapshots[replace]
    snapshot = Snapshot(
        snapshot_id=_new_id(canister),
        taken_at_ns=call.host.now_ns(),
        canister_version=canister.canister_version,
        wasm_module=canister.wasm_module,
        heap=image.heap,
        stable=image.stable,
        globals=image.globals,
        global_types=sandbox.global_types(),
        certified_data=canister.certified_data,
        global_timer=canister.global_timer,
        chunk_store=dict(canister.chunk_store),
    )
    canister.snapshots[snapshot.snapshot_id] = snapshot
    if opt(args.get("uninstall_code", [])):
        uninstall(call, canister)
    return encode_result("take_canister_snapshot", _info(snapshot))


def list_canister_snapshots(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_snapshot_access(canister, call.caller, call.method)
    listed = [_info(canister.snapshots[sid]) for sid in sorted(canister.snapshots)]
    return encode_result("list_canister_snapshots", listed)


def delete_canister_snapshot(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    sid: bytes = args["snapshot_id"]
    _find(call, canister, sid)
    del canister.snapshots[sid]
    return EMPTY_REPLY


def load_canister_snapshot(call: ManagementCall, args: dict[str, Any]) -> bytes:
    host = call.host
    canister = canister_or_reject(host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    sid: bytes = args["snapshot_id"]
    snapshot = _loadable(call, canister, sid)
    charge(
        canister,
        call,
        _instructions_cost(cycles.SNAPSHOT_BASELINE_INSTRUCTIONS + snapshot.total_size),
        _SNAPSHOT_FAILED,
    )
    sandbox = _instantiate(call, canister, snapshot)
    old = canister.sandbox
    canister.sandbox = sandbox
    if old is not None:
        old.close()
    canister.wasm_module = host.engine.intern(snapshot.wasm_module)
    canister.chunk_store = dict(snapshot.chunk_store)
    canister.certified_data = snapshot.certified_data
    if snapshot.source == "metadata_upload":
        canister.global_timer = snapshot.global_timer
    canister.canister_version += 1
    owner = _owner(sid)
    record_change(
        canister,
        call,
        {
            "load_snapshot": {
                "from_canister_id": [] if owner == canister.canister_id else [owner],
                "snapshot_id": sid,
                "canister_version": snapshot.canister_version,
                "taken_at_timestamp": snapshot.taken_at_ns,
                "source": {snapshot.source: None},
            }
        },
    )
    return EMPTY_REPLY


def _loadable(call: ManagementCall, canister: CanisterState, sid: bytes) -> Snapshot:
    """The snapshot to load: the canister's own, or one of a canister the caller controls."""
    owner_id = _owner(sid)
    if owner_id is None or owner_id == canister.canister_id:
        return _find(call, canister, sid)
    owner = call.host.canisters.get(owner_id)
    snapshot = owner.snapshots.get(sid) if owner else None
    if owner is None or snapshot is None:
        return _find(call, canister, sid)  # raises "not found" worded for the target
    if not owner.is_controller(call.caller):
        raise fail(
            ErrorCode.CANISTER_INVALID_CONTROLLER,
            f"Caller {text(call.caller)} cannot load snapshot {sid.hex()} onto canister "
            f"{text(canister.canister_id)}: it is not a controller of the canister "
            f"{text(owner_id)} that owns the snapshot.",
        )
    return snapshot


def _instantiate(
    call: ManagementCall, canister: CanisterState, snapshot: Snapshot
) -> CanisterSandbox:
    """A sandbox holding the snapshot's module, memories and globals."""
    module = bytes(snapshot.wasm_module)
    if snapshot.source == "metadata_upload":
        _check_globals_match(canister, snapshot, module)
    try:
        return CanisterSandbox.load(
            call.host.engine,
            module,
            heap=bytes(snapshot.heap),
            stable=bytes(snapshot.stable),
            globals=list(snapshot.globals),
            rollback=call.host.rollback,
        )
    except InvalidModule as exc:
        raise fail(
            ErrorCode.CANISTER_INVALID_WASM,
            f"Error from Canister {text(canister.canister_id)}: Canister's Wasm module is not "
            f"valid: {exc}.",
        ) from exc


def _check_globals_match(canister: CanisterState, snapshot: Snapshot, module: bytes) -> None:
    try:
        wanted = [g.valtype for g in parse(decompress(module)).mutable_globals]
    except InvalidModule as exc:
        raise fail(
            ErrorCode.CANISTER_INVALID_WASM,
            f"Error from Canister {text(canister.canister_id)}: Canister's Wasm module is not "
            f"valid: {exc}.",
        ) from exc
    if wanted != list(snapshot.global_types):
        raise fail(
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            "Wasm exported globals of canister module and snapshot metadata do not match.",
        )


# --- download -------------------------------------------------------------------------------


def read_canister_snapshot_metadata(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_snapshot_access(canister, call.caller, call.method)
    s = _find(call, canister, args["snapshot_id"])
    timer = {"active": s.global_timer} if s.global_timer else {"inactive": None}
    return encode_result(
        "read_canister_snapshot_metadata",
        {
            "source": {s.source: None},
            "taken_at_timestamp": s.taken_at_ns,
            "wasm_module_size": len(s.wasm_module),
            "globals": [{t: v} for t, v in zip(_types_of(s), s.globals, strict=True)],
            "wasm_memory_size": len(s.heap),
            "stable_memory_size": len(s.stable),
            "wasm_chunk_store": [{"hash": h} for h in sorted(s.chunk_store)],
            "canister_version": s.canister_version,
            "certified_data": s.certified_data,
            "global_timer": [timer],
            "on_low_wasm_memory_hook_status": [{s.on_low_wasm_memory_hook_status: None}],
        },
    )


def _types_of(snapshot: Snapshot) -> list[str]:
    if snapshot.global_types:
        return list(snapshot.global_types)
    # Snapshots saved before types were recorded: ask the module.
    return [g.valtype for g in parse(decompress(bytes(snapshot.wasm_module))).mutable_globals]


def read_canister_snapshot_data(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_snapshot_access(canister, call.caller, call.method)
    snapshot = _find(call, canister, args["snapshot_id"])
    kind, spec = variant(args["kind"])
    limit = call.host.limits.max_snapshot_read_bytes
    size = CHUNK_SLOT_BYTES if kind == "wasm_chunk" else spec["size"]
    if kind != "wasm_chunk" and size > limit:
        raise fail(
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD, f"Requested slice too large: {size} > {limit}"
        )
    charge(
        canister,
        call,
        _instructions_cost(cycles.SNAPSHOT_DATA_BASELINE_INSTRUCTIONS + size),
        _SNAPSHOT_FAILED,
    )
    if kind == "wasm_chunk":
        chunk = _chunk_of(snapshot, spec["hash"])
    else:
        source = {
            "wasm_module": snapshot.wasm_module,
            "wasm_memory": snapshot.heap,
            "stable_memory": snapshot.stable,
        }[kind]
        chunk = _slice(source, spec["offset"], size)
    return encode_result("read_canister_snapshot_data", {"chunk": chunk})


def _slice(source: bytes | bytearray, offset: int, size: int) -> bytes:
    if offset + size > len(source):
        raise _invalid_slice(offset, size)
    return bytes(source[offset : offset + size])


def _invalid_slice(offset: int, size: int) -> Reject:
    return fail(
        ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        "Invalid subslice into wasm module / main memory / stable memory: offset: "
        f"{offset}, size: {size}",
    )


def _chunk_of(snapshot: Snapshot, digest: bytes) -> bytes:
    if len(digest) != 32:
        raise _chunk_error(f"Bytes {list(digest)} are not a valid WasmChunkHash.")
    chunk = snapshot.chunk_store.get(digest)
    if chunk is None:
        raise _chunk_error(f"WasmChunkHash {digest.hex()} not found.")
    return chunk


def _chunk_error(message: str) -> Reject:
    return fail(ErrorCode.CANISTER_CONTRACT_VIOLATION, f"Error from Wasm chunk store: {message}.")


# --- upload ---------------------------------------------------------------------------------


def upload_canister_snapshot_metadata(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    types, values = _uploaded_globals(args["globals"])
    heap_size, stable_size = args["wasm_memory_size"], args["stable_memory_size"]
    _check_metadata(canister, args["wasm_module_size"], heap_size, stable_size)
    replace = opt(args["replace_snapshot"])
    _replaceable(call, canister, replace)
    size = args["wasm_module_size"] + heap_size + stable_size
    replaced = canister.snapshots[replace].total_size if replace is not None else 0
    charge(
        canister,
        call,
        _instructions_cost(cycles.SNAPSHOT_BASELINE_INSTRUCTIONS + size),
        _SNAPSHOT_FAILED,
        extra_memory=max(0, size - replaced),
    )
    if replace is not None:
        del canister.snapshots[replace]
    timer_tag, timer_value = variant(opt(args["global_timer"]) or {"inactive": None})
    hook = opt(args["on_low_wasm_memory_hook_status"])
    snapshot = Snapshot(
        snapshot_id=_new_id(canister),
        taken_at_ns=call.host.now_ns(),
        canister_version=canister.canister_version,
        # Mutable until loaded: slices are written in place.
        wasm_module=bytearray(args["wasm_module_size"]),
        heap=bytearray(heap_size),
        stable=bytearray(stable_size),
        globals=values,
        global_types=types,
        certified_data=args["certified_data"],
        global_timer=timer_value if timer_tag == "active" else 0,
        on_low_wasm_memory_hook_status=(
            variant(hook)[0] if hook is not None else "condition_not_satisfied"
        ),
        source="metadata_upload",
    )
    canister.snapshots[snapshot.snapshot_id] = snapshot
    return encode_result("upload_canister_snapshot_metadata", {"snapshot_id": snapshot.snapshot_id})


def _uploaded_globals(raw: list[dict[str, Any]]) -> tuple[list[str], list[int | float]]:
    types, values = [], []
    for entry in raw:
        tag, value = variant(entry)
        types.append(tag)
        values.append(value)
    return types, values


def _check_metadata(canister: CanisterState, module_size: int, heap: int, stable: int) -> None:
    """``ValidatedSnapshotMetadata::validate``: page-aligned memories within the limits."""
    is64 = canister.sandbox is not None and _is_wasm64(canister)
    max_heap = _MAX_HEAP_64 if is64 else _MAX_HEAP_32
    problem = None
    if module_size == 0:
        problem = "the Wasm module size must not be 0"
    elif heap % WASM_PAGE or stable % WASM_PAGE:
        problem = f"memory sizes must be multiples of the Wasm page size {WASM_PAGE}"
    elif heap > max_heap:
        problem = f"wasm_memory_size {heap} exceeds the maximum of {max_heap}"
    elif stable > _MAX_STABLE:
        problem = f"stable_memory_size {stable} exceeds the maximum of {_MAX_STABLE}"
    if problem is not None:
        raise fail(
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            f"Snapshot Metadata contains invalid data: {problem}",
        )


def _is_wasm64(canister: CanisterState) -> bool:
    assert canister.wasm_module is not None
    return parse(decompress(canister.wasm_module)).memory64


def upload_canister_snapshot_data(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    snapshot = _find(call, canister, args["snapshot_id"])
    if snapshot.source != "metadata_upload":
        raise fail(
            ErrorCode.CANISTER_SNAPSHOT_IMMUTABLE,
            "Only canister snapshots created by metadata upload can be mutated.",
        )
    kind, spec = variant(args["kind"])
    chunk: bytes = args["chunk"]
    charge(canister, call, _instructions_cost(len(chunk)), _SNAPSHOT_FAILED)
    if kind == "wasm_chunk":
        _add_chunk(call, snapshot, chunk)
        return EMPTY_REPLY
    field = {"wasm_module": "wasm_module", "wasm_memory": "heap", "stable_memory": "stable"}[kind]
    target = getattr(snapshot, field)
    offset = spec["offset"]
    if offset + len(chunk) > len(target):
        raise _invalid_slice(offset, len(chunk))
    if not isinstance(target, bytearray):  # persisted and reloaded as bytes
        target = bytearray(target)
        setattr(snapshot, field, target)
    target[offset : offset + len(chunk)] = chunk
    return EMPTY_REPLY


def _add_chunk(call: ManagementCall, snapshot: Snapshot, chunk: bytes) -> None:
    limits = call.host.limits
    digest = hashlib.sha256(chunk).digest()
    if digest in snapshot.chunk_store:
        return
    if len(chunk) > limits.wasm_chunk_bytes:
        raise _chunk_error(
            f"Wasm chunk size {len(chunk)} exceeds the maximum chunk size of "
            f"{limits.wasm_chunk_bytes}"
        )
    if len(snapshot.chunk_store) >= limits.max_chunks_in_store:
        raise _chunk_error(
            f"the maximum number of entries, {limits.max_chunks_in_store}, has been reached"
        )
    snapshot.chunk_store[digest] = bytes(chunk)
