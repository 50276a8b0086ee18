"""Images of two replicas compared at one journal sequence (consistency checks, promotion)."""

from __future__ import annotations

import contextlib

from canister_iface import icrp_errors as ie
from canister_iface.icrp_types import ExportTicket
from replicator.flows.image.canister import CanisterSource

_READ = 1_000_000  # bytes per icrp_read when images are compared byte by byte


async def ready(side: CanisterSource, ticket: ExportTicket) -> ExportTicket:
    """Continue a preparing export (one bounded step per call) until it is ready."""
    snapshot_id = ticket.snapshot_id
    while not ticket.ready:
        ticket = await side.call(
            "icrp_export_status", lambda: side.client.export_status(snapshot_id)
        )
    return ticket


async def image_at(side: CanisterSource, seq: int) -> ExportTicket:
    """The image of ``side`` at journal sequence ``seq``, ready."""
    ticket = await side.call("icrp_begin_export_at", lambda: side.client.begin_export_at(seq))
    return await ready(side, ticket)


async def same_image(
    a: CanisterSource, ta: ExportTicket, b: CanisterSource, tb: ExportTicket
) -> bool:
    """Do two ready images hold the same bytes?

    The digests say so when both canisters cut images into the same chunks
    (a setting of each canister, not part of its state); otherwise the
    bytes are read and compared.
    """
    if ta.size != tb.size:
        return False
    if ta.chunk_size == tb.chunk_size:
        return ta.digest == tb.digest
    for offset in range(0, ta.size, _READ):
        if await _read(a, ta, offset) != await _read(b, tb, offset):
            return False
    return True


async def _read(side: CanisterSource, ticket: ExportTicket, offset: int) -> bytes:
    snapshot_id = ticket.snapshot_id
    return await side.call(
        "icrp_read",
        lambda: side.client.read(snapshot_id, offset, _READ),
        cost="query",
        nbytes=_READ,
    )


async def release(side: CanisterSource, ticket: ExportTicket) -> None:
    """``icrp_end_export``, best effort: the canister reuses the memory."""
    with contextlib.suppress(ie.IcrpError):
        snapshot_id = ticket.snapshot_id
        await side.call("icrp_end_export", lambda: side.client.end_export(snapshot_id))
