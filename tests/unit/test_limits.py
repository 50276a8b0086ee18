"""Call limits on a fake clock: no test here waits on real time."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.errors import EXIT_BUDGET, BudgetExceeded
from replicator.limits import (
    BLOCK_BYTES_PER_SECOND,
    IN_SUBNET_BYTES_PER_SECOND,
    ByteRate,
    CallRate,
    CallSpec,
    CyclesBudget,
    Direct,
    InFlight,
    LimitSettings,
    MemorySpending,
    TimeWindows,
    TokenBucket,
    Window,
    build_caller,
    estimate_cycles,
)

MiB = 1024 * 1024


class FakeClock:
    """Monotonic seconds and a UTC wall clock that only move when someone sleeps."""

    def __init__(self, wall: dt.datetime | None = None) -> None:
        self.now = 0.0
        self.wall0 = wall or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> dt.datetime:
        return self.wall0 + dt.timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class Waits:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, limit: str, seconds: float) -> None:
        self.seconds[limit] += seconds


async def _ok() -> str:
    return "ok"


def _spec(canister: str = "a", nbytes: int = 0, cycles: int = 0) -> CallSpec:
    return CallSpec(canister, "icrp_write", bytes=nbytes, cycles=cycles)


# ------------------------------------------------------------- token bucket


async def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, capacity=1000, clock=clock, sleep=clock.sleep)
    await bucket.acquire(600)
    await bucket.acquire(400)
    assert clock.now == 0  # the burst
    for _ in range(5):
        await bucket.acquire(1000)
    assert clock.now == pytest.approx(5.0)


async def test_permits_larger_than_the_bucket_wait_for_a_full_bucket_and_keep_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1 * MiB, capacity=1 * MiB, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await bucket.acquire(2 * MiB)  # a weight above the capacity is allowed
    # 20 MiB at 1 MiB/s with a 1 MiB head start: the last permit starts at 18 s.
    assert clock.now == pytest.approx(18.0)
    assert bucket.tokens == pytest.approx(-1 * MiB)


async def test_a_waiting_large_permit_is_not_starved_by_small_ones() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=100, clock=clock, sleep=clock.sleep)
    await bucket.acquire(100)
    order: list[str] = []

    async def take(name: str, weight: int) -> None:
        await bucket.acquire(weight)
        order.append(name)

    big = asyncio.create_task(take("big", 100))
    await asyncio.sleep(0)
    smalls = [asyncio.create_task(take(f"small{i}", 1)) for i in range(3)]
    await asyncio.gather(big, *smalls)
    assert order[0] == "big"


async def test_cancelled_waiter_takes_nothing() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        await gate.wait()

    bucket = TokenBucket(rate=10, capacity=10, clock=clock, sleep=blocking_sleep)
    await bucket.acquire(10)
    waiter = asyncio.create_task(bucket.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.now = 1.0
    assert bucket.tokens == pytest.approx(10)  # refilled, nothing taken by the cancelled call
    await asyncio.wait_for(bucket.acquire(10), 1)  # and the lock was released


async def test_float_rounding_cannot_leave_a_waiter_sleeping_forever() -> None:
    # 3.3 tokens/s into a bucket of 0.7: the refills never sum to the need
    # exactly, and a shortfall of 1e-16 tokens cannot move a fake clock at 17 s.
    clock = FakeClock()
    bucket = TokenBucket(rate=3.3, capacity=0.7, clock=clock, sleep=clock.sleep)
    for _ in range(60):
        await asyncio.wait_for(bucket.acquire(1), 1)
    assert clock.now == pytest.approx(59 / 3.3)


async def test_byte_rate_reports_its_waits() -> None:
    clock, waits = FakeClock(), Waits()
    caller = ByteRate(Direct(), 1000, observer=waits, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert await caller.call(_spec(nbytes=1000), _ok) == "ok"
    assert waits.seconds["bytes_per_second"] == pytest.approx(2.0)


async def test_in_subnet_bytes_take_their_own_bucket_and_rate() -> None:
    clock = FakeClock()
    caller = ByteRate(
        Direct(), 1000, in_subnet_per_second=8000, clock=clock, sleep=clock.sleep, start_full=False
    )
    push = CallSpec("a", "icrp_push", bytes=8000, in_subnet=True)
    for _ in range(3):
        await caller.call(push, _ok)
    assert clock.now == pytest.approx(3.0)  # 24,000 bytes at 8,000 B/s
    await caller.call(_spec(nbytes=1000), _ok)  # the block bucket filled meanwhile, untouched
    assert clock.now == pytest.approx(3.0)
    await caller.call(_spec(nbytes=1000), _ok)
    assert clock.now == pytest.approx(4.0)  # 1,000 B/s for bytes a block carries


async def test_without_an_in_subnet_rate_every_byte_shares_one_bucket() -> None:
    clock = FakeClock()
    caller = ByteRate(Direct(), 1000, clock=clock, sleep=clock.sleep, start_full=False)
    assert caller.in_subnet_bucket is caller.bucket
    await caller.call(CallSpec("a", "icrp_push", bytes=1000, in_subnet=True), _ok)
    await caller.call(_spec(nbytes=1000), _ok)
    assert clock.now == pytest.approx(2.0)


# ---------------------------------------------------------------- call rate


async def _starts(
    caller: CallRate, clock: FakeClock, calls: int, arrivals: list[float] | None = None
) -> list[float]:
    """Start times of ``calls`` calls made at once, in the order they started."""
    starts: list[float] = []

    async def perform() -> None:
        starts.append(clock.now)

    async def one() -> None:
        if arrivals is not None:
            arrivals.append(clock.now)
        await caller.call(_spec(), perform)

    await asyncio.gather(*(one() for _ in range(calls)))
    return starts


async def test_call_rate_spreads_calls_at_the_rate() -> None:
    clock, waits = FakeClock(), Waits()
    caller = CallRate(Direct(), 20, observer=waits, clock=clock, sleep=clock.sleep)
    arrivals: list[float] = []
    starts = await _starts(caller, clock, 30, arrivals)
    # A burst of a tenth of a second's calls (2), then one call every 1/20 s.
    assert starts[:2] == [0, 0]
    assert starts[2:] == pytest.approx([k / 20 for k in range(1, 29)])
    assert sum(1 for t in starts if t < 1) == 21  # 20 calls/s plus the burst's head start
    # Each call's wait, from its arrival to its start, was reported on the fake clock.
    assert waits.seconds["calls_per_second"] == pytest.approx(sum(starts) - sum(arrivals))
    assert waits.seconds["calls_per_second"] > 10


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.05, max_value=5000, allow_nan=False),
    calls=st.integers(min_value=1, max_value=60),
    burst=st.one_of(st.none(), st.floats(min_value=1, max_value=50)),
)
def test_call_rate_never_exceeds_rate_plus_burst_and_loses_no_rate(
    rate: float, calls: int, burst: float | None
) -> None:
    clock = FakeClock()
    caller = CallRate(Direct(), rate, burst=burst, clock=clock, sleep=clock.sleep)
    capacity = caller.bucket.capacity
    starts = asyncio.run(_starts(caller, clock, calls))
    # At most: over any span from one start to a later one, burst + rate * span calls.
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            # (a permit may come a microsecond early: the bucket's float tolerance)
            assert j - i + 1 <= capacity + rate * (starts[j] - first + 1e-6) + 1e-9
    # No slower than the bucket allows: the last call starts as soon as its token exists.
    assert starts[-1] == pytest.approx(max(0.0, (calls - capacity) / rate), abs=1e-6)


def test_fractional_call_rates_and_their_bursts() -> None:
    assert CallRate(Direct(), 0.5).bucket.capacity == 1  # a burst is at least one call
    assert CallRate(Direct(), 2.5).bucket.capacity == 1
    assert CallRate(Direct(), 1000).bucket.capacity == 100  # a tenth of a second's calls
    assert CallRate(Direct(), 1000, burst=3).bucket.capacity == 3
    with pytest.raises(ValueError, match="positive"):
        CallRate(Direct(), 0)
    with pytest.raises(ValueError, match="capacity"):
        CallRate(Direct(), 10, burst=0)


async def test_slow_call_rates_on_a_fake_clock() -> None:
    clock = FakeClock()
    slow = CallRate(Direct(), 0.5, clock=clock, sleep=clock.sleep)
    assert await _starts(slow, clock, 3) == pytest.approx([0, 2, 4])
    clock = FakeClock()
    odd = CallRate(Direct(), 2.5, clock=clock, sleep=clock.sleep)
    assert await _starts(odd, clock, 4) == pytest.approx([0, 0.4, 0.8, 1.2])


async def test_call_rate_serves_waiting_calls_first_come_first_served() -> None:
    clock = FakeClock()
    caller = CallRate(Direct(), 10, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    def call(n: int) -> asyncio.Task[None]:
        async def perform() -> None:
            order.append(n)

        return asyncio.create_task(caller.call(_spec(), perform))

    tasks = []
    for n in range(8):
        tasks.append(call(n))
        await asyncio.sleep(0)  # arrive in this order
    await asyncio.gather(*tasks)
    assert order == list(range(8))


async def test_call_rate_cancelled_while_waiting_takes_nothing() -> None:
    clock, gate = FakeClock(), asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        await gate.wait()

    caller = CallRate(Direct(), 10, clock=clock, sleep=blocking_sleep)
    assert await caller.call(_spec(), _ok) == "ok"  # the burst's one call
    performed: list[int] = []

    async def perform() -> str:
        performed.append(1)
        return "never"

    waiter = asyncio.create_task(caller.call(_spec(), perform))
    await asyncio.sleep(0)
    assert clock.sleeps == [pytest.approx(0.1)]  # it waits for the next token
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert performed == []
    clock.now = 0.1
    assert caller.bucket.tokens == pytest.approx(1)  # the cancelled call took no token
    # and released the queue: the next call takes the token without sleeping.
    assert await asyncio.wait_for(caller.call(_spec(), _ok), 1) == "ok"
    assert clock.sleeps == [pytest.approx(0.1)]


# ---------------------------------------------------------------- in flight


async def test_in_flight_limits_per_canister_and_globally() -> None:
    limit = InFlight(Direct(), total=3, per_canister=2)
    running: dict[str, int] = defaultdict(int)
    peak: dict[str, int] = defaultdict(int)

    def call(canister: str) -> asyncio.Future[str]:
        async def perform() -> str:
            running[canister] += 1
            running["*"] += 1
            peak[canister] = max(peak[canister], running[canister])
            peak["*"] = max(peak["*"], running["*"])
            for _ in range(3):
                await asyncio.sleep(0)
            running[canister] -= 1
            running["*"] -= 1
            return canister

        return asyncio.ensure_future(limit.call(_spec(canister), perform))

    results = await asyncio.gather(*(call(c) for c in "aaaaaaabbbbbc"))
    assert sorted(results) == sorted("aaaaaaabbbbbc")
    assert peak["a"] == 2
    assert peak["b"] == 2
    assert peak["*"] == 3
    assert limit.running("a") == 0
    assert limit._slots == {}  # idle canisters keep no state (fleets have thousands)


async def test_in_flight_slot_is_released_when_the_call_fails_or_is_cancelled() -> None:
    limit = InFlight(Direct(), total=1, per_canister=1)

    async def boom() -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await limit.call(_spec(), boom)
    hang = asyncio.Event()

    async def forever() -> str:
        await hang.wait()
        return "never"

    task = asyncio.create_task(limit.call(_spec(), forever))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.wait_for(limit.call(_spec(), _ok), 1) == "ok"


# ------------------------------------------------------------- time windows


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 1, hour, minute, tzinfo=dt.UTC)


def test_windows() -> None:
    night = Window.parse("01:00-05:00")
    assert night.is_open(_at(1))
    assert night.is_open(_at(4, 59))
    assert not night.is_open(_at(5))
    assert night.seconds_until_open(_at(23, 30)) == 1.5 * 3600
    assert night.seconds_until_open(_at(6)) == 19 * 3600
    wrap = Window.parse("22:00 - 02:00")
    assert wrap.is_open(_at(23))
    assert wrap.is_open(_at(1))
    assert not wrap.is_open(_at(3))
    assert wrap.seconds_until_open(_at(3)) == 19 * 3600
    assert str(wrap) == "22:00-02:00 UTC"
    other_zone = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert night.is_open(other_zone)  # 01:00 UTC
    for bad in ("01:00", "1-2", "25:00-01:00", "01:00-01:00"):
        with pytest.raises(ValueError, match="window"):
            Window.parse(bad)


async def test_calls_wait_for_the_window_to_open() -> None:
    clock, waits = FakeClock(wall=_at(23, 30)), Waits()
    caller = TimeWindows(
        Direct(),
        [Window.parse("01:00-05:00"), Window.parse("12:00-13:00")],
        observer=waits,
        now=clock.wall,
        clock=clock,
        sleep=clock.sleep,
    )
    assert await caller.call(_spec(), _ok) == "ok"
    assert clock.now == 1.5 * 3600
    assert waits.seconds["time_window"] == 1.5 * 3600
    assert await caller.call(_spec(), _ok) == "ok"  # open now: no wait
    assert clock.now == 1.5 * 3600


# ------------------------------------------------------------- cycles budget


async def test_budget_stops_before_the_call_that_would_exceed_it() -> None:
    budget = CyclesBudget(Direct(), 10_000_000)
    performed: list[int] = []

    async def perform() -> int:
        performed.append(1)
        return len(performed)

    await budget.call(_spec(cycles=4_000_000), perform)
    await budget.call(_spec(cycles=4_000_000), perform)
    with pytest.raises(BudgetExceeded, match="cycles_budget") as info:
        await budget.call(_spec(cycles=4_000_000), perform)
    assert info.value.exit_code == EXIT_BUDGET
    assert len(performed) == 2
    assert budget.spent == 8_000_000
    assert budget.remaining == 2_000_000
    await budget.call(_spec(cycles=2_000_000), perform)  # exactly the rest is fine


def test_cycle_estimates() -> None:
    assert estimate_cycles("query", 3 * MiB) == 0
    assert estimate_cycles("update", 1000) == 1_200_000 + 2_000_000
    assert estimate_cycles("push", 1000) == 260_000 + 1_000_000


# ---------------------------------------------------------------- the stack


async def test_build_caller_stacks_every_configured_limit() -> None:
    clock, waits = FakeClock(wall=_at(0, 59)), Waits()
    settings = LimitSettings(
        calls_per_second=1000,
        bytes_per_second=1000,
        in_flight=2,
        in_flight_per_canister=1,
        windows=(Window.parse("01:00-02:00"),),
        cycles_budget=5_000_000,
    )
    spending = MemorySpending()
    wall = lambda: clock.wall().timestamp()  # noqa: E731
    day = int(wall() // 86400 * 86400)
    assert await spending.spend("ic", day, 1, 5_000_000) == (True, 1)  # another process spent 1
    limited = build_caller(
        settings,
        observer=waits,
        clock=clock,
        sleep=clock.sleep,
        now=clock.wall,
        wall=wall,
        spending=spending,
        scope="ic",
    )
    assert limited.budget is not None
    assert await limited.budget.refresh() == 4_999_999
    assert await limited.call(_spec(nbytes=3000, cycles=3_000_000), _ok) == "ok"
    assert waits.seconds["time_window"] == 60
    assert await limited.call(_spec(nbytes=1000), _ok) == "ok"
    assert waits.seconds["bytes_per_second"] == pytest.approx(3.0)  # 2 s of debt + 1 s
    with pytest.raises(BudgetExceeded):
        await limited.call(_spec(cycles=2_000_000), _ok)


def test_settings_are_validated() -> None:
    LimitSettings(calls_per_second=None, bytes_per_second=None)
    with pytest.raises(ValueError, match="bytes_per_second"):
        LimitSettings(bytes_per_second=0)
    with pytest.raises(ValueError, match='bytes_per_second must be positive or "auto"'):
        LimitSettings(bytes_per_second="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_flight"):
        LimitSettings(in_flight=0)


async def test_a_fresh_process_gets_no_burst_above_the_byte_rate() -> None:
    """A restart (a crash loop, a re-run) must not start with a full bucket."""
    clock = FakeClock()
    settings = LimitSettings(calls_per_second=None, bytes_per_second=1000, in_flight=1)
    for _ in range(3):  # three "processes" in a row, each moving 2000 bytes
        limited = build_caller(settings, clock=clock, sleep=clock.sleep)
        await limited.call(_spec(nbytes=1000), _ok)
        await limited.call(_spec(nbytes=1000), _ok)
    assert clock.now == pytest.approx(6.0)  # 6000 bytes at 1000 B/s: never faster


def test_the_default_byte_budget_is_by_route_and_a_number_is_for_every_route() -> None:
    assert LimitSettings().bytes_per_second == "auto"
    assert LimitSettings().byte_rates == (BLOCK_BYTES_PER_SECOND, IN_SUBNET_BYTES_PER_SECOND)
    assert LimitSettings(bytes_per_second=MiB).byte_rates == (MiB, MiB)
    assert LimitSettings(bytes_per_second=None).byte_rates == (None, None)
    assert LimitSettings(bytes_per_second=None).block_bytes_per_second is None


async def test_the_auto_budget_lets_a_push_inside_a_subnet_go_faster_than_ingress() -> None:
    clock = FakeClock()
    limited = build_caller(
        LimitSettings(calls_per_second=None, in_flight=1), clock=clock, sleep=clock.sleep
    )
    for _ in range(4):
        await limited.call(
            CallSpec("a", "icrp_push", bytes=IN_SUBNET_BYTES_PER_SECOND, in_subnet=True), _ok
        )
    assert clock.now == pytest.approx(4.0)  # starting empty, one second per second's worth
    for _ in range(4):  # a relay write or an XNet push: the block's rate, its own bucket
        await limited.call(_spec(nbytes=BLOCK_BYTES_PER_SECOND), _ok)
    assert clock.now == pytest.approx(7.0)  # the block bucket was full after the pushes
    explicit = build_caller(
        LimitSettings(calls_per_second=None, bytes_per_second=MiB, in_flight=1),
        clock=clock,
        sleep=clock.sleep,
    )
    start = clock.now
    for _ in range(4):
        await explicit.call(CallSpec("a", "icrp_push", bytes=MiB, in_subnet=True), _ok)
    assert clock.now - start == pytest.approx(4.0)  # a number holds pushes too


# ------------------------------------------------------ budget periods


async def test_the_budget_renews_each_period_and_names_when() -> None:
    wall = [dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC).timestamp()]
    spending = MemorySpending()
    budget = CyclesBudget(
        Direct(), 10_000_000, period=86400, spending=spending, scope="ic", wall=lambda: wall[0]
    )
    await budget.call(_spec(cycles=6_000_000), _ok)
    with pytest.raises(BudgetExceeded) as info:
        await budget.call(_spec(cycles=6_000_000), _ok)
    assert "renews at 2026-03-02 00:00:00 UTC" in str(info.value)
    assert "of network ic" in str(info.value)
    assert "6,000,000 of 10,000,000" in str(info.value)
    # a second budget on the same spending (another process) sees what was spent
    other = CyclesBudget(
        Direct(), 10_000_000, period=86400, spending=spending, scope="ic", wall=lambda: wall[0]
    )
    assert await other.refresh() == 4_000_000
    await budget.call(_spec(cycles=0), _ok)  # queries cost nothing and are always fine
    wall[0] += 3600  # 00:00 UTC: a new day
    assert budget.remaining == 10_000_000
    await budget.call(_spec(cycles=6_000_000), _ok)
    assert await other.refresh() == 4_000_000
    assert await spending.spent("local", budget.period_start()) == 0  # per network


def test_budget_periods_align_to_utc() -> None:
    at = dt.datetime(2026, 3, 4, 13, 37, tzinfo=dt.UTC).timestamp()
    hourly = CyclesBudget(Direct(), 1, period=3600, wall=lambda: at)
    assert hourly.period_start() == dt.datetime(2026, 3, 4, 13, tzinfo=dt.UTC).timestamp()
    assert hourly.resets_at() == dt.datetime(2026, 3, 4, 14, tzinfo=dt.UTC).timestamp()
    daily = CyclesBudget(Direct(), 1, wall=lambda: at)
    assert daily.resets_at() == dt.datetime(2026, 3, 5, tzinfo=dt.UTC).timestamp()


# ------------------------------------------------- urgent calls (standby tails)


class ManualClock:
    """A clock that moves only when the test says: sleepers wake in ``advance``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        await wake

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, wake in self._sleepers:
            if at <= self.now + 1e-9 and not wake.done():
                wake.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_an_urgent_permit_overtakes_waiting_bulk_permits_and_keeps_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=100, capacity=100, clock=clock, sleep=clock.sleep, initial=0)
    order: list[tuple[str, float]] = []

    async def take(name: str, weight: int, urgent: bool = False) -> None:
        await bucket.acquire(weight, urgent=urgent)
        order.append((name, round(clock.now, 3)))

    tasks = [asyncio.create_task(take(f"bulk{i}", 50)) for i in range(4)]
    await asyncio.sleep(0)  # bulk0 waits at the head of the queue, the others behind it
    tasks.append(asyncio.create_task(take("urgent", 10, urgent=True)))
    while not all(t.done() for t in tasks):
        await clock.advance(0.05)
    # The standby's 10 tokens came first, not after the 200 queued before them;
    # the rate is unchanged: 210 tokens from an empty bucket at 100/s end at 2.1 s.
    assert order[0] == ("urgent", 0.1)
    assert [name for name, _ in order[1:]] == ["bulk0", "bulk1", "bulk2", "bulk3"]
    assert order[-1][1] == pytest.approx(2.1, abs=0.05)


