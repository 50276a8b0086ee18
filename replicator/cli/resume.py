"""``replicator resume``: continue a job from its checkpoint; ``replicator run``: a named job."""

from __future__ import annotations

from typing import Any

from replicator import kinds
from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_job_command, run_request
from replicator.engine import Engine
from replicator.job import JobOutcome


def register(commands: Any) -> None:
    resume = add_command(
        commands,
        "resume",
        _resume,
        help="continue an interrupted or failed job from its checkpoint",
        description=(
            "Continue JOB (see `replicator jobs`) from its last checkpoint, with the current "
            "limits and identity. Re-running the job's original command does the same."
        ),
    )
    resume.add_argument("job", help="the job id, e.g. backup-3f9a1c2b7d4e")
    run = add_command(
        commands,
        "run",
        _run,
        help="run a job of the config file ([jobs.NAME]); resumes it if unfinished",
    )
    run.add_argument("name", help="the job's name in the config file")


async def _resume(ctx: Context) -> int:
    job_id: str = ctx.args.job

    async def action(engine: Engine) -> JobOutcome:
        return await engine.resume(job_id)

    return await run_job_command(ctx, action)


async def _run(ctx: Context) -> int:
    request = kinds.configured(ctx.config, ctx.args.name)

    return await run_request(ctx, request)
