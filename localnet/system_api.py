"""The ``ic0`` System API: the host functions a canister's Wasm imports.

One :class:`SystemApi` belongs to one sandbox. The sandbox calls
:meth:`SystemApi.begin` before each execution and :meth:`SystemApi.finish`
after it; in between, the host functions read the :class:`MessageContext` and
:class:`SystemState` and collect the execution's effects (reply, calls,
accepted cycles, timer, certified data, logs).

Availability follows the spec's table (``I G U RQ NRQ CQ Ry Rt CRy CRt C CC F
T s``): calling an import from the wrong kind of execution is a contract
violation (``IC0504``), as on the IC. Pointer-typed parameters (``I``) are
``i64`` for 64-bit memories and ``i32`` otherwise; the module's import types
are checked against the spec at load time.

Host functions stop the execution by raising an :class:`ApiTrap`; wasmtime
turns it into a trap and re-raises it from the entry point call.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import wasmtime

from localnet import dirty
from localnet.errors import ErrorCode
from localnet.execution import (
    Callback,
    EntryKind,
    MessageContext,
    OutgoingCall,
    RejectResponse,
    Reply,
    Response,
    SystemState,
)

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
WASM_PAGE = 65536
MAX_PRINCIPAL_BYTES = 29
MAX_CERTIFIED_DATA = 32
MAX_CALL_TIMEOUT_SECONDS = 300
CANISTER_REJECT = 4
CREATE_CANISTER_FEE = 500_000_000_000  # on a 13-node subnet
REFERENCE_SUBNET_SIZE = 13
# The stable memory is host memory; this is the IC's per-canister maximum.
MAX_STABLE_BYTES = 500 * 1024**3

# --- execution classes of the spec's availability table -------------------

STAR = frozenset(["I", "G", "U", "RQ", "NRQ", "CQ", "Ry", "Rt", "CRy", "CRt", "C", "CC", "F", "T"])
START = "s"
NON_REPLICATED = frozenset({"NRQ", "CQ", "CRy", "CRt", "CC", "F"})
# Classes in which the execution answers a call and may reply or reject.
RESPONDING = frozenset({"U", "RQ", "NRQ", "CQ", "Ry", "Rt", "CRy", "CRt"})

_CLASS_OF_KIND = {
    EntryKind.INIT: "I",
    EntryKind.POST_UPGRADE: "I",
    EntryKind.PRE_UPGRADE: "G",
    EntryKind.UPDATE: "U",
    EntryKind.REPLICATED_QUERY: "RQ",
    EntryKind.QUERY: "NRQ",
    EntryKind.COMPOSITE_QUERY: "CQ",
    EntryKind.REPLY_CALLBACK: "Ry",
    EntryKind.REJECT_CALLBACK: "Rt",
    EntryKind.CLEANUP: "C",
    EntryKind.GLOBAL_TIMER: "T",
    EntryKind.HEARTBEAT: "T",
    EntryKind.INSPECT_MESSAGE: "F",
}
_COMPOSITE_CLASS = {"Ry": "CRy", "Rt": "CRt", "C": "CC"}

_MODE_NAMES = {
    "I": "init",
    "G": "pre_upgrade",
    "U": "update",
    "RQ": "replicated query",
    "NRQ": "non replicated query",
    "CQ": "composite query",
    "Ry": "reply callback",
    "Rt": "reject callback",
    "CRy": "composite reply callback",
    "CRt": "composite reject callback",
    "C": "cleanup",
    "CC": "composite cleanup",
    "F": "inspect message",
    "T": "system task",
    "s": "start",
}


def api_class(ctx: MessageContext) -> str:
    """The spec's availability class of an execution (``U``, ``NRQ``, ``CRy`` ...)."""
    cls = _CLASS_OF_KIND[ctx.kind]
    if ctx.in_composite_query:
        cls = _COMPOSITE_CLASS.get(cls, cls)
    return cls


# --- traps ------------------------------------------------------------------


class ApiTrap(Exception):
    """Raised by a host function: the execution traps with this code/message."""

    error_code = ErrorCode.CANISTER_TRAPPED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ContractViolation(ApiTrap):
    error_code = ErrorCode.CANISTER_CONTRACT_VIOLATION

    def __init__(self, message: str) -> None:
        super().__init__(f"Canister violated contract: {message}")


class CalledTrap(ApiTrap):
    error_code = ErrorCode.CANISTER_CALLED_TRAP

    def __init__(self, text: str) -> None:
        super().__init__(f"Canister called `ic0.trap` with message: '{text}'.")


