"""Code on a canister: ``install_code``, ``install_chunked_code``, ``uninstall_code``
and the Wasm chunk store (``upload_chunk``, ``stored_chunks``, ``clear_chunk_store``).

Installing is atomic, as the spec requires: the new instance is built and its
``canister_init`` / ``canister_post_upgrade`` run *beside* the old one, and
only a fully successful install replaces it. A trap anywhere (``pre_upgrade``
included) leaves the canister exactly as it was: old module, heap, stable
memory and globals (``pre_upgrade`` ran on the old instance, so its memories
are restored from a copy taken before it ran).

Memory handling on upgrade follows ``determine_main_memory_handling``:

* stable memory is always kept;
* the Wasm heap is replaced, unless ``wasm_memory_persistence = opt keep``,
  which the new module may only ask for if it declares enhanced orthogonal
  persistence (custom section ``icp:private enhanced-orthogonal-persistence``);
  a kept heap gets the new module's active data segments written over it, and
  the Wasm start function runs on it before ``canister_post_upgrade`` (see
  ``CanisterSandbox.load``);
* a canister whose *current* module uses enhanced orthogonal persistence
  cannot be upgraded without saying ``keep`` or ``replace`` explicitly.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from typing import Any

from localnet import cycles
from localnet.errors import ErrorCode, Reject
from localnet.execution import EntryKind, ExecResult, MessageContext
from localnet.mgmt_base import (
    CHUNK_SLOT_BYTES,
    ManagementCall,
    canister_or_reject,
    charge,
    fail,
    freezing_limit,
    help_line,
    module_hash,
    record_change,
    require_controller,
    require_controller_or_self,
    text,
)
from localnet.mgmt_types import EMPTY_REPLY, encode_result, opt, principal_bytes, variant
from localnet.sandbox import CanisterSandbox, InvalidModule, MemoryImage, WasmEngine
from localnet.state import CanisterState
from localnet.wasm_module import ModuleInfo, decompress, parse

EOP_SECTION = "enhanced-orthogonal-persistence"
UNINSTALLED = "Canister has been uninstalled."


@dataclass(frozen=True)
class InstallMode:
    kind: str  # "install" | "reinstall" | "upgrade"
    skip_pre_upgrade: bool = False
    wasm_memory_persistence: str | None = None  # "keep" | "replace" | None

    @classmethod
    def decode(cls, value: dict[str, Any]) -> InstallMode:
        kind, payload = variant(value)
        if kind != "upgrade":
            return cls(kind)
        options = opt(payload) or {}
        persistence = opt(options.get("wasm_memory_persistence", []))
        return cls(
            kind,
            skip_pre_upgrade=bool(opt(options.get("skip_pre_upgrade", []))),
            wasm_memory_persistence=None if persistence is None else variant(persistence)[0],
        )


@dataclass(frozen=True)
class Module:
    """A module as uploaded (maybe gzip-compressed; the engine's one copy of
    those bytes, see ``WasmEngine.intern``) and what parsing it revealed."""

    uploaded: bytes
    info: ModuleInfo

    @property
    def uses_eop(self) -> bool:
        return uses_eop(self.info.custom_sections)


@functools.lru_cache(maxsize=32)
def module_info(uploaded: bytes) -> ModuleInfo:
    """What parsing a module reveals; cached per module (installing one module
    into many canisters parses it once)."""
    return parse(decompress(uploaded))


def uses_eop(custom_sections: dict[str, bytes]) -> bool:
    """Whether a module declares enhanced orthogonal persistence (any visibility)."""
    return any(
        f"icp:{visibility} {EOP_SECTION}" in custom_sections for visibility in ("private", "public")
    )


# --- the chunk store ------------------------------------------------------------------


def upload_chunk(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller_or_self(canister, call.caller)
    chunk: bytes = args["chunk"]
    limits = call.host.limits
    charge(
        canister,
        call,
        cycles.execution_fee(cycles.UPLOAD_CHUNK_INSTRUCTIONS),
        "Error from Wasm chunk store: Error charging for 'upload_chunk': {detail}.",
    )
    digest = hashlib.sha256(chunk).digest()
    if digest not in canister.chunk_store:
        if len(chunk) > limits.wasm_chunk_bytes:
            raise _chunk_store_error(
                f"Wasm chunk size {len(chunk)} exceeds the maximum chunk size of "
                f"{limits.wasm_chunk_bytes}"
            )
        if len(canister.chunk_store) >= limits.max_chunks_in_store:
            raise _chunk_store_error(
                f"Wasm chunk store has already reached maximum capacity of "
                f"{limits.max_chunks_in_store * CHUNK_SLOT_BYTES} bytes or the maximum number "
                f"of entries, {limits.max_chunks_in_store}, has been reached"
            )
        _check_memory_affordable(canister, call, CHUNK_SLOT_BYTES)
        canister.chunk_store[digest] = bytes(chunk)
    return encode_result("upload_chunk", {"hash": digest})


def stored_chunks(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller_or_self(canister, call.caller)
    return encode_result("stored_chunks", [{"hash": h} for h in sorted(canister.chunk_store)])


def clear_chunk_store(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller_or_self(canister, call.caller)
    canister.chunk_store.clear()
    return EMPTY_REPLY


def _chunk_store_error(message: str) -> Reject:
    return fail(
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        f"Error from Wasm chunk store: {message}."
        + help_line(
            "Use the `stored_chunks` API to check which hashes are present or top up the "
            "canister if it is low on cycles.",
            "wasm-chunk-store-error",
        ),
    )


def _check_memory_affordable(canister: CanisterState, call: ManagementCall, extra: int) -> None:
    """Growing memory by ``extra`` bytes must not push the canister below its freezing limit."""
    limit = freezing_limit(canister, extra)
    if canister.cycles >= limit:
        return
    raise fail(
        ErrorCode.INSUFFICIENT_CYCLES_IN_MEMORY_GROW,
        f"Canister cannot grow memory by {extra} bytes due to insufficient cycles. At least "
        f"{limit - canister.cycles} additional cycles are required."
        + help_line(
            "Top up the canister with more cycles.", "insufficient-cycles-in-memory-grow-1"
        ),
    )


# --- install_code / install_chunked_code -------------------------------------------------


def install_code(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    uploaded: bytes = args["wasm_module"]
    limit = call.host.limits.max_direct_wasm_bytes
    if len(uploaded) > limit:
        raise _invalid_wasm(
            canister,
            f"the module is {len(uploaded)} bytes but install_code accepts at most {limit}; "
            "upload it with upload_chunk and install it with install_chunked_code",
        )
    _install(call, canister, InstallMode.decode(args["mode"]), uploaded, args["arg"])
    return EMPTY_REPLY


def install_chunked_code(call: ManagementCall, args: dict[str, Any]) -> bytes:
    host = call.host
    target = canister_or_reject(host, principal_bytes(args["target_canister"]))
    store_id = opt(args["store_canister"])
    store = target if store_id is None else canister_or_reject(host, principal_bytes(store_id))
    require_controller(target, call.caller)
    require_controller_or_self(store, call.caller)
    expected: bytes = args["wasm_module_hash"]
    if len(expected) != 32:
        raise fail(ErrorCode.CANISTER_CONTRACT_VIOLATION, f"Invalid wasm hash {list(expected)}")
    digests = []
    for entry in args["chunk_hashes_list"]:
        digest: bytes = entry["hash"]
        if len(digest) != 32:
            raise _chunk_store_error("Chunk hash is invalid. The length is not 32")
        if digest not in store.chunk_store:
            raise _chunk_store_error(f"Chunk hash {digest.hex()} was not found")
        digests.append(digest)
    uploaded, actual = _assemble(host.engine, store, tuple(digests))
    if actual != expected:
        raise _chunk_store_error(
            f"Wasm module hash {actual.hex()} does not match given hash {expected.hex()}"
        )
    if len(uploaded) > host.limits.max_wasm_module_bytes:
        raise _invalid_wasm(
            target,
            f"the module is {len(uploaded)} bytes, more than the maximum of "
            f"{host.limits.max_wasm_module_bytes}",
        )
    _install(call, target, InstallMode.decode(args["mode"]), uploaded, args["arg"])
    return EMPTY_REPLY


# Chunk hash lists already assembled -> the module's SHA-256. Chunks are
# content-addressed (their store computes the hash), so the list names the
# bytes: a fleet installing one module into thousands of canisters from one
# store joins and hashes it once, then takes the engine's interned copy.
_ASSEMBLED: dict[tuple[bytes, ...], bytes] = {}
_ASSEMBLED_KEPT = 256


def _assemble(
    engine: WasmEngine, store: CanisterState, digests: tuple[bytes, ...]
) -> tuple[bytes, bytes]:
    """The module made of ``store``'s chunks ``digests``, and its SHA-256."""
    known = _ASSEMBLED.get(digests)
    if known is not None:
        uploaded = engine.interned(known)
        if uploaded is not None:
            return uploaded, known
    uploaded = b"".join(store.chunk_store[d] for d in digests)
    actual = hashlib.sha256(uploaded).digest()
    if len(_ASSEMBLED) >= _ASSEMBLED_KEPT:
        del _ASSEMBLED[next(iter(_ASSEMBLED))]
    _ASSEMBLED[digests] = actual
    return uploaded, actual


