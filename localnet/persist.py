"""``--state-dir``: canisters, memories, snapshots, cycles and keys survive a restart, and a crash.

Layout: a checkpoint (one directory per canister, raw memories as files so a
1 GiB heap is not pushed through CBOR) and a journal of what changed since::

    state-dir/
      localnet.cbor                 format version, keys, next canister index
      modules/<sha256 hex>.wasm     each installed module once (format 2)
      canisters/<canister id>/
        state.cbor                  settings, cycles, status, certified data, timer, ...
        module.sha256 heap.bin stable.bin globals.cbor
        chunks/<sha256 hex>
        snapshots/<snapshot id hex>/{meta.cbor,module.wasm,heap.bin,stable.bin}
      journal.log                   one record per commit point since the checkpoint

Memories are sparse: ``heap.bin`` and ``stable.bin`` are sparse files (zero
pages are holes) and journal records carry only non-zero pages, so a fleet
of 10,000 Motoko canisters with 5 MiB heaps of a dozen written pages costs
some hundred MiB, not 50 GiB, on disk, and is loaded without reading the
zeros. Loaded canisters start asleep (``localnet.residency``). Format 1
state directories (a ``module.wasm`` per canister) are still read.

Crash consistency, like a replica's checkpoints plus its log:

* **Commit points** are message boundaries: the end of every drain of the
  replica's queue (:meth:`Journal.commit` wraps ``run_until_idle``). The
  record holds, for every canister that changed, its small state (settings,
  cycles, certified data, ...) and only the heap and stable memory pages
  written since the last commit: dirty-page tracking (``localnet.dirty``)
  lists them, so a 100 MiB heap costs what a message wrote, not 100 MiB.
  The record is appended and fsynced *before* the replies of that drain are
  released to their waiting HTTP calls: an answered update is on disk.
* A record is ``MAGIC | length | BLAKE2b-128 | CBOR``; after a crash the
  journal is replayed up to the last complete record and a torn tail is cut
  off, so a half-written record is never loaded. The certified data and the
  memories of a canister travel in the same record, so they always agree.
* **Checkpoints** (at a clean stop, and when the journal exceeds
  :data:`JOURNAL_LIMIT` and :data:`JOURNAL_FACTOR` times the bytes the last
  checkpoint wrote) are written to ``state-dir.tmp``, made durable as a
  whole (``syncfs``: one flush for thousands of files, not one fsync each)
  before ``localnet.cbor`` is written and fsynced, then swapped in by renames (``state-dir`` →
  ``state-dir.old``, ``.tmp`` → ``state-dir``); a crash between the renames is
  repaired at the next start from ``state-dir.old``.

Several subnets (``LocalNet(subnets=N)``): each subnet keeps the layout
above in ``state-dir/subnet-<i>/`` with a journal of its own, and every
drain of one subnet's queue is a commit point of that subnet (the fabric
drains subnet after subnet); ``state-dir/subnets.cbor`` says how many there
are, so a restart with another ``--subnets`` is refused instead of losing
one. Messages between subnets that are in flight at a crash are lost like
any queued message.

Not kept: messages still queued or calls still open at a commit point (a
clean stop drains them first), and request statuses (``read_state`` of an
answered request id forgets it after a restart, as after its expiry).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cbor2

from localnet import ids
from localnet.replica import Replica
from localnet.sandbox import CanisterSandbox, MemoryDelta, SparseImage, sparse_pages
from localnet.state import CanisterState, CanisterStatus, Settings, Snapshot, wasm_hash

FORMAT_VERSION = 2
_READABLE = {1, 2}
JOURNAL = "journal.log"
SUBNETS = "subnets.cbor"
JOURNAL_LIMIT = 256 * 1024 * 1024  # bytes of journal that trigger a checkpoint (at least)
# A checkpoint rewrites every canister, so a fixed limit made a fleet's
# checkpoints cost O(canisters) each, O(canisters^2) in all (200 members of a
# fleet backup: 15 checkpoints, half of localnet's time). Letting the journal
# grow to twice the last checkpoint keeps checkpoint writes at most half of
# the journal's, whatever the fleet's size (disk: about 3x the state).
JOURNAL_FACTOR = 2
_MAGIC = b"LNJ1"
_HEADER = struct.Struct("<4sQ16s")  # magic, payload length, BLAKE2b-128 of the payload


class StateDirError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


class DirtyMissed(AssertionError):
    """``LOCALNET_CHECK_DIRTY=1`` found a change the dirty set did not hold (a localnet bug)."""


def check_dirty_enabled() -> bool:
    """Whether every commit also runs the full scan (``LOCALNET_CHECK_DIRTY=1``)."""
    return os.environ.get("LOCALNET_CHECK_DIRTY", "") not in ("", "0")


def subnet_dirs(state_dir: Path, count: int) -> list[Path]:
    """The folder of each subnet's checkpoint and journal (see the module doc)."""
    marker = state_dir / SUBNETS
    if count == 1:
        if marker.exists():
            held = _read_cbor(marker).get("subnets")
            raise StateDirError(
                f"{state_dir} holds a localnet of {held} subnets; start it with "
                f"--subnets {held}, or use another --state-dir"
            )
        return [state_dir]
    if (state_dir / "localnet.cbor").exists():
        raise StateDirError(
            f"{state_dir} holds a localnet of one subnet; start it without --subnets, "
            "or use another --state-dir"
        )
    if marker.exists():
        held = _read_cbor(marker).get("subnets")
        if held != count:
            raise StateDirError(
                f"{state_dir} holds a localnet of {held} subnets, not {count}; start it "
                f"with --subnets {held}, or use another --state-dir"
            )
    else:
        state_dir.mkdir(parents=True, exist_ok=True)
        _write_cbor(marker, {"format": FORMAT_VERSION, "subnets": count})
        _fsync_dir(state_dir)
    return [state_dir / f"subnet-{index}" for index in range(count)]


