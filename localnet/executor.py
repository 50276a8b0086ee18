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

from localnet.fabric import Fabric

T = TypeVar("T")
log = logging.getLogger("localnet.executor")

# How often due timers are checked when no timer deadline is known sooner.
_TIMER_POLL_SECONDS = 0.05


class ExecutionThread:
    """One thread for every subnet's replica: they never run at the same time."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localnet-exec")
        self._timer_task: asyncio.Task[None] | None = None
        self._round_task: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the execution thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def drain_soon(self) -> None:
        """Execute whatever is queued, without waiting for it."""
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        try:
            self.fabric.drain()
        except Exception:  # a bug in localnet itself: keep serving, but say so loudly
            log.exception("localnet execution failed")

    def start_timers(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer_task = loop.create_task(self._timers())
        model = self.fabric.model
        if model is not None and model.rounds_per_second > 0:
            self._round_task = loop.create_task(self._rounds(model.round_seconds))

    async def _rounds(self, period: float) -> None:
        """A round every ``period`` seconds; a late round starts the next one at once."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.run(self._round)
            next_at += period
            delay = next_at - loop.time()
            if delay < 0:
                next_at, delay = loop.time(), 0.0  # behind: no burst of catch-up rounds
            await asyncio.sleep(delay)

    def _round(self) -> None:
        try:
            self.fabric.run_round()
        except Exception:  # a bug in localnet itself: keep serving, but say so loudly
            log.exception("localnet round failed")

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(_TIMER_POLL_SECONDS)
            await self.run(self._drain_if_timer_due)

    def _drain_if_timer_due(self) -> None:
        # Runs on the execution thread: the canister table is only read there.
        # Idle canisters sleep even when all is quiet (the subnets share one engine).
        self.fabric.topology.root.replica.engine.residency.evict_idle()
        deadline = self.fabric.next_deadline_ns()
        if deadline is not None and deadline <= self.fabric.topology.root.replica.clock.peek_ns():
            self._drain()

    async def close(self) -> None:
        for task in (self._timer_task, self._round_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._pool.shutdown, wait=True))