def _invalid_wasm(canister: CanisterState, reason: str) -> Reject:
    return fail(
        ErrorCode.CANISTER_INVALID_WASM,
        f"Error from Canister {text(canister.canister_id)}: Canister's Wasm module is not "
        f"valid: {reason}.\nThis is likely an error with the compiler/CDK toolchain being used "
        "to build the canister. Please report the error to IC devs on the forum: "
        "https://forum.dfinity.org and include which language/CDK was used to create the "
        "canister.",
    )


def _parse_module(call: ManagementCall, canister: CanisterState, uploaded: bytes) -> Module:
    try:
        info = module_info(uploaded)
    except InvalidModule as exc:
        raise _invalid_wasm(canister, str(exc)) from exc
    return Module(call.host.engine.intern(uploaded), info)


def _install(
    call: ManagementCall, canister: CanisterState, mode: InstallMode, uploaded: bytes, arg: bytes
) -> None:
    if mode.kind == "install" and canister.wasm_module is not None:
        cid = text(canister.canister_id)
        raise fail(
            ErrorCode.CANISTER_NON_EMPTY,
            f"Canister {cid} cannot be installed because the canister is not empty. Try "
            "installing with mode='reinstall' instead."
            + help_line(
                "Check that you want to overwrite the canister and, if so, use mode='reinstall'.",
                "canister-not-empty",
            ),
        )
    module = _parse_module(call, canister, uploaded)
    _prepay(call, canister, module)
    if mode.kind == "upgrade":
        Upgrade(call, canister, module, mode, arg).run()
    else:
        _install_fresh(call, canister, module, mode, arg)


