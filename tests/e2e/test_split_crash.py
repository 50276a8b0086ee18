"""A split survives SIGKILL in each of its phases: the same command again finishes it.

``replicator split`` runs as a subprocess against localnet in another
process, slowed by a low calls-per-second limit so that each phase lasts a
moment.  The test watches the checkpoint store and kills the run with
SIGKILL (no cleanup at all) once the job is in ``copying``, then again in
``catching_up``, ``cutting_over`` and ``freeing``; each time the same
command is started again and finds its job.  After the first kill, records
all over the key space are overwritten and added (~1.2 MB of journal), so
that the catch-up has changes to apply when it is killed.  Finally:

- one job did it all and two shards exist (a crash never creates a second set);
- every record the source held (as last written) is held exactly once, by
  the canister the routing table names, and the source holds only the
  range it kept.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time

import pytest
from cli_harness import Cli, json_lines

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import KeyRange, Record
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILL_IN = ("copying", "catching_up", "cutting_over", "freeing")
ORDER = ("pending", "copying", "catching_up", "cutting_over", "freeing", "done")


def _args(demo: Principal) -> list[str]:
    return ["--json", "--yes", "split", demo.to_text(), "--shards", "3", "--calls-per-second", "8"]


async def _phases(cli: Cli) -> list[tuple[str, str]]:
    try:
        async with await SqliteStore.open(cli.state) as store:
            return [(j.id, j.phase) for j in await store.list_jobs() if j.kind == "split"]
    except (OSError, sqlite3.Error):
        return []


def _wait_phase(cli: Cli, proc: subprocess.Popen[str], phase: str, timeout: float) -> str:
    """Until the split job is in ``phase`` (or past it); the phase it is in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended ({proc.returncode}): {proc.stderr and proc.stderr.read()}"
            )
        jobs = asyncio.run(_phases(cli))
        if jobs and ORDER.index(jobs[0][1]) >= ORDER.index(phase):
            return jobs[0][1]
        time.sleep(0.02)
    raise AssertionError(f"the split never reached {phase}")


async def _records(cli: Cli, canister: Principal, keys: KeyRange) -> dict[bytes, bytes]:
    async with cli.agent() as agent:
        icrp, held, cursor = IcrpClient(agent, canister), {}, None
        while True:
            batch = await icrp.export_range(keys, cursor, 1_000_000)
            held.update((r.key, r.value) for r in batch.records)
            if batch.next_cursor is None:
                return held
            cursor = batch.next_cursor


async def _routes(cli: Cli, canister: Principal) -> list[tuple[KeyRange, Principal]]:
    async with cli.agent() as agent:
        return [(r.range, r.canister) for r in (await IcrpClient(agent, canister).routing()).routes]


async def _write(cli: Cli, canister: Principal, records: list[Record]) -> None:
    async with cli.agent() as agent:
        icrp = IcrpClient(agent, canister)
        for at in range(0, len(records), 50):
            await icrp.import_records(records[at : at + 50])


def _changes(before: dict[bytes, bytes]) -> list[Record]:
    """Every 8th record rewritten and as many new keys beside them, 4 KiB values."""
    keys = sorted(before)[::8]
    rewritten = [Record(k, b"rewritten" + k.rjust(4087, b".")) for k in keys]
    added = [Record(k + b"\x00new", b"added" + k.rjust(4091, b".")) for k in keys]
    return rewritten + added


def test_sigkill_in_every_phase_then_the_same_command_finishes(cli: Cli) -> None:
    started = time.monotonic()
    demo = cli.deploy_demo(2)
    before = asyncio.run(_records(cli, demo, KeyRange()))
    killed_in = []
    for phase in KILL_IN:
        proc = cli.popen(*_args(demo))
        try:
            killed_in.append(_wait_phase(cli, proc, phase, 60))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout and proc.stdout.close()
            proc.stderr and proc.stderr.close()
        if phase == "copying":
            changes = _changes(before)
            asyncio.run(_write(cli, demo, changes))
            before.update((r.key, r.value) for r in changes)
    assert killed_in[:2] == ["copying", "catching_up"]
    assert all(p != "done" for p in killed_in)
    jobs = asyncio.run(_phases(cli))
    assert len(jobs) == 1

    final = cli.run(*_args(demo), timeout=120)
    assert final.returncode == 0, final.stderr
    summary = json_lines(final.stdout)[-1]
    assert summary["ok"] is True
    assert summary["resumed"] is True
    assert summary["job_id"] == jobs[0][0]

    routes = asyncio.run(_routes(cli, demo))
    assert len(routes) == 3
    assert len({c for _, c in routes[1:]}) == 2
    held: dict[bytes, bytes] = {}
    for keys, canister in routes:
        part = asyncio.run(_records(cli, canister, keys))
        assert not set(part) & set(held)
        held.update(part)
    assert held == before
    left = asyncio.run(_records(cli, demo, KeyRange()))
    assert all(routes[0][0].contains(k) for k in left)
    print(f"killed in {killed_in}; {time.monotonic() - started:.1f} s")