class Trapped(ApiTrap):
    """A trap the System API raises on the canister's behalf (bounds ...)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Canister trapped: {what}")


class OutOfInstructions(ApiTrap):
    error_code = ErrorCode.CANISTER_INSTRUCTION_LIMIT_EXCEEDED

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Canister exceeded the limit of {limit} instructions for single message execution."
        )


# --- stable memory ----------------------------------------------------------


class StableMemory:
    """The canister's stable memory: host memory, with an undo log per execution.

    The bytes live in a private anonymous mapping (:class:`dirty.AnonMemory`),
    so pages never written cost no RSS: a Motoko canister grows a few hundred
    KiB of stable memory at init and writes one page of it. Growing remaps
    instead of copying.

    In ``full_copy`` mode (the reference) :meth:`begin` saves all of it; else
    the first write to each 4 KiB page saves that page, so rolling back costs
    what the execution wrote, not the memory's size.

    A sleeping canister's stable memory is :meth:`release`-d (its size and
    journal bookkeeping stay) and :meth:`restore`-d from its non-zero pages.
    """

    TRACK = 4096

    def __init__(self, data: bytes = b"", *, full_copy: bool = False) -> None:
        self.size = -(-len(data) // WASM_PAGE) * WASM_PAGE
        self._mem: dirty.AnonMemory | None = None
        if self.size:
            self._ensure(self.size)
            ctypes.memmove(self._address, data, len(data))
        self.full_copy = full_copy
        self._undo: dict[int, bytes] | None = None
        self._saved: bytes | None = None
        self._old_len = self.size
        # Pages written since take_written last ran, and the size then (None:
        # all of it): --state-dir's journal. Rolled-back writes stay listed.
        self._touched: set[int] | None = None
        self._taken_len = 0

    @property
    def _address(self) -> int:
        return self._mem.address if self._mem is not None else 0

    def _ensure(self, size: int) -> None:
        """Room for ``size`` bytes: capacity doubles, so growing page by page stays cheap."""
        if self._mem is None:
            self._mem = dirty.AnonMemory(max(size, WASM_PAGE))
        elif self._mem.size < size:
            self._mem.resize(min(max(size, 2 * self._mem.size), MAX_STABLE_BYTES))

    @property
    def pages(self) -> int:
        return self.size // WASM_PAGE

    def grow(self, new_pages: int) -> int:
        old = self.pages
        if new_pages < 0 or (old + new_pages) * WASM_PAGE > MAX_STABLE_BYTES:
            return -1
        try:
            self._ensure(self.size + new_pages * WASM_PAGE)
        except MemoryError:
            return -1
        self.size += new_pages * WASM_PAGE  # the new pages are zero: shrinking discards
        return old

    def check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise Trapped("stable memory out of bounds")

    def read(self, offset: int, size: int) -> bytes:
        self.check(offset, size)
        return ctypes.string_at(self._address + offset, size) if size else b""

    def write(self, offset: int, data: bytes) -> None:
        self.check(offset, len(data))
        if not data:
            return
        if self._undo is not None:
            self._save_pages(offset, offset + len(data))
        if self._touched is not None:
            last = (offset + len(data) - 1) // self.TRACK
            self._touched.update(range(offset // self.TRACK, last + 1))
        if len(data) >= dirty.PAGE_SIZE and _all_zero(data):
            # Motoko zero-fills the stable memory it grows: zeros written as
            # released pages cost no RSS (whole pages; edges are cleared).
            dirty.discard(self._address, offset, offset + len(data))
        else:
            ctypes.memmove(self._address + offset, data, len(data))

    def snapshot(self) -> bytes:
        """All of it, as bytes."""
        return ctypes.string_at(self._address, self.size) if self.size else b""

    def _page(self, page: int) -> bytes:
        start = page * self.TRACK
        return ctypes.string_at(self._address + start, min(self.TRACK, self.size - start))

    def _save_pages(self, start: int, end: int) -> None:
        undo = self._undo
        assert undo is not None
        limit = (self._old_len + self.TRACK - 1) // self.TRACK
        for page in range(start // self.TRACK, min((end - 1) // self.TRACK + 1, limit)):
            if page not in undo:
                undo[page] = self._page(page)

    def _truncate(self, size: int) -> None:
        if size < self.size and self._mem is not None:
            self._mem.discard(size, self.size)
        self.size = size

    # transactions

    def begin(self) -> None:
        self._old_len = self.size
        if self.full_copy:
            self._saved = self.snapshot()
        else:
            self._undo = {}

    def commit(self) -> None:
        self._undo = None
        self._saved = None

    def rollback(self) -> None:
        if self._saved is not None:
            self._truncate(min(self.size, len(self._saved)))
            self._ensure(len(self._saved))
            self.size = len(self._saved)
            if self._saved:
                ctypes.memmove(self._address, self._saved, len(self._saved))
        else:
            self._truncate(self._old_len)
            for page, old in (self._undo or {}).items():
                ctypes.memmove(self._address + page * self.TRACK, old, len(old))
        self.commit()

    def take_written(self) -> list[tuple[int, bytes]] | None:
        """Pages (current content) written or grown since the last call; None: all."""
        touched, self._touched = self._touched, set()
        taken, self._taken_len = self._taken_len, self.size
        if touched is None:
            return None
        out = [(p * self.TRACK, self._page(p))
               for p in sorted(touched) if p * self.TRACK < min(taken, self.size)]  # fmt: skip
        if self.size > taken:
            # Grown since: zeros on replay (``_Sparse.patch``) but where written.
            # Motoko grows its regions by megabytes at a time: journaling the
            # zeros cost ~1.7 MiB per message in a fleet backup (4 KiB members).
            grown = dirty.nonzero_pages(self._address + taken, self.size - taken)
            out += [(taken + offset, data) for offset, data in grown]
        return out

    def has_untaken(self) -> bool:
        """Whether :meth:`take_written` would report anything (None included)."""
        return self._touched is None or bool(self._touched) or self.size != self._taken_len

    def untaken_bytes(self) -> bool:
        """Whether :meth:`take_written` needs the memory's content (it does not when
        nothing was written, nor when it answers None: all of it)."""
        return self._touched is not None and (bool(self._touched) or self.size > self._taken_len)

    def written(self) -> list[tuple[int, bytes]]:
        """The pages written since :meth:`begin` (current content), and growth."""
        if self._saved is not None or self._undo is None:
            return [(0, self.snapshot())]
        out = [(p * self.TRACK, self._page(p)) for p in sorted(self._undo)]
        if self.size > self._old_len:
            out.append((self._old_len, self.read(self._old_len, self.size - self._old_len)))
        return out

    # sleeping canisters

    def nonzero_pages(self) -> list[tuple[int, bytes]]:
        """(offset, content) of every 4 KiB page that is not all zeros."""
        return dirty.nonzero_pages(self._address, self.size)

    def release(self) -> None:
        """Give the memory back; size and journal bookkeeping stay (see :meth:`restore`)."""
        if self._mem is not None:
            self._mem.close()
            self._mem = None

    def restore(self, pages: list[tuple[int, bytes]]) -> None:
        """Refill a released memory with ``pages`` (the rest is zero)."""
        if self.size:
            self._ensure(self.size)
        for offset, data in pages:
            ctypes.memmove(self._address + offset, data, len(data))


def _all_zero(data: bytes) -> bool:
    # The ends first: data with content is told apart without counting it all.
    return data[0] == 0 and data[-1] == 0 and data.count(0) == len(data)


# --- the imports ------------------------------------------------------------


@dataclass(frozen=True)
class ImportSpec:
    params: tuple[str, ...]  # "i32", "i64" or "I" (pointer width)
    results: tuple[str, ...]
    allowed: frozenset[str]
    width: int = 0  # 32 or 64 when the import only exists for that pointer width

    def resolve(self, pointer: str) -> tuple[list[str], list[str]]:
        def sub(types: tuple[str, ...]) -> list[str]:
            return [pointer if t == "I" else t for t in types]

        return sub(self.params), sub(self.results)


def _spec(sig: str, allowed: str, width: int = 0) -> ImportSpec:
    params, _, results = sig.partition("->")
    classes = set(allowed.split())
    if "*" in classes:
        classes = (classes - {"*"}) | STAR
    return ImportSpec(tuple(params.split()), tuple(results.split()), frozenset(classes), width)


_ARG = "I U RQ NRQ CQ Ry CRy F"
_REPLY = "U RQ NRQ CQ Ry Rt CRy CRt"
_CALL = "U CQ Ry Rt CRy CRt T"
_TIMER = "I G U Ry Rt C T"

IMPORTS: dict[str, ImportSpec] = {
    "msg_arg_data_size": _spec("-> I", _ARG),
    "msg_arg_data_copy": _spec("I I I ->", _ARG),
    "msg_caller_size": _spec("-> I", "*"),
    "msg_caller_copy": _spec("I I I ->", "*"),
    "msg_reject_code": _spec("-> i32", "Ry Rt CRy CRt"),
    "msg_reject_msg_size": _spec("-> I", "Rt CRt"),
    "msg_reject_msg_copy": _spec("I I I ->", "Rt CRt"),
    "msg_deadline": _spec("-> i64", "U RQ NRQ CQ Ry Rt CRy CRt"),
    "msg_reply_data_append": _spec("I I ->", _REPLY),
    "msg_reply": _spec("->", _REPLY),
    "msg_reject": _spec("I I ->", _REPLY),
    "msg_cycles_available128": _spec("I ->", "U RQ Rt Ry"),
    "msg_cycles_refunded128": _spec("I ->", "Rt Ry"),
    "msg_cycles_accept128": _spec("i64 i64 I ->", "U RQ Rt Ry"),
    "cycles_burn128": _spec("i64 i64 I ->", "I G U RQ Ry Rt C T"),
    "canister_self_size": _spec("-> I", "*"),
    "canister_self_copy": _spec("I I I ->", "*"),
    "canister_cycle_balance128": _spec("I ->", "*"),
    "canister_liquid_cycle_balance128": _spec("I ->", "*"),
    "canister_status": _spec("-> i32", "*"),
    "canister_version": _spec("-> i64", "*"),
    "subnet_self_size": _spec("-> I", "*"),
    "subnet_self_copy": _spec("I I I ->", "*"),
    "msg_method_name_size": _spec("-> I", "F"),
    "msg_method_name_copy": _spec("I I I ->", "F"),
    "accept_message": _spec("->", "F"),
    "call_new": _spec("I I I I I I I I ->", _CALL),
    "call_on_cleanup": _spec("I I ->", _CALL),
    "call_data_append": _spec("I I ->", _CALL),
    "call_with_best_effort_response": _spec("i32 ->", _CALL),
    "call_cycles_add128": _spec("i64 i64 ->", "U Ry Rt T"),
    "call_perform": _spec("-> i32", _CALL),
    "stable64_size": _spec("-> i64", "* s"),
    "stable64_grow": _spec("i64 -> i64", "* s"),
    "stable64_write": _spec("i64 i64 i64 ->", "* s"),
    "stable64_read": _spec("i64 i64 i64 ->", "* s"),
    "certified_data_set": _spec("I I ->", "I G U Ry Rt T"),
    "data_certificate_present": _spec("-> i32", "*"),
    "data_certificate_size": _spec("-> I", "NRQ CQ"),
    "data_certificate_copy": _spec("I I I ->", "NRQ CQ"),
    "time": _spec("-> i64", "*"),
    "global_timer_set": _spec("i64 -> i64", _TIMER),
    "performance_counter": _spec("i32 -> i64", "* s"),
    "is_controller": _spec("I I -> i32", "* s"),
    "in_replicated_execution": _spec("-> i32", "* s"),
    "cost_call": _spec("i64 i64 I ->", "* s"),
    "cost_create_canister": _spec("I ->", "* s"),
    "cost_http_request": _spec("i64 i64 I ->", "* s"),
    "debug_print": _spec("I I ->", "* s"),
    "trap": _spec("I I ->", "* s"),
    # Only for 32-bit memories (the spec drops them for I = i64).
    "msg_cycles_available": _spec("-> i64", "U RQ Rt Ry", 32),
    "msg_cycles_refunded": _spec("-> i64", "Rt Ry", 32),
    "msg_cycles_accept": _spec("i64 -> i64", "U RQ Rt Ry", 32),
    "canister_cycle_balance": _spec("-> i64", "*", 32),
    "call_cycles_add": _spec("i64 ->", "U Ry Rt T", 32),
    "stable_size": _spec("-> i32", "* s", 32),
    "stable_grow": _spec("i32 -> i32", "* s", 32),
    "stable_write": _spec("i32 i32 i32 ->", "* s", 32),
    "stable_read": _spec("i32 i32 i32 ->", "* s", 32),
}


def signature(name: str, pointer: str) -> tuple[list[str], list[str]] | None:
    """The spec's (params, results) for ``ic0.<name>``, None if unsupported."""
    spec = IMPORTS.get(name)
    if spec is None or (spec.width and spec.width != (64 if pointer == "i64" else 32)):
        return None
    return spec.resolve(pointer)


