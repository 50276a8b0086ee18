"""A fleet's cycles budget on localnet: top-ups draw from it until it is spent, then stop.

Backup canisters are created with 1 T cycles and the ``[cycles]`` policy keeps
a reserve of 2 T, so each needs a top-up before its first backup; one member
itself is created with too few cycles (``top_up_members``).  The fleet's
budget fits some of those top-ups, not all (9 T: about one backup canister's
and the member's): the others are refused (the
backups go on), counted, and the budget's gauges say what is left.  The
spending is in the store, so a second engine on it sees the same budget.
About 15 s on the shared machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import COUNTER_WASM, NETWORK, T, World, world

from canister_iface.management_types import CanisterSettings
from replicator.flows import fleet
from replicator.job import ArchiveRef, Phase
from replicator.topup import TopUpPolicy

pytestmark = pytest.mark.integration

NEEDY = TopUpPolicy(reserve=2 * T)
BUDGET = 9 * T


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as made:
        yield made


def sample(w: World, name: str, **labels: str) -> float:
    return w.metrics.registry.get_sample_value(name, {"name": "demos", **labels}) or 0.0


async def test_top_ups_draw_from_the_fleet_budget_until_it_is_spent(
    w: World, tmp_path: Path
) -> None:
    demos = [await w.demo(mib=1, seed=3) for _ in range(4)]
    poor = await w.mgmt.provisional_create_canister_with_cycles(
        amount=T, settings=CanisterSettings(controllers=(w.me.principal,))
    )
    await w.mgmt.install_code(poor, COUNTER_WASM, arg=b"DIDL\x00\x00")
    listing = tmp_path / "members.txt"
    listing.write_text("\n".join(m.to_text() for m in [poor, *demos]))
    request = fleet.request(
        ArchiveRef(str(listing)),
        name="demos",
        network=NETWORK,
        concurrency=1,
        cycles_budget=BUDGET,
        top_up_members=True,
    )
    async with w.engine(initial_cycles=T, top_up=NEEDY) as engine:
        outcome = await engine.submit(request)
        assert outcome.phase == Phase.DONE, outcome.error
        d = outcome.details
        assert (d["members_ok"], d["member_failures"]) == (4, {"not_icrp": 1}), d
        topups = {
            (of, result): sample(w, "replicator_fleet_topups_total", of=of, outcome=result)
            for of in ("backup", "member")
            for result in ("ok", "refused", "failed")
        }
        spent = sample(w, "replicator_fleet_cycles_spent_total")
        remaining = sample(w, "replicator_fleet_cycles_budget_remaining")
        # A backup canister's top-up is about 5 T, the poor member's less: the budget
        # fits one of the former, not two, and the member's whenever it comes.
        assert topups[("member", "ok")] == 1
        assert topups[("backup", "ok")] >= 1
        assert topups[("backup", "refused")] >= 1  # the budget ran out before the last ones
        assert topups[("backup", "ok")] + topups[("backup", "refused")] == 4
        assert 0 < spent <= BUDGET
        assert remaining == BUDGET - spent  # nothing failed: drawn = sent
        assert sample(w, "replicator_fleet_cycles_budget") == BUDGET
        refused = w.metrics.registry.get_sample_value(
            "replicator_backup_canister_top_ups_total", {"outcome": "budget"}
        )
        assert refused == topups[("backup", "refused")]
        status = await w.mgmt.canister_status(poor)
        assert status.cycles > T  # topped up

    # The spending is in the store: another engine's fleet run sees what is left.
    async with w.engine(initial_cycles=T, top_up=NEEDY) as engine:
        again = await engine.submit(request)
        assert again.phase == Phase.DONE, again.error
        assert sample(w, "replicator_fleet_cycles_budget_remaining") <= remaining
