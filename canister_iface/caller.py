"""What the typed clients need from an agent: a query and an update call.

The management, ICRP and cycles-ledger clients are written against this
protocol rather than against :class:`canister_iface.agent.Agent`, so they can
be unit-tested with a fake and used with any agent of the same shape.
Failures are raised as :mod:`canister_iface.errors` exceptions by the agent;
the clients add :class:`~canister_iface.errors.ProtocolError` for replies
that do not match the interface.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class Caller(Protocol):
    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        """A non-replicated query call; returns the reply's Candid bytes."""
        ...

    async def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        *,
        effective_canister_id: bytes | None = None,
    ) -> bytes:
        """A replicated update call; returns the reply's Candid bytes.

        ``effective_canister_id`` routes calls to the management canister
        (``canister_id == b""``) to the subnet of the canister they are about.
        """
        ...


@runtime_checkable
class ViewCaller(Caller, Protocol):
    """A caller that can also hand a query's reply over as a view (no copy)."""

    async def query_view(self, canister_id: bytes, method: str, arg: bytes) -> memoryview:
        """:meth:`query`, the reply as a view of the response it came in."""
        ...
