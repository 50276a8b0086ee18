"""The sandbox with moc-compiled canisters: the System API as Motoko uses it,
inter-canister calls and their callbacks, composite queries, timers, ingress
inspection, upgrades that keep the heap, and module metadata."""

from __future__ import annotations

import gc
import gzip
from typing import Any

import pytest
from icp_candid.candid import Types
from icp_principal import Principal
from sandbox_util import (
    CANISTER_ID,
    CONTROLLER,
    USER,
    candid,
    canister_wasm,
    decoded,
    load_installed,
    run,
    system_state,
    wat,
)

from localnet.errors import ErrorCode
from localnet.execution import EntryKind, ExecResult, Reply
from localnet.sandbox import CanisterSandbox, WasmEngine

OTHER = b"\x00" * 8 + b"\x02\x01"


@pytest.fixture
def sysapi(engine: WasmEngine) -> Any:
    sb = load_installed(engine, "sysapi")
    yield sb
    sb.close()


def principal(raw: bytes) -> str:
    return Principal(raw).to_str()


def call(sb: CanisterSandbox, method: str, *args: tuple[Any, Any], **kw: Any) -> ExecResult:
    kind = kw.pop("kind", EntryKind.UPDATE)
    return run(sb, kind, method, candid(*args), **kw)


def test_identity_time_balance_and_controllers(sysapi: CanisterSandbox) -> None:
    assert decoded(call(sysapi, "whoami"), Types.Principal)[0].bytes == USER
    self_id = decoded(call(sysapi, "selfId", kind=EntryKind.QUERY), Types.Principal)[0]
    assert self_id.bytes == CANISTER_ID
    now = system_state().time_ns
    assert decoded(call(sysapi, "now", kind=EntryKind.QUERY), Types.Int) == [now]
    balance = call(sysapi, "balance", kind=EntryKind.QUERY, system=system_state(cycles_balance=77))
    assert decoded(balance, Types.Nat) == [77]
    for who, expected in ((CONTROLLER, True), (USER, False)):
        arg = (Types.Principal, principal(who))
        assert decoded(call(sysapi, "isController", arg, kind=EntryKind.QUERY), Types.Bool) == [
            expected
        ]


def test_replicated_execution_and_performance_counter(sysapi: CanisterSandbox) -> None:
    assert decoded(call(sysapi, "replicated", kind=EntryKind.QUERY), Types.Bool) == [False]
    replicated = call(sysapi, "replicated", kind=EntryKind.REPLICATED_QUERY)
    assert decoded(replicated, Types.Bool) == [True]
    assert decoded(call(sysapi, "replicatedUpdate"), Types.Bool) == [True]
    result = call(sysapi, "instructions", kind=EntryKind.QUERY)
    (counted,) = decoded(result, Types.Nat64)
    assert 0 < counted < result.instructions


def test_certified_data_and_certificate(sysapi: CanisterSandbox) -> None:
    result = call(sysapi, "certify", (Types.Vec(Types.Nat8), list(b"root-hash")))
    assert result.certified_data == b"root-hash"
    query = call(
        sysapi, "certificate", kind=EntryKind.QUERY, system=system_state(data_certificate=b"cert")
    )
    assert decoded(query, Types.Opt(Types.Vec(Types.Nat8))) == [[b"cert"]]
    # Replicated executions never see a certificate.
    replicated = call(
        sysapi,
        "certificate",
        kind=EntryKind.REPLICATED_QUERY,
        system=system_state(data_certificate=b"cert"),
    )
    assert decoded(replicated, Types.Opt(Types.Vec(Types.Nat8))) == [[]]


def test_cycles_accept_logs_deadline_and_traps(sysapi: CanisterSandbox) -> None:
    result = call(sysapi, "acceptCycles", (Types.Nat, 600), cycles_available=1000)
    assert decoded(result, Types.Nat, Types.Nat) == [1000, 600]
    assert result.cycles_accepted == 600
    logged: list[str] = []
    printed = call(
        sysapi, "print", (Types.Text, "hi there"), system=system_state(log=logged.append)
    )
    assert printed.logs == logged == ["hi there"]
    deadline = call(sysapi, "deadline", deadline_ns=5_000)
    assert decoded(deadline, Types.Opt(Types.Nat)) == [[5_000]]
    failed = call(sysapi, "fail", (Types.Text, "no way"))
    assert failed.trapped
    assert failed.error_code == ErrorCode.CANISTER_CALLED_TRAP
    assert "'no way'" in failed.trap_message