def linked_import(name: str, pointer: str) -> Callable[..., Any]:
    """The host function for ``ic0.<name>``, shared by all instances of an engine.

    One set of host functions per engine (a ``wasmtime.Linker``) instead of
    one per instance makes instantiating a canister ~1 ms cheaper and a live
    sandbox some 30 KiB smaller. The function serves the :class:`SystemApi`
    whose Wasm runs on the calling thread (:meth:`SystemApi.running`):
    availability, masking of the arguments, then the handler.
    """
    spec = IMPORTS[name]
    params, _ = spec.resolve(pointer)
    masks = tuple(MASK64 if t == "i64" else MASK32 for t in params)
    handler = getattr(SystemApi, f"_ic0_{name}")
    allowed = spec.allowed

    def call(*args: int) -> Any:
        api: SystemApi = _running.api
        if api._cls not in allowed:
            raise ContractViolation(
                f'"ic0_{name}" cannot be executed in {_MODE_NAMES[api._cls]} mode'
            )
        return handler(api, *(a & m for a, m in zip(args, masks, strict=True)))

    return call


def importable(pointer: str) -> list[str]:
    """The ``ic0`` imports localnet provides to modules with ``pointer``-wide memory."""
    return [name for name in IMPORTS if signature(name, pointer) is not None]


