"""The Motoko reference implementation of the ICRP, run in localnet's sandbox.

The built canisters (``canister_iface/wasm/{demo_app,backup,platform}.wasm``
and the library self-test ``tests/canisters/wasm/icrp_selftest.wasm``) are
executed message by message in localnet's sandbox (see ``icrp_sandbox``):
arguments are encoded with the types of ``icrp.did`` and replies decoded
with them, so these tests also pin the canisters to the .did file.
Inter-canister pushes are checked by inspecting the outgoing call and
feeding its reply back as the callback. The parts for standbys, splits and
fleets are tested in ``test_icrp_replica_methods``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from icp_candid.candid import (
    ConstructType,
    OptClass,
    PrimitiveType,
    RecClass,
    RecordClass,
    Types,
    VariantClass,
    VecClass,
    decode,
)
from icrp_sandbox import (
    ANONYMOUS,
    BACKUP,
    CONTROLLER,
    DEMO,
    ICRP,
    MAX_TRANSFER,
    PLATFORM,
    ROOT,
    STRANGER,
    WASM,
    Canister,
    backup,
    backup_arg,
    commit,
    demo,
    digests,
    export,
    generate,
    pieces,
    read_all,
    relay,
    spec_of,
    stats,
)

from localnet.execution import EntryKind, Reply
from localnet.sandbox import CanisterSandbox, WasmEngine

# ------------------------------------------------------------------ the .did


def _resolve(t: Any) -> Any:
    while isinstance(t, RecClass):
        t = t.get_type()
    return t


def _difference(ours: Any, theirs: Any, path: str, seen: set[tuple[int, int]]) -> str | None:
    a, b = _resolve(ours), _resolve(theirs)
    if (id(a), id(b)) in seen:
        return None
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return f"{path}: {a.name} built, {b.name} in icrp.did"
    if isinstance(a, PrimitiveType):
        return None if a.name == b.name else f"{path}: {a.name} built, {b.name} in icrp.did"
    if isinstance(a, VecClass | OptClass):
        return _difference(a._type, b._type, f"{path}[]", seen)
    if isinstance(a, RecordClass | VariantClass):
        if set(a._field_map) != set(b._field_map):
            return f"{path}: fields differ"
        for h, (name, t) in a._field_map.items():
            found = _difference(t, b._field_map[h][1], f"{path}.{name}", seen)
            if found:
                return found
        return None
    assert isinstance(a, ConstructType)
    return f"{path}: cannot compare {a.name}"


@pytest.mark.parametrize(
    "methods", [DEMO, BACKUP, PLATFORM], ids=["demo_app", "backup", "platform"]
)
def test_the_built_canisters_implement_exactly_icrp_did(methods: dict[str, Any]) -> None:
    assert set(ICRP) <= set(methods), f"missing: {sorted(set(ICRP) - set(methods))}"
    problems = []
    for name, ref in ICRP.items():
        built = methods[name]
        if ("query" in built.annotations) != ("query" in ref.annotations):
            problems.append(f"{name}: query annotation differs")
        for kind, ours, theirs in (
            ("arg", built.argTypes, ref.argTypes),
            ("ret", built.retTypes, ref.retTypes),
        ):
            if len(ours) != len(theirs):
                problems.append(f"{name}: {kind} count differs")
                continue
            for i, (x, y) in enumerate(zip(ours, theirs, strict=True)):
                found = _difference(x, y, f"{name}.{kind}{i}", set())
                if found:
                    problems.append(found)
    assert problems == []


# ------------------------------------------------------------------ library


def test_library_self_test_passes(engine: WasmEngine) -> None:
    selftest = Canister(
        engine, ROOT / "tests/canisters/wasm/icrp_selftest.wasm", 99, b"DIDL\x00\x00"
    )
    result = selftest.execute(EntryKind.UPDATE, "selftest", b"DIDL\x00\x00", CONTROLLER)
    assert not result.trapped, result.trap_message
    assert isinstance(result.response, Reply)
    failures = decode(result.response.data, [Types.Vec(Types.Text)])[0]["value"]
    assert failures == []


# ------------------------------------------------------------------ demo app


def test_image_round_trip_restores_the_same_state(engine: WasmEngine) -> None:
    source = demo(engine, mib=3)
    target = demo(engine)
    ticket = export(source)
    data = read_all(source, ticket, piece=700_000)
    chunk = ticket["chunk_size"]
    expected = [hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk)]
    assert digests(source, ticket) == expected
    assert hashlib.sha256(b"".join(expected)).digest() == bytes(ticket["digest"][0])
    assert ticket["chunk_count"] == len(expected) > 1

    assert relay(source, target)[0] == {"snapshot_id": [], "digest": []}  # an app names neither
    assert stats(target)["fingerprint"] == stats(source)["fingerprint"]
    assert stats(target)["records"] == stats(source)["records"] > 0
    # The standby continues from the image's journal position.
    assert (
        target.ok("icrp_changes", ticket["journal_seq"], 1000, [])["to_seq"]
        == ticket["journal_seq"]
    )


def test_begin_export_reuses_an_unchanged_image_and_stales_a_replaced_one(
    engine: WasmEngine,
) -> None:
    app = demo(engine, mib=1)
    first = export(app)
    assert app.ok("icrp_begin_export")["snapshot_id"] == first["snapshot_id"]
    app.ok("create_user", "ada", "x", caller=CONTROLLER)
    second = export(app)
    assert second["snapshot_id"] > first["snapshot_id"]
    stale = app.err("icrp_read", first["snapshot_id"], 0, 10)
    assert stale == {
        "StaleSnapshot": {"requested": first["snapshot_id"], "current": [second["snapshot_id"]]}
    }
    app.ok("icrp_end_export", second["snapshot_id"])
    assert "StaleSnapshot" in app.err("icrp_read", second["snapshot_id"], 0, 10)


def test_stepwise_export_gives_the_same_image(engine: WasmEngine) -> None:
    app = demo(engine, mib=2)
    whole = export(app)
    app.ok("icrp_end_export", whole["snapshot_id"])
    small_steps = {
        "chunk_size": whole["chunk_size"],
        "journal_max_entries": 100_000,
        "journal_max_bytes": 64 << 20,
        "step_instructions": 20_000_000_000,
        "step_bytes": 200_000,
        "query_instructions": [],
    }
    app.ok("set_replication_settings", small_steps)
    ticket = app.ok("icrp_begin_export")
    assert "preparing" in ticket["state"]
    assert "NotReady" in app.err("icrp_read", ticket["snapshot_id"], 0, 10)
    steps = 1
    while "ready" not in ticket["state"]:
        ticket = app.ok("icrp_export_status", ticket["snapshot_id"])
        steps += 1
    assert steps > 5
    assert ticket["digest"] == whole["digest"]
    assert ticket["size"] == whole["size"]


def test_changes_keep_a_standby_in_sync(engine: WasmEngine) -> None:
    primary = demo(engine, mib=1)
    standby = demo(engine)
    since = relay(primary, standby)[1]["journal_seq"]
    generate(primary, 1, seed=2)
    user = primary.ok("create_user", "grace", "hopper", caller=STRANGER)
    primary.ok("add_post", user, "hello", [b"\x89PNG" * 100], caller=STRANGER)
    batches = 0
    while True:
        batch = primary.ok("icrp_changes", since, 300_000, [])
        applied = standby.ok("icrp_apply", batch)
        # Applying the same batch again changes nothing (idempotent by seq).
        assert standby.ok("icrp_apply", batch) == applied
        batches += 1
        since = applied
        if applied == batch["head_seq"]:
            break
    assert batches > 1
    assert stats(standby)["fingerprint"] == stats(primary)["fingerprint"]
    gap = {"from_seq": since + 5, "to_seq": since + 6, "head_seq": since + 6, "changes": []}
    assert "Gap" in standby.err("icrp_apply", gap)


def test_the_bounded_journal_says_too_old(engine: WasmEngine) -> None:
    app = demo(engine)
    tight = {
        "chunk_size": 1 << 20,
        "journal_max_entries": 5,
        "journal_max_bytes": 1 << 20,
        "step_instructions": 20_000_000_000,
        "step_bytes": 64 << 20,
        "query_instructions": [],
    }
    app.ok("set_replication_settings", tight)
    for i in range(10):
        app.ok("create_user", f"u{i}", "", caller=STRANGER)
    assert app.err("icrp_changes", 0, 1000, []) == {"TooOld": {"oldest_seq": 5}}
    assert len(app.ok("icrp_changes", 5, 1_000_000, [])["changes"]) == 5


def test_imports_are_verified_idempotent_and_resumable(engine: WasmEngine) -> None:
    source = demo(engine, mib=2)
    target = demo(engine)
    ticket = export(source)
    data = read_all(source, ticket)
    spec = spec_of(source, ticket)
    import_id = target.ok("icrp_begin_import", spec)
    assert target.ok("icrp_begin_import", spec) == import_id  # resume: same id
    assert target.ok("icrp_write", import_id, 0, data[:100_000]) == 100_000
    assert target.ok("icrp_write", import_id, 50_000, data[50_000:150_000]) == 150_000
    conflict = target.err("icrp_write", import_id, 1_000, b"\xff" * 10)
    assert conflict == {
        "Conflict": {"offset": 1_000 + next(i for i in range(10) if data[1_000 + i] != 0xFF)}
    }
    missing = target.err("icrp_commit_import", import_id)
    assert "Incomplete" in missing
    # A corrupted chunk is rejected as soon as it is complete.
    chunk = spec["chunk_size"]
    bad = bytearray(data[chunk : 2 * chunk])
    bad[17] ^= 1
    mismatch = target.err("icrp_write", import_id, chunk, bytes(bad))
    assert mismatch["DigestMismatch"]["chunk"] == [1]
    status = target.ok("icrp_import_status", import_id)
    assert status["chunks_done"][:2] == [False, False]
    assert status["received_bytes"] == 150_000
    for offset, n in pieces(len(data), 1_900_000):
        target.ok("icrp_write", import_id, offset, data[offset : offset + n])
    assert all(target.ok("icrp_import_status", import_id)["chunks_done"])
    app_committed = {"snapshot_id": [], "digest": []}  # an app names neither
    assert commit(target, import_id) == app_committed
    assert commit(target, import_id) == app_committed  # committing again is harmless
    assert stats(target)["fingerprint"] == stats(source)["fingerprint"]


def test_an_image_whose_digest_does_not_match_is_not_installed(engine: WasmEngine) -> None:
    source = demo(engine, mib=1)
    target = demo(engine, mib=1, seed=9)
    before = stats(target)
    ticket = export(source)
    data = bytearray(read_all(source, ticket))
    data[-1] ^= 1
    import_id = target.ok("icrp_begin_import", spec_of(source, ticket, with_digests=False))
    target.ok("icrp_write", import_id, 0, bytes(data))
    assert target.err("icrp_commit_import", import_id)["DigestMismatch"]["chunk"] == []
    assert "aborted" in target.ok("icrp_import_status", import_id)["state"]
    assert stats(target) == before


def test_state_is_private(engine: WasmEngine) -> None:
    app = demo(engine, mib=1)
    ticket = export(app)
    info = app.call("icrp_info", caller=STRANGER)
    assert info["trusted"] is False
    assert info["image"] == []
    assert info["protocol_version"] == 1
    assert app.call("icrp_info")["trusted"] is True
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("icrp_begin_export", ()),
        ("icrp_read", (ticket["snapshot_id"], 0, 10)),
        ("icrp_chunk_digests", (ticket["snapshot_id"], 0, 1)),
        ("icrp_changes", (0, 100, [])),
        ("icrp_export_range", ({"lower": b"", "upper": []}, [], 1000)),
        ("icrp_begin_import", (spec_of(app, ticket),)),
        ("icrp_config", ()),
    ]
    for method, args in calls:
        assert "NotAuthorized" in app.err(method, *args, caller=STRANGER), method
    assert "NotAuthorized" in app.err("icrp_read", ticket["snapshot_id"], 0, 10, caller=ANONYMOUS)
    # Peers are trusted, but configuring is for controllers only.
    app.ok("icrp_set_peers", [STRANGER])
    assert app.ok("icrp_read", ticket["snapshot_id"], 0, 10, caller=STRANGER)
    assert "NotAuthorized" in app.err("icrp_set_peers", [], caller=STRANGER)


def test_push_writes_into_the_target_through_an_inter_canister_call(engine: WasmEngine) -> None:
    source = demo(engine, mib=1)
    target = demo(engine)
    ticket = export(source)
    import_id = target.ok("icrp_begin_import", spec_of(source, ticket))
    args = (target.id, ticket["snapshot_id"], import_id, 0, 1_000_000)
    assert "InvalidArgument" in source.err("icrp_push", *args)  # the target is not a peer yet
    source.ok("icrp_set_peers", [target.id])
    target.ok("icrp_set_peers", [source.id])
    pushed = source.raw("icrp_push", *args)
    assert not pushed.trapped
    assert pushed.response is None
    (call,) = pushed.calls
    assert call.callee == target.id
    assert call.method == "icrp_write"
    # Deliver the call to the target, as the replica would, and its reply back.
    written = target.execute(EntryKind.UPDATE, "icrp_write", call.arg, source.id)
    assert isinstance(written.response, Reply)
    back = source.execute(
        EntryKind.REPLY_CALLBACK, "", written.response.data, target.id, callback=call.on_reply
    )
    assert isinstance(back.response, Reply)
    ack = decode(back.response.data, ICRP["icrp_push"].retTypes)[0]["value"]
    assert ack == {"ok": {"bytes": 1_000_000, "committed_bytes": 1_000_000}}
    # A rejected call comes back as CallFailed with the reject code.
    pushed = source.raw("icrp_push", *args)
    (call,) = pushed.calls
    rejected = source.execute(
        EntryKind.REJECT_CALLBACK,
        "",
        b"",
        target.id,
        callback=call.on_reject,
        reject_code=2,
        reject_message="busy",
    )
    assert isinstance(rejected.response, Reply)
    failed = decode(rejected.response.data, ICRP["icrp_push"].retTypes)[0]["value"]
    assert failed == {"err": {"CallFailed": {"code": 2, "message": "busy"}}}


def test_key_ranges_move_and_free_records(engine: WasmEngine) -> None:
    source = demo(engine, mib=1)
    shard = demo(engine)
    users = stats(source)["users"]
    half = (users // 2 + 1).to_bytes(8, "big")
    moved = {"lower": half, "upper": []}
    shard.ok("icrp_set_key_range", [moved])
    assert shard.call("icrp_info")["role"] == {"shard": None}
    cursor: list[bytes] = []
    copied = 0
    while True:
        batch = source.ok("icrp_export_range", moved, cursor, 400_000)
        copied += shard.ok("icrp_import_records", batch["records"])
        if not batch["next_cursor"]:
            break
        cursor = batch["next_cursor"]
    outside = {"key": b"\x00" * 8 + b"\x00", "value": b"x"}
    assert shard.err("icrp_import_records", [outside]) == {
        "OutOfRange": {"key": outside["key"], "owner": []}
    }
    before = stats(source)
    cursor = []
    deleted = 0
    while True:
        progress = source.ok("icrp_delete_range", moved, cursor, 50)
        deleted += progress["deleted"]
        if not progress["next_cursor"]:
            break
        cursor = progress["next_cursor"]
    after = stats(source)
    assert deleted == copied == before["records"] - after["records"] > 0
    assert after["state_bytes"] + stats(shard)["state_bytes"] == before["state_bytes"]
    assert source.ok("icrp_export_range", moved, [], 1000)["records"] == []


# ------------------------------------------------------------------ backup


def test_backup_keeps_the_newest_images_and_restores_them(engine: WasmEngine) -> None:
    app = demo(engine, mib=1)
    store = backup(engine, app, keep=2, peers=[])
    info = store.call("icrp_info")
    assert info["role"] == {"backup": None}
    assert "multi_image" in info["capabilities"]
    assert "NotFound" in store.err("icrp_begin_export")
    fingerprints = []
    for round_ in range(3):
        if round_:
            generate(app, 1, seed=10 + round_)
        fingerprints.append(stats(app)["fingerprint"])
        committed, ticket = relay(app, store)
        assert committed["snapshot_id"] == [round_ + 1]
        # The commit names the digest of the image it now serves, as export_status does.
        assert committed["digest"] == ticket["digest"]
        served = store.ok("icrp_export_status", round_ + 1)
        assert committed["digest"] == served["digest"]
    # The same image again is not stored twice, and committing it again says so.
    again, ticket = relay(app, store)
    assert (again["snapshot_id"], again["digest"]) == ([3], ticket["digest"])
    images = store.ok("icrp_list_images")
    assert [i["snapshot_id"] for i in images] == [2, 3]
    assert images[0]["origin"][0]["source"].bytes == app.id
    assert "StaleSnapshot" in store.err("icrp_read", 1, 0, 10)
    # Images from anyone but the source are refused.
    other = demo(engine, mib=1)
    foreign = spec_of(other, export(other))
    assert "InvalidArgument" in store.err("icrp_begin_import", foreign)
    # Restore the older image (snapshot 2) into a fresh app.
    fresh = demo(engine)
    older = images[0]
    data = read_all(store, older)
    spec = spec_of(store, older) | {"source": app.id}
    import_id = fresh.ok("icrp_begin_import", spec)
    for offset, n in pieces(len(data), MAX_TRANSFER):
        fresh.ok("icrp_write", import_id, offset, data[offset : offset + n])
    commit(fresh, import_id)
    assert stats(fresh)["fingerprint"] == fingerprints[1]
    store.ok("backup_set_keep", 1)
    assert [i["snapshot_id"] for i in store.ok("icrp_list_images")] == [3]


# ------------------------------------------------------------------ upgrades


def upgrade(canister: Canister, wasm: Path, arg: bytes) -> None:
    """Upgrade in place keeping the heap (EOP), as install_code's upgrade does."""
    result = canister.execute(EntryKind.PRE_UPGRADE, "", b"", CONTROLLER)
    assert not result.trapped, result.trap_message
    image = canister.sandbox.capture()
    old = canister.sandbox
    canister.sandbox = CanisterSandbox.load(
        canister.engine, wasm.read_bytes(), heap=image.heap, stable=image.stable
    )
    old.close()
    result = canister.execute(EntryKind.POST_UPGRADE, "", arg, CONTROLLER)
    assert not result.trapped, result.trap_message


