"""The warm pool survives SIGKILL: a refill killed twice mid-way ends full, nothing leaked.

``replicator fleet backup --pool 5`` runs as a subprocess against localnet
(another process); the test SIGKILLs it each time the registry has a few
more pool rows (the newest most likely still being created or installed).
The same command then finishes the rows the killed runs left behind and
fills the pool.  At the end: exactly 5 ready pool canisters, every member
that speaks ICRP has its own backup canister, no canister is in two
registry rows, and every canister on localnet is accounted for (the
platform, its user canisters, the foreign one, and the registry's): none
was created and forgotten.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import httpx
import pytest
from cli_harness import Cli
from test_cli_fleet import deploy_fleet

from replicator.checkpoints import SqliteStore
from replicator.errors import ReplicatorError
from replicator.registry import POOL_ROLE, Entry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS = 3
POOL = 5
KILLS = 2


def registry(cli: Cli) -> list[Entry]:
    async def read() -> list[Entry]:
        try:
            store = SqliteStore(cli.state, read_only=True)
        except (OSError, ReplicatorError):  # the command has not created the store yet
            return []
        try:
            return await store.registry.entries()
        finally:
            await store.close()

    return asyncio.run(read())


def canisters_on_localnet(cli: Cli) -> int:
    described = httpx.get(f"{cli.net.url}/_/subnets").json()
    return sum(s["canisters"] for s in described["subnets"])


def test_a_pool_refill_killed_twice_ends_full_with_nothing_leaked(cli: Cli) -> None:
    plat, _foreign = deploy_fleet(cli, users=USERS)
    before = canisters_on_localnet(cli)  # the platform, its users and the foreign one
    command = ("--json", "fleet", "backup", "users", "--from", plat.to_text())
    command += ("--pool", str(POOL), "--concurrency", "1")
    for kill in range(KILLS):
        proc = cli.popen(*command)
        target = 2 * (kill + 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for e in registry(cli) if e.role == POOL_ROLE) >= target:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        else:
            raise AssertionError(f"run {kill} made no pool canister")
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    states = Counter(e.state for e in registry(cli) if e.role == POOL_ROLE)
    print(f"pool rows after {KILLS} kills: {dict(states)}")

    last = cli.run(*command)
    assert last.returncode == 1, last.stderr  # the foreign member failed, all others ok

    entries = registry(cli)
    pool = [e for e in entries if e.role == POOL_ROLE]
    assert len(pool) == POOL
    assert {e.state for e in pool} == {"ready"}
    backups = [e for e in entries if e.role == "backup"]
    assert len(backups) == USERS
    assert {e.state for e in backups} == {"ready"}
    owners = Counter(e.canister for e in entries)
    assert None not in owners
    assert set(owners.values()) == {1}  # no canister in two rows
    assert canisters_on_localnet(cli) == before + len(entries)  # none created and forgotten
