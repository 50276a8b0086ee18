"""The replicated state of localnet's one subnet: canisters and their system state.

Plain data. The replica (``localnet.replica``) and the management canister
(``localnet.management``) mutate it on the execution thread only; the
certification code reads it to build state trees; ``localnet.persist`` writes
it to ``--state-dir`` and reads it back.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localnet.sandbox import CanisterSandbox


@functools.lru_cache(maxsize=64)
def wasm_hash(wasm: bytes) -> bytes:
    """SHA-256 of a module, cached: a fleet installs a few modules (one shared
    copy each, see ``WasmEngine.intern``) into thousands of canisters, and
    status calls and the --state-dir journal ask for the hash all the time."""
    return hashlib.sha256(wasm).digest()


class CanisterStatus(IntEnum):
    """Values as ``ic0.canister_status`` reports them."""

    RUNNING = 1
    STOPPING = 2
    STOPPED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class Settings:
    """Canister settings with the IC's defaults."""

    controllers: list[bytes]
    compute_allocation: int = 0
    memory_allocation: int = 0
    freezing_threshold: int = 2_592_000  # seconds (30 days)
    reserved_cycles_limit: int = 5_000_000_000_000
    log_visibility: str = "controllers"  # or "public" or "allowed_viewers"
    wasm_memory_limit: int = 3 * 1024**3
    wasm_memory_threshold: int = 0
    # Newer settings (ic.did 2026). A visibility is "controllers", "public" or
    # "allowed_viewers"; the viewers lists go with the last one.
    log_viewers: list[bytes] = field(default_factory=list)
    log_memory_limit: int = 4096
    snapshot_visibility: str = "controllers"
    snapshot_viewers: list[bytes] = field(default_factory=list)
    status_visibility: str = "controllers"
    status_viewers: list[bytes] = field(default_factory=list)
    minimum_incoming_canister_call_cycles: int = 0
    environment_variables: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Snapshot:
    """A canister snapshot: module, memories and the globals of the instance."""

    snapshot_id: bytes  # 8-byte big-endian counter ++ canister id, as on the IC
    taken_at_ns: int
    canister_version: int
    # bytearray while an uploaded snapshot is being written (upload_canister_snapshot_data)
    wasm_module: bytes | bytearray
    heap: bytes | bytearray
    stable: bytes | bytearray
    globals: list[int | float]
    certified_data: bytes
    global_timer: int  # 0 when not set
    on_low_wasm_memory_hook_status: str = "condition_not_satisfied"
    source: str = "taken_from_canister"  # or "metadata_upload"
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)  # sha256 -> chunk
    # Wasm types of ``globals`` ("i32", "i64", "f32", "f64", "v128"), in order.
    global_types: list[str] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        # The chunk store is charged per chunk slot (1 MiB each), as on the IC.
        chunks = len(self.chunk_store) * 1024 * 1024
        return len(self.wasm_module) + len(self.heap) + len(self.stable) + chunks


@dataclass
class CanisterState:
    canister_id: bytes
    settings: Settings
    cycles: int
    status: CanisterStatus = CanisterStatus.RUNNING
    wasm_module: bytes | None = None  # the installed module, as uploaded
    sandbox: CanisterSandbox | None = None  # the live instance, None when empty
    canister_version: int = 0
    certified_data: bytes = b""
    global_timer: int = 0  # nanoseconds since epoch; 0 = not set
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)  # sha256 -> chunk
    snapshots: dict[bytes, Snapshot] = field(default_factory=dict)
    next_snapshot_index: int = 0
    open_call_contexts: int = 0  # calls received and not yet answered
    # Cycles burned so far, for status/metrics (idle, execution, messages).
    cycles_burned: int = 0
    history: list[dict[str, object]] = field(default_factory=list)  # canister_info

    @property
    def controllers(self) -> list[bytes]:
        return self.settings.controllers

    @property
    def module_hash(self) -> bytes | None:
        if self.wasm_module is None:
            return None
        return wasm_hash(self.wasm_module)

    def is_controller(self, principal: bytes) -> bool:
        return principal in self.settings.controllers