def test_an_export_interrupted_by_an_upgrade_starts_over_and_completes(
    engine: WasmEngine,
) -> None:
    app = demo(engine, mib=2)
    whole = export(app)
    app.ok("icrp_end_export", whole["snapshot_id"])
    app.ok(
        "set_replication_settings",
        {
            "chunk_size": whole["chunk_size"],
            "journal_max_entries": 100_000,
            "journal_max_bytes": 64 << 20,
            "step_instructions": 20_000_000_000,
            "step_bytes": 300_000,
            "query_instructions": [],
        },
    )
    ticket = app.ok("icrp_begin_export")
    ticket = app.ok("icrp_export_status", ticket["snapshot_id"])
    assert "preparing" in ticket["state"]
    before = stats(app)
    upgrade(app, WASM / "demo_app.wasm", b"DIDL\x00\x00")
    assert stats(app) == before
    assert app.ok("icrp_config")["journal_max_entries"] == 100_000
    while "ready" not in ticket["state"]:
        ticket = app.ok("icrp_export_status", ticket["snapshot_id"])
    assert ticket["digest"] == whole["digest"]


def test_a_backup_keeps_its_images_across_an_upgrade(engine: WasmEngine) -> None:
    app = demo(engine, mib=1)
    store = backup(engine, app, keep=None, peers=[])
    relay(app, store)
    (image,) = store.ok("icrp_list_images")
    data = read_all(store, image)
    arg = backup_arg(app, None, [])
    upgrade(store, WASM / "backup.wasm", arg)
    assert store.ok("icrp_list_images") == [image]
    assert read_all(store, image) == data
    assert store.ok("backup_info")["keep"] == 3
