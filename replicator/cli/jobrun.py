"""Running jobs from the command line: the engine, its progress on screen, and the summary.

:class:`RenderedProgress` is the engine's :class:`~replicator.progress.Progress`
drawn by a :class:`~replicator.cli.render.Renderer`.  :func:`run_job_command`
opens the checkpoint store and the engine, serves ``/metrics`` if asked, runs
one job and renders its summary; its exit code is the job's.  Ctrl-C (or
SIGTERM) cancels the job: the engine records it as ``cancelled`` at its last
checkpoint, the summary says how to resume, and the command exits 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from replicator.checkpoints import SqliteStore, Store
from replicator.cli.common import Context, resolve_identity
from replicator.cli.render import Renderer
from replicator.engine import Engine
from replicator.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TEMPORARY, UsageError
from replicator.job import Job, JobOutcome, JobRequest, Phase

log = logging.getLogger(__name__)

JobAction = Callable[[Engine], Awaitable[JobOutcome]]


class RenderedProgress:
    """The engine's progress events, rendered; remembers what the summary needs."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self.retries = 0
        self.last_job: Job | None = None
        self.outcomes: list[JobOutcome] = []
        self._done: dict[str, int] = {}

    def started(self, job: Job, resumed: bool) -> None:
        self.last_job = job
        target = None if job.target is None else str(job.target)
        self.renderer.start(job.id, job.kind, str(job.source), target)
        if resumed:
            self.renderer.note(f"{job.id}: resuming from its checkpoint", job=job.id)

    def phase(self, job: Job, phase: str) -> None:
        self.renderer.phase(job.id, str(phase))

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        self._done[job.id] = done_bytes
        self.renderer.total(job.id, total_bytes, done_bytes)  # the rate: this run's bytes only
        self.renderer.progress(job.id, done_bytes)

    def advanced(self, job: Job, nbytes: int) -> None:
        done = self._done.get(job.id, 0) + nbytes
        self._done[job.id] = done
        self.renderer.progress(job.id, done)

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        self.retries += 1
        self.renderer.retry(job.id, reason, wait_seconds)

    def note(self, job: Job, text: str) -> None:
        self.renderer.note(f"{job.id}: {text}", job=job.id)

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        del job
        self.outcomes.append(outcome)


@contextlib.asynccontextmanager
async def open_engine(ctx: Context, progress: RenderedProgress) -> AsyncIterator[Engine]:
    """The engine for this command: checkpoint store, identity, limits and route from flags."""
    config = ctx.config
    identity = resolve_identity(ctx.args, config)
    changes: dict[str, object] = {}
    if ctx.via is not None:
        changes["via"] = ctx.via
    if ctx.args.in_flight is not None:
        changes["concurrency"] = ctx.args.in_flight
    store = await asyncio.to_thread(open_store, config.checkpoints)
    try:
        await prune_finished(store, config.job_retention)
        engine = Engine.from_config(
            config, store, ctx.metrics, progress, identity=identity, **changes
        )
        async with engine:
            yield engine
    finally:
        await store.close()


async def prune_finished(store: Store, retention: float | None) -> None:
    """Forget finished jobs older than ``retention`` (``job_retention``): the store stays small."""
    if retention is None:
        return
    pruned = await store.prune(retention)
    if pruned:
        log.info("pruned %d finished jobs older than the retention", len(pruned))


def open_store(path: Path, *, read_only: bool = False) -> SqliteStore:
    """The checkpoint store at ``path``; a path that cannot hold it is a usage error."""
    try:
        return SqliteStore(path, read_only=read_only)
    except OSError as exc:
        raise UsageError(
            f"cannot use {path} for checkpoints: {exc.strerror or exc}; choose another --state "
            "(or checkpoints = ... in the config file)"
        ) from None


def job_summary(outcome: JobOutcome, retries: int, metrics_url: str | None) -> dict[str, Any]:
    """The fields of a job's summary (``--json``: the ``summary`` object)."""
    fields: dict[str, Any] = {"ok": outcome.ok, "exit_code": outcome.exit_code}
    fields.update(outcome.to_json())
    elapsed = outcome.elapsed
    rate = outcome.bytes_copied / elapsed if elapsed > 0 else None
    fields["bytes_per_second"] = None if rate is None else round(rate)
    fields["retries"] = retries
    fields["metrics_url"] = metrics_url
    if outcome.phase == Phase.CANCELLED or outcome.exit_code == EXIT_TEMPORARY:
        fields["resume"] = f"replicator resume {outcome.job.id}"
    return fields


