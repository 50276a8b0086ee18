"""The management canister: creation, settings, status, history, lifecycle, the ingress filter.

Runs against a fake ManagementHost (``mgmt_util``); install and snapshots have
their own test files.
"""

from __future__ import annotations

import pytest
from icp_candid import Types, encode
from mgmt_util import (
    CONTROLLER,
    STRANGER,
    FakeHost,
    assert_reject,
    canister_wasm,
    cid_arg,
    encode_arg,
    principal,
    settings_arg,
)

from localnet import cycles, ids
from localnet.errors import ErrorCode, Reject
from localnet.management import check_ingress, effective_canister_id, management_query
from localnet.mgmt_types import decode_args, decode_result
from localnet.sandbox import WasmEngine
from localnet.state import CanisterStatus

OTHER = b"\x07" * 29
MISSING = ids.canister_id(999)


@pytest.fixture
def host(engine: WasmEngine) -> FakeHost:
    return FakeHost(engine)


def provisional(**fields: object) -> dict[str, object]:
    value: dict[str, object] = {
        "amount": [],
        "settings": [],
        "specified_id": [],
        "sender_canister_version": [],
    }
    value.update(fields)
    return value


# --- creating canisters ----------------------------------------------------------------


def test_provisional_create_makes_the_caller_controller_with_default_cycles(
    host: FakeHost,
) -> None:
    result = host.ok("provisional_create_canister_with_cycles", provisional())
    cid = principal(result["canister_id"])
    canister = host.canisters[cid]
    assert cid == ids.canister_id(0)
    assert canister.controllers == [CONTROLLER]
    assert canister.cycles == cycles.DEFAULT_PROVISIONAL_CYCLES
    assert canister.status == CanisterStatus.RUNNING
    assert canister.wasm_module is None


def test_provisional_create_with_amount_settings_and_specified_id(host: FakeHost) -> None:
    wanted = ids.canister_id(42)
    settings = settings_arg(controllers=[OTHER, CONTROLLER, OTHER], freezing_threshold=60)
    result = host.ok(
        "provisional_create_canister_with_cycles",
        provisional(amount=[123], settings=[settings], specified_id=[wanted]),
    )
    assert principal(result["canister_id"]) == wanted
    canister = host.canisters[wanted]
    assert canister.cycles == 123
    assert canister.controllers == sorted([CONTROLLER, OTHER])  # a set, as on the IC
    assert canister.settings.freezing_threshold == 60


def test_provisional_create_refuses_a_taken_or_foreign_specified_id(host: FakeHost) -> None:
    taken = host.create()
    reject = host.fails(
        "provisional_create_canister_with_cycles", provisional(specified_id=[taken])
    )
    assert_reject(reject, ErrorCode.CANISTER_ALREADY_INSTALLED, "is already installed")
    reject = host.fails(
        "provisional_create_canister_with_cycles", provisional(specified_id=[CONTROLLER])
    )
    assert_reject(reject, ErrorCode.CANISTER_NOT_HOSTED_BY_SUBNET, "is not hosted by this subnet")


def test_allocated_ids_skip_specified_ones(host: FakeHost) -> None:
    host.ok(
        "provisional_create_canister_with_cycles", provisional(specified_id=[ids.canister_id(0)])
    )
    assert host.create() == ids.canister_id(1)


def test_create_canister_is_paid_with_attached_cycles(host: FakeHost) -> None:
    parent = host.create()
    answers = host.call(
        "create_canister",
        {"settings": [], "sender_canister_version": []},
        caller=parent,
        cycles=2 * cycles.CANISTER_CREATION_FEE,
        via_ingress=False,
    )
    assert answers[0].ok
    assert answers[0].refund == 0
    child = principal(decode_result("create_canister", answers[0].reply())["canister_id"])
    assert host.canisters[child].cycles == cycles.CANISTER_CREATION_FEE
    assert host.canisters[child].controllers == [parent]


