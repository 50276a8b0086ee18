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
        spends: int = 0,
        urgent: bool = False,
        in_subnet: bool = False,
    ) -> T:
        """``await perform()`` as one logical call of ``method`` on ``canister_id``.

        ``cost`` and ``nbytes`` tell the limits what the call moves and costs
        (``nbytes``: payload bytes sent or asked for); ``spends`` are cycles the
        call pays beyond its message fees (a canister's initial cycles, a
        top-up), charged to the cycles budget like the fees.  ``urgent``
        calls (a standby's journal tail) go first through the limits
        (:class:`replicator.limits.CallSpec`).  ``in_subnet``: the payload
        crosses no block (a push between canisters of one subnet), which the
        ``"auto"`` byte budget meters apart.
        """
        cycles = estimate_cycles(cost, nbytes) + spends
        spec = CallSpec(
            canister_id, method, bytes=nbytes, cycles=cycles, urgent=urgent, in_subnet=in_subnet
        )

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
