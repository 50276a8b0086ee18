"""Archive jobs: a canister's image into an off-chain file, and a file back into a canister.

``archive-export`` writes the image of a canister to a file
(``docs/archive-format.md``), resuming a partly written one; re-running it
is "nothing to do" while the source is unchanged and replaces the file once
the source moved on, and ``{canister}``/``{snapshot}`` in the path name a
file per image (:mod:`replicator.flows.image.archive`); ``archive-import``
verifies the whole file before anything is written to the target, then
copies it in (always through this machine: the bytes are local).  Both run
on the image kinds' machine and performer (:mod:`replicator.flows.image`).
"""

from __future__ import annotations

from pathlib import Path

from replicator import kinds
from replicator.flow import Action, Kind, PlanContext, Verb
from replicator.flows.image.archive import check_template
from replicator.flows.image.machine import advance_copy
from replicator.flows.image.performer import ImagePerformer
from replicator.job import ArchiveRef, CanisterRef, Job, JobRequest

EXPORT = "archive-export"
IMPORT = "archive-import"


def export_request(source: CanisterRef, path: str | Path, *, job_id: str = "") -> JobRequest:
    """Write ``source``'s image to the archive file ``path`` (resuming a partial file)."""
    return JobRequest(EXPORT, source, ArchiveRef(str(path)), id=job_id)


def import_request(path: str | Path, target: CanisterRef, *, job_id: str = "") -> JobRequest:
    """Import the archive file ``path`` into ``target`` (the file is verified first)."""
    return JobRequest(IMPORT, ArchiveRef(str(path)), target, id=job_id)


async def plan_export(ctx: PlanContext, request: JobRequest) -> Job:
    """The export job; a path template with unknown placeholders is refused before it runs."""
    del ctx
    if isinstance(request.target, ArchiveRef):
        check_template(request.target.path)
    return request.job()


async def plan_import(ctx: PlanContext, request: JobRequest) -> Job:
    """The import job; the target's state is replaced, so that needs consent."""
    overwrite = Action(
        Verb.OVERWRITE,
        f"the state of {request.target} with the image in {request.source}; its current "
        "state is replaced (the file is verified before anything is written)",
    )
    await ctx.intend(overwrite)
    return request.job()


ARCHIVE_EXPORT = kinds.register(
    Kind(
        name=EXPORT,
        summary="a canister's image into an archive file",
        advance=advance_copy,
        performer=ImagePerformer,
        sources=(CanisterRef,),
        targets=(ArchiveRef,),
        plan=plan_export,
    )
)

ARCHIVE_IMPORT = kinds.register(
    Kind(
        name=IMPORT,
        summary="an archive file, verified, into a canister",
        advance=advance_copy,
        performer=ImagePerformer,
        sources=(ArchiveRef,),
        targets=(CanisterRef,),
        plan=plan_import,
    )
)
