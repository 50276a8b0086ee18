"""The execution thread: the one place where the replica's state changes.

Wasm execution is CPU-bound and synchronous; the HTTP interface is asyncio.
Every replica operation is a job on a single worker thread, so the replica
needs no locks and the event loop never blocks on a canister. wasmtime drops
the GIL while Wasm runs, so HTTP requests keep being accepted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from localnet.replica import Replica

T = TypeVar("T")
log = logging.getLogger("localnet.executor")

# How often due timers are checked when no timer deadline is known sooner.
_TIMER_POLL_SECONDS = 0.05


class ExecutionThread:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localnet-exec")
        self._timer_task: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the execution thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def drain_soon(self) -> None:
        """Execute whatever is queued, without waiting for it."""
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        try:
            self.replica.fire_due_timers()
            self.replica.expire_deadlines()
            self.replica.run_until_idle()
        except Exception:  # a bug in localnet itself: keep serving, but say so loudly
            log.exception("localnet execution failed")

    def start_timers(self) -> None:
        self._timer_task = asyncio.get_running_loop().create_task(self._timers())

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(_TIMER_POLL_SECONDS)
            await self.run(self._drain_if_timer_due)

    def _drain_if_timer_due(self) -> None:
        # Runs on the execution thread: the canister table is only read there.
        self.replica.engine.residency.evict_idle()  # idle canisters sleep even when all is quiet
        deadline = self.replica.next_timer_ns()
        if deadline is not None and deadline <= self.replica.clock.peek_ns():
            self._drain()

    async def close(self) -> None:
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._pool.shutdown, wait=True))
