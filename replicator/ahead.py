"""One call ahead: the answers of a call repeated until told to stop, each call
sent before the previous one is answered.

For work a canister does in steps (an export prepared step by step): an
update is answered at the end of its round and the next one, sent then,
waits for a new block, so a caller that waits for each answer gets a step
every other round.  With the next call already queued behind the current
one, the canister steps every round.  The price is one call too many, whose
answer is dropped: the step it asks for must be harmless once the work is
done (a status call on a finished export answers with the ready image).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def one_ahead(step: Callable[[], Awaitable[T]]) -> AsyncGenerator[T, None]:
    """``step()``'s answers in order, one more call always in flight.

    Use it under :func:`contextlib.aclosing`: closing the iterator stops
    waiting for the call in flight (the canister still runs it).  A failed
    call ends the iteration with its error.
    """
    ahead: asyncio.Future[T] = asyncio.ensure_future(step())
    try:
        while True:
            current, ahead = ahead, asyncio.ensure_future(step())
            yield await current
    finally:
        await _drop(ahead)


async def _drop(task: asyncio.Future[T]) -> None:
    """Stops waiting for ``task``; what it answers or raises is nobody's business now."""
    task.cancel()
    await asyncio.wait([task])  # not `await task`: our own cancellation must propagate
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not report it as lost
