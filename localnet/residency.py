"""Which canister sandboxes keep a live Wasm instance: the others sleep on disk.

A live sandbox costs a wasmtime instance, its heap's written pages, the
shadow copy rollback needs, stable memory and a handful of memory mappings
(a 6 GiB reservation among them). A fleet of 10,000 canisters of which a few
hundred are in use at any moment must not pay that 10,000 times, so a
sandbox that was not used for :attr:`ResidencyLimits.idle_seconds`, or that
is the least recently used one when more than
:attr:`ResidencyLimits.max_resident` are live, is put to sleep: its committed
heap and stable memory go to a page image (``localnet.spill``), its instance
is dropped, and the next execution wakes it (queries included) by
instantiating the module again and writing the non-zero pages back. Nothing
a canister can observe changes; only its next message takes a little longer.

Sandboxes ask :class:`Residency` for their instance around every execution
(:meth:`Residency.using`); a sandbox in use is never put to sleep. All
bookkeeping is under one lock, so execution threads may share an engine.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from localnet.spill import Spill

log = logging.getLogger("localnet.residency")


@dataclass(frozen=True)
class ResidencyLimits:
    """How many canisters stay live. ``max_resident=None`` keeps all of them live;
    ``idle_seconds=None`` puts none to sleep for idleness alone."""

    max_resident: int | None = 256
    idle_seconds: float | None = 60.0
    spill_dir: Path | None = None  # None: the system's temporary directory

    def __post_init__(self) -> None:
        if self.max_resident is not None and self.max_resident < 1:
            raise ValueError(f"max_resident must be at least 1, not {self.max_resident}")
        if self.idle_seconds is not None and self.idle_seconds < 0:
            raise ValueError(f"idle_seconds must not be negative, not {self.idle_seconds}")


class Sleeper(Protocol):
    """What :class:`Residency` needs of a sandbox."""

    busy: int

    @property
    def asleep(self) -> bool: ...

    def sleep(self, spill: Spill) -> None: ...

    def wake(self, spill: Spill) -> None: ...


@dataclass
class ResidencyStats:
    resident: int = 0
    sleeps: int = 0
    wakes: int = 0
    wake_seconds: float = 0.0  # spent waking sandboxes, in total
    sleep_seconds: float = 0.0


class Residency:
    """The live sandboxes of one engine, least recently used first."""

    def __init__(
        self,
        limits: ResidencyLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or ResidencyLimits()
        self._clock = clock
        self.lock = threading.RLock()
        # id(sandbox) -> (weak reference, last use): a sandbox dropped without
        # close() must still be collectable, as before residency existed.
        self._live: OrderedDict[int, tuple[weakref.ref[Sleeper], float]] = OrderedDict()
        self._spill: Spill | None = None
        self.stats = ResidencyStats()

    @property
    def spill(self) -> Spill:
        with self.lock:
            if self._spill is None:
                self._spill = Spill(self.limits.spill_dir)
            return self._spill

    @property
    def resident(self) -> int:
        return len(self._live)

    # --- what sandboxes call -----------------------------------------------------------

    def admit(self, sandbox: Sleeper) -> None:
        """A sandbox with a fresh live instance (just loaded)."""
        with self.lock:
            self._mark_used(sandbox)
            self._trim(keep=sandbox)

    @contextmanager
    def using(self, sandbox: Sleeper) -> Iterator[None]:
        """Wake ``sandbox`` if it sleeps and keep it awake until the block ends."""
        with self.lock:
            if sandbox.asleep:
                self._wake(sandbox)
            sandbox.busy += 1
            self._mark_used(sandbox)
            self._trim(keep=sandbox)
        try:
            yield
        finally:
            with self.lock:
                sandbox.busy -= 1
                self._mark_used(sandbox)

    def forget(self, sandbox: Sleeper) -> None:
        """A closed sandbox."""
        with self.lock:
            self._live.pop(id(sandbox), None)
            self.stats.resident = len(self._live)

    # --- policy ------------------------------------------------------------------------

    def evict_idle(self) -> int:
        """Put to sleep every sandbox idle for longer than the limit; returns how many."""
        with self.lock:
            return self._trim(keep=None)

    def sleep_all(self) -> int:
        """Put every sandbox not in use to sleep (tests, benchmarks)."""
        with self.lock:
            count = 0
            for key in list(self._live):
                sandbox = self._live[key][0]()
                if sandbox is None:
                    del self._live[key]
                elif not sandbox.busy:
                    count += self._sleep(key, sandbox)
            self.stats.resident = len(self._live)
            return count

    def _mark_used(self, sandbox: Sleeper) -> None:
        key = id(sandbox)
        entry = self._live.pop(key, None)
        ref = entry[0] if entry is not None else weakref.ref(sandbox)
        self._live[key] = (ref, self._clock())
        self.stats.resident = len(self._live)

    def _trim(self, keep: Sleeper | None) -> int:
        """Sleep the least recently used beyond the bound, and the idle ones."""
        limits = self.limits
        deadline = None if limits.idle_seconds is None else self._clock() - limits.idle_seconds
        count = 0
        for key in list(self._live):  # oldest first
            ref, last_use = self._live[key]
            over = limits.max_resident is not None and len(self._live) > limits.max_resident
            idle = deadline is not None and last_use <= deadline
            if not over and not idle:
                break  # everything after this one was used more recently
            sandbox = ref()
            if sandbox is None:
                del self._live[key]
            elif sandbox is not keep and not sandbox.busy:
                count += self._sleep(key, sandbox)
        self.stats.resident = len(self._live)
        return count

    def _sleep(self, key: int, sandbox: Sleeper) -> bool:
        start = time.perf_counter()
        try:
            sandbox.sleep(self.spill)
        except OSError as exc:
            # The sandbox stays live and unchanged: memory grows, nothing is lost.
            log.warning("a canister stays in memory: %s", exc)
            self._live.move_to_end(key)
            return False
        del self._live[key]
        self.stats.sleeps += 1
        self.stats.sleep_seconds += time.perf_counter() - start
        return True

    def _wake(self, sandbox: Sleeper) -> None:
        start = time.perf_counter()
        sandbox.wake(self.spill)
        self.stats.wakes += 1
        self.stats.wake_seconds += time.perf_counter() - start
