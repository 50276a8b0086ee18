"""The canister execution sandbox: one wasmtime instance per canister.

:class:`WasmEngine` compiles canister modules (once per module hash) with the
settings the IC's semantics need: 64-bit memories, fuel as the instruction
counter, and a heap that never moves, so its base address stays valid for
the host functions and for dirty-page tracking.

:class:`CanisterSandbox` runs one execution at a time (see
``localnet.execution`` for the contract). Executions are atomic: a trap, an
exhausted instruction limit or a System API misuse rolls back the heap, the
stable memory and every mutable global; non-replicated executions (queries)
are always rolled back. Two rollback strategies exist (``localnet.rollback``):

* ``"dirty"``: the heap is write-protected with userfaultfd (WP_ASYNC) and
  the written pages are listed with PAGEMAP_SCAN (see ``localnet.dirty``).
  A shadow copy holds the committed heap; a successful replicated execution
  copies its written pages into the shadow, a rolled-back one copies them
  back from it. Cost: proportional to what the execution wrote.
* ``"copy"``: the reference. The whole heap is saved before every execution
  and restored after a rollback. Cost: proportional to the heap size.

``"auto"`` picks dirty tracking when the kernel allows it (logged once).
Stable memory is host-owned and keeps an undo log in both modes (a full copy
in ``"copy"`` mode).

Wasm memories cannot shrink. When a replicated execution that grew the heap
is rolled back, the instance is rebuilt from the committed state (rare: a
trap after ``memory.grow``). When a *non-replicated* execution grew it, the
extra pages are zeroed and kept: queries are frequent and rebuilding would
cost a full heap copy each time. The canister can observe this only through
``memory.size``; ``heap_size`` and :meth:`CanisterSandbox.capture` report the
committed size.

Composite queries: their state changes must survive until their callbacks
ran, yet never persist. An execution in a composite query returns them in
``ExecResult.query_state`` (the pages it wrote, stable memory, globals); the
replica passes that back in ``MessageContext.query_state`` for the next
callback of the same query call, which runs on top of it and is rolled back
as well.

The module's start function does not run during instantiation (see
``localnet.wasm_module.instrument``) but afterwards, once a kept heap is in
place, and not at all when a complete saved state (heap and globals) is
loaded.

Sleeping: a sandbox not in use may give its instance back (see
``localnet.residency``, which decides when). Its committed heap and stable
memory then exist only as a page image on disk (``localnet.spill``); its
globals, sizes and journal bookkeeping stay in memory. The next execution
instantiates the module again, writes the pages back and continues as if
nothing happened; :meth:`CanisterSandbox.capture` and
:meth:`CanisterSandbox.take_delta` read a sleeping sandbox's image without
waking it. Memories are written sparsely everywhere (only pages that are
not zero), so a canister's RSS follows what it wrote, not its heap size.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi
from wasmtime._extern import wrap_extern

from localnet import dirty
from localnet.errors import ErrorCode
from localnet.execution import EntryKind, ExecResult, MessageContext, SystemState
from localnet.residency import Residency, ResidencyLimits
from localnet.rollback import GlobalsAccess, Rollback, pick_rollback
from localnet.spill import PAGE, PageImage, Spill, SpillRef
from localnet.state import wasm_hash
from localnet.system_api import (
    NON_REPLICATED,
    WASM_PAGE,
    ApiTrap,
    ExecEffects,
    MemoryAccess,
    OutOfInstructions,
    StableMemory,
    SystemApi,
    api_class,
    importable,
    linked_import,
    signature,
)
from localnet.wasm_module import (
    GLOBAL_EXPORT_PREFIX,
    MEMORY_EXPORT,
    START_EXPORT,
    TABLE_EXPORT,
    InvalidModule,
    ModuleInfo,
    decompress,
    instrument,
    parse,
)

__all__ = [
    "CanisterSandbox",
    "InvalidModule",
    "MemoryImage",
    "SparseImage",
    "WasmEngine",
    "sparse_pages",
]

log = logging.getLogger(__name__)
_WASMTIME_VERSION = importlib.metadata.version("wasmtime")

GiB = 1024**3
DEFAULT_MAX_HEAP_BYTES = 6 * GiB
# Fuel for the Wasm start function, which runs during instantiation.
START_FUEL = 300_000_000_000
_METHOD_PREFIXES = {
    "canister_update ": EntryKind.UPDATE,
    "canister_query ": EntryKind.QUERY,
    "canister_composite_query ": EntryKind.COMPOSITE_QUERY,
}
_EXPORT_PREFIX_OF_KIND = {
    EntryKind.UPDATE: "canister_update ",
    EntryKind.QUERY: "canister_query ",
    EntryKind.REPLICATED_QUERY: "canister_query ",
    EntryKind.COMPOSITE_QUERY: "canister_composite_query ",
}
# Executions the Wasm memory limit applies to (the spec exempts queries,
# callbacks, timers, heartbeats and pre_upgrade).
_MEMORY_LIMITED = {EntryKind.UPDATE, EntryKind.INIT, EntryKind.POST_UPGRADE}
_CALLBACK_KINDS = {EntryKind.REPLY_CALLBACK, EntryKind.REJECT_CALLBACK, EntryKind.CLEANUP}
_TRAP_WORDS = {
    wasmtime.TrapCode.UNREACHABLE: "unreachable",
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: "heap out of bounds",
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: "integer division by 0",
    wasmtime.TrapCode.STACK_OVERFLOW: "stack overflow",
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: "table out of bounds",
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: "indirect call to null",
    wasmtime.TrapCode.BAD_SIGNATURE: "indirect call signature mismatch",
    wasmtime.TrapCode.INTEGER_OVERFLOW: "integer overflow",
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: "invalid conversion to integer",
    wasmtime.TrapCode.HEAP_MISALIGNED: "heap misaligned",
}


@dataclass
class MemoryImage:
    """A canister's memories and globals: snapshots, upgrades, persistence."""

    heap: bytes
    stable: bytes
    globals: list[int | float]


