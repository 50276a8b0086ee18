"""Fleet runs on localnet: a platform canister indexing 200 user canisters.

The platform (``canister_iface/wasm/platform.wasm``) creates real user
canisters (ICRP applications); a twentieth of the fleet are canisters that
do not speak ICRP (registered by hand), so their backups fail; and localnet's
fault injector hits a tenth of the fleet: half of those are stopped (every
call rejected, retried, then the member fails as temporary), the other half
reject a third of their calls (retried; each ends ok or failing).  The
others all finish.  Every call goes over HTTP through the engine, as
``replicator fleet backup`` makes them.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import COUNTER_WASM, NETWORK, ROOT, T, World, ref, world
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import as_principal, as_variant, decode_single, encode_values
from canister_iface.identity import Identity
from canister_iface.management_types import CanisterSettings
from canister_iface.platform import configure_arg
from canister_iface.principal import Principal
from replicator.errors import UsageError
from replicator.flows import fleet
from replicator.flows.fleets.members import discover
from replicator.job import ArchiveRef, Phase
from replicator.retry import RetryPolicy

pytestmark = pytest.mark.integration

PLATFORM_WASM = (ROOT / "canister_iface" / "wasm" / "platform.wasm").read_bytes()
GOOD = 190
BAD = 10
FAULTY = 20  # a tenth of the 200: the first half stopped, the other half flaky
# Few, quick retries: a stopped member gives up in about a second.
RETRY = RetryPolicy(max_attempts=4, max_seconds=10.0, initial_wait=0.02, max_wait=0.2)


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


async def platform(w: World) -> Principal:
    # Enough cycles for every user canister it creates (2 T each).
    plat = await w.mgmt.provisional_create_canister_with_cycles(
        amount=1000 * T, settings=CanisterSettings(controllers=(w.me.principal,))
    )
    await w.mgmt.install_code(plat, PLATFORM_WASM, arg=b"DIDL\x00\x00")
    await w.ok(plat, "platform_configure", platform_config(w))
    return plat


def platform_config(w: World) -> bytes:
    """User canisters of 2 T cycles, controlled and trusted by the test's identity."""
    me = w.me.principal
    return configure_arg(user_cycles=2 * T, controllers=[me], peers=[me])


async def user_canisters(w: World, plat: Principal, n: int) -> list[Principal]:
    """``n`` users each create their canister through the platform."""
    gate = asyncio.Semaphore(8)

    async def one() -> Principal:
        async with gate:
            user = Agent(w.net.url, Identity.generate_ed25519(), root_key=w.net.root_key)
            async with user:
                reply = await user.update(plat, "create_user_canister", b"DIDL\x00\x00")
        tag, value = as_variant(decode_single(reply, "c"), ("ok", "err"), "create_user_canister")
        assert tag == "ok", value
        return as_principal(value, "create_user_canister")

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def register_foreign(w: World, plat: Principal, n: int) -> list[Principal]:
    """``n`` canisters that do not speak ICRP, indexed by the platform anyway."""
    foreign = []
    for _ in range(n):
        canister = await w.create(COUNTER_WASM)
        user = Identity.generate_ed25519().principal
        arg = encode_values([(Types.Principal, user.raw), (Types.Principal, canister.raw)])
        await w.ok(plat, "register_user_canister", arg)
        foreign.append(canister)
    return foreign


