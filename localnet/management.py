"""The management canister ``aaaaa-aa``: the replica hands it every call addressed to it.

Entry points for the replica (``localnet.replica``), which implements
:class:`~localnet.mgmt_base.ManagementHost`:

* :func:`check_ingress` when an ingress message to ``aaaaa-aa`` is submitted:
  the IC's ingress filter (``should_accept_ingress_message``) and the
  ingress fee, which the managed canister pays;
* :func:`handle_management_call` when the call executes; it answers through
  ``respond`` exactly once, immediately or later (``stop_canister``);
* :func:`management_query` for ``canister_status`` as a non-replicated query;
* :func:`effective_canister_id` for routing and the HTTP layer's check of the
  URL's effective canister id.

Methods, argument and result types are those of the 2026 ``ic.did`` (see
``localnet.mgmt_types``); rejects carry the replica's reject codes, error
codes and wording. Install and the chunk store live in
``localnet.mgmt_install``, snapshots in ``localnet.snapshots``, settings in
``localnet.mgmt_settings``.

Not emulated: threshold signatures, HTTP outcalls, Bitcoin, canister logs,
subnet admins, the stop timeout (a ``stop_canister`` waits until the canister
stops or is started again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from localnet import cycles, mgmt_install, mgmt_settings, snapshots
from localnet.errors import ErrorCode, Reject
from localnet.execution import RejectResponse, Reply, Response
from localnet.mgmt_base import (
    CHUNK_SLOT_BYTES,
    DEFERRED,
    MAX_HISTORY_CHANGES,
    ManagementCall,
    ManagementHost,
    Outcome,
    canister_or_reject,
    fail,
    freezing_limit,
    help_line,
    history_bytes,
    memory_usage,
    record_change,
    require_controller,
    require_status_access,
    text,
)
from localnet.mgmt_types import (
    EMPTY_REPLY,
    SIGNATURES,
    decode_args,
    encode_result,
    opt,
    principal_bytes,
)
from localnet.state import CanisterState, CanisterStatus, Settings

__all__ = [
    "ManagementHost",
    "check_ingress",
    "effective_canister_id",
    "handle_management_call",
    "management_query",
    "memory_usage",
]

log = logging.getLogger("localnet.management")

Handler = Callable[[ManagementCall, dict[str, Any]], Outcome]

STOP_CANCELLED = "Canister {}'s stop request was cancelled."

# Methods users cannot call with ingress messages: they need a paying canister.
CANISTER_ONLY = frozenset({"create_canister", "canister_info", "deposit_cycles", "raw_rand"})
# Methods open to everyone on localnet (the IC's provisional whitelist is "all" locally).
PROVISIONAL = frozenset({"provisional_create_canister_with_cycles", "provisional_top_up_canister"})
# Reading methods whose access the canister's visibility settings govern.
_STATUS_READS = frozenset({"canister_status"})
_SNAPSHOT_READS = frozenset(
    {"list_canister_snapshots", "read_canister_snapshot_metadata", "read_canister_snapshot_data"}
)


# --- entry points ---------------------------------------------------------------------------


def handle_management_call(
    host: ManagementHost,
    *,
    caller: bytes,
    method: str,
    arg: bytes,
    cycles: int,
    via_ingress: bool,
    respond: Callable[[Response, int], None],
) -> None:
    """Execute one call to ``aaaaa-aa``; ``respond(response, refunded_cycles)`` once."""
    call = ManagementCall(host, caller, method, cycles, via_ingress, respond)
    try:
        outcome = _dispatch(call, arg)
    except Reject as reject:
        call.reject(reject)
        return
    except Exception as exc:  # a localnet bug: answer anyway, the caller must not hang
        log.exception("management method %s failed", method)
        call.reject(
            fail(
                ErrorCode.CANISTER_CONTRACT_VIOLATION, f"localnet failed to execute {method}: {exc}"
            )
        )
        return
    if outcome is not DEFERRED:
        assert isinstance(outcome, bytes)
        call.reply(outcome)


def management_query(host: ManagementHost, *, caller: bytes, method: str, arg: bytes) -> Response:
    """``canister_status`` as a non-replicated query (nothing changes)."""
    if method != "canister_status":
        return RejectResponse(
            5,
            f"Management canister has no query method '{method}'",
            ErrorCode.CANISTER_METHOD_NOT_FOUND,
        )
    try:
        args = decode_args(method, arg)
        return Reply(_status_reply(host, caller, args))
    except Reject as reject:
        return RejectResponse(int(reject.code), reject.message, reject.error_code or "")


def effective_canister_id(method: str, arg: bytes) -> bytes | None:
    """The canister a call to ``aaaaa-aa`` is about, or None (creation, raw_rand, bad input)."""
    if method not in SIGNATURES or SIGNATURES[method][0] is None:
        return None
    try:
        args = decode_args(method, arg)
    except Reject:
        return None
    for name in ("canister_id", "target_canister", "specified_id"):
        if name in args:
            value = args[name]
            if name == "specified_id":
                value = opt(value)
            return None if value is None else principal_bytes(value)
    return None


def check_ingress(host: ManagementHost, *, sender: bytes, method: str, arg: bytes) -> None:
    """The IC's ingress filter for ``aaaaa-aa``; charges the ingress fee to the managed canister.

    Raises :class:`Reject` when the replica must refuse the message at submission.
    """
    if method in PROVISIONAL:
        return
    if method in CANISTER_ONLY or method not in SIGNATURES:
        raise fail(
            ErrorCode.CANISTER_REJECTED_MESSAGE, f"Only canisters can call ic00 method {method}"
        )
    target = effective_canister_id(method, arg)
    if target is None:
        raise fail(
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            f"Failed to decode payload for ic00 method: {method}",
        )
    canister = host.canisters.get(target)
    if canister is None:
        raise fail(ErrorCode.CANISTER_NOT_FOUND, f"Canister {text(target)} not found")
    if not _ingress_allowed(canister, sender, method):
        raise fail(
            ErrorCode.CANISTER_INVALID_CONTROLLER,
            f"Only controllers of canister {text(target)} can call ic00 method {method}",
        )
    fee = cycles.ingress_fee(len(method) + len(arg))
    cycles.check_withdraw(
        text(target),
        balance=canister.cycles,
        amount=fee,
        limit=freezing_limit(canister),
        reveal_top_up=canister.is_controller(sender),
    )
    canister.cycles -= fee
    canister.cycles_burned += fee


def _ingress_allowed(canister: CanisterState, sender: bytes, method: str) -> bool:
    s = canister.settings
    if method in _STATUS_READS:
        return canister.is_controller(sender) or (
            s.status_visibility == "public"
            or (s.status_visibility == "allowed_viewers" and sender in s.status_viewers)
        )
    if method in _SNAPSHOT_READS:
        return canister.is_controller(sender) or (
            s.snapshot_visibility == "public"
            or (s.snapshot_visibility == "allowed_viewers" and sender in s.snapshot_viewers)
        )
    return canister.is_controller(sender)


def _dispatch(call: ManagementCall, arg: bytes) -> Outcome:
    handler = _HANDLERS.get(call.method)
    if handler is None:
        raise fail(
            ErrorCode.CANISTER_METHOD_NOT_FOUND,
            f"Management canister has no method '{call.method}'",
        )
    if call.via_ingress and call.method in CANISTER_ONLY:
        raise fail(
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            f"Only canisters can call ic00 method {call.method}",
        )
    args = decode_args(call.method, arg)
    version = opt(args.get("sender_canister_version", []))
    call.sender_canister_version = version
    return handler(call, args)


# --- creating canisters --------------------------------------------------------------------


def _create(
    call: ManagementCall, balance: int, settings_arg: Any, specified_id: bytes | None = None
) -> CanisterState:
    host = call.host
    if len(host.canisters) >= host.limits.max_canisters:
        raise fail(
            ErrorCode.MAX_NUMBER_OF_CANISTERS_REACHED,
            f"Subnet has reached the allowed canister limit of {host.limits.max_canisters} "
            "canisters. Retry creating the canister."
            + help_line(
                "Try creating the canister on another subnet.",
                "maximum-number-of-canisters-reached",
            ),
        )
    update = mgmt_settings.parse(opt(settings_arg))
    defaults = Settings(controllers=[call.caller])
    mgmt_settings.check_affordable(update, defaults, balance, 0)
    canister_id = specified_id if specified_id is not None else host.allocate_canister_id()
    canister = CanisterState(canister_id=canister_id, settings=defaults, cycles=balance)
    mgmt_settings.apply(canister, update)
    host.canisters[canister_id] = canister
    env = update.environment_variables
    record_change(
        canister,
        call,
        {
            "creation": {
                "controllers": list(canister.controllers),
                "environment_variables_hash": (
                    [] if env is None else [mgmt_settings.environment_hash(env)]
                ),
            }
        },
    )
    return canister


def _create_canister(call: ManagementCall, args: dict[str, Any]) -> bytes:
    fee = cycles.creation_fee()
    if call.cycles < fee:
        raise fail(
            ErrorCode.INSUFFICIENT_CYCLES_FOR_CREATE_CANISTER,
            f"Creating a canister requires a fee of {fee} that is deducted from the canister's "
            f"initial balance but only {call.cycles} cycles were received with the "
            "create_canister request."
            + help_line(
                "Try sending more cycles with the request.", "create-canister-not-enough-cycles"
            ),
        )
    canister = _create(call, call.cycles - fee, args["settings"])
    call.keep_cycles(call.cycles)
    return encode_result("create_canister", {"canister_id": canister.canister_id})


def _provisional_create(call: ManagementCall, args: dict[str, Any]) -> bytes:
    amount = opt(args["amount"])
    balance = cycles.DEFAULT_PROVISIONAL_CYCLES if amount is None else amount
    specified = opt(args["specified_id"])
    specified_id = None if specified is None else _check_specified_id(call, specified)
    canister = _create(call, balance, args["settings"], specified_id)
    return encode_result(
        "provisional_create_canister_with_cycles", {"canister_id": canister.canister_id}
    )


def _check_specified_id(call: ManagementCall, value: Any) -> bytes:
    raw = principal_bytes(value)
    if not call.host.hosts_canister_id(raw):
        raise fail(
            ErrorCode.CANISTER_NOT_HOSTED_BY_SUBNET,
            f"Unsuccessful validation of specified ID: Specified CanisterId {text(raw)} is not "
            "hosted by this subnet: a localnet subnet hosts canister ids of the form "
            "<8-byte index> 0x01 0x01 (e.g. rrkah-fqaaa-aaaaa-aaaaq-cai), subnet i the "
            "indices i·2^20 to (i+1)·2^20 - 1.",
        )
    if raw in call.host.canisters:
        raise fail(
            ErrorCode.CANISTER_ALREADY_INSTALLED, f"Canister {text(raw)} is already installed."
        )
    return raw


def _provisional_top_up(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    canister.cycles += args["amount"]
    return EMPTY_REPLY


def _deposit_cycles(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    canister.cycles += call.cycles
    call.keep_cycles(call.cycles)
    return EMPTY_REPLY


def _raw_rand(call: ManagementCall, args: dict[str, Any]) -> bytes:
    del args
    return encode_result("raw_rand", call.host.random_bytes(32))


# --- settings, status, info ------------------------------------------------------------------


def _update_settings(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    update = mgmt_settings.parse(args["settings"])
    mgmt_settings.validate_for(canister, update)
    mgmt_settings.apply(canister, update)
    canister.canister_version += 1
    if update.controllers is not None:
        record_change(canister, call, {"controllers_change": {"controllers": update.controllers}})
    return EMPTY_REPLY


def _canister_status(call: ManagementCall, args: dict[str, Any]) -> bytes:
    return _status_reply(call.host, call.caller, args)


def _status_reply(host: ManagementHost, caller: bytes, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(host, principal_bytes(args["canister_id"]))
    require_status_access(canister, caller)
    return encode_result("canister_status", status_record(canister))


def status_record(canister: CanisterState) -> dict[str, Any]:
    """The ``canister_status_result`` of ``canister`` (sizes in bytes)."""
    sandbox = canister.sandbox
    heap = sandbox.heap_size if sandbox else 0
    stable = sandbox.stable_size if sandbox else 0
    globals_size = 8 * len(sandbox.global_types()) if sandbox else 0
    metrics = {
        "wasm_memory_size": heap,
        "stable_memory_size": stable,
        "global_memory_size": globals_size,
        "wasm_binary_size": len(canister.wasm_module or b""),
        "custom_sections_size": _custom_sections_size(canister),
        "canister_history_size": history_bytes(canister),
        "wasm_chunk_store_size": len(canister.chunk_store) * CHUNK_SLOT_BYTES,
        "snapshots_size": sum(s.total_size for s in canister.snapshots.values()),
        "log_memory_store_size": 0,
    }
    memory = memory_usage(canister)
    return {
        "status": {canister.status.label: None},
        "ready_for_migration": canister.status == CanisterStatus.STOPPED,
        "version": canister.canister_version,
        "settings": definite_settings(canister.settings),
        "module_hash": [] if canister.module_hash is None else [canister.module_hash],
        "memory_size": memory,
        "memory_metrics": metrics,
        "cycles": canister.cycles,
        "reserved_cycles": 0,
        "idle_cycles_burned_per_day": cycles.idle_cycles_burned_per_day(canister.settings, memory),
        "query_stats": {
            "num_calls_total": 0,
            "num_instructions_total": 0,
            "request_payload_bytes_total": 0,
            "response_payload_bytes_total": 0,
        },
    }


def _custom_sections_size(canister: CanisterState) -> int:
    """Bytes of the module's ``icp:`` metadata sections, which the IC keeps in memory."""
    sandbox = canister.sandbox
    if sandbox is None or canister.wasm_module is None:
        return 0
    info = mgmt_install.module_info(canister.wasm_module)
    return sum(
        len(name) + len(body)
        for name, body in info.custom_sections.items()
        if name.startswith(("icp:public ", "icp:private "))
    )


