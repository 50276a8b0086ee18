"""Standby, split and fleet protocol parts over HTTP: IcrpClient against real Wasm.

The demo app and the platform canister (``canister_iface/wasm``) run in
localnet; every ICRP call goes through :class:`IcrpClient` and the real
agent, as the orchestrator's job kinds will make them: a failover (fence,
drain, images at the final sequence, switch), the direct journal path
between two canisters, a split (plan, copy, follow, fence, route, compare,
free) and a fleet of user canisters the platform creates for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from icp_candid import Types

from canister_iface import icrp_errors as errs
from canister_iface.agent import Agent
from canister_iface.candid_value import (
    as_principal,
    as_rec,
    as_variant,
    as_vec,
    decode_single,
    encode_values,
)
from canister_iface.conformance import check_canister
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import (
    Fence,
    ImportSpec,
    KeyBucket,
    KeyRange,
    Record,
    Route,
    Routing,
)
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.platform import configure_arg
from canister_iface.principal import Principal
from localnet import LocalNet

pytestmark = pytest.mark.integration

WASM = Path(__file__).parents[2] / "canister_iface" / "wasm"
DEMO_WASM = (WASM / "demo_app.wasm").read_bytes()
PLATFORM_WASM = (WASM / "platform.wasm").read_bytes()
T = 10**12
EVERYTHING = KeyRange()


@dataclass
class Env:
    net: LocalNet
    me: Identity
    agent: Agent
    stranger: Agent
    mgmt: ManagementClient

    async def create(self, wasm: bytes) -> Principal:
        canister = await self.mgmt.provisional_create_canister_with_cycles(
            amount=100 * T, settings=CanisterSettings(controllers=(self.me.principal,))
        )
        await self.mgmt.install_code(canister, wasm, arg=b"DIDL\x00\x00")
        return canister

    async def demo(self, *, mib: int = 0) -> Principal:
        demo = await self.create(DEMO_WASM)
        arg = encode_values([(Types.Nat, mib), (Types.Nat, 1)])
        for _ in range(100 if mib else 0):
            if as_rec(await self.ok(demo, "generate", arg), "generate").boolean("finished"):
                break
        return demo

    async def ok(self, canister: Principal, method: str, arg: bytes) -> object:
        tag, payload = await self.answer(canister, method, arg)
        assert tag == "ok", f"{method}: {payload}"
        return payload

    async def answer(self, canister: Principal, method: str, arg: bytes) -> tuple[str, object]:
        value = decode_single(await self.agent.update(canister, method, arg), method)
        return as_variant(value, ("ok", "err"), method)

    async def create_user(self, demo: Principal, name: str) -> tuple[str, object]:
        return await self.answer(demo, "create_user", encode_values([(Types.Text, name)] * 2))

    async def fingerprint(self, canister: Principal) -> int:
        stats = decode_single(await self.agent.query(canister, "stats"), "stats")
        return as_rec(stats, "stats").nat("fingerprint")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    me = Identity.generate_ed25519()
    async with LocalNet() as net:
        agent = Agent(net.url, me, root_key=net.root_key)
        stranger = Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key)
        async with agent, stranger:
            yield Env(net, me, agent, stranger, ManagementClient(agent))


async def seed(source: IcrpClient, target: IcrpClient) -> int:
    """Copy the source's image into the target; returns the image's journal_seq."""
    ticket = await source.wait_ready(await source.begin_export())
    import_id = await target.begin_import(ImportSpec.for_ticket(source.canister_id, ticket))
    for offset in range(0, ticket.size, 1_000_000):
        await target.write(
            import_id, offset, await source.read(ticket.snapshot_id, offset, 1_000_000)
        )
    await target.commit(import_id)
    return ticket.journal_seq


async def head(icrp: IcrpClient) -> int:
    journal = (await icrp.info()).journal
    assert journal is not None
    return journal.head_seq


async def follow(source: IcrpClient, target: IcrpClient, since: int, **kw: object) -> int:
    """Apply the source's changes to the target until it is at the source's head."""
    while True:
        batch = await source.changes(since, 1_000_000, **kw)  # type: ignore[arg-type]
        since = await target.apply(batch)
        if since == batch.head_seq:
            return since


# ------------------------------------------------------------------ standby


async def test_a_failover_through_the_client(env: Env) -> None:
    p, s = await env.demo(mib=1), await env.demo()
    primary, standby = IcrpClient(env.agent, p), IcrpClient(env.agent, s)
    applied = await seed(primary, standby)
    assert (await standby.set_mode("standby")).mode == "standby"
    tag, refused = await env.create_user(s, "eve")
    assert tag == "err"
    why, error = as_variant(refused, ("refused", "invalid"), "WriteError")
    assert why == "refused"
    assert isinstance(errs.error_from_candid(error), errs.NotWritable)
    for name in ("ada", "grace", "edsger"):
        assert (await env.create_user(p, name))[0] == "ok"
    backlog = await primary.backlog(applied)
    assert backlog.changes == 3
    assert backlog.oldest_time is not None
    assert backlog.lag_seconds(env.net.clock.now_ns()) >= 0
    applied = await follow(primary, standby, applied)
    assert await head(standby) == applied

    # Fence the primary: its writes are refused, naming where they should go.
    fenced = await primary.set_mode("read_only", s)
    assert (fenced.mode, fenced.redirect) == ("read_only", s)
    with pytest.raises(errs.NotWritable) as caught:
        await primary.import_records([Record(b"k", b"v")])
    assert caught.value.mode == "read_only"
    assert caught.value.redirect == s
    assert "send writes to" in str(caught.value)
    # Drain and compare images at the final sequence.
    assert await follow(primary, standby, applied) == fenced.journal_seq
    at_primary = await primary.wait_ready(await primary.begin_export_at(fenced.journal_seq))
    at_standby = await standby.wait_ready(await standby.begin_export_at(fenced.journal_seq))
    assert at_primary.digest == at_standby.digest
    # Switch.
    assert (await standby.set_mode("primary")).mode == "primary"
    assert (await env.create_user(s, "after"))[0] == "ok"
    assert await head(standby) == fenced.journal_seq + 1


async def test_the_source_pushes_its_changes_over_an_inter_canister_call(env: Env) -> None:
    p, s = await env.demo(mib=1), await env.demo()
    primary, standby = IcrpClient(env.agent, p), IcrpClient(env.agent, s)
    since = await seed(primary, standby)
    await primary.set_peers([s])
    await standby.set_peers([p])
    for name in ("a", "b"):
        await env.create_user(p, name)
    ack = await primary.push_changes(s, since, 1_000_000)
    assert (ack.changes, ack.to_seq, ack.applied_seq) == (2, since + 2, since + 2)
    assert await env.fingerprint(s) == await env.fingerprint(p)
    await standby.set_mode("read_only")
    await env.create_user(p, "c")
    with pytest.raises(errs.TargetError) as caught:
        await primary.push_changes(s, since + 2, 1_000_000)
    assert isinstance(caught.value.inner, errs.NotWritable)


# ------------------------------------------------------------------ split


async def test_a_split_through_the_client(env: Env) -> None:
    s, h = await env.demo(mib=2), await env.demo()
    source, shard = IcrpClient(env.agent, s), IcrpClient(env.agent, h)
    # Plan on a bucket boundary about half-way through the bytes.
    buckets: list[KeyBucket] = []
    cursor: bytes | None = None
    while True:
        page = await source.key_distribution(EVERYTHING, cursor, 128 * 1024)
        buckets.extend(page.buckets)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    total = sum(b.bytes for b in buckets)
    running = 0
    for bucket in buckets:
        if running >= total // 2:
            break
        running += bucket.bytes
    moved = KeyRange(bucket.first_key[:8])

    # Copy, restart the shard's journal at the copy's first sequence, follow.
    await shard.set_key_range(moved)
    await shard.set_mode("standby")
    batch = await source.export_range(moved, None, 1_000_000)
    since = batch.journal_seq
    while True:
        await shard.import_records(batch.records)
        if batch.next_cursor is None:
            break
        batch = await source.export_range(moved, batch.next_cursor, 1_000_000)
    await shard.reset_journal(since)
    await source.import_records([Record(moved.lower + b"\x05late", b"written during the copy")])
    assert await follow(source, shard, since, key_range=moved) == await head(source)

    # Cut over: fence, publish routes (readable by anyone), compare, free.
    fenced_at = await source.set_fences([Fence(moved, h)])
    with pytest.raises(errs.OutOfRange) as caught:
        await source.import_records([Record(moved.lower + b"\x05later", b"")])
    assert caught.value.owner == h
    routes = Routing(1, (Route(KeyRange(b"", moved.lower), s), Route(moved, h)))
    await source.set_routing(routes)
    assert await IcrpClient(env.stranger, s).routing() == routes
    await shard.set_mode("primary")
    assert await head(shard) == fenced_at
    in_source = await source.whole_range_digest(moved)
    in_shard = await shard.whole_range_digest(moved)
    assert in_source.same_records(in_shard)
    assert in_source.records > 0
    freed, cursor = 0, None
    while True:
        progress = await source.delete_range(moved, cursor, 20)
        freed += progress.bytes or 0
        if progress.next_cursor is None:
            break
        cursor = progress.next_cursor
    assert freed == in_source.bytes
    assert (await source.export_range(moved, None, 1000)).records == ()


# ------------------------------------------------------------------ fleet


async def test_the_platform_creates_user_canisters_and_lists_them(env: Env) -> None:
    plat = await env.create(PLATFORM_WASM)
    me = env.me.principal
    arg = configure_arg(user_cycles=2 * T, controllers=[me], peers=[me])
    await env.ok(plat, "platform_configure", arg)
    created = []
    for _ in range(3):
        user = Agent(env.net.url, Identity.generate_ed25519(), root_key=env.net.root_key)
        async with user:
            reply = decode_single(
                await user.update(plat, "create_user_canister", b"DIDL\x00\x00"), "c"
            )
        tag, canister = as_variant(reply, ("ok", "err"), "create_user_canister")
        assert tag == "ok", canister
        created.append(as_principal(canister, "create_user_canister"))

    fleet = IcrpClient(env.agent, plat)
    members = await fleet.all_fleet_members(page_size=2)
    assert [m.canister for m in members] == sorted(created, key=lambda p: p.raw)
    with pytest.raises(errs.NotAuthorized):
        await IcrpClient(env.stranger, plat).fleet_members(None, 10)
    plain = decode_single(
        await env.agent.query(
            plat,
            "list_user_canisters",
            encode_values([(Types.Opt(Types.Principal), []), (Types.Nat, 10)]),
        ),
        "list_user_canisters",
    )
    listed = [as_principal(p, "list_user_canisters") for p in as_vec(plain, "list_user_canisters")]
    assert listed == [m.canister for m in members]

    # Each member is an ICRP canister the orchestrator controls and may replicate.
    status = await env.mgmt.canister_status(created[0])
    assert set(status.settings.controllers) == {plat, me}
    report = await check_canister(env.agent, created[0], identity_other=env.stranger)
    assert report.ok, report.render()
    platform_report = await check_canister(env.agent, plat, identity_other=env.stranger)
    assert platform_report.ok, platform_report.render()
    assert platform_report.result("fleet.members").status == "passed"
