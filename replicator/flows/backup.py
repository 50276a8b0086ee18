"""Backup jobs: a canister's image into its backup canister.

``plan_backup`` turns "back up this canister" into a :class:`~replicator.job.Job`:

- with a target, the job copies into it (a backup canister whose source is
  this canister, or any canister that imports images);
- without one, into the source's backup canister from the registry, or a new
  one (:mod:`replicator.provision`) — but only after the source proved it
  can be backed up (it speaks ICRP, exports images and trusts our identity),
  so a wrong canister id or a missing right creates nothing.

A backup canister the orchestrator created is checked before every backup
into it (:mod:`replicator.flows.image.cycles`): its cycles are read and
topped up when the policy says so, so that it never freezes.

The job itself (:mod:`replicator.flows.image`): freeze an image on the
source (``icrp_begin_export``, continued while it is preparing), open the
import on the backup canister with size, chunk size, digest and chunk
digests, copy every chunk (direct by default: the source pushes to the
backup canister), commit, and check that the backup canister now serves an
image with the same digest (its certified commit answer names it). The last
round trips overlap (:func:`~replicator.flows.image.machine.advance_overlapped`):
the peer grants are revoked and the source's export is ended while the backup
canister commits.
"""

from __future__ import annotations

import asyncio
import contextlib

from canister_iface import errors as ic
from canister_iface.icrp_types import ExportTicket, Info
from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import ReplicatorError, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.image.canister import CanisterSource
from replicator.flows.image.cycles import keep_alive
from replicator.flows.image.machine import advance_overlapped
from replicator.flows.image.performer import ImagePerformer
from replicator.job import CanisterRef, Job, JobRequest
from replicator.metrics import CyclesMetrics
from replicator.routes import check_via
from replicator.topup import copy_cost

KIND = "backup"


def request(
    source: CanisterRef,
    target: CanisterRef | None = None,
    *,
    via: str | None = None,
    keep: int | None = None,
    job_id: str = "",
) -> JobRequest:
    """Back ``source`` up into ``target``, or into its registered or a new backup canister.

    ``keep``: how many images a backup canister created now keeps.
    """
    return JobRequest(KIND, source, target, {"via": via, "keep": keep}, id=job_id)


async def plan_backup(ctx: PlanContext, req: JobRequest) -> Job:
    """The backup job of ``req.source`` (creating its backup canister when there is none)."""
    via = req.options.get("via")
    if via is not None:
        check_via(via, "--via")
    target, warm = req.target, None
    if target is None:
        if not isinstance(req.source, CanisterRef):
            raise UsageError(f"a backup reads from a canister, not {req.source}")
        target, warm = await _backup_target(ctx, req.source, keep=_keep(req))
    source = req.source
    try:
        # The cycles check reads the backup canister while the source is
        # still freezing its image; the copy's cost waits for that image.
        if isinstance(target, CanisterRef) and isinstance(source, CanisterRef):
            await keep_alive(ctx, target, work=lambda: _copy_cost(ctx, source, warm))
    except BaseException:
        if warm is not None:
            warm.cancel()
        raise
    if warm is not None:
        await warm
    return req.job(target)


async def _copy_cost(
    ctx: PlanContext, source: CanisterRef, frozen: asyncio.Task[ExportTicket | None] | None
) -> int:
    """What copying the source's image costs the backup canister (its last size; 0: unknown)."""
    if frozen is not None and (ticket := await frozen) is not None:
        return copy_cost(ticket.size, pushes=False)
    try:
        info = await CanisterSource(source, ctx.calls).info()
    except (ic.IcError, ReplicatorError):  # the job itself reports what stands in the way
        return 0
    return 0 if info.image is None else copy_cost(info.image.size, pushes=False)


def _keep(req: JobRequest) -> int | None:
    keep = req.options.get("keep")
    if keep is None:
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UsageError(f"a backup canister keeps at least 1 image, got keep={keep!r}")
    return keep


async def backup_target(ctx: PlanContext, source: CanisterRef, *, keep: int | None) -> CanisterRef:
    """The registered backup canister of ``source``, or a new one; checks the source first."""
    target, warm = await _backup_target(ctx, source, keep=keep)
    if warm is not None:
        await warm
    return target


async def _backup_target(
    ctx: PlanContext, source: CanisterRef, *, keep: int | None
) -> tuple[CanisterRef, asyncio.Task[ExportTicket | None] | None]:
    """``backup_target``, and the source's image still freezing (a task to await)."""
    side = CanisterSource(source, ctx.calls)
    info = await side.require("image", "export an image")
    provisioner = ctx.provisioner_for(source.network)
    if await provisioner.existing(source.canister_id) is None:
        cycles = ctx.settings.initial_cycles
        create = Action(
            Verb.CREATE,
            f"a backup canister for {source} with {cycles:,} cycles"
            + (" bought through the cycles ledger" if provisioner.paid else ""),
            cycles=cycles,
            consent=provisioner.paid,
        )
        if not await ctx.intend(create, _move(source, info)):
            return to_be_created("a new backup canister", source.network), None
    # Creating and installing a canister takes several update calls; the
    # source freezes its image meanwhile, and the job's own begin_export
    # then gets that ready image in one call instead of waiting for it.
    warm = asyncio.create_task(_freeze_image(side))
    try:
        canister = await provisioner.backup_canister_for(
            Principal.from_text(source.canister_id), keep=keep or ctx.settings.backup_keep
        )
    except BaseException:
        warm.cancel()
        raise
    return CanisterRef(canister.to_text(), source.network), warm


def _move(source: CanisterRef, info: Info) -> Action:
    if info.image is None:
        return Action(Verb.MOVE, f"a fresh image of {source}", consent=False)
    size = info.image.size
    what = f"a fresh image of {source} (its last one had {size:,} bytes)"
    return Action(Verb.MOVE, what, nbytes=size, consent=False)


async def _freeze_image(side: CanisterSource) -> ExportTicket | None:
    """The source's fresh image, kept for the job (:mod:`replicator.fresh`).

    Best effort: a failure here is met again, and reported, by the job itself.
    """
    with contextlib.suppress(ic.IcError, ReplicatorError):
        return await side.freeze()
    return None


BACKUP = kinds.register(
    Kind(
        name=KIND,
        summary="a canister's image into its backup canister (created on demand)",
        advance=advance_overlapped,
        performer=ImagePerformer,
        plan=plan_backup,
        target_optional=True,
        metrics=CyclesMetrics,
    )
)