def definite_settings(s: Settings) -> dict[str, Any]:
    def visibility(kind: str, viewers: list[bytes]) -> dict[str, Any]:
        return {kind: list(viewers) if kind == "allowed_viewers" else None}

    return {
        "controllers": list(s.controllers),
        "compute_allocation": s.compute_allocation,
        "memory_allocation": s.memory_allocation,
        "freezing_threshold": s.freezing_threshold,
        "reserved_cycles_limit": s.reserved_cycles_limit,
        "minimum_incoming_canister_call_cycles": s.minimum_incoming_canister_call_cycles,
        "log_visibility": visibility(s.log_visibility, s.log_viewers),
        "log_memory_limit": s.log_memory_limit,
        "snapshot_visibility": visibility(s.snapshot_visibility, s.snapshot_viewers),
        "status_visibility": visibility(s.status_visibility, s.status_viewers),
        "wasm_memory_limit": s.wasm_memory_limit,
        "wasm_memory_threshold": s.wasm_memory_threshold,
        "environment_variables": [
            {"name": name, "value": value} for name, value in s.environment_variables
        ],
    }


def _canister_info(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    requested = min(opt(args["num_requested_changes"]) or 0, MAX_HISTORY_CHANGES)
    recent = canister.history[-requested:] if requested else []
    return encode_result(
        "canister_info",
        {
            "total_num_changes": len(canister.history),
            "recent_changes": recent,
            "module_hash": [] if canister.module_hash is None else [canister.module_hash],
            "controllers": list(canister.controllers),
        },
    )


# --- start, stop, delete -------------------------------------------------------------------


class _StopWaiter:
    """A pending ``stop_canister``: replies once stopped, or is cancelled by a start."""

    def __init__(self, call: ManagementCall, canister: CanisterState) -> None:
        self.call, self.canister = call, canister
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.call.reply(EMPTY_REPLY)

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            message = STOP_CANCELLED.format(text(self.canister.canister_id))
            self.call.reject(fail(ErrorCode.CANISTER_STOPPING_CANCELLED, message))


def _stop_canister(call: ManagementCall, args: dict[str, Any]) -> Outcome:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    if canister.status == CanisterStatus.STOPPED:
        return EMPTY_REPLY
    canister.status = CanisterStatus.STOPPING
    canister.canister_version += 1
    call.host.when_stopped(canister, _StopWaiter(call, canister))
    return DEFERRED


def _start_canister(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    if canister.status == CanisterStatus.STOPPING:
        for waiter in call.host.take_stop_waiters(canister):
            if isinstance(waiter, _StopWaiter):
                waiter.cancel()
    canister.status = CanisterStatus.RUNNING
    canister.canister_version += 1
    return EMPTY_REPLY


def _delete_canister(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister_id = principal_bytes(args["canister_id"])
    if call.caller == canister_id:
        raise fail(
            ErrorCode.CANISTER_INVALID_CONTROLLER,
            f"Canister {text(canister_id)} cannot delete itself."
            + help_line(
                "Delete the canister from one of its other controllers.", "delete-canister-self"
            ),
        )
    canister = canister_or_reject(call.host, canister_id)
    require_controller(canister, call.caller)
    if canister.status != CanisterStatus.STOPPED:
        raise fail(
            ErrorCode.CANISTER_NOT_STOPPED,
            f"Canister {text(canister_id)} must be stopped before it is deleted."
            + help_line("Stop the canister before deleting it.", "delete-canister-not-stopped"),
        )
    if canister.sandbox is not None:
        canister.sandbox.close()
    # Its cycles, state and snapshots are gone for good.
    del call.host.canisters[canister_id]
    return EMPTY_REPLY


_HANDLERS: dict[str, Handler] = {
    "create_canister": _create_canister,
    "provisional_create_canister_with_cycles": _provisional_create,
    "provisional_top_up_canister": _provisional_top_up,
    "update_settings": _update_settings,
    "canister_status": _canister_status,
    "canister_info": _canister_info,
    "stop_canister": _stop_canister,
    "start_canister": _start_canister,
    "delete_canister": _delete_canister,
    "deposit_cycles": _deposit_cycles,
    "raw_rand": _raw_rand,
    "install_code": mgmt_install.install_code,
    "install_chunked_code": mgmt_install.install_chunked_code,
    "uninstall_code": mgmt_install.uninstall_code,
    "upload_chunk": mgmt_install.upload_chunk,
    "stored_chunks": mgmt_install.stored_chunks,
    "clear_chunk_store": mgmt_install.clear_chunk_store,
    "take_canister_snapshot": snapshots.take_canister_snapshot,
    "load_canister_snapshot": snapshots.load_canister_snapshot,
    "list_canister_snapshots": snapshots.list_canister_snapshots,
    "delete_canister_snapshot": snapshots.delete_canister_snapshot,
    "read_canister_snapshot_metadata": snapshots.read_canister_snapshot_metadata,
    "read_canister_snapshot_data": snapshots.read_canister_snapshot_data,
    "upload_canister_snapshot_metadata": snapshots.upload_canister_snapshot_metadata,
    "upload_canister_snapshot_data": snapshots.upload_canister_snapshot_data,
}
assert set(_HANDLERS) <= set(SIGNATURES), "every handler needs its method in ic_did/ic.did"
