"""``replicator serve``: run the scheduled jobs of the configuration as a service.

Every ``[jobs.<name>]`` with a ``schedule`` runs on it (see
:mod:`replicator.schedule` and :mod:`replicator.service`) through one engine,
so the limits of each network are shared by all jobs.  A backup job without
a ``target`` backs its source up into the source's backup canister, created
on its first run.  The HTTP server of ``[metrics]`` (``--metrics-port``;
default port 9464) serves ``/metrics``, ``/healthz`` and ``/readyz``.

With a PostgreSQL store (``--state postgresql://…``, ``[store] url``) the
process is one worker of many sharing the scheduled jobs through a job queue
(:mod:`replicator.workers`): start the same command, with the same config,
on as many machines as wanted.

SIGTERM or SIGINT stop the service: running jobs stop at their next
checkpoint (within ``--grace`` seconds) and the next start resumes them.
Exit codes: 0 after a clean stop, 2 for a configuration that cannot be
served, 130 when jobs did not stop within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from replicator import __version__, kinds
from replicator.checkpoints import JobSummary, Store
from replicator.cli.common import Context, add_command, resolve_identity
from replicator.cli.jobrun import prune_finished
from replicator.config import Config, JobTemplate
from replicator.engine import Engine
from replicator.errors import UsageError
from replicator.job import JobOutcome, JobRequest, Phase
from replicator.limits import CyclesBudget
from replicator.metrics import Metrics, ServiceMetrics
from replicator.pgstore import PostgresStore
from replicator.schedule import JobSchedule
from replicator.service import (
    DEFAULT_GRACE,
    Check,
    HttpEndpoints,
    Resume,
    RunResult,
    ScheduledJob,
    Service,
    ServiceProgress,
)
from replicator.stores import open_configured
from replicator.workers import SharedService

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464  # the replicator's port in deploy/ (prometheus.yml, compose)
_PRUNE_EVERY = 6 * 3600.0  # seconds between prunings of finished jobs


def register(commands: object) -> None:
    parser = add_command(
        commands,
        "serve",
        _serve,
        help="run the scheduled jobs of the config file as a service (/metrics, /healthz, /readyz)",
        description=(
            "Run every [jobs.<name>] of --config that has a schedule, on its schedule, and "
            "serve /metrics, /healthz and /readyz. SIGTERM stops running jobs at a checkpoint; "
            "the next start resumes them."
        ),
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"how long running jobs get to stop at a checkpoint (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        default=None,
        help="address to serve on (default: [metrics] addr, else 127.0.0.1)",
    )


async def _serve(ctx: Context) -> int:
    if not ctx.args.verbose:
        logging.getLogger("replicator.service").setLevel(logging.INFO)
    config = ctx.config
    plans = plan_jobs(config)
    identity = resolve_identity(ctx.args, config)
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=True)
    service_metrics = ServiceMetrics(registry, version=__version__, kinds=kinds.names())
    for network in config.networks:  # known label values start at 0
        metrics.canisters_created.labels(network)
    store = await open_configured(config)
    pruning = asyncio.create_task(_prune_every(store, config.job_retention, _PRUNE_EVERY))
    try:
        progress = ServiceProgress(service_metrics)
        via: dict[str, object] = {} if ctx.via is None else {"via": ctx.via}
        engine = Engine.from_config(config, store, metrics, progress, identity=identity, **via)
        async with engine:
            service = await _service(ctx, plans, store, engine, service_metrics, registry)
            networks = sorted({p.network for p in plans})
            refresh = await _watch_budgets(engine, networks, service_metrics)
            checks = _checks(store, engine, networks)
            if isinstance(service, SharedService):
                checks = {**checks, "queue": service.check}
                refresh = _both(refresh, service.refresh)
            async with _listening(ctx, registry, checks, refresh):
                with _stop_on_signals(service):
                    return await service.run()
    finally:
        pruning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruning
        await store.close()


async def _service(
    ctx: Context,
    plans: Sequence[JobPlan],
    store: Store,
    engine: Engine,
    metrics: ServiceMetrics,
    registry: CollectorRegistry,
) -> Service:
    """One process (SQLite), or one worker of many sharing a PostgreSQL store."""
    scheduled = [p.scheduled(engine) for p in plans]
    if isinstance(store, PostgresStore):
        settings = ctx.config.store
        return SharedService(
            scheduled,
            metrics,
            store=store,
            engine=engine,
            registry=registry,
            takeover=settings.takeover,
            concurrency=settings.concurrency,
            grace=ctx.args.grace,
        )
    summaries = await store.list_jobs()
    return Service(
        scheduled,
        metrics,
        resume={p.name: p.resume(summaries) for p in plans},
        grace=ctx.args.grace,
    )


def _both(first: Check, second: Check) -> Check:
    async def both() -> None:
        await first()
        await second()

    return both


async def _prune_every(store: Store, retention: float | None, every: float) -> None:
    """Keep the store small: forget finished jobs older than ``job_retention``, now and then."""
    while True:
        try:
            await prune_finished(store, retention)
        except Exception as exc:  # pruning is housekeeping: never the service's end
            log.warning("could not prune finished jobs: %s", exc)
        await asyncio.sleep(every)


# --------------------------------------------------------------------- plans


@dataclass(frozen=True)
class JobPlan:
    """A scheduled job of the config, resolved and checked: what one run of it asks for.

    A request without a target (a backup into the source's own backup
    canister) is planned at every run by the kind's planner, which finds or
    creates the target.
    """

    name: str
    schedule: JobSchedule
    request: JobRequest
    network: str  # where its canisters are (readiness checks, budgets)

    def scheduled(self, engine: Engine) -> ScheduledJob:
        async def run() -> RunResult:
            return _result(await self.run(engine))

        return ScheduledJob(self.name, self.request.kind, self.schedule, run)

    async def run(self, engine: Engine) -> JobOutcome:
        return await engine.submit(self.request)  # a fresh id; the engine resumes its twin

    def matches(self, summary: JobSummary) -> bool:
        """Is ``summary`` a run of this job?"""
        request = self.request
        if (summary.kind, summary.source) != (request.kind, str(request.source)):
            return False
        return request.target is None or summary.target == str(request.target)

    def resume(self, summaries: Iterable[JobSummary]) -> Resume:
        """What the checkpoints say: an unfinished newest run, and the last success."""
        runs = [s for s in summaries if self.matches(s)]  # oldest first
        done = [s.updated_at for s in runs if s.phase == Phase.DONE]
        newest = runs[-1].phase if runs else None
        unfinished = None if newest in (None, Phase.DONE) else newest
        return Resume(unfinished=unfinished, last_success=max(done) if done else None)


def plan_jobs(config: Config) -> list[JobPlan]:
    """Every scheduled job of ``config``, checked; a usage error if there is none."""
    plans = [
        JobPlan(name, t.schedule, kinds.configured(config, name), _network(config, t))
        for name, t in config.jobs.items()
        if t.schedule is not None
    ]
    if not plans:
        raise UsageError(
            f"{config.source}: no job has a schedule, so there is nothing to serve: add "
            'schedule = "0 3 * * *" (cron, UTC) or schedule = "every 6h" to a [jobs.<name>] table'
        )
    _check_distinct(plans)
    return plans


def _network(config: Config, template: JobTemplate) -> str:
    return config.network_named(template.network).name


def _check_distinct(plans: Sequence[JobPlan]) -> None:
    # Two jobs doing the same thing would resume each other's runs.
    seen: dict[tuple[str, str, str], str] = {}
    for plan in plans:
        request = plan.request
        what = (request.kind, str(request.source), _text(request.target))
        if what in seen:
            raise UsageError(
                f"jobs {seen[what]!r} and {plan.name!r} copy the same source into the same "
                "target; keep one of them (give it the shorter schedule)"
            )
        seen[what] = plan.name


def _text(endpoint: object | None) -> str:
    return "" if endpoint is None else str(endpoint)


def _result(outcome: JobOutcome) -> RunResult:
    if outcome.phase == Phase.DONE:
        return RunResult("done")
    if outcome.phase == Phase.CANCELLED:
        return RunResult("cancelled", outcome.exit_code, outcome.error)
    return RunResult("failed", outcome.exit_code, outcome.error)


# --------------------------------------------------------------- the server


def _checks(store: Store, engine: Engine, networks: Sequence[str]) -> Mapping[str, Check]:
    async def store_answers() -> None:
        await store.find_resumable("readyz")

    def network_answers(network: str) -> Check:
        async def check() -> None:
            await engine.agent(network).status()

        return check

    return {"store": store_answers, **{f"network:{n}": network_answers(n) for n in networks}}


async def _watch_budgets(engine: Engine, networks: Sequence[str], metrics: ServiceMetrics) -> Check:
    """Export each network's budget; the check returned re-reads them from the store.

    The store counts what every process using it spent in the current period,
    so the gauge is read anew before each scrape rather than kept in memory.
    """
    budgets = [b for n in networks if (b := engine.limited(n).budget) is not None]

    async def refresh() -> None:
        for budget in budgets:
            await budget.refresh()

    await refresh()
    for budget in budgets:
        metrics.watch_budget(budget.scope, budget.budget, _remaining(budget))
    return refresh


def _remaining(budget: CyclesBudget) -> Callable[[], float]:
    return lambda: float(budget.remaining)


@contextlib.asynccontextmanager
async def _listening(
    ctx: Context, registry: CollectorRegistry, checks: Mapping[str, Check], refresh: Check
) -> AsyncIterator[None]:
    settings = ctx.config.metrics
    addr = ctx.args.metrics_addr or settings.addr
    port = DEFAULT_PORT if settings.port is None else settings.port
    endpoints = HttpEndpoints(registry, checks, refresh=refresh)
    try:
        await endpoints.start(addr, port)
    except OSError as exc:
        raise UsageError(
            f"cannot serve on {addr}:{port}: {exc.strerror or exc}; choose another "
            "--metrics-port (or [metrics] port)"
        ) from None
    try:
        url = f"http://{addr}:{endpoints.port}"
        ctx.renderer.note(f"serving {url}/metrics, /healthz and /readyz", url=url)
        yield
    finally:
        await endpoints.close()


@contextlib.contextmanager
def _stop_on_signals(service: Service) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, service.stop)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
