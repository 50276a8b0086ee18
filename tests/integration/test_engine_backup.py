"""Backups with the engine on localnet over HTTP: direct and relay paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import World, counter, ref, world

from canister_iface.icrp import IcrpClient
from replicator.jobs import Phase

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_backup_copies_the_image_and_the_backup_serves_it_back(w: World, via: str) -> None:
    demo = await w.demo(mib=2)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        outcome = await engine.backup(ref(demo), ref(backup), via=via)
    assert outcome.ok, outcome.error
    assert outcome.exit_code == 0
    assert outcome.route == via
    assert outcome.digest is not None
    assert outcome.target_digest == outcome.digest
    images = await IcrpClient(w.agent, backup).list_images()
    assert [t.digest for t in images] == [outcome.digest]
    assert images[0].origin is not None
    assert images[0].origin.source == demo
    assert outcome.bytes_copied == images[0].size
    assert counter(w.metrics, "replicator_copied_bytes_total", kind="backup", route=via) == (
        images[0].size
    )
    assert w.progress.phases()[-1] is Phase.DONE
