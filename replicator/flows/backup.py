"""Backup jobs: an app canister's image into its backup canister.

Placeholder until provisioning lands: the target must be given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replicator.errors import UsageError
from replicator.jobs import CanisterRef, Job, JobKind, Scalar

if TYPE_CHECKING:
    from replicator.engine import Engine


async def plan_backup(
    engine: Engine,
    source: CanisterRef,
    target: CanisterRef | None,
    *,
    via: str | None = None,
    keep: int | None = None,
) -> Job:
    del engine, keep
    if target is None:
        raise UsageError("give the backup canister (creating one is not available yet)")
    options: dict[str, Scalar] = {}
    if via is not None:
        options["via"] = via
    return Job(JobKind.BACKUP, source, target, options=options)
