"""Candid types of the management canister (``aaaaa-aa``), from the 2026 ``ic.did``.

Only the methods localnet implements are described. Arguments are decoded
against these types, so records come back keyed by field name, ``opt``
values as ``[]`` or ``[value]``, variants as one-entry dicts and principals
as ``icp_principal.Principal`` (use :func:`principal_bytes`). Fields a client
leaves out of an ``opt`` are ``[]``; fields a client adds are skipped, so
clients built against older or newer ``ic.did`` versions both work.
"""

from __future__ import annotations

from typing import Any

from icp_candid import Types, decode, encode

from localnet.errors import ErrorCode, Reject, RejectCode

Blob = Types.Vec(Types.Nat8)
CanisterId = Types.Principal
SnapshotId = Blob

_VISIBILITY = Types.Variant(
    {"controllers": Types.Null, "public": Types.Null, "allowed_viewers": Types.Vec(CanisterId)}
)
LogVisibility = _VISIBILITY
SnapshotVisibility = _VISIBILITY
StatusVisibility = _VISIBILITY

EnvironmentVariable = Types.Record({"name": Types.Text, "value": Types.Text})

CanisterSettings = Types.Record(
    {
        "controllers": Types.Opt(Types.Vec(Types.Principal)),
        "compute_allocation": Types.Opt(Types.Nat),
        "memory_allocation": Types.Opt(Types.Nat),
        "freezing_threshold": Types.Opt(Types.Nat),
        "reserved_cycles_limit": Types.Opt(Types.Nat),
        "minimum_incoming_canister_call_cycles": Types.Opt(Types.Nat),
        "log_visibility": Types.Opt(LogVisibility),
        "log_memory_limit": Types.Opt(Types.Nat),
        "snapshot_visibility": Types.Opt(SnapshotVisibility),
        "status_visibility": Types.Opt(StatusVisibility),
        "wasm_memory_limit": Types.Opt(Types.Nat),
        "wasm_memory_threshold": Types.Opt(Types.Nat),
        "environment_variables": Types.Opt(Types.Vec(EnvironmentVariable)),
    }
)

DefiniteCanisterSettings = Types.Record(
    {
        "controllers": Types.Vec(Types.Principal),
        "compute_allocation": Types.Nat,
        "memory_allocation": Types.Nat,
        "freezing_threshold": Types.Nat,
        "reserved_cycles_limit": Types.Nat,
        "minimum_incoming_canister_call_cycles": Types.Nat,
        "log_visibility": LogVisibility,
        "log_memory_limit": Types.Nat,
        "snapshot_visibility": SnapshotVisibility,
        "status_visibility": StatusVisibility,
        "wasm_memory_limit": Types.Nat,
        "wasm_memory_threshold": Types.Nat,
        "environment_variables": Types.Vec(EnvironmentVariable),
    }
)

SnapshotSource = Types.Variant(
    {"taken_from_canister": Types.Reserved, "metadata_upload": Types.Reserved}
)

ChangeOrigin = Types.Variant(
    {
        "from_user": Types.Record({"user_id": Types.Principal}),
        "from_canister": Types.Record(
            {"canister_id": CanisterId, "canister_version": Types.Opt(Types.Nat64)}
        ),
    }
)

ChangeDetails = Types.Variant(
    {
        "creation": Types.Record(
            {
                "controllers": Types.Vec(Types.Principal),
                "environment_variables_hash": Types.Opt(Blob),
            }
        ),
        "code_uninstall": Types.Null,
        "code_deployment": Types.Record(
            {
                "mode": Types.Variant(
                    {"install": Types.Null, "reinstall": Types.Null, "upgrade": Types.Null}
                ),
                "module_hash": Blob,
            }
        ),
        "load_snapshot": Types.Record(
            {
                "from_canister_id": Types.Opt(Types.Principal),
                "snapshot_id": SnapshotId,
                "canister_version": Types.Nat64,
                "taken_at_timestamp": Types.Nat64,
                "source": SnapshotSource,
            }
        ),
        "controllers_change": Types.Record({"controllers": Types.Vec(Types.Principal)}),
    }
)

Change = Types.Record(
    {
        "timestamp_nanos": Types.Nat64,
        "canister_version": Types.Nat64,
        "origin": ChangeOrigin,
        "details": ChangeDetails,
    }
)

ChunkHash = Types.Record({"hash": Blob})

CanisterInstallMode = Types.Variant(
    {
        "install": Types.Null,
        "reinstall": Types.Null,
        "upgrade": Types.Opt(
            Types.Record(
                {
                    "skip_pre_upgrade": Types.Opt(Types.Bool),
                    "wasm_memory_persistence": Types.Opt(
                        Types.Variant({"keep": Types.Null, "replace": Types.Null})
                    ),
                }
            )
        ),
    }
)

CanisterIdRecord = Types.Record({"canister_id": CanisterId})

