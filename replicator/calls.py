"""One way to make a call: permits, retries, metrics — in that nesting.

Every canister call the engine makes goes through :meth:`CallRunner.call`::

    retries (tenacity, transient errors only)
      └─ limits (time window, cycles budget, in flight, calls/s, bytes/s)
           └─ metrics (calls by method and outcome, latency, cycles)
                └─ the call itself

Retries sit outside the limits on purpose: each attempt is a call on the
network and takes its own permits, so a storm of retries cannot exceed the
configured rates.  The metrics sit inside, so the latency histogram measures
the call and not the time spent waiting for a permit (that wait is counted
by the limits as ``replicator_throttle_wait_seconds_total``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from replicator.errors import IntegrityError, JobFailed, ReplicatorError, job_error
from replicator.limits import Caller, CallSpec, estimate_cycles
from replicator.metrics import Metrics
from replicator.retry import RetryObserver, RetryPolicy, call_with_retries

T = TypeVar("T")
CallCost = Literal["query", "update", "push"]


class CallRunner:
    """Makes calls through the limits, with retries, counted in the metrics."""

    def __init__(
        self,
        caller: Caller,
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        on_retry: RetryObserver | None = None,
    ) -> None:
        self.caller = caller
        self.policy = policy
        self.metrics = metrics
        self._on_retry = on_retry

    async def call(
        self,
        canister_id: str,
        method: str,
        perform: Callable[[], Awaitable[T]],
        *,
        cost: CallCost = "query",
        nbytes: int = 0,
        what: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        """``await perform()`` as one logical call of ``method`` on ``canister_id``.

        ``cost`` and ``nbytes`` tell the limits what the call moves and costs
        (``nbytes``: payload bytes sent or asked for).
        """
        cycles = estimate_cycles(cost, nbytes)
        spec = CallSpec(canister_id, method, bytes=nbytes, cycles=cycles)

        async def timed() -> T:
            self.metrics.record_cycles_spent(cycles)
            with self.metrics.timed_call(method):
                return await perform()

        async def attempt() -> T:
            return await self.caller.call(spec, timed)

        return await call_with_retries(
            attempt,
            policy or self.policy,
            what=what or f"{method} on {canister_id}",
            on_retry=self._retried,
        )

    def _retried(self, reason: str, wait_seconds: float) -> None:
        self.metrics.record_retry(reason, wait_seconds)
        if self._on_retry is not None:
            self._on_retry(reason, wait_seconds)


def job_level_error(exc: BaseException) -> ReplicatorError:
    """The job-level error a failure ends a job with (message + exit code)."""
    if isinstance(exc, ReplicatorError):
        return exc
    inner = exc.inner if isinstance(exc, ie.TargetError) else exc
    if isinstance(inner, ie.DigestMismatch | ie.Conflict):
        return IntegrityError(f"{exc}; nothing was committed")
    if isinstance(exc, ic.CanisterNotFound) or _outside_every_subnet(exc):
        return JobFailed(f"{exc}; check the canister id and the network (--network)")
    if isinstance(exc, ic.IcError):
        return job_error(exc)
    if isinstance(exc, OSError):
        return JobFailed(f"{exc}; check the path and its permissions")
    return JobFailed(f"unexpected error: {exc!r}; this is a bug, please report it")


def _outside_every_subnet(exc: BaseException) -> bool:
    # A canister id no subnet's range contains cannot be verified; for the
    # user that is a wrong id (or network), not an integrity problem.
    return isinstance(exc, ic.CertificateError) and exc.reason == "not_hosted"
