"""Several ``replicator serve`` workers on one real PostgreSQL store, against localnet.

Real processes (``python -m replicator.cli serve --state postgresql://…``),
a real PostgreSQL cluster (``tests/pg_cluster.py``) and localnet; the only
thing the tests do to the workers is what an operator's machine does to them:
start, SIGKILL, SIGSTOP/SIGCONT.  ``[store] takeover`` is short (6 s) so the
tests run in seconds; the bound scales (every timing derives from it, see
:mod:`replicator.workers`).
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from cli_harness import Cli
from prometheus_harness import (
    DASHBOARDS,
    dashboard_queries,
    failing_panel_queries,
    start_prometheus,
    stop,
    tool,
)
from workers_harness import Workers, free_port, sql, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TAKEOVER = 6.0


def configure(cli: Cli, jobs: dict[str, str], schedule: str, rate: str) -> None:
    """Backup jobs ``name -> source`` on ``schedule``, each worker copying at most ``rate``."""
    text = f"""
[limits]
bytes_per_second = "{rate}"

[store]
takeover = "{TAKEOVER:g}s"
"""
    for name, source in jobs.items():
        text += f'\n[jobs.{name}]\nkind = "backup"\nsource = "{source}"\nschedule = "{schedule}"\n'
    cli.config.write_text(cli.config.read_text() + text)


def schedule_holder(workers: Workers, name: str) -> int | None:
    """The pid holding the tick lock of scheduled job ``name`` (None: no run going)."""
    rows = sql(
        workers.url,
        "SELECT pid FROM replicator_job_locks WHERE fingerprint = %s",
        (f"schedule:{name}",),
    )
    return int(rows[0][0]) if rows else None


def copied_chunks(workers: Workers) -> int:
    return int(sql(workers.url, "SELECT count(*) FROM replicator_chunk_acks")[0][0])


def index_of(workers: Workers, pid: int) -> int:
    return next(w.index for w in workers.workers.values() if w.proc.pid == pid)


def metric_sum(workers: Workers, name: str) -> float:
    total = 0.0
    for worker in workers.workers.values():
        for line in worker.metrics().splitlines():
            if line.startswith((name + " ", name + "{")):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_three_workers_run_every_tick_of_every_job_exactly_once(cli: Cli, workers: Workers) -> None:
    apps = {f"app{i}": str(cli.deploy_demo(mib=1, seed=i)) for i in range(3)}
    configure(cli, apps, "every 5s", "64 MiB")
    workers.start_all(3)
    workers.wait_ready()
    ready = workers.workers[0].ready()
    assert ready is not None
    assert ready["checks"]["store"] == "ok", ready
    assert ready["checks"]["queue"] == "ok", ready

    wait_for(
        "three runs of each job",
        lambda: all(len(workers.runs(name)) >= 3 for name in apps),
        90,
        workers,
    )
    runs = workers.runs()
    # One record per tick (the primary key would refuse a second) and one queue
    # job per tick: three workers evaluated every schedule, one of them queued it.
    ticks = Counter(
        (name, int(ts))
        for name, ts in sql(
            workers.url, "SELECT args->>'name', args->>'timestamp' FROM procrastinate_jobs"
        )
    )
    assert max(ticks.values()) == 1, ticks
    assert {o for _, _, o, _ in runs} == {"done"}, runs
    logs = "".join(p.read_text() for p in workers.all_logs())
    for name in apps:
        recorded = [t for n, t, _, _ in runs if n == name]
        assert recorded == sorted(set(recorded)), recorded  # none run twice
        # A tick is left out only when it joined a run still waiting for a
        # worker (as a single serve skips the runs a long one overlapped).
        gaps = sum((b - a) // 5 - 1 for a, b in itertools.pairwise(recorded))
        assert all((b - a) % 5 == 0 for a, b in itertools.pairwise(recorded)), recorded
        assert gaps <= len(re.findall(f"job {name}: tick \\d+ joins the run", logs)), recorded
    # Each run is one engine job: no tick's copy ran twice.
    engine_jobs = int(sql(workers.url, "SELECT count(*) FROM replicator_jobs")[0][0])
    assert engine_jobs <= len(workers.runs()) + len(apps)  # + the runs still going
    assert len({w for _, _, _, w in runs}) >= 2, "the work was not shared"
    for worker in workers.workers.values():
        assert workers.stop(worker.index) == 0, worker.log.read_text()[-3000:]


def test_a_slow_worker_keeps_its_job_and_a_killed_one_loses_it_within_the_bound(
    cli: Cli, workers: Workers
) -> None:
    app = str(cli.deploy_demo(mib=4, seed=7))
    # 4 MiB at 256 KiB/s: a run of ~16 s, well beyond the 6 s takeover bound.
    configure(cli, {"slow": app}, "every 20s", "256 KiB")
    workers.start_all(2)
    workers.wait_ready()

    first = wait_for(
        "a worker copying the job",
        lambda: copied_chunks(workers) > 0 and schedule_holder(workers, "slow"),
        60,
        workers,
    )
    # Slow but alive: past the takeover bound the same worker still runs it.
    time.sleep(TAKEOVER * 1.5)
    assert schedule_holder(workers, "slow") == first, workers.tails()
    assert metric_sum(workers, "replicator_worker_takeovers_total") == 0
    copied_before = copied_chunks(workers)

    killed_at = workers.kill(index_of(workers, first))
    second = wait_for(
        "another worker to take the job over",
        lambda: (pid := schedule_holder(workers, "slow")) not in (None, first) and pid,
        TAKEOVER * 2,
        workers,
    )
    took = time.time() - killed_at
    assert took <= TAKEOVER, f"takeover took {took:.1f} s (bound {TAKEOVER:g} s)"
    survivor = workers.workers[index_of(workers, second)]
    wait_for("the resumed run to finish", lambda: workers.runs("slow"), 60, workers)
    ((_, _, outcome, by),) = workers.runs("slow")[:1]
    assert outcome == "done", workers.tails()
    assert by.endswith(f":{second}"), workers.runs()
    log = survivor.log.read_text()
    assert "resuming" in log, log[-3000:]  # from the shared checkpoint, not from scratch
    resumed_at = [int(m) for m in re.findall(r"(\d+) already copied", log)]
    assert resumed_at, log[-3000:]
    assert resumed_at[0] > 0, log[-3000:]  # it did not start over
    assert copied_before > 0
    assert metric_sum(workers, "replicator_worker_takeovers_total") >= 1
    print(f"takeover after SIGKILL: {took:.2f} s (bound {TAKEOVER:g} s)")


def test_a_worker_robbed_while_suspended_cannot_corrupt_the_copy(
    cli: Cli, workers: Workers
) -> None:
    app = str(cli.deploy_demo(mib=4, seed=9))
    configure(cli, {"robbed": app}, "every 20s", "256 KiB")
    workers.start_all(2)
    workers.wait_ready()
    first = wait_for(
        "a worker copying the job",
        lambda: copied_chunks(workers) > 0 and schedule_holder(workers, "robbed"),
        60,
        workers,
    )
    victim = workers.workers[index_of(workers, first)]
    victim.proc.send_signal(signal.SIGSTOP)  # a frozen VM, a partition: alive, silent
    try:
        second = wait_for(
            "the other worker to take the job over",
            lambda: (pid := schedule_holder(workers, "robbed")) not in (None, first) and pid,
            TAKEOVER * 2,
            workers,
        )
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    wait_for("the run to finish", lambda: workers.runs("robbed"), 90, workers)
    ((_, _, outcome, by),) = workers.runs("robbed")[:1]
    assert outcome == "done", workers.tails()
    assert by.endswith(f":{second}"), workers.runs()
    wait_for(
        "the robbed worker to notice",
        lambda: "another worker took this run over" in victim.log.read_text(),
        30,
        workers,
    )
    assert victim.alive(), victim.log.read_text()[-3000:]
    # The copy is right: the backup canister verified it (the run is "done"),
    # and the job's checkpoint is the survivor's.
    assert len(workers.runs("robbed")) == len({t for _, t, _, _ in workers.runs("robbed")})


def test_three_workers_scraped_by_prometheus_fill_the_workers_dashboard(
    cli: Cli, workers: Workers, tmp_path: Path
) -> None:
    """Per-worker metrics aggregate with ``sum by (job)``; every workers.json panel has data."""
    prometheus = tool("prometheus")
    apps = {f"web{i}": str(cli.deploy_demo(mib=1, seed=20 + i)) for i in range(2)}
    configure(cli, apps, "every 3s", "64 MiB")
    workers.ports.update({i: free_port() for i in range(3)})
    prom = start_prometheus(
        prometheus, tmp_path, [f"127.0.0.1:{p}" for p in workers.ports.values()]
    )
    try:
        workers.start_all(3)
        workers.wait_ready()
        wait_for(
            "two runs of each job, scraped",
            lambda: prom.value('sum by (job) (replicator_job_runs_total{outcome="done"})') >= 4,
            60,
            workers,
        )
        assert prom.value("sum by (job) (up)") == 3
        assert prom.value("max(replicator_workers_alive)") == 3
        # Each worker's slots counted once: the sum is the fleet's.
        assert prom.value("sum by (job) (replicator_worker_slots)") == 3 * 8
        assert prom.value("max(replicator_worker_takeover_bound_seconds)") == TAKEOVER
        # Runs counted per worker add up to the runs the store recorded (give or
        # take those between the last scrape and the query).
        done = prom.value('sum by (job) (replicator_job_runs_total{outcome="done"})')
        assert abs(done - len(workers.runs())) <= len(apps) + 1, (done, workers.runs())
        time.sleep(2)  # a few more scrapes: every rate() has two samples
        dashboard = DASHBOARDS / "workers.json"
        assert len(list(dashboard_queries(dashboard))) >= 12
        failures = failing_panel_queries(prom, dashboard)
        assert not failures, "workers.json queries without data:\n" + "\n".join(failures)
        # Every job has a live owner: the alert is loaded and quiet.
        assert prom.value("max(replicator_job_unowned_seconds)") == 0
        rules = prom.query("ALERTS{alertname='ReplicatorJobWithoutOwner'}")
        assert rules["data"]["result"] == []
    finally:
        stop(prom.proc)
