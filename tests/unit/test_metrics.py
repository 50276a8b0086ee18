"""The replicator_* metrics and the /metrics endpoint."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from canister_iface import errors as ic
from replicator import kinds
from replicator.chunking import Path
from replicator.job import Phase
from replicator.limits import CallSpec, Direct, InFlight, LimitSettings, build_caller
from replicator.metrics import Metrics, outcome_of, serve_metrics
from replicator.retry import RetryPolicy, call_with_retries


@pytest.fixture
def metrics() -> Metrics:
    """Metrics with the built-in kinds' series started, as an engine starts them."""
    metrics = Metrics(CollectorRegistry())
    for kind in kinds.registered():
        metrics.add_kind(kind.name, kind.phases)
    return metrics


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_names_follow_the_conventions(metrics: Metrics) -> None:
    families = list(metrics.registry.collect())
    assert families
    for family in families:
        assert family.name.startswith("replicator_"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            assert "canister" not in sample.labels, sample.name
    names = {f.name for f in families}
    expected = {
        "replicator_copied_bytes",
        "replicator_copied_chunks",
        "replicator_calls",
        "replicator_call_duration_seconds",
        "replicator_retries",
        "replicator_throttle_wait_seconds",
        "replicator_chunk_size_bytes",
        "replicator_jobs",
        "replicator_jobs_finished",
        "replicator_canisters_created",
        "replicator_cycles_spent",
        "replicator_last_checkpoint_timestamp_seconds",
    }
    assert expected <= names


def test_known_series_exist_from_the_start(metrics: Metrics) -> None:
    assert _value(metrics, "replicator_retries_total", reason="rate_limited") == 0
    assert _value(metrics, "replicator_throttle_wait_seconds_total", limit="bytes_per_second") == 0
    assert _value(metrics, "replicator_jobs", kind="archive-export", state="copying") == 0
    assert _value(metrics, "replicator_jobs_finished_total", kind="verify", outcome="failed") == 0
    # Finished jobs are not "jobs by state": the gauge has no terminal series.
    assert _value(metrics, "replicator_jobs", kind="archive-export", state="failed") is None
    # A kind has series for its own phases only.
    assert _value(metrics, "replicator_jobs", kind="verify", state="verifying") == 0
    assert _value(metrics, "replicator_jobs", kind="verify", state="copying") is None


def test_progress_and_jobs(metrics: Metrics) -> None:
    metrics.record_copied("backup", "direct", 3_000_000, 3)
    metrics.record_copied("backup", "direct", 1_000, 1)
    assert (
        _value(metrics, "replicator_copied_bytes_total", kind="backup", route="direct") == 3_001_000
    )
    assert _value(metrics, "replicator_copied_chunks_total", kind="backup", route="direct") == 4
    metrics.job_moved("backup", None, Phase.PENDING)
    metrics.job_moved("backup", Phase.PENDING, Phase.PREPARING)
    assert _value(metrics, "replicator_jobs", kind="backup", state="pending") == 0
    assert _value(metrics, "replicator_jobs", kind="backup", state="preparing") == 1
    metrics.set_chunk_size(Path.WRITE, 1_048_576)
    assert _value(metrics, "replicator_chunk_size_bytes", path="write") == 1_048_576
    metrics.record_checkpoint(1_790_000_000.5)
    assert _value(metrics, "replicator_last_checkpoint_timestamp_seconds") == 1_790_000_000.5
    metrics.record_canister_created("local")
    metrics.record_cycles_spent(500_000_000_000)
    assert _value(metrics, "replicator_canisters_created_total", network="local") == 1
    assert _value(metrics, "replicator_cycles_spent_total") == 500_000_000_000


def test_timed_call_counts_outcomes_and_lets_exceptions_through(metrics: Metrics) -> None:
    with metrics.timed_call("icrp_read"):
        pass
    with pytest.raises(ic.TransientError), metrics.timed_call("icrp_read"):
        raise ic.TransientError("busy")
    with pytest.raises(ic.AccessDenied), metrics.timed_call("icrp_write"):
        raise ic.AccessDenied("no")
    assert _value(metrics, "replicator_calls_total", method="icrp_read", outcome="ok") == 1
    assert _value(metrics, "replicator_calls_total", method="icrp_read", outcome="transient") == 1
    assert _value(metrics, "replicator_calls_total", method="icrp_write", outcome="permanent") == 1
    assert _value(metrics, "replicator_call_duration_seconds_count", method="icrp_read") == 2


def test_outcomes() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(asyncio.CancelledError()) == "cancelled"
    assert outcome_of(KeyboardInterrupt()) == "cancelled"
    assert outcome_of(ic.CallTimeout("t")) == "transient"
    assert outcome_of(ic.PayloadTooLarge("p")) == "permanent"
    assert outcome_of(ValueError()) == "error"


async def test_limits_and_retries_report_into_the_metrics(metrics: Metrics) -> None:
    limit = InFlight(Direct(), total=1, per_canister=1, observer=metrics.record_wait)
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    async def quick() -> None:
        return None

    first = asyncio.create_task(limit.call(CallSpec("a", "m"), hold))
    await asyncio.sleep(0)
    second = asyncio.create_task(limit.call(CallSpec("a", "m"), quick))
    await asyncio.sleep(0.02)
    gate.set()
    await asyncio.gather(first, second)
    assert (_value(metrics, "replicator_throttle_wait_seconds_total", limit="in_flight") or 0) > 0

    failures = [ic.classify(ic.HttpFailure(429, "", "0")), ic.classify(ic.HttpFailure(503, ""))]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    async def no_sleep(seconds: float) -> None:
        return None

    policy = RetryPolicy(initial_wait=0.01)
    await call_with_retries(flaky, policy, on_retry=metrics.record_retry, sleep=no_sleep)
    assert _value(metrics, "replicator_retries_total", reason="rate_limited") == 1
    assert _value(metrics, "replicator_retries_total", reason="overloaded") == 1
    assert build_caller(LimitSettings(), observer=metrics.record_wait)  # the signatures fit


def test_serve_metrics_on_a_free_port() -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=True)
    metrics.record_copied("restore", "relay", 10, 1)
    server = serve_metrics(0, metrics.registry)
    try:
        assert server.port > 0
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert 'replicator_copied_bytes_total{kind="restore",route="relay"} 10.0' in body
        assert "process_cpu_seconds_total" in body
    finally:
        server.close()


