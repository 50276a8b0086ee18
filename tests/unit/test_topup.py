"""The cycles a created backup canister needs (pure), and the metrics that watch it."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from replicator.errors import UsageError
from replicator.metrics import CyclesMetrics
from replicator.topup import (
    SECONDS_PER_DAY,
    Balance,
    TopUpPolicy,
    copy_cost,
    floor,
    target,
    top_up_amount,
)

B = 10**9
T = 10**12
MiB = 1024 * 1024
# A canister burning 1 B cycles a day idle, with the IC's default threshold of 30 days.
IDLE = 1 * B
THIRTY_DAYS = 30 * SECONDS_PER_DAY


def at(
    cycles: int, *, idle: int = IDLE, threshold: int = THIRTY_DAYS, reserved: int = 0
) -> Balance:
    return Balance(cycles, idle, threshold, reserved)


def test_the_freezing_limit_is_the_threshold_in_idle_burn() -> None:
    assert at(T).freezing_limit == 30 * B
    assert at(T, reserved=10 * B).freezing_limit == 20 * B  # reserved cycles pay first
    assert at(T, reserved=100 * B).freezing_limit == 0
    assert at(T, threshold=0).freezing_limit == 0


def test_days_left_count_from_the_freezing_limit() -> None:
    assert at(130 * B).days_left == 100
    assert at(30 * B).days_left == 0
    assert at(10 * B).frozen
    assert at(10 * B).days_left == 0
    assert not at(31 * B).frozen
    assert at(T, idle=0).days_left == math.inf


def test_no_top_up_above_the_floor() -> None:
    policy = TopUpPolicy(below_days=30, to_days=90, reserve=100 * B)
    # floor = limit 30 B + 30 days × 1 B + reserve 100 B
    assert floor(at(0), policy) == 160 * B
    assert top_up_amount(at(160 * B), policy) == 0
    assert top_up_amount(at(10 * T), policy) == 0


def test_below_the_floor_the_canister_is_filled_to_the_target() -> None:
    policy = TopUpPolicy(below_days=30, to_days=90, reserve=100 * B)
    # target = limit 30 B + 90 days × 1 B + reserve 100 B + one more reserve 100 B
    assert target(at(0), policy) == 320 * B
    assert top_up_amount(at(159 * B), policy) == 161 * B
    assert top_up_amount(at(0), policy) == 320 * B  # even a frozen one
    after = at(159 * B + top_up_amount(at(159 * B), policy))
    assert after.days_left > policy.to_days  # the reserves are above the days


def test_the_coming_copy_raises_the_reserve_when_it_costs_more() -> None:
    policy = TopUpPolicy(below_days=30, to_days=90, reserve=100 * B)
    work = copy_cost(256 * MiB, pushes=False)  # relay writes: ~2,000 cycles per byte
    assert 500 * B < work < 600 * B
    assert top_up_amount(at(200 * B), policy) == 0
    assert top_up_amount(at(200 * B), policy, work) == target(at(0), policy, work) - 200 * B
    assert target(at(0), policy, work) == 30 * B + 90 * B + work + 100 * B
    assert copy_cost(256 * MiB, pushes=True) < work  # pushing costs 1,000 per byte


@pytest.mark.parametrize(
    "bad",
    [
        {"source": "wallet"},
        {"below_days": 10, "to_days": 5},
        {"below_days": -1},
        {"to_days": math.inf},
        {"reserve": -1},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        TopUpPolicy(**bad)  # type: ignore[arg-type]


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_the_metrics_summarise_every_watched_canister_without_naming_one() -> None:
    now = [1_000_000.0]
    registry = CollectorRegistry()
    metrics = CyclesMetrics(registry, clock=lambda: now[0])
    assert _sample(registry, "replicator_backup_canisters_watched") == 0
    assert _sample(registry, "replicator_backup_canister_freeze_days_min") == math.inf
    assert _sample(registry, "replicator_backup_canister_top_ups_total", outcome="failed") == 0

    metrics.observed("aaaaa-aa", days_left=40.0, cycles=5 * T, low=False)
    metrics.observed("bbbbb-bb", days_left=400.0, cycles=T, low=True)
    metrics.observed("aaaaa-aa", days_left=50.0, cycles=6 * T, low=False)  # a newer reading
    assert _sample(registry, "replicator_backup_canisters_watched") == 2
    assert _sample(registry, "replicator_backup_canister_freeze_days_min") == 50
    assert _sample(registry, "replicator_backup_canister_cycles_min") == T
    assert _sample(registry, "replicator_backup_canisters_low") == 1
    assert _sample(registry, "replicator_backup_canister_checks_total", outcome="ok") == 3

    now[0] += 10 * SECONDS_PER_DAY  # no run for ten days: the days still run out
    assert _sample(registry, "replicator_backup_canister_freeze_days_min") == 40
    now[0] += 100 * SECONDS_PER_DAY
    assert _sample(registry, "replicator_backup_canister_freeze_days_min") == 0

    metrics.topped_up(3 * T)
    metrics.top_up_missed("failed")
    metrics.unreadable()
    assert _sample(registry, "replicator_backup_canister_top_ups_total", outcome="ok") == 1
    assert _sample(registry, "replicator_backup_canister_top_ups_total", outcome="failed") == 1
    assert _sample(registry, "replicator_backup_canister_top_up_cycles_total") == 3 * T
    assert _sample(registry, "replicator_backup_canister_checks_total", outcome="unreadable") == 1
    for family in registry.collect():
        for sample in family.samples:
            assert not set(sample.labels) - {"outcome"}, sample  # never a canister id
