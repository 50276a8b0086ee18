"""What the HTTP layer needs from the node behind it.

``localnet.http`` speaks the IC's HTTP interface (CBOR envelopes, status
codes); ``localnet.net`` implements :class:`NodeApi` on top of the replica.
Every method is a coroutine: the replica runs on its own execution thread and
the HTTP layer must never block the event loop on Wasm execution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RequestType = Literal["call", "query", "read_state"]


@dataclass(frozen=True)
class Request:
    """The content of a validated envelope (signature, expiry and id checked)."""

    request_type: RequestType
    request_id: bytes
    sender: bytes
    ingress_expiry: int
    effective_canister_id: bytes  # from the URL
    canister_id: bytes = b""  # absent for read_state
    method_name: str = ""
    arg: bytes = b""
    nonce: bytes | None = None
    paths: list[list[bytes]] = field(default_factory=list)  # read_state only


class Forbidden(Exception):
    """A read_state path the sender may not read (HTTP 403)."""


class NotFound(Exception):
    """No such canister / subnet for the effective id (HTTP 404 or 400)."""


class Overloaded(Exception):
    """The node sheds the call before looking at it (HTTP 503), as the replica does
    when its ingress pool is full."""


class NodeApi(Protocol):
    @property
    def root_key(self) -> bytes:
        """DER-encoded BLS public key that signs certificates."""
        ...

    async def submit_call(self, request: Request) -> None:
        """Accept an update call into the ingress pool.

        Raises ``localnet.errors.Reject`` when the call is refused before
        execution (canister missing, stopped, out of cycles, inspect_message
        rejected, payload too large): the v4 endpoint reports it as a
        ``non_replicated_rejection``; :class:`Overloaded` when the ingress
        pool is full (HTTP 503).  Submitting the same request id twice is
        idempotent (the replica's duplicate detection).
        """
        ...

    async def wait_for(self, request_id: bytes, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the call is replied or rejected; False on timeout."""
        ...

    async def read_state(
        self, sender: bytes, effective_canister_id: bytes, paths: list[list[bytes]]
    ) -> bytes:
        """A CBOR certificate covering ``paths`` (plus ``time``).

        Raises :class:`Forbidden` for paths the sender may not read, e.g. the
        request_status of a request sent by somebody else.
        """
        ...

    async def query(self, request: Request) -> dict[str, Any]:
        """Run a query; returns the CBOR-ready response body of ``/api/v3/.../query``:
        ``{"status": "replied", "reply": {"arg": ...}, "signatures": [...]}`` or
        ``{"status": "rejected", "reject_code", "reject_message", "error_code",
        "signatures"}``."""
        ...

    async def status(self) -> dict[str, Any]:
        """The ``/api/v2/status`` body (``root_key``, ``impl_version``, ...)."""
        ...
