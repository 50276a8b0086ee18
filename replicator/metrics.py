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
``replicator_canisters_created_total``         counter    network
``replicator_cycles_spent_total``              counter    —
``replicator_last_checkpoint_timestamp_seconds``  gauge   —
=============================================  =========  ============================

- ``kind``: job kind (``backup``, ``restore``, ``archive-export``, …);
  ``state``: job phase (``pending`` … ``done``/``failed``/``cancelled``).
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from canister_iface import errors as ic
from replicator.chunking import Path
from replicator.jobs import JobKind, Phase
from replicator.retry import REASONS

LIMIT_NAMES = ("time_window", "cycles_budget", "in_flight", "calls_per_second", "bytes_per_second")
ROUTES = ("relay", "direct", "snapshot")
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
            "replicator_jobs", "Jobs by kind and state.", ["kind", "state"], registry=r
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
        self._initialise_series()

    def _initialise_series(self) -> None:
        # Known label values start at 0 so rate() and absent() work from the first scrape.
        for reason in REASONS:
            self.retries.labels(reason)
        for limit in LIMIT_NAMES:
            self.throttle_wait.labels(limit)
        for kind in JobKind:
            for state in Phase:
                self.jobs.labels(kind.value, state.value)

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

    def record_copied(self, kind: JobKind, route: str, nbytes: int, chunks: int) -> None:
        self.bytes_copied.labels(kind.value, route).inc(nbytes)
        self.chunks_copied.labels(kind.value, route).inc(chunks)

    def set_chunk_size(self, path: Path, size: int) -> None:
        self.chunk_size.labels(path.value).set(size)

    def job_moved(self, kind: JobKind, old: Phase | None, new: Phase) -> None:
        """A job entered ``new`` (from ``old``, or newly known when ``None``)."""
        if old is not None:
            self.jobs.labels(kind.value, old.value).dec()
        self.jobs.labels(kind.value, new.value).inc()

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
