"""The orchestrator's Prometheus metrics, all in one place.

Conventions: every name starts with ``replicator_``, values are in base units
(bytes, seconds, cycles), counters end in ``_total``, and no label carries a
canister id — a fleet has thousands of canisters, and per-canister series
would swamp Prometheus.  Label values come from small fixed sets.

=============================================  =========  ============================
metric                                         type       labels
=============================================  =========  ============================
``replicator_copied_bytes_total``              counter    kind, route
``replicator_copied_chunks_total``             counter    kind, route
``replicator_calls_total``                     counter    method, outcome
``replicator_call_duration_seconds``           histogram  method
``replicator_retries_total``                   counter    reason
``replicator_throttle_wait_seconds_total``     counter    limit
``replicator_chunk_size_bytes``                gauge      path
``replicator_jobs``                            gauge      kind, state
``replicator_jobs_finished_total``             counter    kind, outcome
``replicator_canisters_created_total``         counter    network
``replicator_cycles_spent_total``              counter    —
``replicator_last_checkpoint_timestamp_seconds``  gauge   —
=============================================  =========  ============================

The long-running service (``replicator serve``) adds :class:`ServiceMetrics`:

=======================================================  =========  =====================
metric                                                   type       labels
=======================================================  =========  =====================
``replicator_build_info``                                gauge (1)  version, python
``replicator_job_runs_total``                            counter    kind, outcome
``replicator_job_failures_total``                        counter    kind, reason
``replicator_schedule_last_success_timestamp_seconds``   gauge      name, kind
``replicator_schedule_last_progress_timestamp_seconds``  gauge      name, kind
``replicator_schedule_next_run_timestamp_seconds``       gauge      name, kind
``replicator_schedule_max_gap_seconds``                  gauge      name, kind
``replicator_schedule_consecutive_failures``             gauge      name, kind
``replicator_schedule_running``                          gauge      name, kind
``replicator_cycles_budget``                             gauge      network
``replicator_cycles_budget_remaining``                   gauge      network
=======================================================  =========  =====================

- ``outcome`` of a run: ``done``, ``failed``, ``cancelled``; ``reason`` of a
  failure: :data:`FAILURE_REASONS` (by exit code, see :mod:`replicator.errors`).
- ``name``: a scheduled job's name in the config (``[jobs.<name>]``) — a
  handful per service, never one per canister.  Not ``job``: Prometheus puts
  its scrape job there.

- ``kind``: job kind (``backup``, ``restore``, ``archive-export``, …);
  ``state``: an unfinished job phase (``pending``, ``preparing``, ``copying``,
  ``committing``, ``verifying``) — ``replicator_jobs`` counts the jobs in this
  process now, so a long-running service's series stay small.  A job that
  ends leaves it and counts once in ``replicator_jobs_finished_total``, whose
  ``outcome`` is the terminal phase (``done``, ``failed``, ``cancelled``); a
  job resumed after a failure counts again when that run ends.
- ``route``: ``relay`` (through the orchestrator), ``direct`` (canister to
  canister), ``snapshot`` (management canister snapshot data).
- ``method``: the canister method (``icrp_read``, ``icrp_write``, …) — a
  small, fixed set; ``outcome``: ``ok``, ``transient``, ``permanent``,
  ``cancelled``, ``error``.
- ``reason``: :data:`replicator.retry.REASONS`; ``limit``: the limit names of
  :mod:`replicator.limits`; ``path``: :class:`replicator.chunking.Path`.

:class:`Metrics` takes a ``CollectorRegistry`` (a fresh one by default, so
tests and several orchestrators in one process do not collide);
:meth:`Metrics.record_wait` and :meth:`Metrics.record_retry` have the
signatures the limits and the retry policy call back with.
:func:`serve_metrics` serves ``/metrics`` from a daemon thread.
"""

from __future__ import annotations

import asyncio
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from canister_iface import errors as ic
from replicator import errors
from replicator.chunking import Path
from replicator.job import TERMINAL_PHASES, Phase
from replicator.retry import REASONS
from replicator.routes import Route

