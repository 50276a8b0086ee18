"""The ICRP client against icrp.did: method names, kinds and types, errors, digests.

The .did file is parsed (icp_candid's DIDLoader): a method renamed or retyped
in the .did without the client following fails here.  Round trips go through
``icrp_fake``, which decodes and encodes with the .did's own types.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import pytest
from icp_candid import encode
from icp_candid.candid import (
    ConstructType,
    OptClass,
    PrimitiveType,
    RecClass,
    RecordClass,
    VariantClass,
    VecClass,
)
from icrp_fake import DID_METHODS, DID_PATH, FakeAgent, FakeIcrpCanister, sha

from canister_iface import icrp_errors as errs
from canister_iface.candid_value import Rec, candid_hash
from canister_iface.errors import AccessDenied, PermanentError, ProtocolError, TransientError
from canister_iface.icrp import (
    IcrpClient,
    chunk_count,
    chunk_digest,
    image_chunk_digests,
    image_digest,
)
from canister_iface.icrp_types import (
    METHODS,
    Change,
    ChangeBatch,
    Config,
    DeleteProgress,
    Fence,
    ImportSpec,
    Info,
    KeyRange,
    Op,
    RangeDigest,
    Record,
    Route,
    Routing,
    record_digest,
)
from canister_iface.principal import Principal

CANISTER = bytes.fromhex("00000000000000010101")
OWNER = b"\x01" * 29
STRANGER = b"\x02" * 29
PEER = b"\x03" * 29


# ------------------------------------------------------------- the .did itself


def _resolve(t: Any) -> Any:
    while isinstance(t, RecClass):
        t = t.get_type()
    return t


def type_difference(ours: Any, theirs: Any, path: str, seen: set[tuple[int, int]]) -> str | None:
    """Where two icp_candid types differ structurally (``None``: they are the same)."""
    a, b = _resolve(ours), _resolve(theirs)
    if (id(a), id(b)) in seen:
        return None
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return f"{path}: {a.name} here, {b.name} in icrp.did"
    if isinstance(a, PrimitiveType):
        return None if a.name == b.name else f"{path}: {a.name} here, {b.name} in icrp.did"
    if isinstance(a, VecClass | OptClass):
        return type_difference(a._type, b._type, f"{path}[]", seen)
    if isinstance(a, RecordClass | VariantClass):
        mine, did = a._field_map, b._field_map
        if set(mine) != set(did):
            names_mine = sorted(str(mine[h][0]) for h in set(mine) - set(did))
            names_did = sorted(str(did[h][0]) for h in set(did) - set(mine))
            return f"{path}: fields only here {names_mine}, only in icrp.did {names_did}"
        for h in mine:
            found = type_difference(mine[h][1], did[h][1], f"{path}.{mine[h][0]}", seen)
            if found:
                return found
        return None
    assert isinstance(a, ConstructType)
    return f"{path}: cannot compare {a.name}"


def test_the_client_knows_exactly_the_methods_of_icrp_did() -> None:
    assert DID_PATH.exists()
    assert set(METHODS) == set(DID_METHODS), (
        f"only in the client: {sorted(set(METHODS) - set(DID_METHODS))}; "
        f"only in icrp.did: {sorted(set(DID_METHODS) - set(METHODS))}"
    )


@pytest.mark.parametrize("method", sorted(DID_METHODS))
def test_method_kind_and_argument_types_match_icrp_did(method: str) -> None:
    kind, arg_types = METHODS[method]
    did = DID_METHODS[method]
    assert kind == ("query" if "query" in did.annotations else "update")
    assert len(arg_types) == len(did.argTypes)
    for i, (ours, theirs) in enumerate(zip(arg_types, did.argTypes, strict=True)):
        assert type_difference(ours, theirs, f"{method} argument {i}", set()) is None


@pytest.mark.parametrize("method", sorted(DID_METHODS))
def test_every_method_has_a_typed_client_method(method: str) -> None:
    name = method.removeprefix("icrp_")
    member = getattr(IcrpClient, name, None)
    assert member is not None, f"IcrpClient has no method {name!r} for {method}"
    assert inspect.iscoroutinefunction(member), name
    params = [p for p in inspect.signature(member).parameters if p != "self"]
    assert len(params) == len(DID_METHODS[method].argTypes), (name, params)


def test_type_difference_notices_a_renamed_field() -> None:
    from icp_candid import Types

    ours = Types.Record({"lower": Types.Vec(Types.Nat8), "uper": Types.Opt(Types.Vec(Types.Nat8))})
    theirs = DID_METHODS["icrp_export_range"].argTypes[0]
    found = type_difference(ours, theirs, "range", set())
    assert found is not None
    assert "uper" in found
    assert "upper" in found


def test_every_error_case_of_icrp_did_has_an_exception() -> None:
    error_type = _resolve(DID_METHODS["icrp_end_export"].retTypes[0])._field_map
    err = next(t for name, t in error_type.values() if name == "err")
    cases = {str(name) for name, _ in _resolve(err)._field_map.values()}
    assert cases == set(errs.ERROR_CASES)


# ------------------------------------------------------------------ digests


def test_digests_follow_the_did() -> None:
    image = bytes(range(256)) * 40  # 10,240 bytes: chunks of 4096, 4096, 2048
    digests = image_chunk_digests(image, 4096)
    assert digests == [
        hashlib.sha256(image[:4096]).digest(),
        hashlib.sha256(image[4096:8192]).digest(),
        hashlib.sha256(image[8192:]).digest(),
    ]
    assert image_digest(digests) == hashlib.sha256(b"".join(digests)).digest()
    assert chunk_digest(b"abc") == hashlib.sha256(b"abc").digest()
    assert image_digest([]) == hashlib.sha256(b"").digest()
    assert image_chunk_digests(b"", 4096) == []
    assert [chunk_count(n, 4096) for n in (0, 1, 4096, 4097)] == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="32 bytes"):
        image_digest([b"short"])
    with pytest.raises(ValueError, match="positive"):
        chunk_count(1, 0)


# ---------------------------------------------------------------- round trips


@pytest.fixture
def canister() -> FakeIcrpCanister:
    fake = FakeIcrpCanister(CANISTER, {OWNER})
    for i in range(500):
        fake.put(b"key-%04d" % i, b"value-%d" % i * 3)
    return fake


def _client(canister: FakeIcrpCanister, sender: bytes = OWNER) -> IcrpClient:
    return IcrpClient(FakeAgent({CANISTER: canister}, sender), CANISTER)


async def test_info_describes_the_canister(canister: FakeIcrpCanister) -> None:
    info = await _client(canister).info()
    assert (info.protocol_version, info.role, info.trusted) == (1, "app", True)
    assert info.can("journal")
    assert not info.can("push")
    assert info.max_transfer_bytes == 2_000_000
    assert info.journal is not None
    assert info.journal.head_seq == 500
    stranger = await _client(canister, STRANGER).info()
    assert stranger.trusted is False
    assert stranger.journal is None


async def test_export_read_and_verify_an_image(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    ticket = await icrp.wait_ready(await icrp.begin_export())
    assert ticket.ready
    assert ticket.chunk_count == chunk_count(ticket.size, ticket.chunk_size)
    digests = await icrp.all_chunk_digests(ticket)
    assert image_digest(digests) == ticket.digest
    data = b""
    while len(data) < ticket.size:
        data += await icrp.read(ticket.snapshot_id, len(data), 5000)
    assert image_chunk_digests(data, ticket.chunk_size) == digests
    assert (await icrp.list_images())[0].snapshot_id == ticket.snapshot_id
    assert await icrp.read(ticket.snapshot_id, ticket.size - 3, 100) == data[-3:]


async def test_a_preparing_export_is_continued_until_ready(canister: FakeIcrpCanister) -> None:
    canister.prepare_steps = 3
    icrp = _client(canister)
    ticket = await icrp.begin_export()
    assert not ticket.ready
    with pytest.raises(errs.NotReady) as caught:
        await icrp.read(ticket.snapshot_id, 0, 10)
    assert isinstance(caught.value, TransientError)
    assert caught.value.snapshot_id == ticket.snapshot_id
    ready = await icrp.wait_ready(ticket)
    assert ready.ready
    assert ready.digest is not None


async def test_wait_ready_gives_up_on_a_canister_that_makes_no_progress(
    canister: FakeIcrpCanister,
) -> None:
    canister.prepare_steps = 10**9
    icrp = _client(canister)
    with pytest.raises(ProtocolError, match="not ready after 5 steps"):
        await icrp.wait_ready(await icrp.begin_export(), max_steps=5)


async def test_an_ended_snapshot_is_stale(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    first = await icrp.begin_export()
    await icrp.end_export(first.snapshot_id)
    second = await icrp.begin_export()
    assert second.snapshot_id > first.snapshot_id
    with pytest.raises(errs.StaleSnapshot) as caught:
        await icrp.read(first.snapshot_id, 0, 10)
    assert (caught.value.requested, caught.value.current) == (
        first.snapshot_id,
        second.snapshot_id,
    )
    assert isinstance(caught.value, PermanentError)
    assert caught.value.call is not None
    assert caught.value.call.method == "icrp_read"


async def test_import_write_conflict_and_commit(canister: FakeIcrpCanister) -> None:
    source = FakeIcrpCanister(bytes.fromhex("00000000000000020101"), {OWNER})
    source.put(b"a", b"1")
    source.put(b"b", b"2" * 9000)
    src = IcrpClient(FakeAgent({source.canister_id: source}, OWNER), source.canister_id)
    ticket = await src.wait_ready(await src.begin_export())
    digests = await src.all_chunk_digests(ticket)
    spec = ImportSpec.for_ticket(Principal(source.canister_id), ticket, digests)

    icrp = _client(canister)
    import_id = await icrp.begin_import(spec)
    assert await icrp.begin_import(spec) == import_id  # resume
    image = await src.read(ticket.snapshot_id, 0, ticket.size)
    assert await icrp.write(import_id, 0, image[:100]) == 100
    assert await icrp.write(import_id, 0, image[:100]) == 100  # same bytes again
    with pytest.raises(errs.Conflict) as caught:
        await icrp.write(import_id, 50, b"X" + image[51:100])
    assert caught.value.offset == 50
    with pytest.raises(errs.Incomplete) as missing:
        await icrp.commit_import(import_id)
    assert missing.value.first_missing == 0
    await icrp.write(import_id, 100, image[100:])
    status = await icrp.import_status(import_id)
    assert status.state == "receiving"
    assert all(status.chunks_done)
    assert status.received_bytes == ticket.size
    assert status.source == Principal(source.canister_id)
    state = await icrp.commit(import_id)
    assert state.committed
    assert state.snapshot_id is None
    assert canister.kv == source.kv
    assert (await icrp.import_status(import_id)).state == "committed"


async def test_a_wrong_chunk_is_refused_when_chunk_digests_are_given(
    canister: FakeIcrpCanister,
) -> None:
    image = b"z" * 5000
    digests = image_chunk_digests(image, 4096)
    spec = ImportSpec(Principal(PEER), 1, 5000, 4096, image_digest(digests), 0, tuple(digests))
    icrp = _client(canister)
    import_id = await icrp.begin_import(spec)
    with pytest.raises(errs.DigestMismatch) as caught:
        await icrp.write(import_id, 0, b"y" * 4096)
    assert caught.value.chunk == 0
    assert caught.value.expected == digests[0]
    assert await icrp.write(import_id, 0, image[:4096]) == 4096  # the chunk may be rewritten


async def test_a_wrong_image_digest_aborts_and_keeps_the_state(
    canister: FakeIcrpCanister,
) -> None:
    before = dict(canister.kv)
    icrp = _client(canister)
    spec = ImportSpec(Principal(PEER), 7, 10, 4096, sha(b"not this image"))
    import_id = await icrp.begin_import(spec)
    await icrp.write(import_id, 0, b"0123456789")
    with pytest.raises(errs.DigestMismatch) as caught:
        await icrp.commit_import(import_id)
    assert caught.value.chunk is None
    assert caught.value.actual == image_digest(image_chunk_digests(b"0123456789", 4096))
    assert canister.kv == before
    status = await icrp.import_status(import_id)
    assert status.state == "aborted"
    assert status.abort_reason == "image digest mismatch"


async def test_abort_import(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    import_id = await icrp.begin_import(ImportSpec(Principal(PEER), 1, 10, 4096, sha(b"x")))
    await icrp.abort_import(import_id)
    assert (await icrp.import_status(import_id)).state == "aborted"
    with pytest.raises(errs.NotFound):
        await icrp.write(import_id, 0, b"x")


async def test_journal_changes_apply_and_too_old(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    info = await icrp.info()
    assert info.journal is not None
    assert info.journal.oldest_seq == 400
    batch = await icrp.changes(info.journal.oldest_seq, 10_000)
    assert batch.from_seq == 400
    assert batch.changes[0].seq == 401
    assert batch.changes[0].op.kind == "put"
    assert batch.changes[0].op.key == b"key-0400"
    with pytest.raises(errs.TooOld) as caught:
        await icrp.changes(10, 1000)
    assert caught.value.oldest_seq == 400

    target = FakeIcrpCanister(CANISTER, {OWNER})
    target.head = 400
    applied = await _client(target).apply(batch)
    assert applied == batch.to_seq
    assert target.kv[b"key-0400"] == canister.kv[b"key-0400"]
    with pytest.raises(errs.Gap) as gap:
        await _client(target).apply(ChangeBatch(10_000, 10_001, 10_001))
    assert (gap.value.applied_seq, gap.value.from_seq) == (applied, 10_000)


async def test_key_ranges(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    key_range = KeyRange(b"key-0100", b"key-0110")
    first = await icrp.export_range(key_range, None, 40)
    assert first.records[0].key == b"key-0100"
    assert first.next_cursor is not None
    rest = await icrp.export_range(key_range, first.next_cursor, 10_000)
    keys = [r.key for r in first.records + rest.records]
    assert keys == [b"key-%04d" % i for i in range(100, 110)]
    assert rest.next_cursor is None

    await icrp.set_key_range(KeyRange(b"key-0", b"key-1"))
    config = await icrp.config()
    assert config.role == "shard"
    assert config.key_range == KeyRange(b"key-0", b"key-1")
    with pytest.raises(errs.OutOfRange) as caught:
        await icrp.import_records([Record(b"zzz", b"v")])
    assert caught.value.key == b"zzz"
    assert await icrp.import_records([Record(b"key-0999", b"v")]) == 1

    progress = await icrp.delete_range(key_range, None, 4)
    assert progress.deleted == 4
    assert progress.next_cursor == b"key-0104"
    await icrp.set_key_range(None)
    assert (await icrp.info()).role == "app"


async def test_peers_and_access(canister: FakeIcrpCanister) -> None:
    stranger = _client(canister, STRANGER)
    with pytest.raises(errs.NotAuthorized) as caught:
        await stranger.begin_export()
    assert isinstance(caught.value, AccessDenied)
    assert caught.value.caller == Principal(STRANGER)
    with pytest.raises(AccessDenied):
        await stranger.set_peers([STRANGER])
    await _client(canister).set_peers([PEER, Principal(STRANGER).to_text()])
    assert set((await _client(canister).config()).peers) == {Principal(PEER), Principal(STRANGER)}
    assert (await stranger.begin_export()).snapshot_id == 1
    with pytest.raises(AccessDenied):  # configuration stays with the controllers
        await stranger.set_peers([])


async def test_update_peers_is_a_compare_and_set(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    before = await icrp.peers()
    assert before.peers == ()
    stale = await icrp.update_peers([PEER], (), before.version + 1)
    assert not stale.updated
    assert stale.peers == before
    added = await icrp.update_peers([PEER], (), before.version)
    assert added.updated
    assert Principal(PEER) in added.peers
    assert added.peers.version > before.version
    regranted = await icrp.update_peers([PEER])  # no version: applied as it is
    assert regranted.updated
    assert regranted.peers.version > added.peers.version
    assert regranted.peers.peers == (Principal(PEER),)
    removed = await icrp.update_peers(remove=[PEER], expected_version=regranted.peers.version)
    assert removed.updated
    assert removed.peers.peers == ()
    with pytest.raises(AccessDenied):  # controllers only
        await _client(canister, STRANGER).update_peers([STRANGER])


# ----------------------------------------------- standby, split and fleet parts


async def test_a_fenced_canister_refuses_every_change_until_it_is_primary_again(
    canister: FakeIcrpCanister,
) -> None:
    icrp = _client(canister)
    new_primary = Principal(PEER)
    fenced = await icrp.set_mode("read_only", new_primary)
    assert (fenced.mode, fenced.redirect, fenced.journal_seq) == ("read_only", new_primary, 500)
    assert await icrp.set_mode("read_only", new_primary) == fenced  # a retry changes nothing
    assert (await icrp.info()).mode == fenced
    for attempt in (
        icrp.apply(ChangeBatch(500, 500, 500)),
        icrp.import_records([Record(b"new", b"v")]),
        icrp.delete_range(KeyRange(b"key-0"), None, 1),
    ):
        with pytest.raises(errs.NotWritable) as caught:
            await attempt
        assert (caught.value.mode, caught.value.redirect) == ("read_only", new_primary)
        assert str(new_primary) in caught.value.message
    assert b"new" not in canister.kv
    with pytest.raises(AccessDenied):
        await _client(canister, STRANGER).set_mode("primary")
    assert (await icrp.set_mode("primary")).mode == "primary"
    assert await icrp.import_records([Record(b"new", b"v")]) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        await icrp.set_mode("fenced")  # type: ignore[arg-type]


async def test_a_standby_takes_replication_but_no_deletes(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    await icrp.set_mode("standby")
    batch = ChangeBatch(500, 501, 501, (Change(501, 9, Op("put", b"k", b"v")),))
    assert await icrp.apply(batch) == 501
    with pytest.raises(errs.NotWritable) as caught:
        await icrp.delete_range(KeyRange(b"k"), None, 1)
    assert caught.value.mode == "standby"


async def test_an_image_at_a_journal_sequence_waits_for_it(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    waiting = await icrp.begin_export_at(502)
    assert (waiting.ready, waiting.journal_seq, waiting.done_bytes) == (False, 502, 0)
    with pytest.raises(errs.NotReady):
        await icrp.read(waiting.snapshot_id, 0, 1)
    canister.put(b"x", b"1")
    assert not (await icrp.export_status(waiting.snapshot_id)).ready
    canister.put(b"y", b"2")
    canister.put(b"z", b"3")  # after the freeze: not in the image
    ready = await icrp.wait_ready(await icrp.export_status(waiting.snapshot_id))
    image = await icrp.read(ready.snapshot_id, 0, ready.size)
    assert ready.journal_seq == 502
    assert b"\x00\x00\x00\x01y" in image
    assert b"\x00\x00\x00\x01z" not in image
    assert (await icrp.begin_export_at(502)).snapshot_id == ready.snapshot_id
    with pytest.raises(errs.TooOld) as caught:
        await icrp.begin_export_at(501)
    assert caught.value.oldest_seq == 503


async def test_changes_filtered_by_range_and_the_backlog(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    key_range = KeyRange(b"key-0450", b"key-0460")
    batch = await icrp.changes(440, 100_000, key_range)
    assert [c.op.key for c in batch.changes] == [b"key-%04d" % i for i in range(450, 460)]
    assert (batch.from_seq, batch.to_seq) == (440, 500)
    backlog = await icrp.backlog(490)
    assert (backlog.changes, backlog.head_seq) == (10, 500)
    assert backlog.oldest_time == 1_000 + 491
    assert backlog.lag_seconds(1_000 + 491 + 2 * 10**9) == 2.0
    assert (await icrp.backlog(500)).lag_seconds(10**18) == 0.0
    with pytest.raises(errs.TooOld):
        await icrp.backlog(10)


async def test_range_digests_add_up_over_pages(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    key_range = KeyRange(b"key-0100", b"key-0150")
    page = await icrp.range_digest(key_range, None)
    assert page.records == 7  # the fake pages in sevens
    whole = await icrp.whole_range_digest(key_range)
    expected = RangeDigest.of_records(
        Record(k, v) for k, v in canister.kv.items() if key_range.contains(k)
    )
    assert whole.same_records(expected)
    assert whole.records == 50
    assert (
        expected.value
        == sum(record_digest(k, v) for k, v in canister.kv.items() if key_range.contains(k))
        % 2**256
    )
    canister.kv[b"key-0120"] = b"changed"
    assert not (await icrp.whole_range_digest(key_range)).same_records(expected)


async def test_key_distribution_buckets_the_bytes(canister: FakeIcrpCanister) -> None:
    icrp = _client(canister)
    page = await icrp.key_distribution(KeyRange(b"key-0000", b"key-0100"), None, 500)
    assert page.next_cursor is None
    assert sum(b.records for b in page.buckets) == 100
    assert page.buckets[0].first_key == b"key-0000"
    assert all(b.bytes >= 500 for b in page.buckets[:-1])


async def test_fences_name_the_owner_and_the_routing_table_is_public(
    canister: FakeIcrpCanister,
) -> None:
    icrp = _client(canister)
    shard = Principal(PEER)
    moved = KeyRange(b"key-0300", b"key-0400")
    assert await icrp.set_fences([Fence(moved, shard)]) == 500
    assert (await icrp.config()).fences == (Fence(moved, shard),)
    with pytest.raises(errs.OutOfRange) as caught:
        await icrp.import_records([Record(b"key-0333", b"v")])
    assert (caught.value.key, caught.value.owner) == (b"key-0333", shard)
    assert str(shard) in caught.value.message

    routing = Routing(
        3, (Route(KeyRange(b"", b"key-0300"), Principal(CANISTER)), Route(moved, shard))
    )
    await icrp.set_routing(routing)
    await icrp.set_routing(routing)  # the same table again: harmless
    assert await _client(canister, STRANGER).routing() == routing
    assert routing.owner(b"key-0350") == shard
    assert routing.owner(b"zzz") is None
    with pytest.raises(errs.InvalidArgument):
        await icrp.set_routing(Routing(2, routing.routes[:1]))
    with pytest.raises(AccessDenied):
        await _client(canister, STRANGER).set_routing(Routing(4, ()))


async def test_fleet_members_come_in_pages(canister: FakeIcrpCanister) -> None:
    canister.fleet = {bytes([i, 1, 1]): 100 + i for i in range(30)}
    icrp = _client(canister)
    assert (await icrp.info()).can("fleet")
    page = await icrp.fleet_members(None, 8)
    assert [m.canister.raw for m in page.members] == [bytes([i, 1, 1]) for i in range(8)]
    assert page.next_cursor == Principal(bytes([8, 1, 1]))
    members = await icrp.all_fleet_members(page_size=7)
    assert [m.added_at for m in members] == [100 + i for i in range(30)]
    with pytest.raises(AccessDenied):
        await _client(canister, STRANGER).fleet_members(None, 10)


def test_replies_of_older_canisters_without_the_new_fields_still_read() -> None:
    def rec(**fields: object) -> Rec:
        return Rec({candid_hash(k): v for k, v in fields.items()}, "reply")

    config = Config.from_rec(
        rec(
            role={candid_hash("app"): None},
            peers=[],
            key_range=[],
            chunk_size=4096,
            journal_max_entries=10,
            journal_max_bytes=100,
        )
    )
    assert (config.fences, config.mode) == ((), None)
    assert DeleteProgress.from_rec(rec(deleted=3, next_cursor=[])).bytes is None
    info = Info.from_rec(
        rec(
            protocol_version=1,
            role={candid_hash("app"): None},
            capabilities=["image"],
            trusted=False,
            max_transfer_bytes=10,
            image=[],
            journal=[],
            key_range=[],
        )
    )
    assert info.mode is None


# ------------------------------------------------------------- every error case


class _Answering:
    """A caller that answers every method with ``err`` = ``error``."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        return self._err(method)

    async def update(
        self, canister_id: bytes, method: str, arg: bytes, *, effective_canister_id: Any = None
    ) -> bytes:
        return self._err(method)

    def _err(self, method: str) -> bytes:
        ret = DID_METHODS[method].retTypes[0]
        return bytes(encode([{"type": ret, "value": {"err": self.error}}]))


