"""Chaos: three ``serve`` workers, one killed (SIGKILL) and restarted every few seconds.

Bounded in time (about two minutes).  The fleet kind (one job over hundreds
of fleet members) is being built on another branch; until it lands the
"fleet" here is several canisters, each with a scheduled backup job, all
sharing the three workers.  Ten times a random worker (preferably one
running something) is SIGKILLed and restarted half a second later.  At the
end:

- every job ran each of its scheduled ticks exactly once (one record per
  tick in the store, one queue job per tick), and every run succeeded —
  except ticks that came while the previous run still waited for a worker
  (taken over again and again): those join the waiting run, as a single
  ``serve`` skips the runs a long one overlapped, and say so in the log;
- every copy finished (each engine job of the store is done: verified
  against its source's digest by the backup flow) and no chunk was copied
  into a job twice with different bytes (the store refuses that);
- no job without an owner: no queue job left "doing", no lock held;
- every takeover (kill → the dead worker's running ticks held by another
  worker) within the bound; the table of takeover times is printed.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Cli
from workers_harness import Workers, chaos, sql, takeover_table, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CANISTERS = 9
EVERY = 15  # seconds between ticks of each job
TAKEOVER = 9.0  # 3 s heartbeats: a loaded 2-core machine does not look dead
KILLS = 10


@pytest.fixture
def workers(cli: Cli, pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(cli.config, pg_url, tmp_path)
    try:
        yield group
    finally:
        group.close()


def joined(workers: Workers) -> set[tuple[str, int]]:
    """Ticks that joined a run still waiting for a worker (piled up behind takeovers)."""
    logs = "".join(p.read_text() for p in workers.all_logs())
    return {(n, int(t)) for n, t in re.findall(r"job (\S+): tick (\d+) joins the run", logs)}


@pytest.mark.timeout(420)
def test_killing_workers_loses_no_tick_and_runs_none_twice(cli: Cli, workers: Workers) -> None:
    apps = {f"member{i}": str(cli.deploy_demo(mib=1, seed=100 + i)) for i in range(CANISTERS)}
    text = f'\n[limits]\nbytes_per_second = "2 MiB"\n\n[store]\ntakeover = "{TAKEOVER:g}s"\n'
    for name, source in apps.items():
        text += (
            f'\n[jobs.{name}]\nkind = "backup"\nsource = "{source}"\nschedule = "every {EVERY}s"\n'
        )
    cli.config.write_text(cli.config.read_text() + text)
    workers.start_all(3)
    workers.wait_ready()
    # Steady state first: every member's backup canister exists (its first run
    # creates it, a much longer run than the others).
    wait_for(
        "a first backup of every member",
        lambda: {n for n, _, o, _ in workers.runs() if o == "done"} == set(apps),
        180,
        workers,
        every=1,
    )
    started = time.time()
    first_tick = (int(started) // EVERY + 1) * EVERY

    rng = random.Random(13)
    takeovers = chaos(workers, KILLS, (3.0, 6.0), rng, settle=3 * TAKEOVER)
    chaos_end = time.time()
    last_tick = int(chaos_end) // EVERY * EVERY
    print("\n" + takeover_table(takeovers))

    # Every tick of the chaos window ran, once, to the end.
    expected = {(n, t) for n in apps for t in range(first_tick, last_tick + 1, EVERY)}

    def missing() -> set[tuple[str, int]]:
        return expected - {(n, t) for n, t, _, _ in workers.runs()} - joined(workers)

    try:
        wait_for("every tick of the chaos window to run", lambda: not missing(), 120, workers, 1)
    except AssertionError:
        lost = sorted(missing())
        rows = sql(
            workers.url,
            "SELECT id, args, status::text, queueing_lock, lock, worker_id, attempts"
            " FROM procrastinate_jobs ORDER BY id",
        )
        pytest.fail(f"ticks that never ran: {lost}\nqueue:\n" + "\n".join(map(str, rows)))

    # A quiet moment between ticks: nothing running, nothing half done.
    def quiet() -> bool:
        doing = sql(workers.url, "SELECT id FROM procrastinate_jobs WHERE status = 'doing'")
        locks = sql(workers.url, "SELECT fingerprint FROM replicator_job_locks")
        phases = {p for (p,) in sql(workers.url, "SELECT phase FROM replicator_jobs")}
        return not doing and not locks and phases <= {"done"}

    wait_for("a moment with no run going", quiet, 60, workers, every=0.2)
    for index in list(workers.workers):
        workers.stop(index)

    runs = [r for r in workers.runs() if first_tick <= r[1] <= last_tick]
    per_tick = Counter((n, t) for n, t, _, _ in runs)
    collapsed = expected & joined(workers)
    assert set(per_tick) | collapsed == expected
    assert not set(per_tick) & collapsed  # a tick that joined another did not run too
    # Joining is the exception: on a loaded machine a job hit by two kills in
    # one interval joins its next tick (measured: up to 10 of 36 ticks); every
    # job still ran at least every other tick.
    assert len(collapsed) <= len(expected) // 2, sorted(collapsed)
    ticks = (last_tick - first_tick) // EVERY + 1
    for name in apps:
        assert sum(1 for n, _ in per_tick if n == name) >= ticks // 2, (name, sorted(per_tick))
    assert max(per_tick.values()) == 1
    assert {o for _, _, o, _ in runs} == {"done"}, [r for r in runs if r[2] != "done"]
    queued = Counter(
        (n, int(t))
        for n, t in sql(
            workers.url, "SELECT args->>'name', args->>'timestamp' FROM procrastinate_jobs"
        )
    )
    assert max(queued.values()) == 1, queued.most_common(3)
    # No job without an owner, nothing half done (checked at the quiet moment
    # above); no queue job failed or was lost.
    statuses = {s for (s,) in sql(workers.url, "SELECT status::text FROM procrastinate_jobs")}
    assert statuses <= {"succeeded", "todo", "doing"}, statuses
    # The takeovers: every running tick of a killed worker moved within the bound.
    times = [s for t in takeovers for s in t.jobs.values()]
    assert None not in times, takeover_table(takeovers)
    assert any(t.jobs for t in takeovers), "no kill hit a running job"
    assert max(s for s in times if s is not None) <= TAKEOVER, takeover_table(takeovers)
    print(
        f"chaos: {len(runs)} runs of {CANISTERS} jobs, {len(collapsed)} ticks joined a waiting"
        f" run, {KILLS} kills, {time.time() - started:.0f} s"
    )