# --- checkpoints ------------------------------------------------------------------------


def save(replica: Replica, keys: dict[str, bytes], state_dir: Path) -> int:
    """Write a full checkpoint (with an empty journal) and swap it in atomically.

    Returns the bytes of memories, chunks and modules it wrote."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "canisters").mkdir(parents=True)
    (tmp / "modules").mkdir()
    modules: set[bytes] = set()
    written = 0
    for canister in replica.canisters.values():
        folder = tmp / "canisters" / ids.to_text(canister.canister_id)
        written += _save_canister(canister, folder, tmp / "modules", modules)
    _sync_filesystem(tmp)  # everything so far is durable
    # Written last: a checkpoint without it is incomplete and never loaded.
    meta = {
        "format": FORMAT_VERSION,
        "keys": keys,
        "next_canister_index": replica.next_canister_index,
    }
    _write(tmp / "localnet.cbor", cbor2.dumps(meta), sync=True)
    _fsync_dir(tmp)
    old = state_dir.with_name(state_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if state_dir.exists():
        state_dir.rename(old)
    tmp.rename(state_dir)
    _fsync_dir(state_dir.parent)
    if old.exists():
        shutil.rmtree(old)
    return written


def load(replica: Replica, state_dir: Path) -> dict[str, bytes] | None:
    """Restore ``replica`` from the checkpoint and journal; returns the keys (None: fresh)."""
    _repair_swap(state_dir)
    meta_path = state_dir / "localnet.cbor"
    if not meta_path.exists():
        return None
    meta = _read_cbor(meta_path)
    if meta.get("format") not in _READABLE:
        raise StateDirError(
            f"{state_dir} was written by an incompatible localnet (format "
            f"{meta.get('format')!r}, expected {FORMAT_VERSION}); use another --state-dir "
            "or delete it"
        )
    modules = _Modules(state_dir / "modules")
    images = {
        image.state["canister_id"]: image
        for image in (
            _load_image(folder, modules) for folder in sorted((state_dir / "canisters").iterdir())
        )
    }
    next_index = meta["next_canister_index"]
    known = {wasm_hash(i.module): i.module for i in images.values() if i.module is not None}
    for record in _replay(state_dir / JOURNAL):
        next_index = _apply(images, record, known)
    replica.next_canister_index = next_index
    for canister_id in list(images):
        canister = images.pop(canister_id).build(replica)  # one canister's pages at a time
        replica.canisters[canister.canister_id] = canister
    return dict(meta["keys"])


def _repair_swap(state_dir: Path) -> None:
    """Finish or undo a checkpoint swap that a crash interrupted."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    old = state_dir.with_name(state_dir.name + ".old")
    if not state_dir.exists() and old.exists():
        old.rename(state_dir)  # crashed between the two renames: the old one is complete
        _fsync_dir(state_dir.parent)
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)