def _prepay(call: ManagementCall, canister: CanisterState, module: Module) -> None:
    """The IC reserves the cost of the whole instruction limit before installing."""
    cost = cycles.execution_fee(call.host.limits.install_instructions, wasm64=module.info.memory64)
    limit = freezing_limit(canister)
    if cycles.can_withdraw(canister.cycles, cost, limit):
        return
    detail = cycles.out_of_cycles_message(
        text(canister.canister_id),
        available=canister.cycles,
        requested=cost,
        threshold=limit,
        reveal_top_up=canister.is_controller(call.caller),
    )
    raise fail(
        ErrorCode.CANISTER_OUT_OF_CYCLES,
        f"Canister installation failed with `{detail}`."
        + help_line("Top up the canister with more cycles.", "install-code-not-enough-cycles"),
    )


def _load(
    call: ManagementCall,
    canister: CanisterState,
    module: Module,
    image: MemoryImage | None = None,
    keep_heap: bytes | None = None,
) -> CanisterSandbox:
    """Instantiate ``module``; with ``keep_heap`` the sandbox keeps the heap in the
    IC's order: data segments written over it, then the start function."""
    try:
        return CanisterSandbox.load(
            call.host.engine,
            module.uploaded,
            heap=keep_heap,
            stable=image.stable if image else b"",
            rollback=call.host.rollback,
        )
    except InvalidModule as exc:
        raise _invalid_wasm(canister, str(exc)) from exc


def _run_hook(
    call: ManagementCall,
    canister: CanisterState,
    sandbox: CanisterSandbox,
    kind: EntryKind,
    arg: bytes,
    limit: int,
    version_bump: int,
) -> ExecResult:
    system = call.host.system_state(canister)
    system.canister_version += version_bump
    ctx = MessageContext(kind=kind, arg=arg, caller=call.caller)
    return sandbox.execute(ctx, system, limit)


