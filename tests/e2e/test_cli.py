"""The ``replicator`` command line as a user runs it: a subprocess against localnet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cli_harness import ROOT, Cli, json_lines

from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings

pytestmark = pytest.mark.e2e

SOME_ID = "xmf3k-3iaaa-fake5-aaaaa-cai"  # made up
COUNTER_WASM = ROOT / "tests" / "canisters" / "wasm" / "counter.wasm"


def test_usage_errors_exit_2_and_say_what_to_do(cli: Cli) -> None:
    bad_flag = cli.run("jobs", "--bytes-per-second", "lots")
    assert bad_flag.returncode == 2
    assert "--bytes-per-second" in bad_flag.stderr
    assert "'lots'" in bad_flag.stderr
    assert "2 MiB" in bad_flag.stderr  # what a valid value looks like

    unknown = cli.run("check-canister", "no-such-name")
    assert unknown.returncode == 2
    assert "no-such-name" in unknown.stderr
    assert "canister_ids.json" in unknown.stderr

    missing = cli.run("backup-everything")
    assert missing.returncode == 2

    as_json = cli.run("--json", "check-canister", "no-such-name")
    events = json_lines(as_json.stdout)
    assert [e["event"] for e in events] == ["error", "summary"]
    assert events[-1]["ok"] is False
    assert events[-1]["exit_code"] == 2


def test_a_bad_config_file_names_file_and_key(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\ncalls_per_secnd = 5\n")
    result = cli.run("--config", str(bad), "jobs")
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "limits.calls_per_secnd" in result.stderr


def test_an_unreadable_identity_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    loose = tmp_path / "loose.pem"
    loose.write_bytes(cli.pem.read_bytes())
    loose.chmod(0o644)
    result = cli.run("--identity", str(loose), "check-canister", SOME_ID)
    assert result.returncode == 2
    assert str(loose) in result.stderr


def test_jobs_on_an_empty_store(cli: Cli) -> None:
    result = cli.run("jobs")
    assert result.returncode == 0, result.stderr
    assert "no jobs" in result.stdout
    assert not cli.state.exists()  # listing creates nothing


def test_check_canister_passes_the_demo_app(cli: Cli) -> None:
    app = cli.deploy_demo(mib=1)
    # It aborts imports in flight and (here) commits: consent first, like any destructive action.
    unasked = cli.run("check-canister", str(app), "--allow-commit")
    assert unasked.returncode == 2, unasked.stdout + unasked.stderr
    assert "Re-run with --yes" in unasked.stderr
    assert "delete: the current export and any unfinished import" in unasked.stderr
    assert "overwrite: the state of" in unasked.stderr
    assert "conformant" not in unasked.stdout  # nothing ran
    plan = cli.run("--json", "check-canister", str(app), "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = json_lines(plan.stdout)[-1]
    assert planned["dry_run"] is True
    assert [a["verb"] for a in planned["actions"]] == ["delete"]

    # Without a push target the push checks apply but cannot run: no verdict of
    # "conformant" for what was never tried.
    partial = cli.run("--json", "check-canister", str(app), "--yes")
    assert partial.returncode == 1, partial.stdout + partial.stderr
    summary = json_lines(partial.stdout)[-1]
    assert summary["event"] == "summary"
    assert summary["conformant"] is False
    assert summary["verdict"].startswith("not conformant: ")
    assert summary["counts"]["failed"] == 0
    not_run = {c["id"] for c in summary["checks"] if c["status"] == "not_run"}
    assert {"push.write", "import.commit_roundtrip"} <= not_run

    target = cli.deploy_demo(mib=1, seed=2)
    cli.trust_each_other(app, target)
    result = cli.run(
        "check-canister", str(app), "--allow-commit", "--push-target", str(target), "--yes"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith(": conformant")
    assert " 0 not run" in result.stdout


def test_check_canister_fails_a_canister_without_icrp(cli: Cli) -> None:
    async def deploy() -> str:
        async with cli.agent() as agent:
            mgmt = ManagementClient(agent)
            canister = await mgmt.provisional_create_canister_with_cycles(
                amount=10**13, settings=CanisterSettings(controllers=(cli.identity().principal,))
            )
            await mgmt.install_code(canister, COUNTER_WASM.read_bytes())
            return str(canister)

    counter = asyncio.run(deploy())
    result = cli.run("check-canister", counter)  # nothing it could abort: no consent needed
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT conformant" in result.stdout


def test_check_canister_of_a_canister_without_code_exits_3(cli: Cli) -> None:
    async def create() -> str:
        async with cli.agent() as agent:
            canister = await ManagementClient(agent).provisional_create_canister_with_cycles(
                amount=10**13, settings=CanisterSettings(controllers=(cli.identity().principal,))
            )
            return str(canister)

    empty = asyncio.run(create())
    result = cli.run("check-canister", empty, "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{empty} has no code installed" in result.stderr


def test_an_unreachable_network_is_temporary(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "down.toml"
    config.write_text(
        cli.config.read_text().replace(cli.net.url, "http://127.0.0.1:9")
        + "\n[retry]\nmax_attempts = 2\nmax_seconds = 2\ninitial_wait = 0.1\n"
    )
    result = cli.run("--config", str(config), "check-canister", SOME_ID)
    assert result.returncode == 75, result.stderr
    assert "127.0.0.1:9" in result.stderr
    assert "re-run" in result.stderr


def test_the_management_canister_is_not_a_replication_source(cli: Cli) -> None:
    result = cli.run("check-canister", "aaaaa-aa")
    assert result.returncode == 2
    assert "management canister" in result.stderr


def test_an_unusable_state_path_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = cli.run("--state", str(blocker / "checkpoints.sqlite3"), "backup", SOME_ID)
    assert result.returncode == 2, result.stderr
    assert "--state" in result.stderr
    assert "internal error" not in result.stderr
