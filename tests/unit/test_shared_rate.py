"""The rates all workers share: a token bucket leased in slices (limits.SharedRate).

Pure arithmetic (``lease_tokens``) and the wrapper on a fake clock with an
in-memory bucket; the same wrapper against PostgreSQL is in
``tests/store/test_pg_shared_rate.py``.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.limits import (
    BucketRow,
    CallSpec,
    Direct,
    Lease,
    LimitSettings,
    MemoryLeases,
    SharedBucket,
    SharedRate,
    SubnetRates,
    TokenBucket,
    build_caller,
    lease_tokens,
)

MiB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


# ------------------------------------------------------------------ arithmetic


def test_a_new_bucket_starts_empty_and_says_how_long_to_wait() -> None:
    lease, row = lease_tokens(None, 100.0, 250, rate=1000, capacity=1000)
    assert lease == Lease(0.0, 0.25)
    assert row == BucketRow(0.0, 100.0)
    lease, row = lease_tokens(row, 100.25, 250, rate=1000, capacity=1000)
    assert lease == Lease(250)
    assert row.tokens == pytest.approx(0.0)


def test_the_bucket_fills_up_to_its_capacity_only() -> None:
    lease, row = lease_tokens(BucketRow(0.0, 0.0), 60.0, 1500, rate=1000, capacity=1000)
    # Full (1000), asked for more than the capacity: granted whole, in debt.
    assert lease.granted == 1500
    assert row == BucketRow(-500.0, 60.0)
    lease, _ = lease_tokens(row, 60.5, 100, rate=1000, capacity=1000)
    assert lease == Lease(0.0, pytest.approx(0.1))  # the debt (500) was paid first


def test_a_clock_stepping_back_adds_nothing() -> None:
    lease, row = lease_tokens(BucketRow(100.0, 50.0), 40.0, 500, rate=1000, capacity=1000)
    assert lease.granted == 0
    assert row == BucketRow(100.0, 50.0)
    assert lease.wait == pytest.approx(0.4)


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        lease_tokens(None, 0.0, 1, rate=0, capacity=1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 0.5), st.floats(1, 3000)),  # (seconds later, tokens wanted)
        min_size=1,
        max_size=80,
    )
)
def test_grants_never_exceed_the_rate_over_any_window(asks: list[tuple[float, float]]) -> None:
    rate, capacity = 1000.0, 1000.0
    row: BucketRow | None = None
    now = 0.0
    grants: list[tuple[float, float]] = []
    for later, want in asks:
        now += later
        lease, row = lease_tokens(row, now, want, rate, capacity)
        if lease.granted:
            grants.append((now, lease.granted))
    # Starting empty, up to any time t: at most rate * t, plus the last grant's debt.
    excess = max((w - capacity for _, w in asks), default=0.0)
    for i, (t0, _) in enumerate(grants):
        total = 0.0
        for t1, granted in grants[i:]:
            total += granted
            assert total <= capacity + rate * (t1 - t0) + max(0.0, excess) + 1e-6
    assert sum(g for _, g in grants) <= rate * now + max(0.0, excess) + 1e-6


# ------------------------------------------------------------------ the wrapper


async def _copy(caller: SharedRate, chunk: int, until: float, clock: FakeClock, log: list) -> None:
    async def perform() -> None:
        log.append((clock.now, chunk))

    while clock.now < until:
        await caller.call(CallSpec("a", "icrp_write", bytes=chunk), perform)


async def test_workers_sharing_a_bucket_use_it_fully_and_never_exceed_it() -> None:
    clock = FakeClock()
    leases = MemoryLeases(clock)
    rate = 1 * MiB
    chunk = 100_000
    workers = [
        SharedRate(Direct(), leases, "ic", rate, clock=clock, sleep=clock.sleep) for _ in range(3)
    ]
    log: list[tuple[float, int]] = []
    await asyncio.gather(*(_copy(w, chunk, 20.0, clock, log) for w in workers))
    used = sum(n for t, n in log if t <= 20.0)
    assert used >= 0.9 * rate * 20.0
    # Over every window: the rate, the bucket's capacity, and what each worker
    # had left of its last lease (a quarter second's, or one chunk).
    lease = max(rate / 4, chunk)
    times = sorted(log)
    for i, (t0, _) in enumerate(times):
        total = 0
        for t1, n in times[i:]:
            total += n
            assert total <= rate * (t1 - t0) + rate + 3 * lease, (t0, t1, total)


async def test_a_call_larger_than_the_bucket_waits_for_a_full_one_and_goes_through() -> None:
    clock = FakeClock()
    shared = SharedRate(Direct(), MemoryLeases(clock), "ic", 1000, clock=clock, sleep=clock.sleep)

    async def perform() -> str:
        return "ok"

    assert await shared.call(CallSpec("a", "w", bytes=2500), perform) == "ok"
    assert clock.now == pytest.approx(1.0)  # a full bucket (one second), then debt
    assert shared.bucket.balance == pytest.approx(0.0)
    assert await shared.call(CallSpec("a", "w", bytes=100), perform) == "ok"
    assert clock.now == pytest.approx(2.75)  # the debt of 1500 paid, then 250 leased
    assert shared.bucket.balance == pytest.approx(150)


async def test_calls_per_second_count_calls_not_bytes() -> None:
    clock = FakeClock()
    shared = SharedRate(
        Direct(), MemoryLeases(clock), "ic", 8, unit="calls", clock=clock, sleep=clock.sleep
    )
    assert shared.name == "global_calls_per_second"

    async def perform() -> None:
        return None

    for _ in range(41):
        await shared.call(CallSpec("a", "w", bytes=10 * MiB), perform)
    assert clock.now == pytest.approx(5.0, abs=0.3)  # 8 a second, leased two at a time


def test_build_caller_stacks_the_global_rates_only_when_set() -> None:
    plain = build_caller(LimitSettings())
    assert not _shared(plain.caller)
    both = build_caller(
        LimitSettings(global_bytes_per_second=MiB, global_calls_per_second=5.0),
        leases=MemoryLeases(),
        scope="ic",
    )
    rates = _shared(both.caller)
    assert {(r.bucket.scope, r.bucket.per_second) for r in rates} == {
        ("ic:bytes", MiB),
        ("ic:calls", 5.0),
    }


def test_global_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="global_bytes_per_second must be positive"):
        LimitSettings(global_bytes_per_second=0)


def _shared(caller: object) -> list[SharedRate]:
    found = []
    while caller is not None:
        if isinstance(caller, SharedRate):
            found.append(caller)
        caller = getattr(caller, "inner", None)
    return found


async def test_workers_share_one_budget_per_subnet_and_subnets_stay_apart() -> None:
    """Per-subnet rates with a store's leases: three workers together hold each
    subnet's rate, and a busy subnet does not take another's budget."""
    clock = FakeClock()
    leases = MemoryLeases(clock)
    rate, chunk, until = 1 * MiB, 100_000, 20.0
    subnet = {"a": "s1", "b": "s2"}

    async def subnet_of(canister: str) -> str:
        return subnet[canister]

    workers = [
        SubnetRates(
            Direct(),
            subnet_of,
            calls_per_second=None,
            bytes_per_second=rate,
            leases=leases,
            scope="ic",
            clock=clock,
            sleep=clock.sleep,
        )
        for _ in range(3)
    ]
    assert all(isinstance(w.buckets("s1")[1], SharedBucket) for w in workers)
    log: list[tuple[float, str, int]] = []

    async def copy(worker: SubnetRates, canister: str) -> None:
        async def perform() -> None:
            log.append((clock.now, canister, chunk))

        while clock.now < until:
            await worker.call(CallSpec(canister, "icrp_write", bytes=chunk), perform)

    await asyncio.gather(*(copy(w, c) for w in workers for c in ("a", "b")))
    lease = max(rate / 4, chunk)
    for canister in ("a", "b"):
        times = sorted((t, n) for t, c, n in log if c == canister)
        used = sum(n for t, n in times if t <= until)
        assert used >= 0.9 * rate * until  # each subnet gets its own budget
        for i, (t0, _) in enumerate(times):
            total = 0
            for t1, n in times[i:]:
                total += n
                assert total <= rate * (t1 - t0) + rate + 3 * lease, (canister, t0, t1, total)


def test_per_subnet_buckets_are_this_process_s_without_a_store() -> None:
    async def subnet_of(canister: str) -> str:
        return "s1"

    alone = SubnetRates(Direct(), subnet_of, calls_per_second=5.0, bytes_per_second=MiB)
    calls, nbytes = alone.buckets("s1")
    assert isinstance(calls, TokenBucket)
    assert isinstance(nbytes, TokenBucket)