CreateCanisterArgs = Types.Record(
    {"settings": Types.Opt(CanisterSettings), "sender_canister_version": Types.Opt(Types.Nat64)}
)
CreateCanisterResult = Types.Record({"canister_id": CanisterId})

UpdateSettingsArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "settings": CanisterSettings,
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)

UploadChunkArgs = Types.Record({"canister_id": CanisterId, "chunk": Blob})

InstallCodeArgs = Types.Record(
    {
        "mode": CanisterInstallMode,
        "canister_id": CanisterId,
        "wasm_module": Blob,
        "arg": Blob,
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)

InstallChunkedCodeArgs = Types.Record(
    {
        "mode": CanisterInstallMode,
        "target_canister": CanisterId,
        "store_canister": Types.Opt(CanisterId),
        "chunk_hashes_list": Types.Vec(ChunkHash),
        "wasm_module_hash": Blob,
        "arg": Blob,
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)

UninstallCodeArgs = Types.Record(
    {"canister_id": CanisterId, "sender_canister_version": Types.Opt(Types.Nat64)}
)

MemoryMetrics = Types.Record(
    {
        "wasm_memory_size": Types.Nat,
        "stable_memory_size": Types.Nat,
        "global_memory_size": Types.Nat,
        "wasm_binary_size": Types.Nat,
        "custom_sections_size": Types.Nat,
        "canister_history_size": Types.Nat,
        "wasm_chunk_store_size": Types.Nat,
        "snapshots_size": Types.Nat,
        "log_memory_store_size": Types.Nat,
    }
)

QueryStats = Types.Record(
    {
        "num_calls_total": Types.Nat,
        "num_instructions_total": Types.Nat,
        "request_payload_bytes_total": Types.Nat,
        "response_payload_bytes_total": Types.Nat,
    }
)

CanisterStatusResult = Types.Record(
    {
        "status": Types.Variant(
            {"running": Types.Null, "stopping": Types.Null, "stopped": Types.Null}
        ),
        "ready_for_migration": Types.Bool,
        "version": Types.Nat64,
        "settings": DefiniteCanisterSettings,
        "module_hash": Types.Opt(Blob),
        "memory_size": Types.Nat,
        "memory_metrics": MemoryMetrics,
        "cycles": Types.Nat,
        "reserved_cycles": Types.Nat,
        "idle_cycles_burned_per_day": Types.Nat,
        "query_stats": QueryStats,
    }
)

CanisterInfoArgs = Types.Record(
    {"canister_id": CanisterId, "num_requested_changes": Types.Opt(Types.Nat64)}
)
CanisterInfoResult = Types.Record(
    {
        "total_num_changes": Types.Nat64,
        "recent_changes": Types.Vec(Change),
        "module_hash": Types.Opt(Blob),
        "controllers": Types.Vec(Types.Principal),
    }
)

ProvisionalCreateArgs = Types.Record(
    {
        "amount": Types.Opt(Types.Nat),
        "settings": Types.Opt(CanisterSettings),
        "specified_id": Types.Opt(CanisterId),
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)
ProvisionalTopUpArgs = Types.Record({"canister_id": CanisterId, "amount": Types.Nat})

SnapshotInfo = Types.Record(
    {"id": SnapshotId, "taken_at_timestamp": Types.Nat64, "total_size": Types.Nat64}
)

TakeSnapshotArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "replace_snapshot": Types.Opt(SnapshotId),
        "uninstall_code": Types.Opt(Types.Bool),
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)
LoadSnapshotArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "snapshot_id": SnapshotId,
        "sender_canister_version": Types.Opt(Types.Nat64),
    }
)
SnapshotIdArgs = Types.Record({"canister_id": CanisterId, "snapshot_id": SnapshotId})

Global = Types.Variant(
    {
        "i32": Types.Int32,
        "i64": Types.Int64,
        "f32": Types.Float32,
        "f64": Types.Float64,
        "v128": Types.Nat,
    }
)
GlobalTimer = Types.Variant({"inactive": Types.Null, "active": Types.Nat64})
HookStatus = Types.Variant(
    {"condition_not_satisfied": Types.Null, "ready": Types.Null, "executed": Types.Null}
)

ReadSnapshotMetadataResult = Types.Record(
    {
        "source": SnapshotSource,
        "taken_at_timestamp": Types.Nat64,
        "wasm_module_size": Types.Nat64,
        "globals": Types.Vec(Global),
        "wasm_memory_size": Types.Nat64,
        "stable_memory_size": Types.Nat64,
        "wasm_chunk_store": Types.Vec(ChunkHash),
        "canister_version": Types.Nat64,
        "certified_data": Blob,
        "global_timer": Types.Opt(GlobalTimer),
        "on_low_wasm_memory_hook_status": Types.Opt(HookStatus),
    }
)

_SLICE = Types.Record({"offset": Types.Nat64, "size": Types.Nat64})
ReadSnapshotDataArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "snapshot_id": SnapshotId,
        "kind": Types.Variant(
            {
                "wasm_module": _SLICE,
                "wasm_memory": _SLICE,
                "stable_memory": _SLICE,
                "wasm_chunk": Types.Record({"hash": Blob}),
            }
        ),
    }
)
ChunkResult = Types.Record({"chunk": Blob})

UploadSnapshotMetadataArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "replace_snapshot": Types.Opt(SnapshotId),
        "wasm_module_size": Types.Nat64,
        "globals": Types.Vec(Global),
        "wasm_memory_size": Types.Nat64,
        "stable_memory_size": Types.Nat64,
        "certified_data": Blob,
        "global_timer": Types.Opt(GlobalTimer),
        "on_low_wasm_memory_hook_status": Types.Opt(HookStatus),
    }
)
UploadSnapshotMetadataResult = Types.Record({"snapshot_id": SnapshotId})

_OFFSET = Types.Record({"offset": Types.Nat64})
UploadSnapshotDataArgs = Types.Record(
    {
        "canister_id": CanisterId,
        "snapshot_id": SnapshotId,
        "kind": Types.Variant(
            {
                "wasm_module": _OFFSET,
                "wasm_memory": _OFFSET,
                "stable_memory": _OFFSET,
                "wasm_chunk": Types.Null,
            }
        ),
        "chunk": Blob,
    }
)

# method -> (argument type or None for `()`, result type or None for `()`)
SIGNATURES: dict[str, tuple[Any, Any]] = {
    "create_canister": (CreateCanisterArgs, CreateCanisterResult),
    "update_settings": (UpdateSettingsArgs, None),
    "upload_chunk": (UploadChunkArgs, ChunkHash),
    "clear_chunk_store": (CanisterIdRecord, None),
    "stored_chunks": (CanisterIdRecord, Types.Vec(ChunkHash)),
    "install_code": (InstallCodeArgs, None),
    "install_chunked_code": (InstallChunkedCodeArgs, None),
    "uninstall_code": (UninstallCodeArgs, None),
    "start_canister": (CanisterIdRecord, None),
    "stop_canister": (CanisterIdRecord, None),
    "canister_status": (CanisterIdRecord, CanisterStatusResult),
    "canister_info": (CanisterInfoArgs, CanisterInfoResult),
    "delete_canister": (CanisterIdRecord, None),
    "deposit_cycles": (CanisterIdRecord, None),
    "raw_rand": (None, Blob),
    "provisional_create_canister_with_cycles": (ProvisionalCreateArgs, CreateCanisterResult),
    "provisional_top_up_canister": (ProvisionalTopUpArgs, None),
    "take_canister_snapshot": (TakeSnapshotArgs, SnapshotInfo),
    "load_canister_snapshot": (LoadSnapshotArgs, None),
    "list_canister_snapshots": (CanisterIdRecord, Types.Vec(SnapshotInfo)),
    "delete_canister_snapshot": (SnapshotIdArgs, None),
    "read_canister_snapshot_metadata": (SnapshotIdArgs, ReadSnapshotMetadataResult),
    "read_canister_snapshot_data": (ReadSnapshotDataArgs, ChunkResult),
    "upload_canister_snapshot_metadata": (
        UploadSnapshotMetadataArgs,
        UploadSnapshotMetadataResult,
    ),
    "upload_canister_snapshot_data": (UploadSnapshotDataArgs, None),
}

EMPTY_REPLY: bytes = encode([])


def decode_args(method: str, data: bytes) -> dict[str, Any]:
    """Decode the argument of ``method``; raises the IC's invalid-payload reject.

    Methods that take ``()`` return ``{}`` (any well-formed Candid is accepted).
    """
    arg_type = SIGNATURES[method][0]
    try:
        if arg_type is None:
            decode(data)
            return {}
        value = decode(data, [arg_type])[0]["value"]
    except Exception as exc:  # icp_candid raises assorted types for malformed input
        raise Reject(
            RejectCode.CANISTER_REJECT,
            f"Error decoding candid: {exc}",
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        ) from exc
    if not isinstance(value, dict):
        raise Reject(
            RejectCode.CANISTER_REJECT,
            f"Error decoding candid: the argument of {method} must be a record",
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        )
    return value


def encode_result(method: str, value: Any) -> bytes:
    """Encode the reply of ``method`` (``value`` is ignored for ``()`` results)."""
    result_type = SIGNATURES[method][1]
    if result_type is None:
        return EMPTY_REPLY
    data: bytes = encode([{"type": result_type, "value": value}])
    return data


def principal_bytes(value: Any) -> bytes:
    """Raw bytes of a decoded principal (``Principal`` object, bytes or text)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raw = getattr(value, "bytes", None)
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    raise TypeError(f"not a principal: {value!r}")


def opt(value: list[Any]) -> Any | None:
    """The content of a decoded ``opt`` (``[]`` -> None, ``[x]`` -> x)."""
    return value[0] if value else None


def variant(value: dict[str, Any]) -> tuple[str, Any]:
    """``(tag, payload)`` of a decoded variant."""
    ((tag, payload),) = value.items()
    return tag, payload
