"""Restore jobs (placeholder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from replicator.errors import UsageError
from replicator.jobs import CanisterRef, Job, JobKind, Scalar

if TYPE_CHECKING:
    from replicator.engine import Engine


async def plan_restore(
    engine: Engine,
    backup: CanisterRef,
    target: CanisterRef | None,
    *,
    snapshot: int | None = None,
    via: str | None = None,
    new_canister: bool = False,
    wasm: str | Path | None = None,
) -> Job:
    del engine, new_canister, wasm
    if target is None:
        raise UsageError("give the target canister")
    options: dict[str, Scalar] = {}
    if via is not None:
        options["via"] = via
    if snapshot is not None:
        options["snapshot"] = snapshot
    return Job(JobKind.RESTORE, backup, target, options=options)
