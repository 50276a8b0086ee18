"""Three ``serve`` workers share nine jobs of one tick fairly (no worker grabs them all).

Nine backup jobs share a schedule, so each tick queues nine runs at once.
Without balancing the first worker to look would take up to ``[store]
concurrency`` (8) of them; each worker takes a new run only while it runs
fewer than ``ceil(running / alive workers) + 1`` (:func:`replicator.workers.
fair_share`), so none runs more than four at any moment.  The queue is
sampled while the runs go (``procrastinate_jobs`` in state ``doing``, per
worker) and the distribution of the runs over workers is printed.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from cli_harness import Cli
from test_workers import configure
from workers_harness import Workers, sql

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = 9
EVERY = 20


@pytest.mark.timeout(240)
def test_nine_runs_of_one_tick_spread_over_three_workers(cli: Cli, workers: Workers) -> None:
    apps = {f"app{i}": str(cli.deploy_demo(mib=1, seed=40 + i)) for i in range(JOBS)}
    # A slow copy (a quarter MiB/s per worker): the runs of one tick overlap.
    configure(cli, apps, f"every {EVERY}s", "256 KiB")
    workers.start_all(3)
    workers.wait_ready()
    peak: Counter[int] = Counter()  # queue worker id → most runs at once
    deadline = time.monotonic() + 150
    first: list[tuple[str, int, str, str]] = []
    while time.monotonic() < deadline:
        for worker, running in sql(
            workers.url,
            "SELECT worker_id, count(*) FROM procrastinate_jobs WHERE status = 'doing'"
            " GROUP BY worker_id",
        ):
            peak[int(worker)] = max(peak[int(worker)], int(running))
        runs = workers.runs()
        if runs:
            tick = runs[0][1]
            first = [r for r in runs if r[1] == tick]
            if len(first) == JOBS:
                break
        time.sleep(0.1)
    assert len(first) == JOBS, f"the first tick's runs did not all finish\n{workers.tails()}"
    spread = Counter(worker for _, _, _, worker in first)
    print(f"\nruns of one tick per worker: {sorted(spread.values(), reverse=True)}")
    print(f"most runs at once per worker: {sorted(peak.values(), reverse=True)}")
    assert max(peak.values()) <= 4, peak
    assert len(spread) == 3, spread
    assert {o for _, _, o, _ in first} == {"done"}, first
