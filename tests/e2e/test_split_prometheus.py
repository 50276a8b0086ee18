"""``replicator serve`` running a split and a compact, scraped by a real Prometheus.

The service runs as a subprocess against localnet with two configured jobs
(one serve for both kinds saves the suite a second start):
``[jobs.shard-app] kind = "split"`` splits a demo app into three shards on
its first run (later runs find the source split already and fail as usage
errors, which is what a repeated schedule of a one-off job does), and
``[jobs.shrink-other] kind = "compact"`` compacts a second demo app (again
on every run: a compact can repeat). A real Prometheus (Debian's
``prometheus`` package) scrapes it every second with the repository's alert
rules loaded; once both are done, every panel query of
``grafana/dashboards/split.json`` and ``grafana/dashboards/compact.json``
runs through Prometheus's HTTP API and must return at least one series.
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
    dashboard_queries,
    failing_panel_queries,
    free_port,
    start_prometheus,
    stop,
    tool,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    app = cli.deploy_demo(mib=1)
    other = cli.deploy_demo(mib=1, seed=2)
    port = free_port()
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[limits]
calls_per_second = 500
bytes_per_second = "64 MiB"

[metrics]
port = {port}

[canisters]
app = "{app}"
other = "{other}"

[jobs.shard-app]
kind = "split"
source = "app"
schedule = "every 5s"
options = {{ shards = 3 }}

[jobs.shrink-other]
kind = "compact"
source = "other"
schedule = "every 5s"
"""
    )
    log = tmp_path / "serve.log"
    with cli.serving(log) as proc:
        yield port, proc, log


def test_every_split_and_compact_dashboard_query_has_data(
    serve: tuple[int, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    started = time.monotonic()
    port, proc, serve_log = serve
    prom = start_prometheus(tool("prometheus"), tmp_path, f"127.0.0.1:{port}")
    logs = [serve_log, prom.log]
    try:
        wait(
            "replicator serve to answer",
            lambda: answers(f"http://127.0.0.1:{port}", proc, serve_log),
            30,
            logs,
        )
        ok = 'replicator_split_cutovers_total{name="shard-app", outcome="ok"}'
        wait("two ranges cut over, in Prometheus", lambda: prom.value(ok) >= 2, 90, logs)
        done = 'sum(replicator_jobs_finished_total{kind="split", outcome="done"})'
        wait("the split job done", lambda: prom.value(done) >= 1, 60, logs)
        time.sleep(2)  # a few more scrapes, so that every rate() has two samples
        assert prom.value('replicator_split_bytes_copied_total{name="shard-app"}') > 0
        assert prom.value('replicator_split_bytes_freed_total{name="shard-app"}') > 0
        mismatch = 'replicator_split_cutovers_total{name="shard-app", outcome="mismatch"}'
        assert prom.value(mismatch) == 0
        compacted = 'replicator_compact_runs_total{name="shrink-other", outcome="done"}'
        wait("a compact done, in Prometheus", lambda: prom.value(compacted) >= 1, 90, logs)
        time.sleep(2)
        assert prom.value('replicator_compact_runs_total{outcome="mismatch"}') == 0
        assert prom.value('replicator_compact_image_bytes_total{name="shrink-other"}') > 0
        assert prom.value('replicator_compact_memory_before_bytes{name="shrink-other"}') > 0
        # Two shards and the compacted canister's backup canister (made once).
        assert prom.value('replicator_canisters_created_total{network="local"}') == 3

        split, compact = DASHBOARDS / "split.json", DASHBOARDS / "compact.json"
        assert len(list(dashboard_queries(split))) >= 9
        assert len(list(dashboard_queries(compact))) >= 9
        failures = failing_panel_queries(prom, split) + failing_panel_queries(prom, compact)
        assert not failures, "dashboard queries without data:\n" + "\n".join(failures)
        assert stop(proc) == 0, serve_log.read_text()[-4000:]
    finally:
        stop(prom.proc)
    took = time.monotonic() - started
    print(f"serve + split + compact + Prometheus + every panel of both: {took:.1f} s")