def test_inter_canister_call_with_cycles_and_reply_callback(sysapi: CanisterSandbox) -> None:
    args = ((Types.Principal, principal(OTHER)), (Types.Nat, 5), (Types.Nat, 777))
    sent = call(sysapi, "relay", *args)
    assert not sent.trapped
    assert sent.response is None
    (out,) = sent.calls
    assert (out.callee, out.method, out.cycles) == (OTHER, "inc", 777)
    assert decoded(ExecResult(response=Reply(out.arg)), Types.Nat) == [5]
    assert sent.cycles_sent == 777
    # The callee answers 10 and refunds 100 cycles: Motoko's continuation runs
    # in the reply callback (a function table entry) and replies to the caller.
    done = run(
        sysapi, EntryKind.REPLY_CALLBACK, arg=candid((Types.Nat, 10)), callback=out.on_reply,
        cycles_refunded=100,
    )  # fmt: skip
    assert decoded(done, Types.Nat, Types.Nat) == [11, 100]
    assert decoded(call(sysapi, "get", kind=EntryKind.QUERY), Types.Nat) == [11]


def test_reject_callback_is_caught(sysapi: CanisterSandbox) -> None:
    sent = call(sysapi, "relayCatching", (Types.Principal, principal(OTHER)))
    (out,) = sent.calls
    done = run(
        sysapi, EntryKind.REJECT_CALLBACK, callback=out.on_reject, reject_code=4,
        reject_message="nope",
    )  # fmt: skip
    assert decoded(done, Types.Text) == ["rejected"]


def test_composite_query_keeps_state_between_its_callbacks(sysapi: CanisterSandbox) -> None:
    call(sysapi, "inc", (Types.Nat, 3))
    before = sysapi.capture()
    sent = call(sysapi, "peek", (Types.Principal, principal(OTHER)), kind=EntryKind.COMPOSITE_QUERY)
    assert not sent.trapped
    (out,) = sent.calls
    assert out.method == "get"
    assert sent.query_state is not None
    assert sysapi.capture() == before  # nothing persisted in between
    done = run(
        sysapi, EntryKind.REPLY_CALLBACK, arg=candid((Types.Nat, 40)), callback=out.on_reply,
        in_composite_query=True, query_state=sent.query_state,
    )  # fmt: skip
    assert decoded(done, Types.Nat) == [43]
    assert sysapi.capture() == before


def test_timer_sets_global_timer_and_runs(sysapi: CanisterSandbox) -> None:
    now = system_state().time_ns
    started = call(sysapi, "startTimer", (Types.Nat, 2))
    assert started.global_timer is not None
    assert started.global_timer >= now + 2_000_000_000
    later = system_state(time_ns=started.global_timer + 1, global_timer=started.global_timer)
    fired = run(sysapi, EntryKind.GLOBAL_TIMER, system=later, caller=b"")
    assert not fired.trapped, fired.trap_message
    # Motoko runs timer jobs through calls to itself: deliver them.
    pending = list(fired.calls)
    while pending:
        out = pending.pop(0)
        assert out.callee == CANISTER_ID
        job = run(sysapi, EntryKind.UPDATE, out.method, out.arg, system=later, caller=CANISTER_ID)
        assert not job.trapped, job.trap_message
        pending += job.calls
        if isinstance(job.response, Reply):
            back = run(sysapi, EntryKind.REPLY_CALLBACK, arg=job.response.data,
                       callback=out.on_reply, system=later)  # fmt: skip
            assert not back.trapped, back.trap_message
            pending += back.calls
    assert decoded(call(sysapi, "fired", kind=EntryKind.QUERY), Types.Nat) == [1]


def test_inspect_message_accepts_small_arguments(sysapi: CanisterSandbox) -> None:
    small = run(sysapi, EntryKind.INSPECT_MESSAGE, "inc", candid((Types.Nat, 1)))
    assert small.message_accepted
    # Motoko refuses by trapping ("canister_inspect_message explicitly refused").
    big = run(sysapi, EntryKind.INSPECT_MESSAGE, "print", candid((Types.Text, "x" * 200)))
    assert big.trapped
    assert not big.message_accepted