E = TypeVar("E")
RUN_OUTCOMES = ("done", "failed", "cancelled")
# A failed run's exit code → the ``reason`` label (a small fixed set).
FAILURE_REASONS = {
    errors.EXIT_FAILED: "failed",
    errors.EXIT_USAGE: "usage",
    errors.EXIT_NOT_ICRP: "not_icrp",
    errors.EXIT_ACCESS_DENIED: "access_denied",
    errors.EXIT_INTEGRITY: "integrity",
    errors.EXIT_BUDGET: "budget",
    errors.EXIT_TEMPORARY: "temporary",
}
LIMIT_NAMES = (
    "time_window",
    "cycles_budget",
    "in_flight",
    "calls_per_second",
    "bytes_per_second",
    "subnet_calls_per_second",
    "subnet_bytes_per_second",
    "global_calls_per_second",
    "global_bytes_per_second",
)
ROUTES = tuple(Route)
OUTCOMES = ("ok", "transient", "permanent", "cancelled", "error")

# IC calls take from tens of milliseconds (queries) to seconds (updates, 2 MiB
# writes through a busy subnet); beyond 2 minutes an ingress message expires.
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of a call that raised ``exc`` (``None``: it succeeded)."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    if isinstance(exc, ic.TransientError):
        return "transient"
    if isinstance(exc, ic.PermanentError):
        return "permanent"
    return "error"


