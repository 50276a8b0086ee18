"""The global rates against a real PostgreSQL: workers leasing one bucket never exceed it.

Four stores in four threads (as four worker processes would: a pool and an
event loop each) copy through :class:`~replicator.limits.SharedRate` leasing
from the store's bucket for a few seconds.  The lease log (the server's
clock) holds the rate over every window exactly; the bytes the callers
moved hold it up to what each had left of its last lease; together they use
at least 90 % of it.  SQLite has no shared bucket (one process: memory).
"""

from __future__ import annotations

import asyncio
import threading
import time

from workers_harness import sql

from replicator.limits import LEASE_SECONDS, CallSpec, Direct, SharedRate
from replicator.pgstore import PostgresStore

RATE = 2 * 1024 * 1024
CHUNK = 64 * 1024
WORKERS = 4
SECONDS = 4.0


def _worker(url: str, start: float, moved: list[tuple[float, int]]) -> None:
    async def run() -> None:
        store = await PostgresStore.open(url)
        try:
            rate = SharedRate(Direct(), store.rate_leases, "local", RATE)

            async def perform() -> None:
                moved.append((time.time(), CHUNK))

            await asyncio.sleep(max(0.0, start - time.time()))
            while time.time() < start + SECONDS:
                await rate.call(CallSpec("a", "icrp_write", bytes=CHUNK), perform)
        finally:
            await store.close()

    asyncio.run(run())


def _most_in_a_window(events: list[tuple[float, float]], rate: float) -> float:
    """The largest ``sum - rate * width`` over every window of ``events`` (time, amount)."""
    events = sorted(events)
    worst = float("-inf")
    for i, (t0, _) in enumerate(events):
        total = 0.0
        for t1, amount in events[i:]:
            total += amount
            worst = max(worst, total - rate * (t1 - t0))
    return worst


def test_workers_leasing_one_bucket_never_exceed_it_together(pg_url: str) -> None:
    asyncio.run(_migrated(pg_url))
    start = time.time() + 1.0  # every worker connected before the first lease
    moved: list[tuple[float, int]] = []
    threads = [
        threading.Thread(target=_worker, args=(pg_url, start, moved)) for _ in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    leases = [
        (float(at), float(tokens))
        for at, tokens in sql(pg_url, "SELECT at, tokens FROM replicator_rate_leases")
    ]
    assert {w for (w,) in sql(pg_url, "SELECT DISTINCT worker FROM replicator_rate_leases")}
    # The bucket: a second's capacity, starting empty; leases never above the rate.
    assert _most_in_a_window(leases, RATE) <= RATE * 1.000001
    # What was moved: the rate, plus at most each worker's unspent last lease
    # (and what the loaded machine's scheduling bunched up: a tenth of a second).
    lease = max(RATE * LEASE_SECONDS, CHUNK)
    slack = RATE + WORKERS * lease + RATE * 0.1
    assert _most_in_a_window(moved, RATE) <= slack
    # The share used, from the first call (the new bucket's first quarter second
    # fills the first lease) to the end.
    begun = min(t for t, _ in moved)
    used = sum(n for t, n in moved if t <= start + SECONDS)
    share = used / (RATE * (start + SECONDS - begun))
    print(f"\n{WORKERS} workers used {share:.1%} of the shared rate over {SECONDS:g} s")
    assert share >= 0.9


async def _migrated(url: str) -> None:
    await (await PostgresStore.open(url)).close()
