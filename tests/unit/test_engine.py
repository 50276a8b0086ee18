"""The engine without a network: settings, bad options, cancellation, resumption."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from canister_iface import errors as ic
from canister_iface.identity import Identity
from replicator import kinds
from replicator.checkpoints import SqliteStore
from replicator.engine import Engine
from replicator.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_ICRP,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    CheckpointError,
    UsageError,
)
from replicator.flow import Kind, PlanContext, RunContext, RunReport
from replicator.job import CanisterRef, Job, JobOutcome, JobRequest, JobState, Phase, new_job_id
from replicator.joblock import JobLocked
from replicator.machine import Cancel, Fail, Start, Step, started, stopped
from replicator.metrics import Metrics
from replicator.progress import RecordingProgress
from replicator.settings import EngineSettings

APP = CanisterRef("sppxf-mqaaa-fake2-aaaaa-cai", "local")  # made-up ids
BACKUP = CanisterRef("kipf3-nqaaa-fake3-aaaaa-cai", "local")


class FakeAgent:
    """Answers every call with ``answer`` (an exception to raise), or never."""

    def __init__(self, answer: BaseException | None = None) -> None:
        self.identity = Identity.anonymous()
        self.answer = answer
        self.calls: list[str] = []
        self.called = asyncio.Event()

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        return await self._answer(method)

    async def update(self, canister_id: bytes, method: str, arg: bytes, **_: Any) -> bytes:
        return await self._answer(method)

    async def _answer(self, method: str) -> bytes:
        self.calls.append(method)
        self.called.set()
        if self.answer is None:
            await asyncio.sleep(3600)
            raise AssertionError("never answered")
        raise self.answer


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "checkpoints.sqlite3") as store:
        yield store


def _job(kind: str, source: CanisterRef, target: CanisterRef, **options: object) -> Job:
    return Job(kind, source, target, options=options, id=new_job_id(kind))  # type: ignore[arg-type]


def engine(
    store: SqliteStore, agent: FakeAgent, progress: RecordingProgress | None = None
) -> Engine:
    return Engine(EngineSettings(), store, Metrics(), progress, agents={"local": agent})  # type: ignore[dict-item]


def test_settings_refuse_unknown_routes_and_creation_methods() -> None:
    with pytest.raises(UsageError, match="via"):
        EngineSettings(via="pigeon")
    with pytest.raises(UsageError, match="create_with"):
        EngineSettings(create_with="magic")
    with pytest.raises(UsageError, match="concurrency"):
        EngineSettings(concurrency=0)


async def test_a_bad_option_fails_the_job_with_the_usage_exit_code(store: SqliteStore) -> None:
    agent = FakeAgent()
    job = _job("restore", BACKUP, APP, snapshot="newest")
    async with engine(store, agent) as e:
        outcome = await e.run(job)
    assert outcome.phase == Phase.FAILED
    assert outcome.exit_code == EXIT_USAGE
    assert "snapshot must be an integer" in (outcome.error or "")
    assert agent.calls == []
    assert (await store.load(job.id)).state.phase == Phase.FAILED


async def test_a_canister_without_icrp_fails_the_job_and_the_rerun_resumes_it(
    store: SqliteStore,
) -> None:
    missing = ic.MethodNotFound(
        "no query method icrp_info",
        call=ic.CallInfo(APP.canister_id, "icrp_info", "query"),
    )
    agent = FakeAgent(missing)
    job = _job("backup", APP, BACKUP)
    async with engine(store, agent) as e:
        first = await e.run(job)
        second = await e.run(_job("backup", APP, BACKUP, via="relay"))
    assert first.exit_code == EXIT_NOT_ICRP
    assert second.exit_code == EXIT_NOT_ICRP
    assert second.resumed
    assert second.job.id == first.job.id  # the same job, re-run
    assert second.job.options == {"via": "relay"}  # with this run's options
    assert (await store.load(job.id)).state.starts == 2
    # Each run that ended counts as finished; neither is still in the gauge.
    assert _finished(e.metrics, "backup") == {"done": 0, "failed": 2, "cancelled": 0}
    assert _jobs_now(e.metrics, "backup") == 0


async def test_cancellation_records_the_job_as_cancelled_and_propagates(
    store: SqliteStore,
) -> None:
    agent, progress = FakeAgent(), RecordingProgress()
    job = _job("backup", APP, BACKUP)
    async with engine(store, agent, progress) as e:
        task = asyncio.create_task(e.run(job))
        await agent.called.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    state = (await store.load(job.id)).state
    assert state.phase == Phase.CANCELLED
    assert state.exit_code == EXIT_INTERRUPTED
    (finished,) = progress.named("finished")
    outcome = finished.args[0]
    assert isinstance(outcome, JobOutcome)
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert progress.phases() == [Phase.PREPARING, Phase.CANCELLED]
    assert _finished(e.metrics, "backup") == {"done": 0, "failed": 0, "cancelled": 1}
    assert _jobs_now(e.metrics, "backup") == 0


async def test_resume_of_an_unknown_job_names_the_store(store: SqliteStore) -> None:
    async with engine(store, FakeAgent()) as e:
        with pytest.raises(CheckpointError, match="replicator jobs"):
            await e.resume("backup-000000000000")


async def test_an_unexpected_error_fails_the_job_as_a_bug(store: SqliteStore) -> None:
    agent = FakeAgent(RuntimeError("boom"))
    async with engine(store, agent) as e:
        outcome = await e.run(_job("backup", APP, BACKUP))
    assert outcome.exit_code == EXIT_FAILED
    assert "this is a bug" in (outcome.error or "")


async def test_the_same_job_cannot_run_twice_at_once(store: SqliteStore) -> None:
    agent = FakeAgent()
    async with engine(store, agent) as e:
        first = asyncio.create_task(e.run(_job("backup", APP, BACKUP)))
        await agent.called.wait()
        with pytest.raises(JobLocked, match=rf"already running: pid {os.getpid()} on host") as info:
            await e.run(_job("backup", APP, BACKUP))
        assert info.value.exit_code == EXIT_TEMPORARY
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


# ------------------------------------------------- jobs gauge and finished counter


def _finished(metrics: Metrics, kind: str) -> dict[str, float | None]:
    return {
        outcome: metrics.registry.get_sample_value(
            "replicator_jobs_finished_total", {"kind": kind, "outcome": outcome}
        )
        for outcome in ("done", "failed", "cancelled")
    }


def _jobs_now(metrics: Metrics, kind: str) -> float:
    """The jobs of ``kind`` in the gauge, summed over every phase."""
    values = [
        metrics.registry.get_sample_value("replicator_jobs", {"kind": kind, "state": p.value})
        for p in Phase
    ]
    return sum(v for v in values if v is not None)


UNFINISHED = (Phase.PENDING, Phase.PREPARING, Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING)


@pytest.mark.parametrize("end", [Phase.DONE, Phase.FAILED])
async def test_a_job_that_ends_is_no_longer_counted_in_the_gauge(
    store: SqliteStore, end: Phase
) -> None:
    job = _job("backup", APP, BACKUP)
    async with engine(store, FakeAgent()) as e:
        for phase in UNFINISHED:
            e.track(job, phase)
            assert _jobs_now(e.metrics, "backup") == 1
        e.track(job, end)
        e.track(job, end)  # a repeated report of the same phase changes nothing
    assert _jobs_now(e.metrics, "backup") == 0
    expected = {"done": 0.0, "failed": 0.0, "cancelled": 0.0, end.value: 1.0}
    assert _finished(e.metrics, "backup") == expected


async def test_a_resumed_job_is_counted_once(store: SqliteStore) -> None:
    metrics = Metrics()
    job = _job("backup", APP, BACKUP)
    settings = EngineSettings()
    agents: Any = {"local": FakeAgent()}
    async with (
        Engine(settings, store, metrics, agents=agents) as first,
        Engine(settings, store, metrics, agents=agents) as second,
    ):
        # Interrupted in copying, then resumed by another engine of the process.
        first.track(job, Phase.PENDING)
        first.track(job, Phase.COPYING)
        second.track(job, Phase.COPYING)
        assert _jobs_now(metrics, "backup") == 1
        second.track(job, Phase.DONE)
        assert _jobs_now(metrics, "backup") == 0
        assert _finished(metrics, "backup") == {"done": 1, "failed": 0, "cancelled": 0}

        # Failed here, then resumed from its stored phase: the failure counts
        # once, the run that resumes it starts counting at preparing.
        other = _job("backup", BACKUP, APP)
        first.track(other, Phase.PREPARING)
        first.track(other, Phase.FAILED)
        second.track(other, Phase.FAILED)  # a run starts from the stored phase
        assert _jobs_now(metrics, "backup") == 0
        second.track(other, Phase.PREPARING)
        assert _jobs_now(metrics, "backup") == 1
        second.track(other, Phase.DONE)
    assert _jobs_now(metrics, "backup") == 0
    assert _finished(metrics, "backup") == {"done": 2, "failed": 1, "cancelled": 0}


# ------------------------------------------------- a kind the engine has never heard of


@dataclass(frozen=True)
class Work:
    """The one effect of the test kind."""

    name: str


@dataclass(frozen=True)
class Worked:
    """Its event."""


def _advance_echo(state: JobState, event: object) -> Step:
    match event:
        case Start():
            return Step(started(state, "working"), (Work(state.job.id),))
        case Worked():
            return Step(replace(state, phase=Phase.DONE, detail={"echoed": True}))
        case Fail() | Cancel():
            return stopped(state, event)
    raise TypeError(event)


class _EchoPerformer:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    async def perform(self, effect: object) -> object | None:
        assert isinstance(effect, Work)
        self.ctx.note(f"worked on {effect.name}")
        return Worked()

    def report(self, state: JobState) -> RunReport:
        return RunReport(details={"echoed": state.detail.get("echoed")})

    async def close(self) -> None:
        return None


async def _plan_echo(ctx: PlanContext, request: JobRequest) -> Job:
    # Two plans interleave here; each must keep its own notes.
    ctx.note(f"planning {request.source}")
    await asyncio.sleep(0.01)
    ctx.note(f"planned {request.source}")
    return request.job()


ECHO = kinds.register(
    Kind(
        name="test-echo",
        summary="a kind only the tests know",
        advance=_advance_echo,
        performer=_EchoPerformer,
        plan=_plan_echo,
        phases=("working",),
    )
)


async def test_any_registered_kind_runs_and_concurrent_plans_keep_their_notes(
    store: SqliteStore,
) -> None:
    progress = RecordingProgress()
    async with engine(store, FakeAgent(), progress) as e:
        first, second = await asyncio.gather(
            e.submit(JobRequest("test-echo", APP, BACKUP)),
            e.submit(JobRequest("test-echo", BACKUP, APP)),
        )
    assert first.ok
    assert second.ok
    assert first.details == {"echoed": True}
    assert first.notes == (f"planning {APP}", f"planned {APP}", f"worked on {first.job.id}")
    assert second.notes == (
        f"planning {BACKUP}",
        f"planned {BACKUP}",
        f"worked on {second.job.id}",
    )
    assert (await store.load(first.job.id)).state.detail == {"echoed": True}
    assert (
        e.metrics.registry.get_sample_value(
            "replicator_jobs_finished_total", {"kind": "test-echo", "outcome": "done"}
        )
        == 2
    )


async def test_an_unknown_kind_is_a_usage_error_before_anything_is_recorded(
    store: SqliteStore,
) -> None:
    async with engine(store, FakeAgent()) as e:
        with pytest.raises(UsageError, match="no job kind 'teleport'"):
            await e.submit(JobRequest("teleport", APP, BACKUP))
    assert await store.list_jobs() == []