def _hook_failure(canister: CanisterState, kind: EntryKind, result: ExecResult) -> Reject | None:
    """The reject for a failed install hook, or None if it succeeded.

    ``canister_init`` and the upgrade hooks cannot reply nor call other
    canisters; the System API traps if they try, and anything that slipped
    through is treated the same way.
    """
    cid = text(canister.canister_id)
    if result.trapped:
        return fail(
            result.error_code or ErrorCode.CANISTER_TRAPPED,
            f"Error from Canister {cid}: {result.trap_message}",
        )
    mode = {EntryKind.INIT: "init", EntryKind.PRE_UPGRADE: "pre_upgrade"}.get(kind, "post_upgrade")
    if result.calls:
        what = "ic0_call_perform"
    elif result.response is not None:
        what = "ic0_msg_reply"
    else:
        return None
    return fail(
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        f'Error from Canister {cid}: Canister violated contract: "{what}" cannot be executed '
        f"in {mode} mode.",
    )


def _check_wasm_memory_limit(canister: CanisterState, sandbox: CanisterSandbox) -> Reject | None:
    limit = canister.settings.wasm_memory_limit
    if limit == 0 or sandbox.heap_size <= limit:
        return None
    return fail(
        ErrorCode.CANISTER_WASM_MEMORY_LIMIT_EXCEEDED,
        f"Error from Canister {text(canister.canister_id)}: Canister exceeded its current Wasm "
        f"memory limit of {limit} bytes. The peak Wasm memory usage was {sandbox.heap_size} "
        "bytes. If the canister reaches 4GiB, then it may stop functioning and may become "
        "unrecoverable. Please reach out to the canister owner to investigate the reason for "
        "the increased memory usage. It might be necessary to move data from the Wasm memory "
        "to the stable memory. If such high Wasm memory usage is expected and safe, then the "
        "developer can increase the Wasm memory limit in the canister settings.",
    )


def _commit(
    call: ManagementCall,
    canister: CanisterState,
    sandbox: CanisterSandbox,
    module: Module,
    mode: InstallMode,
    result: ExecResult,
) -> None:
    """Swap the new instance in and record the deployment."""
    old = canister.sandbox
    canister.sandbox = sandbox
    canister.wasm_module = module.uploaded
    if old is not None:
        old.close()
    canister.canister_version += 1
    canister.global_timer = 0  # every deployment deactivates the timer
    if mode.kind != "upgrade":
        canister.certified_data = b""
    call.host.apply_effects(canister, result)
    deployment = {"mode": {mode.kind: None}, "module_hash": module_hash(module.uploaded)}
    record_change(canister, call, {"code_deployment": deployment})


def _install_fresh(
    call: ManagementCall, canister: CanisterState, module: Module, mode: InstallMode, arg: bytes
) -> None:
    sandbox = _load(call, canister, module)
    result = _run_hook(
        call, canister, sandbox, EntryKind.INIT, arg, call.host.limits.install_instructions, 1
    )
    failure = _hook_failure(canister, EntryKind.INIT, result) or _check_wasm_memory_limit(
        canister, sandbox
    )
    if failure is not None:
        sandbox.close()
        call.host.apply_effects(canister, replace(result, trapped=True))
        raise failure
    _commit(call, canister, sandbox, module, mode, result)