def human_summary(fields: dict[str, Any]) -> dict[str, Any]:
    """The summary as a person reads it: fewer keys, none empty."""
    keys = (
        "job_id",
        "kind",
        "source",
        "target",
        "phase",
        "route",
        "snapshot_id",
        "snapshot",
        "size",
        "digest",
        "downtime_seconds",
        "bytes_new",
        "bytes_copied",
        "chunks_copied",
        "chunks_skipped",
        "members_listed",  # a fleet run
        "members_ok",
        "members_failed",
        "elapsed_seconds",
        "bytes_per_second",
        "retries",
        "metrics_url",
        "error",
        "resume",
    )
    return {k: fields[k] for k in keys if fields.get(k) is not None}


def render_summary(ctx: Context, fields: dict[str, Any]) -> None:
    ctx.renderer.summary(fields if ctx.args.json else human_summary(fields))


async def run_request(ctx: Context, request: JobRequest) -> int:
    """Plan and run what ``request`` asks for (``--dry-run``: only print the plan).

    Actions that cost cycles or replace state ask first (:meth:`Context.consent`).
    """
    if ctx.args.dry_run:
        return await _dry_run(ctx, request)

    async def action(engine: Engine) -> JobOutcome:
        return await engine.submit(request, consent=ctx.consent)

    return await run_job_command(ctx, action)


async def _dry_run(ctx: Context, request: JobRequest) -> int:
    progress = RenderedProgress(ctx.renderer)
    async with open_engine(ctx, progress) as engine:
        planned = await engine.dry_run(request)
    job = planned.job
    for action in planned.actions:
        ctx.renderer.note(f"would {action}", action=action.verb.value, what=action.what)
    fields: dict[str, Any] = {
        "ok": True,
        "exit_code": EXIT_OK,
        "dry_run": True,
        "kind": job.kind,
        "source": str(job.source),
        "target": None if job.target is None else str(job.target),
        "actions": [
            {"verb": a.verb.value, "what": a.what, "cycles": a.cycles, "bytes": a.nbytes}
            for a in planned.actions
        ],
        "cycles": sum(a.cycles for a in planned.actions),
        "notes": list(planned.notes),
    }
    if ctx.args.json:
        ctx.renderer.summary(fields)
    else:
        ctx.renderer.summary(
            {k: fields[k] for k in ("kind", "source", "target", "cycles") if fields[k]}
            | {"dry_run": "nothing was changed"}
        )
    return EXIT_OK


async def run_job_command(ctx: Context, action: JobAction) -> int:
    """Run one job (``action``) with progress, metrics and a summary; its exit code."""
    progress = RenderedProgress(ctx.renderer)
    with ctx.serving_metrics():
        async with open_engine(ctx, progress) as engine:
            try:
                outcome = await action(engine)
            except asyncio.CancelledError:
                _interrupted(ctx, progress)
                raise
    if not outcome.ok and outcome.error:
        ctx.renderer.error(outcome.error, outcome.exit_code)
    render_summary(ctx, job_summary(outcome, progress.retries, ctx.metrics_url))
    return outcome.exit_code if not outcome.ok else EXIT_OK


def _interrupted(ctx: Context, progress: RenderedProgress) -> None:
    """Say where the job stopped and how to go on; the boundary exits 130."""
    ctx.interrupted_reported = True
    job = progress.last_job
    outcome = progress.outcomes[-1] if progress.outcomes else None
    if job is None or outcome is None:
        return
    message = (
        f"interrupted: job {job.id} stopped at its last checkpoint; re-run the same command "
        f"or `replicator resume {job.id}` to continue"
    )
    ctx.renderer.error(message, EXIT_INTERRUPTED)
    fields = job_summary(outcome, progress.retries, ctx.metrics_url)
    fields.update(ok=False, exit_code=EXIT_INTERRUPTED, error="interrupted")
    render_summary(ctx, fields)