@dataclass
class SparseImage:
    """A canister's memories as their non-zero 4 KiB pages (the rest is zero) and
    its globals: what --state-dir and sleeping sandboxes keep."""

    heap_size: int
    heap: list[tuple[int, bytes]]
    stable_size: int
    stable: list[tuple[int, bytes]]
    globals: list[int | float]

    @classmethod
    def of(cls, heap: bytes, stable: bytes, globals_: list[int | float]) -> SparseImage:
        return cls(len(heap), sparse_pages(heap), len(stable), sparse_pages(stable), list(globals_))


@dataclass
class MemoryDelta:
    """What commits changed since the last :meth:`CanisterSandbox.take_delta`.

    ``heap`` / ``stable`` list (offset, current bytes) pieces, or are None
    when everything must be taken (after loading, a rebuild, or in the
    full-copy rollback mode, which does not know what was written).
    """

    heap_size: int
    heap: list[tuple[int, bytes]] | None
    stable_size: int
    stable: list[tuple[int, bytes]] | None
    globals: list[int | float]

    @property
    def empty(self) -> bool:
        return self.heap == [] and self.stable == []


@dataclass(frozen=True)
class _Compiled:
    module: wasmtime.Module
    info: ModuleInfo
    pointer: str  # "i64" for 64-bit memories, else "i32"
    global_types: tuple[str, ...]  # of the mutable globals, in index order
    # Shared by every instance: imports resolved once (against the engine's
    # linker), the method table, the export names.
    pre: wasmtime.InstancePre
    methods: dict[str, EntryKind]
    export_names: frozenset[str]


