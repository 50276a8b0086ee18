"""A snapshot backup survives being killed over and over, and never leaves its canister stopped.

``replicator snapshot backup`` runs as a subprocess against localnet in
another process.  Every run is the same command again; it finds its job by
fingerprint and continues from the checkpoint.

1. The first run is killed (SIGKILL) inside the stop → snapshot → start
   window (localnet answers calls slowly for it): the canister is left
   stopped, and the checkpoint records that this job stopped it.  The next
   run starts it again.
2. Four runs are killed while chunks are being read into the repository,
   under a low bytes-per-second limit: after every kill the checkpoint holds
   every chunk it held before and more, the run read no chunk acknowledged
   before it, the repository holds no manifest (nothing half-written is
   referenced), and the canister is running.
3. A last run finishes: one IC snapshot was taken and it is deleted again,
   the repository verifies, one job did it all, and the stored snapshot
   restores into a new canister that answers with the same state.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from cli_harness import ROOT, UNPACED_LIMITS, Cli, json_lines
from icp_candid import Types
from prometheus_client.parser import text_string_to_metric_families

from canister_iface.candid_value import Rec, decode_single, encode_values
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore
from replicator.repository import Repository

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAIN_WASM = ROOT / "canister_iface" / "wasm" / "plain_kv.wasm"
KILLS = 4  # each resumes a killed run: more kills exercise nothing new, they take time
STABLE_MIB = 8
RATE = "1 MiB"  # bytes per second: each run reads a slice or two before it is killed


@pytest.fixture
def cli_config_extra() -> str:
    return UNPACED_LIMITS  # the killed runs are paced by --bytes-per-second


class Run:
    """One ``replicator snapshot backup`` subprocess: its JSON lines as they come, its /metrics."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.proc = cli.popen(*args, "--metrics-port", "0")
        self.lines: list[str] = []
        self.metrics_url: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if '"metrics_url"' in line:
                self.metrics_url = json.loads(line).get("metrics_url")

    def metric(self, name: str) -> float:
        if self.metrics_url is None or self.proc.poll() is not None:
            return 0.0
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    def wait(self, what: str, check: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def noted(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def kill(self) -> tuple[int, list[dict[str, object]], str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(30)
        self._reader.join(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code, json_lines("".join(self.lines)), err


def _deploy(cli: Cli) -> Principal:
    canister = cli.deploy_wasm(PLAIN_WASM)

    async def fill() -> None:
        async with cli.agent() as agent:
            size = STABLE_MIB * 1024 * 1024
            arg = [(Types.Nat64, 0), (Types.Nat64, size), (Types.Nat64, 3)]
            await agent.update(canister, "generate", encode_values(arg))  # type: ignore[arg-type]
            keys = (Types.Vec(Types.Nat), list(range(256)))
            await agent.update(
                canister,
                "generate_entries",
                encode_values([keys, (Types.Nat, 4096), (Types.Nat64, 5)]),  # type: ignore[list-item]
            )

    asyncio.run(fill())
    return canister


def _status(cli: Cli, canister: Principal) -> str:
    async def status() -> str:
        async with cli.agent() as agent:
            return (await ManagementClient(agent).canister_status(canister)).status

    return asyncio.run(status())


def _snapshots(cli: Cli, canister: Principal) -> list[bytes]:
    async def listed() -> list[bytes]:
        async with cli.agent() as agent:
            return [s.id for s in await ManagementClient(agent).list_canister_snapshots(canister)]

    return asyncio.run(listed())


def _fingerprint(cli: Cli, canister: Principal) -> int:
    async def stats() -> int:
        async with cli.agent() as agent:
            rec = Rec(decode_single(await agent.query(canister, "stats"), "stats"), "stats")
            return rec.nat("fingerprint")

    return asyncio.run(stats())


def _latency(cli: Cli, seconds: float) -> None:
    body = {"latency_s": {"call": seconds} if seconds else {}}
    httpx.put(f"{cli.net.url}/_/faults", json=body, timeout=30).raise_for_status()


def _checkpoint(state: Path) -> tuple[str, str, set[int]]:
    async def load() -> tuple[str, str, set[int]]:
        async with await SqliteStore.open(state) as store:
            (job,) = await store.list_jobs()
            checkpoint = await store.load(job.id)
            return job.id, job.phase, set(checkpoint.acked)

    return asyncio.run(load())


@pytest.mark.timeout(300)
def test_a_snapshot_backup_killed_five_times_resumes_and_never_leaves_the_canister_stopped(
    cli: Cli, tmp_path: Path
) -> None:
    rng = random.Random(20261205)
    app = _deploy(cli)
    fingerprint = _fingerprint(cli, app)
    repo = tmp_path / "repo"
    backup = ["--json", "snapshot", "backup", str(app), "--repo", str(repo)]

    # 1. Killed while the canister is stopped for the snapshot.
    _latency(cli, 0.8)
    try:
        run = Run(cli, *backup)
        assert run.wait("the stop", lambda: run.noted("for the snapshot"), 60), run.lines
        code, _, err = run.kill()
    finally:
        _latency(cli, 0)
    assert code == -signal.SIGKILL, err
    assert _status(cli, app) == "stopped"  # the process died with the canister stopped

    # 2. Killed four times while chunks are read into the repository.
    acked: set[int] = set()
    for attempt in range(KILLS):
        run = Run(cli, *backup, "--bytes-per-second", RATE)
        copying = run.wait(
            "copying", lambda r=run: r.metric("replicator_copied_bytes_total") > 0, 60
        )
        assert copying, f"run {attempt} copied nothing: {run.lines}"
        if attempt == 0:
            assert run.noted("still stopped by an earlier run"), run.lines
        time.sleep(rng.uniform(0.0, 0.5))
        copied_chunks = run.metric("replicator_copied_chunks_total")
        code, events, err = run.kill()
        assert code == -signal.SIGKILL, f"run {attempt}: {run.lines} {err}"
        assert not [e for e in events if e["event"] in ("error", "summary")], events
        assert "Traceback" not in err, err
        _, phase, now_acked = _checkpoint(cli.state)
        assert phase == "copying", f"run {attempt} was killed after the copy ({phase})"
        assert acked <= now_acked  # nothing acknowledged is ever forgotten
        assert len(now_acked) > len(acked)  # every run made progress
        assert copied_chunks <= len(now_acked - acked)  # it read nothing acknowledged before
        assert Repository.open(repo).snapshot_ids() == []  # no manifest names a partial snapshot
        assert _status(cli, app) == "running"
        assert len(_snapshots(cli, app)) == 1  # the one snapshot the job took, kept until stored
        acked = now_acked

    # 3. The last run finishes.
    done = cli.run("--json", "snapshot", "backup", str(app), "--repo", str(repo))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json_lines(done.stdout)[-1]
    assert summary["phase"] == "done"
    assert summary["resumed"] is True
    assert int(summary["chunks_skipped"]) >= len(acked)  # type: ignore[call-overload]
    assert _snapshots(cli, app) == []  # the IC snapshot is deleted once stored
    assert _status(cli, app) == "running"
    verify = cli.run("snapshot", "verify", "--repo", str(repo))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    jobs = [j for j in json_lines(cli.run("--json", "jobs").stdout) if j["event"] == "note"]
    assert [(j["kind"], j["phase"]) for j in jobs] == [("snapshot-backup", "done")]

    restored = cli.run(
        "--json", "snapshot", "restore", str(app), "--repo", str(repo), "--new-canister", "--yes"
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    fresh = Principal.from_text(str(json_lines(restored.stdout)[-1]["target"]).split("@")[0])
    assert fresh != app
    assert _fingerprint(cli, fresh) == fingerprint
