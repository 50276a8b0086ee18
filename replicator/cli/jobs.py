"""``replicator jobs``: the jobs the checkpoint store knows, how far each got; pruning them.

``--unfinished`` lists what ``replicator resume`` can continue: jobs not done,
of a kind this replicator knows, and not superseded by a newer run of the
same command.  A job some process runs now shows its holder (pid, host).
``--prune`` forgets finished jobs — done, or superseded — older than
``--older-than`` (default: the config's ``job_retention``, 30 days); every
command that runs jobs prunes those older than ``job_retention`` too.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from replicator import kinds, stores
from replicator.checkpoints import JobSummary
from replicator.cli.common import Context, add_command
from replicator.errors import UsageError
from replicator.job import TERMINAL_PHASES, Phase, resumable
from replicator.schedule import parse_duration


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
    parser.add_argument(
        "--unfinished", action="store_true", help="only jobs that `replicator resume` can continue"
    )
    parser.add_argument(
        "--phase",
        action="append",
        choices=_known_phases(),
        help="only jobs in this phase (repeatable)",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="forget finished jobs (done or superseded) older than --older-than",
    )
    parser.add_argument(
        "--older-than",
        metavar="DURATION",
        help="with --prune: the age, e.g. 7d or 12h (default: job_retention of the config, 30d)",
    )


async def _jobs(ctx: Context) -> int:
    path = ctx.config.state
    phases = _phases(ctx.args)
    age = _prune_age(ctx)
    pruned: list[str] = []
    if not stores.exists(path):
        jobs: list[JobSummary] = []
    else:
        # Listing needs no write access: a read-only store lists; pruning writes.
        store = await stores.open_state(path, read_only=age is None)
        try:
            if age is not None:
                pruned = await store.prune(age)
            jobs = await store.list_jobs(phases)
        finally:
            await store.close()
    if ctx.args.unfinished:
        jobs = [j for j in jobs if continuable(j)]
    if ctx.args.json:
        for job in jobs:
            ctx.renderer.note("job", **_fields(job))
        summary = {"ok": True, "exit_code": 0, "jobs": len(jobs), "state": stores.describe(path)}
        if age is not None:
            summary["pruned"] = pruned
        ctx.renderer.summary(summary)
        return 0
    if age is not None:
        where = stores.describe(path)
        print(f"pruned {len(pruned)} finished jobs older than {_age_text(age)} from {where}")
    _print_table(jobs, stores.describe(path))
    return 0


def continuable(job: JobSummary) -> bool:
    """Can ``replicator resume`` continue ``job``?"""
    return resumable(job.phase) and not job.superseded and job.kind in kinds.names()


def _prune_age(ctx: Context) -> float | None:
    text: str | None = ctx.args.older_than
    if not ctx.args.prune:
        if text is not None:
            raise UsageError("--older-than goes with --prune: add --prune")
        return None
    if text is None:
        retention = ctx.config.job_retention
        if retention is None:
            raise UsageError(
                "job_retention is 'forever' in the config file: give --older-than (e.g. 30d)"
            )
        return retention
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--older-than: expected a duration like 30d or 12h ({exc})") from None


def _age_text(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return f"{seconds:g}s"


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
        "superseded": job.superseded,
        "running": None if job.holder is None else _holder(job),
    }


def _holder(job: JobSummary) -> dict[str, object]:
    holder = job.holder
    assert holder is not None
    return {"pid": holder.pid, "host": holder.host, "since": holder.since}


def _print_table(jobs: list[JobSummary], path: str) -> None:
    if not jobs:
        print(f"no jobs in {path}")
        return
    rows = [("JOB", "PHASE", "CHUNKS", "UPDATED", "SOURCE → TARGET")]
    for job in jobs:
        total = "?" if job.chunks_total is None else str(job.chunks_total)
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.updated_at))
        route = f"{job.source} → {job.target or '-'}"
        phase = job.phase
        if job.holder is not None:
            phase = f"{phase} (running: pid {job.holder.pid} on {job.holder.host})"
        elif job.superseded and resumable(job.phase):
            phase = f"{phase} (superseded)"
        rows.append((job.id, phase, f"{job.chunks_acked}/{total}", updated, route))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    failed = [j for j in jobs if j.error]
    for job in failed:
        print(f"{job.id}: {job.error}")
