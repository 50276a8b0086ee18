"""Restoring a canister instance after a rolled-back execution.

Two heap strategies (see ``localnet.sandbox`` for when each is used):

* :class:`CopyRollback`, the reference: save the whole heap before every
  execution, copy it back after a rollback;
* :class:`DirtyRollback`: keep a shadow copy of the committed heap and move
  only the pages an execution wrote (``localnet.dirty``), into the shadow on
  commit or back out of it on rollback.

:class:`GlobalsAccess` reads and restores the mutable globals.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, cast

import wasmtime
from wasmtime import _ffi

from localnet import dirty

log = logging.getLogger("localnet.sandbox")


class CopyRollback:
    """Reference strategy: save everything before, restore everything after.

    The save buffer is reused between executions: allocating a fresh one
    each time costs more in page faults than the copy itself.
    """

    name = "copy"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._saved = 0  # bytes of _buf in use
        self.copied = 0  # heap bytes copied for the last execution (a statistic)

    def _address(self) -> int:
        return ctypes.addressof(ctypes.c_char.from_buffer(self._buf)) if self._buf else 0

    def adopt(self, base: int, size: int) -> None:
        """The memory at ``base`` now holds the committed state (``size`` bytes)."""
        self._saved = 0

    def begin(self, base: int, size: int) -> None:
        if len(self._buf) < size:
            self._buf = bytearray(size)
        ctypes.memmove(self._address(), base, size)
        self._saved = self.copied = size

    def commit(self, base: int, size: int) -> None:
        self._saved = 0

    def rollback(self, base: int, physical: int, committed: int) -> None:
        ctypes.memmove(base, self._address(), self._saved)
        self.copied += self._saved
        if physical > committed:
            ctypes.memset(base + committed, 0, physical - committed)
        self._saved = 0

    def restore_into(self, base: int, committed: int) -> None:
        """Write the committed state into a fresh memory (after a rebuild)."""
        ctypes.memmove(base, self._address(), committed)
        self._saved = 0

    def written(self, base: int, physical: int) -> list[tuple[int, bytes]]:
        return [(0, ctypes.string_at(base, physical))]

    def take_committed(self) -> list[tuple[int, int]] | None:
        """What commits changed since the last call: unknown here (None: all of it)."""
        return None

    def close(self) -> None:
        self._buf = bytearray()
        self._saved = 0


class DirtyRollback:
    """Write-protection based strategy with a shadow copy of the committed heap."""

    name = "dirty"

    def __init__(self, reservation: int) -> None:
        self._reservation = reservation
        self._tracker: dirty.WriteTracker | None = None
        self._shadow: dirty.AnonMemory | None = None
        self.copied = 0  # heap bytes copied for the last execution (a statistic)
        # Byte ranges committed since take_committed last ran (None: all of
        # the heap, as after adopting or rebuilding one): --state-dir's journal.
        self._committed: list[tuple[int, int]] | None = None

    def _ensure_shadow(self, size: int) -> dirty.AnonMemory:
        if self._shadow is None or self._shadow.size < size:
            grown = dirty.AnonMemory(max(size, 2 * (self._shadow.size if self._shadow else 0)))
            if self._shadow is not None:
                ctypes.memmove(grown.address, self._shadow.address, self._shadow.size)
                self._shadow.close()
            self._shadow = grown
        return self._shadow

    def _track(self, base: int, size: int) -> None:
        if self._tracker is not None and self._tracker.base != base:
            self._tracker.close()
            self._tracker = None
        if self._tracker is None:
            self._tracker = dirty.WriteTracker(base, self._reservation)
        self._tracker.protect(0, size)

    def adopt(self, base: int, size: int) -> None:
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None
        shadow = self._ensure_shadow(size)
        ctypes.memmove(shadow.address, base, size)
        self._track(base, size)
        self._committed = None

    def begin(self, base: int, size: int) -> None:
        self.copied = 0  # the pages are armed since the last commit or rollback

    def commit(self, base: int, size: int) -> None:
        assert self._tracker is not None
        regions = self._tracker.scan(size, rearm=True)
        shadow = self._ensure_shadow(size)
        for r in regions:
            if r.present:  # an unpopulated page is zero, as the shadow is there
                ctypes.memmove(shadow.address + r.start, base + r.start, r.end - r.start)
                self.copied += r.end - r.start
                if self._committed is not None:
                    self._committed.append((r.start, r.end))

    def rollback(self, base: int, physical: int, committed: int) -> None:
        assert self._tracker is not None
        assert self._shadow is not None
        shadow = self._shadow.address
        for r in self._tracker.scan(physical, rearm=False):
            if not r.present:
                continue
            end = min(r.end, committed)
            if r.start < end:
                ctypes.memmove(base + r.start, shadow + r.start, end - r.start)
                self.copied += end - r.start
            if r.end > committed:
                start = max(r.start, committed)
                ctypes.memset(base + start, 0, r.end - start)
        # Restoring wrote the pages again: re-arm everything that is written.
        self._tracker.scan(physical, rearm=True)

    def restore_into(self, base: int, committed: int) -> None:
        assert self._shadow is not None
        ctypes.memmove(base, self._shadow.address, committed)
        self._track(base, committed)
        self._committed = None

    def written(self, base: int, physical: int) -> list[tuple[int, bytes]]:
        assert self._tracker is not None
        return [
            (r.start, ctypes.string_at(base + r.start, r.end - r.start))
            for r in self._tracker.scan(physical, rearm=False)
            if r.present
        ]

    def take_committed(self) -> list[tuple[int, int]] | None:
        """The byte ranges commits changed since the last call (None: all)."""
        ranges, self._committed = self._committed, []
        return ranges

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None


Rollback = CopyRollback | DirtyRollback
_logged_mode = False


def pick_rollback(mode: str, reservation: int) -> Rollback:
    global _logged_mode
    if mode not in ("auto", "copy", "dirty"):
        raise ValueError(f"rollback must be 'auto', 'copy' or 'dirty', not {mode!r}")
    if mode == "copy":
        return CopyRollback()
    reason = dirty.probe()
    if reason is None:
        if not _logged_mode:
            log.info("sandbox rollback: dirty-page tracking (userfaultfd WP_ASYNC)")
            _logged_mode = True
        return DirtyRollback(reservation)
    if mode == "dirty":
        raise OSError(f"dirty-page tracking is not available: {reason}")
    if not _logged_mode:
        log.warning("sandbox rollback: full heap copies (dirty tracking unavailable: %s)", reason)
        _logged_mode = True
    return CopyRollback()


_NUMERIC_KINDS: dict[int, str] = {
    _ffi.WASMTIME_I32.value: "i32",
    _ffi.WASMTIME_I64.value: "i64",
    _ffi.WASMTIME_F32.value: "f32",
    _ffi.WASMTIME_F64.value: "f64",
}
_KIND_OF_FIELD = {field: kind for kind, field in _NUMERIC_KINDS.items()}


class GlobalsAccess:
    """Reads and writes all mutable globals at once through wasmtime's C API.

    ``Global.value``/``set_value`` build several Python objects per call,
    which made handling Motoko's ~30 globals the largest cost of a small
    message; the direct calls are ~8x cheaper. Globals that are not plain
    numbers (or a wasmtime-py without these internals) use the public API.
    """

    def __init__(self, store: wasmtime.Store, globals_: list[wasmtime.Global]) -> None:
        self._store = store
        self._globals = globals_
        self._raw = _ffi.wasmtime_val_t()
        self._fields: list[str | None] = []
        try:
            self._ctx = store._context()
            self._refs = [ctypes.byref(g._global) for g in globals_]
            for ref in self._refs:
                _ffi.wasmtime_global_get(self._ctx, ref, ctypes.byref(self._raw))
                self._fields.append(_NUMERIC_KINDS.get(cast(int, self._raw.kind)))
                if self._fields[-1] is None:
                    _ffi.wasmtime_val_unroot(ctypes.byref(self._raw))
        except AttributeError:
            self._refs = []
            self._fields = [None] * len(globals_)

    def read(self) -> list[int | float]:
        raw, get, ctx = self._raw, _ffi.wasmtime_global_get, getattr(self, "_ctx", None)
        out: list[int | float] = []
        for i, field in enumerate(self._fields):
            if field is None:
                out.append(self._globals[i].value(self._store))
            else:
                get(ctx, self._refs[i], ctypes.byref(raw))
                out.append(getattr(raw.of, field))
        return out

    def write(self, values: list[int | float], current: list[int | float] | None = None) -> None:
        """Set the globals to ``values``; only those differing from ``current``."""
        raw = self._raw
        for i, field in enumerate(self._fields):
            value = values[i]
            if current is not None and current[i] == value:
                continue
            if field is None:
                self._globals[i].set_value(self._store, value)
                continue
            raw.kind = cast(Any, _KIND_OF_FIELD[field])
            setattr(raw.of, field, value)
            error = _ffi.wasmtime_global_set(self._ctx, self._refs[i], ctypes.byref(raw))
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
