"""Retries: only transient errors, bounded, Retry-After honoured, cancellation untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from canister_iface import errors as ic
from replicator.errors import EXIT_TEMPORARY, RetriesExhausted
from replicator.retry import REASONS, RetryPolicy, call_with_retries, is_retryable, retry_reason


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _failing(
    *errors: BaseException, result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call raising ``errors`` one after another, then returning ``result``."""
    calls: list[int] = []

    async def perform() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return perform, calls


def _http(status: int, retry_after: str | None = None) -> ic.IcError:
    return ic.classify(ic.HttpFailure(status, "", retry_after))


def _reject(code: int, error_code: str | None = None) -> ic.IcError:
    return ic.classify(ic.Rejection(code, "x", error_code))


async def _run(
    perform: Callable[[], Awaitable[str]], policy: RetryPolicy, clock: FakeTime, **kw: object
) -> str:
    return await call_with_retries(
        perform,
        policy,
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: 0.5,
        **kw,  # type: ignore[arg-type]
    )


async def test_transient_errors_are_retried_with_growing_jittered_waits() -> None:
    clock = FakeTime()
    reasons: list[tuple[str, float]] = []
    perform, calls = _failing(_http(503), _http(500), _reject(2))
    policy = RetryPolicy(initial_wait=1.0, multiplier=2.0, max_wait=30.0)
    assert await _run(perform, policy, clock, on_retry=lambda r, s: reasons.append((r, s))) == "ok"
    assert len(calls) == 4
    # equal jitter with rnd = 0.5: 3/4 of 1, 2, 4 s
    assert clock.sleeps == [0.75, 1.5, 3.0]
    assert [r for r, _ in reasons] == ["overloaded", "server_error", "reject_transient"]


def test_backoff_stays_in_its_jitter_band_and_under_the_cap() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=10.0, multiplier=2.0)
    for attempt in range(1, 12):
        base = min(10.0, 0.5 * 2 ** (attempt - 1))
        assert policy.backoff(attempt, 0.0) == base / 2
        assert policy.backoff(attempt, 0.999) < base
    assert policy.backoff(30, 0.999) < 10.0


async def test_retry_after_is_a_lower_bound_for_the_wait() -> None:
    clock = FakeTime()
    perform, _ = _failing(_http(429, retry_after="7"))
    assert await _run(perform, RetryPolicy(initial_wait=0.1), clock) == "ok"
    assert clock.sleeps == [7.0]


async def test_permanent_errors_propagate_at_once_and_unchanged() -> None:
    clock = FakeTime()
    error = _reject(5, "IC0502")
    perform, calls = _failing(error)
    with pytest.raises(ic.PermanentError) as info:
        await _run(perform, RetryPolicy(), clock)
    assert info.value is error
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_attempts_are_bounded_and_the_last_error_is_chained() -> None:
    clock = FakeTime()
    last = _http(503)
    perform, calls = _failing(_http(503), _http(503), last)
    with pytest.raises(RetriesExhausted) as info:
        await _run(perform, RetryPolicy(max_attempts=3), clock, what="icrp_write to app")
    assert len(calls) == 3
    assert info.value.attempts == 3
    assert info.value.__cause__ is last
    assert info.value.exit_code == EXIT_TEMPORARY
    assert "icrp_write to app still failed after 3 attempts" in str(info.value)
    assert "re-run the same command" in str(info.value)


async def test_total_time_is_bounded_including_a_long_retry_after() -> None:
    clock = FakeTime()
    perform, calls = _failing(_http(429, retry_after="3600"))
    with pytest.raises(RetriesExhausted, match="asked to wait 3600 s"):
        await _run(perform, RetryPolicy(max_seconds=300), clock)
    assert len(calls) == 1
    assert clock.sleeps == []  # it did not sleep an hour first

    clock = FakeTime()
    perform, calls = _failing(*[_http(503)] * 50)
    with pytest.raises(RetriesExhausted):
        await _run(perform, RetryPolicy(max_attempts=50, max_seconds=20, max_wait=4), clock)
    assert clock.now <= 20
    assert 4 < len(calls) < 50


async def test_unknown_outcomes_are_retried_only_for_idempotent_calls() -> None:
    timeout = ic.CallTimeout("no final status")
    assert retry_reason(timeout) == "outcome_unknown"
    assert retry_reason(_reject(6)) == "outcome_unknown"  # type: ignore[arg-type]
    strict = RetryPolicy(retry_unknown_outcome=False)
    assert not is_retryable(timeout, strict)
    assert is_retryable(_http(503), strict)
    perform, calls = _failing(timeout)
    with pytest.raises(ic.CallTimeout):
        await _run(perform, strict, FakeTime())
    assert len(calls) == 1


async def test_a_stale_certificate_is_retried_as_a_clock_problem() -> None:
    stale = ic.StaleCertificate("certificate 400 s old", skew_seconds=-400.0)
    assert retry_reason(stale) == "clock"
    assert is_retryable(stale, RetryPolicy(retry_unknown_outcome=False))


def test_every_reason_is_from_the_fixed_set() -> None:
    errors = [
        _http(429),
        _http(503),
        _http(502),
        _http(408),
        _reject(2),
        _reject(5, ic.CANISTER_STOPPED),
        _reject(5, ic.CANISTER_STOPPING),
        _reject(6),
        ic.CallTimeout("t"),
        ic.classify(OSError("connection refused")),
        ic.StaleCertificate("certificate 400 s old", skew_seconds=-400.0),
    ]
    reasons = {retry_reason(e) for e in errors if isinstance(e, ic.TransientError)}
    assert len(errors) == 11
    assert reasons == set(REASONS)


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt()])
async def test_cancellation_raised_by_the_call_is_neither_retried_nor_swallowed(
    exc: BaseException,
) -> None:
    clock = FakeTime()
    perform, calls = _failing(exc)
    with pytest.raises(type(exc)):
        await _run(perform, RetryPolicy(), clock)
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_cancellation_during_the_backoff_wait_propagates() -> None:
    sleeping = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        sleeping.set()
        await asyncio.sleep(3600)

    perform, calls = _failing(*[_http(503)] * 5)
    task = asyncio.create_task(call_with_retries(perform, RetryPolicy(), sleep=slow_sleep))
    await asyncio.wait_for(sleeping.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) == 1


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(max_seconds=0)