class WasmEngine:
    """Compiles canister modules; one per replica, shared by its sandboxes.

    It also owns the sandboxes' :class:`~localnet.residency.Residency` (which
    of them keep a live instance) and the canonical copy of every module
    installed (:meth:`intern`): 10,000 canisters of one module hold one copy.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        max_heap_bytes: int = DEFAULT_MAX_HEAP_BYTES,
        residency: ResidencyLimits | Residency | None = None,
    ) -> None:
        self.max_heap_bytes = max_heap_bytes
        self.heap_reservation = -(-max_heap_bytes // WASM_PAGE) * WASM_PAGE
        config = wasmtime.Config()
        config.wasm_memory64 = True
        config.consume_fuel = True
        # A non-moving heap inside one big reservation: host pointers and the
        # userfaultfd registration stay valid across memory.grow.
        config.memory_may_move = False
        config.memory_reservation = self.heap_reservation
        config.memory_reservation_for_growth = 0
        # Plain anonymous memory (no copy-on-write image of the data
        # segments): userfaultfd write-protection works on it.
        config.memory_init_cow = False
        config.max_wasm_stack = 1024 * 1024  # wasmtime caps it at its async stack (2 MiB)
        self._config_key = (
            f"wasmtime=={_WASMTIME_VERSION};memory64;fuel;reservation={self.heap_reservation}"
        )
        self.engine = wasmtime.Engine(config)
        self.cache_dir = cache_dir
        self.residency = residency if isinstance(residency, Residency) else Residency(residency)
        # Keyed by the uploaded bytes themselves: a bytes object caches its
        # hash, so looking up an interned module again costs nothing.
        self._modules: dict[bytes, _Compiled] = {}
        self._interned: dict[bytes, bytes] = {}
        self._by_hash: dict[bytes, bytes] = {}
        self._linkers: dict[str, wasmtime.Linker] = {}

    def compile(self, wasm: bytes) -> _Compiled:
        """Validate and compile ``wasm`` (raw or gzip), once per distinct module."""
        compiled = self._modules.get(wasm)
        if compiled is None:
            compiled = self._compile(decompress(wasm))
            self._modules[self.intern(wasm)] = compiled
        return compiled

    def intern(self, wasm: bytes | bytearray) -> bytes:
        """The one copy of this module's bytes the engine keeps (equal to ``wasm``)."""
        key = bytes(wasm)
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = key
            self._by_hash[wasm_hash(key)] = key
        return found

    def interned(self, sha256: bytes) -> bytes | None:
        """The interned module whose SHA-256 is ``sha256``, if there is one."""
        return self._by_hash.get(sha256)

    def _compile(self, raw: bytes) -> _Compiled:
        info = parse(raw)
        pointer = "i64" if info.memory64 else "i32"
        if info.memories > 1:
            raise InvalidModule(f"the module declares {info.memories} memories; at most 1")
        instrumented = instrument(raw, info)
        module = self._load_or_compile(instrumented)
        _check_imports(module, pointer)
        _check_exports(module)
        types = tuple(g.valtype for g in info.mutable_globals)
        try:
            pre = self._linker(pointer).instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"the module's imports cannot be linked: {exc}") from exc
        methods = _methods(info)
        return _Compiled(module, info, pointer, types, pre, methods, frozenset(info.export_names()))

    def _linker(self, pointer: str) -> wasmtime.Linker:
        """The ``ic0`` host functions for ``pointer``-wide memories, defined once."""
        linker = self._linkers.get(pointer)
        if linker is None:
            linker = wasmtime.Linker(self.engine)
            for name in importable(pointer):
                params, results = signature(name, pointer) or ([], [])
                ty = wasmtime.FuncType(
                    [_VALTYPES[t]() for t in params], [_VALTYPES[t]() for t in results]
                )
                linker.define_func("ic0", name, ty, linked_import(name, pointer))
            self._linkers[pointer] = linker
        return linker

    def _load_or_compile(self, wasm: bytes) -> wasmtime.Module:
        path = None
        if self.cache_dir is not None:
            digest = hashlib.sha256(self._config_key.encode() + wasm).hexdigest()
            path = self.cache_dir / f"{digest}.cwasm"
            if path.exists():
                try:
                    return wasmtime.Module.deserialize_file(self.engine, str(path))
                except wasmtime.WasmtimeError:
                    log.warning("ignoring unusable compiled-module cache entry %s", path)
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"the Wasm module is not valid: {exc}") from exc
        if path is not None:
            _write_atomically(path, bytes(module.serialize()))
        return module


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _type_names(types: Any) -> list[str]:
    return [str(t) for t in types]


def _check_imports(module: wasmtime.Module, pointer: str) -> None:
    problems = []
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module != "ic0" or not isinstance(imp.type, wasmtime.FuncType):
            problems.append(f"{where} (only functions of module ic0 can be imported)")
            continue
        expected = signature(imp.name or "", pointer)
        if expected is None:
            problems.append(f"{where} (not a System API function localnet provides)")
            continue
        actual = (_type_names(imp.type.params), _type_names(imp.type.results))
        if actual != expected:
            problems.append(f"{where} has type {actual}, the System API defines {expected}")
    if problems:
        raise InvalidModule(
            "the module imports what localnet cannot provide: " + "; ".join(problems)
        )


def _check_exports(module: wasmtime.Module) -> None:
    seen: dict[str, str] = {}
    for exp in module.exports:
        name = exp.name
        if not name.startswith("canister_"):
            continue
        ty = exp.type
        if not isinstance(ty, wasmtime.FuncType) or ty.params or ty.results:
            raise InvalidModule(f"the export {name!r} must be a function of type () -> ()")
        for prefix in _METHOD_PREFIXES:
            if name.startswith(prefix):
                method = name[len(prefix) :]
                if method in seen:
                    raise InvalidModule(
                        f"method {method!r} is exported both as {seen[method]!r} and {name!r}"
                    )
                seen[method] = name


# --- the sandbox --------------------------------------------------------------


@dataclass
class _QueryState:
    """Uncommitted changes of a composite query call, carried between callbacks."""

    heap: list[tuple[int, bytes]]
    heap_size: int
    stable: list[tuple[int, bytes]]
    stable_size: int
    globals: list[int | float]


