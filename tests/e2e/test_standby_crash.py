"""A standby survives its orchestrator being SIGKILLed over and over while writes continue.

``replicator standby APP STANDBY`` runs as a subprocess against localnet in
another process; the test writes to the app all along and kills the command
ten times at random moments (while it seeds the standby, and while it
tails the journal). Every run is the same command again: it finds its job
by fingerprint, continues an interrupted seed, and continues the tail from
the standby's applied sequence. At the end, with the writes stopped, a last
run with ``--once`` catches up, and the standby holds exactly the app's
state: same journal head, same ``stats()`` fingerprint, no ``Gap``, one job,
no second seed, and the peer grants of the seed revoked.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from cli_harness import ROOT, AppWriter, Cli, json_lines

from canister_iface.icrp import IcrpClient
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILLS = 10
DEMO_WASM = ROOT / "canister_iface" / "wasm" / "demo_app.wasm"


class Run:
    """One ``replicator standby`` subprocess, its output read as it comes."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.proc = cli.popen(*args)
        self.lines: list[str] = []
        self.started = threading.Event()  # the job has started (its first JSON line)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.started.set()

    def kill(self) -> str:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(30)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.proc.stdout.close()
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        assert self.proc.returncode == -signal.SIGKILL, err
        return "".join(self.lines) + err


def _heads(cli: Cli, *canisters: Principal) -> list[int]:
    async def heads() -> list[int]:
        async with cli.agent() as agent:
            out = []
            for c in canisters:
                journal = (await IcrpClient(agent, c).info()).journal
                assert journal is not None
                out.append(journal.head_seq)
            return out

    return asyncio.run(heads())


async def _jobs(path: Path) -> int:
    async with await SqliteStore.open(path) as store:
        return len(await store.list_jobs())


def test_a_standby_killed_ten_times_under_writes_ends_equal_to_its_primary(cli: Cli) -> None:
    started = time.monotonic()
    app = cli.deploy_demo(2)
    stb = cli.deploy_wasm(DEMO_WASM)
    peers_before = cli.peers(app, stb)
    rng = random.Random(10)
    writer = AppWriter(cli, app, "crash")
    writer.start()
    command = ("standby", app.to_text(), stb.to_text(), "--yes", "--json", "--poll-max", "0.2")
    outputs = []
    try:
        for kill in range(KILLS):
            run = Run(cli, *command, "--check-interval", "1")
            assert run.started.wait(60), "the command did not start its job"
            # The first kills land while the standby is seeded, the later ones mostly
            # while it follows the journal.
            time.sleep(rng.uniform(0.1, 0.8) if kill < 3 else rng.uniform(0.5, 2.5))
            outputs.append(run.kill())
    finally:
        writer.done.set()
        writer.join(30)
    assert writer.count > 50, "the writes did not flow"
    final = cli.run(*command, "--once", "--check-interval", "0")
    assert final.returncode == 0, final.stderr
    summary = json_lines(final.stdout)[-1]
    assert summary["ok"] is True
    assert summary["resumed"] is True
    assert summary["resyncs"] == 0
    head_app, head_stb = _heads(cli, app, stb)
    assert head_app == head_stb
    assert cli.stats(stb) == cli.stats(app)
    assert asyncio.run(_jobs(cli.state)) == 1
    phases = "".join(outputs)
    assert '"phase": "seeding"' in phases
    assert '"phase": "tailing"' in phases  # killed while following, too
    for text in [*outputs, final.stdout, final.stderr]:
        assert "Gap" not in text
        assert "Traceback" not in text
    assert cli.peers(app, stb) == peers_before  # the seed's grants were revoked
    print(f"{KILLS} kills, {writer.count} writes, {time.monotonic() - started:.1f} s")
