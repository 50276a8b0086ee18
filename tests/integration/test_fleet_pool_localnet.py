"""The warm pool on localnet: new members take ready backup canisters, the pool is refilled.

A first fleet run fills a pool of 3 (backup canisters created and installed
for no source); members added later take pooled canisters — reinstalled for
their source, given exactly the configured controllers, and backed up into
— and the run makes the pool full again.  No canister is ever in two
registry rows, and a planner announces the pool's cycles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import World, ref, world
from test_fleet_localnet import platform, user_canisters

from canister_iface.candid_value import as_rec, as_variant, decode_single
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.flows import fleet
from replicator.job import Phase
from replicator.registry import POOL_ROLE

pytestmark = pytest.mark.integration

POOL = 3


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


def gauge(w: World, name: str) -> float | None:
    return w.metrics.registry.get_sample_value(name, {"name": "users"})


async def test_new_members_take_pooled_backup_canisters_and_the_pool_is_refilled(
    w: World,
) -> None:
    plat = await platform(w)
    first = await user_canisters(w, plat, 2)
    operator = Identity.generate_ed25519().principal
    controllers = (w.me.principal.to_text(), operator.to_text())
    async with w.engine(controllers=controllers) as engine:
        registry = engine.store.registry
        planned = await engine.dry_run(fleet.request(ref(plat), name="users", pool=POOL))
        [pool_action] = [a for a in planned.actions if "warm-pool" in a.what]
        assert pool_action.cycles == POOL * engine.settings.initial_cycles
        assert await registry.entries() == []  # a dry run creates nothing

        outcome = await engine.submit(fleet.request(ref(plat), name="users", pool=POOL))
        assert outcome.phase == Phase.DONE, outcome.error
        assert outcome.details["members_ok"] == 2
        pooled = {e.canister for e in await registry.entries() if e.role == POOL_ROLE}
        assert len(pooled) == POOL
        assert None not in pooled
        assert gauge(w, "replicator_fleet_pool_size") == POOL
        assert gauge(w, "replicator_fleet_pool_target") == POOL

        # Two new members: their backup canisters come out of the pool.
        new = await user_canisters(w, plat, 2)
        again = await engine.submit(fleet.request(ref(plat), name="users", pool=POOL, due=True))
        assert again.phase == Phase.DONE, again.error
        entries = await registry.entries()
        backups = {e.source: e.canister for e in entries if e.role == "backup"}
        taken = {backups[m.to_text()] for m in new}
        assert taken <= pooled  # no creation for them
        assert len(taken) == 2
        for member in new:
            canister = Principal.from_text(backups[member.to_text()] or "")
            info = as_rec(
                as_variant(
                    decode_single(await w.agent.query(canister, "backup_info"), "backup_info"),
                    ("ok", "err"),
                    "backup_info",
                )[1],
                "backup_info",
            )
            assert info.principal("source") == member  # reinstalled for it
            assert len(info.vec("images")) == 1  # and backed up into
            assert set(await w.agent.controllers(canister)) == {w.me.principal, operator}
        # The pool is full again, and no canister is in two rows.
        now_pooled = [e for e in entries if e.role == POOL_ROLE]
        assert len(now_pooled) == POOL
        assert all(e.state == "ready" for e in now_pooled)
        owners = Counter(e.canister for e in entries)
        assert set(owners.values()) == {1}
        assert len(backups) == len(first) + len(new)
        assert gauge(w, "replicator_fleet_pool_size") == POOL
        assert gauge(w, "replicator_fleet_pool_created_total") == POOL + 2
