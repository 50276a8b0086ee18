"""replicator.service: scheduled runs, failures kept local, resume, clean stop, HTTP endpoints.

The schedules run in scaled time: a minute of the service's clock passes in
a fraction of a real second, so concurrency behaves as it really would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from replicator import kinds
from replicator.errors import EXIT_INTERRUPTED, EXIT_OK, NotIcrpError
from replicator.job import CanisterRef, Job, Phase
from replicator.limits import Window
from replicator.metrics import Metrics, ServiceMetrics
from replicator.schedule import Every, JobSchedule
from replicator.service import (
    HttpEndpoints,
    Resume,
    RunResult,
    ScheduledJob,
    Service,
    ServiceProgress,
    current_job,
)

SPEED = 600.0  # service seconds per real second
START = dt.datetime(2026, 3, 1, 10, 0, 30, tzinfo=dt.UTC)


class ScaledClock:
    def __init__(self, start: dt.datetime = START) -> None:
        self.start = start
        self.real0 = time.monotonic()

    def now(self) -> dt.datetime:
        elapsed = (time.monotonic() - self.real0) * SPEED
        return self.start + dt.timedelta(seconds=elapsed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / SPEED)


JOB = Job(
    "backup",
    CanisterRef("sppxf-mqaaa-fake2-aaaaa-cai", "local"),
    CanisterRef("kipf3-nqaaa-fake3-aaaaa-cai", "local"),
    id="backup-1",
)


class FakeRunner:
    """Records runs; ``behaviour[name]`` decides how a run of that job ends.

    Reports to a :class:`ServiceProgress` as the engine would.
    """

    def __init__(self, behaviour: dict[str, Callable[[], object]] | None = None) -> None:
        self.behaviour = behaviour or {}
        self.runs: list[str] = []
        self.cancelled: list[str] = []
        self.concurrent: Counter[str] = Counter()
        self.max_concurrent: Counter[str] = Counter()
        self.started = asyncio.Event()
        self.progress: ServiceProgress | None = None

    def job(self, name: str, every: float = 60, **kw: object) -> ScheduledJob:
        async def run() -> RunResult:
            return await self.run(name)

        schedule = JobSchedule(Every(every), **kw)  # type: ignore[arg-type]
        return ScheduledJob(name, "backup", schedule, run)

    async def run(self, name: str) -> RunResult:
        assert current_job.get() == name
        self.runs.append(name)
        self.started.set()
        self.concurrent[name] += 1
        self.max_concurrent[name] = max(self.max_concurrent[name], self.concurrent[name])
        if self.progress is not None:
            self.progress.started(JOB, False)
        try:
            action = self.behaviour.get(name)
            result = action() if action is not None else None
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, RunResult):
                return result
            if self.progress is not None:
                self.progress.phase(JOB, Phase.DONE)
            return RunResult("done")
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.concurrent[name] -= 1


def _metrics() -> tuple[CollectorRegistry, ServiceMetrics]:
    registry = CollectorRegistry()
    Metrics(registry)
    return registry, ServiceMetrics(registry, version="9.9.9", kinds=kinds.names())


def _value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    value = registry.get_sample_value(metric, labels)
    assert value is not None, (metric, labels)
    return value


async def _run_for(service: Service, seconds: float) -> int:
    task = asyncio.create_task(service.run())
    await asyncio.sleep(seconds / SPEED)
    service.stop()
    return await asyncio.wait_for(task, 5)


async def test_a_failing_job_does_not_stop_the_others_and_is_counted() -> None:
    def fail() -> None:
        raise NotIcrpError("canister xyz has no icrp_info: not an ICRP canister")

    async def fail_later() -> RunResult:
        await asyncio.sleep(0)
        return RunResult("failed", 75, "network down")

    registry, metrics = _metrics()
    clock = ScaledClock()
    runner = FakeRunner({"broken": fail, "flaky": fail_later})
    jobs = [runner.job("good"), runner.job("broken"), runner.job("flaky")]
    runner.progress = ServiceProgress(metrics)
    service = Service(jobs, metrics, now=clock.now, sleep=clock.sleep)
    assert await _run_for(service, 5 * 60) == EXIT_OK

    runs = Counter(runner.runs)
    assert runs["good"] >= 4, runs
    assert runs["broken"] >= 4, runs  # retried at every run
    assert runs["flaky"] >= 4, runs
    v = lambda metric, **labels: _value(registry, metric, **labels)  # noqa: E731
    done = v("replicator_job_runs_total", kind="backup", outcome="done")
    failed = v("replicator_job_runs_total", kind="backup", outcome="failed")
    assert done == runs["good"]
    assert failed == runs["broken"] + runs["flaky"]
    reasons = "replicator_job_failures_total"
    assert v(reasons, kind="backup", reason="not_icrp") == runs["broken"]
    assert v(reasons, kind="backup", reason="temporary") == runs["flaky"]
    assert v(reasons, kind="restore", reason="not_icrp") == 0  # every series from the start
    streak = "replicator_schedule_consecutive_failures"
    assert v(streak, name="broken", kind="backup") == runs["broken"]
    assert v(streak, name="good", kind="backup") == 0
    success = "replicator_schedule_last_success_timestamp_seconds"
    assert v(success, name="good", kind="backup") > time.time() - 5
    # Never succeeded: the baseline is when the service started waiting.
    assert v(success, name="broken", kind="backup") == pytest.approx(START.timestamp(), abs=1)
    assert v("replicator_schedule_running", name="good", kind="backup") == 0
    progress = "replicator_schedule_last_progress_timestamp_seconds"
    assert v(progress, name="good", kind="backup") == pytest.approx(time.time(), abs=5)
    assert v("replicator_schedule_max_gap_seconds", name="good", kind="backup") == 60
    next_run = v("replicator_schedule_next_run_timestamp_seconds", name="good", kind="backup")
    assert next_run > START.timestamp() + 4 * 60


async def test_runs_follow_the_schedule() -> None:
    _, metrics = _metrics()
    clock = ScaledClock()
    runner = FakeRunner()
    seen: list[dt.datetime] = []
    runner.behaviour["a"] = lambda: seen.append(clock.now())
    service = Service([runner.job("a", every=120)], metrics, now=clock.now, sleep=clock.sleep)
    await _run_for(service, 7 * 60)
    # 10:02, 10:04, 10:06 (and perhaps 10:07 is too early for the next one).
    assert len(seen) == 3
    for t, minute in zip(seen, (2, 4, 6), strict=True):
        assert t.minute == minute
        assert t.second < 45  # scaled time runs a little late (75 ms real), never early


async def test_a_long_run_is_never_overlapped_by_the_next() -> None:
    _, metrics = _metrics()
    clock = ScaledClock()

    async def slow() -> None:
        await clock.sleep(150)  # longer than the interval

    runner = FakeRunner({"slow": slow})
    service = Service([runner.job("slow")], metrics, now=clock.now, sleep=clock.sleep)
    await _run_for(service, 8 * 60)
    assert runner.max_concurrent["slow"] == 1
    assert 2 <= len(runner.runs) <= 3  # runs that would overlap are skipped, not queued


async def test_unfinished_runs_resume_at_once_failed_ones_wait() -> None:
    _, metrics = _metrics()
    clock = ScaledClock()
    runner = FakeRunner()
    resume = {
        "interrupted": Resume(unfinished=Phase.COPYING),
        "cancelled": Resume(unfinished=Phase.CANCELLED),
        "failed": Resume(unfinished=Phase.FAILED),
        "clean": Resume(last_success=START.timestamp() - 3600),
    }
    jobs = [runner.job(n, every=3600) for n in resume]
    service = Service(jobs, metrics, resume=resume, now=clock.now, sleep=clock.sleep)
    await _run_for(service, 60)  # well before the 11:00 run
    assert sorted(runner.runs) == ["cancelled", "interrupted"]
    success = metrics.registry.get_sample_value(
        "replicator_schedule_last_success_timestamp_seconds", {"name": "clean", "kind": "backup"}
    )
    assert success == START.timestamp() - 3600


async def test_resume_and_runs_wait_for_the_window() -> None:
    _, metrics = _metrics()
    clock = ScaledClock()
    seen: list[dt.datetime] = []
    runner = FakeRunner({"w": lambda: seen.append(clock.now())})
    window = Window.parse("10:05-10:10")
    job = runner.job("w", every=60, windows=(window,))
    resume = {"w": Resume(unfinished=Phase.COPYING)}
    service = Service([job], metrics, resume=resume, now=clock.now, sleep=clock.sleep)
    await _run_for(service, 12 * 60)
    assert seen, "the job never ran"
    assert all(window.is_open(t) for t in seen), seen
    assert seen[0].minute == 5  # the resumed run waited for the window, then the schedule went on
    assert 5 <= len(seen) <= 6


async def test_stop_cancels_running_jobs_at_their_checkpoint() -> None:
    registry, metrics = _metrics()
    clock = ScaledClock()
    forever = asyncio.Event()
    runner = FakeRunner({"long": forever.wait})
    service = Service([runner.job("long")], metrics, now=clock.now, sleep=clock.sleep)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(runner.started.wait(), 5)
    assert service.running
    service.stop()
    service.stop()  # twice is harmless
    assert await asyncio.wait_for(task, 5) == EXIT_OK
    assert runner.cancelled == ["long"]
    assert _value(registry, "replicator_job_runs_total", kind="backup", outcome="cancelled") == 1
    assert _value(registry, "replicator_schedule_running", name="long", kind="backup") == 0


async def test_a_job_that_ignores_the_stop_is_abandoned_after_the_grace() -> None:
    _, metrics = _metrics()
    clock = ScaledClock()
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # a checkpoint that never completes
            raise

    runner = FakeRunner({"stubborn": stubborn})
    service = Service(
        [runner.job("stubborn")], metrics, grace=0.2, now=clock.now, sleep=clock.sleep
    )
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(runner.started.wait(), 5)
    assert service.running
    service.stop()
    assert await asyncio.wait_for(task, 5) == EXIT_INTERRUPTED
    release.set()
    await asyncio.sleep(0.01)


def test_job_names_are_unique() -> None:
    _, metrics = _metrics()
    runner = FakeRunner()
    jobs = [runner.job("a"), runner.job("a")]
    with pytest.raises(ValueError, match="unique"):
        Service(jobs, metrics)


def test_resume_decision() -> None:
    assert Resume(unfinished=Phase.PENDING).now
    assert Resume(unfinished=Phase.VERIFYING).now
    assert not Resume(unfinished=Phase.FAILED).now
    assert not Resume().now


# ---------------------------------------------------------------------- HTTP


async def test_http_endpoints() -> None:
    registry, _ = _metrics()
    healthy = True

    async def store() -> None:
        pass

    async def network() -> None:
        if not healthy:
            raise ConnectionError("connection refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    endpoints = HttpEndpoints(registry, {"store": store, "network:local": network})
    port = await endpoints.start("127.0.0.1", 0)
    assert port > 0
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = await r.text()
            assert 'replicator_build_info{python="' in text
            assert 'version="9.9.9"' in text
            assert "replicator_job_runs_total" in text
            assert "replicator_copied_bytes_total" in text or "replicator_retries_total" in text
            async with http.get(f"{base}/healthz") as r:
                assert (r.status, await r.text()) == (200, "ok\n")
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
                assert await r.json() == {
                    "ready": True,
                    "checks": {"network:local": "ok", "store": "ok"},
                }
            healthy = False
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
                body = await r.json()
            assert body["ready"] is False
            assert body["checks"]["network:local"] == "ConnectionError: connection refused"
            assert body["checks"]["store"] == "ok"
            endpoints.checks["slow"] = hangs
            endpoints.ready_timeout = 0.1
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"]["slow"] == "no answer within 0.1 s"
    finally:
        await endpoints.close()


async def test_a_busy_port_is_an_error() -> None:
    registry, _ = _metrics()
    first = HttpEndpoints(registry, {})
    port = await first.start("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await HttpEndpoints(registry, {}).start("127.0.0.1", port)
    finally:
        await first.close()
