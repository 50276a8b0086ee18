"""The node: the replica behind the HTTP interface (implements ``NodeApi``).

It owns the keys (a BLS root key for certificates, an Ed25519 node key for
query signatures), runs every replica operation on the execution thread and
turns replica state into certified answers.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from localnet import ids
from localnet.certification import (
    CanisterView,
    Certifier,
    NodeSigner,
    RequestStatus,
    StateView,
    state_tree,
)
from localnet.errors import Reject
from localnet.execution import Reply, Response
from localnet.executor import ExecutionThread
from localnet.node_api import Forbidden, Request
from localnet.replica import Replica
from localnet.state import CanisterState

# The subnet's id and canister range, as a one-subnet localnet presents them.
SUBNET_ID = hashlib.sha224(b"localnet subnet").digest() + b"\x02"  # self-authenticating form
CANISTER_RANGES = [(ids.canister_id(0), ids.canister_id(0x0FFFFF))]
IMPL_VERSION = "localnet-0.1.0"


class Node:
    def __init__(self, replica: Replica, certifier: Certifier, node_signer: NodeSigner) -> None:
        self.replica = replica
        self.certifier = certifier
        self.signer = node_signer
        self.executor = ExecutionThread(replica)
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        replica.on_request_done = self._request_done
        replica.data_certificate = self._data_certificate

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.executor.start_timers()

    async def close(self) -> None:
        await self.executor.close()

    # --- NodeApi --------------------------------------------------------------------

    @property
    def root_key(self) -> bytes:
        return self.certifier.root_key_der

    async def status(self) -> dict[str, Any]:
        return {
            "ic_api_version": "0.18.0",
            "impl_version": IMPL_VERSION,
            "root_key": self.root_key,
            "replica_health_status": "healthy",
        }

    async def submit_call(self, request: Request) -> None:
        await self.executor.run(self.replica.submit_ingress, request)
        self.executor.drain_soon()

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
        view = await self.executor.run(self._state_view, sender, effective_canister_id, paths)
        return self.certifier.certificate(state_tree(view, paths))

    async def query(self, request: Request) -> dict[str, Any]:
        response: Response = await self.executor.run(self.replica.query, request)
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
        timestamp = self.replica.clock.peek_ns()
        body["signatures"] = [self.signer.sign_query_response(request.request_id, body, timestamp)]
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
        record = self.replica.requests.get(request_id)
        return record is not None and record.status in ("replied", "rejected", "done")

    def _state_view(
        self, sender: bytes, effective_canister_id: bytes, paths: Sequence[Sequence[bytes]]
    ) -> StateView:
        """Only what ``paths`` ask for, after checking the sender may read it."""
        view = StateView(
            time_ns=self.replica.clock.now_ns(),
            subnet_id=SUBNET_ID,
            subnet_public_key_der=self.certifier.key.public_key_der,
            canister_ranges=CANISTER_RANGES,
            nodes={self.signer.node_id: self.signer.public_key_der},
        )
        for path in paths:
            self._add_path(view, sender, effective_canister_id, path)
        return view

    def _add_path(
        self, view: StateView, sender: bytes, effective_canister_id: bytes, path: Sequence[bytes]
    ) -> None:
        head = path[0] if path else b""
        if head in (b"time", b"subnet", b"canister_ranges"):
            return
        if head == b"request_status" and len(path) >= 2:
            self._add_request_status(view, sender, path[1])
        elif head == b"canister" and len(path) >= 3:
            self._add_canister(view, sender, effective_canister_id, path)
        else:
            raise Forbidden(f"the path {_show(path)} cannot be read with read_state")

    def _add_request_status(self, view: StateView, sender: bytes, request_id: bytes) -> None:
        record = self.replica.requests.get(request_id)
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
        self, view: StateView, sender: bytes, effective_canister_id: bytes, path: Sequence[bytes]
    ) -> None:
        canister_id = path[1]
        if canister_id != effective_canister_id:
            raise Forbidden(
                f"the path {_show(path)} names canister {ids.to_text(canister_id)}, but the "
                f"effective canister id is {ids.to_text(effective_canister_id)}"
            )
        canister = self.replica.canisters.get(canister_id)
        if canister is not None:
            view.canisters[canister_id] = _canister_view(canister, sender, path)

    def _data_certificate(self, canister_id: bytes) -> bytes:
        view = StateView(
            time_ns=self.replica.clock.now_ns(),
            subnet_id=SUBNET_ID,
            subnet_public_key_der=self.certifier.key.public_key_der,
            canister_ranges=CANISTER_RANGES,
        )
        canister = self.replica.canisters[canister_id]
        view.canisters[canister_id] = CanisterView(certified_data=canister.certified_data)
        path = [b"canister", canister_id, b"certified_data"]
        return self.certifier.certificate(state_tree(view, [path]))


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


__all__ = ["CANISTER_RANGES", "SUBNET_ID", "Node", "Reject"]