_running = threading.local()


# --- per-execution state ----------------------------------------------------


@dataclass
class _PendingCall:
    callee: bytes
    method: str
    on_reply: Callback
    on_reject: Callback
    arg: bytearray = field(default_factory=bytearray)
    cycles: int = 0
    on_cleanup: Callback | None = None
    timeout_seconds: int | None = None


@dataclass
class ExecEffects:
    """What an execution did through the System API (the replica's view)."""

    response: Response | None = None
    calls: list[OutgoingCall] = field(default_factory=list)
    cycles_accepted: int = 0
    cycles_sent: int = 0
    cycles_burned: int = 0
    global_timer: int | None = None
    certified_data: bytes | None = None
    logs: list[str] = field(default_factory=list)
    message_accepted: bool = False


@dataclass
class _Exec:
    ctx: MessageContext
    system: SystemState
    cls: str
    limit: int
    responded: bool
    reply: bytearray = field(default_factory=bytearray)
    pending: _PendingCall | None = None
    effects: ExecEffects = field(default_factory=ExecEffects)


class MemoryAccess:
    """How host functions reach the instance's linear memory and fuel.

    It holds the store only weakly, so that a sandbox's store (and its
    memory) goes away as soon as the sandbox drops it.
    """

    def __init__(self) -> None:
        self.base = 0
        self.length: Callable[[], int] = _zero
        self.get_fuel: Callable[[], int] = _zero
        self.set_fuel: Callable[[int], None] = _ignore

    def attach(self, store: wasmtime.Store, memory: wasmtime.Memory | None) -> None:
        """Point at ``memory`` of ``store`` (memory64 never moves: base is fixed)."""
        ref = weakref.ref(store)

        def length() -> int:
            s = ref()
            return memory.data_len(s) if memory is not None and s is not None else 0

        def get_fuel() -> int:
            s = ref()
            return s.get_fuel() if s is not None else 0

        def set_fuel(fuel: int) -> None:
            s = ref()
            if s is not None:
                s.set_fuel(fuel)

        self.base = 0
        if memory is not None:
            self.base = ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value or 0
        self.length, self.get_fuel, self.set_fuel = length, get_fuel, set_fuel

    def detach(self) -> None:
        self.base = 0
        self.length, self.get_fuel, self.set_fuel = _zero, _zero, _ignore

    def read(self, src: int, size: int) -> bytes:
        if src < 0 or size < 0 or src + size > self.length():
            raise Trapped("heap out of bounds")
        return ctypes.string_at(self.base + src, size) if size else b""

    def write(self, dst: int, data: bytes) -> None:
        if dst < 0 or dst + len(data) > self.length():
            raise Trapped("heap out of bounds")
        if data:
            ctypes.memmove(self.base + dst, data, len(data))


