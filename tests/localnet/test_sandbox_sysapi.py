"""The ic0 System API: availability rules, misuse traps and error codes, calls
and callbacks by table index, with a hand-written module for precision."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from sandbox_util import LIMIT, run, system_state, wat

from localnet.errors import ErrorCode
from localnet.execution import Callback, EntryKind, ExecResult, OutgoingCall, RejectResponse, Reply
from localnet.sandbox import CanisterSandbox, InvalidModule, WasmEngine

PROBE = r"""
(module
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reply_data_append" (func $append (param i64 i64)))
  (import "ic0" "msg_reject" (func $reject (param i64 i64)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i64 i64 i64)))
  (import "ic0" "call_new" (func $call_new (param i64 i64 i64 i64 i64 i64 i64 i64)))
  (import "ic0" "call_data_append" (func $call_append (param i64 i64)))
  (import "ic0" "call_on_cleanup" (func $on_cleanup (param i64 i64)))
  (import "ic0" "call_cycles_add128" (func $cycles_add (param i64 i64)))
  (import "ic0" "call_perform" (func $perform (result i32)))
  (import "ic0" "trap" (func $trap (param i64 i64)))
  (import "ic0" "stable64_grow" (func $sgrow (param i64) (result i64)))
  (import "ic0" "stable64_write" (func $swrite (param i64 i64 i64)))
  (import "ic0" "stable64_read" (func $sread (param i64 i64 i64)))
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (import "ic0" "certified_data_set" (func $certify (param i64 i64)))
  (import "ic0" "global_timer_set" (func $timer (param i64) (result i64)))
  (import "ic0" "accept_message" (func $accept))
  (import "ic0" "debug_print" (func $print (param i64 i64)))
  (memory i64 1)
  (table 4 funcref)
  (elem (i32.const 1) func $on_reply $on_reject $cleanup)
  (global $g (mut i64) (i64.const 7))
  (global $f (mut f64) (f64.const 1.5))
  (global $k i64 (i64.const 3))
  ;; "hello" at 0, "callee" at 6, "method" at 13
  (data (i64.const 0) "hello-callee-method")

  (func $reply_i64 (param $v i64)
    (i64.store (i64.const 100) (local.get $v))
    (call $append (i64.const 100) (i64.const 8))
    (call $reply))
  (func $on_reply (param $env i64)
    (global.set $g (local.get $env))
    (call $reply_i64 (global.get $g)))
  (func $on_reject (param $env i64) (global.set $g (i64.const -1)) (unreachable))
  (func $cleanup (param $env i64) (global.set $g (i64.add (global.get $g) (local.get $env))))
  (func $new_call
    (call $call_new (i64.const 6) (i64.const 6) (i64.const 13) (i64.const 6)
                    (i64.const 1) (i64.const 41) (i64.const 2) (i64.const 0)))

  (func (export "canister_update get") (call $reply_i64 (global.get $g)))
  (func (export "canister_update set")
    (call $arg_copy (i64.const 200) (i64.const 0) (i64.const 8))
    (global.set $g (i64.load (i64.const 200)))
    (global.set $f (f64.const 2.5))
    (call $reply_i64 (global.get $g)))
  (func (export "canister_update set_and_trap")
    (global.set $g (i64.const 99))
    (global.set $f (f64.const -4.0))
    (i64.store (i64.const 300) (i64.const 5))
    (drop (call $sgrow (i64.const 1)))
    (call $swrite (i64.const 10) (i64.const 0) (i64.const 5))
    (unreachable))
  (func (export "canister_query set_in_query")
    (global.set $g (i64.const 55))
    (i64.store (i64.const 300) (i64.const 6))
    (drop (call $sgrow (i64.const 1)))
    (call $reply_i64 (global.get $g)))
  (func (export "canister_update grow_and_trap")
    (drop (memory.grow (i64.const 3)))
    (i64.store (i64.const 200000) (i64.const 1))
    (unreachable))
  (func (export "canister_update grow")
    (drop (memory.grow (i64.const 3)))
    (call $reply_i64 (global.get $g)))
  (func (export "canister_update reply_twice") (call $reply) (call $reply))
  (func (export "canister_update reply_then_reject")
    (call $reply)
    (call $reject (i64.const 0) (i64.const 5)))
  (func (export "canister_update reject") (call $reject (i64.const 0) (i64.const 5)))
  (func (export "canister_update explicit_trap") (call $trap (i64.const 0) (i64.const 5)))
  (func (export "canister_update call")
    (call $new_call)
    (call $call_append (i64.const 0) (i64.const 5))
    (call $on_cleanup (i64.const 3) (i64.const 1000))
    (call $cycles_add (i64.const 0) (i64.const 5000))
    (drop (call $perform)))
  (func (export "canister_query call_in_query") (call $new_call) (drop (call $perform)))
  (func (export "canister_update perform_without_new") (drop (call $perform)))
  (func (export "canister_update cleanup_twice")
    (call $new_call)
    (call $on_cleanup (i64.const 3) (i64.const 0))
    (call $on_cleanup (i64.const 3) (i64.const 0)))
  (func (export "canister_update too_many_cycles")
    (call $new_call)
    (call $cycles_add (i64.const 1) (i64.const 0)))
  (func (export "canister_update stable_oob")
    (call $sread (i64.const 0) (i64.const 0) (i64.const 1)))
  (func (export "canister_update heap_oob") (call $append (i64.const 65530) (i64.const 100)))
  (func (export "canister_update wasm_oob") (drop (i64.load (i64.const 70000))))
  (func (export "canister_update spin") (loop $l (br $l)))
  (func (export "canister_update counter") (call $reply_i64 (call $perf (i32.const 0))))
  (func (export "canister_update bad_counter") (drop (call $perf (i32.const 7))))
  (func (export "canister_update certify")
    (call $certify (i64.const 0) (i64.const 5))
    (call $reply))
  (func (export "canister_update certify_too_long") (call $certify (i64.const 0) (i64.const 33)))
  (func (export "canister_update timer")
    (drop (call $timer (i64.const 500)))
    (call $reply_i64 (call $timer (i64.const 600))))
  (func (export "canister_update write_and_print")
    (global.set $g (i64.const 77))
    (i64.store (i64.const 400) (i64.const 77))
    (call $print (i64.const 0) (i64.const 5))
    (call $reply_i64 (global.get $g)))
  (func (export "canister_update print_and_trap")
    (call $print (i64.const 0) (i64.const 5))
    (unreachable))
  (func (export "canister_inspect_message") (call $accept) (global.set $g (i64.const 1)))
  (func (export "canister_init") (call $reply))
)
"""


@pytest.fixture(params=["copy", "dirty"])
def probe(request: pytest.FixtureRequest, engine: WasmEngine) -> Iterator[CanisterSandbox]:
    if request.param == "dirty":
        request.getfixturevalue("needs_dirty_tracking")
    sb = CanisterSandbox.load(engine, wat(PROBE), rollback=request.param)
    yield sb
    sb.close()


def as_i64(result: ExecResult) -> int:
    assert isinstance(result.response, Reply), result
    return int(struct.unpack("<q", result.response.data)[0])


def update(sb: CanisterSandbox, method: str, arg: bytes = b"", **kw: object) -> ExecResult:
    return run(sb, EntryKind.UPDATE, method, arg, **kw)  # type: ignore[arg-type]


def assert_trap(result: ExecResult, code: str, *fragments: str) -> None:
    assert result.trapped, result
    assert result.error_code == code, result.trap_message
    for fragment in fragments:
        assert fragment in result.trap_message
    assert result.response is None
    assert result.calls == []


@pytest.mark.parametrize(
    ("method", "fragment"),
    [
        ("reply_twice", "msg_reply"),
        ("reply_then_reject", "msg_reject"),
        ("perform_without_new", "no call under construction"),
        ("cleanup_twice", "cleanup callback is already set"),
        ("too_many_cycles", "cannot attach"),
        ("certify_too_long", "32 bytes"),
        ("bad_counter", "unknown counter type 7"),
    ],
)
def test_misuse_is_a_contract_violation(probe: CanisterSandbox, method: str, fragment: str) -> None:
    assert_trap(update(probe, method), ErrorCode.CANISTER_CONTRACT_VIOLATION, fragment)


def test_calls_are_unavailable_in_queries_and_replies_in_init(probe: CanisterSandbox) -> None:
    result = run(probe, EntryKind.QUERY, "call_in_query")
    assert_trap(
        result,
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        '"ic0_call_new" cannot be executed in non replicated query mode',
    )
    assert_trap(
        run(probe, EntryKind.INIT),
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        '"ic0_msg_reply" cannot be executed in init mode',
    )


def test_trap_codes_and_messages(probe: CanisterSandbox) -> None:
    assert_trap(
        update(probe, "explicit_trap"),
        ErrorCode.CANISTER_CALLED_TRAP,
        "Canister called `ic0.trap` with message: 'hello'.",
    )
    assert_trap(
        update(probe, "stable_oob"), ErrorCode.CANISTER_TRAPPED, "stable memory out of bounds"
    )
    assert_trap(update(probe, "heap_oob"), ErrorCode.CANISTER_TRAPPED, "heap out of bounds")
    assert_trap(update(probe, "wasm_oob"), ErrorCode.CANISTER_TRAPPED, "heap out of bounds")


def test_instruction_limit(probe: CanisterSandbox) -> None:
    result = update(probe, "spin", limit=1_000_000)
    assert_trap(result, ErrorCode.CANISTER_INSTRUCTION_LIMIT_EXCEEDED)
    assert result.trap_message == (
        "Canister exceeded the limit of 1000000 instructions for single message execution."
    )
    assert result.instructions == 1_000_000
    used = as_i64(update(probe, "counter"))
    assert 0 < used <= update(probe, "counter").instructions


def test_trap_rolls_back_globals_heap_and_stable(probe: CanisterSandbox) -> None:
    before = probe.capture()
    assert_trap(update(probe, "set_and_trap"), ErrorCode.CANISTER_TRAPPED, "unreachable")
    assert probe.capture() == before
    assert_trap(update(probe, "grow_and_trap"), ErrorCode.CANISTER_TRAPPED)
    assert probe.capture() == before
    assert probe.heap_size == 65536
    assert as_i64(update(probe, "get")) == 7


def test_wasm_memory_limit(probe: CanisterSandbox) -> None:
    before = probe.capture()
    limited = system_state(wasm_memory_limit=100_000)
    result = update(probe, "grow", system=limited)
    assert_trap(result, ErrorCode.CANISTER_WASM_MEMORY_LIMIT_EXCEEDED, "limit of 100000 bytes")
    assert probe.capture() == before
    # Queries are exempt; without growth an update is fine even above the limit.
    assert not run(probe, EntryKind.QUERY, "set_in_query", system=limited).trapped
    assert not update(probe, "get", system=system_state(wasm_memory_limit=1000)).trapped
    assert as_i64(update(probe, "grow")) == 7
    assert probe.heap_size == 4 * 65536


def test_query_changes_never_persist(probe: CanisterSandbox) -> None:
    before = probe.capture()
    result = run(probe, EntryKind.QUERY, "set_in_query")
    assert as_i64(result) == 55
    assert probe.capture() == before
    inspect = run(probe, EntryKind.INSPECT_MESSAGE, "get")
    assert inspect.message_accepted
    assert probe.capture() == before


def test_globals_survive_capture_and_load(probe: CanisterSandbox, engine: WasmEngine) -> None:
    assert as_i64(update(probe, "set", struct.pack("<q", -123456789))) == -123456789
    image = probe.capture()
    assert image.globals == [-123456789, 2.5]
    assert probe.global_types() == ["i64", "f64"]
    restored = CanisterSandbox.load(
        engine, wat(PROBE), heap=image.heap, stable=image.stable, globals=image.globals
    )
    try:
        assert restored.capture() == image
        assert as_i64(update(restored, "get")) == -123456789
    finally:
        restored.close()
    fresh = CanisterSandbox.load(engine, wat(PROBE), heap=image.heap)
    try:
        assert fresh.global_values() == [7, 1.5]  # globals start fresh unless given
    finally:
        fresh.close()


def test_call_and_callbacks_by_table_index(probe: CanisterSandbox) -> None:
    result = update(probe, "call")
    assert not result.trapped
    assert result.response is None
    assert result.cycles_sent == 5000
    assert result.calls == [
        OutgoingCall(
            callee=b"callee",
            method="method",
            arg=b"hello",
            cycles=5000,
            on_reply=Callback(1, 41),
            on_reject=Callback(2, 0),
            on_cleanup=Callback(3, 1000),
        )
    ]
    # The reply callback is table entry 1 with env 41: it stores env and replies.
    reply = run(probe, EntryKind.REPLY_CALLBACK, arg=b"ok", callback=Callback(1, 41))
    assert as_i64(reply) == 41
    assert as_i64(update(probe, "get")) == 41
    # The reject callback traps: its changes roll back; then cleanup runs.
    rejected = run(
        probe, EntryKind.REJECT_CALLBACK, callback=Callback(2, 0), reject_code=4,
        reject_message="no",
    )  # fmt: skip
    assert_trap(rejected, ErrorCode.CANISTER_TRAPPED, "unreachable")
    cleanup = run(probe, EntryKind.CLEANUP, callback=Callback(3, 1000))
    assert not cleanup.trapped
    assert cleanup.response is None
    assert as_i64(update(probe, "get")) == 1041


def test_callback_cannot_reply_twice_or_run_a_missing_function(probe: CanisterSandbox) -> None:
    answered = run(probe, EntryKind.REPLY_CALLBACK, callback=Callback(1, 5), already_responded=True)
    assert_trap(answered, ErrorCode.CANISTER_CONTRACT_VIOLATION, "msg_reply")
    for fun in (0, 99):
        missing = run(probe, EntryKind.REPLY_CALLBACK, callback=Callback(fun, 0))
        assert_trap(missing, ErrorCode.CANISTER_FUNCTION_NOT_FOUND, f"function {fun}")


def test_reject_certify_timer_and_logs(probe: CanisterSandbox) -> None:
    rejected = update(probe, "reject")
    assert rejected.response == RejectResponse(4, "hello")
    assert update(probe, "certify").certified_data == b"hello"
    timer = update(probe, "timer", system=system_state(global_timer=123))
    assert as_i64(timer) == 500  # the value the first global_timer_set stored
    assert timer.global_timer == 600
    printed: list[str] = []
    trapped = update(probe, "print_and_trap", system=system_state(log=printed.append))
    assert trapped.trapped
    assert trapped.logs == ["hello"]
    assert printed == ["hello"]


def test_missing_method_and_system_entry_points(probe: CanisterSandbox) -> None:
    missing = update(probe, "nope")
    assert_trap(missing, ErrorCode.CANISTER_METHOD_NOT_FOUND, "update method 'nope'")
    # A system method the module does not export is a successful no-op.
    timer = run(probe, EntryKind.GLOBAL_TIMER, limit=LIMIT)
    assert timer == ExecResult()


def test_a_module_without_inspect_message_accepts_everything(engine: WasmEngine) -> None:
    sb = CanisterSandbox.load(engine, wat("(module (memory i64 1))"))
    try:
        assert run(sb, EntryKind.INSPECT_MESSAGE, "any").message_accepted
        assert run(sb, EntryKind.INIT) == ExecResult()
    finally:
        sb.close()


def test_unsupported_imports_fail_load_with_every_name(engine: WasmEngine) -> None:
    module = wat(
        """
        (module
          (import "ic0" "bogus_call" (func))
          (import "env" "helper" (func))
          (import "ic0" "msg_reply" (func (param i64)))
          (import "ic0" "msg_arg_data_size" (func (result i64)))
          (memory i64 1))
        """
    )
    with pytest.raises(InvalidModule) as err:
        CanisterSandbox.load(engine, module)
    message = str(err.value)
    assert "ic0.bogus_call" in message
    assert "env.helper" in message
    assert "ic0.msg_reply has type" in message
    assert "msg_arg_data_size" not in message


def test_32bit_modules_use_i32_pointers(engine: WasmEngine) -> None:
    module = wat(
        """
        (module
          (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
          (import "ic0" "msg_reply" (func $reply))
          (import "ic0" "stable_grow" (func $grow (param i32) (result i32)))
          (memory 1)
          (data (i32.const 0) "hi")
          (func (export "canister_query hi")
            (drop (call $grow (i32.const 1)))
            (call $append (i32.const 0) (i32.const 2)) (call $reply)))
        """
    )
    sb = CanisterSandbox.load(engine, module)
    try:
        result = run(sb, EntryKind.QUERY, "hi")
        assert result.response == Reply(b"hi")
        assert sb.stable_size == 0
    finally:
        sb.close()
    # A 32-bit memory with 64-bit pointers, or a 64-bit-only import: refused.
    wrong = wat(
        """
        (module
          (import "ic0" "msg_reply_data_append" (func (param i64 i64)))
          (import "ic0" "msg_cycles_available128" (func (param i32)))
          (memory 1))
        """
    )
    with pytest.raises(InvalidModule, match="msg_reply_data_append has type"):
        CanisterSandbox.load(engine, wrong)
    with pytest.raises(InvalidModule, match="stable_size"):
        CanisterSandbox.load(engine, wat('(module (import "ic0" "stable_size" (func (result i32)))'
                                         " (memory i64 1))"))  # fmt: skip


def test_a_host_side_error_rolls_back_and_propagates(probe: CanisterSandbox) -> None:
    before = probe.capture()

    def broken_log(_text: str) -> None:
        raise RuntimeError("logger failed")

    with pytest.raises(RuntimeError, match="logger failed"):
        update(probe, "write_and_print", system=system_state(log=broken_log))
    assert probe.capture() == before
    assert as_i64(update(probe, "get")) == 7
