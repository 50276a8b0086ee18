"""The replicated state of localnet's one subnet: canisters and their system state.

Plain data. The replica (``localnet.replica``) and the management canister
(``localnet.management``) mutate it on the execution thread only; the
certification code reads it to build state trees; ``localnet.persist`` writes
it to ``--state-dir`` and reads it back.

Every change to a :class:`CanisterState` reports itself to the canister's
:class:`Tracker` (``localnet.canisters.CanisterTable``, once the canister is
in a replica): assigning any field does, and so does changing the containers
it holds (chunk store, snapshots, history), which are kept as tracking
subclasses of ``dict`` and ``list`` whatever is assigned. The ``--state-dir``
journal writes only the canisters reported since its last commit, so its
cost follows what a drain changed, not how many canisters exist; marking on
assignment (not on a changed value) makes a missed report unlikely, and
``LOCALNET_CHECK_DIRTY=1`` checks every commit against a full scan.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, SupportsIndex, TypeVar

if TYPE_CHECKING:
    from localnet.sandbox import CanisterSandbox

_K = TypeVar("_K")
_V = TypeVar("_V")


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


@dataclass(frozen=True)
class Settings:
    """Canister settings with the IC's defaults.

    Frozen: a change assigns a new object to ``CanisterState.settings``,
    which the canister's tracker hears of (see the module doc)."""

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


class Tracker(Protocol):
    """Who hears of a canister's changes (``localnet.canisters.CanisterTable``)."""

    def touched(self, canister: CanisterState, name: str | None) -> None:
        """``canister`` changed: field ``name`` was assigned, or (None) a container it holds."""
        ...


class TrackedDict(dict[_K, _V]):
    """A ``dict`` that reports every change to the canister holding it."""

    __slots__ = ("_owner",)  # 20,000 canisters hold three containers each

    def __init__(self, owner: CanisterState, items: Any = ()) -> None:
        super().__init__(items)
        self._owner = owner

    def _touched(self) -> None:
        self._owner._touched(None)

    def __setitem__(self, key: _K, value: _V) -> None:
        super().__setitem__(key, value)
        self._touched()

    def __delitem__(self, key: _K) -> None:
        super().__delitem__(key)
        self._touched()

    def pop(self, *args: Any) -> Any:
        self._touched()
        return super().pop(*args)

    def popitem(self) -> tuple[_K, _V]:
        self._touched()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._touched()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._touched()

    def setdefault(self, key: _K, default: Any = None) -> Any:
        self._touched()
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> TrackedDict[_K, _V]:  # type: ignore[override,misc]
        super().__ior__(other)
        self._touched()
        return self


class TrackedList(list[_V]):
    """A ``list`` that reports every change to the canister holding it."""

    __slots__ = ("_owner",)

    def __init__(self, owner: CanisterState, items: Any = ()) -> None:
        super().__init__(items)
        self._owner = owner

    def _touched(self) -> None:
        self._owner._touched(None)

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._touched()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._touched()

    def __iadd__(self, other: Any) -> TrackedList[_V]:  # type: ignore[override,misc]
        super().__iadd__(other)
        self._touched()
        return self

    def __imul__(self, n: SupportsIndex) -> TrackedList[_V]:
        super().__imul__(n)
        self._touched()
        return self

    def append(self, value: _V) -> None:
        super().append(value)
        self._touched()

    def extend(self, values: Any) -> None:
        super().extend(values)
        self._touched()

    def insert(self, index: SupportsIndex, value: _V) -> None:
        super().insert(index, value)
        self._touched()

    def pop(self, index: SupportsIndex = -1) -> _V:
        self._touched()
        return super().pop(index)

    def remove(self, value: _V) -> None:
        super().remove(value)
        self._touched()

    def clear(self) -> None:
        super().clear()
        self._touched()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._touched()

    def reverse(self) -> None:
        super().reverse()
        self._touched()


# Containers a canister holds, kept as tracking ones whatever is assigned.
_TRACKED_DICTS = frozenset({"chunk_store", "snapshots"})
_TRACKED_LISTS = frozenset({"history"})


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
    # Set by the replica's canister table: hears of every change (see the module doc).
    tracker: Tracker | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _TRACKED_DICTS and not (isinstance(value, TrackedDict) and value._owner is self):
            value = TrackedDict(self, value)
        elif name in _TRACKED_LISTS and not (
            isinstance(value, TrackedList) and value._owner is self
        ):
            value = TrackedList(self, value)
        object.__setattr__(self, name, value)
        self._touched(name)

    def _touched(self, name: str | None) -> None:
        tracker = self.__dict__.get("tracker")
        if tracker is not None:
            tracker.touched(self, name)

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
