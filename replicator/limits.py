"""Limits on calls, as wrappers around one call interface.

Every call the pump makes goes through a :class:`Caller`::

    result = await caller.call(CallSpec(canister_id, method, bytes=n, cycles=c), perform)

where ``perform`` is a zero-argument coroutine function doing the actual call.
Each limit is a wrapper with the same interface that takes its permit and
then calls the wrapper inside it — the shape of restic's backend wrappers.
:func:`build_caller` stacks them in this order (outermost first)::

    TimeWindows → CyclesBudget → SubnetRates → InFlight → SharedRate → CallRate
    → ByteRate → Direct

- :class:`TimeWindows`: calls start only inside the configured UTC windows
  (e.g. 01:00–05:00); outside, they wait until one opens.  Calls already
  running finish.
- :class:`CyclesBudget`: reserves the call's estimated cycles and raises
  :class:`~replicator.errors.BudgetExceeded` *before* a call that would
  exceed the budget of the current period (a day by default).  What was
  spent is kept by a :class:`Spending` — the checkpoint store's, so every
  process using the store shares one budget and a restart does not renew it.
- :class:`SubnetRates`: calls/s and bytes/s per subnet — the canisters of
  one subnet share a budget (a fleet of per-user canisters spread over a few
  subnets must not flood one; with a PostgreSQL store, one budget for all
  its workers, leased like :class:`SharedRate`'s).  The subnet comes from a ``SubnetOf``
  (:class:`replicator.subnets.SubnetMap`: certified state, cached); a call
  whose subnet cannot be told takes no subnet permit.  It sits outside
  :class:`InFlight` so that calls waiting for a busy subnet do not hold the
  in-flight slots that calls to other subnets need; the calls it lets
  through may then wait for a slot, so a subnet can briefly see up to
  ``in_flight`` calls at once, but never more than its rate in the long run.
- :class:`InFlight`: at most ``in_flight`` calls at once, and at most
  ``in_flight_per_canister`` per canister.  Taken before the rate permits so
  that a permit is used as soon as it is granted (calls never bunch up
  behind a semaphore and exceed the rate).
- :class:`SharedRate`: calls/s and bytes/s shared by every worker of one
  PostgreSQL store (``global_calls_per_second``, ``global_bytes_per_second``):
  workers lease slices of one token bucket kept in the store, so the sum
  across workers holds the rate (in one process: an in-memory bucket).
- :class:`CallRate`: calls per second, a :class:`TokenBucket` of permits of
  weight 1 whose burst is a tenth of a second's calls (at least one).
- :class:`ByteRate`: bytes per second, a :class:`TokenBucket` with weighted
  permits.  A permit larger than the bucket (a 2 MiB chunk with a 1 MiB/s
  bucket) waits for a full bucket and leaves it in debt, so the long-run rate
  holds and a large request is never starved.  With the default
  ``bytes_per_second = "auto"`` it keeps two buckets, by what carries the
  bytes (:attr:`CallSpec.in_subnet`): bytes a block carries (ingress, XNet)
  and bytes a subnet routes in its own state (a push between two canisters
  of one subnet); an explicit rate is one bucket for both.
  :func:`build_caller` starts the byte bucket empty: a process that restarts
  (a crash loop, a re-run) does not get a fresh burst above the rate.

Both rates are one token bucket (FIFO, cancellation takes nothing) rather
than ``aiolimiter`` (refuses a permit above the capacity) or
``asyncio-throttle`` (unmaintained, polls, real time only).  Each wrapper
reports the time a call waited for it to a ``WaitObserver``
``(limit_name, seconds)`` — the metrics module's ``record_wait``.  Every
limit that waits takes its clock and sleep as arguments, so tests run on a
fake clock and never wait on real time.

The defaults (:class:`LimitSettings`) are polite for mainnet (the README's
"Limits" section has the measurements behind them): bytes by route
(``"auto"``): 2 MiB/s for bytes a block carries — a relay's writes are
ingress, a cross-subnet push is XNet, and the two share a block of ~4 MiB
about once a second with every other user of the subnet, so half a block
each second is the most one orchestrator should take — and 16 MiB/s for a
push between two canisters of one subnet, which passes through no block:
its bound is the target's execution (~2 B instructions per round, SHA-256
of every byte received at ~100-144 instructions/byte: 14-20 MiB/s into one
canister).  20 calls/s (a 1 MiB push is one call; 10/s cost a tenth of
the same-subnet rate measured), 64 calls in flight, 32 per canister (a
push takes ~3.5 s on the subnet model; the byte budget, not the slots,
bounds the relay and XNet).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from replicator.errors import BudgetExceeded

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
WaitObserver = Callable[[str, float], None]
SubnetOf = Callable[[str], Awaitable[str | None]]  # canister id → its subnet, if known

MiB = 1024 * 1024

# Fees of a 13-node application subnet (interface spec / cycles cost tables).
INGRESS_RECEPTION_FEE = 1_200_000
INGRESS_BYTE_FEE = 2_000
XNET_CALL_FEE = 260_000
XNET_BYTE_FEE = 1_000

# CallRate's default burst, in seconds of its rate (see CallRate).
CALL_BURST_SECONDS = 0.1
# A permit this close to its time is granted: float rounding can leave a
# shortfall whose sleep is too short to move a clock reading of thousands
# of seconds, and a fake clock would then never get there.
_BUCKET_TOLERANCE_SECONDS = 1e-6


@dataclass(frozen=True)
class CallSpec:
    """What a call costs the limits: its canister, payload bytes and cycles."""

    canister_id: str
    method: str
    bytes: int = 0  # payload bytes moved: sent (write, push) or asked for (read)
    cycles: int = 0  # estimated cycles (see estimate_cycles)
    # Latency-bound (a standby's journal tail): served before waiting bulk calls
    # by the rate limits, and entitled to the in-flight slots kept for it, so
    # that backups saturating the limits do not become a standby's lag.
    urgent: bool = False
    # The payload passes through no block: a push between two canisters of
    # one subnet (routed in the subnet's state).  Ingress, query replies read
    # for a relay, and cross-subnet (XNet) pushes are False.
    in_subnet: bool = False


class Caller(Protocol):
    """The one call interface every limit wraps."""

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T: ...


def estimate_cycles(kind: Literal["query", "update", "push"], payload_bytes: int) -> int:
    """A lower bound of the cycles a call costs: message fees only, no execution.

    ``update``: ingress reception + per byte; ``push``: one inter-canister
    call + per byte; ``query``: free.
    """
    if kind == "update":
        return INGRESS_RECEPTION_FEE + INGRESS_BYTE_FEE * payload_bytes
    if kind == "push":
        return XNET_CALL_FEE + XNET_BYTE_FEE * payload_bytes
    return 0


def _ignore_wait(limit: str, seconds: float) -> None:
    del limit, seconds


class Direct:
    """The innermost caller: performs the call."""

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        del spec
        return await perform()


class _Wrapper:
    name = ""

    def __init__(self, inner: Caller, observer: WaitObserver | None, clock: Clock) -> None:
        self.inner = inner
        self._observe = observer or _ignore_wait
        self._clock = clock

    def _waited(self, since: float) -> None:
        waited = self._clock() - since
        if waited > 0:
            self._observe(self.name, waited)


# --------------------------------------------------------------- token bucket


class TokenBucket:
    """Weighted permits at ``rate`` per second from a bucket of ``capacity``.

    FIFO: a waiting large request holds back later small ones, so it cannot
    starve.  A weight above ``capacity`` waits for a full bucket and takes
    the bucket into debt.  Cancellation while waiting takes nothing.
    ``urgent`` requests do not queue behind the FIFO: they take tokens as
    soon as there are enough (the queue's head then waits a little longer).
    The rate holds either way; only the order changes.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        initial: float | None = None,
    ) -> None:
        if not rate > 0 or not capacity > 0:
            raise ValueError(f"need rate > 0 and capacity > 0, got {rate} and {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity if initial is None else min(capacity, initial)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while in debt)."""
        self._refill()
        return self._tokens

    async def acquire(self, weight: float, *, urgent: bool = False) -> None:
        if weight <= 0:
            return
        if urgent:
            await self._take(weight)
            return
        async with self._lock:
            await self._take(weight)

    async def _take(self, weight: float) -> None:
        need = min(weight, self.capacity)
        while True:
            self._refill()
            shortfall = need - self._tokens
            if shortfall <= self.rate * _BUCKET_TOLERANCE_SECONDS:
                break
            await self._sleep(shortfall / self.rate)
        self._tokens -= weight

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)


