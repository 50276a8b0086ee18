"""The example configurations in ``deploy/examples`` load, and their names and jobs resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import ROOT

from canister_iface.agent import Agent
from canister_iface.identity import Identity
from replicator import kinds
from replicator.cli.common import open_agent
from replicator.config import load_config

pytestmark = pytest.mark.e2e

EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.toml"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"local.toml", "mainnet.toml", "staging.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_an_example_loads_and_resolves(path: Path) -> None:
    config = load_config(path, kinds=kinds.names())
    for name in config.jobs:
        assert kinds.configured(config, name).kind
    for name in config.canisters:
        for network in config.canisters[name]:
            if network != "*":
                assert config.canister(name, network).canister_id
    # The network's URL and root key are usable by the agent as configured.
    agent: Agent = open_agent(config.network_named(), Identity.anonymous())
    await agent.aclose()


def test_the_cli_reads_an_example(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "replicator.cli",
            "--config",
            str(ROOT / "deploy" / "examples" / "mainnet.toml"),
            "--state",
            str(tmp_path / "state.sqlite3"),
            "jobs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no jobs" in result.stdout
