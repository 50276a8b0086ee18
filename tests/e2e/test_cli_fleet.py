"""``replicator fleet backup | verify | status`` as a user runs them, on localnet."""

from __future__ import annotations

import asyncio

import pytest
from cli_harness import ROOT, Cli, json_lines
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import as_variant, decode_single, encode_values
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.platform import configure_arg
from canister_iface.principal import Principal

pytestmark = pytest.mark.e2e

WASM = ROOT / "canister_iface" / "wasm"
COUNTER = ROOT / "tests" / "canisters" / "wasm" / "counter.wasm"
T = 10**12


def deploy_fleet(cli: Cli, users: int) -> tuple[Principal, Principal]:
    """A platform with ``users`` user canisters and one registered canister without ICRP."""

    async def deploy() -> tuple[Principal, Principal]:
        async with cli.agent() as agent:
            mgmt = ManagementClient(agent)
            me = agent.identity.principal
            settings = CanisterSettings(controllers=(me,))
            plat = await mgmt.provisional_create_canister_with_cycles(
                amount=100 * T, settings=settings
            )
            await mgmt.install_code(plat, (WASM / "platform.wasm").read_bytes())
            arg = configure_arg(user_cycles=2 * T, controllers=[me], peers=[me])
            await agent.update(plat, "platform_configure", arg)
            for _ in range(users):
                async with Agent(
                    cli.net.url, Identity.generate_ed25519(), root_key=cli.net.root_key
                ) as user:
                    reply = await user.update(plat, "create_user_canister", b"DIDL\x00\x00")
                tag, value = as_variant(decode_single(reply, "c"), ("ok", "err"), "create")
                assert tag == "ok", value
            foreign = await mgmt.provisional_create_canister_with_cycles(
                amount=10 * T, settings=settings
            )
            await mgmt.install_code(foreign, COUNTER.read_bytes())
            arg = encode_values(
                [
                    (Types.Principal, Identity.generate_ed25519().principal.raw),
                    (Types.Principal, foreign.raw),
                ]
            )
            await agent.update(plat, "register_user_canister", arg)
            return plat, foreign

    return asyncio.run(deploy())


def test_fleet_backup_and_status(cli: Cli) -> None:
    plat, foreign = deploy_fleet(cli, users=4)
    index = plat.to_text()

    dry = cli.run("--json", "fleet", "backup", "users", "--from", index, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    summary = json_lines(dry.stdout)[-1]
    assert summary["dry_run"] is True
    assert summary["cycles"] == 5 * 2 * T  # five backup canisters at the default 2 T each

    run = cli.run("--json", "fleet", "backup", "users", "--from", index, "--concurrency", "3")
    assert run.returncode == 1, run.stderr  # one member failed, the others are backed up
    summary = json_lines(run.stdout)[-1]
    assert (summary["members_listed"], summary["members_ok"], summary["members_failed"]) == (
        5,
        4,
        1,
    )
    assert summary["member_failures"] == {"not_icrp": 1}

    status = cli.run("--json", "fleet", "status", "users")
    assert status.returncode == 0, status.stderr
    fields = json_lines(status.stdout)[-1]
    assert fields["by_state"] == {"ok": 4, "overdue": 0, "failing": 1, "never": 0, "gone": 0}
    [failing] = fields["failing"]
    assert failing["member"] == foreign.to_text()
    assert failing["class"] == "not_icrp"
    assert fields["oldest_backup_age_seconds"] is not None

    text = cli.run("fleet", "status", "users")
    assert "4 ok" in text.stdout
    assert "1 failing" in text.stdout

    unknown = cli.run("fleet", "status", "nobody")
    assert unknown.returncode == 2
    assert "run `replicator fleet backup nobody` first" in unknown.stderr
    not_configured = cli.run("fleet", "backup", "nobody")
    assert not_configured.returncode == 2
    assert "--from INDEX" in not_configured.stderr

    # Another action over the same fleet: its own rows, the backup rows untouched.
    verify = cli.run("--json", "fleet", "verify", "users", "--from", index)
    assert verify.returncode == 1, verify.stderr  # the foreign member has no backup canister
    summary = json_lines(verify.stdout)[-1]
    assert (summary["action"], summary["members_ok"], summary["member_failures"]) == (
        "verify",
        4,
        {"usage": 1},
    )
    verified = cli.run("--json", "fleet", "status", "users", "--action", "verify")
    assert json_lines(verified.stdout)[-1]["by_state"]["ok"] == 4
    no_repo = cli.run("fleet", "snapshot-backup", "users", "--from", index)
    assert no_repo.returncode == 2
    assert "needs a repository directory" in no_repo.stderr
