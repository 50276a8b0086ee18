"""install_code, install_chunked_code, uninstall_code and the Wasm chunk store.

Motoko canisters (``mg_*``) check enhanced orthogonal persistence end to end;
small WAT canisters check the IC's rules precisely: which memory survives an
upgrade, when the start function runs, data segments over a kept heap.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from typing import Any

import pytest
import wasmtime
from icp_candid import Types
from mgmt_util import (
    STRANGER,
    FakeHost,
    assert_reject,
    candid,
    canister_wasm,
    install_args,
    nat,
    upgrade,
    value_of,
)

from localnet import ids
from localnet.errors import ErrorCode
from localnet.limits import Limits
from localnet.sandbox import WasmEngine

BLOB = Types.Vec(Types.Nat8)
EMPTY_ARG = b"DIDL\x00\x00"


@pytest.fixture
def host(engine: WasmEngine) -> FakeHost:
    return FakeHost(engine)


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def classic(tag: str, *, eop: bool = False, init: str = "") -> bytes:
    """A hand-written canister: a u32 counter at heap address 16, a 2-byte ``tag``
    in a data segment at 32, a start function that counts its runs at 48, and the
    classic upgrade pattern (pre_upgrade saves the counter to stable memory,
    post_upgrade restores it)."""
    section = '(@custom "icp:private enhanced-orthogonal-persistence" "")' if eop else ""
    return wat(f"""
    (module {section}
      (import "ic0" "msg_reply" (func $reply))
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (import "ic0" "stable64_size" (func $ssize (result i64)))
      (import "ic0" "stable64_grow" (func $sgrow (param i64) (result i64)))
      (import "ic0" "stable64_write" (func $swrite (param i64 i64 i64)))
      (import "ic0" "stable64_read" (func $sread (param i64 i64 i64)))
      (memory 1)
      (data (i32.const 32) "{tag}")
      (func $start (i32.store (i32.const 48) (i32.add (i32.load (i32.const 48)) (i32.const 1))))
      (start $start)
      (func $out (param i32 i32) (call $append (local.get 0) (local.get 1)) (call $reply))
      (func (export "canister_init") {init})
      (func (export "canister_update inc")
        (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
        (call $out (i32.const 16) (i32.const 4)))
      (func (export "canister_query get") (call $out (i32.const 16) (i32.const 4)))
      (func (export "canister_query tag") (call $out (i32.const 32) (i32.const 2)))
      (func (export "canister_query starts") (call $out (i32.const 48) (i32.const 4)))
      (func (export "canister_pre_upgrade")
        (if (i64.eqz (call $ssize)) (then (drop (call $sgrow (i64.const 1)))))
        (call $swrite (i64.const 0) (i64.const 16) (i64.const 4)))
      (func (export "canister_post_upgrade")
        (call $sread (i64.const 20) (i64.const 0) (i64.const 4))))
    """)


def u32(host: FakeHost, cid: bytes, method: str) -> int:
    result = host.query(cid, method)
    assert result.response is not None
    return int.from_bytes(result.response.data, "little")  # type: ignore[union-attr]


def raw_reply(host: FakeHost, cid: bytes, method: str) -> bytes:
    result = host.query(cid, method)
    return result.response.data  # type: ignore[union-attr]


def mo_nat(host: FakeHost, cid: bytes, method: str = "get") -> int:
    return int(value_of(host.query(cid, method), Types.Nat))


def mo_text(host: FakeHost, cid: bytes, method: str = "version") -> str:
    return str(value_of(host.query(cid, method), Types.Text))


def install(
    host: FakeHost, cid: bytes, wasm: bytes, mode: Any = None, arg: bytes = EMPTY_ARG, **kw: Any
) -> Any:
    return host.call("install_code", install_args(cid, wasm, arg, mode), **kw)[0]


def populated_state(host: FakeHost) -> bytes:
    """mg_state with count 2, a note and a blob in stable memory."""
    cid = host.create()
    host.install(cid, canister_wasm("mg_state"))
    host.update(cid, "inc")
    host.update(cid, "inc")
    host.update(cid, "add_note", candid((Types.Text, "first")))
    host.update(cid, "store", candid((BLOB, b"stable bytes")))
    return cid


def image_of(host: FakeHost, cid: bytes) -> tuple[Any, ...]:
    canister = host.canisters[cid]
    assert canister.sandbox is not None
    image = canister.sandbox.capture()
    return (canister.module_hash, image.heap, image.stable, image.globals)


# --- install and reinstall ----------------------------------------------------------------


def test_install_runs_init_with_the_argument(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, canister_wasm("mg_init"), candid((Types.Nat, 41)))
    assert mo_nat(host, cid) == 41
    canister = host.canisters[cid]
    assert canister.module_hash == hashlib.sha256(canister_wasm("mg_init")).digest()
    assert canister.canister_version == 1
    assert canister.history[-1]["details"]["code_deployment"]["mode"] == {"install": None}


def test_a_trapping_init_leaves_the_canister_empty(host: FakeHost) -> None:
    cid = host.create()
    answer = install(host, cid, canister_wasm("mg_init"), arg=nat(0))
    assert_reject(
        answer.reject(),
        ErrorCode.CANISTER_CALLED_TRAP,
        f"Error from Canister {ids.to_text(cid)}: Canister called `ic0.trap`",
        "init refuses 0",
    )
    canister = host.canisters[cid]
    assert canister.sandbox is None
    assert canister.wasm_module is None
    assert canister.canister_version == 0
    assert canister.cycles < 10**15  # the failed init was charged


def test_install_on_a_non_empty_canister_is_refused(host: FakeHost) -> None:
    cid = populated_state(host)
    answer = install(host, cid, canister_wasm("mg_state"))
    assert_reject(answer.reject(), ErrorCode.CANISTER_NON_EMPTY, "mode='reinstall'")
    assert mo_nat(host, cid) == 2


def test_reinstall_starts_from_scratch(host: FakeHost) -> None:
    cid = populated_state(host)
    host.canisters[cid].certified_data = b"certified"
    assert install(host, cid, canister_wasm("mg_state"), {"reinstall": None}).ok
    assert mo_nat(host, cid) == 0
    assert value_of(host.query(cid, "get_notes"), Types.Vec(Types.Text)) == []
    canister = host.canisters[cid]
    assert canister.sandbox is not None
    assert b"stable bytes" not in canister.sandbox.capture().stable
    assert canister.certified_data == b""


def test_install_checks_controller_and_canister(host: FakeHost) -> None:
    cid = host.create()
    answer = install(host, cid, canister_wasm("mg_state"), caller=STRANGER)
    assert answer.reject().error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    missing = ids.canister_id(77)
    answer = install(host, missing, canister_wasm("mg_state"))
    assert_reject(answer.reject(), ErrorCode.CANISTER_NOT_FOUND, "not found")


def test_gzip_modules_are_installed_and_hashed_as_uploaded(host: FakeHost) -> None:
    cid = host.create()
    zipped = gzip.compress(canister_wasm("mg_state"), mtime=0)
    host.install(cid, zipped)
    assert mo_text(host, cid) == "v1"
    assert host.canisters[cid].module_hash == hashlib.sha256(zipped).digest()


def test_invalid_and_oversized_modules_are_refused(engine: WasmEngine) -> None:
    host = FakeHost(engine, limits=Limits(max_direct_wasm_bytes=200_000))
    cid = host.create()
    answer = install(host, cid, b"\x00asm\x01\x00\x00\x00garbage")
    assert_reject(answer.reject(), ErrorCode.CANISTER_INVALID_WASM, "Wasm module is not valid")
    answer = install(host, cid, canister_wasm("mg_state"))
    assert_reject(answer.reject(), ErrorCode.CANISTER_INVALID_WASM, "install_chunked_code")
    assert host.canisters[cid].wasm_module is None


def test_install_needs_cycles_for_the_whole_instruction_limit(host: FakeHost) -> None:
    cid = host.create(amount=10**11)  # less than 300 B instructions at Wasm64 rates
    answer = install(host, cid, canister_wasm("mg_state"))
    assert_reject(
        answer.reject(),
        ErrorCode.CANISTER_OUT_OF_CYCLES,
        "Canister installation failed with `Canister",
        "please top up the canister with at least",
    )
    assert answer.reject().code == 2
    assert host.canisters[cid].wasm_module is None


def test_wasm_memory_limit_applies_to_init(host: FakeHost) -> None:
    cid = host.create()
    canister = host.canisters[cid]
    canister.settings = dataclasses.replace(canister.settings, wasm_memory_limit=65536)
    answer = install(host, cid, canister_wasm("mg_state"))
    assert_reject(
        answer.reject(), ErrorCode.CANISTER_WASM_MEMORY_LIMIT_EXCEEDED, "Wasm memory limit of 65536"
    )
    assert host.canisters[cid].sandbox is None


def test_init_may_not_reply(host: FakeHost) -> None:
    cid = host.create()
    answer = install(host, cid, classic("v1", init="(call $reply)"))
    assert answer.reject().error_code == ErrorCode.CANISTER_CONTRACT_VIOLATION
    assert host.canisters[cid].sandbox is None


# --- upgrades of Motoko canisters (enhanced orthogonal persistence) --------------------------


def test_upgrade_with_keep_preserves_heap_and_stable_memory(host: FakeHost) -> None:
    cid = populated_state(host)
    host.update(cid, "arm_timer", nat(3600))
    canister = host.canisters[cid]
    assert canister.global_timer > 0
    version = canister.canister_version
    assert install(host, cid, canister_wasm("mg_state_v2"), upgrade(keep=True)).ok
    assert mo_text(host, cid) == "v2"
    assert mo_nat(host, cid) == 2
    assert value_of(host.query(cid, "get_notes"), Types.Vec(Types.Text)) == ["first"]
    assert value_of(host.query(cid, "load", nat(12)), BLOB) == b"stable bytes"
    assert mo_nat(host, cid, "upgrade_count") == 1  # its postupgrade ran once
    assert canister.global_timer == 0  # an upgrade deactivates the timer
    assert canister.canister_version == version + 1
    assert canister.history[-1]["details"]["code_deployment"]["mode"] == {"upgrade": None}
    # And it keeps working.
    assert int(value_of(host.update(cid, "inc"), Types.Nat)) == 3


def test_repeated_keep_upgrades(host: FakeHost) -> None:
    cid = populated_state(host)
    for _ in range(3):
        assert install(host, cid, canister_wasm("mg_state_v2"), upgrade(keep=True)).ok
    assert mo_nat(host, cid, "upgrade_count") == 3
    assert mo_nat(host, cid) == 2


def test_eop_canister_needs_an_explicit_memory_option(host: FakeHost) -> None:
    cid = populated_state(host)
    before = image_of(host, cid)
    for mode in ({"upgrade": []}, upgrade()):
        answer = install(host, cid, canister_wasm("mg_state_v2"), mode)
        assert_reject(
            answer.reject(),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "Missing upgrade option: Enhanced orthogonal persistence requires the "
            "`wasm_memory_persistence` upgrade option.",
        )
    assert image_of(host, cid) == before


def test_replace_discards_the_heap_but_keeps_stable_memory(host: FakeHost) -> None:
    cid = populated_state(host)
    assert install(host, cid, canister_wasm("mg_state"), upgrade(keep=False)).ok
    assert mo_nat(host, cid) == 0
    # The fresh instance allocated a new region, but the old bytes are still there.
    assert b"stable bytes" in image_of(host, cid)[2]


def test_incompatible_stable_types_are_refused_and_rolled_back(host: FakeHost) -> None:
    cid = populated_state(host)
    before = image_of(host, cid)
    answer = install(host, cid, canister_wasm("mg_incompatible"), upgrade(keep=True))
    assert_reject(
        answer.reject(), ErrorCode.CANISTER_CALLED_TRAP, "Memory-incompatible program upgrade"
    )
    assert image_of(host, cid) == before
    assert mo_text(host, cid) == "v1"
    assert int(value_of(host.update(cid, "inc"), Types.Nat)) == 3


def test_a_trapping_post_upgrade_rolls_everything_back(host: FakeHost) -> None:
    cid = populated_state(host)
    before = image_of(host, cid)
    version = host.canisters[cid].canister_version
    answer = install(host, cid, canister_wasm("mg_trap_post"), upgrade(keep=True))
    assert_reject(answer.reject(), ErrorCode.CANISTER_CALLED_TRAP, "post_upgrade refuses")
    # Module, heap, stable memory and globals exactly as before (pre_upgrade had run).
    assert image_of(host, cid) == before
    assert host.canisters[cid].canister_version == version
    assert mo_text(host, cid) == "v1"
    assert value_of(host.query(cid, "load", nat(12)), BLOB) == b"stable bytes"


def test_a_trapping_pre_upgrade_refuses_unless_skipped(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, canister_wasm("mg_trap_pre"))
    host.update(cid, "inc")
    answer = install(host, cid, canister_wasm("mg_trap_pre"), upgrade(keep=True))
    assert_reject(answer.reject(), ErrorCode.CANISTER_CALLED_TRAP, "pre_upgrade refuses")
    assert mo_nat(host, cid) == 1  # its state change before the trap was rolled back
    # Skipping pre_upgrade lets the upgrade go through. (What the new instance then
    # finds is Motoko's business: its pre_upgrade is where it saves its actor.)
    skipping = upgrade(keep=True, skip_pre_upgrade=True)
    version = host.canisters[cid].canister_version
    assert install(host, cid, canister_wasm("mg_trap_pre"), skipping).ok
    assert host.canisters[cid].canister_version == version + 1


def test_upgrading_an_empty_canister_is_refused(host: FakeHost) -> None:
    cid = host.create()
    answer = install(host, cid, canister_wasm("mg_state"), upgrade(keep=True))
    assert_reject(
        answer.reject(), ErrorCode.CANISTER_WASM_MODULE_NOT_FOUND, "contains no Wasm module"
    )


# --- the IC's memory rules, on hand-written canisters -------------------------------------------


def test_classic_upgrade_keeps_only_stable_memory(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, classic("v1"))
    for _ in range(3):
        host.update(cid, "inc")
    assert install(host, cid, classic("v2"), upgrade()).ok
    assert raw_reply(host, cid, "tag") == b"v2"
    assert u32(host, cid, "starts") == 1  # fresh heap: start ran once on it
    # post_upgrade copied the counter from stable memory to address 20, not 16.
    assert u32(host, cid, "get") == 0
    canister = host.canisters[cid]
    assert canister.sandbox is not None
    assert canister.sandbox.capture().heap[20:24] == (3).to_bytes(4, "little")


def test_keep_requires_the_new_module_to_declare_eop(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, classic("v1"))
    answer = install(host, cid, classic("v2"), upgrade(keep=True))
    assert_reject(
        answer.reject(),
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option requires "
        "that the new canister module supports enhanced orthogonal persistence.",
    )
    assert raw_reply(host, cid, "tag") == b"v1"


def test_keep_runs_start_on_the_kept_heap_after_the_new_data_segments(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, classic("v1", eop=True))
    host.update(cid, "inc")
    host.update(cid, "inc")
    assert u32(host, cid, "starts") == 1
    assert install(host, cid, classic("v2", eop=True), upgrade(keep=True)).ok
    assert u32(host, cid, "get") == 2  # the heap survived
    assert raw_reply(host, cid, "tag") == b"v2"  # the new static data was written over it
    assert u32(host, cid, "starts") == 2  # start ran again, on the kept heap
    canister = host.canisters[cid]
    assert canister.wasm_module == classic("v2", eop=True)  # the module as uploaded


def test_eop_canisters_may_also_replace_their_heap(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, classic("v1", eop=True))
    host.update(cid, "inc")
    assert install(host, cid, classic("v2", eop=True), upgrade(keep=False)).ok
    assert u32(host, cid, "get") == 0
    assert u32(host, cid, "starts") == 1


# --- chunked install and the chunk store --------------------------------------------------------


def chunks_of(wasm: bytes, size: int) -> list[bytes]:
    return [wasm[i : i + size] for i in range(0, len(wasm), size)]


def upload(host: FakeHost, cid: bytes, chunk: bytes, **kw: Any) -> bytes:
    result = host.ok("upload_chunk", {"canister_id": cid, "chunk": chunk}, **kw)
    return bytes(result["hash"])


def chunked(
    target: bytes,
    hashes: list[bytes],
    module_hash: bytes,
    *,
    store: bytes | None = None,
    mode: Any = None,
    arg: bytes = EMPTY_ARG,
) -> dict[str, Any]:
    return {
        "mode": mode or {"install": None},
        "target_canister": target,
        "store_canister": [] if store is None else [store],
        "chunk_hashes_list": [{"hash": h} for h in hashes],
        "wasm_module_hash": module_hash,
        "arg": arg,
        "sender_canister_version": [],
    }


def test_chunked_install(host: FakeHost) -> None:
    cid = host.create()
    wasm = canister_wasm("mg_state")
    parts = chunks_of(wasm, 100_000)
    hashes = [upload(host, cid, part) for part in parts]
    assert hashes == [hashlib.sha256(p).digest() for p in parts]
    assert upload(host, cid, parts[0]) == hashes[0]  # idempotent
    stored = host.ok("stored_chunks", {"canister_id": cid})
    assert [bytes(e["hash"]) for e in stored] == sorted(hashes)
    host.ok("install_chunked_code", chunked(cid, hashes, hashlib.sha256(wasm).digest()))
    assert mo_text(host, cid) == "v1"
    assert host.canisters[cid].wasm_module == wasm
    host.ok("clear_chunk_store", {"canister_id": cid})
    assert host.ok("stored_chunks", {"canister_id": cid}) == []


def test_chunked_install_from_another_store_canister(host: FakeHost) -> None:
    store, target = host.create(), host.create()
    wasm = canister_wasm("mg_state")
    hashes = [upload(host, store, part) for part in chunks_of(wasm, 150_000)]
    digest = hashlib.sha256(wasm).digest()
    host.ok("install_chunked_code", chunked(target, hashes, digest, store=store))
    assert mo_text(host, target) == "v1"
    assert host.canisters[target].chunk_store == {}


def test_chunked_install_checks_hashes_and_store_access(engine: WasmEngine) -> None:
    host = FakeHost(engine)
    cid = host.create()
    wasm = canister_wasm("mg_state")
    hashes = [upload(host, cid, part) for part in chunks_of(wasm, 200_000)]
    digest = hashlib.sha256(wasm).digest()
    cases = [
        (
            chunked(cid, hashes, bytes(32)),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "does not match given hash",
        ),
        (
            chunked(cid, hashes[::-1], digest),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "does not match given hash",
        ),
        (
            chunked(cid, [*hashes, bytes(32)], digest),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "was not found",
        ),
        (
            chunked(cid, [b"short"], digest),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "The length is not 32",
        ),
        (
            chunked(cid, hashes, b"short"),
            ErrorCode.CANISTER_CONTRACT_VIOLATION,
            "Invalid wasm hash",
        ),
    ]
    for args, code, fragment in cases:
        assert_reject(host.fails("install_chunked_code", args), code, fragment)
    foreign = host.create(controllers=[STRANGER])
    reject = host.fails("install_chunked_code", chunked(cid, hashes, digest, store=foreign))
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    assert host.canisters[cid].wasm_module is None


def test_the_chunk_store_limits(engine: WasmEngine) -> None:
    host = FakeHost(engine, limits=Limits(max_chunks_in_store=2, wasm_chunk_bytes=1000))
    cid = host.create()
    reject = host.fails("upload_chunk", {"canister_id": cid, "chunk": bytes(1001)})
    assert_reject(
        reject, ErrorCode.CANISTER_CONTRACT_VIOLATION, "exceeds the maximum chunk size of 1000"
    )
    upload(host, cid, b"a")
    upload(host, cid, b"b")
    reject = host.fails("upload_chunk", {"canister_id": cid, "chunk": b"c"})
    assert_reject(reject, ErrorCode.CANISTER_CONTRACT_VIOLATION, "maximum number of entries, 2")
    reject = host.fails("upload_chunk", {"canister_id": cid, "chunk": b"d"}, caller=STRANGER)
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    upload(host, cid, b"a", caller=cid, via_ingress=False)  # the canister itself may


# --- uninstall ------------------------------------------------------------------------------------


def test_uninstall_drops_code_and_state_but_keeps_the_rest(host: FakeHost) -> None:
    cid = populated_state(host)
    canister = host.canisters[cid]
    canister.certified_data = b"data"
    canister.chunk_store[b"h" * 32] = b"chunk"
    cycles_before, controllers = canister.cycles, list(canister.controllers)
    host.ok("uninstall_code", {"canister_id": cid, "sender_canister_version": []})
    assert canister.sandbox is None
    assert canister.wasm_module is None
    assert canister.chunk_store == {}
    assert canister.certified_data == b""
    assert canister.cycles == cycles_before
    assert canister.controllers == controllers
    assert host.rejected_calls == [(cid, "Canister has been uninstalled.")]
    assert canister.history[-1]["details"] == {"code_uninstall": None}
    # Empty again: install works.
    host.install(cid, canister_wasm("mg_state"))
    assert mo_nat(host, cid) == 0
    reject = host.fails(
        "uninstall_code", {"canister_id": cid, "sender_canister_version": []}, caller=STRANGER
    )
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
