"""Per-subnet limits on a two-subnet localnet: members of one subnet share its budget.

Two platform canisters, one on each subnet, each create user canisters (ICRP
applications) on their own subnet; one fleet lists them all.  The engine
learns each canister's subnet from a certified ``read_state`` of ``/subnet``
over HTTP, and the calls let through to each subnet — counted per the
subnet localnet says really hosts the canister — never exceed that
subnet's calls/s over any span, while the two subnets together pass more
calls than one subnet's budget allows (separate budgets, not one global
one).  The member table caches each member's subnet, and each member's
backup canister was created on that subnet (a provisional creation whose
effective canister id is the member's), as a certified ``read_state`` of
its ``/subnet`` shows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from engine_support import FAST_LIMITS, NETWORK, World
from test_fleet_localnet import PLATFORM_WASM, T, platform_config, user_canisters

from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet import LocalNet, ids
from replicator.flows import fleet
from replicator.job import ArchiveRef, Phase
from replicator.limits import Caller, CallSpec
from replicator.subnets import certified_reader

pytestmark = pytest.mark.integration

X = TypeVar("X")
PER_SUBNET = 6  # members on each subnet
SUBNET_CALLS = 20.0  # calls/s per subnet; the global limit (500/s) is far above


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    me = Identity.generate_ed25519()
    async with LocalNet(subnets=2) as net:
        agent = Agent(net.url, me, network=NETWORK, root_key=net.root_key)
        stranger = Agent(
            net.url, Identity.generate_ed25519(), network=NETWORK, root_key=net.root_key
        )
        async with agent, stranger:
            w = World(net, me, agent, stranger, ManagementClient(agent), tmp_path)
            try:
                yield w
            finally:
                await w.close()


async def platform_on(w: World, subnet: int) -> Principal:
    lo, _ = w.net.subnets[subnet].canister_ranges[0]
    plat = await w.mgmt.provisional_create_canister_with_cycles(
        amount=1000 * T,
        settings=CanisterSettings(controllers=(w.me.principal,)),
        effective_canister_id=Principal(lo),
    )
    await w.mgmt.install_code(plat, PLATFORM_WASM, arg=b"DIDL\x00\x00")
    await w.ok(plat, "platform_configure", platform_config(w))
    return plat


class Spy:
    """Sits inside the per-subnet limits: when each call was let through, by canister."""

    def __init__(self, inner: Caller) -> None:
        self.inner = inner
        self.calls: list[tuple[str, float]] = []

    async def call(self, spec: CallSpec, perform: Callable[[], Awaitable[X]]) -> X:
        self.calls.append((spec.canister_id, time.monotonic()))
        return await self.inner.call(spec, perform)


async def test_members_on_one_subnet_share_its_budget_learned_from_certified_state(
    w: World, tmp_path: Path
) -> None:
    members = []
    for subnet in (0, 1):
        made = await user_canisters(w, await platform_on(w, subnet), PER_SUBNET)
        assert {w.net.subnet_of(m.raw).index for m in made} == {subnet}
        members += made
    listing = tmp_path / "members.txt"
    listing.write_text("\n".join(m.to_text() for m in members))
    limits = replace(FAST_LIMITS, subnet_calls_per_second=SUBNET_CALLS)
    async with w.engine(limits=limits) as engine:
        rates = engine.limited(NETWORK).subnets
        assert rates is not None
        spy = Spy(rates.inner)
        rates.inner = spy
        request = fleet.request(
            ArchiveRef(str(listing)), name="two", network=NETWORK, concurrency=16
        )
        outcome = await engine.submit(request)
        assert outcome.phase == Phase.DONE, outcome.error
        assert outcome.details["members_ok"] == 2 * PER_SUBNET
        reads = engine.subnets(NETWORK).reads
        rows = await engine.store.fleets.members("two")  # type: ignore[attr-defined]

    # Each member's subnet, as localnet hosts it, is cached in the member table.
    truth = {m.to_text(): ids.to_text(w.net.subnet_of(m.raw).subnet_id) for m in members}
    assert {r.member: r.subnet for r in rows} == truth
    assert reads <= 4  # a read per subnet answers for its whole range (a few race)
    # Each backup canister lives on its member's subnet, as certified by that subnet.
    read = certified_reader(w.agent)
    for row in rows:
        assert row.backup is not None
        backup = Principal.from_text(row.backup)
        assert (await read(backup)).subnet_id == row.subnet, row.member
        assert (
            w.net.subnet_of(backup.raw).subnet_id
            == w.net.subnet_of(Principal.from_text(row.member).raw).subnet_id
        )

    by_subnet: dict[int, list[float]] = defaultdict(list)
    for canister, at in spy.calls:
        if canister != "aaaaa-aa":  # management calls have no subnet of their own
            by_subnet[w.net.subnet_of(Principal.from_text(canister).raw).index].append(at)
    assert set(by_subnet) == {0, 1}
    burst = max(1.0, SUBNET_CALLS * 0.1)
    for subnet, times in by_subnet.items():
        times.sort()
        assert len(times) > 3 * SUBNET_CALLS  # enough calls that the limit was binding
        # A token bucket lets through at most its burst plus its rate over any span.
        worst = max(
            (j - i + 1) - SUBNET_CALLS * (times[j] - times[i])
            for i in range(len(times))
            for j in range(i, len(times))
        )
        assert worst <= burst + 1, (subnet, worst)
        print(f"subnet {subnet}: {len(times)} calls in {times[-1] - times[0]:.2f} s")
    everything = sorted(t for times in by_subnet.values() for t in times)
    span = everything[-1] - everything[0]
    print(f"both subnets: {len(everything)} calls in {span:.2f} s, {reads} subnet reads")
    # Two budgets, not one: more calls went through than one subnet's budget allows.
    assert len(everything) > burst + SUBNET_CALLS * span + 1
    waited = w.metrics.registry.get_sample_value(
        "replicator_throttle_wait_seconds_total", {"limit": "subnet_calls_per_second"}
    )
    assert waited is not None
    assert waited > 0
