"""Safe on day one, as a user meets it: the CLI in a subprocess against localnet.

Every mistake gets its documented exit code and a message naming the thing
and the fix, never a traceback; files holding canister state are private;
the cycles budget holds across processes and restarts; two processes never
run one job at once.

Read-only files are simulated by dropping the capabilities that let root
ignore permission bits (``setpriv --bounding-set=-all``), so the check is
the same as for an ordinary user.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_harness import ROOT, Cli, json_lines
from prometheus_harness import answers, free_port, metric, stop, wait

from canister_iface.certificate import BLS_KEY_DER_PREFIX
from replicator.checkpoints import SqliteStore
from replicator.job import CanisterRef, Job

pytestmark = pytest.mark.e2e

SOME_ID = "xmf3k-3iaaa-fake5-aaaaa-cai"  # made up
T = 10**12
BAD = ("Traceback", "internal error", "please report")


def _clean(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the command said (``--json`` errors are on stdout), without a traceback."""
    text = result.stdout + result.stderr
    for word in BAD:
        assert word not in text, text
    return text


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    events = json_lines(result.stdout)
    assert events, result.stderr
    assert events[-1]["event"] == "summary", events[-1]
    return events[-1]


def _unprivileged(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """``replicator`` as a process that permission bits apply to (root without capabilities)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot simulate read-only files")
        prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    return subprocess.run(
        [*prefix, *cli.args(*args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cli.env},
        cwd=ROOT,
    )


# ------------------------------------------------------------ bad input


def test_the_management_canister_is_never_a_source_or_target(cli: Cli, tmp_path: Path) -> None:
    archive = tmp_path / "a.icra"
    for args in (
        ["backup", "aaaaa-aa"],
        ["backup", SOME_ID, "aaaaa-aa"],
        ["restore", "aaaaa-aa"],
        ["restore", SOME_ID, "AAAAA-AA"],
        ["archive", "export", "aaaaa-aa", str(archive)],
        ["archive", "import", str(archive), "aaaaa-aa"],
        ["verify", "aaaaa-aa"],
    ):
        result = cli.run(*args, "--yes")
        assert result.returncode == 2, (args, result.stderr)
        assert "aaaaa-aa is the management canister" in _clean(result), args
    assert not cli.state.exists()  # refused before anything was opened


def test_a_config_file_that_is_not_utf8(cli: Cli, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(cli.config.read_bytes() + "# Zürich\n".encode("latin-1"))
    result = cli.run("--config", str(latin), "jobs")
    assert result.returncode == 2
    err = _clean(result)
    assert str(latin) in err
    assert "UTF-8" in err


def test_a_root_key_of_the_wrong_shape_is_refused_at_load(cli: Cli, tmp_path: Path) -> None:
    short, foreign = tmp_path / "short.toml", tmp_path / "foreign.toml"
    key = cli.net.root_key.hex()
    short.write_text(cli.config.read_text().replace(key, key[:-2]))
    not_bls = (bytes(len(BLS_KEY_DER_PREFIX)) + cli.net.root_key[-96:]).hex()
    foreign.write_text(cli.config.read_text().replace(key, not_bls))
    for path, why in ((short, "this one has 132 bytes"), (foreign, "not an IC BLS key")):
        result = cli.run("--config", str(path), "jobs")  # a command that calls nothing
        assert result.returncode == 2, result.stderr
        err = _clean(result)
        assert f"{path}: networks.local.root_key" in err
        assert why in err


def test_fetching_a_root_key_is_refused_for_a_remote_local_network(
    cli: Cli, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.toml"
    remote.write_text('network = "local"\n[networks.local]\nurl = "http://192.0.2.7:4943"\n')
    result = cli.run("--config", str(remote), "backup", SOME_ID)
    assert result.returncode == 2
    err = _clean(result)
    assert "networks.local.root_key" in err
    assert "loopback" in err
    assert "fetch-insecure" in err


def test_canister_ids_in_upper_case_are_accepted_and_stored_lower(cli: Cli) -> None:
    app = cli.deploy_demo(mib=1)
    backup = cli.create_backup(app)
    result = cli.run("--json", "backup", str(app).upper(), str(backup).upper())
    assert result.returncode == 0, result.stdout + result.stderr
    listed = cli.run("--json", "jobs")
    jobs = [e for e in json_lines(listed.stdout) if e["event"] == "note"]
    assert [(j["source"], j["target"]) for j in jobs] == [(f"{app}@local", f"{backup}@local")]


# ------------------------------------------------------- the checkpoint store


def test_a_read_only_store_names_the_file_and_the_fix(cli: Cli) -> None:
    async def record() -> None:
        async with SqliteStore(cli.state) as store:
            await store.create_job(Job("backup", CanisterRef(SOME_ID, "local"), None, id="b-1"))

    asyncio.run(record())
    cli.state.chmod(0o400)
    result = _unprivileged(cli, "backup", SOME_ID)
    assert result.returncode == 2, result.stdout + result.stderr
    err = _clean(result)
    assert f"the checkpoint store {cli.state} is read-only" in err
    assert "chmod u+w" in err
    listed = _unprivileged(cli, "jobs")  # listing needs no write access
    assert listed.returncode == 0, _clean(listed)
    assert "b-1" in listed.stdout
    pruning = _unprivileged(cli, "jobs", "--prune")
    assert pruning.returncode == 2
    assert "read-only" in _clean(pruning)


def test_a_read_only_directory_is_named(cli: Cli, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    state = locked / "checkpoints.sqlite3"
    result = _unprivileged(cli, "--state", str(state), "backup", SOME_ID)
    assert result.returncode == 2, result.stdout + result.stderr
    err = _clean(result)
    assert f"the directory {locked} of the checkpoint store is read-only" in err
    assert "-wal" in err


def test_a_damaged_store_names_the_file_and_the_way_out(cli: Cli) -> None:
    async def fill() -> None:
        async with SqliteStore(cli.state) as store:
            for i in range(40):
                job = Job("backup", CanisterRef(SOME_ID, "local"), None, id=f"backup-{i:012d}")
                await store.create_job(job)
                await store.ack_chunks(job.id, [(c, bytes(32)) for c in range(50)])

    asyncio.run(fill())
    with sqlite3.connect(cli.state) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
    raw = bytearray(cli.state.read_bytes())
    for offset in range(page, len(raw) - page, page):
        raw[offset : offset + 64] = b"\xff" * 64
    cli.state.write_bytes(bytes(raw))
    for args in (["jobs"], ["backup", SOME_ID]):
        result = cli.run(*args)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        err = _clean(result)
        assert "malformed" in err
        assert f"mv {cli.state} {cli.state}.damaged" in err


def test_store_files_are_private(cli: Cli) -> None:
    app = cli.deploy_demo(mib=1, seed=3)
    backup = cli.create_backup(app)
    probe = (
        "import os, runpy, sys; os.umask(0); sys.argv = ['replicator', *sys.argv[1:]];"
        " runpy.run_module('replicator.cli', run_name='__main__')"
    )
    archive = cli.state.parent / "app.icra"
    for args in (["backup", str(app), str(backup)], ["archive", "export", str(app), str(archive)]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *cli.args(*args)[3:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    for path in (cli.state, archive):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_resume_without_a_config_names_the_url_it_tried(cli: Cli) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 4943)) == 0:
            pytest.skip("something listens on 127.0.0.1:4943, the default local URL")

    async def record() -> str:
        async with SqliteStore(cli.state) as store:
            job = Job("backup", CanisterRef(SOME_ID, "local"), None, id="backup-0123456789ab")
            await store.create_job(job)
            return job.id

    job_id = asyncio.run(record())
    args = [sys.executable, "-m", "replicator.cli", "--state", str(cli.state), "resume", job_id]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 75, result.stdout + result.stderr
    err = _clean(result)
    assert "http://127.0.0.1:4943" in err
    assert "no --config was given" in err


# ------------------------------------------------------------- the budget


def test_creation_and_initial_cycles_are_charged_and_the_budget_survives_restarts(
    cli: Cli,
) -> None:
    app = cli.deploy_demo(mib=1, seed=5)
    # 2 T initial cycles (the default) do not fit into 1 T: refused before creating anything.
    small = cli.run("--json", "backup", str(app), "--yes", "--cycles-budget", "1T")
    assert small.returncode == 6, small.stdout + small.stderr
    err = _clean(small)
    assert "would exceed the cycles budget of network local" in err
    assert "renews at" in err
    assert "UTC" in err
    created = asyncio.run(_registry(cli.state))
    assert all(e.canister is None for e in created)  # nothing was created

    enough = cli.run("--json", "backup", str(app), "--yes", "--cycles-budget", "3T")
    assert enough.returncode == 0, enough.stdout + enough.stderr
    spent = asyncio.run(_spent(cli.state))
    assert spent >= 2 * T  # the initial cycles were charged with the creation

    # A new process with a budget below what was spent today: still spent.
    again = cli.run("--json", "backup", str(app), "--cycles-budget", str(2 * T))
    assert again.returncode == 6, again.stdout + again.stderr
    assert "would exceed the cycles budget" in _clean(again)


async def _registry(state: Path) -> list[object]:
    async with SqliteStore(state) as store:
        return list(await store.registry.entries())


async def _spent(state: Path) -> int:
    async with SqliteStore(state) as store:
        period = int(time.time() // 86400 * 86400)
        return await store.spending.spent("local", period)


def test_serve_reports_the_budget_left_in_the_store(cli: Cli, tmp_path: Path) -> None:
    async def spend() -> None:
        async with SqliteStore(cli.state) as store:
            period = int(time.time() // 86400 * 86400)
            assert (await store.spending.spend("local", period, T, 5 * T))[0]

    asyncio.run(spend())  # what an earlier process spent today
    port = free_port()
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[limits]
cycles_budget = "5T"
cycles_budget_period = "1d"

[metrics]
port = {port}

[jobs.later]
kind = "backup"
source = "{SOME_ID}"
schedule = "0 0 1 1 *"
"""
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cli.args("serve"), stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait("replicator serve to answer", lambda: answers(base, proc, log), 30, [log])
        remaining = "replicator_cycles_budget_remaining"
        assert metric(base, remaining, network="local") == 4 * T
        asyncio.run(spend())  # another process spends: the next scrape sees it
        assert metric(base, remaining, network="local") == 3 * T
        assert metric(base, "replicator_cycles_budget", network="local") == 5 * T
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------- one run at a time


def test_two_processes_cannot_run_one_job_and_a_dead_holder_is_taken_over(cli: Cli) -> None:
    app = cli.deploy_demo(mib=4, seed=7)
    backup = cli.create_backup(app)
    args = ["--json", "backup", str(app), str(backup), "--bytes-per-second", "256KiB"]
    first = cli.popen(*args)
    try:
        wait(
            "the first run to hold its job",
            lambda: first.poll() is None and _running(cli) == first.pid,
            60,
            [],
        )
        second = cli.run(*args)
        assert second.returncode == 75, second.stdout + second.stderr
        err = _clean(second)
        assert f"already running: pid {first.pid} on host {socket.gethostname()}" in err
        assert "since" in err
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    third = cli.run(*args[:-2])
    assert third.returncode == 0, third.stdout + third.stderr
    notes = [e["message"] for e in json_lines(third.stdout) if e["event"] == "note"]
    assert any(f"took over the lock of pid {first.pid}" in str(n) for n in notes), notes
    assert any("its process is gone" in str(n) for n in notes), notes
    assert _summary(third)["resumed"] is True
    listed = [e for e in json_lines(cli.run("--json", "jobs").stdout) if e["event"] == "note"]
    assert [(j["phase"], j["running"]) for j in listed] == [("done", None)]


def _running(cli: Cli) -> int | None:
    if not cli.state.exists():
        return None
    result = cli.run("--json", "jobs")
    for event in json_lines(result.stdout):
        running = event.get("running")
        if event["event"] == "note" and isinstance(running, dict):
            pid = running["pid"]
            return pid if isinstance(pid, int) else None
    return None


# ------------------------------------------------------- re-runs and pruning


def test_re_running_an_export_and_pruning_jobs(cli: Cli, tmp_path: Path) -> None:
    app = cli.deploy_demo(mib=1, seed=8)
    archive = tmp_path / "app.icra"
    first = cli.run("--json", "archive", "export", str(app), str(archive))
    assert first.returncode == 0, first.stdout + first.stderr
    again = cli.run("--json", "archive", "export", str(app), str(archive))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again)["bytes_copied"] == 0

    pruned = cli.run("--json", "jobs", "--prune", "--older-than", "0s")
    assert pruned.returncode == 0, pruned.stderr
    summary = _summary(pruned)
    assert summary["jobs"] == 0
    assert len(summary["pruned"]) == 2  # type: ignore[arg-type]
    bad = cli.run("jobs", "--older-than", "1d")
    assert bad.returncode == 2
    assert "--prune" in _clean(bad)


def test_a_scheduled_export_to_one_file_never_gets_stuck(cli: Cli, tmp_path: Path) -> None:
    app = cli.deploy_demo(mib=1, seed=10)
    port = free_port()
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[metrics]
port = {port}

[jobs.offsite]
kind = "archive-export"
source = "{app}"
target = "file:{tmp_path / "app.icra"}"
schedule = "every 2s"
"""
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cli.args("serve"), stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT
        )
    base = f"http://127.0.0.1:{port}"
    runs = "replicator_job_runs_total"
    try:
        wait("replicator serve to answer", lambda: answers(base, proc, log), 30, [log])
        wait(
            "three scheduled exports to the same file",
            lambda: metric(base, runs, kind="archive-export", outcome="done") >= 3,
            60,
            [log],
        )
        assert metric(base, runs, kind="archive-export", outcome="failed") == 0
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = [e for e in json_lines(cli.run("--json", "jobs").stdout) if e["event"] == "note"]
    assert {j["phase"] for j in listed} == {"done"}
    assert json.loads(json.dumps(listed))  # plain JSON all the way
