"""Time as the replica sees it.

The real clock by default; tests can freeze it, set it and advance it, e.g. to
make a canister timer fire without sleeping. Canister-visible time never goes
backwards and strictly increases between executions, as on the IC.
"""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self, *, frozen_at_ns: int | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen_at = frozen_at_ns
        self._offset = 0
        self._last = 0

    def now_ns(self) -> int:
        """Monotonic, strictly increasing nanoseconds since the epoch."""
        with self._lock:
            base = self._frozen_at if self._frozen_at is not None else time.time_ns()
            self._last = max(base + self._offset, self._last + 1)
            return self._last

    def peek_ns(self) -> int:
        """The current time without consuming a tick (for expiry checks)."""
        with self._lock:
            base = self._frozen_at if self._frozen_at is not None else time.time_ns()
            return max(base + self._offset, self._last)

    def freeze(self, at_ns: int | None = None) -> None:
        with self._lock:
            self._frozen_at = at_ns if at_ns is not None else time.time_ns() + self._offset
            self._offset = 0

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time_ns()
            self._frozen_at = None

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += int(seconds * 1e9)
