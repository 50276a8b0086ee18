"""Backup jobs: a canister's image into its backup canister.

``plan_backup`` turns "back up this canister" into a :class:`~replicator.jobs.Job`:

- with a target, the job copies into it (a backup canister whose source is
  this canister, or any canister that imports images);
- without one, into the source's backup canister from the registry, or a new
  one (:mod:`replicator.provision`) — but only after the source proved it
  can be backed up (it speaks ICRP, exports images and trusts our identity),
  so a wrong canister id or a missing right creates nothing.

The job itself (engine): freeze an image on the source (``icrp_begin_export``,
continued while it is preparing), open the import on the backup canister with
size, chunk size, digest and chunk digests, copy every chunk (direct by
default: the source pushes to the backup canister), commit, and check that
the backup canister now serves an image with the same digest.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from canister_iface import errors as ic
from canister_iface.principal import Principal
from replicator.calls import job_level_error
from replicator.errors import ReplicatorError, UsageError
from replicator.flows.canister import CanisterSource
from replicator.jobs import CanisterRef, Job, JobKind, Scalar

if TYPE_CHECKING:
    from replicator.engine import Engine

ROUTES = ("direct", "relay")


async def plan_backup(
    engine: Engine,
    source: CanisterRef,
    target: CanisterRef | None,
    *,
    via: str | None = None,
    keep: int | None = None,
) -> Job:
    """The backup job of ``source`` (creating its backup canister when there is none)."""
    options: dict[str, Scalar] = {}
    if via is not None:
        options["via"] = check_route(via)
    if target is None:
        target = await backup_target(engine, source, keep=keep)
    return Job(JobKind.BACKUP, source, target, options=options)


async def backup_target(engine: Engine, source: CanisterRef, *, keep: int | None) -> CanisterRef:
    """The registered backup canister of ``source``, or a new one; checks the source first."""
    if keep is not None and keep < 1:
        raise UsageError(f"a backup canister keeps at least 1 image, got keep={keep}")
    side = CanisterSource(source, engine.context())
    try:
        await side.require("image", "export an image")
        provisioner = engine.provisioner(source.network)
        # Creating and installing a canister takes several update calls; the
        # source freezes its image meanwhile, and the job's own begin_export
        # then gets that ready image in one call instead of waiting for it.
        warm = asyncio.create_task(_freeze_image(side))
        try:
            canister = await provisioner.backup_canister_for(
                Principal.from_text(source.canister_id), keep=keep or engine.settings.backup_keep
            )
        except BaseException:
            warm.cancel()
            raise
        await warm
    except ic.IcError as exc:
        raise job_level_error(exc) from exc
    return CanisterRef(canister.to_text(), source.network)


async def _freeze_image(side: CanisterSource) -> None:
    """Best effort: a failure here is met again, and reported, by the job itself."""
    with contextlib.suppress(ic.IcError, ReplicatorError):
        await side.prepare(None)


def check_route(via: str) -> str:
    if via not in ROUTES:
        raise UsageError(f"--via must be one of {', '.join(ROUTES)}, got {via!r}")
    return via
