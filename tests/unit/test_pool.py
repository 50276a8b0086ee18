"""The warm pool's registry rows: claims are atomic, never give one canister twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from replicator.checkpoints import SqliteStore
from replicator.errors import UsageError
from replicator.flows import fleet
from replicator.flows.fleets.options import FleetOptions
from replicator.job import CanisterRef
from replicator.pool import pool_count, pool_shortfall
from replicator.registry import POOL_ROLE, Entry


async def test_claims_take_ready_pool_canisters_once_each(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        reg = store.registry
        for i in range(3):
            await reg.put(Entry("local", f"pool-{i}", POOL_ROLE, f"c{i}", "ready", i))
        await reg.put(Entry("local", "pool-9", POOL_ROLE, None, "requested", 9))
        await reg.put(Entry("ic", "pool-5", POOL_ROLE, "elsewhere", "ready", 5))
        assert (await pool_count(reg, "local")).ready == 3
        assert await pool_shortfall(reg, "local", 5) == 1  # 3 ready + 1 being made
        claims = await asyncio.gather(*(reg.claim("local", f"member-{i}") for i in range(5)))
        given = [c.canister for c in claims if c is not None]
        assert sorted(given) == ["c0", "c1", "c2"]  # not the one being made, not ic's
        assert all(c is None or c.state == "claimed" for c in claims)
        assert await reg.claim("local", "member-0") is None  # it has its entry already
        entries = await reg.entries()
        assert [e.source for e in entries if e.role == POOL_ROLE] == ["pool-5", "pool-9"]
        assert len({e.canister for e in entries if e.canister}) == 4


def test_the_pool_option_is_checked() -> None:
    member = CanisterRef("aaaaa-aa", "local")
    assert FleetOptions.of(fleet.request(member, name="f")).pool == 0
    assert FleetOptions.of(fleet.request(member, name="f", pool=5)).pool == 5
    with pytest.raises(UsageError, match="pool must be a whole number from 0 to 1000"):
        FleetOptions.of(fleet.request(member, name="f", pool=-1))
