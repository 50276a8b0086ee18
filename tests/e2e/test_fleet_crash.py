"""A fleet run survives SIGKILL: killed three times mid-run, it resumes without redoing members.

``replicator fleet backup`` runs as a subprocess against localnet (another
process); the test watches the member table in the store and SIGKILLs the
command each time a few more members have finished.  Each run is the same
command again: it finds the fleet job by fingerprint (taking over the lock
of the killed process) and runs only the members not finished in its round.

What must hold at the end: every member that speaks ICRP was backed up
exactly once (one finished run in the member table, one done backup job),
each into its own backup canister (no canister given to two members, none
left behind by a kill), the one foreign member failed and was counted, and
a single fleet job did it all.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest
from cli_harness import Cli, json_lines
from test_cli_fleet import deploy_fleet

from replicator.checkpoints import SqliteStore
from replicator.errors import ReplicatorError
from replicator.fleetstore import MemberRow
from replicator.job import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS = 12
KILLS = 3


def finished(cli: Cli) -> list[MemberRow]:
    async def read() -> list[MemberRow]:
        try:
            store = SqliteStore(cli.state, read_only=True)
        except (OSError, ReplicatorError):  # the command has not created the store yet
            return []
        try:
            return [r for r in await store.fleets.members("users") if r.round is not None]
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_fleet_run_killed_three_times_backs_every_member_up_once(cli: Cli) -> None:
    plat, foreign = deploy_fleet(cli, users=USERS)
    command = ("--json", "fleet", "backup", "users", "--from", plat.to_text(), "--concurrency", "2")
    for kill in range(KILLS):
        proc = cli.popen(*command)
        target = 3 * (kill + 1)
        deadline = time.monotonic() + 30
        while len(finished(cli)) < target and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(finished(cli)) >= target, f"run {kill} made no progress"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()  # reaps it and closes its pipes

    last = cli.run(*command)
    assert last.returncode == 1, last.stderr  # the foreign member failed, all others ok
    summary = json_lines(last.stdout)[-1]
    assert summary["resumed"] is True
    assert (summary["members_ok"], summary["members_failed"]) == (USERS, 1)
    assert summary["members_run_now"] < USERS + 1  # the finished members were not run again

    async def check() -> None:
        store = SqliteStore(cli.state)
        try:
            rows = await store.fleets.members("users")
            assert all(r.runs == 1 for r in rows), [(r.member, r.runs) for r in rows]
            assert {r.member for r in rows if r.state == "failing"} == {foreign.to_text()}
            jobs = await store.list_jobs()
            assert len([j for j in jobs if j.kind == "fleet"]) == 1
            done = Counter(j.source for j in jobs if j.kind == "backup" and j.phase == Phase.DONE)
            assert len(done) == USERS
            assert set(done.values()) == {1}
            entries = [e for e in await store.registry.entries() if e.role == "backup"]
            owners = Counter(e.canister for e in entries)
            assert len(entries) == USERS  # one backup canister per member that speaks ICRP
            assert set(owners.values()) == {1}  # none given to two members
            assert {r.backup for r in rows if r.state == "ok"} == set(owners)
        finally:
            await store.close()

    asyncio.run(check())
