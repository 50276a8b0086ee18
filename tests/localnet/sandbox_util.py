"""Helpers for the sandbox tests: canister Wasm, system state, one-line executions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import wasmtime
from icp_candid.candid import decode, encode

from localnet import ids
from localnet.execution import EntryKind, ExecResult, MessageContext, Reply, SystemState
from localnet.sandbox import CanisterSandbox, WasmEngine

WASM_DIR = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
CANISTER_ID = ids.canister_id(7)
CONTROLLER = bytes(range(1, 30))
USER = b"\x05" * 29
LIMIT = 5_000_000_000


def canister_wasm(name: str) -> bytes:
    return (WASM_DIR / f"{name}.wasm").read_bytes()


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def system_state(**overrides: Any) -> SystemState:
    fields: dict[str, Any] = {
        "canister_id": CANISTER_ID,
        "controllers": [CONTROLLER],
        "cycles_balance": 10**13,
        "status": 1,
        "time_ns": 1_700_000_000_000_000_000,
        "canister_version": 3,
    }
    fields.update(overrides)
    return SystemState(**fields)


def run(
    sandbox: CanisterSandbox,
    kind: EntryKind,
    method: str = "",
    arg: bytes = b"",
    *,
    limit: int = LIMIT,
    system: SystemState | None = None,
    **ctx: Any,
) -> ExecResult:
    ctx.setdefault("caller", USER)
    context = MessageContext(kind, method, arg, **ctx)
    return sandbox.execute(context, system or system_state(), limit)


def candid(*typed: tuple[Any, Any]) -> bytes:
    return bytes(encode([{"type": t, "value": v} for t, v in typed]))


def reply_of(result: ExecResult) -> bytes:
    assert not result.trapped, f"{result.error_code}: {result.trap_message}"
    assert isinstance(result.response, Reply), result.response
    return result.response.data


def decoded(result: ExecResult, *types: Any) -> list[Any]:
    return [v["value"] for v in decode(reply_of(result), list(types) or None)]


def load_installed(engine: WasmEngine, name: str, **kw: Any) -> CanisterSandbox:
    """Load a Motoko canister and run canister_init, as install_code does."""
    sandbox = CanisterSandbox.load(engine, canister_wasm(name), **kw)
    result = run(sandbox, EntryKind.INIT, arg=candid(), caller=CONTROLLER)
    assert not result.trapped, result.trap_message
    return sandbox
