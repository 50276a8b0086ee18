"""``replicator jobs``: the jobs the checkpoint store knows, and how far each got."""

from __future__ import annotations

import argparse
import time
from typing import Any

from replicator import kinds
from replicator.checkpoints import JobSummary, SqliteStore
from replicator.cli.common import Context, add_command
from replicator.errors import UsageError
from replicator.job import TERMINAL_PHASES, Phase, resumable


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "jobs",
        _jobs,
        help="list jobs in the checkpoint store",
        description=(
            "List the jobs recorded in the checkpoint store (--state), oldest first. "
            "Unfinished jobs resume with `replicator resume JOB` or by re-running their command."
        ),
    )
    parser.add_argument("--unfinished", action="store_true", help="only jobs that can be resumed")
    parser.add_argument(
        "--phase",
        action="append",
        choices=_known_phases(),
        help="only jobs in this phase (repeatable)",
    )


async def _jobs(ctx: Context) -> int:
    path = ctx.config.checkpoints
    phases = _phases(ctx.args)
    if not path.exists():
        jobs: list[JobSummary] = []
    else:
        async with await SqliteStore.open(path) as store:
            jobs = await store.list_jobs(phases)
    if ctx.args.unfinished:
        jobs = [j for j in jobs if resumable(j.phase)]
    if ctx.args.json:
        for job in jobs:
            ctx.renderer.note("job", **_fields(job))
        ctx.renderer.summary({"ok": True, "exit_code": 0, "jobs": len(jobs), "state": str(path)})
        return 0
    _print_table(jobs, str(path))
    return 0


def _known_phases() -> list[str]:
    phases = {Phase.PENDING, *TERMINAL_PHASES}
    for kind in kinds.registered():
        phases.update(kind.phases)
    return sorted(phases)


def _phases(args: argparse.Namespace) -> set[str] | None:
    if args.unfinished and args.phase:
        raise UsageError("--unfinished and --phase exclude each other: give one")
    if args.phase:
        return set(args.phase)
    return None


def _fields(job: JobSummary) -> dict[str, object]:
    return {
        "id": job.id,
        "kind": job.kind,
        "phase": job.phase,
        "source": job.source,
        "target": job.target,
        "chunks_acked": job.chunks_acked,
        "chunks_total": job.chunks_total,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "error": job.error,
    }


def _print_table(jobs: list[JobSummary], path: str) -> None:
    if not jobs:
        print(f"no jobs in {path}")
        return
    rows = [("JOB", "PHASE", "CHUNKS", "UPDATED", "SOURCE → TARGET")]
    for job in jobs:
        total = "?" if job.chunks_total is None else str(job.chunks_total)
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.updated_at))
        route = f"{job.source} → {job.target or '-'}"
        rows.append((job.id, job.phase, f"{job.chunks_acked}/{total}", updated, route))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    failed = [j for j in jobs if j.error]
    for job in failed:
        print(f"{job.id}: {job.error}")
