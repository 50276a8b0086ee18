"""Verify jobs: read an image chunk by chunk against its digests; compare a target's.

The source is a canister (its current export, or a backup canister's newest
image) or an archive file; every chunk is read and checked against the
chunk digests the source publishes and those against the image digest.
With a target (a canister or a file), the target must then hold an image
with the same digest.
"""

from __future__ import annotations

from replicator import kinds
from replicator.flow import Kind
from replicator.flows.image.machine import advance_verify
from replicator.flows.image.performer import ImagePerformer
from replicator.job import ArchiveRef, CanisterRef, JobRequest

KIND = "verify"
_PHASES = ("preparing", "verifying")


def request(
    source: CanisterRef | ArchiveRef,
    target: CanisterRef | ArchiveRef | None = None,
    *,
    job_id: str = "",
) -> JobRequest:
    """Check ``source``'s image chunk by chunk; with ``target``, that it holds the same."""
    return JobRequest(KIND, source, target, id=job_id)


VERIFY = kinds.register(
    Kind(
        name=KIND,
        summary="an image read back chunk by chunk against its digests",
        advance=advance_verify,
        performer=ImagePerformer,
        sources=(CanisterRef, ArchiveRef),
        targets=(CanisterRef, ArchiveRef, None),
        phases=_PHASES,
    )
)
