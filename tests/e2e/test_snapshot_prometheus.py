"""``replicator serve`` with the snapshot kinds, scraped by a real Prometheus.

The service runs as a subprocess against localnet with three scheduled jobs:
a ``snapshot-backup`` of a ``plain_kv`` canister (stop → snapshot → start,
stored in a repository: the second run deduplicates against the first), a
``snapshot-copy`` of another one into a third, and a ``snapshot-backup`` of
a canister that does not exist (it fails every run).  A real Prometheus
(Debian's ``prometheus``) scrapes it every second with the repository's
alert rules.  Once each good job has succeeded twice and the bad one failed
twice, the snapshot metrics are checked through Prometheus and every panel
query of ``grafana/dashboards/snapshot.json`` must return a series.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
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
from replicator.repository import Repository

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAIN_WASM = ROOT / "canister_iface" / "wasm" / "plain_kv.wasm"
MISSING = "xmf3k-3iaaa-fake5-aaaaa-cai"  # made up: no such canister on localnet
EVERY = "every 4s"


def _plain(cli: Cli) -> Principal:
    canister = cli.deploy_wasm(PLAIN_WASM)

    async def fill() -> None:
        async with cli.agent() as agent:
            arg = [(Types.Nat64, 0), (Types.Nat64, 262_144), (Types.Nat64, 5)]
            await agent.update(canister, "generate", encode_values(arg))  # type: ignore[arg-type]

    asyncio.run(fill())
    return canister


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path, Path]]:
    app, other, copy = _plain(cli), _plain(cli), cli.deploy_wasm(PLAIN_WASM)
    repo = tmp_path / "repo"
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
other = "{other}"
copy = "{copy}"

[jobs.app-snapshots]
kind = "snapshot-backup"
source = "app"
target = "file:{repo}"
schedule = "{EVERY}"
options = {{ tags = "scheduled" }}

[jobs.app-copy]
kind = "snapshot-copy"
source = "other"
target = "copy"
schedule = "{EVERY}"

[jobs.ghost-snapshots]
kind = "snapshot-backup"
source = "{MISSING}"
target = "file:{tmp_path / "ghost-repo"}"
schedule = "{EVERY}"
"""
    )
    log = tmp_path / "serve.log"
    with cli.serving(log) as proc:
        yield port, proc, log, repo


def test_every_snapshot_dashboard_query_has_data(
    serve: tuple[int, subprocess.Popen[bytes], Path, Path], tmp_path: Path
) -> None:
    started = time.monotonic()
    port, proc, serve_log, repo = serve
    base = f"http://127.0.0.1:{port}"
    prom = start_prometheus(tool("prometheus"), tmp_path, f"127.0.0.1:{port}")
    logs = [serve_log, prom.log]
    try:
        wait("replicator serve to answer", lambda: answers(base, proc, serve_log), 30, logs)
        runs = 'sum(replicator_job_runs_total{kind="%s", outcome="%s"})'
        wait(
            "two good runs of each snapshot job and two failed ones in Prometheus",
            lambda: (
                prom.value(runs % ("snapshot-backup", "done")) >= 2
                and prom.value(runs % ("snapshot-copy", "done")) >= 2
                and prom.value(runs % ("snapshot-backup", "failed")) >= 2
            ),
            120,
            logs,
        )
        time.sleep(2)  # a few more scrapes, so that every rate() has two samples
        streak = "replicator_schedule_consecutive_failures{name=%r}"
        assert prom.value(streak % "ghost-snapshots") >= 2
        assert prom.value(streak % "app-snapshots") == 0
        # Each backup and each copy stopped the source once and started it again;
        # a copy stops its target for the load too.
        stops = 'sum(replicator_snapshot_downtime_seconds_count{kind="%s"})'
        assert prom.value(stops % "snapshot-backup") >= 2
        assert prom.value(stops % "snapshot-copy") >= 4
        assert prom.value("replicator_snapshot_canisters_stopped") == 0
        # Snapshots taken and deleted again (no --keep-on-chain); the second
        # backup found the first one's chunks in the repository.
        on_chain = 'replicator_snapshot_on_chain_total{action="%s"}'
        assert prom.value(on_chain % "taken") >= 4
        assert prom.value(on_chain % "deleted") >= 4
        assert prom.value('replicator_snapshot_stored_bytes_total{outcome="dedup"}') > 0
        read = prom.value('replicator_snapshot_read_bytes_total{kind="snapshot-backup"}')
        assert read >= 2 * 262_144
        assert prom.value('sum(replicator_copied_bytes_total{route="snapshot"})') > 0
        stored = Repository.open(repo)
        assert len(stored.snapshot_ids()) >= 2
        assert all(m.manifest.tags == ("scheduled",) for m in stored.manifests(None))

        dashboard = DASHBOARDS / "snapshot.json"
        failures = failing_panel_queries(prom, dashboard)
        assert len(list(dashboard_queries(dashboard))) >= 15
        assert not failures, "snapshot dashboard queries without data:\n" + "\n".join(failures)
        assert stop(proc) == 0, serve_log.read_text()[-4000:]
    finally:
        stop(prom.proc)
    elapsed = time.monotonic() - started
    print(f"serve + Prometheus + every snapshot dashboard query: {elapsed:.1f} s")