# --- the journal ------------------------------------------------------------------------


@dataclass
class _Persisted:
    """What the checkpoint and journal hold for one canister, to diff against."""

    state: dict[str, Any]
    fingerprint: tuple[Any, ...]  # cheap to compare: state is rebuilt only when it moves
    module_hash: bytes | None
    sandbox: CanisterSandbox | None
    chunks: frozenset[bytes]
    snapshots: frozenset[bytes]
    # The heap as persisted (its non-zero pages by offset), kept only where the
    # rollback mode cannot list written pages (full-copy mode): commits then
    # compare pages against it.
    heap: dict[int, bytes] | None = None


class Journal:
    """Makes every commit point durable before its replies leave (see the module doc).

    Installs itself around ``replica.run_until_idle`` (the commit point) and
    ``replica.on_request_done`` (replies are held until their commit is on
    disk). ``checkpoint`` writes a full checkpoint and starts a new journal.
    """

    def __init__(self, replica: Replica, state_dir: Path, keys: dict[str, bytes]) -> None:
        self.replica = replica
        self.state_dir = state_dir
        self.keys = keys
        self.records = 0  # appended since the process started (a statistic)
        self.bytes_written = 0
        self._held: list[bytes] = []
        self._draining = False
        self._release: Callable[[bytes], None] | None = replica.on_request_done
        self._run = replica.run_until_idle
        replica.on_request_done = self._hold
        replica.run_until_idle = self._run_and_commit  # type: ignore[method-assign]
        self._persisted: dict[bytes, _Persisted] = {}
        self._next_index = replica.next_canister_index
        self.limit = JOURNAL_LIMIT  # journal bytes that trigger the next checkpoint
        self._check_dirty = check_dirty_enabled()
        if not (state_dir / "localnet.cbor").exists():
            self.checkpoint()  # the journal needs a base
        else:
            self._baseline()
            self._fd = self._open_journal()

    def _open_journal(self) -> int:
        fd = os.open(self.state_dir / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(self.state_dir)
        self._size = os.fstat(fd).st_size
        return fd

    def _baseline(self) -> None:
        """The replica now equals the disk: remember it and reset the dirty tracking."""
        self._persisted = {}
        # Modules a replay can find by hash (the checkpoint's, then the
        # journal's own): a record names those instead of repeating them.
        self._modules: set[bytes] = set()
        for canister in self.replica.canisters.values():
            persisted = self._persisted[canister.canister_id] = _snapshot_of(canister)
            if persisted.module_hash is not None:
                self._modules.add(persisted.module_hash)
            if canister.sandbox is not None:
                canister.sandbox.take_delta()
                persisted.heap = _heap_copy(canister.sandbox)
        self._next_index = self.replica.next_canister_index
        self.replica.canisters.take_dirty()  # everything is on disk now

    # --- commit points ------------------------------------------------------------------

    def _run_and_commit(self, max_messages: int = 1_000_000) -> int:
        self._draining = True
        try:
            done = self._run(max_messages)
        finally:
            self._draining = False
        self.commit()
        return done

    def _hold(self, request_id: bytes) -> None:
        self._held.append(request_id)
        if not self._draining:  # completed outside a drain: commit right away
            self.commit()

    def commit(self) -> None:
        """Append what changed since the last commit, fsync, then release held replies."""
        record = self._record()
        if record is not None:
            payload = cbor2.dumps(record)
            header = _HEADER.pack(_MAGIC, len(payload), _digest(payload))
            os.write(self._fd, header + payload)
            os.fsync(self._fd)
            self._size += len(header) + len(payload)
            self.records += 1
            self.bytes_written += len(header) + len(payload)
        held, self._held = self._held, []
        if self._size > self.limit:
            self.checkpoint()
        if self._release is not None:
            for request_id in held:
                self._release(request_id)

    def checkpoint(self) -> None:
        """A full checkpoint; the journal starts empty."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
        written = save(self.replica, self.keys, self.state_dir)
        self.limit = max(JOURNAL_LIMIT, JOURNAL_FACTOR * written)
        self._baseline()
        self._fd = self._open_journal()

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None  # type: ignore[assignment]

    def _record(self) -> dict[str, Any] | None:
        # Only what the canister table heard of since the last commit
        # (localnet.canisters): a drain that touched 3 of 20,000 canisters
        # looks at 3.
        dirty = self.replica.canisters.take_dirty()
        if self._check_dirty:
            self._check_clean(dirty)
        changed, deleted = [], []
        for canister_id in sorted(dirty):
            canister = self.replica.canisters.get(canister_id)
            if canister is None:
                if self._persisted.pop(canister_id, None) is not None:
                    deleted.append(canister_id)
                continue
            entry = self._canister_changes(canister)
            if entry is not None:
                changed.append(entry)
        index = self.replica.next_canister_index
        if not changed and not deleted and index == self._next_index:
            return None
        self._next_index = index
        return {"next_canister_index": index, "deleted": deleted, "canisters": changed}

    def _check_clean(self, dirty: set[bytes]) -> None:
        """``LOCALNET_CHECK_DIRTY=1``: the old full scan; a change outside ``dirty`` is a bug."""
        missed = [
            canister_id
            for canister_id, canister in self.replica.canisters.items()
            if canister_id not in dirty
            and (
                (before := self._persisted.get(canister_id)) is None
                or not _unchanged(canister, before)
            )
        ]
        missed += [c for c in self._persisted if c not in self.replica.canisters and c not in dirty]
        if missed:
            raise DirtyMissed(
                "canisters changed without being marked dirty (their changes would be lost "
                f"after a crash): {', '.join(ids.to_text(c) for c in missed)}; some path "
                "mutates a CanisterState without passing through localnet.canisters"
            )

    def _canister_changes(self, canister: CanisterState) -> dict[str, Any] | None:
        before = self._persisted.get(canister.canister_id)
        if before is not None and _unchanged(canister, before):
            return None  # the common case in a fleet: one test, 10,000 idle canisters
        entry: dict[str, Any] = {"canister_id": canister.canister_id}
        moved = before is None or _fingerprint(canister) != before.fingerprint
        now = _snapshot_of(canister, None if moved or before is None else before.state)
        if before is None or now.state != before.state:
            entry["state"] = now.state
        if before is None or now.module_hash != before.module_hash:
            if now.module_hash is not None and now.module_hash in self._modules:
                entry["module_hash"] = now.module_hash  # 10,000 installs, one copy
            else:
                entry["module"] = canister.wasm_module
                if now.module_hash is not None:
                    self._modules.add(now.module_hash)
        sandbox = canister.sandbox
        if before is None or sandbox is not before.sandbox:
            # Installed, reinstalled, upgraded or uninstalled: all of it.
            entry["memory"] = None if sandbox is None else _full_memory(sandbox)
            now.heap = None if sandbox is None else _heap_copy(sandbox)
        elif sandbox is not None:
            memory = _changed_memory(sandbox, before, now, moved)
            if memory is not None:
                entry["memory"] = memory
        if before is None or now.chunks != before.chunks:
            entry["chunks"] = dict(canister.chunk_store)
        if before is None or now.snapshots != before.snapshots:
            entry["snapshots"] = [_snapshot_meta(s) for s in canister.snapshots.values()]
        self._persisted[canister.canister_id] = now
        return entry if len(entry) > 1 else None


def _unchanged(canister: CanisterState, before: _Persisted) -> bool:
    """Nothing to journal, checked without building anything."""
    sandbox = canister.sandbox
    return (
        sandbox is before.sandbox
        and _fingerprint(canister) == before.fingerprint
        and (sandbox is None or not sandbox.has_delta())
        and canister.module_hash == before.module_hash
        and canister.chunk_store.keys() == before.chunks
        and canister.snapshots.keys() == before.snapshots
    )


def _changed_memory(
    sandbox: CanisterSandbox, before: _Persisted, now: _Persisted, moved: bool
) -> dict[str, Any] | None:
    """The memory entry of a canister whose instance stayed, or None."""
    delta = sandbox.take_delta()
    now.heap = before.heap
    heap_full = False
    if delta.heap is None:
        if before.heap is not None:
            # Full-copy mode: find the changed pages where anything ran
            # (every execution charges cycles, so the fingerprint moved).
            delta.heap = []
            if moved or delta.stable:
                now.heap = _heap_copy(sandbox)
                delta.heap = _changed_pages(before.heap, now.heap or {})
        else:
            # Dirty tracking lost track (a rebuilt instance): all of it, sparsely.
            delta.heap, heap_full = sandbox.capture_sparse().heap, True
    if delta.empty and not heap_full:
        return None
    return _memory_delta(sandbox, delta, heap_full=heap_full)


def _fingerprint(canister: CanisterState) -> tuple[Any, ...]:
    return (
        canister.cycles,
        canister.cycles_burned,
        canister.status,
        canister.open_call_contexts,
        canister.canister_version,
        canister.certified_data,
        canister.global_timer,
        canister.next_snapshot_index,
        len(canister.history),
        canister.settings,
    )


def _snapshot_of(canister: CanisterState, state: dict[str, Any] | None = None) -> _Persisted:
    return _Persisted(
        state=_state_dict(canister) if state is None else state,
        fingerprint=_fingerprint(canister),
        module_hash=canister.module_hash,
        sandbox=canister.sandbox,
        chunks=frozenset(canister.chunk_store),
        snapshots=frozenset(canister.snapshots),
    )


def _heap_copy(sandbox: CanisterSandbox) -> dict[int, bytes] | None:
    if sandbox.rollback_mode != "copy":
        return None
    return dict(sandbox.capture_sparse().heap)


def _changed_pages(old: dict[int, bytes], new: dict[int, bytes]) -> list[tuple[int, bytes]]:
    """The pages that differ between two sparse heaps (a page gone is zero now)."""
    changed = [(offset, page) for offset, page in sorted(new.items()) if old.get(offset) != page]
    changed += [(offset, bytes(len(page))) for offset, page in old.items() if offset not in new]
    return sorted(changed)


def _full_memory(sandbox: CanisterSandbox) -> dict[str, Any]:
    """All of a sandbox's memories, as non-zero pages (replay starts from zeros)."""
    sandbox.take_delta()  # what follows is relative to this image
    image = sandbox.capture_sparse()
    return {
        "heap_size": image.heap_size,
        "heap": image.heap,
        "heap_full": True,
        "stable_size": image.stable_size,
        "stable": image.stable,
        "stable_full": True,
        "globals": image.globals,
    }


def _memory_delta(
    sandbox: CanisterSandbox, delta: MemoryDelta, *, heap_full: bool = False
) -> dict[str, Any]:
    stable, stable_full = delta.stable, False
    if stable is None:
        stable, stable_full = sandbox.capture_sparse().stable, True
    return {
        "heap_size": delta.heap_size,
        "heap": delta.heap,
        "heap_full": heap_full,
        "stable_size": delta.stable_size,
        "stable": stable,
        "stable_full": stable_full,
        "globals": delta.globals,
    }


def _replay(path: Path) -> list[dict[str, Any]]:
    """The complete records of the journal; a torn or damaged tail is cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, pos = [], 0
    while pos + _HEADER.size <= len(data):
        magic, length, digest = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if magic != _MAGIC or len(payload) != length or _digest(payload) != digest:
            break
        records.append(cbor2.loads(payload))
        pos += _HEADER.size + length
    if pos < len(data):
        with path.open("r+b") as f:
            f.truncate(pos)
            os.fsync(f.fileno())
    return records


# --- canister images: the checkpoint plus the journal, before instantiation -------------


class _Sparse:
    """Bytes of a given size held as 4 KiB pages (missing pages are zero)."""

    PAGE = 4096

    def __init__(self, size: int = 0, pages: dict[int, bytes] | None = None) -> None:
        self.size = size
        self.pages: dict[int, bytes] = pages or {}

    def patch(self, size: int, pieces: list[tuple[int, bytes]]) -> None:
        """Resize to ``size`` (cut or zero-extended), then write ``pieces`` over it."""
        if size < self.size:
            last = -(-size // self.PAGE)
            self.pages = {i: p for i, p in self.pages.items() if i < last}
            cut = size % self.PAGE
            if cut and last - 1 in self.pages:
                self.pages[last - 1] = self.pages[last - 1][:cut] + bytes(self.PAGE - cut)
        self.size = size
        for offset, data in pieces:
            self._write(offset, bytes(data))

    def _write(self, offset: int, data: bytes) -> None:
        page, pos = divmod(offset, self.PAGE)
        view = memoryview(data)
        while view:
            take = min(self.PAGE - pos, len(view))
            if pos == 0 and take == self.PAGE:
                self.pages[page] = bytes(view[:take])
            else:
                old = bytearray(self.pages.get(page, bytes(self.PAGE)))
                old[pos : pos + take] = view[:take]
                self.pages[page] = bytes(old)
            view, page, pos = view[take:], page + 1, 0

    def nonzero(self) -> list[tuple[int, bytes]]:
        zero = bytes(self.PAGE)
        return [
            (i * self.PAGE, p[: max(0, min(self.PAGE, self.size - i * self.PAGE))])
            for i, p in sorted(self.pages.items())
            if p != zero and i * self.PAGE < self.size
        ]

    @classmethod
    def read(cls, path: Path) -> _Sparse:
        """A file's bytes; only its data extents are read (its holes are zero)."""
        out = cls(path.stat().st_size)
        with path.open("rb") as f:
            fd = f.fileno()
            for start, end in _data_extents(fd, out.size):
                f.seek(start)
                out._write(start, f.read(end - start))
        out.pages = {i: p for i, p in out.pages.items() if any(p)}
        return out


class _Memory:
    """A memory being rebuilt: a checkpoint file plus journal patches, read only when
    the canister is built, so loading 10,000 canisters never holds all their pages."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.patches: list[tuple[int, list[tuple[int, bytes]]]] = []

    def patch(self, size: int, pieces: list[tuple[int, bytes]]) -> None:
        self.patches.append((size, pieces))

    def build(self) -> _Sparse:
        sparse = _Sparse.read(self.path) if self.path is not None else _Sparse()
        for size, pieces in self.patches:
            sparse.patch(size, pieces)
        return sparse


@dataclass
class _Image:
    state: dict[str, Any]
    module: bytes | None = None
    heap: _Memory | None = None
    stable: _Memory = field(default_factory=_Memory)
    globals: list[int | float] = field(default_factory=list)
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)

    def build(self, replica: Replica) -> CanisterState:
        s = self.state
        canister = CanisterState(
            canister_id=s["canister_id"],
            settings=Settings(**s["settings"]),
            cycles=s["cycles"],
            status=CanisterStatus(s["status"]),
            canister_version=s["canister_version"],
            certified_data=s["certified_data"],
            global_timer=s["global_timer"],
            next_snapshot_index=s["next_snapshot_index"],
            cycles_burned=s["cycles_burned"],
            history=s["history"],
        )
        canister.wasm_module = None if self.module is None else replica.engine.intern(self.module)
        if canister.wasm_module is not None and self.heap is not None:
            # Asleep: 10,000 canisters start without instantiating one; each
            # wakes on its first message (localnet.residency).
            heap, stable = self.heap.build(), self.stable.build()
            image = SparseImage(
                heap.size, heap.nonzero(), stable.size, stable.nonzero(), self.globals
            )
            canister.sandbox = CanisterSandbox.load_sleeping(
                replica.engine, canister.wasm_module, image, rollback=replica.rollback
            )
        canister.chunk_store.update(self.chunks)
        for snapshot in self.snapshots:
            canister.snapshots[snapshot.snapshot_id] = snapshot
        return canister


def _apply(images: dict[bytes, _Image], record: dict[str, Any], modules: dict[bytes, bytes]) -> int:
    """Apply one journal record; ``modules`` (by hash) grows with the modules it carries."""
    for canister_id in record["deleted"]:
        images.pop(canister_id, None)
    for entry in record["canisters"]:
        image = images.get(entry["canister_id"])
        if image is None:
            image = images[entry["canister_id"]] = _Image(state=entry["state"])
        if "state" in entry:
            image.state = entry["state"]
        if "module" in entry:
            image.module = entry["module"]
            if image.module is not None:
                modules[wasm_hash(image.module)] = image.module
        if "module_hash" in entry:
            image.module = modules.get(entry["module_hash"])
            if image.module is None:
                raise StateDirError(
                    f"the journal names module {entry['module_hash'].hex()} that neither the "
                    "checkpoint nor the journal holds; the state directory is damaged"
                )
        if "memory" in entry:
            _apply_memory(image, entry["memory"])
        if "chunks" in entry:
            image.chunks = dict(entry["chunks"])
        if "snapshots" in entry:
            image.snapshots = [Snapshot(**meta) for meta in entry["snapshots"]]
    return int(record["next_canister_index"])


def _apply_memory(image: _Image, memory: dict[str, Any] | None) -> None:
    if memory is None:
        image.heap, image.stable, image.globals = None, _Memory(), []
        return
    # Format 1 records carry a full memory as one piece from offset 0, which
    # overwrites everything; format 2 records say so and list non-zero pages.
    if image.heap is None or memory.get("heap_full"):
        image.heap = _Memory()
    if memory.get("stable_full"):
        image.stable = _Memory()
    image.heap.patch(memory["heap_size"], memory["heap"])
    image.stable.patch(memory["stable_size"], memory["stable"])
    image.globals = list(memory["globals"])


# --- files of a checkpoint --------------------------------------------------------------


def _state_dict(canister: CanisterState) -> dict[str, Any]:
    status = canister.status
    if status == CanisterStatus.STOPPING and canister.open_call_contexts == 0:
        status = CanisterStatus.STOPPED
    return {
        "canister_id": canister.canister_id,
        "settings": asdict(canister.settings),
        "cycles": canister.cycles,
        "status": int(status),
        "canister_version": canister.canister_version,
        "certified_data": canister.certified_data,
        "global_timer": canister.global_timer,
        "next_snapshot_index": canister.next_snapshot_index,
        "cycles_burned": canister.cycles_burned,
        "history": list(canister.history),
    }


def _save_canister(
    canister: CanisterState, folder: Path, modules: Path, written: set[bytes]
) -> int:
    """Write one canister's folder; returns the bytes of its memories, chunks and module."""
    folder.mkdir(parents=True)
    nbytes = 0
    _write_cbor(folder / "state.cbor", _state_dict(canister))
    module_hash = canister.module_hash
    if canister.wasm_module is not None and module_hash is not None:
        if module_hash not in written:  # 10,000 canisters of one module: one file
            _write(modules / f"{module_hash.hex()}.wasm", canister.wasm_module)
            written.add(module_hash)
            nbytes += len(canister.wasm_module)
        _write(folder / "module.sha256", module_hash.hex().encode())
    if canister.sandbox is not None:
        image = canister.sandbox.capture_sparse()
        _write_sparse(folder / "heap.bin", image.heap_size, image.heap)
        _write_sparse(folder / "stable.bin", image.stable_size, image.stable)
        _write_cbor(folder / "globals.cbor", image.globals)
        nbytes += sum(len(data) for _, data in image.heap) + sum(len(d) for _, d in image.stable)
    chunks = folder / "chunks"
    chunks.mkdir()
    for digest, chunk in canister.chunk_store.items():
        _write(chunks / digest.hex(), chunk)
        nbytes += len(chunk)
    if canister.snapshots:
        (folder / "snapshots").mkdir()
        for snapshot in canister.snapshots.values():
            _save_snapshot(snapshot, folder / "snapshots" / snapshot.snapshot_id.hex())
    return nbytes


class _Modules:
    """The modules of a format 2 checkpoint, each read once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[str, bytes] = {}

    def get(self, digest: str) -> bytes:
        module = self._read.get(digest)
        if module is None:
            path = self.folder / f"{digest}.wasm"
            try:
                module = self._read[digest] = path.read_bytes()
            except OSError as exc:
                raise StateDirError(
                    f"cannot read {path}: {exc}; the state directory is damaged"
                ) from exc
        return module


def _load_image(folder: Path, modules: _Modules) -> _Image:
    image = _Image(state=_read_cbor(folder / "state.cbor"))
    if (folder / "module.wasm").exists():  # format 1
        image.module = (folder / "module.wasm").read_bytes()
    elif (folder / "module.sha256").exists():
        image.module = modules.get((folder / "module.sha256").read_text().strip())
    if image.module is not None and (folder / "heap.bin").exists():
        image.heap = _Memory(folder / "heap.bin")
        image.stable = _Memory(folder / "stable.bin")
        image.globals = _read_cbor(folder / "globals.cbor")
    for chunk in sorted((folder / "chunks").iterdir()):
        image.chunks[bytes.fromhex(chunk.name)] = chunk.read_bytes()
    snapshots = folder / "snapshots"
    if snapshots.exists():
        image.snapshots = [_load_snapshot(d) for d in sorted(snapshots.iterdir())]
    return image


def _snapshot_meta(snapshot: Snapshot) -> dict[str, Any]:
    return asdict(snapshot)


def _save_snapshot(snapshot: Snapshot, folder: Path) -> None:
    folder.mkdir(parents=True)
    meta = _snapshot_meta(snapshot)
    _write(folder / "wasm_module.bin", meta.pop("wasm_module"))
    for blob in ("heap", "stable"):
        data = meta.pop(blob)
        _write_sparse(folder / f"{blob}.bin", len(data), sparse_pages(data))
    _write_cbor(folder / "meta.cbor", meta)


def _load_snapshot(folder: Path) -> Snapshot:
    meta = _read_cbor(folder / "meta.cbor")
    for blob in ("wasm_module", "heap", "stable"):
        meta[blob] = (folder / f"{blob}.bin").read_bytes()
    return Snapshot(**meta)


def _write(path: Path, data: bytes, *, sync: bool = False) -> None:
    """A checkpoint file; :func:`_sync_filesystem` makes them all durable at once."""
    with path.open("wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _write_sparse(path: Path, size: int, pages: list[tuple[int, bytes]]) -> None:
    """``size`` bytes, ``pages`` where given and holes (zeros) elsewhere."""
    with path.open("wb") as f:
        for offset, data in pages:
            f.seek(offset)
            f.write(data)
        f.truncate(size)


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of a file that hold data (the rest are holes)."""
    extents: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            extents.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after pos
            return extents
        return [(0, size)]  # SEEK_DATA unsupported: all of it
    return extents


def _write_cbor(path: Path, value: Any) -> None:
    _write(path, cbor2.dumps(value))


def _read_cbor(path: Path) -> Any:
    try:
        return cbor2.loads(path.read_bytes())
    except (OSError, cbor2.CBORDecodeError) as exc:
        raise StateDirError(f"cannot read {path}: {exc}; the state directory is damaged") from exc


_libc = ctypes.CDLL(None, use_errno=True)


def _sync_filesystem(path: Path) -> None:
    """Make every file and directory written on ``path``'s file system durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(_libc, "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()
