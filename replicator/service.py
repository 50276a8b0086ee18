"""The long-running service behind ``replicator serve``.

:class:`Service` runs every job of the config that has a ``schedule``
(:mod:`replicator.schedule`), each in its own loop::

    [resume an unfinished run at once] → wait for the next run → run → wait → …

- **One run of a job at a time.** The next run is computed when a run ends,
  so a run longer than the interval skips the runs it overlapped instead of
  piling them up.
- **Failures stay local.** A run that fails (any exception of the runner
  other than cancellation) is logged, counted (``replicator_job_runs_total``,
  ``replicator_job_failures_total``, ``replicator_schedule_consecutive_failures``)
  and retried at the job's next scheduled run; other jobs go on.
- **Resume.** At start, a job whose latest checkpoint is unfinished (pending,
  running when the process died, or cancelled by a shutdown) runs at once
  (its windows permitting); a job whose last run *failed* waits for its next
  run.  Either way the runner continues from the checkpoint.
- **Stop.** :meth:`Service.stop` (SIGTERM, SIGINT) cancels the running jobs;
  the engine records each at its last checkpoint.  Jobs get ``grace``
  seconds to do so.
- **Shared limits.** Every job runs through one engine (one set of limits
  per network), so all jobs draw from the same call and byte rates,
  in-flight slots and cycles budget.

Each job loop runs in its own task with :data:`current_job` set to the
job's name, so :class:`ServiceProgress` — the one progress sink of the
engine — knows which scheduled job an event belongs to.

:class:`HttpEndpoints` serves ``/metrics`` (Prometheus text format),
``/healthz`` (the process answers) and ``/readyz`` (the checkpoint store and
the networks of the scheduled jobs answer; ``503`` with the failing checks
otherwise) with aiohttp.  Before each scrape it runs ``refresh`` (the
service re-reads the cycles budgets from the checkpoint store, so
``replicator_cycles_budget_remaining`` counts what every process sharing
the store spent in the current period).

The clock and the sleep are injectable, so tests run schedules in fake time.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from replicator.classify import exit_code_for
from replicator.errors import EXIT_INTERRUPTED, EXIT_OK
from replicator.job import Job, Phase
from replicator.metrics import ServiceMetrics
from replicator.schedule import JobSchedule

log = logging.getLogger(__name__)

Outcome = Literal["done", "failed", "cancelled"]
Now = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]
Check = Callable[[], Awaitable[None]]

DEFAULT_GRACE = 30.0  # seconds a stopping job gets to checkpoint; systemd's default is 90
# Sleep at most this long at a time: a suspended machine or a clock step is
# noticed within a minute rather than after a whole interval.
_MAX_SLEEP = 60.0
_READY_TIMEOUT = 5.0
# The classic text format: our names need none of version 1.0.0's UTF-8
# escaping, and every Prometheus since 2.0 (Debian's 2.42 too) parses it.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# The scheduled job whose loop the current task runs (None outside the loops).
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "replicator_scheduled_job", default=None
)


# ---------------------------------------------------------------- interfaces


@dataclass(frozen=True)
class RunResult:
    """How one run of a job ended."""

    outcome: Outcome
    exit_code: int = EXIT_OK
    error: str | None = None


@dataclass(frozen=True)
class ScheduledJob:
    """A named job with its schedule.

    ``run`` performs one run (through the engine) and reports how it ended;
    it may raise (counted as a failure with the exception's exit code) and
    must let cancellation through.
    """

    name: str
    kind: str
    schedule: JobSchedule
    run: Callable[[], Awaitable[RunResult]]


@dataclass(frozen=True)
class Resume:
    """What the checkpoint store says about a scheduled job at start."""

    unfinished: str | None = None  # phase of its newest unfinished run, if any
    last_success: float | None = None  # Unix time of its last successful run, if any

    @property
    def now(self) -> bool:
        """Run at once: an interrupted run (not a failed one, which waits for its turn)."""
        return self.unfinished is not None and self.unfinished != Phase.FAILED


# ------------------------------------------------------------------ progress


class ServiceProgress:
    """The engine's progress reports: logged per scheduled job, and fed to the metrics.

    Implements :class:`replicator.progress.Progress`.  The job's name comes
    from :data:`current_job`; events outside a job loop are only logged.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def _label(self, job: Job) -> str:
        return current_job.get() or job.id

    def _progressed(self, job: Job) -> None:
        name = current_job.get()
        if name is not None:
            self._metrics.progressed(name, job.kind, time.time())

    def started(self, job: Job, resumed: bool) -> None:
        how = "resuming" if resumed else "starting"
        log.info("job %s: %s %s (%s → %s)", self._label(job), how, job.id, job.source, job.target)
        self._progressed(job)

    def phase(self, job: Job, phase: str) -> None:
        log.info("job %s: %s", self._label(job), phase)
        self._progressed(job)

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        log.info(
            "job %s: image of %d bytes, %d already copied",
            self._label(job),
            total_bytes,
            done_bytes,
        )

    def advanced(self, job: Job, nbytes: int) -> None:
        log.debug("job %s: %d more bytes acknowledged", self._label(job), nbytes)
        self._progressed(job)

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        # A retry is not progress: a job retrying forever must look stuck.
        log.info("job %s: retrying in %.1f s (%s)", self._label(job), wait_seconds, reason)

    def note(self, job: Job, text: str) -> None:
        log.info("job %s: %s", self._label(job), text)

    def finished(self, job: Job, outcome: object) -> None:
        del job, outcome  # the service logs the result of each run itself


# ------------------------------------------------------------------- service


class Service:
    """Runs scheduled jobs until :meth:`stop` (see the module docstring)."""

    def __init__(
        self,
        jobs: Sequence[ScheduledJob],
        metrics: ServiceMetrics,
        *,
        resume: Mapping[str, Resume] | None = None,
        grace: float = DEFAULT_GRACE,
        now: Now = _utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"scheduled job names must be unique, got {names}")
        self.jobs = tuple(jobs)
        self.metrics = metrics
        self.grace = grace
        self._resume = dict(resume or {})
        self._now = now
        self._sleep = sleep
        self._stopping = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()
        started = now()
        for job in self.jobs:
            since = self._resume.get(job.name, Resume()).last_success
            metrics.add_job(
                job.name,
                job.kind,
                max_gap=job.schedule.max_gap(job.name, started),
                since=since if since is not None else started.timestamp(),
            )

    @property
    def running(self) -> frozenset[str]:
        """Names of the jobs running now."""
        return frozenset(self._running)

    async def run(self) -> int:
        """Run until :meth:`stop`; returns the exit code of the service."""
        for job in self.jobs:
            log.info("job %s: %s", job.name, job.schedule)
            self._tasks[job.name] = asyncio.create_task(self._loop(job), name=f"job {job.name}")
        await self._stopping.wait()
        return await self._shutdown()

    def stop(self) -> None:
        """Begin a clean stop (safe to call from a signal handler, more than once)."""
        if not self._stopping.is_set():
            log.info("stopping: running jobs stop at their next checkpoint")
        self._stopping.set()

    async def _shutdown(self) -> int:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if not tasks:
            return EXIT_OK
        done, pending = await asyncio.wait(tasks, timeout=self.grace)
        if pending:
            names = ", ".join(sorted(self._running)) or "?"
            log.error(
                "jobs still running after %.0f s (%s): exiting anyway; they resume from their "
                "last checkpoint on the next start",
                self.grace,
                names,
            )
            return EXIT_INTERRUPTED
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("job loop ended with an error", exc_info=task.exception())
        return EXIT_OK

    # -- one job

    async def _loop(self, job: ScheduledJob) -> None:
        current_job.set(job.name)  # this task's context only
        resume = self._resume.get(job.name, Resume())
        if resume.now:
            log.info("job %s: resuming its interrupted run (%s)", job.name, resume.unfinished)
            await self._when_open(job)
            await self._run_once(job)
        while True:
            at = job.schedule.next_run(job.name, self._now())
            self.metrics.scheduled(job.name, job.kind, at.timestamp())
            log.info("job %s: next run at %s", job.name, at.isoformat(timespec="seconds"))
            await self._sleep_until(at)
            await self._run_once(job)

    async def _when_open(self, job: ScheduledJob) -> None:
        now = self._now()
        if job.schedule.is_open(now):
            return
        at = job.schedule.next_run(job.name, now)
        self.metrics.scheduled(job.name, job.kind, at.timestamp())
        await self._sleep_until(at)

    async def _sleep_until(self, at: dt.datetime) -> None:
        while (left := (at - self._now()).total_seconds()) > 0:
            await self._sleep(min(left, _MAX_SLEEP))

    async def _run_once(self, scheduled: ScheduledJob) -> RunResult:
        name, kind = scheduled.name, scheduled.kind
        self._running.add(name)
        self.metrics.run_started(name, kind, time.time())
        started = time.monotonic()
        try:
            result = await self._attempt(scheduled)
        except asyncio.CancelledError:
            self.metrics.run_finished(name, kind, "cancelled", EXIT_INTERRUPTED, time.time())
            log.info("job %s: stopped at its last checkpoint", name)
            raise
        finally:
            self._running.discard(name)
        self.metrics.run_finished(name, kind, result.outcome, result.exit_code, time.time())
        took = time.monotonic() - started
        if result.outcome == "failed":
            log.error(
                "job %s: failed after %.1f s (exit code %d): %s; retrying at its next run",
                name,
                took,
                result.exit_code,
                result.error,
            )
        else:
            log.info("job %s: %s in %.1f s", name, result.outcome, took)
        return result

    async def _attempt(self, scheduled: ScheduledJob) -> RunResult:
        try:
            return await scheduled.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one job's failure must not end the service
            log.debug("job %s raised", scheduled.name, exc_info=exc)
            text = str(exc) or type(exc).__name__
            return RunResult("failed", exit_code_for(exc), text)


# --------------------------------------------------------------- HTTP server


class HttpEndpoints:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one aiohttp server."""

    def __init__(
        self,
        registry: CollectorRegistry,
        checks: Mapping[str, Check],
        *,
        ready_timeout: float = _READY_TIMEOUT,
        refresh: Check | None = None,
    ) -> None:
        self.registry = registry
        self.checks = dict(checks)
        self.ready_timeout = ready_timeout
        self.refresh = refresh
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); returns the port."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        del request
        if self.refresh is not None:
            failed = await self._check(self.refresh)
            if failed is not None:  # serve what is known; the next scrape tries again
                log.warning("could not refresh metrics before a scrape: %s", failed)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        del request
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        del request
        names = list(self.checks)
        results = await asyncio.gather(*(self._check(self.checks[n]) for n in names))
        failed = {n: r for n, r in zip(names, results, strict=True) if r is not None}
        body = {
            "ready": not failed,
            "checks": {n: r or "ok" for n, r in zip(names, results, strict=True)},
        }
        return web.Response(
            text=json.dumps(body, sort_keys=True) + "\n",
            status=503 if failed else 200,
            content_type="application/json",
        )

    async def _check(self, check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), self.ready_timeout)
        except TimeoutError:
            return f"no answer within {self.ready_timeout:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
