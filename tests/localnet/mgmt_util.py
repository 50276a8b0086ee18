"""A small ManagementHost for the management canister tests, and call helpers.

The fake host runs canister executions directly on their sandboxes (no
queue, no routing): a test calls the management canister with :meth:`call`
and a canister method with :meth:`update` / :meth:`query`. Open call contexts
are simulated with :meth:`open_context` / :meth:`close_context` so that stop
semantics can be checked without the replica's timing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icp_candid import Types, decode, encode

from localnet import cycles, ids
from localnet.errors import RejectCode
from localnet.execution import (
    EntryKind,
    ExecResult,
    MessageContext,
    RejectResponse,
    Reply,
    Response,
    SystemState,
)
from localnet.limits import Limits
from localnet.management import handle_management_call
from localnet.mgmt_types import SIGNATURES
from localnet.sandbox import WasmEngine
from localnet.state import CanisterState, CanisterStatus

WASM_DIR = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
CONTROLLER = bytes(range(1, 30))  # a self-authenticating-looking user
STRANGER = b"\x05" * 29
T0 = 1_700_000_000_000_000_000


def canister_wasm(name: str) -> bytes:
    return (WASM_DIR / f"{name}.wasm").read_bytes()


@dataclass
class Answer:
    response: Response
    refund: int

    @property
    def ok(self) -> bool:
        return isinstance(self.response, Reply)

    def reply(self) -> bytes:
        assert isinstance(self.response, Reply), self.response
        return self.response.data

    def reject(self) -> RejectResponse:
        assert isinstance(self.response, RejectResponse), self.response
        return self.response


@dataclass
class FakeHost:
    engine: WasmEngine
    limits: Limits = field(default_factory=Limits)
    rollback: str = "copy"
    canisters: dict[bytes, CanisterState] = field(default_factory=dict)
    time_ns: int = T0
    logs: list[tuple[bytes, str]] = field(default_factory=list)
    rejected_calls: list[tuple[bytes, str]] = field(default_factory=list)
    _next_index: itertools.count[int] = field(default_factory=lambda: itertools.count(0))
    _stop_waiters: dict[bytes, list[Callable[[], None]]] = field(default_factory=dict)

    # --- ManagementHost ---------------------------------------------------------------

    def now_ns(self) -> int:
        self.time_ns += 1_000
        return self.time_ns

    def allocate_canister_id(self) -> bytes:
        while (cid := ids.canister_id(next(self._next_index))) in self.canisters:
            pass
        return cid

    def system_state(self, canister: CanisterState) -> SystemState:
        return SystemState(
            canister_id=canister.canister_id,
            controllers=list(canister.controllers),
            cycles_balance=canister.cycles,
            status=int(canister.status),
            time_ns=self.time_ns,
            canister_version=canister.canister_version,
            certified_data=canister.certified_data,
        )

    def apply_effects(self, canister: CanisterState, result: ExecResult) -> None:
        canister.cycles -= min(canister.cycles, cycles.execution_fee(result.instructions))
        if result.trapped:
            return
        if result.global_timer is not None:
            canister.global_timer = result.global_timer
        if result.certified_data is not None:
            canister.certified_data = result.certified_data

    def when_stopped(self, canister: CanisterState, callback: Callable[[], None]) -> None:
        if canister.open_call_contexts == 0:
            canister.status = CanisterStatus.STOPPED
            callback()
        else:
            self._stop_waiters.setdefault(canister.canister_id, []).append(callback)

    def take_stop_waiters(self, canister: CanisterState) -> list[Callable[[], None]]:
        return self._stop_waiters.pop(canister.canister_id, [])

    def reject_open_calls(self, canister: CanisterState, reason: str) -> None:
        self.rejected_calls.append((canister.canister_id, reason))
        canister.open_call_contexts = 0
        self._maybe_stopped(canister)

    def hosts_canister_id(self, canister_id: bytes) -> bool:
        return ids.canister_index(canister_id) is not None

    def random_bytes(self, n: int) -> bytes:
        return bytes(range(n))

    def log(self, canister_id: bytes, line: str) -> None:
        self.logs.append((canister_id, line))

    # --- simulated call contexts --------------------------------------------------------

    def open_context(self, canister_id: bytes) -> None:
        self.canisters[canister_id].open_call_contexts += 1

    def close_context(self, canister_id: bytes) -> None:
        canister = self.canisters[canister_id]
        canister.open_call_contexts -= 1
        self._maybe_stopped(canister)

    def _maybe_stopped(self, canister: CanisterState) -> None:
        if canister.status != CanisterStatus.STOPPING or canister.open_call_contexts:
            return
        canister.status = CanisterStatus.STOPPED
        for waiter in self._stop_waiters.pop(canister.canister_id, []):
            waiter()

    # --- calling the management canister -------------------------------------------------

    def call(
        self,
        method: str,
        value: Any = None,
        *,
        caller: bytes = CONTROLLER,
        cycles: int = 0,
        via_ingress: bool = True,
        raw: bytes | None = None,
    ) -> list[Answer]:
        """Call ``aaaaa-aa``; returns the answers given so far (one, or none yet)."""
        answers: list[Answer] = []
        arg = raw if raw is not None else encode_arg(method, value)
        handle_management_call(
            self,
            caller=caller,
            method=method,
            arg=arg,
            cycles=cycles,
            via_ingress=via_ingress,
            respond=lambda r, refund: answers.append(Answer(r, refund)),
        )
        return answers

    def ok(self, method: str, value: Any = None, **kw: Any) -> Any:
        """Call and expect a reply; returns the decoded result (None for `()`)."""
        answers = self.call(method, value, **kw)
        assert len(answers) == 1, answers
        data = answers[0].reply()
        result_type = SIGNATURES[method][1]
        return None if result_type is None else decode(data, [result_type])[0]["value"]

    def fails(self, method: str, value: Any = None, **kw: Any) -> RejectResponse:
        answers = self.call(method, value, **kw)
        assert len(answers) == 1, answers
        return answers[0].reject()

    # --- canisters ------------------------------------------------------------------------

    def create(self, *, controllers: list[bytes] | None = None, amount: int = 10**15) -> bytes:
        settings = [settings_arg(controllers=controllers or [CONTROLLER])]
        result = self.ok(
            "provisional_create_canister_with_cycles",
            {
                "amount": [amount],
                "settings": settings,
                "specified_id": [],
                "sender_canister_version": [],
            },
        )
        return principal(result["canister_id"])

    def install(
        self,
        canister_id: bytes,
        wasm: bytes,
        arg: bytes = b"DIDL\x00\x00",
        mode: Any = None,
        **kw: Any,
    ) -> None:
        self.ok("install_code", install_args(canister_id, wasm, arg, mode), **kw)

    def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes = b"DIDL\x00\x00",
        caller: bytes = CONTROLLER,
    ) -> ExecResult:
        return self._execute(canister_id, EntryKind.UPDATE, method, arg, caller)

    def query(self, canister_id: bytes, method: str, arg: bytes = b"DIDL\x00\x00") -> ExecResult:
        return self._execute(canister_id, EntryKind.QUERY, method, arg, CONTROLLER)

    def _execute(
        self, canister_id: bytes, kind: EntryKind, method: str, arg: bytes, caller: bytes
    ) -> ExecResult:
        canister = self.canisters[canister_id]
        assert canister.sandbox is not None, "empty canister"
        ctx = MessageContext(kind=kind, method=method, arg=arg, caller=caller)
        result = canister.sandbox.execute(ctx, self.system_state(canister), 5_000_000_000)
        assert not result.trapped, f"{result.error_code}: {result.trap_message}"
        if kind == EntryKind.UPDATE:
            self.apply_effects(canister, result)
            canister.canister_version += 1
        return result


SETTINGS_FIELDS = (
    "controllers",
    "compute_allocation",
    "memory_allocation",
    "freezing_threshold",
    "reserved_cycles_limit",
    "minimum_incoming_canister_call_cycles",
    "log_visibility",
    "log_memory_limit",
    "snapshot_visibility",
    "status_visibility",
    "wasm_memory_limit",
    "wasm_memory_threshold",
    "environment_variables",
)


def settings_arg(**given: Any) -> dict[str, Any]:
    """A ``canister_settings`` record: the given fields set, the others null."""
    unknown = set(given) - set(SETTINGS_FIELDS)
    assert not unknown, unknown
    return {name: [given[name]] if name in given else [] for name in SETTINGS_FIELDS}


def encode_arg(method: str, value: Any) -> bytes:
    arg_type = SIGNATURES[method][0]
    if arg_type is None:
        return bytes(encode([]))
    return bytes(encode([{"type": arg_type, "value": value}]))


def install_args(canister_id: bytes, wasm: bytes, arg: bytes, mode: Any = None) -> dict[str, Any]:
    return {
        "mode": mode or {"install": None},
        "canister_id": canister_id,
        "wasm_module": wasm,
        "arg": arg,
        "sender_canister_version": [],
    }


def upgrade(keep: bool | None = None, skip_pre_upgrade: bool | None = None) -> dict[str, Any]:
    persistence = [] if keep is None else [{"keep": None} if keep else {"replace": None}]
    skip = [] if skip_pre_upgrade is None else [skip_pre_upgrade]
    return {"upgrade": [{"skip_pre_upgrade": skip, "wasm_memory_persistence": persistence}]}


def cid_arg(canister_id: bytes) -> dict[str, Any]:
    return {"canister_id": canister_id}


def principal(value: Any) -> bytes:
    return bytes(value.bytes) if hasattr(value, "bytes") else bytes(value)


def value_of(result: ExecResult, *types: Any) -> Any:
    assert isinstance(result.response, Reply), result.response
    return decode(result.response.data, list(types))[0]["value"]


def candid(*typed: tuple[Any, Any]) -> bytes:
    return bytes(encode([{"type": t, "value": v} for t, v in typed]))


def nat(n: int) -> bytes:
    return candid((Types.Nat, n))


def assert_reject(reject: RejectResponse, error_code: str, *fragments: str) -> None:
    assert reject.error_code == error_code, reject
    assert reject.code == int(error_code[3]), reject
    assert RejectCode(reject.code)  # a valid reject code
    for fragment in fragments:
        assert fragment in reject.message, (fragment, reject.message)