class Metrics:
    """Every ``replicator_*`` metric, registered in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, process_metrics: bool = False
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_metrics:  # CPU, memory, fds: useful for the long-running service
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self.bytes_copied = Counter(
            "replicator_copied_bytes",
            "Image bytes copied and acknowledged by the target.",
            ["kind", "route"],
            registry=r,
        )
        self.chunks_copied = Counter(
            "replicator_copied_chunks",
            "Image chunks copied and acknowledged by the target.",
            ["kind", "route"],
            registry=r,
        )
        self.calls = Counter(
            "replicator_calls",
            "Canister calls by method and outcome.",
            ["method", "outcome"],
            registry=r,
        )
        self.call_duration = Histogram(
            "replicator_call_duration_seconds",
            "Latency of canister calls, retries excluded.",
            ["method"],
            registry=r,
            buckets=CALL_BUCKETS,
        )
        self.retries = Counter(
            "replicator_retries",
            "Retries of transient call errors by reason.",
            ["reason"],
            registry=r,
        )
        self.throttle_wait = Counter(
            "replicator_throttle_wait_seconds",
            "Time calls waited for a limit's permit.",
            ["limit"],
            registry=r,
        )
        self.chunk_size = Gauge(
            "replicator_chunk_size_bytes",
            "Current adaptive transfer size per call.",
            ["path"],
            registry=r,
        )
        self.jobs = Gauge(
            "replicator_jobs",
            "Unfinished jobs of this process by kind and phase (finished jobs leave it).",
            ["kind", "state"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "replicator_jobs_finished",
            "Jobs that ended in this process by kind and outcome (done, failed, cancelled).",
            ["kind", "outcome"],
            registry=r,
        )
        self.canisters_created = Counter(
            "replicator_canisters_created",
            "Canisters created by the orchestrator.",
            ["network"],
            registry=r,
        )
        self.cycles_spent = Counter(
            "replicator_cycles_spent", "Cycles spent (estimated message fees).", registry=r
        )
        self.last_checkpoint = Gauge(
            "replicator_last_checkpoint_timestamp_seconds",
            "Unix time of the last durable checkpoint.",
            registry=r,
        )
        self._extensions: dict[Callable[[CollectorRegistry], object], object] = {}
        self._initialise_series()

    def _initialise_series(self) -> None:
        # Known label values start at 0 so rate() and absent() work from the first scrape.
        for reason in REASONS:
            self.retries.labels(reason)
        for limit in LIMIT_NAMES:
            self.throttle_wait.labels(limit)

    def extension(self, factory: Callable[[CollectorRegistry], E]) -> E:
        """The metrics a job kind adds (``factory(registry)``), made once per registry.

        A kind's flow module keeps its own metrics class (names ``replicator_*``,
        the same conventions); the engine creates it when it starts, so its
        series exist from the first scrape.
        """
        made = self._extensions.get(factory)
        if made is None:
            made = self._extensions[factory] = factory(self.registry)
        return cast(E, made)

    def add_kind(self, kind: str, phases: Iterable[str]) -> None:
        """Start a job kind's series at 0: its unfinished ``phases`` and every outcome."""
        for phase in (Phase.PENDING, *phases):
            self.jobs.labels(kind, phase)
        for outcome in TERMINAL_PHASES:
            self.jobs_finished.labels(kind, outcome)

    # -- callbacks of limits and retries

    def record_wait(self, limit: str, seconds: float) -> None:
        """A call waited ``seconds`` for ``limit`` (a ``limits.WaitObserver``)."""
        if seconds > 0:
            self.throttle_wait.labels(limit).inc(seconds)

    def record_retry(self, reason: str, wait_seconds: float) -> None:
        """A transient error is retried (a ``retry.RetryObserver``)."""
        del wait_seconds
        self.retries.labels(reason).inc()

    # -- calls

    def record_call(self, method: str, outcome: str, seconds: float) -> None:
        self.calls.labels(method, outcome).inc()
        self.call_duration.labels(method).observe(seconds)

    @contextmanager
    def timed_call(self, method: str) -> Iterator[None]:
        """Time the enclosed call and count its outcome; exceptions pass through."""
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.record_call(method, outcome_of(exc), time.perf_counter() - started)
            raise
        self.record_call(method, "ok", time.perf_counter() - started)

    # -- progress

    def record_copied(self, kind: str, route: str, nbytes: int, chunks: int) -> None:
        self.bytes_copied.labels(kind, route).inc(nbytes)
        self.chunks_copied.labels(kind, route).inc(chunks)

    def set_chunk_size(self, path: Path, size: int) -> None:
        self.chunk_size.labels(path.value).set(size)

    def job_moved(self, kind: str, old: str | None, new: str) -> None:
        """A job entered ``new`` from ``old`` (``None``: newly known in this process).

        The gauge holds unfinished phases only.  A job that ends here (an
        unfinished ``old``, a terminal ``new``) leaves it and counts once as
        finished.  A job first seen in a terminal phase — a failed job loaded
        to be resumed — did not end here and counts in neither.
        """
        if old is not None and old not in TERMINAL_PHASES:
            self.jobs.labels(kind, old).dec()
            if new in TERMINAL_PHASES:
                self.jobs_finished.labels(kind, new).inc()
        if new not in TERMINAL_PHASES:
            self.jobs.labels(kind, new).inc()

    def record_checkpoint(self, timestamp: float) -> None:
        self.last_checkpoint.set(timestamp)

    def record_canister_created(self, network: str) -> None:
        self.canisters_created.labels(network).inc()

    def record_cycles_spent(self, cycles: int) -> None:
        if cycles > 0:
            self.cycles_spent.inc(cycles)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``close()`` stops it and frees the port."""

    server: WSGIServer
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(
    port: int, registry: CollectorRegistry, *, addr: str = "127.0.0.1"
) -> MetricsServer:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (see ``MetricsServer.port``).  The default
    address is loopback; bind ``0.0.0.0`` deliberately when Prometheus runs
    on another host (the metrics carry no secrets, but need not be public).
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, int(server.server_port))


def failure_reason(exit_code: int | None) -> str:
    """The ``reason`` label of a run that failed with ``exit_code``."""
    return FAILURE_REASONS.get(exit_code or errors.EXIT_FAILED, "failed")


class ServiceMetrics:
    """The metrics of ``replicator serve``: build, runs, schedules and budgets.

    Registered next to :class:`Metrics` in the same registry.  Schedule
    gauges are per configured job (``name``), all set from :meth:`add_job` on,
    so every series exists from the first scrape.
    """

    def __init__(
        self, registry: CollectorRegistry, *, version: str, kinds: Iterable[str] = ()
    ) -> None:
        r = self.registry = registry
        build = Info("replicator_build", "The running replicator's version.", registry=r)
        build.info({"version": version, "python": platform.python_version()})
        self.job_runs = Counter(
            "replicator_job_runs",
            "Finished job runs by kind and outcome (done, failed, cancelled).",
            ["kind", "outcome"],
            registry=r,
        )
        self.job_failures = Counter(
            "replicator_job_failures",
            "Failed job runs by kind and reason (from the exit code).",
            ["kind", "reason"],
            registry=r,
        )
        job = ["name", "kind"]
        self.last_success = Gauge(
            "replicator_schedule_last_success_timestamp_seconds",
            "Unix time of the job's last successful run (before one: when the service "
            "started waiting for it).",
            job,
            registry=r,
        )
        self.last_progress = Gauge(
            "replicator_schedule_last_progress_timestamp_seconds",
            "Unix time the job last advanced (started, changed phase, copied bytes).",
            job,
            registry=r,
        )
        self.next_run = Gauge(
            "replicator_schedule_next_run_timestamp_seconds",
            "Unix time of the job's next scheduled start.",
            job,
            registry=r,
        )
        self.max_gap = Gauge(
            "replicator_schedule_max_gap_seconds",
            "The longest time between two scheduled starts of the job.",
            job,
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "replicator_schedule_consecutive_failures",
            "Runs of the job that failed in a row (0 after a success).",
            job,
            registry=r,
        )
        self.running = Gauge(
            "replicator_schedule_running", "1 while the job runs, else 0.", job, registry=r
        )
        self.cycles_budget = Gauge(
            "replicator_cycles_budget",
            "The cycles budget of a network's limits per period (only networks with one).",
            ["network"],
            registry=r,
        )
        self.cycles_budget_remaining = Gauge(
            "replicator_cycles_budget_remaining",
            "Cycles left in a network's budget for the current period, counting what every "
            "process using the same checkpoint store spent.",
            ["network"],
            registry=r,
        )
        for kind in kinds:
            self.add_kind(kind)

    def add_kind(self, kind: str) -> None:
        """Start a job kind's run and failure series at 0."""
        for outcome in RUN_OUTCOMES:
            self.job_runs.labels(kind, outcome)
        for reason in FAILURE_REASONS.values():
            self.job_failures.labels(kind, reason)

    def add_job(self, name: str, kind: str, *, max_gap: float, since: float) -> None:
        """A scheduled job is known: ``since`` is its last success (or the start time)."""
        labels = (name, kind)
        self.max_gap.labels(*labels).set(max_gap)
        self.last_success.labels(*labels).set(since)
        self.last_progress.labels(*labels).set(since)
        self.consecutive_failures.labels(*labels).set(0)
        self.running.labels(*labels).set(0)
        self.next_run.labels(*labels)

    def scheduled(self, name: str, kind: str, at: float) -> None:
        self.next_run.labels(name, kind).set(at)

    def run_started(self, name: str, kind: str, at: float) -> None:
        self.running.labels(name, kind).set(1)
        self.progressed(name, kind, at)

    def progressed(self, name: str, kind: str, at: float) -> None:
        self.last_progress.labels(name, kind).set(at)

    def run_finished(
        self, name: str, kind: str, outcome: str, exit_code: int | None, at: float
    ) -> None:
        """A run ended: ``outcome`` is one of :data:`RUN_OUTCOMES`."""
        labels = (name, kind)
        self.running.labels(*labels).set(0)
        self.job_runs.labels(kind, outcome).inc()
        if outcome == "done":
            self.last_success.labels(*labels).set(at)
            self.consecutive_failures.labels(*labels).set(0)
        elif outcome == "failed":
            self.job_failures.labels(kind, failure_reason(exit_code)).inc()
            self.consecutive_failures.labels(*labels).inc()

    def watch_budget(self, network: str, budget: int, remaining: Callable[[], float]) -> None:
        """Export a network's cycles budget; ``remaining`` is read at every scrape."""
        self.cycles_budget.labels(network).set(budget)
        self.cycles_budget_remaining.labels(network).set_function(remaining)


