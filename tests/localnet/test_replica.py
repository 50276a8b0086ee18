"""The replica's routing, call contexts, ordering and timers, with real Motoko Wasm.

Canisters are installed directly (no management canister, no HTTP), so these
tests pin down the replica alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from icp_candid import Types, decode, encode

from localnet import ids
from localnet.clock import Clock
from localnet.errors import Reject, RejectCode
from localnet.execution import EntryKind, MessageContext, RejectResponse, Reply
from localnet.node_api import Request
from localnet.replica import Replica
from localnet.sandbox import CanisterSandbox, WasmEngine
from localnet.state import CanisterState, CanisterStatus, Settings

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
USER = b"\x01" * 29
EMPTY_ARGS = b"DIDL\x00\x00"


@pytest.fixture(scope="module")
def engine() -> WasmEngine:
    return WasmEngine()


@pytest.fixture
def replica(engine: WasmEngine) -> Replica:
    return Replica(engine=engine, clock=Clock(frozen_at_ns=1_700_000_000_000_000_000))


def install(replica: Replica, name: str) -> bytes:
    canister_id = replica.allocate_canister_id()
    wasm = (WASM / f"{name}.wasm").read_bytes()
    canister = CanisterState(canister_id, Settings(controllers=[USER]), cycles=10**14)
    canister.wasm_module = wasm
    canister.sandbox = CanisterSandbox.load(replica.engine, wasm)
    result = canister.sandbox.execute(
        MessageContext(kind=EntryKind.INIT, arg=EMPTY_ARGS, caller=USER),
        replica.system_state(canister),
        replica.limits.install_instructions,
    )
    assert not result.trapped, result.trap_message
    replica.apply_effects(canister, result)
    replica.canisters[canister_id] = canister
    return canister_id


_counter = 0


def call(replica: Replica, canister_id: bytes, method: str, *args: tuple[object, object]) -> bytes:
    """Submit an ingress update, run to completion, return the reply or raise Reject."""
    global _counter
    _counter += 1
    request_id = _counter.to_bytes(32, "big")
    replica.submit_ingress(
        Request(
            request_type="call",
            request_id=request_id,
            sender=USER,
            ingress_expiry=0,
            effective_canister_id=canister_id,
            canister_id=canister_id,
            method_name=method,
            arg=candid(*args),
        )
    )
    replica.run_until_idle()
    record = replica.requests[request_id]
    if record.reject is not None:
        raise Reject(
            RejectCode(record.reject.code), record.reject.message, record.reject.error_code
        )
    assert record.status == "replied"
    assert record.reply is not None
    return record.reply


def query(replica: Replica, canister_id: bytes, method: str, *args: tuple[object, object]):
    return replica.query(
        Request(
            request_type="query",
            request_id=b"q" * 32,
            sender=USER,
            ingress_expiry=0,
            effective_canister_id=canister_id,
            canister_id=canister_id,
            method_name=method,
            arg=candid(*args),
        )
    )


def candid(*args: tuple[object, object]) -> bytes:
    return encode([{"type": t, "value": v} for t, v in args])


def value(reply: bytes, t: object) -> object:
    return decode(reply, [t])[0]["value"]


def nat_of(response: object) -> int:
    assert isinstance(response, Reply), response
    result = value(response.data, Types.Nat)
    assert isinstance(result, int)
    return result


def test_update_then_query(replica: Replica) -> None:
    counter = install(replica, "counter")
    assert value(call(replica, counter, "inc"), Types.Nat) == 1
    assert value(call(replica, counter, "inc"), Types.Nat) == 2
    assert nat_of(query(replica, counter, "get")) == 2


def test_trap_rolls_back_and_rejects_with_code_5(replica: Replica) -> None:
    counter = install(replica, "counter")
    call(replica, counter, "inc")
    with pytest.raises(Reject) as err:
        call(replica, counter, "boom")
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert "boom" in err.value.message
    assert ids.to_text(counter) in err.value.message
    assert err.value.error_code == "IC0503"
    assert nat_of(query(replica, counter, "get")) == 1


def test_explicit_reject_is_code_4_and_keeps_state(replica: Replica) -> None:
    counter = install(replica, "counter")
    with pytest.raises(Reject) as err:
        call(replica, counter, "refuse")
    assert err.value.code == RejectCode.CANISTER_REJECT
    assert err.value.message == "refused on purpose"
    assert nat_of(query(replica, counter, "get")) == 1


def test_queries_never_persist(replica: Replica) -> None:
    counter = install(replica, "counter")
    assert nat_of(query(replica, counter, "mutating_query")) == 1
    assert nat_of(query(replica, counter, "mutating_query")) == 1
    assert nat_of(query(replica, counter, "get")) == 0


def test_query_method_called_as_update_replies_but_keeps_no_changes(replica: Replica) -> None:
    # As on the IC (execute_replicated_query): the reply counts, the state changes do not.
    counter = install(replica, "counter")
    assert value(call(replica, counter, "mutating_query"), Types.Nat) == 1
    assert value(call(replica, counter, "mutating_query"), Types.Nat) == 1
    assert nat_of(query(replica, counter, "get")) == 0


def test_missing_canister_and_method(replica: Replica) -> None:
    counter = install(replica, "counter")
    with pytest.raises(Reject) as err:
        call(replica, ids.canister_id(999), "inc")
    assert err.value.code == RejectCode.DESTINATION_INVALID
    assert err.value.error_code == "IC0301"
    with pytest.raises(Reject) as err:
        call(replica, counter, "nope")
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert err.value.error_code == "IC0536"
    assert "has no update method 'nope'" in err.value.message
    response = query(replica, counter, "inc")
    assert isinstance(response, RejectResponse)
    assert "has no query method 'inc'" in response.message


def test_caller_is_the_sender(replica: Replica) -> None:
    counter = install(replica, "counter")
    reply = call(replica, counter, "whoami_update")
    assert value(reply, Types.Principal).bytes == USER


def test_inter_canister_call_and_caller_identity(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    assert value(call(replica, caller, "call_inc", (Types.Principal, counter)), Types.Nat) == 1
    assert nat_of(query(replica, counter, "get")) == 1


def test_inter_canister_rejects_carry_codes(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    boom = value(call(replica, caller, "call_boom", (Types.Principal, counter)), Types.Text)
    assert isinstance(boom, str)
    assert boom.startswith("5:")
    assert "boom" in boom
    refuse = value(call(replica, caller, "call_refuse", (Types.Principal, counter)), Types.Text)
    assert refuse == "4:refused on purpose"
    missing = value(call(replica, caller, "call_missing", (Types.Principal, counter)), Types.Text)
    assert isinstance(missing, str)
    assert missing.startswith("5:")
    gone = value(
        call(replica, caller, "call_missing", (Types.Principal, ids.canister_id(77))), Types.Text
    )
    assert isinstance(gone, str)
    assert gone.startswith("3:")
    assert "not found" in gone


def test_calls_between_a_pair_keep_their_order(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    call(replica, caller, "send_many", (Types.Principal, counter), (Types.Nat, 25))
    response = query(replica, counter, "log")
    assert isinstance(response, Reply)
    assert value(response.data, Types.Vec(Types.Nat)) == list(range(25))


def test_trap_after_await_keeps_the_first_half(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    with pytest.raises(Reject) as err:
        call(replica, caller, "trap_after_await", (Types.Principal, counter))
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert nat_of(query(replica, caller, "after_await_count")) == 1
    assert nat_of(query(replica, counter, "get")) == 1
    assert replica.canisters[caller].open_call_contexts == 0


def test_timer_fires_when_time_passes(replica: Replica) -> None:
    caller = install(replica, "caller")
    call(replica, caller, "schedule", (Types.Nat, 30))
    replica.fire_due_timers()
    replica.run_until_idle()
    assert nat_of(query(replica, caller, "fired")) == 0
    replica.clock.advance(31)
    assert replica.fire_due_timers() == 1
    replica.run_until_idle()
    assert nat_of(query(replica, caller, "fired")) == 1


def test_stopped_canister_rejects_ingress(replica: Replica) -> None:
    counter = install(replica, "counter")
    replica.canisters[counter].status = CanisterStatus.STOPPED
    with pytest.raises(Reject) as err:
        call(replica, counter, "inc")
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert err.value.error_code == "IC0508"


def test_oversized_ingress_is_refused(replica: Replica) -> None:
    counter = install(replica, "counter")
    big = b"x" * (replica.limits.max_ingress_bytes + 1)
    with pytest.raises(Reject) as err:
        call(replica, counter, "store_size", (Types.Vec(Types.Nat8), big))
    assert "exceeds the ingress limit" in err.value.message


def test_duplicate_request_ids_run_once(replica: Replica) -> None:
    counter = install(replica, "counter")
    request = Request(
        request_type="call",
        request_id=b"d" * 32,
        sender=USER,
        ingress_expiry=0,
        effective_canister_id=counter,
        canister_id=counter,
        method_name="inc",
        arg=EMPTY_ARGS,
    )
    replica.submit_ingress(request)
    replica.submit_ingress(request)
    replica.run_until_idle()
    assert nat_of(query(replica, counter, "get")) == 1


def test_composite_query_calls_other_canisters_and_persists_nothing(replica: Replica) -> None:
    a, b, caller = (
        install(replica, "counter"),
        install(replica, "counter"),
        install(replica, "caller"),
    )
    call(replica, a, "set", (Types.Nat, 5))
    call(replica, b, "set", (Types.Nat, 7))
    both = ((Types.Principal, a), (Types.Principal, b))
    assert nat_of(query(replica, caller, "sum_of", *both)) == 1012
    assert nat_of(query(replica, caller, "sum_of", *both)) == 1012  # nothing persisted
    assert replica.canisters[caller].open_call_contexts == 0


def test_composite_query_sees_the_callees_reject(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    response = query(replica, caller, "cq_reject", (Types.Principal, counter))
    assert isinstance(response, Reply)
    text = value(response.data, Types.Text)
    assert isinstance(text, str)
    assert text.startswith("5:")
    assert "query boom" in text


def test_composite_query_cannot_be_called_as_an_update(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    with pytest.raises(Reject) as err:
        call(replica, caller, "sum_of", (Types.Principal, counter), (Types.Principal, counter))
    assert err.value.error_code == "IC0527"


def test_best_effort_call_answered_in_time_replies(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    reply = call(replica, caller, "call_inc_within", (Types.Principal, counter), (Types.Nat32, 5))
    assert value(reply, Types.Text) == "1"


def test_best_effort_call_past_its_deadline_gets_reject_code_6(replica: Replica) -> None:
    counter, caller = install(replica, "counter"), install(replica, "caller")
    arg = candid((Types.Principal, counter), (Types.Nat32, 5))
    replica.submit_ingress(
        Request(
            request_type="call",
            request_id=b"t" * 32,
            sender=USER,
            ingress_expiry=0,
            effective_canister_id=caller,
            canister_id=caller,
            method_name="call_inc_within",
            arg=arg,
        )
    )
    replica.run_until_idle(max_messages=1)  # the caller sent its call; nobody answered yet
    assert replica.next_timer_ns() == replica.clock.peek_ns() + 5 * 10**9
    replica.clock.advance(6)
    assert replica.expire_deadlines() == 1
    replica.run_until_idle()
    record = replica.requests[b"t" * 32]
    assert record.reply is not None
    assert value(record.reply, Types.Text) == "6:Timeout expired"
    # The callee still ran (its late answer was dropped), and no context stays open.
    assert nat_of(query(replica, counter, "get")) == 1
    assert replica.canisters[caller].open_call_contexts == 0
    assert replica.expire_deadlines() == 0
