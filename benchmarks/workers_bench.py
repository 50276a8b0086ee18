"""Several ``replicator serve`` workers on one PostgreSQL store: throughput and takeover times.

Real processes against a throwaway PostgreSQL cluster (``tests/pg_cluster.py``)
and a localnet child process; the workers are ``python -m replicator.cli serve``
subprocesses (``tests/workers_harness.py``).  The fleet kind is being built
on another branch: the "fleet" here is ``--canisters`` demo apps of ``--mib``
MiB, each with a scheduled backup job (``every 10s``), all in one config.

1. **Throughput** with 1, 2 and 3 workers, each on a fresh database (so every
   job's first run creates its backup canister and copies the whole image):
   bytes of all images / (last run's end - first run's start), against the
   byte budget ``[limits] bytes_per_second = --budget-mib`` MiB/s.  That
   budget holds *per worker* (part 2 measures a global one), so N workers
   may copy N times it: the figures are the throughput, its share of N x
   budget, and the scaling 3 workers / 1 worker (target >= 2.0; every figure
   measured in this one run).
2. **One global budget** (``[limits] global_bytes_per_second = --global-mib``,
   leased from the store by every worker; each worker's own
   ``bytes_per_second`` raised out of the way): 1, 2 and 3 workers, each on a
   fresh database.  Measured from the store's lease log (the server's clock;
   a worker leases only when a call waits for bytes, so the log shows the
   demand): *used share* = the bytes leased after the first lease, over the
   time from the first lease to the last, against the budget; *never above* =
   over every window of the log, the bytes leased minus budget x window
   minus the bucket's capacity (a second's worth), in chunks (``--chunk-kib``,
   the largest transfer).  Every byte copied (the workers'
   ``replicator_copied_bytes_total``) was leased: copied <= leased.  Targets
   for each N: used share >= 90 %, excess <= one chunk, copied <= leased.
3. **Takeover times**: three workers, ``--kills`` times SIGKILL the worker
   running jobs (restart it half a second later, the next kill once the
   previous takeover is over) and time until every tick it ran is held by
   another worker, with ``[store] takeover = --takeover`` seconds.  Target:
   the longest within the bound.

``python -m benchmarks workers_bench --quick`` runs it smaller (about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).parents[1]
# The test harnesses (a PostgreSQL cluster, workers, localnet and the demo app).
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

import pg_cluster  # noqa: E402
from cli_harness import Cli, start_localnet, write_config, write_pem  # noqa: E402
from workers_harness import Workers, chaos, sql, takeover_table  # noqa: E402

MiB = 1024 * 1024
EVERY = 10
QUICK_ARGV = ["--quick"]  # what `python -m benchmarks --quick` passes


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks workers_bench")
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 2 minutes)")
    parser.add_argument("--canisters", type=int, default=None, help="demo apps (default 6)")
    parser.add_argument("--mib", type=int, default=None, help="MiB per demo app (default 4)")
    parser.add_argument("--budget-mib", type=float, default=1.0, help="bytes/s per worker, MiB")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs (default 10)")
    parser.add_argument("--takeover", type=float, default=9.0, help="[store] takeover, seconds")
    parser.add_argument("--global-mib", type=float, default=None, help="global bytes/s, MiB")
    parser.add_argument("--chunk-kib", type=int, default=256, help="max_chunk_size, KiB")
    parser.add_argument(
        "--only", choices=("throughput", "global", "takeover"), help="run one part only"
    )
    args = parser.parse_args(list(argv))
    quick = args.quick
    args.canisters = args.canisters or (6 if quick else 9)
    args.mib = args.mib or (1 if quick else 4)
    args.kills = args.kills or (4 if quick else 10)
    args.global_mib = args.global_mib or (0.5 if quick else 1.0)
    return args


def _config(cli: Cli, apps: dict[str, str], budget_mib: float, takeover: float) -> str:
    text = cli.config.read_text()
    text += f'\n[limits]\nbytes_per_second = "{int(budget_mib * MiB)}"\n'
    text += f'\n[store]\ntakeover = "{takeover:g}s"\n'
    for name, source in apps.items():
        text += f'\n[jobs.{name}]\nkind = "backup"\nsource = "{source}"\n'
        text += f'schedule = "every {EVERY}s"\n'
    return text


def _first_runs(workers: Workers, names: set[str]) -> list[tuple[str, float, float]] | None:
    rows = sql(
        workers.url,
        "SELECT DISTINCT ON (name) name, started_at, finished_at FROM replicator_schedule_runs"
        " WHERE outcome = 'done' ORDER BY name, tick",
    )
    runs = [(str(n), float(s), float(f)) for n, s, f in rows]
    return runs if {n for n, _, _ in runs} == names else None


def _image_bytes(workers: Workers) -> int:
    logs = "".join(p.read_text() for p in workers.all_logs())
    sizes = dict(re.findall(r"job (\S+): image of (\d+) bytes, 0 already copied", logs))
    return sum(int(b) for b in sizes.values())


def _start_and_finish_first_runs(
    workers: Workers, n: int, apps: set[str]
) -> list[tuple[str, float, float]]:
    """Start ``n`` workers and wait (10 min at most) for every app's first run."""
    workers.start_all(n)
    workers.wait_ready()
    deadline = time.monotonic() + 600
    runs = None
    while runs is None and time.monotonic() < deadline:
        time.sleep(1)
        runs = _first_runs(workers, apps)
    if runs is None:
        raise RuntimeError(f"the first runs did not finish\n{workers.tails()}")
    return runs


