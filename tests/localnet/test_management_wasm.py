"""Module rewriting for upgrades that keep the heap: data segments and the start call."""

from __future__ import annotations

import wasmtime
from mgmt_util import CONTROLLER, FakeHost

from localnet.execution import EntryKind, MessageContext
from localnet.mgmt_wasm import (
    active_data_segments,
    sections,
    start_in_post_upgrade,
    with_data_segments,
)
from localnet.sandbox import CanisterSandbox, WasmEngine

PAGE = 65536


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def test_active_data_segments_skip_passive_ones_and_read_64_bit_offsets() -> None:
    module32 = wat(
        '(module (memory 1) (data (i32.const 7) "ab") (data "passive") (data (i32.const 100) "c"))'
    )
    assert active_data_segments(module32) == [(7, b"ab"), (100, b"c")]
    module64 = wat('(module (memory i64 1) (data (i64.const 70000) "xyz"))')
    assert active_data_segments(module64) == [(70000, b"xyz")]
    assert active_data_segments(wat("(module)")) == []


def test_data_segments_are_written_over_a_heap_that_grows_if_needed() -> None:
    module = wat('(module (memory 2) (data (i32.const 1) "NEW") (data (i32.const 70000) "far"))')
    heap = with_data_segments(b"o" * 10, module)
    assert len(heap) == 2 * PAGE
    assert heap[:10] == b"oNEWoooooo"
    assert heap[70000:70003] == b"far"
    plain = wat("(module (memory 1))")
    assert with_data_segments(b"keep", plain) == b"keep"


def test_modules_without_start_are_left_alone() -> None:
    module = wat('(module (func (export "canister_post_upgrade")))')
    assert start_in_post_upgrade(module) == module


def test_start_moves_into_an_existing_or_new_post_upgrade(engine: WasmEngine) -> None:
    host = FakeHost(engine)
    counting = """
      (import "ic0" "msg_reply" (func $reply))
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (memory 1)
      (func $start (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
      (start $start)
      (func (export "canister_query runs") (call $append (i32.const 0) (i32.const 8)) (call $reply))
    """
    with_hook = wat(f"""(module {counting}
      (func (export "canister_post_upgrade")
        (i32.store (i32.const 4) (i32.add (i32.load (i32.const 0)) (i32.const 10)))))""")
    without_hook = wat(f"(module {counting})")
    for module, hook_value in ((with_hook, 11), (without_hook, 0)):
        rewritten = start_in_post_upgrade(module)
        assert 8 not in [sid for sid, _ in sections(rewritten)]  # no start section
        sandbox = CanisterSandbox.load(engine, rewritten, rollback="copy")
        assert sandbox.capture().heap[:4] == bytes(4)  # instantiation ran nothing
        ctx = MessageContext(kind=EntryKind.POST_UPGRADE, caller=CONTROLLER)
        canister = host.canisters.get(host.create())
        assert canister is not None
        result = sandbox.execute(ctx, host.system_state(canister), 10**9)
        assert not result.trapped, result.trap_message
        heap = sandbox.capture().heap
        assert int.from_bytes(heap[:4], "little") == 1  # start ran first, once
        assert int.from_bytes(heap[4:8], "little") == hook_value  # then the original hook
        sandbox.close()