class CanisterSandbox:
    """A canister's Wasm instance with its memories; see the module docstring."""

    def __init__(
        self, engine: WasmEngine, compiled: _Compiled, stable: StableMemory, rollback: Rollback
    ) -> None:
        self._engine = engine
        self._compiled = compiled
        self._stable = stable
        self._rollback = rollback
        self._mem = MemoryAccess()
        self._api = SystemApi(self._mem, stable)
        self._store: wasmtime.Store | None = None
        self._instance: wasmtime.Instance | None = None
        self._memory: wasmtime.Memory | None = None
        self._table: wasmtime.Table | None = None
        self._globals: list[wasmtime.Global] = []
        self._global_access: GlobalsAccess | None = None
        self._funcs: dict[str, wasmtime.Func | None] = {}
        self._committed = 0  # committed heap size in bytes
        self._committed_globals: list[int | float] = []
        self._methods = compiled.methods
        self._closed = False
        # Residency (see localnet.residency): executions in progress, whether
        # the instance was given back, and the page image of the committed
        # memories while it is valid (asleep, or awake with nothing committed since).
        self.busy = 0
        self._asleep = False
        self._image: SpillRef | None = None
        self._image_spill: Spill | None = None
        # Heap ranges committed and not yet taken by take_delta, kept over a sleep.
        self._pending_heap: list[tuple[int, int]] | None = None
        # memory.size when it fell asleep: queries may have grown the memory
        # beyond the committed size (see the module docstring); waking keeps
        # that, so sleeping changes nothing a canister can observe.
        self._physical_asleep = 0
        # Called whenever what take_delta/has_delta report may have moved (a
        # commit, a sleep or wake, a rebuild): the canister table marks the
        # canister dirty for --state-dir's journal (localnet.canisters).
        self.on_change: Callable[[], None] | None = None

    # --- construction -------------------------------------------------------

    @classmethod
    def load(
        cls,
        engine: WasmEngine,
        wasm: bytes,
        *,
        heap: bytes | None = None,
        stable: bytes = b"",
        globals: list[int | float] | None = None,
        rollback: str = "auto",
    ) -> CanisterSandbox:
        """Validate and instantiate ``wasm``, optionally with given memories/globals.

        With ``heap`` alone (an upgrade keeping the Wasm memory) the module's
        active data segments are written over that heap and then the start
        function runs on it, in the IC's order. With ``globals`` too, the whole
        instance state is being restored (snapshot, --state-dir): neither runs
        again. ``canister_init`` is the replica's business.
        """
        compiled = engine.compile(wasm)
        strategy = pick_rollback(rollback, engine.heap_reservation)
        memory = StableMemory(stable, full_copy=strategy.name == "copy")
        sandbox = cls(engine, compiled, memory, strategy)
        try:
            sandbox._instantiate()
            if heap is not None:
                sandbox._replace_heap(heap)
                if globals is None:
                    sandbox._write_data_segments()
            if globals is not None:
                # A complete saved state: the start function ran long ago.
                sandbox._set_globals(globals)
            else:
                sandbox._run_start()
            sandbox._committed = sandbox._physical()
            sandbox._committed_globals = sandbox._read_globals()
            strategy.adopt(sandbox._mem.base, sandbox._committed)
        except BaseException:
            sandbox.close()
            raise
        engine.residency.admit(sandbox)
        return sandbox

    @classmethod
    def load_sleeping(
        cls, engine: WasmEngine, wasm: bytes, image: SparseImage, *, rollback: str = "auto"
    ) -> CanisterSandbox:
        """A sandbox holding a complete saved state, asleep: nothing is instantiated
        before its first execution (--state-dir starts 10,000 canisters this way)."""
        compiled = engine.compile(wasm)
        strategy = pick_rollback(rollback, engine.heap_reservation)
        if len(image.globals) != len(compiled.global_types):
            raise InvalidModule(
                f"{len(image.globals)} global values given, the module has "
                f"{len(compiled.global_types)} mutable globals"
            )
        memory = StableMemory(b"", full_copy=strategy.name == "copy")
        memory.size = -(-image.stable_size // WASM_PAGE) * WASM_PAGE
        sandbox = cls(engine, compiled, memory, strategy)
        minimum = compiled.info.memory_min_pages * WASM_PAGE if compiled.info.memories else 0
        sandbox._committed = max(-(-image.heap_size // WASM_PAGE) * WASM_PAGE, minimum)
        sandbox._committed_globals = list(image.globals)
        spill = engine.residency.spill
        sandbox._image = spill.put(
            PageImage(_nonzero_only(image.heap), _nonzero_only(image.stable))
        )
        sandbox._image_spill = spill
        sandbox._asleep = True
        return sandbox

    def _instantiate(self) -> None:
        """A fresh store and instance: active data segments load, ``start`` waits."""
        store = wasmtime.Store(self._engine.engine)
        store.set_fuel(START_FUEL)  # instantiation (active data segments) costs fuel
        try:
            instance = self._compiled.pre.instantiate(store)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise InvalidModule(f"the module cannot be instantiated: {exc}") from exc
        self._bind(store, instance)

    def _run_start(self) -> None:
        """Run the module's start function (instrument() deferred it to here)."""
        start = self._export(START_EXPORT)
        if start is None:
            return
        assert self._store is not None
        self._store.set_fuel(START_FUEL)
        try:
            with self._api.running():
                start(self._store)
        except ApiTrap as exc:
            raise InvalidModule(f"the Wasm start function trapped: {exc.message}") from exc
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise InvalidModule(f"the Wasm start function trapped: {exc}") from exc

    def _bind(self, store: wasmtime.Store, instance: wasmtime.Instance) -> None:
        memory = _instance_export(store, instance, MEMORY_EXPORT)
        table = _instance_export(store, instance, TABLE_EXPORT)
        self._store, self._instance = store, instance
        self._memory = memory if isinstance(memory, wasmtime.Memory) else None
        self._table = table if isinstance(table, wasmtime.Table) else None
        self._globals = []
        for g in self._compiled.info.mutable_globals:
            glob = _instance_export(store, instance, f"{GLOBAL_EXPORT_PREFIX}{g.index}")
            assert isinstance(glob, wasmtime.Global)
            self._globals.append(glob)
        self._funcs = {}
        self._global_access = GlobalsAccess(store, self._globals)
        self._mem.attach(store, self._memory)

    def _physical(self) -> int:
        return self._mem.length()

    def _grow_to(self, size: int) -> None:
        if size <= self._physical():
            return
        if self._memory is None:
            raise InvalidModule("the module has no memory to load a heap into")
        assert self._store is not None
        pages = -(-(size - self._physical()) // WASM_PAGE)
        try:
            self._memory.grow(self._store, pages)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"cannot grow the Wasm memory to {size} bytes: {exc}") from exc

    def _write_data_segments(self) -> None:
        for offset, data in self._compiled.info.data_segments:
            self._grow_to(offset + len(data))
            ctypes.memmove(self._mem.base + offset, data, len(data))

    def _clear_heap(self) -> None:
        """Zero the whole heap by giving its pages back (a fresh instance's data segments)."""
        physical = self._physical()
        if physical:
            dirty.discard(self._mem.base, 0, physical)

    def _replace_heap(self, heap: bytes) -> None:
        """Make the heap equal ``heap`` (zero beyond it), writing only non-zero pages."""
        self._grow_to(len(heap))
        self._clear_heap()
        base, view, zero = self._mem.base, memoryview(heap), _ZERO_PAGE
        for offset in range(0, len(heap), PAGE):
            page = view[offset : offset + PAGE]
            if page != zero[: len(page)]:
                ctypes.memmove(base + offset, heap[offset : offset + PAGE], len(page))

    def _read_globals(self) -> list[int | float]:
        return self._global_access.read() if self._global_access else []

    def _set_globals(
        self, values: list[int | float], current: list[int | float] | None = None
    ) -> None:
        if len(values) != len(self._globals):
            raise InvalidModule(
                f"{len(values)} global values given, the module has {len(self._globals)} "
                "mutable globals"
            )
        assert self._global_access is not None
        self._global_access.write(values, current)

    def _rebuild(self) -> None:
        """A new instance holding the committed state (memory cannot shrink)."""
        self._changed()
        old_store = self._store
        self._instantiate()
        self._grow_to(self._committed)
        self._clear_heap()
        self._rollback.restore_into(self._mem.base, self._committed)
        self._set_globals(self._committed_globals)
        del old_store

    # --- sleeping (see localnet.residency) -------------------------------------

    @property
    def asleep(self) -> bool:
        return self._asleep

    def sleep(self, spill: Spill) -> None:
        """Give the instance back; the committed memories stay in ``spill``.

        Atomic: if the image cannot be written, the sandbox stays awake as it was.
        """
        if self._asleep or self._closed:
            return
        if self.busy:
            raise RuntimeError("a sandbox in use cannot sleep")
        self._changed()
        if self._image is None:
            image = PageImage(
                self._rollback.committed_pages(self._mem.base, self._committed),
                self._stable.nonzero_pages(),
            )
            self._image, self._image_spill = spill.put(image), spill
        self._pending_heap = self._rollback.pending_committed
        self._physical_asleep = self._physical()
        self._rollback.close()
        self._stable.release()
        self._drop_instance()
        self._asleep = True

    def wake(self, spill: Spill) -> None:
        """Instantiate again and load the committed memories (the image stays valid)."""
        if not self._asleep:
            return
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        assert self._image is not None
        self._changed()
        image = spill.get(self._image)
        try:
            self._instantiate()
            self._grow_to(max(self._committed, self._physical_asleep))
            self._clear_heap()
            base = self._mem.base
            for offset, data in image.heap:
                ctypes.memmove(base + offset, data, min(len(data), self._committed - offset))
            self._set_globals(self._committed_globals)
            self._stable.restore(image.stable)
            self._rollback.adopt(base, self._committed, committed=self._pending_heap)
        except BaseException:
            self._rollback.close()
            self._stable.release()
            self._drop_instance()
            raise
        self._pending_heap = None
        self._asleep = False

    def _drop_instance(self) -> None:
        self._funcs = {}
        self._globals = []
        self._global_access = None
        self._memory = self._table = None
        self._instance = None
        self._store = None
        self._mem.detach()

    def _forget_image(self) -> None:
        if self._image is not None and self._image_spill is not None:
            self._image_spill.free(self._image)
        self._image = self._image_spill = None

    def _sleeping_image(self) -> PageImage:
        assert self._image is not None
        assert self._image_spill is not None
        return self._image_spill.get(self._image)

    # --- introspection ------------------------------------------------------

    def methods(self) -> dict[str, EntryKind]:
        return dict(self._methods)

    def method_kind(self, method: str) -> EntryKind | None:
        """The kind of an exported method (no copy of the table, unlike :meth:`methods`)."""
        return self._methods.get(method)

    def has_export(self, name: str) -> bool:
        return name in self._compiled.export_names

    def custom_section(self, name: str) -> bytes | None:
        return self._compiled.info.custom_sections.get(name)

    def global_values(self) -> list[int | float]:
        """The committed values of the mutable globals (as in :meth:`capture`)."""
        return list(self._committed_globals)

    def global_types(self) -> list[str]:
        """The Wasm types (``i32`` ...) of :attr:`MemoryImage.globals`, in order."""
        return list(self._compiled.global_types)

    @property
    def rollback_mode(self) -> str:
        return self._rollback.name

    @property
    def last_copied_bytes(self) -> int:
        """Heap bytes the last execution's commit or rollback copied (a statistic)."""
        return self._rollback.copied

    @property
    def heap_size(self) -> int:
        return self._committed

    @property
    def stable_size(self) -> int:
        return self._stable.size

    def capture(self) -> MemoryImage:
        """A full copy of the committed memories and globals (a sleeping sandbox stays asleep)."""
        with self._engine.residency.lock:
            if self._asleep:
                image = self._sleeping_image()
                return MemoryImage(
                    heap=_assemble(image.heap, self._committed),
                    stable=_assemble(image.stable, self._stable.size),
                    globals=list(self._committed_globals),
                )
            return MemoryImage(
                heap=ctypes.string_at(self._mem.base, self._committed) if self._committed else b"",
                stable=self._stable.snapshot(),
                globals=list(self._committed_globals),
            )

    def capture_sparse(self) -> SparseImage:
        """The committed memories as their non-zero pages (no full-size copies)."""
        with self._engine.residency.lock:
            if self._asleep:
                image = self._sleeping_image()
                heap, stable = image.heap, image.stable
            else:
                heap = self._rollback.committed_pages(self._mem.base, self._committed)
                stable = self._stable.nonzero_pages()
            return SparseImage(
                self._committed, heap, self._stable.size, stable, list(self._committed_globals)
            )

    def has_delta(self) -> bool:
        """Whether :meth:`take_delta` would report a change (cheap; never wakes).

        In full-copy mode the heap's changes are unknown (take_delta says None);
        --state-dir then relies on every execution charging cycles.
        """
        with self._engine.residency.lock:
            if self._asleep:
                heap_moved = self._pending_heap is None or bool(self._pending_heap)
            else:
                heap_moved = self._rollback.has_pending
            return heap_moved or self._stable.has_untaken()

    def take_delta(self) -> MemoryDelta:
        """The committed changes since the last call (for --state-dir's journal).

        A sleeping sandbox answers without waking when no bytes are needed:
        nothing changed, or everything did (None) and the caller reads
        :meth:`capture`.
        """
        residency = self._engine.residency
        with residency.lock:
            if self._asleep and not self._pending_heap and not self._stable.untaken_bytes():
                heap: list[tuple[int, bytes]] | None = None if self._pending_heap is None else []
                self._pending_heap = []
                return MemoryDelta(
                    heap_size=self._committed, heap=heap, stable_size=self._stable.size,
                    stable=self._stable.take_written(), globals=list(self._committed_globals),
                )  # fmt: skip
            with residency.using(self):
                return self._take_delta()

    def _take_delta(self) -> MemoryDelta:
        base = self._mem.base
        ranges = self._rollback.take_committed()
        heap = None
        if ranges is not None:
            heap = [(a, ctypes.string_at(base + a, min(b, self._committed) - a))
                    for a, b in _merged(ranges) if a < self._committed]  # fmt: skip
        return MemoryDelta(
            heap_size=self._committed,
            heap=heap,
            stable_size=self._stable.size,
            stable=self._stable.take_written(),
            globals=list(self._committed_globals),
        )

    def close(self) -> None:
        if self._closed:
            return
        residency = self._engine.residency
        with residency.lock:
            self._closed = True
            residency.forget(self)
            self._forget_image()
            self._rollback.close()  # unregister before wasmtime unmaps the memory
            self._stable.release()
            self._drop_instance()

    # --- execution ------------------------------------------------------------

    def execute(
        self, ctx: MessageContext, system: SystemState, instruction_limit: int
    ) -> ExecResult:
        """Run one entry point or callback atomically; see the module docstring."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        with self._engine.residency.using(self):
            return self._execute(ctx, system, instruction_limit)

    def _execute(
        self, ctx: MessageContext, system: SystemState, instruction_limit: int
    ) -> ExecResult:
        func, missing = self._entry(ctx)
        if func is None:
            return missing
        store = self._store
        assert store is not None
        # A query method run as an update replies but keeps no changes, as on the
        # IC (execute_replicated_query runs on a clone of the canister's state).
        replicated = api_class(ctx) not in NON_REPLICATED
        persists = replicated and ctx.kind is not EntryKind.REPLICATED_QUERY
        self._rollback.begin(self._mem.base, self._committed)
        self._stable.begin()
        if isinstance(ctx.query_state, _QueryState):
            self._apply_query_state(ctx.query_state)
        self._api.begin(ctx, system, instruction_limit)
        store.set_fuel(instruction_limit)
        try:
            trap = self._call(func, instruction_limit) or self._memory_limit_trap(ctx, system)
        except BaseException:
            # A bug on our side (or KeyboardInterrupt): leave the canister as it
            # was, then let the exception through.
            self._api.finish()
            self._undo(replicated)
            raise
        instructions = instruction_limit - store.get_fuel()
        logs = self._api.logs_so_far()
        effects = self._api.finish()
        if trap is not None:
            self._undo(replicated)
            return ExecResult(
                trapped=True, trap_message=trap[1], error_code=trap[0],
                instructions=instructions, logs=logs,
            )  # fmt: skip
        result = _result(effects, instructions)
        if not persists:
            if ctx.in_composite_query or ctx.kind is EntryKind.COMPOSITE_QUERY:
                result.query_state = self._query_state()
            self._undo(replicated=False)
        else:
            self._commit()
        return result

    def _memory_limit_trap(
        self, ctx: MessageContext, system: SystemState
    ) -> tuple[str, str] | None:
        """IC0539 if this execution grew the Wasm memory past ``wasm_memory_limit``."""
        limit = system.wasm_memory_limit
        physical = self._physical()
        if not limit or ctx.kind not in _MEMORY_LIMITED or physical <= max(limit, self._committed):
            return None
        return ErrorCode.CANISTER_WASM_MEMORY_LIMIT_EXCEEDED, (
            f"Canister exceeded its current Wasm memory limit of {limit} bytes. The peak Wasm "
            f"memory usage was {physical} bytes. If the canister reaches 4GiB, then it may stop "
            "functioning and may become unrecoverable. Please reach out to the canister owner to "
            "investigate the reason for the increased memory usage. It might be necessary to move "
            "data from the Wasm memory to the stable memory. If such high Wasm memory usage is "
            "expected and safe, then the developer can increase the Wasm memory limit in the "
            "canister settings."
        )

    def _entry(self, ctx: MessageContext) -> tuple[Any, ExecResult]:
        """The function to call, or None and the result to report instead."""
        if ctx.kind in _CALLBACK_KINDS:
            return self._callback(ctx)
        prefix = _EXPORT_PREFIX_OF_KIND.get(ctx.kind)
        name = prefix + ctx.method if prefix else ctx.kind.value
        func = self._export(name)
        if func is not None:
            return func, ExecResult()
        if prefix is None:  # a system method the module does not export: a no-op,
            # and without canister_inspect_message every ingress message is accepted.
            return None, ExecResult(message_accepted=ctx.kind is EntryKind.INSPECT_MESSAGE)
        kind = {EntryKind.UPDATE: "update", EntryKind.COMPOSITE_QUERY: "composite_query"}
        return None, ExecResult(
            trapped=True,
            error_code=ErrorCode.CANISTER_METHOD_NOT_FOUND,
            trap_message=f"Canister has no {kind.get(ctx.kind, 'query')} method '{ctx.method}'.",
        )

    def _export(self, name: str) -> wasmtime.Func | None:
        if name not in self._funcs:
            assert self._instance is not None
            assert self._store is not None
            func = _instance_export(self._store, self._instance, name)
            self._funcs[name] = func if isinstance(func, wasmtime.Func) else None
        return self._funcs[name]

    def _callback(self, ctx: MessageContext) -> tuple[Any, ExecResult]:
        cb = ctx.callback
        func = None
        table, store = self._table, self._store
        if cb is not None and table is not None and store is not None:
            func = table.get(store, cb.fun) if 0 <= cb.fun < table.size(store) else None
        if not isinstance(func, wasmtime.Func):
            fun = cb.fun if cb is not None else "none"
            return None, ExecResult(
                trapped=True,
                error_code=ErrorCode.CANISTER_FUNCTION_NOT_FOUND,
                trap_message=f"Canister requested to invoke a non-existent Wasm function "
                f"{fun} from table 0",
            )
        assert cb is not None
        env = _to_signed(cb.env, 64 if self._compiled.pointer == "i64" else 32)
        return (lambda store: func(store, env)), ExecResult()

    def _call(self, func: Any, limit: int) -> tuple[str, str] | None:
        """Call ``func``; the (error code, message) of its trap, or None."""
        store = self._store
        try:
            with self._api.running():
                func(store)
        except ApiTrap as exc:
            return exc.error_code, exc.message
        except wasmtime.Trap as exc:
            return _classify(exc, limit)
        except wasmtime.WasmtimeError as exc:
            message = f"Canister encountered a Wasm engine error: {exc}"
            return ErrorCode.CANISTER_WASM_ENGINE_ERROR, message
        return None

    # --- commit / rollback ----------------------------------------------------

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _commit(self) -> None:
        self._changed()
        self._forget_image()  # the committed state moves on
        physical = self._physical()
        self._rollback.commit(self._mem.base, physical)
        self._stable.commit()
        self._committed = physical
        self._committed_globals = self._read_globals()

    def _undo(self, replicated: bool) -> None:
        self._stable.rollback()
        physical = self._physical()
        if replicated and physical > self._committed:
            self._rebuild()
            return
        self._rollback.rollback(self._mem.base, physical, self._committed)
        self._set_globals(self._committed_globals, self._read_globals())

    def _query_state(self) -> _QueryState:
        physical = self._physical()
        return _QueryState(
            heap=self._rollback.written(self._mem.base, physical),
            heap_size=physical,
            stable=self._stable.written(),
            stable_size=self._stable.size,
            globals=self._read_globals(),
        )

    def _apply_query_state(self, qs: _QueryState) -> None:
        self._grow_to(qs.heap_size)
        for offset, data in qs.heap:
            ctypes.memmove(self._mem.base + offset, data, len(data))
        if qs.stable_size > self._stable.size:
            self._stable.grow((qs.stable_size - self._stable.size) // WASM_PAGE)
        for offset, data in qs.stable:
            self._stable.write(offset, data)
        self._set_globals(qs.globals)


_ZERO_PAGE = bytes(PAGE)
_VALTYPES = {
    "i32": wasmtime.ValType.i32,
    "i64": wasmtime.ValType.i64,
    "f32": wasmtime.ValType.f32,
    "f64": wasmtime.ValType.f64,
}


def sparse_pages(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, page) of the 4 KiB pages of ``data`` that are not all zeros."""
    view = memoryview(data)
    return [
        (offset, bytes(view[offset : offset + PAGE]))
        for offset in range(0, len(data), PAGE)
        if view[offset : offset + PAGE] != _ZERO_PAGE[: min(PAGE, len(data) - offset)]
    ]


def _nonzero_only(pages: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """``pages`` without the all-zero ones, each padded to a whole page."""
    out = []
    for offset, data in pages:
        if len(data) < PAGE:
            data = data + bytes(PAGE - len(data))
        if data != _ZERO_PAGE:
            out.append((offset, data))
    return out


def _assemble(pages: list[tuple[int, bytes]], size: int) -> bytes:
    """``size`` bytes: ``pages`` where given, zeros elsewhere."""
    out = bytearray(size)
    for offset, data in pages:
        out[offset : offset + len(data)] = data[: max(0, size - offset)]
    return bytes(out)


def _instance_export(store: wasmtime.Store, instance: wasmtime.Instance, name: str) -> Any:
    """One export of ``instance`` by name, or None.

    ``Instance.exports`` wraps every export of the module (a Motoko canister
    has ~100) to find one; the C API looks a name up directly.
    """
    try:
        raw = name.encode()
        item = _ffi.wasmtime_extern_t()
        found = _ffi.wasmtime_instance_export_get(
            store._context(), ctypes.byref(instance._instance), raw, len(raw), ctypes.byref(item)
        )
    except AttributeError:  # a wasmtime-py without these internals
        return instance.exports(store).get(name)
    return wrap_extern(item) if found else None


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _classify(trap: wasmtime.Trap, limit: int) -> tuple[str, str]:
    code = trap.trap_code
    if code is wasmtime.TrapCode.OUT_OF_FUEL:
        exc = OutOfInstructions(limit)
        return exc.error_code, exc.message
    words = _TRAP_WORDS.get(code) if code is not None else None
    return ErrorCode.CANISTER_TRAPPED, f"Canister trapped: {words or trap.message}"


def _methods(info: ModuleInfo) -> dict[str, EntryKind]:
    out = {}
    for e in info.exports:
        for prefix, kind in _METHOD_PREFIXES.items():
            if e.name.startswith(prefix):
                out[e.name[len(prefix) :]] = kind
    return out


def _to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _result(effects: ExecEffects, instructions: int) -> ExecResult:
    return ExecResult(
        response=effects.response,
        calls=effects.calls,
        instructions=instructions,
        cycles_accepted=effects.cycles_accepted,
        cycles_sent=effects.cycles_sent,
        global_timer=effects.global_timer,
        certified_data=effects.certified_data,
        logs=effects.logs,
        cycles_burned=effects.cycles_burned,
        message_accepted=effects.message_accepted,
    )
