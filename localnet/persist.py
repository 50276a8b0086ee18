"""``--state-dir``: canisters, memories, snapshots, cycles and keys survive a restart.

Layout (one directory per canister, raw memories as files so a 1 GiB heap is
not pushed through CBOR)::

    state-dir/
      localnet.cbor                 format version, keys, next canister index
      canisters/<canister id>/
        state.cbor                  settings, cycles, status, version, timer, ...
        module.wasm heap.bin stable.bin globals.cbor
        chunks/<sha256 hex>
        snapshots/<snapshot id hex>/{meta.cbor,module.wasm,heap.bin,stable.bin}

The state is written to ``state-dir.tmp`` and swapped in with renames, so a
crash while saving leaves the previous state intact. Messages still queued or
calls still open at shutdown are not saved: a clean stop drains them first.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cbor2

from localnet import ids
from localnet.replica import Replica
from localnet.sandbox import CanisterSandbox
from localnet.state import CanisterState, CanisterStatus, Settings, Snapshot

FORMAT_VERSION = 1


class StateDirError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


def save(replica: Replica, keys: dict[str, bytes], state_dir: Path) -> None:
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "canisters").mkdir(parents=True)
    _write_cbor(
        tmp / "localnet.cbor",
        {
            "format": FORMAT_VERSION,
            "keys": keys,
            "next_canister_index": replica.next_canister_index,
        },
    )
    for canister in replica.canisters.values():
        _save_canister(canister, tmp / "canisters" / ids.to_text(canister.canister_id))
    old = state_dir.with_name(state_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if state_dir.exists():
        state_dir.rename(old)
    tmp.rename(state_dir)
    if old.exists():
        shutil.rmtree(old)


def load(replica: Replica, state_dir: Path) -> dict[str, bytes] | None:
    """Restore ``replica`` from ``state_dir``; returns the saved keys (None: fresh dir)."""
    meta_path = state_dir / "localnet.cbor"
    if not meta_path.exists():
        return None
    meta = _read_cbor(meta_path)
    if meta.get("format") != FORMAT_VERSION:
        raise StateDirError(
            f"{state_dir} was written by an incompatible localnet (format "
            f"{meta.get('format')!r}, expected {FORMAT_VERSION}); use another --state-dir "
            "or delete it"
        )
    replica.next_canister_index = meta["next_canister_index"]
    for folder in sorted((state_dir / "canisters").iterdir()):
        canister = _load_canister(replica, folder)
        replica.canisters[canister.canister_id] = canister
    return dict(meta["keys"])


def _save_canister(canister: CanisterState, folder: Path) -> None:
    folder.mkdir(parents=True)
    status = canister.status
    if status == CanisterStatus.STOPPING and canister.open_call_contexts == 0:
        status = CanisterStatus.STOPPED
    _write_cbor(
        folder / "state.cbor",
        {
            "canister_id": canister.canister_id,
            "settings": asdict(canister.settings),
            "cycles": canister.cycles,
            "status": int(status),
            "canister_version": canister.canister_version,
            "certified_data": canister.certified_data,
            "global_timer": canister.global_timer,
            "next_snapshot_index": canister.next_snapshot_index,
            "cycles_burned": canister.cycles_burned,
            "history": canister.history,
        },
    )
    if canister.wasm_module is not None:
        (folder / "module.wasm").write_bytes(canister.wasm_module)
    if canister.sandbox is not None:
        image = canister.sandbox.capture()
        (folder / "heap.bin").write_bytes(image.heap)
        (folder / "stable.bin").write_bytes(image.stable)
        _write_cbor(folder / "globals.cbor", image.globals)
    chunks = folder / "chunks"
    chunks.mkdir()
    for digest, chunk in canister.chunk_store.items():
        (chunks / digest.hex()).write_bytes(chunk)
    for snapshot in canister.snapshots.values():
        _save_snapshot(snapshot, folder / "snapshots" / snapshot.snapshot_id.hex())


def _load_canister(replica: Replica, folder: Path) -> CanisterState:
    state = _read_cbor(folder / "state.cbor")
    canister = CanisterState(
        canister_id=state["canister_id"],
        settings=Settings(**state["settings"]),
        cycles=state["cycles"],
        status=CanisterStatus(state["status"]),
        canister_version=state["canister_version"],
        certified_data=state["certified_data"],
        global_timer=state["global_timer"],
        next_snapshot_index=state["next_snapshot_index"],
        cycles_burned=state["cycles_burned"],
        history=state["history"],
    )
    module = folder / "module.wasm"
    if module.exists():
        canister.wasm_module = module.read_bytes()
        if (folder / "heap.bin").exists():
            canister.sandbox = CanisterSandbox.load(
                replica.engine,
                canister.wasm_module,
                heap=(folder / "heap.bin").read_bytes(),
                stable=(folder / "stable.bin").read_bytes(),
                globals=_read_cbor(folder / "globals.cbor"),
                rollback=replica.rollback,
            )
    for chunk in sorted((folder / "chunks").iterdir()):
        canister.chunk_store[bytes.fromhex(chunk.name)] = chunk.read_bytes()
    snapshots = folder / "snapshots"
    if snapshots.exists():
        for snap_dir in sorted(snapshots.iterdir()):
            snapshot = _load_snapshot(snap_dir)
            canister.snapshots[snapshot.snapshot_id] = snapshot
    return canister


def _save_snapshot(snapshot: Snapshot, folder: Path) -> None:
    folder.mkdir(parents=True)
    meta = asdict(snapshot)
    for blob in ("wasm_module", "heap", "stable"):
        (folder / f"{blob}.bin").write_bytes(meta.pop(blob))
    _write_cbor(folder / "meta.cbor", meta)


def _load_snapshot(folder: Path) -> Snapshot:
    meta = _read_cbor(folder / "meta.cbor")
    for blob in ("wasm_module", "heap", "stable"):
        meta[blob] = (folder / f"{blob}.bin").read_bytes()
    return Snapshot(**meta)


def _write_cbor(path: Path, value: Any) -> None:
    path.write_bytes(cbor2.dumps(value))


def _read_cbor(path: Path) -> Any:
    try:
        return cbor2.loads(path.read_bytes())
    except (OSError, cbor2.CBORDecodeError) as exc:
        raise StateDirError(f"cannot read {path}: {exc}; the state directory is damaged") from exc