async def test_reserved_slots_keep_a_place_for_urgent_calls() -> None:
    limit = InFlight(Direct(), total=4, per_canister=4, reserved=1)
    release = asyncio.Event()
    running = {"bulk": 0, "peak": 0}

    async def bulk_call() -> str:
        running["bulk"] += 1
        running["peak"] = max(running["peak"], running["bulk"])
        await release.wait()
        running["bulk"] -= 1
        return "bulk"

    bulk = [asyncio.create_task(limit.call(_spec(f"backup{i}"), bulk_call)) for i in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert running["bulk"] == 3  # total - reserved
    urgent = CallSpec("standby", "icrp_apply", urgent=True)
    # Every bulk slot is busy, yet the standby's apply runs at once.
    assert await asyncio.wait_for(limit.call(urgent, _ok), 1) == "ok"
    release.set()
    assert len(await asyncio.gather(*bulk)) == 10
    assert running["peak"] == 3


def test_reserved_slots_must_leave_one_for_everything_else() -> None:
    with pytest.raises(ValueError, match="reserved slots must be 0 to 3"):
        InFlight(Direct(), total=4, per_canister=1, reserved=4)
    assert LimitSettings().reserved_in_flight == 16  # an eighth of the default 128
    assert LimitSettings(in_flight=4).reserved_in_flight == 0
    assert LimitSettings(in_flight=4, in_flight_reserved=3).reserved_in_flight == 3
    with pytest.raises(ValueError, match="in_flight_reserved"):
        LimitSettings(in_flight=4, in_flight_reserved=4)