def test_create_canister_without_enough_cycles_refunds_them(host: FakeHost) -> None:
    parent = host.create()
    answers = host.call(
        "create_canister",
        {"settings": [], "sender_canister_version": []},
        caller=parent,
        cycles=10**9,
        via_ingress=False,
    )
    assert answers[0].refund == 10**9
    assert_reject(
        answers[0].reject(),
        ErrorCode.INSUFFICIENT_CYCLES_FOR_CREATE_CANISTER,
        "requires a fee of 500000000000",
        "only 1000000000 cycles were received",
    )
    assert len(host.canisters) == 1


def test_canister_only_methods_refuse_ingress(host: FakeHost) -> None:
    cid = host.create()
    for method, value in [
        ("create_canister", {"settings": [], "sender_canister_version": []}),
        ("raw_rand", None),
        ("deposit_cycles", cid_arg(cid)),
        ("canister_info", {"canister_id": cid, "num_requested_changes": []}),
    ]:
        reject = host.fails(method, value, via_ingress=True)
        assert_reject(
            reject,
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            f"Only canisters can call ic00 method {method}",
        )


def test_raw_rand_gives_32_bytes_to_canisters(host: FakeHost) -> None:
    data = host.ok("raw_rand", caller=host.create(), via_ingress=False)
    assert isinstance(data, bytes)
    assert len(data) == 32


def test_deposit_and_top_up_add_cycles(host: FakeHost) -> None:
    cid = host.create(amount=1_000)
    answers = host.call("deposit_cycles", cid_arg(cid), caller=OTHER, cycles=500, via_ingress=False)
    assert answers[0].ok
    assert answers[0].refund == 0
    host.ok("provisional_top_up_canister", {"canister_id": cid, "amount": 50}, caller=STRANGER)
    assert host.canisters[cid].cycles == 1_550


# --- bad input -------------------------------------------------------------------------------


def test_unknown_method_is_method_not_found(host: FakeHost) -> None:
    reject = host.fails("no_such_method", raw=bytes(encode([])))
    assert_reject(
        reject,
        ErrorCode.CANISTER_METHOD_NOT_FOUND,
        "Management canister has no method 'no_such_method'",
    )


def test_undecodable_payload_is_invalid_management_payload(host: FakeHost) -> None:
    cid = host.create()
    for raw in (b"not candid", bytes(encode([{"type": Types.Nat, "value": 1}]))):
        answers = host.call("start_canister", raw=raw, cycles=7, via_ingress=False, caller=cid)
        assert answers[0].refund == 7
        assert_reject(
            answers[0].reject(), ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Error decoding candid"
        )


def test_missing_canister_is_destination_invalid(host: FakeHost) -> None:
    for method in ("canister_status", "start_canister", "stop_canister", "delete_canister"):
        reject = host.fails(method, cid_arg(MISSING))
        assert_reject(
            reject, ErrorCode.CANISTER_NOT_FOUND, f"Canister {ids.to_text(MISSING)} not found"
        )


def test_non_controllers_are_refused_with_the_ics_message(host: FakeHost) -> None:
    cid = host.create()
    for method in ("start_canister", "stop_canister", "delete_canister", "canister_status"):
        reject = host.fails(method, cid_arg(cid), caller=STRANGER, via_ingress=False)
        assert reject.code == 5
        assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    reject = host.fails("start_canister", cid_arg(cid), caller=STRANGER)
    assert reject.message.startswith(
        f"Only the controllers of the canister {ids.to_text(cid)} can control it.\n"
        f"Canister's controllers: {ids.to_text(CONTROLLER)}\nSender's ID: {ids.to_text(STRANGER)}"
    )
    assert "#invalid-controller" in reject.message


# --- settings ------------------------------------------------------------------------------


def update_settings(cid: bytes, **given: object) -> dict[str, object]:
    return {"canister_id": cid, "settings": settings_arg(**given), "sender_canister_version": []}


