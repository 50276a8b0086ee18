"""What the management canister's methods share: the host, one call, rejects, permissions.

``localnet.management`` dispatches a call to ``aaaaa-aa`` to a handler in
``management``, ``mgmt_install`` or ``snapshots``; every handler receives a
:class:`ManagementCall` and its decoded argument, and either returns the
Candid reply or :data:`DEFERRED` (it answers later, e.g. ``stop_canister``).
A handler refuses by raising :class:`~localnet.errors.Reject`; the rejects
below are worded and coded as the replica's (``ic-error-types``,
``CanisterManagerError``), including the help line the IC appends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from localnet import cycles, ids
from localnet.errors import ErrorCode, Reject, reject_code_of
from localnet.execution import ExecResult, RejectResponse, Reply, Response, SystemState
from localnet.limits import Limits
from localnet.sandbox import WasmEngine
from localnet.state import CanisterState, wasm_hash

MiB = 1024 * 1024
CHUNK_SLOT_BYTES = MiB  # the IC charges every chunk store entry as 1 MiB
MAX_HISTORY_CHANGES = 20  # canister_info returns at most this many recent changes
_DOCS = "https://internetcomputer.org/docs/current/references/execution-errors#"


class ManagementHost(Protocol):
    """What the management canister needs from the replica (``localnet.replica``)."""

    engine: WasmEngine
    limits: Limits
    rollback: str  # the sandboxes' rollback strategy ("auto", "dirty", "copy")

    @property
    def canisters(self) -> dict[bytes, CanisterState]:
        """Canisters by id (the replica's ``localnet.canisters.CanisterTable``)."""
        ...

    def now_ns(self) -> int: ...

    def allocate_canister_id(self) -> bytes:
        """A fresh canister id (never one in ``canisters``)."""
        ...

    def system_state(self, canister: CanisterState) -> SystemState: ...

    def apply_effects(self, canister: CanisterState, result: ExecResult) -> None:
        """Charge an execution's instructions; apply its timer, certified data and cycles."""
        ...

    def when_stopped(self, canister: CanisterState, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``canister`` (status STOPPING) has no open call contexts,
        after setting its status to STOPPED; immediately if it has none now."""
        ...

    def take_stop_waiters(self, canister: CanisterState) -> list[Callable[[], None]]:
        """Forget and return the callbacks ``when_stopped`` still holds for ``canister``
        (``start_canister`` cancels them)."""
        ...

    def reject_open_calls(self, canister: CanisterState, reason: str) -> None:
        """Reject every call ``canister`` has not answered and drop its callbacks."""
        ...

    def hosts_canister_id(self, canister_id: bytes) -> bool:
        """Whether ``canister_id`` is in this subnet's canister range."""
        ...

    def random_bytes(self, n: int) -> bytes: ...

    def log(self, canister_id: bytes, line: str) -> None: ...


class _Deferred:
    def __repr__(self) -> str:
        return "DEFERRED"


# A handler's return value meaning "I will call ManagementCall.reply/reject later".
DEFERRED = _Deferred()
Outcome = bytes | _Deferred


@dataclass
class ManagementCall:
    """One call to the management canister, answered exactly once."""

    host: ManagementHost
    caller: bytes
    method: str
    cycles: int  # attached to the call
    via_ingress: bool
    respond: Callable[[Response, int], None]
    sender_canister_version: int | None = None
    kept_cycles: int = 0  # cycles the call consumed (deposited, paid as a fee)
    _answered: bool = field(default=False, repr=False)

    def keep_cycles(self, amount: int) -> None:
        self.kept_cycles += amount

    def reply(self, data: bytes) -> None:
        self._answer(Reply(data), self.cycles - self.kept_cycles)

    def reject(self, reject: Reject) -> None:
        """Answer with ``reject``; attached cycles go back to the caller."""
        response = RejectResponse(int(reject.code), reject.message, reject.error_code or "")
        self._answer(response, self.cycles)

    def _answer(self, response: Response, refund: int) -> None:
        if self._answered:
            raise RuntimeError(f"management call {self.method} answered twice")
        self._answered = True
        self.respond(response, refund)

    def origin(self) -> dict[str, Any]:
        """The ``change_origin`` of canister history entries made by this call."""
        if self.via_ingress:
            return {"from_user": {"user_id": self.caller}}
        version = [] if self.sender_canister_version is None else [self.sender_canister_version]
        return {"from_canister": {"canister_id": self.caller, "canister_version": version}}


# --- rejects ------------------------------------------------------------------------


def fail(error_code: str, message: str) -> Reject:
    """A reject with the reject code that belongs to ``error_code``."""
    return Reject(reject_code_of(error_code), message, error_code)


def help_line(suggestion: str, topic: str) -> str:
    """The help the IC appends to user errors (``ErrorHelp::UserError``)."""
    return f"\n{suggestion} See documentation: {_DOCS}{topic}"


def text(raw: bytes) -> str:
    return ids.to_text(raw)


def canister_or_reject(host: ManagementHost, canister_id: bytes) -> CanisterState:
    canister = host.canisters.get(canister_id)
    if canister is None:
        raise fail(ErrorCode.CANISTER_NOT_FOUND, f"Canister {text(canister_id)} not found.")
    return canister


def require_controller(canister: CanisterState, caller: bytes) -> None:
    """The IC's ``validate_controller`` (``CanisterInvalidController``, IC0512)."""
    if canister.is_controller(caller):
        return
    expected = " ".join(text(c) for c in sorted(canister.controllers))
    raise fail(
        ErrorCode.CANISTER_INVALID_CONTROLLER,
        f"Only the controllers of the canister {text(canister.canister_id)} can control it.\n"
        f"Canister's controllers: {expected}\nSender's ID: {text(caller)}"
        + help_line(
            "Execute this call from a controller of the target canister or add the current "
            "caller as a controller.",
            "invalid-controller",
        ),
    )


def require_controller_or_self(canister: CanisterState, caller: bytes) -> None:
    """Controllers, and the canister itself (status, its own chunk store)."""
    if caller != canister.canister_id:
        require_controller(canister, caller)


def visibility_allows(
    visibility: str, viewers: list[bytes], canister: CanisterState, caller: bytes
) -> bool:
    """``VisibilitySettings::has_access``: controllers always, others per the setting."""
    if canister.is_controller(caller) or visibility == "public":
        return True
    return visibility == "allowed_viewers" and caller in viewers


def require_status_access(canister: CanisterState, caller: bytes) -> None:
    s = canister.settings
    if caller == canister.canister_id:
        return
    if visibility_allows(s.status_visibility, s.status_viewers, canister, caller):
        return
    raise fail(
        ErrorCode.CANISTER_INVALID_CONTROLLER,
        f"Caller {text(caller)} is not allowed to read the status of canister "
        f"{text(canister.canister_id)}: only its controllers and the viewers its "
        "status_visibility setting allows can.",
    )


def require_snapshot_access(canister: CanisterState, caller: bytes, method: str) -> None:
    s = canister.settings
    if visibility_allows(s.snapshot_visibility, s.snapshot_viewers, canister, caller):
        return
    raise fail(
        ErrorCode.CANISTER_INVALID_CONTROLLER,
        f"Caller {text(caller)} is not allowed to call ic00 method {method} on canister "
        f"{text(canister.canister_id)}: only its controllers and the viewers its "
        "snapshot_visibility setting allows can.",
    )


# --- memory and cycles ---------------------------------------------------------------


def history_bytes(canister: CanisterState) -> int:
    """Approximate memory the canister history takes (the IC counts its encoding)."""
    total = 0
    for change in canister.history:
        details = change.get("details", {})
        total += 64 + len(repr(details))
    return total


def memory_usage(canister: CanisterState) -> int:
    """What the IC counts as a canister's memory: heap, stable memory, module,
    chunk store, snapshots and history (``canister_status``'s ``memory_size``)."""
    used = len(canister.wasm_module or b"")
    if canister.sandbox is not None:
        used += canister.sandbox.heap_size + canister.sandbox.stable_size
    used += len(canister.chunk_store) * CHUNK_SLOT_BYTES
    used += sum(s.total_size for s in canister.snapshots.values())
    return used + history_bytes(canister)


def freezing_limit(canister: CanisterState, extra_memory: int = 0) -> int:
    return cycles.freezing_limit(canister.settings, memory_usage(canister) + extra_memory)


def charge(
    canister: CanisterState, call: ManagementCall, amount: int, what: str, extra_memory: int = 0
) -> None:
    """Take ``amount`` cycles from ``canister`` for ``what`` or raise the IC's
    out-of-cycles reject; ``extra_memory`` is memory the operation is about to add."""
    limit = freezing_limit(canister, extra_memory)
    if not cycles.can_withdraw(canister.cycles, amount, limit):
        detail = cycles.out_of_cycles_message(
            text(canister.canister_id),
            available=canister.cycles,
            requested=amount,
            threshold=limit,
            reveal_top_up=canister.is_controller(call.caller),
        )
        raise fail(ErrorCode.CANISTER_OUT_OF_CYCLES, what.format(detail=detail))
    canister.cycles -= amount
    canister.cycles_burned += amount


# --- canister history ------------------------------------------------------------------


def record_change(canister: CanisterState, call: ManagementCall, details: dict[str, Any]) -> None:
    """Append a ``change`` to the canister history (after the version was bumped)."""
    canister.history.append(
        {
            "timestamp_nanos": call.host.now_ns(),
            "canister_version": canister.canister_version,
            "origin": call.origin(),
            "details": details,
        }
    )


def module_hash(wasm: bytes) -> bytes:
    return wasm_hash(wasm)