class CyclesMetrics:
    """The cycles of the backup canisters the orchestrator created and watches.

    Made once per registry (``Metrics.extension(CyclesMetrics)``) by the
    kinds that watch them (backup, restore), so the series exist from the
    first scrape.  No canister id is a label: the gauges summarise every
    watched canister of this process (its latest reading of each), and the
    days are projected to the time of the scrape, so they fall even when no
    job runs — an alert fires before a canister could freeze.

    ===============================================================  =======  =======
    metric                                                           type     labels
    ===============================================================  =======  =======
    ``replicator_backup_canisters_watched``                          gauge    —
    ``replicator_backup_canister_freeze_days_min``                   gauge    —
    ``replicator_backup_canister_cycles_min``                        gauge    —
    ``replicator_backup_canisters_low``                              gauge    —
    ``replicator_backup_canister_checks_total``                      counter  outcome
    ``replicator_backup_canister_top_ups_total``                     counter  outcome
    ``replicator_backup_canister_top_up_cycles_total``               counter  —
    ===============================================================  =======  =======

    ``checks`` outcome: ``ok``, ``unreadable`` (the identity may not read the
    status: nothing watches that canister); ``top_ups`` outcome: ``ok``,
    ``failed``, ``off`` (one was needed but top-ups are off).  With no
    canister watched the minimum days are +Inf.
    """

    CHECK_OUTCOMES = ("ok", "unreadable")
    TOP_UP_OUTCOMES = ("ok", "failed", "off", "budget")

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        # canister → (days left, balance, below the floor, when read)
        self._latest: dict[str, tuple[float, int, bool, float]] = {}
        r = registry
        Gauge(
            "replicator_backup_canisters_watched",
            "Created backup canisters whose cycles this process has read.",
            registry=r,
        ).set_function(lambda: len(self._latest))
        Gauge(
            "replicator_backup_canister_freeze_days_min",
            "The fewest days any watched backup canister has before it freezes at its idle "
            "burn, projected to now from its latest reading (+Inf: none watched).",
            registry=r,
        ).set_function(self._days_min)
        Gauge(
            "replicator_backup_canister_cycles_min",
            "The lowest cycles balance of the watched backup canisters at their latest reading "
            "(+Inf: none watched).",
            registry=r,
        ).set_function(self._cycles_min)
        Gauge(
            "replicator_backup_canisters_low",
            "Watched backup canisters below their top-up floor at their latest reading (a "
            "top-up was needed and did not happen).",
            registry=r,
        ).set_function(lambda: sum(1 for v in self._latest.values() if v[2]))
        self.checks = Counter(
            "replicator_backup_canister_checks",
            "Readings of a created backup canister's cycles by outcome.",
            ["outcome"],
            registry=r,
        )
        self.top_ups = Counter(
            "replicator_backup_canister_top_ups",
            "Top-ups of created backup canisters by outcome (ok, failed, off, budget: a fleet's "
            "cycles budget refused it).",
            ["outcome"],
            registry=r,
        )
        self.top_up_cycles = Counter(
            "replicator_backup_canister_top_up_cycles",
            "Cycles sent to created backup canisters.",
            registry=r,
        )
        for outcome in self.CHECK_OUTCOMES:
            self.checks.labels(outcome)
        for outcome in self.TOP_UP_OUTCOMES:
            self.top_ups.labels(outcome)

    def observed(self, canister: str, *, days_left: float, cycles: int, low: bool) -> None:
        """A reading of ``canister`` (after any top-up)."""
        self.checks.labels("ok").inc()
        self._latest[canister] = (days_left, cycles, low, self._clock())

    def unreadable(self) -> None:
        self.checks.labels("unreadable").inc()

    def topped_up(self, cycles: int) -> None:
        self.top_ups.labels("ok").inc()
        self.top_up_cycles.inc(cycles)

    def top_up_missed(self, outcome: str) -> None:
        """A top-up was needed and not made: ``failed``, ``off`` or ``budget``."""
        self.top_ups.labels(outcome).inc()

    def _days_min(self) -> float:
        now = self._clock()
        days = [d - (now - at) / 86_400 for d, _, _, at in self._latest.values()]
        return max(0.0, min(days)) if days else math.inf

    def _cycles_min(self) -> float:
        return float(min((c for _, c, _, _ in self._latest.values()), default=math.inf))
