"""``one_ahead``: one call always in flight behind the one awaited, none left behind."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from replicator.ahead import one_ahead


class Steps:
    """A canister preparing in ``ready_after`` steps; records calls in flight."""

    def __init__(self, ready_after: int, *, fail_at: int | None = None) -> None:
        self.ready_after, self.fail_at = ready_after, fail_at
        self.calls = self.in_flight = self.most_in_flight = self.cancelled = 0

    async def step(self) -> int:
        self.calls += 1
        number = self.calls
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            # Past the ready step a call would take long: it can only end by being dropped.
            await asyncio.sleep(0.01 if number <= self.ready_after else 10)
            if number == self.fail_at:
                raise RuntimeError(f"step {number} failed")
            return number
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


async def _until_ready(steps: Steps) -> list[int]:
    seen: list[int] = []
    async with contextlib.aclosing(one_ahead(steps.step)) as answers:
        async for answer in answers:
            seen.append(answer)
            if answer >= steps.ready_after:
                break
    return seen


async def test_answers_come_in_order_with_one_call_ahead() -> None:
    steps = Steps(ready_after=5)
    assert await _until_ready(steps) == [1, 2, 3, 4, 5]
    assert steps.most_in_flight == 2  # the awaited step and the one ahead, never more
    assert steps.calls == 6  # one call too many ...
    assert steps.cancelled == 1  # ... no longer waited for
    assert steps.in_flight == 0


async def test_a_failed_step_ends_it_and_drops_the_call_ahead() -> None:
    steps = Steps(ready_after=10, fail_at=3)
    with pytest.raises(RuntimeError, match="step 3 failed"):
        await _until_ready(steps)
    await asyncio.sleep(0)
    assert steps.in_flight == 0
    assert steps.calls == 4  # steps 1-3 awaited, step 4 in flight and dropped


async def test_cancelling_the_caller_cancels_both_calls() -> None:
    steps = Steps(ready_after=1000)
    task = asyncio.ensure_future(_until_ready(steps))
    await asyncio.sleep(0.035)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps.in_flight == 0
