"""A replica's canisters, and what changed among them since the last look.

A fleet puts 20,000 canisters on a subnet while a drain touches a few. The
``--state-dir`` journal, the timers and the idle checks must cost what was
touched, not what exists, so :class:`CanisterTable` (a ``dict`` of canister
id to :class:`~localnet.state.CanisterState`) is the tracker of every
canister it holds: each change a canister reports (``localnet.state``) puts
its id in the dirty set that :meth:`CanisterTable.take_dirty` hands to the
journal, and each ``global_timer`` assignment goes on a heap of deadlines,
so the next due timer is found without a scan. Stale heap entries (a timer
re-armed or cancelled since) are dropped when they reach the top.

Adding, replacing and removing canisters mark their ids too: a removed id
in the dirty set is how the journal learns of a deletion.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Mapping
from typing import Any

from localnet.state import CanisterState

# Stale timer entries beyond this (and the table's size) trigger a rebuild
# of the heap, so re-arming timers cannot grow it without bound.
_HEAP_SLACK = 1024


class CanisterTable(dict[bytes, CanisterState]):
    """Canisters by id; hears of their changes (see the module doc)."""

    def __init__(self, items: Mapping[bytes, CanisterState] | None = None) -> None:
        super().__init__()
        self.dirty: set[bytes] = set()
        self._timers: list[tuple[int, bytes]] = []  # (deadline ns, canister id)
        for canister_id, canister in (items or {}).items():
            self[canister_id] = canister

    # --- the Tracker protocol (localnet.state) ------------------------------------------

    def touched(self, canister: CanisterState, name: str | None) -> None:
        self.dirty.add(canister.canister_id)
        if name == "global_timer" and canister.global_timer > 0:
            self._push_timer(canister.global_timer, canister.canister_id)
        elif name == "sandbox":
            self._hook_sandbox(canister)

    # --- what the journal asks -----------------------------------------------------------

    def take_dirty(self) -> set[bytes]:
        """The ids of canisters changed, added or removed since the last call."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    # --- timers ----------------------------------------------------------------------------

    def due_timers(self, now_ns: int) -> list[CanisterState]:
        """The canisters whose global timer is set and at most ``now_ns``.

        They stay on the heap: a timer that cannot run yet (a stopped canister)
        is due again next time; one the caller fires (sets to 0) turns stale.
        """
        due: dict[bytes, CanisterState] = {}
        while self._timers and self._timers[0][0] <= now_ns:
            deadline, canister_id = heapq.heappop(self._timers)
            canister = self.get(canister_id)
            if canister is not None and canister.global_timer == deadline:
                due[canister_id] = canister
        for canister_id, canister in due.items():
            heapq.heappush(self._timers, (canister.global_timer, canister_id))
        return list(due.values())

    def next_timer_ns(self) -> int | None:
        """The earliest global timer set on any canister, or None."""
        while self._timers:
            deadline, canister_id = self._timers[0]
            canister = self.get(canister_id)
            if canister is not None and canister.global_timer == deadline:
                return deadline
            heapq.heappop(self._timers)
        return None

    def _push_timer(self, deadline: int, canister_id: bytes) -> None:
        heapq.heappush(self._timers, (deadline, canister_id))
        if len(self._timers) > 2 * len(self) + _HEAP_SLACK:
            self._timers = [(c.global_timer, i) for i, c in self.items() if c.global_timer > 0]
            heapq.heapify(self._timers)

    # --- membership --------------------------------------------------------------------------

    def _adopt(self, canister: CanisterState) -> None:
        canister.tracker = self  # reports itself: marks it dirty
        if canister.global_timer > 0:
            self._push_timer(canister.global_timer, canister.canister_id)
        self._hook_sandbox(canister)

    def _hook_sandbox(self, canister: CanisterState) -> None:
        # Executions commit memory without touching a field of the canister.
        if canister.sandbox is not None:
            canister.sandbox.on_change = functools.partial(self.dirty_add, canister.canister_id)

    def dirty_add(self, canister_id: bytes) -> None:
        self.dirty.add(canister_id)

    def _release(self, canister_id: bytes) -> None:
        self.dirty.add(canister_id)
        canister = super().get(canister_id)
        if canister is not None and canister.tracker is self:
            canister.tracker = None

    def __setitem__(self, canister_id: bytes, canister: CanisterState) -> None:
        if canister_id in self and super().__getitem__(canister_id) is not canister:
            self._release(canister_id)
        super().__setitem__(canister_id, canister)
        self.dirty.add(canister_id)
        self._adopt(canister)

    def __delitem__(self, canister_id: bytes) -> None:
        self._release(canister_id)
        super().__delitem__(canister_id)

    def pop(self, canister_id: bytes, *default: Any) -> Any:
        if canister_id in self:
            self._release(canister_id)
        return super().pop(canister_id, *default)

    def popitem(self) -> tuple[bytes, CanisterState]:
        canister_id, canister = super().popitem()
        self.dirty.add(canister_id)
        if canister.tracker is self:
            canister.tracker = None
        return canister_id, canister

    def clear(self) -> None:
        for canister_id in list(self):
            self._release(canister_id)
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        for canister_id, canister in dict(*args, **kwargs).items():
            self[canister_id] = canister

    def setdefault(self, canister_id: bytes, default: Any = None) -> Any:
        if canister_id not in self:
            self[canister_id] = default
        return self[canister_id]

    def __ior__(self, other: Any) -> CanisterTable:  # type: ignore[override,misc]
        self.update(other)
        return self