def _throughput(
    cluster: pg_cluster.Cluster, cli: Cli, apps: dict[str, str], args: argparse.Namespace, n: int
) -> float:
    url = cluster.new_database()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "replicator.toml"
        config.write_text(_config(cli, apps, args.budget_mib, args.takeover))
        workers = Workers(config, url, Path(tmp))
        try:
            runs = _start_and_finish_first_runs(workers, n, set(apps))
            nbytes = _image_bytes(workers)
        finally:
            workers.close()
    elapsed = max(f for _, _, f in runs) - min(s for _, s, _ in runs)
    rate = nbytes / elapsed
    share = rate / (n * args.budget_mib * MiB)
    print(
        f"  {n} worker(s): {nbytes / MiB:.1f} MiB in {elapsed:.1f} s = {rate / MiB:.2f} MiB/s"
        f" ({share:.0%} of {n} x {args.budget_mib:g} MiB/s)",
        flush=True,
    )
    return rate


def _takeovers(
    cluster: pg_cluster.Cluster, cli: Cli, apps: dict[str, str], args: argparse.Namespace
) -> list[float]:
    url = cluster.new_database()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "replicator.toml"
        # A slow copy (a quarter of the budget): kills land while jobs run.
        config.write_text(_config(cli, apps, args.budget_mib / 4, args.takeover))
        workers = Workers(config, url, Path(tmp))
        try:
            workers.start_all(3)
            workers.wait_ready()
            done = chaos(
                workers, args.kills, (3.0, 6.0), random.Random(7), settle=3 * args.takeover
            )
        finally:
            workers.close()
    print(takeover_table(done), flush=True)
    times = [t for kill in done for t in kill.jobs.values()]
    if None in times:
        print("  some jobs were never taken over", flush=True)
        return [float("inf")]
    return [t for t in times if t is not None]


def _global_config(cli: Cli, apps: dict[str, str], args: argparse.Namespace) -> str:
    text = cli.config.read_text()
    text += '\n[limits]\nbytes_per_second = "64 MiB"\ncalls_per_second = 100\n'
    text += f'global_bytes_per_second = "{int(args.global_mib * MiB)}"\n'
    text += f'max_chunk_size = "{args.chunk_kib * 1024}"\n'
    text += f'\n[store]\ntakeover = "{args.takeover:g}s"\n'
    for name, source in apps.items():
        text += f'\n[jobs.{name}]\nkind = "backup"\nsource = "{source}"\n'
        text += f'schedule = "every {EVERY}s"\n'
    return text