_ERRORS: list[tuple[dict[str, Any], type[errs.IcrpError], bool]] = [
    ({"NotAuthorized": {"caller": STRANGER}}, errs.NotAuthorized, False),
    ({"StaleSnapshot": {"requested": 3, "current": []}}, errs.StaleSnapshot, False),
    ({"NotReady": {"snapshot_id": 3, "done_bytes": 9}}, errs.NotReady, True),
    ({"NotFound": "no import 4"}, errs.NotFound, False),
    ({"Conflict": {"offset": 12}}, errs.Conflict, False),
    (
        {"DigestMismatch": {"chunk": [2], "expected": b"e" * 32, "actual": b"a" * 32}},
        errs.DigestMismatch,
        False,
    ),
    ({"Incomplete": {"missing_chunks": 2, "first_missing": 1}}, errs.Incomplete, False),
    ({"TooOld": {"oldest_seq": 77}}, errs.TooOld, False),
    ({"Gap": {"applied_seq": 1, "from_seq": 5}}, errs.Gap, False),
    ({"OutOfRange": {"key": b"k", "owner": []}}, errs.OutOfRange, False),
    ({"ImageFormat": "version 9"}, errs.ImageFormat, False),
    ({"Busy": "committing"}, errs.Busy, True),
    ({"OutOfMemory": {"requested_bytes": 10}}, errs.OutOfMemory, False),
    ({"InvalidArgument": "len too large"}, errs.InvalidArgument, False),
    ({"Unsupported": "no push"}, errs.Unsupported, False),
    ({"Target": {"Busy": "x"}}, errs.TargetErrorTransient, True),
    ({"Target": {"Conflict": {"offset": 1}}}, errs.TargetErrorPermanent, False),
    ({"CallFailed": {"code": 2, "message": "queue full"}}, errs.CallFailedTransient, True),
    ({"CallFailed": {"code": 5, "message": "trapped"}}, errs.CallFailedPermanent, False),
    ({"NotWritable": {"mode": {"standby": None}, "redirect": []}}, errs.NotWritable, False),
]


@pytest.mark.parametrize(("error", "kind", "transient"), _ERRORS)
async def test_each_error_case_raises_its_exception(
    error: dict[str, Any], kind: type[errs.IcrpError], transient: bool
) -> None:
    icrp = IcrpClient(_Answering(error), CANISTER)
    with pytest.raises(kind) as caught:
        await icrp.end_export(1)
    assert isinstance(caught.value, TransientError) is transient
    assert isinstance(caught.value, PermanentError) is not transient
    assert caught.value.case == next(iter(error))
    if isinstance(caught.value, errs.TargetError):
        assert isinstance(caught.value.inner, errs.IcrpError)


def test_the_error_table_covers_every_case() -> None:
    assert {next(iter(e)) for e, _, _ in _ERRORS} == set(errs.ERROR_CASES)
