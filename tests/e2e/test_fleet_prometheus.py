"""``replicator serve`` with a fleet job, scraped by a real Prometheus: its dashboard has data.

The service backs up a fleet (a platform on localnet with three user
canisters and one registered canister that does not speak ICRP) every few
seconds; Prometheus (Debian's ``prometheus``) scrapes it with the
repository's alert rules loaded.  Once two fleet runs ended, every panel
query of ``grafana/dashboards/fleet.json`` must return a series, and the
members-by-state figures are the fleet's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Cli
from prometheus_harness import (
    DASHBOARDS,
    answers,
    failing_panel_queries,
    free_port,
    start_prometheus,
    stop,
    tool,
    wait,
)
from test_cli_fleet import deploy_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    plat, _ = deploy_fleet(cli, users=3)
    port = free_port()
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[metrics]
port = {port}

[jobs.users]
kind = "fleet"
source = "{plat}"
schedule = "every 3s"
options = {{ concurrency = 4, every = "1d", cycles_budget = 50_000_000_000_000 }}
"""
    )
    log = tmp_path / "serve.log"
    with cli.serving(log) as proc:
        yield port, proc, log


def test_every_fleet_dashboard_query_has_data(
    serve: tuple[int, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    binary = tool("prometheus")
    port, proc, serve_log = serve
    base = f"http://127.0.0.1:{port}"
    prom = start_prometheus(binary, tmp_path, f"127.0.0.1:{port}")
    logs = [serve_log, prom.log]
    try:
        wait("replicator serve to answer", lambda: answers(base, proc, serve_log), 30, logs)
        runs = 'sum(replicator_job_runs_total{kind="fleet", outcome="done"})'
        wait("two fleet runs in Prometheus", lambda: prom.value(runs) >= 2, 90, logs)
        time.sleep(2)  # a few more scrapes, so that every rate() has two samples
        state = 'replicator_fleet_members{name="users", state="%s"}'
        assert prom.value(state % "ok") == 3
        assert prom.value(state % "failing") == 1
        assert prom.value('replicator_fleet_member_failures_total{class="not_icrp"}') >= 1
        assert prom.value('replicator_fleet_oldest_backup_age_seconds{name="users"}') > 0
        assert prom.value('replicator_fleet_cycles_budget{name="users"}') == 50 * 10**12
        assert failing_panel_queries(prom, DASHBOARDS / "fleet.json") == []
    finally:
        stop(prom.proc)
        assert stop(proc) == 0, serve_log.read_text()[-4000:]