def _copied(workers: Workers) -> float:
    total = 0.0
    for worker in workers.workers.values():
        for line in worker.metrics().splitlines():
            if line.startswith("replicator_copied_bytes_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _leases(url: str) -> list[tuple[float, float]]:
    rows = sql(url, "SELECT at, tokens FROM replicator_rate_leases ORDER BY at")
    return [(float(t), float(n)) for t, n in rows]


def _used_share(leases: list[tuple[float, float]], budget: float) -> float:
    """Bytes leased after the first lease, per second until the last, against ``budget``."""
    (first, _), (last, _) = leases[0], leases[-1]
    return sum(n for _, n in leases[1:]) / (last - first) / budget


def _lease_excess(leases: list[tuple[float, float]], budget: float) -> float:
    """The most bytes leased over any window beyond budget x window + the bucket (a second)."""
    worst = float("-inf")
    for i, (t0, _) in enumerate(leases):
        total = 0.0
        for t1, n in leases[i:]:
            total += n
            worst = max(worst, total - budget * (t1 - t0) - budget)
    return worst


def _global_budget(
    cluster: pg_cluster.Cluster, cli: Cli, apps: dict[str, str], args: argparse.Namespace, n: int
) -> tuple[float, float, bool]:
    url = cluster.new_database()
    budget = args.global_mib * MiB
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "replicator.toml"
        config.write_text(_global_config(cli, apps, args))
        workers = Workers(config, url, Path(tmp))
        try:
            _start_and_finish_first_runs(workers, n, set(apps))
            copied = _copied(workers)
            holders = sql(url, "SELECT count(DISTINCT worker) FROM replicator_rate_leases")
        finally:
            workers.close()
    leases = _leases(url)
    leased = sum(n for _, n in leases)
    share = _used_share(leases, budget)
    excess = _lease_excess(leases, budget) / (args.chunk_kib * 1024)
    print(
        f"  {n} worker(s) ({holders[0][0]} leasing): {copied / MiB:.1f} MiB copied of"
        f" {leased / MiB:.1f} MiB leased in {leases[-1][0] - leases[0][0]:.1f} s; used"
        f" {share:.1%} of {args.global_mib:g} MiB/s; most leased above budget x window"
        f" + a second's: {excess:+.2f} chunks",
        flush=True,
    )
    return share, excess, copied <= leased


async def run(argv: Sequence[str] = ()) -> bool:
    # The harness drives subprocesses and localnet synchronously (as the tests do).
    return await asyncio.to_thread(_run, parse(argv))


def _run(args: argparse.Namespace) -> bool:
    print(
        f"config: {args.canisters} demo apps x {args.mib} MiB, a backup job each every {EVERY}s;"
        f" bytes_per_second {args.budget_mib:g} MiB per worker; global budget"
        f" {args.global_mib:g} MiB/s; takeover {args.takeover:g} s;"
        f" {args.kills} kills",
        flush=True,
    )
    cluster = pg_cluster.start()
    net = start_localnet()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pem = write_pem(Path(tmp) / "identity.pem")
            config = write_config(Path(tmp) / "replicator.toml", net, pem)
            cli = Cli(net, pem, config, Path(tmp) / "unused.sqlite3")
            apps = {
                f"app{i}": str(cli.deploy_demo(args.mib, seed=i)) for i in range(args.canisters)
            }
            ok = True
            if args.only in (None, "throughput"):
                print("throughput (first backup of every app, fresh store each):", flush=True)
                rates = {n: _throughput(cluster, cli, apps, args, n) for n in (1, 2, 3)}
                scaling = rates[3] / rates[1]
                print(f"scaling 3 workers / 1 worker: {scaling:.2f}x (target >= 2.0)", flush=True)
                ok &= scaling >= 2.0
            if args.only in (None, "global"):
                print(
                    f"one global budget of {args.global_mib:g} MiB/s (first backups, fresh"
                    f" store each, chunks up to {args.chunk_kib} KiB):",
                    flush=True,
                )
                for n in (1, 2, 3):
                    share, excess, within = _global_budget(cluster, cli, apps, args, n)
                    ok &= share >= 0.9 and excess <= 1.0 and within
                print("targets: used >= 90 %, excess <= 1 chunk, copied <= leased", flush=True)
            if args.only in (None, "takeover"):
                print("takeover times (SIGKILL of a busy worker, 3 workers):", flush=True)
                times = _takeovers(cluster, cli, apps, args)
                longest = max(times)
                print(
                    f"takeover: n={len(times)} min {min(times):.1f} s, median"
                    f" {statistics.median(times):.1f} s, max {longest:.1f} s"
                    f" (bound {args.takeover:g} s)"
                )
                ok &= longest <= args.takeover
    finally:
        net.stop()
        cluster.stop()
    return ok