def test_upgrade_keeping_the_heap(sysapi: CanisterSandbox, engine: WasmEngine) -> None:
    call(sysapi, "inc", (Types.Nat, 21))
    pre = run(sysapi, EntryKind.PRE_UPGRADE, caller=CONTROLLER)
    assert not pre.trapped, pre.trap_message
    image = sysapi.capture()
    upgraded = CanisterSandbox.load(
        engine, canister_wasm("sysapi"), heap=image.heap, stable=image.stable
    )
    try:
        post = run(upgraded, EntryKind.POST_UPGRADE, arg=candid(), caller=CONTROLLER)
        assert not post.trapped, post.trap_message
        assert decoded(call(upgraded, "get", kind=EntryKind.QUERY), Types.Nat) == [21]
    finally:
        upgraded.close()


def test_module_metadata_and_gzip(engine: WasmEngine) -> None:
    wasm = canister_wasm("sysapi")
    sb = CanisterSandbox.load(engine, gzip.compress(wasm))
    try:
        methods = sb.methods()
        assert methods["inc"] is EntryKind.UPDATE
        assert methods["get"] is EntryKind.QUERY
        assert methods["peek"] is EntryKind.COMPOSITE_QUERY
        assert sb.has_export("canister_global_timer")
        assert sb.has_export("canister_inspect_message")
        assert not sb.has_export("canister_heartbeat")
        service = sb.custom_section("icp:public candid:service") or sb.custom_section(
            "icp:private candid:service"
        )
        assert service is not None
        assert b"relay" in service
        assert sb.custom_section("icp:private enhanced-orthogonal-persistence") is not None
        assert sb.custom_section("nope") is None
        assert sb.heap_size > 0
        assert sb.stable_size == 0
    finally:
        sb.close()


def test_compiled_modules_are_shared_and_cached_on_disk(engine: WasmEngine) -> None:
    wasm = canister_wasm("rollback")
    assert engine.compile(wasm) is engine.compile(wasm)
    assert engine.cache_dir is not None
    assert list(engine.cache_dir.glob("*.cwasm"))
    again = WasmEngine(cache_dir=engine.cache_dir)
    sb = load_installed(again, "rollback")  # deserialized, not recompiled
    try:
        assert run(sb, EntryKind.QUERY, "summary", candid()).response is not None
    finally:
        sb.close()


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.parametrize("close", [True, False])
def test_sandboxes_release_their_memory(engine: WasmEngine, close: bool) -> None:
    # wasmtime-py keeps host functions in a global table until their store is
    # deleted; a sandbox must not keep its store alive through them.
    load_installed(engine, "sysapi").close()
    gc.collect()
    before = _mappings()
    for _ in range(20):
        sb = load_installed(engine, "sysapi")
        if close:
            sb.close()
        del sb
    gc.collect()
    assert _mappings() - before < 10  # a leaked instance keeps >= 2 mappings


def test_a_kept_heap_gets_data_segments_then_start_as_on_an_ic_upgrade(
    engine: WasmEngine,
) -> None:
    # The start function sees the kept heap with the new module's data segments
    # already written over it (OrthogonalPersistence::upgrade_memory, then start).
    module = wat("""(module
      (memory 2)
      (data (i32.const 1) "NEW")
      (data (i32.const 70000) "far")
      (func $start (i32.store8 (i32.const 20) (i32.add (i32.load8_u (i32.const 1)) (i32.const 1))))
      (start $start))""")
    kept = CanisterSandbox.load(engine, module, heap=b"o" * 10, rollback="copy")
    heap = kept.capture().heap
    assert heap[:10] == b"oNEWoooooo"
    assert heap[70000:70003] == b"far"
    assert heap[20] == ord("N") + 1  # start ran after the segments were in place
    kept.close()
    # A complete saved state (heap and globals): neither segments nor start run again.
    restored = CanisterSandbox.load(engine, module, heap=b"o" * 10, globals=[], rollback="copy")
    assert restored.capture().heap[:21] == b"o" * 10 + bytes(11)
    restored.close()
