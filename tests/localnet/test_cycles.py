"""The cycles cost model: the fee table, scaling, the freezing limit and frozen canisters."""

from __future__ import annotations

import pytest

from localnet import cycles
from localnet.errors import ErrorCode, Reject, RejectCode
from localnet.state import Settings

GiB = 1024**3


def test_fees_of_a_13_node_subnet_match_the_ic_table() -> None:
    assert cycles.creation_fee() == 500_000_000_000
    assert cycles.ingress_fee(0) == 1_200_000
    assert cycles.ingress_fee(100) == 1_200_000 + 100 * 2_000
    assert cycles.xnet_fee(0) == 260_000
    assert cycles.xnet_fee(1_000) == 260_000 + 1_000 * 1_000
    # 5 M per message plus 1 cycle per instruction (10 per 10), twice that for Wasm64.
    assert cycles.execution_fee(0) == 5_000_000
    assert cycles.execution_fee(1_000_000) == 5_000_000 + 1_000_000
    assert cycles.execution_fee(1_000_000, wasm64=True) == 5_000_000 + 2_000_000


def test_fees_scale_linearly_with_the_subnet_size() -> None:
    assert cycles.creation_fee(subnet_size=26) == 1_000_000_000_000
    assert cycles.ingress_fee(10, subnet_size=34) == (1_200_000 + 20_000) * 34 // 13
    assert cycles.execution_fee(10, subnet_size=1) == (5_000_000 + 10) // 13


def test_storage_costs_127k_cycles_per_gib_second() -> None:
    assert cycles.storage_fee(GiB, 1) == 127_000
    assert cycles.storage_fee(GiB, 10) == 1_270_000
    assert cycles.storage_fee(GiB // 2, 2) == 127_000
    assert cycles.compute_allocation_fee(10, 1) == 100_000_000


def test_idle_burn_charges_the_larger_of_allocation_and_usage() -> None:
    small = Settings(controllers=[])
    per_day = cycles.idle_cycles_burned_per_day(small, GiB)
    assert per_day == 127_000 * 86_400
    allocated = Settings(controllers=[], memory_allocation=2 * GiB)
    assert cycles.idle_cycles_burned_per_day(allocated, GiB) == 2 * per_day
    computing = Settings(controllers=[], compute_allocation=1)
    assert cycles.idle_cycles_burned_per_day(computing, 0) == 10_000_000 * 86_400


def test_freezing_limit_is_the_threshold_worth_of_idle_burn() -> None:
    thirty_days = Settings(controllers=[])  # default threshold: 2,592,000 s
    assert cycles.freezing_limit(thirty_days, GiB) == 127_000 * 2_592_000
    one_day = Settings(controllers=[], freezing_threshold=86_400)
    assert cycles.freezing_limit(one_day, GiB) == 127_000 * 86_400
    assert cycles.freezing_limit(Settings(controllers=[], freezing_threshold=0), GiB) == 0
    # Reserved cycles pay for memory first.
    assert cycles.freezing_limit(one_day, GiB, reserved_cycles=10**20) == 0


def test_out_of_cycles_message_tells_only_controllers_how_much_is_missing() -> None:
    told = cycles.out_of_cycles_message(
        "aaaaa-aa", available=100, requested=30, threshold=80, reveal_top_up=True
    )
    assert told == (
        "Canister aaaaa-aa is out of cycles: please top up the canister with at least 10 "
        "additional cycles"
    )
    hidden = cycles.out_of_cycles_message(
        "aaaaa-aa", available=100, requested=30, threshold=80, reveal_top_up=False
    )
    assert hidden == "Canister aaaaa-aa is out of cycles"


def test_a_canister_cannot_pay_below_its_freezing_limit() -> None:
    assert cycles.can_withdraw(100, 20, 80)
    assert not cycles.can_withdraw(100, 21, 80)
    cycles.check_withdraw("x", balance=100, amount=20, limit=80, reveal_top_up=True)
    with pytest.raises(Reject) as info:
        cycles.check_withdraw("x", balance=100, amount=21, limit=80, reveal_top_up=True)
    # Frozen canisters are a transient condition: topping up fixes it.
    assert info.value.code == RejectCode.SYS_TRANSIENT
    assert info.value.error_code == ErrorCode.CANISTER_OUT_OF_CYCLES
    assert "at least 1 additional cycles" in info.value.message
