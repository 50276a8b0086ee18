"""``replicator serve`` keeping a hot standby, scraped by a real Prometheus.

The service runs a ``kind = "standby"`` job (created on demand: no target)
against a demo app on localnet while the test writes to the app; a real
Prometheus scrapes it every second with the repository's alert rules
loaded. Once the standby has applied the writes and passed a consistency
check, every panel query of ``grafana/dashboards/standby.json`` runs through
Prometheus's HTTP API and must return at least one series.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from cli_harness import ROOT, Cli
from icp_candid import Types
from prometheus_harness import (
    DASHBOARDS,
    answers,
    dashboard_queries,
    failing_panel_queries,
    free_port,
    start_prometheus,
    stop,
    tool,
    wait,
)

from canister_iface.candid_value import encode_values
from canister_iface.principal import Principal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _write(cli: Cli, app: Principal, count: int, prefix: str) -> None:
    async def write() -> None:
        async with cli.agent() as agent:
            for i in range(count):
                arg = encode_values([(Types.Text, f"{prefix}{i}"), (Types.Text, "e2e")])
                await agent.update(app.raw, "create_user", arg)

    asyncio.run(write())


def test_every_standby_dashboard_query_has_data(cli: Cli, tmp_path: Path) -> None:
    app = cli.deploy_demo(mib=1)
    port = free_port()
    cli.config.write_text(
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

[jobs.hot]
kind = "standby"
source = "app"
schedule = "every 5s"
options = {{ poll_max = 0.5, check_interval = 2 }}
"""
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cli.args("serve"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env={**os.environ, **cli.env},
        )
    prom = start_prometheus(tool("prometheus"), tmp_path, f"127.0.0.1:{port}")
    logs = [log, prom.log]
    try:
        wait("replicator serve to answer", lambda: answers(base, proc, log), 30, logs)
        wait(
            "the standby to be seeded and tailing",
            lambda: prom.value('replicator_jobs{kind="standby", state="tailing"}') >= 1,
            60,
            logs,
        )
        _write(cli, app, 30, "a")
        wait(
            "the writes applied and a consistency check passed",
            lambda: (
                prom.value('replicator_standby_applied_changes_total{name="hot"}') >= 30
                and prom.value(
                    'replicator_standby_consistency_checks_total{name="hot", outcome="match"}'
                )
                >= 1
            ),
            60,
            logs,
        )
        _write(cli, app, 10, "b")  # a second rate() sample with changes in it
        wait(
            "the later writes applied",
            lambda: prom.value('replicator_standby_applied_changes_total{name="hot"}') >= 40,
            30,
            logs,
        )
        assert prom.value('replicator_standby_lag_changes{name="hot"}') == 0
        assert prom.value('replicator_standby_consistency_checks_total{outcome="mismatch"}') == 0

        dashboard = DASHBOARDS / "standby.json"
        assert len(list(dashboard_queries(dashboard))) >= 10
        failures = failing_panel_queries(prom, dashboard)
        assert not failures, "dashboard queries without data:\n" + "\n".join(failures)
        assert stop(proc) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop(prom.proc)
