"""The node: the replicas behind the HTTP interface (implements ``NodeApi``).

One HTTP endpoint serves every subnet, as PocketIC's gateway does: a request
goes to the subnet that hosts its effective canister id (``read_state`` on
``/api/v3/subnet/<id>``: that subnet). Each subnet answers with its own
certificates (a delegation from the root subnet for every subnet but the
root) and signs queries with its own node's key. Every replica operation runs
on the one execution thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from localnet import ids
from localnet.certification import CanisterView, RequestStatus, StateView, state_tree
from localnet.errors import Reject
from localnet.execution import Reply, Response
from localnet.executor import ExecutionThread
from localnet.fabric import Fabric
from localnet.management import effective_canister_id
from localnet.node_api import Forbidden, Request
from localnet.replica import Replica
from localnet.state import CanisterState
from localnet.subnets import Subnet, Topology, canister_range

# The root subnet's canister range (subnet ``i`` hosts ``localnet.subnets.canister_range(i)``).
CANISTER_RANGES = [canister_range(0)]
IMPL_VERSION = "localnet-0.1.0"


class Node:
    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.topology: Topology = fabric.topology
        self.executor = ExecutionThread(fabric)
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        for subnet in self.topology:
            subnet.replica.on_request_done = self._request_done
            subnet.replica.data_certificate = self._data_certificate_for(subnet)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.executor.start_timers()

    async def close(self) -> None:
        await self.executor.close()

    # --- NodeApi --------------------------------------------------------------------

    @property
    def root_key(self) -> bytes:
        return self.topology.root.key.public_key_der

    async def status(self) -> dict[str, Any]:
        return {
            "ic_api_version": "0.18.0",
            "impl_version": IMPL_VERSION,
            "root_key": self.root_key,
            "replica_health_status": "healthy",
        }

    async def submit_call(self, request: Request) -> None:
        subnet = self.subnet_for_call(request)
        await self.executor.run(subnet.replica.submit_ingress, request)
        self.executor.drain_soon()

    def subnet_for_call(self, request: Request) -> Subnet:
        """Where an update call runs: a creation with ``specified_id`` on the subnet
        hosting that id (as PocketIC does), anything else by its effective canister id."""
        if request.canister_id == ids.MANAGEMENT_CANISTER and (
            request.method_name == "provisional_create_canister_with_cycles"
        ):
            specified = effective_canister_id(request.method_name, request.arg)
            if specified is not None and (hosting := self.topology.hosting(specified)):
                return hosting
        return self.topology.for_effective_id(request.effective_canister_id)

    async def wait_for(self, request_id: bytes, timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(request_id, []).append(future)
        if await self.executor.run(self._is_done, request_id):
            return True
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(request_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(request_id, None)
        return True

    async def read_state(
        self, sender: bytes, effective_canister_id: bytes, paths: list[list[bytes]]
    ) -> bytes:
        subnet = self.topology.for_effective_id(effective_canister_id)
        view = await self.executor.run(
            self._state_view, subnet, sender, effective_canister_id, paths
        )
        return subnet.certifier().certificate(state_tree(view, paths))

    async def query(self, request: Request) -> dict[str, Any]:
        subnet = self.topology.for_effective_id(request.effective_canister_id)
        response: Response = await self.executor.run(subnet.replica.query, request)
        if isinstance(response, Reply):
            body: dict[str, Any] = {"status": "replied", "reply": {"arg": response.data}}
        else:
            body = {
                "status": "rejected",
                "reject_code": int(response.code),
                "reject_message": response.message,
            }
            if response.error_code:  # optional in the spec: absent for canister rejects
                body["error_code"] = response.error_code
        timestamp = subnet.replica.clock.peek_ns()
        signature = subnet.signer.sign_query_response(request.request_id, body, timestamp)
        body["signatures"] = [signature]
        return body

    # --- the execution thread side ------------------------------------------------------

    def _request_done(self, request_id: bytes) -> None:
        if self._loop is not None and request_id in self._waiters:
            self._loop.call_soon_threadsafe(self._wake, request_id)

    def _wake(self, request_id: bytes) -> None:
        for future in self._waiters.pop(request_id, []):
            if not future.done():
                future.set_result(None)

    def _is_done(self, request_id: bytes) -> bool:
        for subnet in self.topology:
            record = subnet.replica.requests.get(request_id)
            if record is not None:
                return record.status in ("replied", "rejected", "done")
        return False

    def _base_view(self, subnet: Subnet) -> StateView:
        return StateView(
            time_ns=subnet.replica.clock.now_ns(),
            subnet_id=subnet.subnet_id,
            subnet_public_key_der=subnet.key.public_key_der,
            canister_ranges=subnet.canister_ranges,
            other_subnets=self.topology.others(subnet),
        )

    def _state_view(
        self,
        subnet: Subnet,
        sender: bytes,
        effective_canister_id: bytes,
        paths: Sequence[Sequence[bytes]],
    ) -> StateView:
        """Only what ``paths`` ask for, after checking the sender may read it."""
        view = self._base_view(subnet)
        view.nodes = {subnet.signer.node_id: subnet.signer.public_key_der}
        for path in paths:
            self._add_path(subnet.replica, view, sender, effective_canister_id, path)
        return view

    def _add_path(
        self,
        replica: Replica,
        view: StateView,
        sender: bytes,
        effective_canister_id: bytes,
        path: Sequence[bytes],
    ) -> None:
        head = path[0] if path else b""
        if head in (b"time", b"subnet", b"canister_ranges"):
            return
        if head == b"request_status" and len(path) >= 2:
            self._add_request_status(replica, view, sender, path[1])
        elif head == b"canister" and len(path) >= 3:
            self._add_canister(replica, view, sender, effective_canister_id, path)
        else:
            raise Forbidden(f"the path {_show(path)} cannot be read with read_state")

    def _add_request_status(
        self, replica: Replica, view: StateView, sender: bytes, request_id: bytes
    ) -> None:
        record = replica.requests.get(request_id)
        if record is None:
            return  # absent: the certificate proves it
        if record.sender != sender:
            raise Forbidden(
                f"request {request_id.hex()} was sent by {ids.to_text(record.sender)}; "
                f"{ids.to_text(sender)} may not read its status"
            )
        reject = record.reject
        view.request_status[request_id] = RequestStatus(
            status=record.status,
            reply=record.reply,
            reject_code=int(reject.code) if reject else None,
            reject_message=reject.message if reject else None,
            error_code=(reject.error_code or None) if reject else None,
        )

    def _add_canister(
        self,
        replica: Replica,
        view: StateView,
        sender: bytes,
        effective_canister_id: bytes,
        path: Sequence[bytes],
    ) -> None:
        canister_id = path[1]
        if canister_id != effective_canister_id:
            raise Forbidden(
                f"the path {_show(path)} names canister {ids.to_text(canister_id)}, but the "
                f"effective canister id is {ids.to_text(effective_canister_id)}"
            )
        canister = replica.canisters.get(canister_id)
        if canister is not None:
            view.canisters[canister_id] = _canister_view(canister, sender, path)

    def _data_certificate_for(self, subnet: Subnet) -> Callable[[bytes], bytes]:
        def certificate(canister_id: bytes) -> bytes:
            view = self._base_view(subnet)
            canister = subnet.replica.canisters[canister_id]
            view.canisters[canister_id] = CanisterView(certified_data=canister.certified_data)
            path = [b"canister", canister_id, b"certified_data"]
            return subnet.certifier().certificate(state_tree(view, [path]))

        return certificate


def _canister_view(canister: CanisterState, sender: bytes, path: Sequence[bytes]) -> CanisterView:
    view = CanisterView(
        certified_data=canister.certified_data,
        module_hash=canister.module_hash,
        controllers=list(canister.controllers),
    )
    if len(path) >= 4 and path[2] == b"metadata" and canister.sandbox is not None:
        name = path[3].decode(errors="replace")
        public = canister.sandbox.custom_section(f"icp:public {name}")
        private = canister.sandbox.custom_section(f"icp:private {name}")
        if public is not None:
            view.metadata[name] = public
        elif private is not None:
            if not canister.is_controller(sender):
                raise Forbidden(
                    f"custom section {name!r} of {ids.to_text(canister.canister_id)} is "
                    "private: only controllers may read it"
                )
            view.metadata[name] = private
    return view


def _show(path: Sequence[bytes]) -> str:
    return "/" + "/".join(p.decode(errors="replace") if p.isascii() else p.hex() for p in path)


__all__ = ["CANISTER_RANGES", "Node", "Reject"]
