"""Job commands end to end: backup, restore, archives, verify, jobs, resume — and their failures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cli_harness import ROOT, UNPACED_LIMITS, Cli, json_lines, write_pem

from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from replicator.cli.demo.app import DEMO_APP_WASM

pytestmark = pytest.mark.e2e

COUNTER_WASM = ROOT / "tests" / "canisters" / "wasm" / "counter.wasm"


@pytest.fixture
def cli_config_extra() -> str:
    return UNPACED_LIMITS  # the tests of running jobs pace them by --bytes-per-second


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    events = json_lines(result.stdout)
    assert events, result.stderr
    assert events[-1]["event"] == "summary", events[-1]
    return events[-1]


def test_backup_wipe_restore_round_trip(cli: Cli) -> None:
    app = cli.deploy_demo(mib=2)
    before = cli.stats(app)

    backup = cli.run("--json", "backup", str(app))
    summary = _summary(backup)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert summary["phase"] == "done"
    assert summary["route"] == "direct"
    target = str(summary["target"]).split("@")[0]
    assert target != str(app)
    assert any("creating a backup canister" in n for n in summary["notes"])  # type: ignore[attr-defined]

    again = cli.run("--json", "backup", str(app))  # the same canister, no second one created
    assert again.returncode == 0
    assert str(_summary(again)["target"]).split("@")[0] == target

    cli.wipe(app)
    assert cli.stats(app).users == 0
    # Replacing a canister's state needs consent: without a terminal, --yes.
    unasked = cli.run("restore", target)
    assert unasked.returncode == 2, unasked.stdout + unasked.stderr
    assert "Re-run with --yes" in unasked.stderr
    assert f"overwrite: the state of {app}@local" in unasked.stderr
    plan = cli.run("--json", "restore", target, "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = _summary(plan)
    assert planned["dry_run"] is True
    assert [a["verb"] for a in planned["actions"]] == ["overwrite"]  # type: ignore[index]
    assert cli.stats(app).users == 0  # neither changed anything
    restore = cli.run("restore", target, "--yes")  # back into the canister the image came from
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "phase:" in restore.stdout
    assert cli.stats(app).fingerprint == before.fingerprint

    verify = cli.run("verify", target, str(app))
    assert verify.returncode == 0, verify.stdout + verify.stderr

    jobs = cli.run("jobs")
    assert jobs.returncode == 0
    lines = jobs.stdout.splitlines()
    assert lines[0].split()[:3] == ["JOB", "PHASE", "CHUNKS"]
    assert [line.split()[1] for line in lines[1:] if line.startswith(("backup", "restore"))] == [
        "done"
    ] * 3


def test_archive_export_import_and_a_damaged_file(cli: Cli, tmp_path: Path) -> None:
    app = cli.deploy_demo(mib=2, seed=5)
    before = cli.stats(app)
    archive = tmp_path / "app.icra"
    export = cli.run("archive", "export", str(app), str(archive))
    assert export.returncode == 0, export.stdout + export.stderr
    assert archive.stat().st_size > 2 * 1024 * 1024
    assert cli.run("verify", str(archive)).returncode == 0

    fresh = cli.deploy_wasm(DEMO_APP_WASM)
    imported = cli.run("--json", "archive", "import", str(archive), str(fresh), "--yes")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert cli.stats(fresh).fingerprint == before.fingerprint

    damaged = tmp_path / "damaged.icra"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    bad = cli.run("verify", f"file:{damaged}")
    assert bad.returncode == 5, bad.stdout + bad.stderr
    other = cli.deploy_wasm(DEMO_APP_WASM)
    refused = cli.run("archive", "import", str(damaged), str(other), "--yes")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert str(damaged) in refused.stderr
    assert cli.stats(other).records == 0  # nothing reached the canister


def test_failures_exit_with_their_documented_codes(cli: Cli, tmp_path: Path) -> None:
    counter = cli.deploy_wasm(COUNTER_WASM)
    same = cli.run("backup", str(counter), str(counter))
    assert same.returncode == 2, same.stderr
    assert "same" in same.stderr
    backup = cli.create_backup(counter)
    not_icrp = cli.run("backup", str(counter), str(backup))
    assert not_icrp.returncode == 3, not_icrp.stdout + not_icrp.stderr
    assert "replication protocol" in not_icrp.stderr

    app = cli.deploy_demo(mib=1, seed=9)
    stranger_pem = write_pem(tmp_path / "stranger.pem")
    denied = cli.run("--identity", str(stranger_pem), "backup", str(app), str(backup))
    assert denied.returncode == 4, denied.stdout + denied.stderr

    unknown = cli.run("resume", "backup-000000000000")
    assert unknown.returncode == 1
    assert "backup-000000000000" in unknown.stderr


def test_names_from_canister_ids_json(cli: Cli, tmp_path: Path) -> None:
    app = cli.deploy_demo(mib=1, seed=11)
    ids = tmp_path / "canister_ids.json"
    ids.write_text(json.dumps({"social": {"local": str(app)}}))
    result = cli.run("--canister-ids", str(ids), "--json", "backup", "social")
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(_summary(result)["source"]) == f"{app}@local"


def test_metrics_are_served_while_a_job_runs(cli: Cli) -> None:
    app = cli.deploy_demo(mib=4, seed=13)
    proc = cli.popen(
        "--json", "--metrics-port", "0", "--bytes-per-second", "1 MiB", "backup", str(app)
    )
    assert proc.stdout is not None
    url = None
    scraped = ""
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("metrics_url"):
            url = str(event["metrics_url"])
        if url and event["event"] == "progress" and int(event["done_bytes"]) > 0:
            with urllib.request.urlopen(url, timeout=10) as reply:
                scraped = reply.read().decode()
            break
        assert time.monotonic() < deadline
    rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert url is not None
    assert "replicator_copied_bytes_total" in scraped
    assert 'replicator_jobs{kind="backup",state="copying"} 1.0' in scraped
    assert 'replicator_jobs_finished_total{kind="backup",outcome="done"} 0.0' in scraped


def test_sigterm_stops_at_a_checkpoint_like_ctrl_c(cli: Cli) -> None:
    app = cli.deploy_demo(mib=6, seed=17)
    proc = cli.popen("--json", "--bytes-per-second", "1 MiB", "backup", str(app))
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and int(event["done_bytes"]) > 0:
            proc.terminate()
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json_lines(out)[-1]
    assert summary["event"] == "summary"
    assert summary["phase"] == "cancelled"
    assert 0 < int(str(summary["bytes_copied"])) < 6 * 1024 * 1024
    resumed = cli.run("--json", "resume", str(summary["job_id"]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = _summary(resumed)
    assert final["resumed"] is True
    assert int(str(final["chunks_skipped"])) > 0  # what the first run copied is not copied again


def test_images_lists_what_a_backup_canister_holds(cli: Cli) -> None:
    app = cli.deploy_demo(mib=1)
    first = _summary(cli.run("--json", "backup", str(app)))
    target = str(first["target"]).split("@")[0]
    cli.wipe(app)  # a second, different image
    second = _summary(cli.run("--json", "backup", str(app)))
    assert first["digest"] != second["digest"]

    listed = cli.run("--json", "images", target)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    events = json_lines(listed.stdout)
    images = [e for e in events if e["event"] == "note" and e["message"] == "image"]
    assert [i["digest"] for i in images] == [first["digest"], second["digest"]]  # oldest first
    assert [i["snapshot_id"] for i in images] == [first["snapshot_id"], second["snapshot_id"]]
    assert {i["origin"] for i in images} == {str(app)}
    assert images[0]["size"] == first["size"]
    assert images[0]["time"].endswith("Z")
    assert events[-1]["images"] == 2

    table = cli.run("images", target)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "TIME", "(UTC)", "SIZE", "ORIGIN", "DIGEST"]
    assert [r.split()[0] for r in rows] == [str(first["snapshot_id"]), str(second["snapshot_id"])]
    assert rows[1].endswith(str(second["digest"]))
    assert str(app) in rows[0]

    app_images = cli.run("images", str(app))
    assert app_images.returncode == 0, app_images.stderr  # an app lists its current export
    empty = cli.run("images", _empty_canister(cli))
    assert empty.returncode == 3, empty.stdout + empty.stderr
    assert "has no code installed" in empty.stderr


def _empty_canister(cli: Cli) -> str:
    async def create() -> str:
        async with cli.agent() as agent:
            canister = await ManagementClient(agent).provisional_create_canister_with_cycles(
                amount=10**13, settings=CanisterSettings(controllers=(cli.identity().principal,))
            )
            return str(canister)

    return asyncio.run(create())
