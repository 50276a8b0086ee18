"""``replicator resume``: continue a job from its checkpoint; ``replicator run``: a named job.

``resume`` first checks that every network the job uses answers at the URL
the configuration gives it, and says which URL it tried and where that URL
came from (the built-in default when no ``--config`` was given): a job
started with a config file must be resumed with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from canister_iface import errors as ic
from canister_iface.identity import Identity
from replicator import kinds
from replicator.cli.common import Context, add_command, open_agent
from replicator.cli.jobrun import run_job_command, run_request
from replicator.config import Config
from replicator.engine import Engine
from replicator.errors import ConfigError, RetriesExhausted, UsageError
from replicator.job import CanisterRef, Job, JobOutcome

_PREFLIGHT_TIMEOUT = 15.0  # seconds for the one status call per network


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
        job = (await engine.store.load(job_id)).state.job
        for network in _networks(job):
            await _reachable(ctx.config, network, job)
        return await engine.resume(job_id)

    return await run_job_command(ctx, action)


def _networks(job: Job) -> list[str]:
    refs = [e for e in (job.source, job.target) if isinstance(e, CanisterRef)]
    return sorted({r.network for r in refs})


async def _reachable(config: Config, name: str, job: Job) -> None:
    """One status call to ``name``'s URL; an error names the URL and where it came from."""
    try:
        network = config.network_named(name)
    except ConfigError:
        raise UsageError(
            f"job {job.id} runs on the network {name!r}, which {_config_name(config)} does "
            "not configure: pass --config with the file the job was started with"
        ) from None
    async with open_agent(network, Identity.anonymous()) as agent:
        try:
            await asyncio.wait_for(agent.status(), _PREFLIGHT_TIMEOUT)
        except (ic.TransientError, TimeoutError) as exc:
            detail = getattr(exc, "message", None) or "no answer"
            raise RetriesExhausted(
                f"cannot reach the network {name!r} of job {job.id} at {network.url} "
                f"({_url_origin(config)}): {detail}. If the job was started with "
                "--config FILE, resume it with the same file; otherwise start the network, "
                "then re-run",
                attempts=1,
                elapsed=0.0,
            ) from None


def _url_origin(config: Config) -> str:
    if config.source == "defaults":
        return "the built-in default URL: no --config was given"
    return f"the URL in {config.source}"


def _config_name(config: Config) -> str:
    return (
        "the built-in configuration (no --config given)"
        if config.source == "defaults"
        else (config.source)
    )


async def _run(ctx: Context) -> int:
    request = kinds.configured(ctx.config, ctx.args.name)

    return await run_request(ctx, request)