def test_update_settings_sets_exactly_the_given_controllers(host: FakeHost) -> None:
    cid = host.create()
    version = host.canisters[cid].canister_version
    host.ok("update_settings", update_settings(cid, controllers=[OTHER, STRANGER]))
    canister = host.canisters[cid]
    assert canister.controllers == sorted([OTHER, STRANGER])
    assert canister.canister_version == version + 1
    # The old controller lost control.
    reject = host.fails("update_settings", update_settings(cid, freezing_threshold=1))
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    host.ok("update_settings", update_settings(cid, controllers=[]), caller=OTHER)
    assert host.canisters[cid].controllers == []


def test_update_settings_changes_only_given_fields(host: FakeHost) -> None:
    cid = host.create()
    host.ok(
        "update_settings",
        update_settings(
            cid,
            freezing_threshold=100,
            wasm_memory_limit=2**30,
            log_visibility={"public": None},
            snapshot_visibility={"allowed_viewers": [OTHER]},
            environment_variables=[{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        ),
    )
    s = host.canisters[cid].settings
    assert s.controllers == [CONTROLLER]
    assert (s.freezing_threshold, s.wasm_memory_limit) == (100, 2**30)
    assert s.log_visibility == "public"
    assert (s.snapshot_visibility, s.snapshot_viewers) == ("allowed_viewers", [OTHER])
    assert s.environment_variables == [("A", "1"), ("B", "2")]
    assert s.compute_allocation == 0


ELEVEN = [bytes([i]) * 29 for i in range(11)]
CONTRACT = ErrorCode.CANISTER_CONTRACT_VIOLATION
PAYLOAD = ErrorCode.INVALID_MANAGEMENT_PAYLOAD


@pytest.mark.parametrize(
    ("given", "code", "fragment"),
    [
        ({"controllers": ELEVEN}, CONTRACT, "exceeds maximum size allowed of 10"),
        ({"compute_allocation": 101}, CONTRACT, "range [0..100], got 101"),
        ({"freezing_threshold": 2**64}, CONTRACT, "Freezing threshold"),
        ({"wasm_memory_limit": 2**48 + 1}, CONTRACT, "Wasm memory limit"),
        ({"log_visibility": {"allowed_viewers": ELEVEN}}, CONTRACT, "allowed viewers"),
        (
            {"environment_variables": [{"name": "x" * 200, "value": ""}]},
            PAYLOAD,
            "exceeds the maximum allowed length",
        ),
        ({"environment_variables": [{"name": "a", "value": ""}] * 2}, PAYLOAD, "Duplicate"),
    ],
    ids=["controllers", "compute", "freezing", "wasm-limit", "viewers", "env-name", "env-dup"],
)
def test_update_settings_validates(
    host: FakeHost, given: dict[str, object], code: str, fragment: str
) -> None:
    cid = host.create()
    before = host.canisters[cid].settings
    reject = host.fails("update_settings", update_settings(cid, **given))
    assert_reject(reject, code, fragment)
    assert host.canisters[cid].settings == before


def test_raising_an_allocation_needs_cycles_above_the_new_freezing_limit(host: FakeHost) -> None:
    cid = host.create(amount=10**9)
    reject = host.fails("update_settings", update_settings(cid, compute_allocation=50))
    assert_reject(
        reject,
        ErrorCode.INSUFFICIENT_CYCLES_IN_COMPUTE_ALLOCATION,
        "Cannot increase compute allocation to 50%",
    )
    reject = host.fails("update_settings", update_settings(cid, memory_allocation=2**40))
    assert_reject(
        reject, ErrorCode.INSUFFICIENT_CYCLES_IN_MEMORY_ALLOCATION, "additional cycles are required"
    )
    # Only raising the threshold may freeze the canister: that is allowed.
    host.ok("update_settings", update_settings(cid, freezing_threshold=2**60))


# --- status and info ---------------------------------------------------------------------


def test_canister_status_reports_settings_sizes_and_cycles(host: FakeHost) -> None:
    cid = host.create(amount=10**13)
    status = host.ok("canister_status", cid_arg(cid))
    assert status["status"] == {"running": None}
    assert status["module_hash"] == []
    assert status["cycles"] == 10**13
    assert status["settings"]["controllers"][0].bytes == CONTROLLER
    assert status["settings"]["freezing_threshold"] == 2_592_000
    assert status["settings"]["log_visibility"] == {"controllers": None}
    host.install(cid, canister_wasm("mg_state"))
    status = host.ok("canister_status", cid_arg(cid))
    metrics = status["memory_metrics"]
    canister = host.canisters[cid]
    assert status["module_hash"] == [canister.module_hash]
    assert metrics["wasm_binary_size"] == len(canister_wasm("mg_state"))
    assert canister.sandbox is not None
    assert metrics["wasm_memory_size"] == canister.sandbox.heap_size > 0
    assert metrics["stable_memory_size"] == canister.sandbox.stable_size
    assert metrics["custom_sections_size"] > 0  # candid:service, motoko:stable-types, ...
    parts = (
        "wasm_memory_size",
        "stable_memory_size",
        "wasm_binary_size",
        "wasm_chunk_store_size",
        "snapshots_size",
        "canister_history_size",
    )
    assert status["memory_size"] == sum(metrics[p] for p in parts)
    assert status["idle_cycles_burned_per_day"] == cycles.idle_cycles_burned_per_day(
        canister.settings, status["memory_size"]
    )
    assert status["version"] == canister.canister_version


def test_canister_status_access_self_controllers_and_visibility(host: FakeHost) -> None:
    cid = host.create()
    host.ok("canister_status", cid_arg(cid), caller=cid, via_ingress=False)  # the canister itself
    reject = host.fails("canister_status", cid_arg(cid), caller=STRANGER)
    assert reject.error_code == ErrorCode.CANISTER_INVALID_CONTROLLER
    host.ok(
        "update_settings", update_settings(cid, status_visibility={"allowed_viewers": [STRANGER]})
    )
    host.ok("canister_status", cid_arg(cid), caller=STRANGER)
    host.fails("canister_status", cid_arg(cid), caller=OTHER)
    host.ok("update_settings", update_settings(cid, status_visibility={"public": None}))
    host.ok("canister_status", cid_arg(cid), caller=OTHER)


def test_canister_status_as_a_query(host: FakeHost) -> None:
    cid = host.create()
    arg = encode_arg("canister_status", cid_arg(cid))
    response = management_query(host, caller=CONTROLLER, method="canister_status", arg=arg)
    assert response.__class__.__name__ == "Reply"
    response = management_query(host, caller=STRANGER, method="canister_status", arg=arg)
    assert getattr(response, "error_code", "") == ErrorCode.CANISTER_INVALID_CONTROLLER
    response = management_query(host, caller=CONTROLLER, method="install_code", arg=arg)
    assert getattr(response, "error_code", "") == ErrorCode.CANISTER_METHOD_NOT_FOUND


def test_canister_info_reports_the_history(host: FakeHost) -> None:
    cid = host.create()
    host.ok("update_settings", update_settings(cid, controllers=[CONTROLLER, OTHER]))
    host.install(cid, canister_wasm("mg_state"))
    host.ok("uninstall_code", {"canister_id": cid, "sender_canister_version": []})
    info = host.ok(
        "canister_info",
        {"canister_id": cid, "num_requested_changes": [10]},
        caller=OTHER,
        via_ingress=False,
    )
    assert info["total_num_changes"] == 4
    kinds = [next(iter(c["details"])) for c in info["recent_changes"]]
    assert kinds == ["creation", "controllers_change", "code_deployment", "code_uninstall"]
    versions = [c["canister_version"] for c in info["recent_changes"]]
    assert versions == sorted(versions)
    assert principal(info["recent_changes"][0]["origin"]["from_user"]["user_id"]) == CONTROLLER
    deployment = info["recent_changes"][2]["details"]["code_deployment"]
    assert deployment["mode"] == {"install": None}
    assert len(deployment["module_hash"]) == 32
    assert info["module_hash"] == []
    none = host.ok(
        "canister_info",
        {"canister_id": cid, "num_requested_changes": []},
        caller=OTHER,
        via_ingress=False,
    )
    assert none["recent_changes"] == []


# --- stop, start, delete -------------------------------------------------------------------


def test_stop_replies_at_once_without_open_call_contexts(host: FakeHost) -> None:
    cid = host.create()
    answers = host.call("stop_canister", cid_arg(cid))
    assert len(answers) == 1
    assert answers[0].ok
    assert host.canisters[cid].status == CanisterStatus.STOPPED
    again = host.call("stop_canister", cid_arg(cid))  # already stopped: immediate reply
    assert again[0].ok


def test_stop_waits_for_open_call_contexts(host: FakeHost) -> None:
    cid = host.create()
    host.open_context(cid)
    host.open_context(cid)
    answers = host.call("stop_canister", cid_arg(cid))
    second = host.call("stop_canister", cid_arg(cid))
    assert answers == []
    assert second == []
    assert host.canisters[cid].status == CanisterStatus.STOPPING
    host.close_context(cid)
    assert answers == []
    host.close_context(cid)
    assert [a.ok for a in answers] == [True]
    assert [a.ok for a in second] == [True]
    assert host.canisters[cid].status == CanisterStatus.STOPPED


def test_start_cancels_pending_stops(host: FakeHost) -> None:
    cid = host.create()
    host.open_context(cid)
    pending = host.call("stop_canister", cid_arg(cid), cycles=5, via_ingress=False)
    host.ok("start_canister", cid_arg(cid))
    assert len(pending) == 1
    assert pending[0].refund == 5
    assert_reject(
        pending[0].reject(), ErrorCode.CANISTER_STOPPING_CANCELLED, "stop request was cancelled"
    )
    assert host.canisters[cid].status == CanisterStatus.RUNNING
    host.close_context(cid)  # nothing else happens
    assert len(pending) == 1
    assert host.canisters[cid].status == CanisterStatus.RUNNING


def test_uninstall_while_stopping_completes_the_stop(host: FakeHost) -> None:
    cid = host.create()
    host.install(cid, canister_wasm("mg_state"))
    host.open_context(cid)
    pending = host.call("stop_canister", cid_arg(cid))
    host.ok("uninstall_code", {"canister_id": cid, "sender_canister_version": []})
    assert host.rejected_calls == [(cid, "Canister has been uninstalled.")]
    assert pending[0].ok
    assert host.canisters[cid].status == CanisterStatus.STOPPED


def test_delete_requires_a_stopped_canister_and_forgets_it(host: FakeHost) -> None:
    cid = host.create()
    reject = host.fails("delete_canister", cid_arg(cid))
    assert_reject(reject, ErrorCode.CANISTER_NOT_STOPPED, "must be stopped before it is deleted")
    reject = host.fails("delete_canister", cid_arg(cid), caller=cid, via_ingress=False)
    assert_reject(reject, ErrorCode.CANISTER_INVALID_CONTROLLER, "cannot delete itself")
    host.ok("stop_canister", cid_arg(cid))
    host.ok("delete_canister", cid_arg(cid))
    assert cid not in host.canisters
    reject = host.fails("canister_status", cid_arg(cid))
    assert reject.error_code == ErrorCode.CANISTER_NOT_FOUND


# --- the ingress filter and effective canister ids ------------------------------------------


def test_effective_canister_id_of_each_kind_of_method() -> None:
    cid = ids.canister_id(5)
    assert (
        effective_canister_id("canister_status", encode_arg("canister_status", cid_arg(cid))) == cid
    )
    chunked = {
        "mode": {"install": None},
        "target_canister": cid,
        "store_canister": [ids.canister_id(6)],
        "chunk_hashes_list": [],
        "wasm_module_hash": bytes(32),
        "arg": b"",
        "sender_canister_version": [],
    }
    assert (
        effective_canister_id("install_chunked_code", encode_arg("install_chunked_code", chunked))
        == cid
    )
    specified = encode_arg(
        "provisional_create_canister_with_cycles", provisional(specified_id=[cid])
    )
    assert effective_canister_id("provisional_create_canister_with_cycles", specified) == cid
    plain = encode_arg("provisional_create_canister_with_cycles", provisional())
    assert effective_canister_id("provisional_create_canister_with_cycles", plain) is None
    assert effective_canister_id("raw_rand", bytes(encode([]))) is None
    assert effective_canister_id("canister_status", b"junk") is None
    assert effective_canister_id("nope", b"") is None


def test_ingress_filter(host: FakeHost) -> None:
    cid = host.create(amount=10**13)
    arg = encode_arg("start_canister", cid_arg(cid))
    before = host.canisters[cid].cycles
    check_ingress(host, sender=CONTROLLER, method="start_canister", arg=arg)
    # The managed canister pays the ingress fee.
    assert host.canisters[cid].cycles == before - cycles.ingress_fee(
        len("start_canister") + len(arg)
    )
    cases = [
        (
            STRANGER,
            "start_canister",
            arg,
            ErrorCode.CANISTER_INVALID_CONTROLLER,
            f"Only controllers of canister {ids.to_text(cid)} can call ic00 method start_canister",
        ),
        (
            CONTROLLER,
            "raw_rand",
            bytes(encode([])),
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            "Only canisters can call ic00 method raw_rand",
        ),
        (
            CONTROLLER,
            "bogus",
            b"",
            ErrorCode.CANISTER_REJECTED_MESSAGE,
            "Only canisters can call ic00 method bogus",
        ),
        (
            CONTROLLER,
            "start_canister",
            b"junk",
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            "Failed to decode payload for ic00 method: start_canister",
        ),
        (
            CONTROLLER,
            "start_canister",
            encode_arg("start_canister", cid_arg(MISSING)),
            ErrorCode.CANISTER_NOT_FOUND,
            f"Canister {ids.to_text(MISSING)} not found",
        ),
    ]
    for sender, method, payload, code, message in cases:
        with pytest.raises(Reject) as info:
            check_ingress(host, sender=sender, method=method, arg=payload)
        assert info.value.error_code == code
        assert info.value.message == message
    check_ingress(host, sender=STRANGER, method="provisional_create_canister_with_cycles", arg=b"")


def test_ingress_filter_honours_visibility_and_freezing(host: FakeHost) -> None:
    cid = host.create(amount=10**13)
    status = encode_arg("canister_status", cid_arg(cid))
    with pytest.raises(Reject):
        check_ingress(host, sender=STRANGER, method="canister_status", arg=status)
    host.ok("update_settings", update_settings(cid, status_visibility={"public": None}))
    check_ingress(host, sender=STRANGER, method="canister_status", arg=status)
    host.canisters[cid].cycles = 0
    with pytest.raises(Reject) as info:
        check_ingress(host, sender=CONTROLLER, method="canister_status", arg=status)
    assert info.value.error_code == ErrorCode.CANISTER_OUT_OF_CYCLES
    assert info.value.code == 2


def test_decode_args_accepts_older_and_newer_clients() -> None:
    older = Types.Record({"canister_id": Types.Principal, "settings": Types.Record({})})
    data = bytes(encode([{"type": older, "value": {"canister_id": bytes(10), "settings": {}}}]))
    args = decode_args("update_settings", data)
    assert args["settings"]["controllers"] == []
    newer = Types.Record({"canister_id": Types.Principal, "future_field": Types.Text})
    data = bytes(
        encode([{"type": newer, "value": {"canister_id": bytes(10), "future_field": "x"}}])
    )
    assert decode_args("canister_status", data)["canister_id"].bytes == bytes(10)