async def test_a_fleet_of_200_with_faults_on_a_tenth_is_backed_up_and_bad_members_isolated(
    w: World,
) -> None:
    plat = await platform(w)
    good = await user_canisters(w, plat, GOOD)
    bad = await register_foreign(w, plat, BAD)
    stopped, flaky = good[: FAULTY // 2], good[FAULTY // 2 : FAULTY]
    healthy = {g.to_text() for g in good[FAULTY:]}
    operator = Identity.generate_ed25519().principal
    controllers = (w.me.principal.to_text(), operator.to_text())
    async with w.engine(controllers=controllers, retry=RETRY) as engine:
        planned = await engine.dry_run(fleet.request(ref(plat), name="users"))
        [create] = [a for a in planned.actions if a.verb == "create"]
        assert create.cycles == (GOOD + BAD) * engine.settings.initial_cycles
        assert await engine.store.registry.entries() == []  # a dry run creates nothing

        w.net.faults.set(
            stopped_canisters=frozenset(s.raw for s in stopped),
            transient_reject=0.33,
            transient_canisters=frozenset(f.raw for f in flaky),
        )
        outcome = await engine.submit(fleet.request(ref(plat), name="users", concurrency=16))
        w.net.faults.reset()
        assert outcome.phase == Phase.DONE, outcome.error
        d = outcome.details
        rows = {r.member: r for r in await engine.store.fleets.members("users")}  # type: ignore[attr-defined]
        ok = {m for m, r in rows.items() if r.state == "ok"}
        failing = {m for m, r in rows.items() if r.state == "failing"}
        assert d["members_listed"] == GOOD + BAD
        assert (d["members_ok"], d["members_failed"]) == (len(ok), len(failing))
        assert healthy <= ok  # the members without faults all finished
        assert {b.to_text() for b in bad} | {s.to_text() for s in stopped} <= failing
        assert ok | failing == set(rows)  # every flaky member ended one way or the other
        assert d["member_failures"]["not_icrp"] == BAD
        assert d["member_failures"]["temporary"] >= len(stopped)
        assert all(rows[s.to_text()].error_class == "temporary" for s in stopped)
        flaky_ok = sum(1 for f in flaky if f.to_text() in ok)
        retries = sum(
            sample.value
            for metric in w.metrics.registry.collect()
            if metric.name == "replicator_retries"
            for sample in metric.samples
            if sample.name == "replicator_retries_total"
        )
        assert retries >= len(stopped) * (RETRY.max_attempts - 1)  # the faulty ones were retried
        print(f"flaky members: {flaky_ok} of {len(flaky)} ok after retries; {len(failing)} failing")
        # Each ok member got its own backup canister, with exactly the configured controllers.
        backups = {rows[m].backup for m in ok}
        assert len(backups) == len(ok)
        assert None not in backups
        some = Principal.from_text(sorted(b for b in backups if b)[0])
        assert set(await w.agent.controllers(some)) == {w.me.principal, operator}
        assert (
            w.metrics.registry.get_sample_value(
                "replicator_fleet_member_failures_total",
                {"name": "users", "action": "backup", "class": "not_icrp"},
            )
            == BAD
        )
        assert w.metrics.registry.get_sample_value(
            "replicator_fleet_members", {"name": "users", "action": "backup", "state": "ok"}
        ) == len(ok)

        # The membership grows; a run of the due members backs up the new one only
        # (failing members wait for their backoff; ok ones for their slot tomorrow).
        [new] = await user_canisters(w, plat, 1)
        again = await engine.submit(fleet.request(ref(plat), name="users", due=True))
        assert again.phase == Phase.DONE, again.error
        assert again.details["members_added"] == 1
        after = {r.member: r for r in await engine.store.fleets.members("users")}  # type: ignore[attr-defined]
        ran = {m for m, r in after.items() if r.round == again.job.id}
        assert new.to_text() in ran
        assert all(rows[m].next_due <= after[m].last_run_at for m in ran - {new.to_text()})  # type: ignore[operator]
        assert after[new.to_text()].state == "ok"


async def test_a_cancelled_fleet_run_resumes_without_redoing_finished_members(
    w: World, tmp_path: Path
) -> None:
    plat = await platform(w)
    members = await user_canisters(w, plat, 12)
    listing = tmp_path / "members.txt"
    listing.write_text("# the fleet, one per line\n" + "\n".join(m.to_text() for m in members))
    request = fleet.request(
        ArchiveRef(str(listing)), name="file-fleet", network=NETWORK, concurrency=2
    )
    async with w.engine() as engine:
        table = engine.store.fleets  # type: ignore[attr-defined]
        run = asyncio.create_task(engine.submit(request))
        while sum(1 for r in await table.members("file-fleet") if r.state == "ok") < 4:  # noqa: ASYNC110 (polls the store)
            await asyncio.sleep(0.05)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        first = {r.member: r.round for r in await table.members("file-fleet") if r.state == "ok"}
        outcome = await engine.submit(request)
        assert outcome.phase == Phase.DONE, outcome.error
        assert outcome.resumed
        assert outcome.details["members_ok"] == 12
        rows = await table.members("file-fleet")
        assert all(r.runs == 1 for r in rows if r.member in first)  # finished ones not redone
        jobs = await engine.store.list_jobs([Phase.DONE])
        done = Counter(j.source for j in jobs if j.kind == "backup")
        assert set(done.values()) == {1}
        assert len(done) == 12


async def test_a_fleet_of_the_canisters_an_identity_controls_among_a_list(
    w: World, tmp_path: Path
) -> None:
    other = Identity.generate_ed25519().principal
    mine = [await w.create(COUNTER_WASM) for _ in range(3)]
    theirs = await w.mgmt.provisional_create_canister_with_cycles(
        amount=T, settings=CanisterSettings(controllers=(other,))
    )
    shared = await w.mgmt.provisional_create_canister_with_cycles(
        amount=T, settings=CanisterSettings(controllers=(other, w.me.principal))
    )
    missing = Principal(mine[0].raw[:-2] + b"\x7f\x01")  # in the range, never created
    listing = tmp_path / "canister_ids.json"
    every = [*mine, theirs, shared, missing]
    listing.write_text(json.dumps({f"c{i}": {NETWORK: c.to_text()} for i, c in enumerate(every)}))
    source = ArchiveRef(str(listing))
    notes: list[str] = []
    async with w.engine() as engine:
        calls = engine.calls(notes.append)
        me = await discover(calls, source, NETWORK, {"controlled_by": "me"})
        assert me == sorted(c.to_text() for c in [*mine, shared])
        theirs_only = await discover(calls, source, NETWORK, {"controlled_by": other.to_text()})
        assert theirs_only == sorted([theirs.to_text(), shared.to_text()])
        assert "4 of 6 listed canisters are controlled by" in notes[0]
        with pytest.raises(UsageError, match="controlled_by must be a principal or 'me'"):
            await discover(calls, source, NETWORK, {"controlled_by": "nobody"})