def _zero() -> int:
    return 0


def _ignore(_value: int) -> None:
    pass


def _u128(high: int, low: int) -> int:
    return ((high & MASK64) << 64) | (low & MASK64)


def _le128(value: int) -> bytes:
    return value.to_bytes(16, "little")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class SystemApi:
    """The ``ic0`` host functions of one sandbox."""

    def __init__(self, mem: MemoryAccess, stable: StableMemory) -> None:
        self.mem = mem
        self.stable = stable
        self._x: _Exec | None = None
        self._cls = START

    # lifecycle

    def begin(self, ctx: MessageContext, system: SystemState, limit: int) -> None:
        cls = api_class(ctx)
        responded = ctx.already_responded or cls not in RESPONDING
        self._x = _Exec(ctx, system, cls, limit, responded)
        self._cls = cls

    def finish(self) -> ExecEffects:
        """End the execution; the effects are only meaningful if it did not trap."""
        x = self._x
        assert x is not None
        self._x = None
        self._cls = START
        return x.effects

    def logs_so_far(self) -> list[str]:
        return self._x.effects.logs if self._x else []

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark this System API as the one the Wasm about to run on this thread calls.

        The host functions are shared by every instance (see
        :func:`linked_import`); they serve whichever System API is running.
        """
        previous = getattr(_running, "api", None)
        _running.api = self
        try:
            yield
        finally:
            _running.api = previous

    # helpers

    @property
    def x(self) -> _Exec:
        if self._x is None:  # only the start function runs outside an execution
            raise ContractViolation("the System API is not available in the start function")
        return self._x

    def _charge(self, n: int) -> None:
        """Charge ``n`` instructions for bytes a System API call moves."""
        if n <= 0:
            return
        fuel = self.mem.get_fuel()
        if fuel < n:
            raise OutOfInstructions(self._x.limit if self._x else fuel)
        self.mem.set_fuel(fuel - n)

    def _copy_blob(self, what: str, blob: bytes, dst: int, offset: int, size: int) -> None:
        if offset + size > len(blob):
            raise ContractViolation(
                f"ic0.{what}_copy: offset {offset} + size {size} is out of bounds "
                f"(the {what} has {len(blob)} bytes)"
            )
        self._charge(size)
        self.mem.write(dst, blob[offset : offset + size])

    def _read(self, src: int, size: int) -> bytes:
        self._charge(size)
        return self.mem.read(src, size)

    def _balance(self) -> int:
        x = self.x
        e = x.effects
        pending = x.pending.cycles if x.pending else 0
        return (
            x.system.cycles_balance + e.cycles_accepted - e.cycles_sent - pending - e.cycles_burned
        )

    def _liquid(self) -> int:
        return max(0, self._balance() - self.x.system.freezing_limit_cycles)

    def _available(self) -> int:
        x = self.x
        if x.responded:  # a response refunds whatever was not accepted
            return 0
        return max(0, x.ctx.cycles_available - x.effects.cycles_accepted)

    def _respond(self, response: Response) -> None:
        x = self.x
        x.responded = True
        x.effects.response = response

    def _need_response(self, what: str) -> None:
        if self.x.responded:
            raise ContractViolation(
                f"ic0.{what}: the call is already replied or does not need a response"
            )

    # message arguments

    def _ic0_msg_arg_data_size(self) -> int:
        return len(self.x.ctx.arg)

    def _ic0_msg_arg_data_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("msg_arg_data", self.x.ctx.arg, dst, offset, size)

    def _ic0_msg_caller_size(self) -> int:
        return len(self.x.ctx.caller)

    def _ic0_msg_caller_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("msg_caller", self.x.ctx.caller, dst, offset, size)

    def _ic0_msg_reject_code(self) -> int:
        x = self.x
        return x.ctx.reject_code if x.cls in ("Rt", "CRt") else 0

    def _reject_msg(self) -> bytes:
        if not self.x.ctx.reject_code:
            raise ContractViolation("ic0.msg_reject_msg: there is no reject message")
        return self.x.ctx.reject_message.encode()

    def _ic0_msg_reject_msg_size(self) -> int:
        return len(self._reject_msg())

    def _ic0_msg_reject_msg_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("msg_reject_msg", self._reject_msg(), dst, offset, size)

    def _ic0_msg_deadline(self) -> int:
        return self.x.ctx.deadline_ns

    def _ic0_msg_method_name_size(self) -> int:
        return len(self.x.ctx.method.encode())

    def _ic0_msg_method_name_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("msg_method_name", self.x.ctx.method.encode(), dst, offset, size)

    def _ic0_accept_message(self) -> None:
        e = self.x.effects
        if e.message_accepted:
            raise ContractViolation("ic0.accept_message: the message was already accepted")
        e.message_accepted = True

    # responding

    def _ic0_msg_reply_data_append(self, src: int, size: int) -> None:
        x = self.x
        self._need_response("msg_reply_data_append")
        limit = x.system.max_response_bytes
        if len(x.reply) + size > limit:
            raise ContractViolation(
                f"ic0.msg_reply_data_append: application payload size "
                f"({len(x.reply) + size}) cannot be larger than {limit}."
            )
        x.reply += self._read(src, size)

    def _ic0_msg_reply(self) -> None:
        self._need_response("msg_reply")
        self._respond(Reply(bytes(self.x.reply)))

    def _ic0_msg_reject(self, src: int, size: int) -> None:
        self._need_response("msg_reject")
        raw = self._read(src, size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractViolation("ic0.msg_reject: the reject message is not UTF-8") from exc
        self._respond(RejectResponse(CANISTER_REJECT, text))

    # cycles

    def _ic0_msg_cycles_available128(self, dst: int) -> None:
        self.mem.write(dst, _le128(self._available()))

    def _ic0_msg_cycles_refunded128(self, dst: int) -> None:
        self.mem.write(dst, _le128(self.x.ctx.cycles_refunded))

    def _accept(self, max_amount: int) -> int:
        amount = min(max_amount, self._available())
        self.x.effects.cycles_accepted += amount
        return amount

    def _ic0_msg_cycles_accept128(self, high: int, low: int, dst: int) -> None:
        self.mem.write(dst, _le128(self._accept(_u128(high, low))))

    def _ic0_cycles_burn128(self, high: int, low: int, dst: int) -> None:
        amount = min(_u128(high, low), self._liquid())
        self.x.effects.cycles_burned += amount
        self.mem.write(dst, _le128(amount))

    def _ic0_canister_cycle_balance128(self, dst: int) -> None:
        self.mem.write(dst, _le128(max(0, self._balance())))

    def _ic0_canister_liquid_cycle_balance128(self, dst: int) -> None:
        self.mem.write(dst, _le128(self._liquid()))

    def _fits64(self, value: int) -> int:
        if value > MASK64:
            raise Trapped("cycles amount exceeds 64-bit representation")
        return _signed64(value)

    def _ic0_msg_cycles_available(self) -> int:
        return self._fits64(self._available())

    def _ic0_msg_cycles_refunded(self) -> int:
        return self._fits64(self.x.ctx.cycles_refunded)

    def _ic0_msg_cycles_accept(self, max_amount: int) -> int:
        return _signed64(self._accept(max_amount))

    def _ic0_canister_cycle_balance(self) -> int:
        return self._fits64(max(0, self._balance()))

    # self, status, version

    def _ic0_canister_self_size(self) -> int:
        return len(self.x.system.canister_id)

    def _ic0_canister_self_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("canister_self", self.x.system.canister_id, dst, offset, size)

    def _ic0_subnet_self_size(self) -> int:
        return len(self.x.system.subnet_id)

    def _ic0_subnet_self_copy(self, dst: int, offset: int, size: int) -> None:
        self._copy_blob("subnet_self", self.x.system.subnet_id, dst, offset, size)

    def _ic0_canister_status(self) -> int:
        return int(self.x.system.status)

    def _ic0_canister_version(self) -> int:
        return self.x.system.canister_version

    # inter-canister calls

    def _pending(self, what: str) -> _PendingCall:
        pending = self.x.pending
        if pending is None:
            raise ContractViolation(f"ic0.{what}: there is no call under construction")
        return pending

    def _ic0_call_new(self, *args: int) -> None:
        callee_src, callee_size, name_src, name_size, rep_fun, rep_env, rej_fun, rej_env = args
        x = self.x
        if callee_size > MAX_PRINCIPAL_BYTES:
            raise ContractViolation(f"ic0.call_new: callee id of {callee_size} bytes is too long")
        callee = self._read(callee_src, callee_size)
        raw_name = self._read(name_src, name_size)
        try:
            method = raw_name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractViolation("ic0.call_new: the method name is not UTF-8") from exc
        # Starting a new call discards the one under construction (its cycles
        # go back to the balance, which _balance() reflects automatically).
        x.pending = _PendingCall(
            callee, method, Callback(rep_fun, rep_env), Callback(rej_fun, rej_env)
        )

    def _ic0_call_on_cleanup(self, fun: int, env: int) -> None:
        pending = self._pending("call_on_cleanup")
        if pending.on_cleanup is not None:
            raise ContractViolation("ic0.call_on_cleanup: a cleanup callback is already set")
        pending.on_cleanup = Callback(fun, env)

    def _ic0_call_data_append(self, src: int, size: int) -> None:
        pending = self._pending("call_data_append")
        limit = self.x.system.max_call_payload_bytes
        if len(pending.arg) + size > limit:
            raise ContractViolation(
                f"ic0.call_data_append: the call payload ({len(pending.arg) + size} bytes) "
                f"exceeds the limit of {limit} bytes"
            )
        pending.arg += self._read(src, size)

    def _ic0_call_with_best_effort_response(self, timeout_seconds: int) -> None:
        pending = self._pending("call_with_best_effort_response")
        if pending.timeout_seconds is not None:
            raise ContractViolation(
                "ic0.call_with_best_effort_response: the timeout is already set for this call"
            )
        pending.timeout_seconds = min(timeout_seconds, MAX_CALL_TIMEOUT_SECONDS)

    def _add_cycles(self, amount: int) -> None:
        pending = self._pending("call_cycles_add128")
        if amount > self._liquid():
            raise ContractViolation(
                f"ic0.call_cycles_add128: canister {self.x.system.canister_id.hex()} cannot "
                f"attach {amount} cycles, only {self._liquid()} are available"
            )
        pending.cycles += amount

    def _ic0_call_cycles_add128(self, high: int, low: int) -> None:
        self._add_cycles(_u128(high, low))

    def _ic0_call_cycles_add(self, amount: int) -> None:
        self._add_cycles(amount)

    def _call_fee(self, method_bytes: int, payload_bytes: int) -> int:
        s = self.x.system
        fee = s.cost_per_call + s.cost_per_byte * (method_bytes + payload_bytes)
        return fee * s.subnet_size // REFERENCE_SUBNET_SIZE

    def _queue_full(self, callee: bytes) -> bool:
        room = self.x.system.call_queue_room
        if room is None:
            return False
        queued_now = sum(1 for call in self.x.effects.calls if call.callee == callee)
        return queued_now >= room(callee)

    def _ic0_call_perform(self) -> int:
        x = self.x
        pending = self._pending("call_perform")
        x.pending = None
        if self._queue_full(pending.callee):
            # The IC's "Request queue full": call_perform fails synchronously
            # with SYS_TRANSIENT and the call is never sent.
            return 2
        fee = self._call_fee(len(pending.method.encode()), len(pending.arg))
        if self._liquid() < fee:
            return 2  # SYS_FATAL-like: not enough cycles above the freezing limit
        x.effects.cycles_sent += pending.cycles
        x.effects.calls.append(
            OutgoingCall(
                callee=pending.callee,
                method=pending.method,
                arg=bytes(pending.arg),
                cycles=pending.cycles,
                on_reply=pending.on_reply,
                on_reject=pending.on_reject,
                on_cleanup=pending.on_cleanup,
                timeout_seconds=pending.timeout_seconds,
            )
        )
        return 0

    # stable memory

    def _ic0_stable64_size(self) -> int:
        return self.stable.pages

    def _ic0_stable64_grow(self, new_pages: int) -> int:
        return self.stable.grow(new_pages)

    def _ic0_stable64_write(self, offset: int, src: int, size: int) -> None:
        self.stable.check(offset, size)
        self.stable.write(offset, self._read(src, size))

    def _ic0_stable64_read(self, dst: int, offset: int, size: int) -> None:
        self._charge(size)
        self.mem.write(dst, self.stable.read(offset, size))

    def _check32(self) -> None:
        if self.stable.size > 1 << 32:
            raise Trapped("32 bit stable memory api used on a memory larger than 4GB")

    def _ic0_stable_size(self) -> int:
        self._check32()
        return self.stable.pages

    def _ic0_stable_grow(self, new_pages: int) -> int:
        self._check32()
        if (self.stable.pages + new_pages) * WASM_PAGE > 1 << 32:
            return -1
        return self.stable.grow(new_pages)

    def _ic0_stable_write(self, offset: int, src: int, size: int) -> None:
        self._check32()
        self._ic0_stable64_write(offset, src, size)

    def _ic0_stable_read(self, dst: int, offset: int, size: int) -> None:
        self._check32()
        self._ic0_stable64_read(dst, offset, size)

    # certification, time, timer, counters

    def _ic0_certified_data_set(self, src: int, size: int) -> None:
        if size > MAX_CERTIFIED_DATA:
            raise ContractViolation(
                f"ic0.certified_data_set: certified data of {size} bytes exceeds "
                f"{MAX_CERTIFIED_DATA} bytes"
            )
        self.x.effects.certified_data = self._read(src, size)

    def _certificate(self) -> bytes | None:
        x = self.x
        return x.system.certificate() if x.cls in ("NRQ", "CQ") else None

    def _ic0_data_certificate_present(self) -> int:
        return int(self._certificate() is not None)

    def _ic0_data_certificate_size(self) -> int:
        cert = self._certificate()
        if cert is None:
            raise ContractViolation("ic0.data_certificate_size: no certificate is present")
        return len(cert)

    def _ic0_data_certificate_copy(self, dst: int, offset: int, size: int) -> None:
        cert = self._certificate()
        if cert is None:
            raise ContractViolation("ic0.data_certificate_copy: no certificate is present")
        self._copy_blob("data_certificate", cert, dst, offset, size)

    def _ic0_time(self) -> int:
        return self.x.system.time_ns

    def _ic0_global_timer_set(self, timestamp: int) -> int:
        e = self.x.effects
        previous = self.x.system.global_timer if e.global_timer is None else e.global_timer
        e.global_timer = timestamp
        return _signed64(previous)

    def _ic0_performance_counter(self, counter_type: int) -> int:
        if counter_type not in (0, 1):
            raise ContractViolation(
                f"ic0.performance_counter: unknown counter type {_signed64(counter_type)}"
            )
        if self._x is None:
            return 0
        # Counter 1 (call context) is approximated by this execution's count.
        return self._x.limit - self.mem.get_fuel()

    def _ic0_is_controller(self, src: int, size: int) -> int:
        if size > MAX_PRINCIPAL_BYTES:
            raise ContractViolation(
                f"ic0.is_controller: {size} bytes are not a valid principal (at most 29)"
            )
        principal = self._read(src, size)
        if self._x is None:
            return 0
        return int(principal in self._x.system.controllers)

    def _ic0_in_replicated_execution(self) -> int:
        return int(self._cls not in NON_REPLICATED)

    # costs (approximate, see localnet.cycles for the replica's fees)

    def _ic0_cost_call(self, method_size: int, payload_size: int, dst: int) -> None:
        fee = self._call_fee(method_size, payload_size) if self._x else 0
        reservation = 0
        if self._x:
            s = self._x.system
            reservation = s.cost_per_byte * s.max_response_bytes
            reservation = reservation * s.subnet_size // REFERENCE_SUBNET_SIZE
        self.mem.write(dst, _le128(fee + reservation))

    def _ic0_cost_create_canister(self, dst: int) -> None:
        size = self._x.system.subnet_size if self._x else REFERENCE_SUBNET_SIZE
        self.mem.write(dst, _le128(CREATE_CANISTER_FEE * size // REFERENCE_SUBNET_SIZE))

    def _ic0_cost_http_request(self, request_size: int, max_response: int, dst: int) -> None:
        n = self._x.system.subnet_size if self._x else REFERENCE_SUBNET_SIZE
        cost = (3_000_000 + 60_000 * n) * n + 400 * n * request_size + 800 * n * max_response
        self.mem.write(dst, _le128(cost))

    # debugging

    def _ic0_debug_print(self, src: int, size: int) -> None:
        text = self.mem.read(src, size).decode("utf-8", errors="replace")
        if self._x is not None:
            self._x.effects.logs.append(text)
            if self._x.system.log is not None:
                self._x.system.log(text)

    def _ic0_trap(self, src: int, size: int) -> None:
        raise CalledTrap(self.mem.read(src, size).decode("utf-8", errors="replace"))
