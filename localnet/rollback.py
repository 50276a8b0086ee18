"""Restoring a canister instance after a rolled-back execution.

Two heap strategies (see ``localnet.sandbox`` for when each is used):

* :class:`CopyRollback`, the reference: save the whole heap before every
  execution, copy it back after a rollback;
* :class:`DirtyRollback`: keep a shadow copy of the committed heap and move
  only the pages an execution wrote (``localnet.dirty``), into the shadow on
  commit or back out of it on rollback. The shadow is sparse: only pages
  that hold memory in the heap are copied into it, so a Motoko canister's
  5 MiB heap with a dozen written pages has a shadow of a dozen pages.

:class:`GlobalsAccess` reads and restores the mutable globals.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any, cast

import wasmtime
from wasmtime import _ffi

from localnet import dirty

log = logging.getLogger("localnet.sandbox")


class CopyRollback:
    """Reference strategy: save everything before, restore everything after.

    The save buffer belongs to the thread, not the sandbox: executions on a
    thread never interleave, and a fleet of live canisters must not keep a
    heap-sized buffer each. It is reused between executions (allocating a
    fresh one each time costs more in page faults than the copy itself).
    Restoring writes back only the pages that differ, so a rolled-back
    query leaves the heap as sparse as it was.
    """

    name = "copy"

    def __init__(self) -> None:
        self._buf: dirty.AnonMemory | None = None  # the thread's, during an execution
        self._saved = 0  # bytes of _buf in use
        self.copied = 0  # heap bytes copied for the last execution (a statistic)

    def adopt(self, base: int, size: int, committed: list[tuple[int, int]] | None = None) -> None:
        """The memory at ``base`` now holds the committed state (``size`` bytes)."""
        self._saved = 0

    @property
    def pending_committed(self) -> list[tuple[int, int]] | None:
        """What :meth:`take_committed` would return, without taking it."""
        return None

    def committed_pages(self, base: int, size: int) -> list[tuple[int, bytes]]:
        """The non-zero pages of the committed heap (between executions)."""
        return dirty.nonzero_pages(base, size)

    @property
    def has_pending(self) -> bool:
        """Whether commits changed anything known since :meth:`take_committed` (never:
        this strategy does not know)."""
        return False

    def begin(self, base: int, size: int) -> None:
        self._buf = _save_buffer(size)
        ctypes.memmove(self._buf.address, base, size)
        self._saved = self.copied = size

    def commit(self, base: int, size: int) -> None:
        self._saved = 0

    def rollback(self, base: int, physical: int, committed: int) -> None:
        assert self._buf is not None
        self.copied += _copy_changed(base, self._buf.address, self._saved)
        if physical > committed:
            dirty.discard(base, committed, physical)
        self._saved = 0

    def restore_into(self, base: int, committed: int) -> None:
        """Write the committed state into a fresh, zero memory (after a rebuild)."""
        assert self._buf is not None
        _copy_changed(base, self._buf.address, committed)
        self._saved = 0

    def written(self, base: int, physical: int) -> list[tuple[int, bytes]]:
        return [(0, ctypes.string_at(base, physical))]

    def take_committed(self) -> list[tuple[int, int]] | None:
        """What commits changed since the last call: unknown here (None: all of it)."""
        return None

    def close(self) -> None:
        """Forget the execution's buffer; :meth:`adopt` may follow (a woken sandbox)."""
        self._buf = None
        self._saved = 0


_save_buffers = threading.local()


def _save_buffer(size: int) -> dirty.AnonMemory:
    """This thread's save buffer for the full-copy strategy, at least ``size`` bytes."""
    buf: dirty.AnonMemory | None = getattr(_save_buffers, "buf", None)
    if buf is None:
        buf = _save_buffers.buf = dirty.AnonMemory(size)
    elif buf.size < size:
        buf.resize(size)
    return buf


def _copy_changed(dst: int, src: int, size: int) -> int:
    """Copy the pages of ``src`` that differ from ``dst``; returns the bytes copied.

    Reading a never-written page of ``dst`` costs nothing; writing it would
    give it a page of RSS.
    """
    copied, page = 0, dirty.PAGE_SIZE
    for offset in range(0, size, page):
        n = min(page, size - offset)
        if _libc.memcmp(dst + offset, src + offset, n):
            ctypes.memmove(dst + offset, src + offset, n)
            copied += n
    return copied


_libc = ctypes.CDLL(None)
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.memcmp.restype = ctypes.c_int


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
        if self._shadow is None:
            self._shadow = dirty.AnonMemory(size)
        elif self._shadow.size < size:
            # Remapped, not copied: the pages not yet written stay unpopulated.
            self._shadow.resize(max(size, 2 * self._shadow.size))
        return self._shadow

    def _track(self, base: int, size: int) -> None:
        if self._tracker is not None and self._tracker.base != base:
            self._tracker.close()
            self._tracker = None
        if self._tracker is None:
            self._tracker = dirty.WriteTracker(base, self._reservation)
        self._tracker.protect(0, size)

    def adopt(self, base: int, size: int, committed: list[tuple[int, int]] | None = None) -> None:
        """The memory at ``base`` now holds the committed state (``size`` bytes).

        ``committed`` carries the ranges not yet taken by :meth:`take_committed`
        over a sleep (None: all of the heap is new to the journal).
        """
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None
        shadow = self._ensure_shadow(size)
        for start, end in dirty.populated(base, size):
            ctypes.memmove(shadow.address + start, base + start, end - start)
        self._track(base, size)
        self._committed = None if committed is None else list(committed)

    @property
    def pending_committed(self) -> list[tuple[int, int]] | None:
        """What :meth:`take_committed` would return, without taking it."""
        return None if self._committed is None else list(self._committed)

    @property
    def has_pending(self) -> bool:
        """Whether :meth:`take_committed` would report anything (None counts)."""
        return self._committed is None or bool(self._committed)

    def committed_pages(self, base: int, size: int) -> list[tuple[int, bytes]]:
        """The non-zero pages of the committed heap (between executions).

        Read from the shadow: the heap itself is write-protected, and the
        kernel reports its never-written pages like swapped-out ones.
        """
        if self._shadow is None:
            return dirty.nonzero_pages(base, size)
        return dirty.nonzero_pages(self._shadow.address, size)

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
        """Write the committed state into a fresh memory (after a rebuild).

        The fresh memory must be zero (the caller released its pages): only
        the populated pages of the shadow are copied.
        """
        assert self._shadow is not None
        shadow = self._shadow.address
        for start, end in dirty.populated(shadow, committed):
            ctypes.memmove(base + start, shadow + start, end - start)
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
        """Release tracker and shadow; :meth:`adopt` may follow (a woken sandbox)."""
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
