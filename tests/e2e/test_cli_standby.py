"""``replicator standby`` and ``replicator promote`` as a user runs them, against localnet."""

from __future__ import annotations

import pytest
from cli_harness import Cli, json_lines

from canister_iface.principal import Principal

pytestmark = pytest.mark.e2e


def _summary(text: str) -> dict[str, object]:
    events = [e for e in json_lines(text) if e["event"] == "summary"]
    assert events, text
    return events[-1]


def test_standby_created_on_demand_then_promoted_and_reversed(cli: Cli) -> None:
    source = cli.deploy_demo(1)
    followed = cli.run("standby", source.to_text(), "--once", "--yes", "--json")
    assert followed.returncode == 0, followed.stderr
    summary = _summary(followed.stdout)
    assert summary["kind"] == "standby"
    assert summary["seeded"] is True
    target = str(summary["target"]).split("@")[0]
    assert target != source.to_text()
    stb = Principal.from_text(target)
    assert cli.stats(stb) == cli.stats(source)

    dry = cli.run("promote", target, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    promoted = cli.run("promote", target, "--reverse", "--once", "--yes", "--json")
    assert promoted.returncode == 0, promoted.stderr
    summaries = [e for e in json_lines(promoted.stdout) if e["event"] == "summary"]
    assert len(summaries) == 2  # the promotion, then the reverse standby
    promotion, reverse = summaries
    assert promotion["new_primary"] == f"{target}@local"
    assert promotion["old_primary"] == f"{source.to_text()}@local"
    assert promotion["old_primary_fenced"] is True
    assert promotion["rpo"] == {
        "lost_changes": 0,
        "lost_from": None,
        "lost_to": None,
        "window_seconds": None,
        "last_applied_at": None,
    }
    assert reverse["ok"] is True
    assert reverse["source"] == f"{target}@local"
    assert cli.stats(stb) == cli.stats(source)

    # A standby job refuses to demote the promoted canister.
    again = cli.run("standby", source.to_text(), target, "--once", "--yes")
    assert again.returncode == 2
    assert "does not demote" in again.stderr


def test_promote_of_a_canister_that_is_no_standby_is_a_usage_error(cli: Cli) -> None:
    source = cli.deploy_demo(0)
    result = cli.run("promote", source.to_text(), "--yes")
    assert result.returncode == 2
    assert "not a standby" in result.stderr


def test_the_standby_demo_follows_writes_and_fails_over(cli: Cli) -> None:
    result = cli.run("demo", "--standby", "--mib", "1", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    assert summary["fingerprints_equal"] is True
    assert isinstance(summary["writes"], int)
    assert summary["writes"] > 0
    assert summary["final_seq"] is not None
    notes = [e.get("message", "") for e in json_lines(result.stdout) if e["event"] == "note"]
    assert any("refuses writes" in str(n) for n in notes)
    assert any("the standby lags" in str(n) for n in notes)
