"""``replicator serve`` scraped by a real Prometheus: every dashboard query has data.

The service runs as a subprocess against localnet with two jobs every few
seconds: a backup of a demo app (into a backup canister it creates on the
first run) and a backup of a canister that does not exist (it fails every
run).  A real Prometheus (Debian's ``prometheus`` package) scrapes it every
second with the repository's alert rules loaded.  Once the good job has
succeeded twice and the bad one failed twice, every panel query of every
dashboard in ``grafana/dashboards`` runs through Prometheus's HTTP API and
must return at least one series.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import ROOT, Cli

from replicator.checkpoints import JobSummary, SqliteStore
from replicator.job import JobState, Phase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS = sorted((ROOT / "deploy" / "alerts").glob("*.yml"))
MISSING = "ryjl3-tyaaa-aaaaa-aaaba-cai"  # the ledger's id: no such canister on localnet
EVERY = "every 3s"
# Grafana's built-in variables, as concrete PromQL for a short test.
GRAFANA_VARIABLES = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must not skip this test")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait(what: str, check: Any, timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-4000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> dict[str, Any]:
        qs = urllib.parse.urlencode({"query": expr})
        status, body = _get(f"{self.url}/api/v1/query?{qs}")
        data: dict[str, Any] = json.loads(body)
        data["http_status"] = status
        return data

    def series(self, expr: str) -> list[dict[str, Any]]:
        data = self.query(expr)
        if data.get("status") != "success":
            return []
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.series(expr)
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
def prometheus_tools() -> tuple[str, str]:
    return _tool("prometheus"), _tool("promtool")


def _start_prometheus(binary: str, tmp: Path, target: str) -> Prometheus:
    config = tmp / "prometheus.yml"
    rule_files = "".join(f"  - {path}\n" for path in ALERTS)
    config.write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
{rule_files}scrape_configs:
  - job_name: replicator
    static_configs:
      - targets: ["{target}"]
"""
    )
    port = _free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    _wait("Prometheus to be ready", lambda: _ready(prom), 30, [log])
    return prom


def _ready(prom: Prometheus) -> bool:
    if prom.proc.poll() is not None:
        pytest.fail(f"prometheus exited with {prom.proc.returncode}: {prom.log.read_text()}")
    try:
        return _get(f"{prom.url}/-/ready", timeout=1)[0] == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    app = cli.deploy_demo(mib=1)
    port = _free_port()
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
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cli.args("serve"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env={**os.environ, **cli.env},
        )
    try:
        yield port, proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_dashboard_query_has_data(
    prometheus_tools: tuple[str, str],
    serve: tuple[int, subprocess.Popen[bytes], Path],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    port, proc, serve_log = serve
    base = f"http://127.0.0.1:{port}"
    prom = _start_prometheus(prometheus_tools[0], tmp_path, f"127.0.0.1:{port}")
    logs = [serve_log, prom.log]
    try:
        # The service answers; /readyz sees the store and localnet.
        _wait("replicator serve to answer", lambda: _answers(base, proc, serve_log), 30, logs)
        status, body = _get(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"] == {"network:local": "ok", "store": "ok"}

        # Scheduled runs, scraped: the good job succeeds, the bad one fails, both again.
        runs = 'sum by (outcome) (replicator_job_runs_total{kind="backup", outcome="%s"})'
        _wait(
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
        # Every successful run's job ended once (the failing runs fail while
        # planning, before a job exists: they count only in job runs).
        finished = 'sum(replicator_jobs_finished_total{kind="backup", outcome="%s"})'
        assert prom.value(finished % "done") >= 2

        failures = _failing_panel_queries(prom)
        assert not failures, "dashboard queries without data:\n" + "\n".join(failures)

        # SIGTERM: a clean stop.
        assert _stop(proc) == 0, serve_log.read_text()[-4000:]
    finally:
        _stop(prom.proc)
    elapsed = time.monotonic() - started
    print(f"serve + Prometheus + every dashboard query: {elapsed:.1f} s")


def _answers(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"replicator serve exited with {proc.returncode}:\n{log.read_text()}")
    try:
        return _get(f"{base}/healthz", timeout=1) == (200, "ok\n")
    except OSError:
        return False


def _failing_panel_queries(prom: Prometheus) -> list[str]:
    failures = []
    queries = list(dashboard_queries())
    assert len(queries) >= 20, "the dashboards lost their panels"
    for where, expr in queries:
        concrete = substitute(expr, variables_of(where[0]))
        result = _retry_until_series(prom, concrete)
        if result is not None:
            failures.append(f"{where[0].name} / {where[1]!r}: {concrete}\n    {result}")
    return failures


def _retry_until_series(prom: Prometheus, expr: str, attempts: int = 8) -> str | None:
    """None when ``expr`` returns series; else why not (after a few scrapes)."""
    why = ""
    for _ in range(attempts):
        data = prom.query(expr)
        if data.get("status") != "success":
            return f"error: {data.get('errorType')}: {data.get('error')}"  # never retried
        if data["data"]["result"]:
            return None
        why = "no series"
        time.sleep(0.5)
    return why


# ------------------------------------------------------- reading dashboards


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def dashboard_queries() -> Iterator[tuple[tuple[Path, str], str]]:
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield (path, panel["title"]), target["expr"]


def variables_of(path: Path) -> dict[str, str]:
    """Every dashboard variable as a regex matching all its values, plus Grafana's own."""
    dashboard = json.loads(path.read_text())
    values = dict(GRAFANA_VARIABLES)
    for variable in dashboard.get("templating", {}).get("list", []):
        values[variable["name"]] = variable.get("allValue") or ".+"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


# --------------------------------------------------------- stop and resume


def _metric(base: str, metric: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = _get(f"{base}/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                total += sample.value
    return total


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
    port = _free_port()
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
        _wait("the service", lambda: _answers(base, first, first_log), 30, [first_log])
        _wait(
            "a backup copying its chunks",
            lambda: _metric(base, "replicator_copied_bytes_total") > 0,
            30,
            [first_log],
        )
        assert _metric(base, "replicator_schedule_running", name="app-backup") == 1
        assert _stop(first) == 0, first_log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    assert "stopped at its last checkpoint" in first_log.read_text()
    (interrupted,) = asyncio.run(_stored_jobs(cli.state))
    assert interrupted.phase == Phase.CANCELLED
    assert 0 < interrupted.chunks_acked < (interrupted.chunks_total or 0)

    second = start(second_log)
    try:
        _wait(
            "the resumed backup to finish",
            lambda: (
                _answers(base, second, second_log)
                and _metric(base, "replicator_job_runs_total", outcome="done") >= 1
            ),
            60,
            [second_log],
        )
        assert _stop(second) == 0
    finally:
        if second.poll() is None:
            second.kill()
    log = second_log.read_text()
    assert "resuming its interrupted run" in log
    assert f"resuming {interrupted.id}" in log
    resumed = asyncio.run(_stored_state(cli.state, interrupted.id))
    assert resumed.phase == Phase.DONE
    assert resumed.starts >= 2
