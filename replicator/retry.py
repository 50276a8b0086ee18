"""Retrying transient call errors (tenacity), and nothing else.

:func:`call_with_retries` runs a call and retries it only when it raised a
:class:`canister_iface.errors.TransientError` (HTTP 408/429/5xx, reject code
2, canister stopping/stopped, timeouts, network errors, certificates too far
from the local clock):

- waits grow exponentially with jitter: attempt *n* waits a random time in
  ``[b/2, b]`` with ``b = min(max_wait, initial_wait · multiplierⁿ⁻¹)``
  ("equal jitter": calls that failed together do not retry together, and
  there is always some pause);
- a node's ``Retry-After`` is honoured: the wait is at least that long;
- at most ``max_attempts`` attempts, and no wait that would end after
  ``max_seconds`` since the first attempt: then it gives up with
  :class:`~replicator.errors.RetriesExhausted` (exit code 75: re-run later
  to resume), chained to the last error;
- outcome-unknown errors (``CallTimeout``, reject code 6) are retried only
  when ``retry_unknown_outcome`` is set — i.e. for idempotent calls, which
  all ICRP calls are;
- permanent errors propagate at once, unchanged;
- cancellation (``asyncio.CancelledError``) and ``KeyboardInterrupt`` are
  neither retried nor swallowed, whether they arrive during a call or a wait.

Every retry is reported to ``on_retry(reason, wait_seconds)`` with a reason
from a small fixed set (:func:`retry_reason`), which the metrics count as
``replicator_retries_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception

from canister_iface import errors as ic
from replicator.errors import RetriesExhausted

log = logging.getLogger(__name__)

T = TypeVar("T")
RetryObserver = Callable[[str, float], None]

REASONS = (
    "rate_limited",  # HTTP 429
    "overloaded",  # HTTP 503
    "server_error",  # other HTTP 5xx, 408
    "reject_transient",  # reject code 2
    "canister_stopped",  # IC0508 / IC0509
    "outcome_unknown",  # reject code 6, or no final status before the ingress expiry
    "network",  # connection errors, read timeouts
    "clock",  # a certificate or query signature too far from the local clock
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try; the defaults ride out a few minutes of trouble."""

    max_attempts: int = 8
    max_seconds: float = 300.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    multiplier: float = 2.0
    retry_unknown_outcome: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not (self.max_seconds > 0 and self.initial_wait > 0 and self.max_wait > 0):
            raise ValueError("max_seconds, initial_wait and max_wait must be positive")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")

    def backoff(self, attempt: int, rnd: float) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), ``rnd`` in [0, 1)."""
        base = min(self.max_wait, self.initial_wait * self.multiplier ** (attempt - 1))
        return base / 2 + rnd * base / 2


def retry_reason(exc: ic.TransientError) -> str:
    """The reason label of a transient error (one of :data:`REASONS`)."""
    if isinstance(exc, ic.StaleCertificate):
        return "clock"
    if isinstance(exc, ic.CallTimeout) or exc.reject_code == ic.SYS_UNKNOWN:
        return "outcome_unknown"
    if exc.error_code in (ic.CANISTER_STOPPED, ic.CANISTER_STOPPING):
        return "canister_stopped"
    if exc.reject_code is not None:
        return "reject_transient"
    if exc.http_status == 429:
        return "rate_limited"
    if exc.http_status == 503:
        return "overloaded"
    if exc.http_status is not None:
        return "server_error"
    return "network"


def is_retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether ``policy`` retries ``exc``."""
    if not isinstance(exc, ic.TransientError):
        return False
    return policy.retry_unknown_outcome or retry_reason(exc) != "outcome_unknown"


async def call_with_retries(
    perform: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str = "the call",
    on_retry: RetryObserver | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """``await perform()``, retrying transient errors as the module docstring says."""
    started = clock()
    # The first attempt runs outside tenacity: almost every call succeeds at
    # once, and setting up tenacity's state machine (its callbacks are
    # inspected on every attempt) was a tenth of the relay's per-call Python.
    # A retryable failure is replayed as tenacity's first attempt, so waits,
    # stops, logs and reports are exactly those of a call made under it.
    try:
        return await perform()
    except BaseException as exc:
        if not is_retryable(exc, policy):
            raise
        replay = [exc]

    async def again() -> T:
        if replay:
            raise replay.pop()
        return await perform()

    def wait(state: RetryCallState) -> float:
        exc = _exception(state)
        retry_after = exc.retry_after if isinstance(exc, ic.TransientError) else None
        return max(policy.backoff(state.attempt_number, rng()), retry_after or 0.0)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        return clock() - started + state.upcoming_sleep > policy.max_seconds

    def before_sleep(state: RetryCallState) -> None:
        exc = _exception(state)
        reason = retry_reason(exc) if isinstance(exc, ic.TransientError) else "network"
        log.warning(
            "%s failed (%s), retry %d in %.1f s: %s",
            what,
            reason,
            state.attempt_number,
            state.upcoming_sleep,
            exc,
        )
        if on_retry is not None:
            on_retry(reason, state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: is_retryable(exc, policy)),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        return await retrying(again)
    except RetryError as exc:
        raise _exhausted(exc, what, clock() - started) from exc.last_attempt.exception()


def _exception(state: RetryCallState) -> BaseException | None:
    return None if state.outcome is None else state.outcome.exception()


def _exhausted(error: RetryError, what: str, elapsed: float) -> RetriesExhausted:
    attempts = error.last_attempt.attempt_number
    last = error.last_attempt.exception()
    hint = ""
    if isinstance(last, ic.TransientError) and last.retry_after:
        hint = f" (the node asked to wait {last.retry_after:g} s)"
    return RetriesExhausted(
        f"{what} still failed after {attempts} attempt{'s' if attempts != 1 else ''} in "
        f"{elapsed:.0f} s{hint}: {last}. The job stopped at its last checkpoint; re-run the "
        "same command later to resume",
        attempts=attempts,
        elapsed=elapsed,
    )
