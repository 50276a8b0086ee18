"""``split`` on localnet over HTTP: the demo app split into shards while writes flow.

A writer posts as users of ours (spread over the key space) during the whole
split, as an app client would: through the app's own ``add_post``, following
``OutOfRange`` to the owner it names and retrying a shard that is not
writable yet.  Afterwards every record — those the source had and every
post made during the split — is held exactly once, by the canister the
routing table names, and the source holds nothing of the moved ranges.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import World, ref, world
from icp_candid import Types

from canister_iface import icrp_errors as errs
from canister_iface.candid_value import as_nat, as_rec, as_variant, decode_single, encode_values
from canister_iface.errors import IcError
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_errors import error_from_candid
from canister_iface.icrp_types import KeyRange, Record, Routing
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore
from replicator.errors import EXIT_INTEGRITY, ReplicatorError, UsageError
from replicator.flow import consent_given
from replicator.flows.split import kind as split
from replicator.flows.split import machine as m
from replicator.flows.split import performer as split_performer
from replicator.flows.split.abort import abort_split
from replicator.job import Phase

pytestmark = pytest.mark.integration

EVERYTHING = KeyRange()
TAG_POST = 1


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as made:
        yield made


def user_key(user: int) -> bytes:
    return user.to_bytes(8, "big") + b"\x00"


def post_key(user: int, post: int) -> bytes:
    return user.to_bytes(8, "big") + bytes([TAG_POST]) + post.to_bytes(8, "big")


async def records_of(icrp: IcrpClient, keys: KeyRange = EVERYTHING) -> dict[bytes, bytes]:
    held: dict[bytes, bytes] = {}
    cursor: bytes | None = None
    while True:
        batch = await icrp.export_range(keys, cursor, 1_000_000)
        held.update((r.key, r.value) for r in batch.records)
        if batch.next_cursor is None:
            return held
        cursor = batch.next_cursor


async def demo_with_my_users(
    w: World, *, rounds: int = 4, keys: int = 1500
) -> tuple[Principal, list[int]]:
    """A demo app of about ``rounds × keys`` records, with users of ours all over its keys."""
    source = await w.demo(mib=0)
    mine: list[int] = []
    for seed in range(1, rounds + 1):
        arg = encode_values([(Types.Nat, keys), (Types.Nat, seed)])
        for _ in range(100):
            progress = as_rec(await w.ok(source, "generate_keys", arg), "generate_keys")
            if progress.boolean("finished"):
                break
        for _ in range(3):
            mine.append(await _create_user(w, source))
    return source, mine


async def _create_user(w: World, canister: Principal) -> int:
    arg = encode_values([(Types.Text, "writer"), (Types.Text, "posts during the split")])
    return as_nat(await w.ok(canister, "create_user", arg), "create_user")


class Writer:
    """Posts as our users all through the split (see the module docstring)."""

    def __init__(self, w: World, source: Principal, users: list[int]) -> None:
        self.w, self.users = w, users
        self.home = dict.fromkeys(users, source)
        self.posts: list[tuple[int, int, str]] = []  # user, post id, text
        self.redirected = self.waited = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        rng = random.Random(7)
        n = 0
        while not self._stop.is_set():
            user = rng.choice(self.users)
            text = f"written during the split #{n}"
            self.posts.append((user, await self._post(user, text), text))
            n += 1
            await asyncio.sleep(0.005)

    async def _post(self, user: int, text: str) -> int:
        arg = encode_values(
            [(Types.Nat64, user), (Types.Text, text), (Types.Opt(Types.Vec(Types.Nat8)), [])]
        )
        for _ in range(1000):
            reply = await self.w.agent.update(self.home[user], "add_post", arg)
            tag, payload = as_variant(decode_single(reply, "add_post"), ("ok", "err"), "add_post")
            if tag == "ok":
                return as_nat(payload, "add_post")
            case, why = as_variant(payload, ("invalid", "refused"), "WriteError")
            assert case == "refused", why
            error = error_from_candid(why)
            if isinstance(error, errs.OutOfRange):
                assert error.owner is not None, "a fenced range names its owner"
                self.home[user] = error.owner
                self.redirected += 1
            else:
                assert isinstance(error, errs.NotWritable), error
                self.waited += 1
                await asyncio.sleep(0.01)
        raise AssertionError(f"no canister took a post of user {user}")

    def stop(self) -> None:
        self._stop.set()


async def check_split(
    w: World, source: Principal, before: dict[bytes, bytes], writer: Writer
) -> Routing:
    """Every record exactly once, at the canister the routing table names."""
    routing = await IcrpClient(w.stranger, source).routing()  # public
    assert routing.version >= 1
    held: dict[bytes, bytes] = {}
    for route in routing.routes:
        part = await records_of(IcrpClient(w.agent, route.canister), route.range)
        assert not set(part) & set(held), "a record is held twice"
        held.update(part)
    posted = {post_key(user, post) for user, post, _ in writer.posts}
    assert len(posted) == len(writer.posts), "a post id was given twice"
    assert set(held) == set(before) | posted
    touched = posted | {user_key(u) for u in writer.users}
    untouched = {k: v for k, v in held.items() if k not in touched}
    assert untouched == {k: v for k, v in before.items() if k not in touched}
    for user, post, text in writer.posts[:: max(1, len(writer.posts) // 20)]:
        owner = next(r.canister for r in routing.routes if r.range.contains(user_key(user)))
        arg = encode_values([(Types.Nat64, user), (Types.Nat64, post)])
        found = decode_single(await w.agent.query(owner, "get_post", arg), "get_post")
        assert text in repr(found)
    # The source holds nothing outside the range it kept.
    kept = routing.routes[0]
    assert kept.canister == source
    assert all(kept.range.contains(k) for k in await records_of(IcrpClient(w.agent, source)))
    return routing


async def test_a_split_under_writes_moves_every_record_once(w: World) -> None:
    source, mine = await demo_with_my_users(w)
    icrp = IcrpClient(w.agent, source)
    before = await records_of(icrp)
    writer = Writer(w, source, mine)
    writing = asyncio.create_task(writer.run())
    await asyncio.sleep(0.2)
    async with w.engine() as engine:
        outcome = await engine.submit(split.request(ref(source), shards=3, name="demo-split"))
    await asyncio.sleep(0.2)
    writer.stop()
    await writing
    assert outcome.ok, outcome.error
    assert len(writer.posts) > 10
    assert writer.redirected > 0
    routing = await check_split(w, source, before, writer)
    assert len(routing.routes) == 3
    shards = [r.canister for r in routing.routes[1:]]
    assert len(set(shards)) == 2
    # Shards: exactly the configured controllers (the identity), primary, their range.
    for shard, route in zip(shards, routing.routes[1:], strict=True):
        assert await w.agent.controllers(shard) == [w.me.principal]
        info = await IcrpClient(w.agent, shard).info()
        assert info.mode is not None
        assert info.mode.mode == "primary"
        assert info.key_range == route.range
        assert (await IcrpClient(w.agent, shard).routing()) == routing
    # A write to a moved range is refused with the owner.
    moved = routing.routes[1]
    with pytest.raises(errs.OutOfRange) as refused:
        await icrp.import_records([Record(moved.range.lower + b"\x01", b"late")])
    assert refused.value.owner == moved.canister
    # The report: live data before/after, per-range counts and freeze times.
    details = outcome.to_json()
    assert details["source_before"][0] >= len(before)
    assert details["source_after"][0] < details["source_before"][0] / 2
    for r in details["ranges"]:
        assert r["step"] == m.DONE
        assert r["freed_records"] == r["records"]
        assert r["freeze_seconds"] is not None
    sample = w.metrics.registry.get_sample_value
    labels = {"name": "demo-split"}
    assert sample("replicator_split_cutovers_total", {**labels, "outcome": "ok"}) == 2
    copied = sum(r["copied_records"] for r in details["ranges"])
    assert copied > 0
    assert sample("replicator_split_records_copied_total", labels) == copied
    assert await w.store().registry.entries() == []  # the shards are released


async def test_a_split_resumes_after_a_restart_mid_copy(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, mine = await demo_with_my_users(w)
    before = await records_of(IcrpClient(w.agent, source))
    writer = Writer(w, source, mine)
    writing = asyncio.create_task(writer.run())
    monkeypatch.setattr(split_performer, "ROUND_BYTES", 32 * 1024)  # many checkpoints
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(split.request(ref(source), shards=2)))
        job_id = await _mid_copy(w.stores[-1])
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    first = (await w.stores[-1].load(job_id)).state
    assert first.phase == Phase.CANCELLED
    shard = m.detail_of(first).ranges[0].shard
    async with w.engine() as engine:
        outcome = await engine.submit(split.request(ref(source), shards=2))
    writer.stop()
    await writing
    assert outcome.ok, outcome.error
    assert outcome.resumed
    assert outcome.job.id == job_id
    routing = await check_split(w, source, before, writer)
    assert routing.routes[1].canister.to_text() == shard  # no second set of shards


async def _mid_copy(store: SqliteStore) -> str:
    for _ in range(3000):
        for job in await store.list_jobs():
            ranges = (await store.load(job.id)).state.detail.get("ranges") or ()
            if any(r.get("cursor") for r in ranges):
                return job.id
        await asyncio.sleep(0.01)
    raise AssertionError("the copy never checkpointed a cursor")


async def test_bad_requests_are_refused_before_anything_is_created(w: World) -> None:
    source = await w.demo(mib=1)
    async with w.engine(agent=w.stranger) as engine:
        with pytest.raises(ReplicatorError, match="trust"):
            await engine.submit(split.request(ref(source), shards=2))
    async with w.engine() as engine:
        with pytest.raises(ReplicatorError, match="either --shards"):
            await engine.submit(split.request(ref(source), shards=2, max_shard_bytes=1 << 20))
        with pytest.raises(ReplicatorError, match="increase"):
            await engine.submit(split.request(ref(source), boundaries="m,g"))
        with pytest.raises(ReplicatorError, match="cannot be split"):
            await engine.submit(split.request(ref(await w.backup_canister(source)), shards=2))
        with pytest.raises(ReplicatorError, match="cannot read the module"):
            await engine.submit(split.request(ref(source), shards=2, wasm="/nonexistent.wasm"))
    assert await w.store().registry.entries() == []


async def test_abort_before_cut_over_deletes_the_shards_and_a_new_split_starts_afresh(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = await demo_with_my_users(w, rounds=2)
    before = await records_of(IcrpClient(w.agent, source))
    monkeypatch.setattr(split_performer, "ROUND_BYTES", 32 * 1024)
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(split.request(ref(source), shards=2)))
        job_id = await _mid_copy(w.stores[-1])
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        calls = engine.calls(lambda text: None)
        aborted = await abort_split(engine.store, calls, split.request(ref(source)), consent_given)
    assert aborted.job_id == job_id
    assert len(aborted.shards_deleted) == 1
    with pytest.raises(IcError):  # gone
        await w.mgmt.canister_status(Principal.from_text(aborted.shards_deleted[0]))
    assert (await IcrpClient(w.agent, source).config()).fences == ()
    assert await records_of(IcrpClient(w.agent, source)) == before  # the source owns all
    assert await w.store().registry.entries() == []
    # A new split plans afresh; once a range is cut over, abort is refused.
    monkeypatch.setattr(split_performer, "DELETE_RECORDS", 1)  # a slow free: time to stop
    monkeypatch.setattr(split_performer, "DELETE_CALLS_PER_ROUND", 1)
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(split.request(ref(source), shards=2)))
        second = await _at_step(w.stores[-1], m.FREE)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert second != job_id
        with pytest.raises(UsageError, match="already cut 1 range"):
            await abort_split(
                engine.store,
                engine.calls(lambda text: None),
                split.request(ref(source)),
                consent_given,
            )
        monkeypatch.undo()  # free at full speed
        outcome = await engine.submit(split.request(ref(source), shards=2))
    assert outcome.ok, outcome.error
    assert outcome.resumed


async def _at_step(store: SqliteStore, step: str) -> str:
    for _ in range(3000):
        for job in await store.list_jobs():
            ranges = (await store.load(job.id)).state.detail.get("ranges") or ()
            if any(r.get("step") == step for r in ranges):
                return job.id
        await asyncio.sleep(0.01)
    raise AssertionError(f"no range reached {step}")


async def test_a_journal_that_overflows_during_the_copy_makes_the_range_copy_again(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = await demo_with_my_users(w, rounds=2)  # its journal keeps 1,000 changes
    icrp = IcrpClient(w.agent, source)
    monkeypatch.setattr(split_performer, "ROUND_BYTES", 16 * 1024)
    async with w.engine() as engine:
        running = asyncio.create_task(engine.submit(split.request(ref(source), shards=2)))
        await _mid_copy(w.stores[-1])
        burst = [Record(b"\xf0burst" + i.to_bytes(4, "big"), b"x" * 20) for i in range(1500)]
        await icrp.import_records(burst)  # more changes than the journal holds
        before = await records_of(icrp)
        outcome = await running
    assert outcome.ok, outcome.error
    notes = " ".join(outcome.notes)
    assert "no longer reaches back" in notes
    routing = await IcrpClient(w.agent, source).routing()
    held: dict[bytes, bytes] = {}
    for route in routing.routes:
        held.update(await records_of(IcrpClient(w.agent, route.canister), route.range))
    assert held == before


async def test_a_shard_that_differs_at_cut_over_fails_and_the_source_keeps_the_range(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = await demo_with_my_users(w, rounds=1)
    before = await records_of(IcrpClient(w.agent, source))
    original = split_performer.SplitPerformer._precheck

    async def tampered(self: split_performer.SplitPerformer, cut: m.CutOver) -> object:
        shard = IcrpClient(w.agent, Principal.from_text(cut.shard))
        await shard.import_records([Record(cut.span.lower + b"\x00extra", b"not in the source")])
        return await original(self, cut)

    monkeypatch.setattr(split_performer.SplitPerformer, "_precheck", tampered)
    async with w.engine() as engine:
        outcome = await engine.submit(split.request(ref(source), shards=2, name="bad"))
    assert not outcome.ok
    assert outcome.exit_code == EXIT_INTEGRITY
    assert "source still owns it" in (outcome.error or "")
    icrp = IcrpClient(w.agent, source)
    assert (await icrp.config()).fences == ()  # writes to the range are taken again
    assert await records_of(icrp) == before
    sample = w.metrics.registry.get_sample_value
    assert sample("replicator_split_cutovers_total", {"name": "bad", "outcome": "mismatch"}) == 1
