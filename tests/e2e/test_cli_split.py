"""``replicator split`` and ``replicator compact`` as a user runs them, against localnet."""

from __future__ import annotations

import asyncio

import pytest
from cli_harness import Cli, json_lines

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import KeyRange
from canister_iface.principal import Principal

pytestmark = pytest.mark.e2e


def _summary(stdout: str) -> dict[str, object]:
    return json_lines(stdout)[-1]


def test_split_plan_only_then_split_then_compact(cli: Cli) -> None:
    demo = cli.deploy_demo(2)
    plan = cli.run("--json", "split", demo.to_text(), "--shards", "3", "--plan-only")
    assert plan.returncode == 0, plan.stderr
    summary = _summary(plan.stdout)
    assert summary["dry_run"] is True
    verbs = [a["verb"] for a in summary["actions"]]  # type: ignore[union-attr]
    assert verbs.count("create") == 2
    assert "delete" in verbs

    done = cli.run("--json", "--yes", "split", demo.to_text(), "--shards", "3", timeout=300)
    assert done.returncode == 0, done.stderr
    summary = _summary(done.stdout)
    assert summary["ok"] is True
    routing = summary["routing"]
    assert isinstance(routing, list)
    assert len(routing) == 3
    assert routing[0]["canister"] == demo.to_text()
    assert summary["source_after"][0] < summary["source_before"][0]  # type: ignore[index]

    async def routes() -> int:
        async with cli.agent() as agent:
            return len((await IcrpClient(agent, demo).routing()).routes)

    assert asyncio.run(routes()) == 3

    shrunk = cli.run("--json", "--yes", "compact", demo.to_text(), timeout=300)
    assert shrunk.returncode == 0, shrunk.stderr
    summary = _summary(shrunk.stdout)
    assert summary["memory_after"] < summary["memory_before"]  # type: ignore[operator]
    assert asyncio.run(routes()) == 3  # the reinstall kept the routing table and fences

    async def left() -> int:
        async with cli.agent() as agent:
            held = await IcrpClient(agent, Principal.from_text(demo.to_text())).range_digest(
                KeyRange(), None
            )
            return held.records

    assert asyncio.run(left()) > 0

    # Into a new canister: first what it would do, creating nothing.
    plan = cli.run("--json", "compact", demo.to_text(), "--new-canister", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    verbs = [a["verb"] for a in _summary(plan.stdout)["actions"]]  # type: ignore[union-attr]
    assert verbs.count("create") == 1
    assert "delete" not in verbs  # the old canister's records stay without --free-old
    # Then: the split source's kept range and its fences move with it.
    moved = cli.run("--json", "--yes", "compact", demo.to_text(), "--new-canister", timeout=300)
    assert moved.returncode == 0, moved.stderr
    summary = _summary(moved.stdout)
    new = Principal.from_text(str(summary["new_canister"]).split("@")[0])
    assert summary["memory_after"] < summary["memory_before"]  # type: ignore[operator]

    async def owners() -> tuple[list[str], int]:
        async with cli.agent() as agent:
            table = await IcrpClient(agent, demo).routing()
            held = await IcrpClient(agent, new).range_digest(KeyRange(), None)
            return [r.canister.to_text() for r in table.routes], held.records

    table, held = asyncio.run(owners())
    assert table[0] == new.to_text()
    assert len(table) == 3
    assert demo.to_text() not in table
    assert held == asyncio.run(left())  # the old canister keeps its records (no --free-old)
    again = cli.run("compact", demo.to_text(), "--new-canister", "--yes")
    assert again.returncode == 2
    assert "compacted into a new canister already" in again.stderr


def test_split_usage_errors_exit_2(cli: Cli) -> None:
    demo = cli.deploy_demo(1)
    both = cli.run("split", demo.to_text(), "--shards", "2", "--boundaries", "m")
    assert both.returncode == 2
    bad = cli.run("split", demo.to_text(), "--boundaries", "m,g")
    assert bad.returncode == 2
    assert "increase" in bad.stderr
    size = cli.run("split", demo.to_text(), "--max-shard-bytes", "lots")
    assert size.returncode == 2
    assert "256 MiB" in size.stderr


def test_split_abort_with_nothing_to_abort_says_so(cli: Cli) -> None:
    demo = cli.deploy_demo(1)
    result = cli.run("--json", "--yes", "split", demo.to_text(), "--abort")
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    assert summary["job_id"] is None
    assert summary["shards_deleted"] == []