# ------------------------------------------------------------------ call rate


class CallRate(_Wrapper):
    """At most ``per_second`` calls per second: a token bucket of weight-1 permits.

    Over any ``T`` seconds at most ``burst + per_second * T`` calls start.
    The default burst, a tenth of a second's calls (at least one), keeps
    calls evenly spread yet absorbs an event loop that wakes a waiter late:
    with a burst of one, every late wake-up would be rate lost for good, and
    at thousands of calls per second the loop's sleeps are too coarse to
    keep up at all.
    """

    name = "calls_per_second"

    def __init__(
        self,
        inner: Caller,
        per_second: float,
        *,
        burst: float | None = None,
        observer: WaitObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(inner, observer, clock)
        if not per_second > 0:
            raise ValueError(f"calls per second must be positive, got {per_second}")
        if burst is None:
            burst = max(1.0, per_second * CALL_BURST_SECONDS)
        self.per_second = per_second
        self.bucket = TokenBucket(per_second, burst, clock=clock, sleep=sleep)

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        since = self._clock()
        await self.bucket.acquire(1, urgent=spec.urgent)
        self._waited(since)
        return await self.inner.call(spec, perform)


# ------------------------------------------------------------------ byte rate


class ByteRate(_Wrapper):
    """At most ``per_second`` payload bytes per second (``CallSpec.bytes``).

    ``in_subnet_per_second``: bytes of calls whose payload crosses no block
    (:attr:`CallSpec.in_subnet`) take their permits from a second bucket of
    that rate instead (``None``: one bucket for every call).  ``burst``
    (default: one second of the bucket's rate) is every bucket's capacity.
    """

    name = "bytes_per_second"

    def __init__(
        self,
        inner: Caller,
        per_second: float,
        *,
        in_subnet_per_second: float | None = None,
        burst: float | None = None,
        observer: WaitObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        start_full: bool = True,
    ) -> None:
        super().__init__(inner, observer, clock)

        def bucket(rate: float) -> TokenBucket:
            capacity = burst if burst is not None else rate
            initial = None if start_full else 0.0
            return TokenBucket(rate, capacity, clock=clock, sleep=sleep, initial=initial)

        self.bucket = bucket(per_second)
        self.in_subnet_bucket = (
            self.bucket if in_subnet_per_second is None else bucket(in_subnet_per_second)
        )

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        since = self._clock()
        bucket = self.in_subnet_bucket if spec.in_subnet else self.bucket
        await bucket.acquire(spec.bytes, urgent=spec.urgent)
        self._waited(since)
        return await self.inner.call(spec, perform)


# ------------------------------------------------------------------ in flight


class _Slot:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0  # running or waiting
        self.running = 0


class InFlight(_Wrapper):
    """At most ``total`` calls at once, and at most ``per_canister`` per canister.

    ``reserved`` of the ``total`` slots are kept for urgent calls: other calls
    hold at most ``total - reserved`` at once, so a standby's next apply never
    waits for a backup's 16 pushes to finish.
    """

    name = "in_flight"

    def __init__(
        self,
        inner: Caller,
        total: int,
        per_canister: int,
        *,
        reserved: int = 0,
        observer: WaitObserver | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(inner, observer, clock)
        if total < 1 or per_canister < 1:
            raise ValueError(f"in-flight limits must be at least 1, got {total}, {per_canister}")
        if not 0 <= reserved < total:
            raise ValueError(f"reserved slots must be 0 to {total - 1}, got {reserved}")
        self.total = total
        self.per_canister = per_canister
        self.reserved = reserved
        self._global = asyncio.Semaphore(total)
        self._bulk = asyncio.Semaphore(total - reserved)
        self._slots: dict[str, _Slot] = {}  # only canisters with calls running or waiting

    def running(self, canister_id: str) -> int:
        """Calls holding a slot of ``canister_id`` now (for tests and progress)."""
        slot = self._slots.get(canister_id)
        return 0 if slot is None else slot.running

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        since = self._clock()
        async with self._canister_slot(spec.canister_id), self._share(spec.urgent), self._global:
            self._waited(since)
            return await self.inner.call(spec, perform)

    @asynccontextmanager
    async def _share(self, urgent: bool) -> AsyncIterator[None]:
        if urgent:
            yield
            return
        async with self._bulk:
            yield

    @asynccontextmanager
    async def _canister_slot(self, canister_id: str) -> AsyncIterator[None]:
        # Per canister first, then global, in every call: a fixed order cannot deadlock.
        slot = self._slots.get(canister_id)
        if slot is None:
            slot = self._slots[canister_id] = _Slot(self.per_canister)
        slot.users += 1
        try:
            async with slot.semaphore:
                slot.running += 1
                try:
                    yield
                finally:
                    slot.running -= 1
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[canister_id]  # a fleet has thousands: keep only busy ones


# ------------------------------------------------------------ per-subnet rates


class SubnetRates(_Wrapper):
    """Calls/s and bytes/s per subnet: one pair of buckets per subnet seen.

    The buckets are made on a subnet's first call, like :func:`build_caller`'s
    (calls: a tenth of a second's burst; bytes: a second's, starting empty).
    With ``leases`` (the PostgreSQL store's) they are :class:`SharedBucket` s
    named by ``scope`` and the subnet, so every worker of the store shares one
    budget per subnet; without, :class:`TokenBucket` s of this process.
    Waits are reported as ``subnet_calls_per_second`` and
    ``subnet_bytes_per_second``.
    """

    name = "subnet"

    def __init__(
        self,
        inner: Caller,
        subnet_of: SubnetOf,
        *,
        calls_per_second: float | None,
        bytes_per_second: float | None,
        leases: RateLeases | None = None,
        scope: str = "",
        observer: WaitObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(inner, observer, clock)
        if calls_per_second is None and bytes_per_second is None:
            raise ValueError("SubnetRates needs a calls or a bytes per second limit")
        for value in (calls_per_second, bytes_per_second):
            if value is not None and not value > 0:
                raise ValueError(f"per-subnet rates must be positive, got {value}")
        self.calls_per_second = calls_per_second
        self.bytes_per_second = bytes_per_second
        self._subnet_of = subnet_of
        self._leases = leases
        self._scope = scope
        self._sleep = sleep
        self._calls: dict[str, TokenBucket | SharedBucket] = {}
        self._bytes: dict[str, TokenBucket | SharedBucket] = {}

    def buckets(
        self, subnet: str
    ) -> tuple[TokenBucket | SharedBucket | None, TokenBucket | SharedBucket | None]:
        """The (calls, bytes) buckets of ``subnet`` (made on first use)."""
        calls = self._calls.get(subnet)
        if calls is None and self.calls_per_second is not None:
            burst = max(1.0, self.calls_per_second * CALL_BURST_SECONDS)
            calls = self._calls[subnet] = self._bucket(
                subnet, "calls", self.calls_per_second, burst, initial=None
            )
        nbytes = self._bytes.get(subnet)
        if nbytes is None and self.bytes_per_second is not None:
            nbytes = self._bytes[subnet] = self._bucket(
                subnet, "bytes", self.bytes_per_second, self.bytes_per_second, initial=0.0
            )
        return calls, nbytes

    def _bucket(
        self, subnet: str, unit: str, rate: float, capacity: float, *, initial: float | None
    ) -> TokenBucket | SharedBucket:
        if self._leases is not None:  # a shared bucket starts empty, as lease_tokens says
            scope = f"{self._scope}:subnet:{subnet}:{unit}"
            return SharedBucket(self._leases, scope, rate, capacity, sleep=self._sleep)
        return TokenBucket(rate, capacity, clock=self._clock, sleep=self._sleep, initial=initial)

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        subnet = await self._subnet_of(spec.canister_id)
        if subnet is not None:
            calls, nbytes = self.buckets(subnet)
            if calls is not None:
                since = self._clock()
                await calls.acquire(1)
                self._waited_for("subnet_calls_per_second", since)
            if nbytes is not None:
                since = self._clock()
                await nbytes.acquire(spec.bytes)
                self._waited_for("subnet_bytes_per_second", since)
        return await self.inner.call(spec, perform)

    def _waited_for(self, limit: str, since: float) -> None:
        waited = self._clock() - since
        if waited > 0:
            self._observe(limit, waited)


# ------------------------------------------------------ rates shared by workers


# A lease is at least this many seconds of the shared rate: few enough
# transactions (4 a second per busy worker), little left unused when a worker
# dies or goes idle.
LEASE_SECONDS = 0.25


@dataclass(frozen=True)
class Lease:
    """The answer of a shared bucket: tokens granted, or how long to wait for them."""

    granted: float  # tokens taken from the shared bucket (0: none)
    wait: float = 0.0  # seconds until the tokens asked for are there (when none granted)


@dataclass(frozen=True)
class BucketRow:
    """A shared token bucket's state as its store keeps it: tokens at ``stamp``."""

    tokens: float
    stamp: float  # the store's clock (seconds)


def lease_tokens(
    row: BucketRow | None, now: float, want: float, rate: float, capacity: float
) -> tuple[Lease, BucketRow]:
    """Take ``want`` tokens from a shared bucket, as :class:`TokenBucket` would.

    The bucket fills at ``rate`` up to ``capacity``; a new bucket (``row`` is
    ``None``) starts empty, so restarting workers get no fresh burst.  ``want``
    is granted whole once there are ``min(want, capacity)`` tokens (a lease
    above the capacity leaves the bucket in debt, so the long-run rate holds);
    otherwise nothing is taken and the lease says how long the shortfall takes
    to fill.  Over any ``T`` seconds the grants add up to at most
    ``capacity + rate * T`` plus one grant's debt.
    """
    if not rate > 0 or not capacity > 0:
        raise ValueError(f"need rate > 0 and capacity > 0, got {rate} and {capacity}")
    tokens = 0.0 if row is None else row.tokens
    stamp = now if row is None else row.stamp
    # A clock that steps back (another store connection's, NTP) adds nothing.
    tokens = min(capacity, tokens + max(0.0, now - stamp) * rate)
    stamp = max(now, stamp)
    shortfall = min(want, capacity) - tokens
    if shortfall > rate * _BUCKET_TOLERANCE_SECONDS:
        return Lease(0.0, shortfall / rate), BucketRow(tokens, stamp)
    return Lease(want), BucketRow(tokens - want, stamp)


class RateLeases(Protocol):
    """Token buckets shared by processes: the PostgreSQL store's (one row per bucket)."""

    async def lease(self, scope: str, want: float, rate: float, capacity: float) -> Lease:
        """Take ``want`` tokens from bucket ``scope`` atomically (see :func:`lease_tokens`)."""
        ...


class MemoryLeases:
    """:class:`RateLeases` in memory: the buckets of one process (tests, one worker)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, BucketRow] = {}

    async def lease(self, scope: str, want: float, rate: float, capacity: float) -> Lease:
        lease, self._rows[scope] = lease_tokens(
            self._rows.get(scope), self._clock(), want, rate, capacity
        )
        return lease


class SharedBucket:
    """One token bucket shared by every worker of a store, spent through leases.

    This worker leases slices of the bucket kept by ``leases`` (a quarter
    second of the rate, or what the waiting acquire needs, whichever is
    larger) and spends them locally; :meth:`acquire` is :class:`TokenBucket`'s.
    Tokens leased are gone from the shared bucket, so over any ``T`` seconds
    all workers together take at most ``rate * T + capacity`` plus what each
    had left of its last lease.  A worker that dies loses its leftover;
    nothing needs to expire.  Acquires of one worker are served in FIFO order.
    """

    def __init__(
        self,
        leases: RateLeases,
        scope: str,
        per_second: float,
        capacity: float | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not (per_second > 0 and math.isfinite(per_second)):
            raise ValueError(f"a shared rate must be positive, got {per_second}")
        self.scope = scope
        self.per_second = per_second
        self.capacity = capacity if capacity is not None else per_second  # a second's worth
        self.lease_size = max(per_second * LEASE_SECONDS, 1.0)
        self._leases = leases
        self._sleep = sleep
        self.balance = 0.0  # leased and not yet spent
        self._lock = asyncio.Lock()

    async def acquire(self, weight: float) -> None:
        async with self._lock:
            while self.balance < weight:
                want = max(self.lease_size, weight - self.balance)
                lease = await self._leases.lease(self.scope, want, self.per_second, self.capacity)
                if lease.granted > 0:
                    self.balance += lease.granted
                else:
                    await self._sleep(lease.wait)
            self.balance -= weight


class SharedRate(_Wrapper):
    """Bytes/s (``unit="bytes"``) or calls/s (``"calls"``) shared by every worker of a store.

    One :class:`SharedBucket` (leased slices of a bucket ``leases`` keeps: the
    PostgreSQL store's row) spent by weight: the budget holds however many
    workers share it.  Calls of one worker take tokens in FIFO order (urgent
    calls too: the shared rate is one queue per worker).
    """

    def __init__(
        self,
        inner: Caller,
        leases: RateLeases,
        scope: str,
        per_second: float,
        *,
        unit: Literal["bytes", "calls"] = "bytes",
        capacity: float | None = None,
        observer: WaitObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(inner, observer, clock)
        self.name = f"global_{unit}_per_second"
        self.unit = unit
        self.bucket = SharedBucket(leases, f"{scope}:{unit}", per_second, capacity, sleep=sleep)

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        weight = spec.bytes if self.unit == "bytes" else 1
        if weight > 0:
            since = self._clock()
            await self.bucket.acquire(weight)
            self._waited(since)
        return await self.inner.call(spec, perform)


# --------------------------------------------------------------- time windows


@dataclass(frozen=True)
class Window:
    """A daily window in UTC, ``start`` inclusive, ``end`` exclusive; may wrap midnight."""

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("a time window needs different start and end times")

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"01:00-05:00"`` (UTC, 24-hour ``HH:MM``)."""
        parts = text.split("-")
        if len(parts) != 2:
            raise ValueError(f"{text!r} is not a time window like '01:00-05:00'")
        start, end = (_parse_hhmm(p.strip(), text) for p in parts)
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} UTC"

    def is_open(self, now: dt.datetime) -> bool:
        t = now.astimezone(dt.UTC).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def seconds_until_open(self, now: dt.datetime) -> float:
        if self.is_open(now):
            return 0.0
        utc = now.astimezone(dt.UTC)
        opens = utc.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        if opens <= utc:
            opens += dt.timedelta(days=1)
        return (opens - utc).total_seconds()


def _parse_hhmm(text: str, whole: str) -> dt.time:
    try:
        hours, minutes = (int(x) for x in text.split(":"))
        return dt.time(hours, minutes)
    except ValueError as exc:
        raise ValueError(f"{whole!r} is not a time window like '01:00-05:00' ({exc})") from exc


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimeWindows(_Wrapper):
    """Calls start only while one of ``windows`` is open; otherwise they wait."""

    name = "time_window"

    def __init__(
        self,
        inner: Caller,
        windows: Sequence[Window],
        *,
        observer: WaitObserver | None = None,
        now: Callable[[], dt.datetime] = _utcnow,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(inner, observer, clock)
        if not windows:
            raise ValueError("TimeWindows needs at least one window")
        self.windows = tuple(windows)
        self._now = now
        self._sleep = sleep

    def seconds_until_open(self) -> float:
        now = self._now()
        return min(w.seconds_until_open(now) for w in self.windows)

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        since = self._clock()
        while (wait := self.seconds_until_open()) > 0:
            log.info(
                "waiting %.0f s for a time window (%s)", wait, ", ".join(map(str, self.windows))
            )
            await self._sleep(wait)
        self._waited(since)
        return await self.inner.call(spec, perform)


# --------------------------------------------------------------- cycles budget


DAY = 86400.0


class Spending(Protocol):
    """Where a cycles budget's spending is kept, per scope (a network) and period.

    ``period`` is the Unix time (seconds) its window starts.  The checkpoint
    store keeps it durably (:attr:`replicator.checkpoints.Store.spending`),
    shared by every process using the store; :class:`MemorySpending` keeps it
    for one process.
    """

    async def spend(self, scope: str, period: int, cycles: int, budget: int) -> tuple[bool, int]:
        """Add ``cycles`` if the period's total stays within ``budget``, atomically.

        Returns ``(added, total spent in the period)``.
        """
        ...

    async def spent(self, scope: str, period: int) -> int:
        """Cycles spent in the period so far."""
        ...


class MemorySpending:
    """:class:`Spending` in memory: one process, gone when it ends."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, int], int] = {}

    async def spend(self, scope: str, period: int, cycles: int, budget: int) -> tuple[bool, int]:
        total = self._spent.get((scope, period), 0)
        if total + cycles > budget:
            return False, total
        self._spent[(scope, period)] = total + cycles
        return True, total + cycles

    async def spent(self, scope: str, period: int) -> int:
        return self._spent.get((scope, period), 0)


class CyclesBudget(_Wrapper):
    """Stops before a call whose estimated cycles would exceed ``budget`` in this period.

    Periods are windows of ``period`` seconds aligned to the Unix epoch, in
    UTC: a day runs from 00:00 to 24:00 UTC, an hour from the full hour (a
    7-day period starts on Thursdays, the epoch's weekday).  Cycles are
    reserved in ``spending`` before the call and stay spent whatever its
    outcome (a rejected call still costs its fees): the count errs on the
    safe side.  Calls that cost nothing (queries) are not recorded.
    """

    name = "cycles_budget"

    def __init__(
        self,
        inner: Caller,
        budget: int,
        *,
        period: float = DAY,
        spending: Spending | None = None,
        scope: str = "",
        wall: Clock = time.time,
    ) -> None:
        super().__init__(inner, None, time.monotonic)
        if budget < 0:
            raise ValueError(f"a cycles budget must not be negative, got {budget}")
        if not period > 0:
            raise ValueError(f"a budget period must be positive, got {period}")
        self.budget = budget
        self.period = period
        self.scope = scope
        self._spending: Spending = spending if spending is not None else MemorySpending()
        self._wall = wall
        self._known: tuple[int, int] = (self.period_start(), 0)  # (period, spent), last seen

    def period_start(self, now: float | None = None) -> int:
        """Unix time the current period began."""
        t = self._wall() if now is None else now
        return int(math.floor(t / self.period) * self.period)

    def resets_at(self, now: float | None = None) -> float:
        """Unix time the current period ends and the budget renews."""
        return self.period_start(now) + self.period

    @property
    def spent(self) -> int:
        """Cycles spent in the current period, as last seen (:meth:`refresh` reads anew)."""
        period, spent = self._known
        return spent if period == self.period_start() else 0

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.spent)

    async def refresh(self) -> int:
        """Read what every process spent in the current period; returns what is left."""
        period = self.period_start()
        self._known = (period, await self._spending.spent(self.scope, period))
        return self.remaining

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        if spec.cycles > 0:
            period = self.period_start()
            added, total = await self._spending.spend(self.scope, period, spec.cycles, self.budget)
            self._known = (period, total)
            if not added:
                raise BudgetExceeded(self._exceeded(spec, total))
        return await self.inner.call(spec, perform)

    def _exceeded(self, spec: CallSpec, spent: int) -> str:
        where = f" of network {self.scope}" if self.scope else ""
        renews = _utc_text(self.resets_at())
        return (
            f"the next call ({spec.method} on {spec.canister_id}, about {spec.cycles:,} "
            f"cycles) would exceed the cycles budget{where}: {spent:,} of {self.budget:,} "
            f"cycles spent in the current period of {_period_text(self.period)}, which renews "
            f"at {renews}. Re-run the same command after that, or raise limits.cycles_budget "
            "(or --cycles-budget) now: the job resumes from its checkpoint"
        )


def _utc_text(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _period_text(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ------------------------------------------------------------------- settings


# bytes_per_second = "auto": a rate for each way bytes travel (see the module doc).
AUTO: Literal["auto"] = "auto"
BLOCK_BYTES_PER_SECOND = 2 * MiB  # ingress, XNet: half of a ~4 MiB block a second
IN_SUBNET_BYTES_PER_SECOND = 16 * MiB  # a push inside one subnet: the target's execution

ByteBudget = int | Literal["auto"] | None


# Connections beyond in_flight (LimitSettings.connections).
CONNECTIONS_SPARE = 8


@dataclass(frozen=True)
class LimitSettings:
    """The configurable limits; ``None`` switches a limit off.

    ``bytes_per_second`` counts image bytes moved from source to target: a
    push, a relayed byte (read through the orchestrator, then written: it is
    charged once, by the write) and a byte written to or read from an archive
    each count once, so a relay copies at the configured rate, not half of it.
    ``"auto"`` (the default) is a rate per way the bytes travel
    (:attr:`byte_rates`); a number is one budget for every route.
    """

    calls_per_second: float | None = 20.0
    bytes_per_second: ByteBudget = AUTO
    byte_burst: int | None = None  # default: one second's worth
    # A push on the subnet model takes ~3 s (ingress round, call, reply):
    # 64 per canister keep the 16 MiB/s of 1 MiB pushes inside a subnet going,
    # with room for slower rounds (README "Shipped limits").
    in_flight: int = 128
    in_flight_per_canister: int = 64
    # Slots of in_flight kept for urgent calls (standbys' journal tails);
    # None: an eighth of in_flight (16 of the default 128).
    in_flight_reserved: int | None = None
    windows: tuple[Window, ...] = ()
    cycles_budget: int | None = None
    cycles_budget_period: float = DAY  # seconds; windows aligned to the Unix epoch (UTC)
    # Shared by the canisters of one subnet (see SubnetRates); off by default.
    subnet_calls_per_second: float | None = None
    subnet_bytes_per_second: int | None = None
    # Shared by every worker of one store (see SharedRate); off by default.
    global_calls_per_second: float | None = None
    global_bytes_per_second: int | None = None

    @property
    def per_subnet(self) -> bool:
        return self.subnet_calls_per_second is not None or self.subnet_bytes_per_second is not None

    @property
    def byte_rates(self) -> tuple[int | None, int | None]:
        """Bytes/s for bytes a block carries, and for a push inside one subnet."""
        if self.bytes_per_second == AUTO:
            return BLOCK_BYTES_PER_SECOND, IN_SUBNET_BYTES_PER_SECOND
        return self.bytes_per_second, self.bytes_per_second

    @property
    def block_bytes_per_second(self) -> int | None:
        """The byte budget of every route but a push inside one subnet (relay, XNet, archive)."""
        return self.byte_rates[0]

    def __post_init__(self) -> None:
        if self.bytes_per_second != AUTO:
            value = self.bytes_per_second
            if isinstance(value, str) or (
                value is not None and not (value > 0 and math.isfinite(value))
            ):
                raise ValueError(f'bytes_per_second must be positive or "auto", got {value!r}')
        for name in (
            "calls_per_second",
            "byte_burst",
            "subnet_calls_per_second",
            "subnet_bytes_per_second",
            "global_calls_per_second",
            "global_bytes_per_second",
        ):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.in_flight < 1 or self.in_flight_per_canister < 1:
            raise ValueError("in_flight and in_flight_per_canister must be at least 1")
        if self.in_flight_reserved is not None and not (
            0 <= self.in_flight_reserved < self.in_flight
        ):
            raise ValueError(
                f"in_flight_reserved must be 0 to in_flight - 1 ({self.in_flight - 1}), "
                f"got {self.in_flight_reserved}"
            )
        if self.cycles_budget is not None and self.cycles_budget < 0:
            raise ValueError(f"cycles_budget must not be negative, got {self.cycles_budget}")
        if not (self.cycles_budget_period > 0 and math.isfinite(self.cycles_budget_period)):
            raise ValueError(
                f"cycles_budget_period must be positive, got {self.cycles_budget_period}"
            )

    @property
    def reserved_in_flight(self) -> int:
        """The in-flight slots kept for urgent calls."""
        if self.in_flight_reserved is not None:
            return self.in_flight_reserved
        return self.in_flight // 8

    @property
    def connections(self) -> int:
        """HTTP connections an agent needs so that ``in_flight`` is the real bound.

        A call holds one connection while the v4 endpoint waits for its
        certificate; with fewer sockets than calls in flight the rest wait in
        the agent's pool, unseen by the limits (a pool of 32 held the old
        defaults' 64 in flight to 32, and a same-subnet copy to ~9.5 MiB/s).
        A few more serve what runs outside the limits (certified reads of
        subnets and controllers, the engine's own checks).
        """
        return self.in_flight + CONNECTIONS_SPARE


@dataclass(frozen=True)
class Limited:
    """The stacked caller, with handles on the limits that have state to report."""

    caller: Caller
    budget: CyclesBudget | None
    in_flight: InFlight
    subnets: SubnetRates | None = None

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[T]]) -> T:
        return await self.caller.call(spec, perform)


def build_caller(
    settings: LimitSettings,
    *,
    observer: WaitObserver | None = None,
    inner: Caller | None = None,
    spending: Spending | None = None,
    scope: str = "",
    subnet_of: SubnetOf | None = None,
    leases: RateLeases | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    now: Callable[[], dt.datetime] = _utcnow,
    wall: Clock = time.time,
) -> Limited:
    """Stack the limits of ``settings`` around ``inner`` (default :class:`Direct`).

    ``spending`` keeps the cycles budget's spending for ``scope`` (the
    network): pass the checkpoint store's so that every process using it
    shares the budget (default: this process only).  The byte-rate bucket
    starts empty, so a restarted process cannot burst above the rate.
    The per-subnet rates apply when ``settings`` set them and ``subnet_of``
    tells subnets (the engine passes its :class:`~replicator.subnets.SubnetMap`;
    a caller of one canister, such as ``replicator images``, has no use for them).
    The global rates are leased from ``leases`` (the PostgreSQL store's: one
    budget for every worker; default: an in-memory bucket of this process).
    """
    caller: Caller = inner or Direct()
    block_rate, in_subnet_rate = settings.byte_rates
    if block_rate is not None and in_subnet_rate is not None:
        caller = ByteRate(
            caller,
            block_rate,
            in_subnet_per_second=None if in_subnet_rate == block_rate else in_subnet_rate,
            burst=settings.byte_burst,
            observer=observer,
            clock=clock,
            sleep=sleep,
            start_full=False,
        )
    if settings.calls_per_second is not None:
        caller = CallRate(
            caller, settings.calls_per_second, observer=observer, clock=clock, sleep=sleep
        )
    caller = _shared_rates(settings, caller, leases, scope, observer, clock, sleep)
    in_flight = InFlight(
        caller,
        settings.in_flight,
        settings.in_flight_per_canister,
        reserved=settings.reserved_in_flight,
        observer=observer,
        clock=clock,
    )
    caller = in_flight
    subnets = None
    if settings.per_subnet and subnet_of is not None:
        caller = subnets = SubnetRates(
            caller,
            subnet_of,
            calls_per_second=settings.subnet_calls_per_second,
            bytes_per_second=settings.subnet_bytes_per_second,
            leases=leases,
            scope=scope,
            observer=observer,
            clock=clock,
            sleep=sleep,
        )
    budget = None
    if settings.cycles_budget is not None:
        caller = budget = CyclesBudget(
            caller,
            settings.cycles_budget,
            period=settings.cycles_budget_period,
            spending=spending,
            scope=scope,
            wall=wall,
        )
    if settings.windows:
        caller = TimeWindows(
            caller, settings.windows, observer=observer, now=now, clock=clock, sleep=sleep
        )
    return Limited(caller, budget, in_flight, subnets)


def _shared_rates(
    settings: LimitSettings,
    caller: Caller,
    leases: RateLeases | None,
    scope: str,
    observer: WaitObserver | None,
    clock: Clock,
    sleep: Sleep,
) -> Caller:
    calls, nbytes = settings.global_calls_per_second, settings.global_bytes_per_second
    if calls is None and nbytes is None:
        return caller
    shared = leases if leases is not None else MemoryLeases(clock)
    if nbytes is not None:
        caller = SharedRate(
            caller, shared, scope, nbytes, unit="bytes", observer=observer, clock=clock, sleep=sleep
        )
    if calls is not None:
        caller = SharedRate(
            caller, shared, scope, calls, unit="calls", observer=observer, clock=clock, sleep=sleep
        )
    return caller
