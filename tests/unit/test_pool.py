"""The warm pool's registry rows: claims are atomic, never give one canister twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.checkpoints import SqliteStore
from replicator.errors import UsageError
from replicator.flows import fleet
from replicator.flows.fleets.options import FleetOptions
from replicator.job import CanisterRef
from replicator.pool import pool_count, pool_shortfall
from replicator.registry import POOL_ROLE, Entry


async def test_the_pool_counts_ready_canisters_and_those_being_made(tmp_path: Path) -> None:
    # Claims themselves are tested against every store in tests/store/test_store_suite.py.
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        reg = store.registry
        for i in range(3):
            await reg.put(Entry("local", f"pool-{i}", POOL_ROLE, f"c{i}", "ready", i))
        await reg.put(Entry("local", "pool-9", POOL_ROLE, None, "requested", 9))
        await reg.put(Entry("ic", "pool-5", POOL_ROLE, "elsewhere", "ready", 5))
        assert (await pool_count(reg, "local")).ready == 3
        assert await pool_shortfall(reg, "local", 5) == 1  # 3 ready + 1 being made


def test_the_pool_option_is_checked() -> None:
    member = CanisterRef("aaaaa-aa", "local")
    assert FleetOptions.of(fleet.request(member, name="f")).pool == 0
    assert FleetOptions.of(fleet.request(member, name="f", pool=5)).pool == 5
    with pytest.raises(UsageError, match="pool must be a whole number from 0 to 1000"):
        FleetOptions.of(fleet.request(member, name="f", pool=-1))
