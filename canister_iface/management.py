"""Typed async client of the management canister (``aaaaa-aa``).

    mgmt = ManagementClient(agent)
    canister = await mgmt.provisional_create_canister_with_cycles(amount=10**13)
    await mgmt.install_code(canister, wasm, arg=init_arg)
    status = await mgmt.canister_status(canister)

Every call is an update call to ``aaaaa-aa`` whose *effective canister id*
is the canister it is about, which is how the IC routes it to that
canister's subnet.  Only controllers may call most methods; the IC rejects
others (``AccessDenied``).  Arguments and results are the dataclasses of
:mod:`canister_iface.management_types`; Candid stays inside this module.

Large transfers are cut to the IC's limits here: modules that do not fit in
one ingress message go through the Wasm chunk store (1 MiB chunks), and
snapshot memories are read and uploaded in slices of at most 2,000,000
bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Literal

from canister_iface.caller import Caller
from canister_iface.candid_value import (
    EMPTY_ARGS,
    Rec,
    as_rec,
    decode_single,
    decode_values,
    encode_value,
)
from canister_iface.errors import ProtocolError
from canister_iface.management_types import (
    MAX_SNAPSHOT_SLICE,
    MAX_WASM_CHUNK,
    CanisterRef,
    CanisterSettings,
    CanisterStatus,
    InstallMode,
    Snapshot,
    SnapshotData,
    SnapshotMemory,
    SnapshotMetadata,
    SnapshotMetadataUpload,
    SnapshotSlice,
    UploadTarget,
)
from canister_iface.principal import Principal
from ic_did import management

__all__ = ["DIRECT_INSTALL_LIMIT", "Caller", "ManagementClient"]

MANAGEMENT_CANISTER = b""
INGRESS_LIMIT = 2 * 1024 * 1024
# Module + argument bytes above which install_code goes through the chunk
# store.  The margin covers the envelope (sender, signature, delegations) and
# the Candid framing, so a direct install never hits the 2 MiB ingress limit.
DIRECT_INSTALL_LIMIT = INGRESS_LIMIT - 64 * 1024
# provisional_create_canister_with_cycles names no canister; the HTTP call
# still needs an effective canister id that routes to a subnet.  A local
# replica has one subnet whose range starts at canister index 0.
FIRST_CANISTER_ID = bytes(8) + b"\x01\x01"
# The argument types of every method, from ic_did/ic.did (shared with localnet).
_IC = management()


def _raw(canister: CanisterRef) -> bytes:
    return Principal.of(canister).raw


def _text(canister: CanisterRef) -> str:
    return Principal.of(canister).to_text()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class ManagementClient:
    """The management canister's methods as typed coroutines."""

    def __init__(self, agent: Caller) -> None:
        self.agent = agent

    # ------------------------------------------------------------------ plumbing

    async def _call(self, method: str, target: bytes, arg: object) -> bytes:
        (arg_type,) = _IC.method(method).args
        return await self.agent.update(
            MANAGEMENT_CANISTER,
            method,
            encode_value(arg_type, arg),
            effective_canister_id=target,
        )

    async def _call_unit(self, method: str, target: bytes, arg: object) -> None:
        reply = await self._call(method, target, arg)
        decode_values(reply, method)  # a reply that is not Candid is still a protocol error

    async def _call_rec(self, method: str, target: bytes, arg: object) -> Rec:
        reply = await self._call(method, target, arg)
        return as_rec(decode_single(reply, method), method)

    # ------------------------------------------------------------------ creation

    async def provisional_create_canister_with_cycles(
        self,
        *,
        amount: int | None = None,
        settings: CanisterSettings | None = None,
        specified_id: CanisterRef | None = None,
        effective_canister_id: CanisterRef | None = None,
    ) -> Principal:
        """Create a canister with ``amount`` cycles out of thin air (local networks only).

        Mainnet refuses this method; create canisters there through the cycles
        ledger (:mod:`canister_iface.cycles_ledger`).
        """
        if effective_canister_id is not None:
            target = _raw(effective_canister_id)
        elif specified_id is not None:
            target = _raw(specified_id)
        else:
            target = FIRST_CANISTER_ID
        arg = {
            "amount": [] if amount is None else [amount],
            "settings": [] if settings is None else [settings.to_candid()],
            "specified_id": [] if specified_id is None else [_raw(specified_id)],
            "sender_canister_version": [],
        }
        method = "provisional_create_canister_with_cycles"
        rec = await self._call_rec(method, target, arg)
        return rec.principal("canister_id")

    async def provisional_top_up_canister(self, canister_id: CanisterRef, amount: int) -> None:
        """Add ``amount`` cycles out of thin air (local networks only)."""
        arg = {"canister_id": _raw(canister_id), "amount": amount}
        await self._call_unit("provisional_top_up_canister", _raw(canister_id), arg)

    # ------------------------------------------------------------------ settings

    async def update_settings(self, canister_id: CanisterRef, settings: CanisterSettings) -> None:
        """Change the settings that ``settings`` sets; the others stay as they are."""
        arg = {
            "canister_id": _raw(canister_id),
            "settings": settings.to_candid(),
            "sender_canister_version": [],
        }
        await self._call_unit("update_settings", _raw(canister_id), arg)

    async def set_controllers(
        self, canister_id: CanisterRef, controllers: Iterable[CanisterRef]
    ) -> None:
        """Make ``controllers`` exactly the canister's controllers (duplicates dropped)."""
        await self.update_settings(canister_id, CanisterSettings.with_controllers(controllers))

    async def canister_status(self, canister_id: CanisterRef) -> CanisterStatus:
        rec = await self._call_rec("canister_status", _raw(canister_id), self._id(canister_id))
        return CanisterStatus.from_candid(rec)

    # ------------------------------------------------------------------- install

    async def install_code(
        self,
        canister_id: CanisterRef,
        wasm_module: bytes,
        *,
        arg: bytes = EMPTY_ARGS,
        mode: InstallMode | None = None,
    ) -> None:
        """Install ``wasm_module`` (``install`` mode unless ``mode`` says otherwise).

        Modules that do not fit into one ingress message together with
        ``arg`` are installed through the chunk store (:meth:`install_chunked`).
        """
        mode = mode or InstallMode.install()
        if len(wasm_module) + len(arg) > DIRECT_INSTALL_LIMIT:
            await self.install_chunked(canister_id, wasm_module, arg=arg, mode=mode)
            return
        payload = {
            "mode": mode.to_candid(),
            "canister_id": _raw(canister_id),
            "wasm_module": wasm_module,
            "arg": arg,
            "sender_canister_version": [],
        }
        await self._call_unit("install_code", _raw(canister_id), payload)

    async def reinstall_code(
        self, canister_id: CanisterRef, wasm_module: bytes, *, arg: bytes = EMPTY_ARGS
    ) -> None:
        """Replace code and state: everything the canister stored is lost."""
        await self.install_code(canister_id, wasm_module, arg=arg, mode=InstallMode.reinstall())

    async def upgrade_code(
        self,
        canister_id: CanisterRef,
        wasm_module: bytes,
        *,
        arg: bytes = EMPTY_ARGS,
        wasm_memory_persistence: Literal["keep", "replace"] | None = None,
        skip_pre_upgrade: bool | None = None,
    ) -> None:
        """Upgrade; Motoko canisters with enhanced orthogonal persistence need ``"keep"``."""
        mode = InstallMode.upgrade(
            skip_pre_upgrade=skip_pre_upgrade, wasm_memory_persistence=wasm_memory_persistence
        )
        await self.install_code(canister_id, wasm_module, arg=arg, mode=mode)

    async def install_chunked(
        self,
        canister_id: CanisterRef,
        wasm_module: bytes,
        *,
        arg: bytes = EMPTY_ARGS,
        mode: InstallMode | None = None,
        store_canister: CanisterRef | None = None,
        chunk_size: int = MAX_WASM_CHUNK,
    ) -> None:
        """Install a large module: upload its chunks, install from them, clear the store.

        Chunks the store already holds (from an interrupted earlier attempt)
        are not uploaded again.  The store is cleared only after a successful
        install, so a retry after a failure reuses what was uploaded.
        ``store_canister`` (default: the target) must be on the same subnet
        and controlled by the caller.
        """
        if not 0 < chunk_size <= MAX_WASM_CHUNK:
            raise ValueError(f"chunk_size must be in 1..{MAX_WASM_CHUNK} bytes, got {chunk_size}")
        store = canister_id if store_canister is None else store_canister
        chunks = [wasm_module[i : i + chunk_size] for i in range(0, len(wasm_module), chunk_size)]
        hashes = [sha256(c) for c in chunks]
        stored = set(await self.stored_chunks(store))
        for chunk, chunk_hash in zip(chunks, hashes, strict=True):
            if chunk_hash not in stored:
                await self.upload_chunk(store, chunk)
                stored.add(chunk_hash)
        await self.install_chunked_code(
            canister_id,
            hashes,
            sha256(wasm_module),
            arg=arg,
            mode=mode or InstallMode.install(),
            store_canister=store_canister,
        )
        await self.clear_chunk_store(store)

    async def upload_chunk(self, canister_id: CanisterRef, chunk: bytes) -> bytes:
        """Store ``chunk`` (at most 1 MiB) in the canister's chunk store; returns its hash."""
        if len(chunk) > MAX_WASM_CHUNK:
            raise ValueError(
                f"a chunk may hold at most {MAX_WASM_CHUNK} bytes, got {len(chunk)}: cut the "
                "module into smaller chunks"
            )
        arg = {"canister_id": _raw(canister_id), "chunk": chunk}
        rec = await self._call_rec("upload_chunk", _raw(canister_id), arg)
        got = rec.blob("hash")
        if got != sha256(chunk):
            raise ProtocolError(
                f"upload_chunk: the IC answered hash {got.hex()} for a chunk whose SHA-256 is "
                f"{sha256(chunk).hex()}"
            )
        return got

    async def stored_chunks(self, canister_id: CanisterRef) -> list[bytes]:
        """Hashes of the chunks in the canister's chunk store."""
        reply = await self._call("stored_chunks", _raw(canister_id), self._id(canister_id))
        items = decode_single(reply, "stored_chunks")
        if not isinstance(items, list):
            raise ProtocolError(f"stored_chunks: expected a vector, got {type(items).__name__}")
        return [as_rec(item, "stored_chunks").blob("hash") for item in items]

    async def clear_chunk_store(self, canister_id: CanisterRef) -> None:
        await self._call_unit("clear_chunk_store", _raw(canister_id), self._id(canister_id))

    async def install_chunked_code(
        self,
        target_canister: CanisterRef,
        chunk_hashes: Sequence[bytes],
        wasm_module_hash: bytes,
        *,
        arg: bytes = EMPTY_ARGS,
        mode: InstallMode | None = None,
        store_canister: CanisterRef | None = None,
    ) -> None:
        """Install the module assembled from stored chunks (in ``chunk_hashes`` order)."""
        payload = {
            "mode": (mode or InstallMode.install()).to_candid(),
            "target_canister": _raw(target_canister),
            "store_canister": [] if store_canister is None else [_raw(store_canister)],
            "chunk_hashes_list": [{"hash": h} for h in chunk_hashes],
            "wasm_module_hash": wasm_module_hash,
            "arg": arg,
            "sender_canister_version": [],
        }
        await self._call_unit("install_chunked_code", _raw(target_canister), payload)

    async def uninstall_code(self, canister_id: CanisterRef) -> None:
        """Remove code and state; the canister keeps its id, cycles and settings."""
        arg = {"canister_id": _raw(canister_id), "sender_canister_version": []}
        await self._call_unit("uninstall_code", _raw(canister_id), arg)

    # ----------------------------------------------------------------- lifecycle

    async def stop_canister(self, canister_id: CanisterRef) -> None:
        """Stop the canister; returns once it has stopped (open calls finished)."""
        await self._by_id("stop_canister", canister_id)

    async def start_canister(self, canister_id: CanisterRef) -> None:
        await self._by_id("start_canister", canister_id)

    async def delete_canister(self, canister_id: CanisterRef) -> None:
        """Delete a stopped canister; its remaining cycles are lost."""
        await self._by_id("delete_canister", canister_id)

    async def deposit_cycles(self, canister_id: CanisterRef) -> None:
        """Deposit the cycles attached to the call.

        Only canisters can attach cycles, so the IC's ingress filter refuses
        this method from an agent ("Only canisters can call ic00 method
        deposit_cycles"); it is here for callers that relay through a canister
        (a wallet or proxy).  Top up from an agent with the cycles ledger's
        ``withdraw``, or ``provisional_top_up_canister`` locally.
        """
        await self._by_id("deposit_cycles", canister_id)

    async def _by_id(self, method: str, canister_id: CanisterRef) -> None:
        await self._call_unit(method, _raw(canister_id), self._id(canister_id))

    @staticmethod
    def _id(canister_id: CanisterRef) -> dict[str, bytes]:
        return {"canister_id": _raw(canister_id)}

    # ----------------------------------------------------------------- snapshots

    async def take_canister_snapshot(
        self,
        canister_id: CanisterRef,
        *,
        replace_snapshot: bytes | None = None,
        uninstall_code: bool | None = None,
    ) -> Snapshot:
        """Snapshot the canister (stop it first for a consistent image)."""
        arg = {
            "canister_id": _raw(canister_id),
            "replace_snapshot": [] if replace_snapshot is None else [replace_snapshot],
            "uninstall_code": [] if uninstall_code is None else [uninstall_code],
            "sender_canister_version": [],
        }
        rec = await self._call_rec("take_canister_snapshot", _raw(canister_id), arg)
        return Snapshot.from_candid(rec)

    async def load_canister_snapshot(self, canister_id: CanisterRef, snapshot_id: bytes) -> None:
        arg = {
            "canister_id": _raw(canister_id),
            "snapshot_id": snapshot_id,
            "sender_canister_version": [],
        }
        await self._call_unit("load_canister_snapshot", _raw(canister_id), arg)

    async def list_canister_snapshots(self, canister_id: CanisterRef) -> list[Snapshot]:
        method = "list_canister_snapshots"
        reply = await self._call(method, _raw(canister_id), self._id(canister_id))
        items = decode_single(reply, method)
        if not isinstance(items, list):
            raise ProtocolError(f"{method}: expected a vector, got {type(items).__name__}")
        return [Snapshot.from_candid(as_rec(item, method)) for item in items]

    async def delete_canister_snapshot(self, canister_id: CanisterRef, snapshot_id: bytes) -> None:
        arg = {"canister_id": _raw(canister_id), "snapshot_id": snapshot_id}
        await self._call_unit("delete_canister_snapshot", _raw(canister_id), arg)

    async def read_canister_snapshot_metadata(
        self, canister_id: CanisterRef, snapshot_id: bytes
    ) -> SnapshotMetadata:
        arg = {"canister_id": _raw(canister_id), "snapshot_id": snapshot_id}
        rec = await self._call_rec("read_canister_snapshot_metadata", _raw(canister_id), arg)
        return SnapshotMetadata.from_candid(rec)

    async def read_canister_snapshot_data(
        self, canister_id: CanisterRef, snapshot_id: bytes, kind: SnapshotData
    ) -> bytes:
        """One slice (at most 2,000,000 bytes) or one chunk-store chunk of a snapshot."""
        arg = {
            "canister_id": _raw(canister_id),
            "snapshot_id": snapshot_id,
            "kind": kind.to_candid(),
        }
        method = "read_canister_snapshot_data"
        rec = await self._call_rec(method, _raw(canister_id), arg)
        chunk = rec.blob("chunk")
        if isinstance(kind, SnapshotSlice) and len(chunk) != kind.size:
            raise ProtocolError(
                f"{method}: asked for {kind.size} bytes of {kind.memory} at {kind.offset}, got "
                f"{len(chunk)} (canister {_text(canister_id)})"
            )
        return chunk

    async def stream_snapshot_memory(
        self,
        canister_id: CanisterRef,
        snapshot_id: bytes,
        memory: SnapshotMemory,
        *,
        size: int | None = None,
        slice_size: int = MAX_SNAPSHOT_SLICE,
        start: int = 0,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Yield ``(offset, bytes)`` slices of a whole memory, from ``start`` to its end.

        ``size`` defaults to the memory's size in the snapshot's metadata
        (one extra call).  Slices are read one after another; resume an
        interrupted download with ``start``.
        """
        if not 0 < slice_size <= MAX_SNAPSHOT_SLICE:
            raise ValueError(f"slice_size must be in 1..{MAX_SNAPSHOT_SLICE:,}, got {slice_size}")
        if size is None:
            metadata = await self.read_canister_snapshot_metadata(canister_id, snapshot_id)
            size = metadata.size_of(memory)
        offset = start
        while offset < size:
            length = min(slice_size, size - offset)
            piece = SnapshotSlice(memory, offset, length)
            yield offset, await self.read_canister_snapshot_data(canister_id, snapshot_id, piece)
            offset += length

    async def read_snapshot_memory(
        self,
        canister_id: CanisterRef,
        snapshot_id: bytes,
        memory: SnapshotMemory,
        *,
        size: int | None = None,
    ) -> bytes:
        """A whole memory of a snapshot in one ``bytes`` (use the stream for big ones)."""
        parts = [
            data
            async for _, data in self.stream_snapshot_memory(
                canister_id, snapshot_id, memory, size=size
            )
        ]
        return b"".join(parts)

    async def upload_canister_snapshot_metadata(
        self,
        canister_id: CanisterRef,
        metadata: SnapshotMetadataUpload,
        *,
        replace_snapshot: bytes | None = None,
    ) -> bytes:
        """Create a snapshot from metadata (its data follows); returns the new snapshot id."""
        arg = {
            "canister_id": _raw(canister_id),
            "replace_snapshot": [] if replace_snapshot is None else [replace_snapshot],
            **metadata.to_candid(),
        }
        rec = await self._call_rec(
            "upload_canister_snapshot_metadata",
            _raw(canister_id),
            arg,
        )
        return rec.blob("snapshot_id")

    async def upload_canister_snapshot_data(
        self, canister_id: CanisterRef, snapshot_id: bytes, target: UploadTarget, chunk: bytes
    ) -> None:
        """Write ``chunk`` (at most 2,000,000 bytes) into an uploaded snapshot."""
        if len(chunk) > MAX_SNAPSHOT_SLICE:
            raise ValueError(
                f"upload at most {MAX_SNAPSHOT_SLICE:,} bytes per call, got {len(chunk):,}"
            )
        arg = {
            "canister_id": _raw(canister_id),
            "snapshot_id": snapshot_id,
            "kind": target.to_candid(),
            "chunk": chunk,
        }
        await self._call_unit("upload_canister_snapshot_data", _raw(canister_id), arg)

    async def upload_snapshot_memory(
        self,
        canister_id: CanisterRef,
        snapshot_id: bytes,
        memory: SnapshotMemory,
        data: bytes,
        *,
        start: int = 0,
        slice_size: int = MAX_SNAPSHOT_SLICE,
    ) -> None:
        """Upload a whole memory (from ``start``, to resume) in slices of ``slice_size``."""
        if not 0 < slice_size <= MAX_SNAPSHOT_SLICE:
            raise ValueError(f"slice_size must be in 1..{MAX_SNAPSHOT_SLICE:,}, got {slice_size}")
        for offset in range(start, len(data), slice_size):
            await self.upload_canister_snapshot_data(
                canister_id,
                snapshot_id,
                UploadTarget(memory, offset),
                data[offset : offset + slice_size],
            )
