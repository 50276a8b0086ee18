"""End-to-end fixtures (helpers in ``cli_harness``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Cli, Net, start_localnet, write_config, write_pem
from workers_harness import Workers


@pytest.fixture(scope="module")
def localnet() -> Iterator[Net]:
    net = start_localnet()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def cli_config_extra() -> str:
    """TOML appended to the ``cli`` fixture's configuration file; a module may override
    it (``cli_harness.UNPACED_LIMITS``: copies not paced by the default limits)."""
    return ""


@pytest.fixture
def cli(localnet: Net, tmp_path: Path, cli_config_extra: str) -> Cli:
    pem = write_pem(tmp_path / "identity.pem")
    config = write_config(tmp_path / "replicator.toml", localnet, pem, cli_config_extra)
    return Cli(localnet, pem, config, tmp_path / "checkpoints.sqlite3")


@pytest.fixture
def workers(cli: Cli, pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    """``replicator serve`` workers on one PostgreSQL store (started by each test)."""
    group = Workers(cli.config, pg_url, tmp_path)
    try:
        yield group
    finally:
        group.close()
