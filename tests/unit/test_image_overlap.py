"""The image performer's two-at-once helper: failures keep their type, the other is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from canister_iface import icrp_errors as ie
from replicator.flows.image.performer import _together


async def test_both_results_in_order() -> None:
    async def later(value: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return value

    assert await _together(later(1, 0.02), later(2, 0.0)) == (1, 2)


async def test_a_failure_is_raised_as_itself_and_cancels_the_other() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stale() -> None:
        raise ie.StaleSnapshot("snapshot 7 is gone", requested=7, current=8)

    with pytest.raises(ie.StaleSnapshot):  # not an ExceptionGroup: perform() restarts on it
        await _together(slow(), stale())
    assert cancelled.is_set()