def _jobs_now(m: Metrics, kind: str) -> dict[str, float | None]:
    return {p.value: _value(m, "replicator_jobs", kind=kind, state=p.value) for p in Phase}


def _finished(m: Metrics, kind: str) -> dict[str, float | None]:
    return {
        o: _value(m, "replicator_jobs_finished_total", kind=kind, outcome=o)
        for o in ("done", "failed", "cancelled")
    }


@pytest.mark.parametrize("end", [Phase.DONE, Phase.FAILED, Phase.CANCELLED])
def test_a_job_that_ends_leaves_the_gauge_and_counts_once_as_finished(
    metrics: Metrics, end: Phase
) -> None:
    path = [Phase.PENDING, Phase.PREPARING, Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING]
    old: Phase | None = None
    for phase in path:
        metrics.job_moved("restore", old, phase)
        assert _jobs_now(metrics, "restore")[phase.value] == 1
        old = phase
    metrics.job_moved("restore", old, end)
    # 0 in every unfinished phase; no series at all for the terminal ones.
    assert _jobs_now(metrics, "restore") == {p.value: 0 if p in path else None for p in Phase}
    finished = {"done": 0.0, "failed": 0.0, "cancelled": 0.0, end.value: 1.0}
    assert _finished(metrics, "restore") == finished
    assert _finished(metrics, "backup") == {"done": 0, "failed": 0, "cancelled": 0}


def test_a_job_first_seen_finished_counts_nowhere_until_it_ends_again(metrics: Metrics) -> None:
    # A failed job loaded to be resumed did not fail in this process.
    metrics.job_moved("backup", None, Phase.FAILED)
    assert _finished(metrics, "backup") == {"done": 0, "failed": 0, "cancelled": 0}
    metrics.job_moved("backup", Phase.FAILED, Phase.PREPARING)
    assert _jobs_now(metrics, "backup")["preparing"] == 1
    metrics.job_moved("backup", Phase.PREPARING, Phase.DONE)
    assert _jobs_now(metrics, "backup")["preparing"] == 0
    assert _finished(metrics, "backup") == {"done": 1, "failed": 0, "cancelled": 0}
