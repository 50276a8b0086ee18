"""``replicator serve`` scraped by a real Prometheus: every overview dashboard query has data.

The service runs as a subprocess against localnet with two jobs every few
seconds: a backup of a demo app (into a backup canister it creates on the
first run) and a backup of a canister that does not exist (it fails every
run).  A real Prometheus (Debian's ``prometheus`` package) scrapes it every
second with the repository's alert rules loaded.  Once the good job has
succeeded twice and the bad one failed twice, every panel query of the
overview dashboard (``grafana/dashboards/overview.json``) runs through Prometheus's HTTP API and
must return at least one series.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import ROOT, Cli
from prometheus_harness import (
    DASHBOARDS,
    answers,
    dashboard_queries,
    failing_panel_queries,
    free_port,
    get,
    metric,
    start_prometheus,
    stop,
    tool,
    wait,
)

from replicator.checkpoints import JobSummary, SqliteStore
from replicator.job import JobState, Phase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def prometheus_tools() -> tuple[str, str]:
    return tool("prometheus"), tool("promtool")


MISSING = "xmf3k-3iaaa-fake5-aaaaa-cai"  # made up: no such canister on localnet
EVERY = "every 3s"


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    app = cli.deploy_demo(mib=1)
    port = free_port()
    config = (
        cli.config.read_text()
        + f"""
[limits]
calls_per_second = 500
bytes_per_second = "64 MiB"
cycles_budget = "1000T"

[metrics]
port = {port}

[canisters]
app = "{app}"

[jobs.app-backup]
kind = "backup"
source = "app"
schedule = "{EVERY}"

[jobs.ghost-backup]
kind = "backup"
source = "{MISSING}"
schedule = "{EVERY}"
"""
    )
    cli.config.write_text(config)
    log = tmp_path / "serve.log"
    with cli.serving(log) as proc:
        yield port, proc, log


def test_every_dashboard_query_has_data(
    prometheus_tools: tuple[str, str],
    serve: tuple[int, subprocess.Popen[bytes], Path],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    port, proc, serve_log = serve
    base = f"http://127.0.0.1:{port}"
    prom = start_prometheus(prometheus_tools[0], tmp_path, f"127.0.0.1:{port}")
    logs = [serve_log, prom.log]
    try:
        # The service answers; /readyz sees the store and localnet.
        wait("replicator serve to answer", lambda: answers(base, proc, serve_log), 30, logs)
        status, body = get(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"] == {"network:local": "ok", "store": "ok"}

        # Scheduled runs, scraped: the good job succeeds, the bad one fails, both again.
        runs = 'sum by (outcome) (replicator_job_runs_total{kind="backup", outcome="%s"})'
        wait(
            "two successful and two failed scheduled backups in Prometheus",
            lambda: prom.value(runs % "done") >= 2 and prom.value(runs % "failed") >= 2,
            45,
            logs,
        )
        time.sleep(2)  # a few more scrapes, so that every rate() has two samples
        streak = "replicator_schedule_consecutive_failures{name=%r}"
        assert prom.value(streak % "ghost-backup") >= 2
        assert prom.value(streak % "app-backup") == 0
        assert prom.value('replicator_canisters_created_total{network="local"}') == 1
        assert prom.value('sum(replicator_job_failures_total{reason="failed"})') >= 2
        assert prom.value("replicator_build_info") == 1
        # The backup canister it created is watched: read on every run, far from freezing.
        assert prom.value("replicator_backup_canisters_watched") == 1
        assert 30 < prom.value("replicator_backup_canister_freeze_days_min") < math.inf
        assert prom.value('replicator_backup_canister_checks_total{outcome="ok"}') >= 2
        # Every successful run's job ended once (the failing runs fail while
        # planning, before a job exists: they count only in job runs).
        finished = 'sum(replicator_jobs_finished_total{kind="backup", outcome="%s"})'
        assert prom.value(finished % "done") >= 2

        failures = failing_panel_queries(prom, DASHBOARDS / "overview.json")
        assert len(list(dashboard_queries(DASHBOARDS / "overview.json"))) >= 20
        assert not failures, "dashboard queries without data:\n" + "\n".join(failures)

        # SIGTERM: a clean stop.
        assert stop(proc) == 0, serve_log.read_text()[-4000:]
    finally:
        stop(prom.proc)
    elapsed = time.monotonic() - started
    print(f"serve + Prometheus + every dashboard query: {elapsed:.1f} s")


# --------------------------------------------------------- stop and resume


async def _stored_jobs(path: Path) -> list[JobSummary]:
    async with await SqliteStore.open(path) as store:
        return await store.list_jobs()


async def _stored_state(path: Path, job_id: str) -> JobState:
    async with await SqliteStore.open(path) as store:
        return (await store.load(job_id)).state


def test_sigterm_stops_a_running_backup_at_a_checkpoint_and_a_restart_resumes_it(
    cli: Cli, tmp_path: Path
) -> None:
    app = cli.deploy_demo(mib=4)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[limits]
bytes_per_second = "1 MiB"   # a copy of several seconds: time to stop it halfway

[metrics]
port = {port}

[jobs.app-backup]
kind = "backup"
source = "{app}"
schedule = "every 2s"
"""
    )

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as stderr:
            return subprocess.Popen(
                cli.args("serve"), stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT
            )

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start(first_log)
    try:
        wait("the service", lambda: answers(base, first, first_log), 30, [first_log])
        wait(
            "a backup copying its chunks",
            lambda: metric(base, "replicator_copied_bytes_total") > 0,
            30,
            [first_log],
        )
        assert metric(base, "replicator_schedule_running", name="app-backup") == 1
        assert stop(first) == 0, first_log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    assert "stopped at its last checkpoint" in first_log.read_text()
    (interrupted,) = asyncio.run(_stored_jobs(cli.state))
    assert interrupted.phase == Phase.CANCELLED
    assert 0 < interrupted.chunks_acked < (interrupted.chunks_total or 0)

    second = start(second_log)
    try:
        wait(
            "the resumed backup to finish",
            lambda: (
                answers(base, second, second_log)
                and metric(base, "replicator_job_runs_total", outcome="done") >= 1
            ),
            60,
            [second_log],
        )
        assert stop(second) == 0
    finally:
        if second.poll() is None:
            second.kill()
    log = second_log.read_text()
    assert "resuming its interrupted run" in log
    assert f"resuming {interrupted.id}" in log
    resumed = asyncio.run(_stored_state(cli.state, interrupted.id))
    assert resumed.phase == Phase.DONE
    assert resumed.starts >= 2
