"""One canister as the snapshot kinds see it: management-canister calls through the limits.

Every call goes through the network's :class:`~replicator.calls.CallRunner`
(retries ⊃ limits ⊃ metrics), never to the agent directly.  Management calls
are update calls to ``aaaaa-aa`` routed by the canister they are about; the
certified reads (controllers, module hash, subnet) are ``read_state``
requests and cost no cycles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from canister_iface import errors as ic
from canister_iface.management import ManagementClient
from canister_iface.management_types import (
    CanisterStatus,
    Snapshot,
    SnapshotMemory,
    SnapshotMetadata,
    SnapshotMetadataUpload,
    SnapshotSlice,
    SnapshotWasmChunk,
    UploadTarget,
)
from canister_iface.principal import Principal
from replicator.calls import CallCost
from replicator.flow import Calls
from replicator.job import CanisterRef

T = TypeVar("T")

# The IC keeps at most this many snapshots per canister (interface spec 0.66).
MAX_SNAPSHOTS = 10
SNAPSHOT_NOT_FOUND = "IC0305"


def snapshot_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the snapshot asked for does not exist (any more)."""
    return isinstance(exc, ic.IcError) and exc.error_code == SNAPSHOT_NOT_FOUND


def hex_id(snapshot_id: bytes) -> str:
    return snapshot_id.hex()


class SnapshotCanister:
    """The management-canister calls about one canister, through the limits and retries."""

    def __init__(self, ref: CanisterRef, calls: Calls) -> None:
        self.ref = ref
        self.principal = Principal.from_text(ref.canister_id)
        self.agent = calls.agent_for(ref.network)
        self.runner = calls.runner_for(ref.network)
        self.mgmt = ManagementClient(self.agent)

    def __str__(self) -> str:
        return str(self.ref)

    @property
    def me(self) -> Principal:
        """Who calls: the identity of the network's agent."""
        return self.agent.identity.principal

    async def _call(
        self,
        method: str,
        perform: Callable[[], Awaitable[T]],
        *,
        cost: CallCost = "update",
        nbytes: int = 0,
    ) -> T:
        return await self.runner.call(
            self.ref.canister_id,
            method,
            perform,
            cost=cost,
            nbytes=nbytes,
            what=f"{method} on {self.ref}",
        )

    # -- certified reads (anyone may make them)

    async def controllers(self) -> list[Principal]:
        return await self._call(
            "read_state controllers", lambda: self.agent.controllers(self.principal), cost="query"
        )

    async def module_hash(self) -> bytes | None:
        return await self._call(
            "read_state module_hash", lambda: self.agent.module_hash(self.principal), cost="query"
        )

    async def subnet(self) -> bytes:
        return await self._call(
            "read_state subnet", lambda: self.agent.subnet_id(self.principal), cost="query"
        )

    # -- lifecycle (controllers)

    async def status(self) -> CanisterStatus:
        return await self._call(
            "canister_status", lambda: self.mgmt.canister_status(self.principal)
        )

    async def stop(self) -> None:
        await self._call("stop_canister", lambda: self.mgmt.stop_canister(self.principal))

    async def start(self) -> None:
        await self._call("start_canister", lambda: self.mgmt.start_canister(self.principal))

    # -- snapshots

    async def snapshots(self) -> list[Snapshot]:
        """The canister's snapshots, oldest first (controllers and snapshot viewers)."""
        found = await self._call(
            "list_canister_snapshots", lambda: self.mgmt.list_canister_snapshots(self.principal)
        )
        return sorted(found, key=lambda s: (s.taken_at_timestamp, s.id))

    async def take(self, replace: bytes | None) -> Snapshot:
        return await self._call(
            "take_canister_snapshot",
            lambda: self.mgmt.take_canister_snapshot(self.principal, replace_snapshot=replace),
        )

    async def delete(self, snapshot_id: bytes) -> None:
        await self._call(
            "delete_canister_snapshot",
            lambda: self.mgmt.delete_canister_snapshot(self.principal, snapshot_id),
        )

    async def load(self, snapshot_id: bytes) -> None:
        await self._call(
            "load_canister_snapshot",
            lambda: self.mgmt.load_canister_snapshot(self.principal, snapshot_id),
        )

    async def metadata(self, snapshot_id: bytes) -> SnapshotMetadata:
        return await self._call(
            "read_canister_snapshot_metadata",
            lambda: self.mgmt.read_canister_snapshot_metadata(self.principal, snapshot_id),
        )

    async def read(
        self, snapshot_id: bytes, memory: SnapshotMemory, offset: int, size: int
    ) -> bytes:
        """``size`` bytes (≤ 2,000,000) at ``offset`` of one memory of a snapshot."""
        piece = SnapshotSlice(memory, offset, size)
        return await self._call(
            "read_canister_snapshot_data",
            lambda: self.mgmt.read_canister_snapshot_data(self.principal, snapshot_id, piece),
            nbytes=size,
        )

    async def read_wasm_chunk(self, snapshot_id: bytes, chunk_hash: bytes) -> bytes:
        return await self._call(
            "read_canister_snapshot_data",
            lambda: self.mgmt.read_canister_snapshot_data(
                self.principal, snapshot_id, SnapshotWasmChunk(chunk_hash)
            ),
            nbytes=1024 * 1024,
        )

    async def upload_metadata(
        self, metadata: SnapshotMetadataUpload, replace: bytes | None
    ) -> bytes:
        return await self._call(
            "upload_canister_snapshot_metadata",
            lambda: self.mgmt.upload_canister_snapshot_metadata(
                self.principal, metadata, replace_snapshot=replace
            ),
        )

    async def upload(
        self, snapshot_id: bytes, memory: SnapshotMemory, offset: int, data: bytes
    ) -> None:
        await self._call(
            "upload_canister_snapshot_data",
            lambda: self.mgmt.upload_canister_snapshot_data(
                self.principal, snapshot_id, UploadTarget(memory, offset), data
            ),
            nbytes=len(data),
        )

    async def upload_wasm_chunk(self, snapshot_id: bytes, data: bytes) -> None:
        await self._call(
            "upload_canister_snapshot_data",
            lambda: self.mgmt.upload_canister_snapshot_data(
                self.principal, snapshot_id, UploadTarget("wasm_chunk"), data
            ),
            nbytes=len(data),
        )