class Upgrade:
    """One ``upgrade``: pre_upgrade on the old instance, post_upgrade on the new one."""

    def __init__(
        self,
        call: ManagementCall,
        canister: CanisterState,
        module: Module,
        mode: InstallMode,
        arg: bytes,
    ) -> None:
        self.call, self.canister, self.module, self.mode, self.arg = (
            call,
            canister,
            module,
            mode,
            arg,
        )
        self.budget = call.host.limits.install_instructions
        self.backup: MemoryImage | None = None  # the old memories, if pre_upgrade changed them

    def run(self) -> None:
        old = self.canister.sandbox
        if old is None:
            raise fail(
                ErrorCode.CANISTER_WASM_MODULE_NOT_FOUND,
                f"Error from Canister {text(self.canister.canister_id)}: Attempted to execute a "
                "message, but the canister contains no Wasm module."
                + help_line(
                    "Install a Wasm module with mode='install' before upgrading the canister.",
                    "wasm-module-not-found",
                ),
            )
        keep = self._keep_heap(old)
        pre = self._pre_upgrade(old)
        image = old.capture()
        heap = image.heap if keep else None
        try:
            new = _load(self.call, self.canister, self.module, image, heap)
        except Reject:
            self._restore_old(old)
            raise
        post = _run_hook(
            self.call,
            self.canister,
            new,
            EntryKind.POST_UPGRADE,
            self.arg,
            self.budget - pre.instructions,
            1,
        )
        total = replace(post, instructions=pre.instructions + post.instructions)
        failure = _hook_failure(self.canister, EntryKind.POST_UPGRADE, post)
        failure = failure or _check_wasm_memory_limit(self.canister, new)
        if failure is not None:
            new.close()
            self._restore_old(old)
            self.call.host.apply_effects(self.canister, replace(total, trapped=True))
            raise failure
        _commit(self.call, self.canister, new, self.module, self.mode, total)

    def _keep_heap(self, old: CanisterSandbox) -> bool:
        """The IC's rules for ``wasm_memory_persistence`` (see the module docstring)."""
        persistence = self.mode.wasm_memory_persistence
        if persistence is None:
            if uses_eop(_sections_of(old)):
                raise fail(
                    ErrorCode.CANISTER_CONTRACT_VIOLATION,
                    "Missing upgrade option: Enhanced orthogonal persistence requires the "
                    "`wasm_memory_persistence` upgrade option.",
                )
            return False
        if persistence == "keep" and not self.module.uses_eop:
            raise fail(
                ErrorCode.CANISTER_CONTRACT_VIOLATION,
                "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option "
                "requires that the new canister module supports enhanced orthogonal "
                "persistence.",
            )
        return persistence == "keep"

    def _pre_upgrade(self, old: CanisterSandbox) -> ExecResult:
        if self.mode.skip_pre_upgrade or not old.has_export("canister_pre_upgrade"):
            return ExecResult()
        self.backup = old.capture()
        pre = _run_hook(self.call, self.canister, old, EntryKind.PRE_UPGRADE, b"", self.budget, 0)
        failure = _hook_failure(self.canister, EntryKind.PRE_UPGRADE, pre)
        if failure is not None:
            if not pre.trapped:  # a trap already rolled the instance back itself
                self._restore_old(old)
            self.call.host.apply_effects(self.canister, replace(pre, trapped=True))
            raise failure
        return pre

    def _restore_old(self, old: CanisterSandbox) -> None:
        """Put the old instance back as it was before pre_upgrade ran."""
        if self.backup is None:
            return  # pre_upgrade did not run: the old instance is untouched
        assert self.canister.wasm_module is not None
        restored = CanisterSandbox.load(
            self.call.host.engine,
            self.canister.wasm_module,
            heap=self.backup.heap,
            stable=self.backup.stable,
            globals=self.backup.globals,
            rollback=self.call.host.rollback,
        )
        self.canister.sandbox = restored
        old.close()
        self.backup = None


def _sections_of(sandbox: CanisterSandbox) -> dict[str, bytes]:
    names = (f"icp:{v} {EOP_SECTION}" for v in ("private", "public"))
    return {n: s for n in names if (s := sandbox.custom_section(n)) is not None}


# --- uninstall_code ------------------------------------------------------------------------


def uninstall_code(call: ManagementCall, args: dict[str, Any]) -> bytes:
    canister = canister_or_reject(call.host, principal_bytes(args["canister_id"]))
    require_controller(canister, call.caller)
    uninstall(call, canister)
    return EMPTY_REPLY


def uninstall(call: ManagementCall, canister: CanisterState) -> None:
    """Drop code and state; reject every call the canister has not answered.

    Cycles, controllers, settings, status, history and snapshots stay.
    """
    if canister.sandbox is not None:
        canister.sandbox.close()
    canister.sandbox = None
    canister.wasm_module = None
    canister.chunk_store.clear()
    canister.certified_data = b""
    canister.global_timer = 0
    canister.canister_version += 1
    call.host.reject_open_calls(canister, UNINSTALLED)
    record_change(canister, call, {"code_uninstall": None})
