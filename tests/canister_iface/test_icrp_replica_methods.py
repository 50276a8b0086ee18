"""The protocol parts for standbys, splits and fleets, in the Motoko reference.

The built demo app and platform canister run message by message in
localnet's sandbox (``icrp_sandbox``): a failover (fence, drain, images at
one sequence, role switch), the modes and what each refuses, change times
and the backlog, the direct journal path, large batches of small changes, a
split (key distribution, range-filtered journal, fences naming the owner,
the routing table, range digests, stepwise deletion) and a fleet index.
The same flows over HTTP, through IcrpClient, are in
``tests/integration/test_icrp_replica_localnet.py``; the costs are measured
by ``benchmarks/icrp_bench.py``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from icrp_sandbox import (
    ICRP,
    STRANGER,
    Canister,
    deliver,
    demo,
    export,
    platform,
    relay,
    stats,
)

from localnet.sandbox import WasmEngine

EVERYTHING: dict[str, Any] = {"lower": b"", "upper": []}
SECOND = 1_000_000_000


def user_key(user: int) -> bytes:
    return user.to_bytes(8, "big") + b"\x00"


def users(first: int, end: int | None = None) -> dict[str, Any]:
    """The key range of users ``first`` up to (not including) ``end``."""
    upper = [] if end is None else [end.to_bytes(8, "big")]
    return {"lower": first.to_bytes(8, "big"), "upper": upper}


def sync(source: Canister, target: Canister, since: int, *, upto: int | None = None) -> int:
    """Apply the source's changes after ``since`` to the target, up to ``upto``."""
    while True:
        batch = source.ok("icrp_changes", since, 500_000, [])
        if upto is not None and batch["to_seq"] > upto:
            batch = cut(batch, upto)
        since = target.ok("icrp_apply", batch)
        if since == (batch["head_seq"] if upto is None else upto):
            return since


def cut(batch: dict[str, Any], upto: int) -> dict[str, Any]:
    """The batch up to sequence ``upto`` (a batch covers its whole interval)."""
    changes = [c for c in batch["changes"] if c["seq"] <= upto]
    return batch | {"to_seq": upto, "changes": changes}


def write_refusal(reply: dict[str, Any]) -> dict[str, Any]:
    """The ICRP error a demo write was refused with."""
    assert "err" in reply, reply
    assert "refused" in reply["err"], reply
    return dict(reply["err"]["refused"])


def head(canister: Canister) -> int:
    seq: int = canister.call("icrp_info")["journal"][0]["head_seq"]
    return seq


def settings(**changes: Any) -> dict[str, Any]:
    """The demo's replication settings (the library defaults) with ``changes``."""
    base = {
        "chunk_size": 1 << 20,
        "journal_max_entries": 100_000,
        "journal_max_bytes": 64 << 20,
        "step_instructions": 20_000_000_000,
        "step_bytes": 64 << 20,
        "query_instructions": [],
    }
    return base | changes


def export_at(canister: Canister, seq: int) -> dict[str, Any]:
    ticket = canister.ok("icrp_begin_export_at", seq)
    while "ready" not in ticket["state"]:
        ticket = canister.ok("icrp_export_status", ticket["snapshot_id"])
    return dict(ticket)


# ------------------------------------------------------------------ standby


def test_a_failover_fences_drains_compares_and_switches(engine: WasmEngine) -> None:
    primary = demo(engine, mib=1)
    standby = demo(engine)
    seeded = relay(primary, standby)[1]["journal_seq"]
    mode = standby.ok("icrp_set_mode", {"standby": None}, [])
    assert mode["mode"] == {"standby": None}
    refused = write_refusal(standby.call("create_user", "eve", "", caller=STRANGER))
    assert refused == {"NotWritable": {"mode": {"standby": None}, "redirect": []}}
    assert "NotAuthorized" in standby.err("icrp_set_mode", {"primary": None}, [], caller=STRANGER)

    for i in range(5):
        primary.ok("create_user", f"u{i}", "more", caller=STRANGER)
    applied = sync(primary, standby, seeded)
    assert head(standby) == applied  # the resume point
    late = primary.ok("create_user", "late", "written before the fence", caller=STRANGER)

    # Fence: every change refused, the answer names the final sequence.
    fenced = primary.ok("icrp_set_mode", {"read_only": None}, [standby.id])
    final = fenced["journal_seq"]
    assert final == head(primary)
    refused = write_refusal(primary.call("create_user", "x", "", caller=STRANGER))
    assert refused["NotWritable"]["mode"] == {"read_only": None}
    assert refused["NotWritable"]["redirect"][0].bytes == standby.id
    assert "NotWritable" in primary.err("icrp_import_records", [{"key": b"k", "value": b"v"}])
    assert "read-only" in primary.call("generate", 2, 7)["err"]
    assert primary.ok("icrp_set_mode", {"read_only": None}, [standby.id]) == fenced  # a retry

    # Drain, then compare images frozen at the final sequence on both.
    assert sync(primary, standby, applied) == final
    assert primary.ok("icrp_backlog", final)["changes"] == 0
    at_primary = export_at(primary, final)
    at_standby = export_at(standby, final)
    assert at_primary["digest"] == at_standby["digest"]
    assert at_standby["journal_seq"] == final

    # Switch: the standby takes writes and continues the sequence.
    standby.ok("icrp_set_mode", {"primary": None}, [])
    assert standby.call("get_user", late)  # the last write before the fence arrived
    user = standby.ok("create_user", "after", "the failover", caller=STRANGER)
    assert user == late + 1
    assert head(standby) == final + 1
    # The old primary follows the new one from the final sequence.
    primary.ok("icrp_set_mode", {"standby": None}, [])
    assert sync(standby, primary, final) == final + 1
    assert stats(primary)["fingerprint"] == stats(standby)["fingerprint"]


def test_an_image_asked_for_ahead_is_frozen_at_exactly_that_sequence(engine: WasmEngine) -> None:
    primary = demo(engine, mib=1)
    standby, replica = demo(engine), demo(engine)
    start = relay(primary, standby)[1]["journal_seq"]
    assert relay(primary, replica)[1]["journal_seq"] == start
    for i in range(6):
        primary.ok("create_user", f"u{i}", "x" * 100, caller=STRANGER)
    target = start + 3  # mid-way through the batch that follows
    waiting = standby.ok("icrp_begin_export_at", target)
    assert waiting["state"] == {"preparing": {"done_bytes": 0}}
    assert waiting["journal_seq"] == target
    assert "NotReady" in standby.err("icrp_read", waiting["snapshot_id"], 0, 10)
    assert standby.ok("icrp_export_status", waiting["snapshot_id"])["state"] == waiting["state"]

    batch = primary.ok("icrp_changes", start, 2_000_000, [])
    assert batch["to_seq"] == start + 6  # one batch across the target
    standby.ok("icrp_apply", batch)
    ticket = standby.ok("icrp_export_status", waiting["snapshot_id"])
    while "ready" not in ticket["state"]:
        ticket = standby.ok("icrp_export_status", ticket["snapshot_id"])
    assert ticket["journal_seq"] == target

    # A replica that stopped at the target holds the state the image shows.
    assert sync(primary, replica, start, upto=target) == target
    assert export_at(replica, target)["digest"] == ticket["digest"]
    assert export(primary)["digest"] != ticket["digest"]  # the head is elsewhere
    # Asked again: the same image; behind the head otherwise: TooOld naming the head.
    assert standby.ok("icrp_begin_export_at", target)["snapshot_id"] == ticket["snapshot_id"]
    end = start + 6
    assert standby.err("icrp_begin_export_at", target - 1) == {"TooOld": {"oldest_seq": end}}
    # A plain export replaces an image still waiting for its sequence.
    ahead = standby.ok("icrp_begin_export_at", end + 10)
    assert export(standby)["snapshot_id"] > ahead["snapshot_id"]
    assert "StaleSnapshot" in standby.err("icrp_export_status", ahead["snapshot_id"])


def test_each_mode_refuses_what_it_says_and_only_controllers_set_it(engine: WasmEngine) -> None:
    app = demo(engine, mib=1)
    user = app.ok("create_user", "ada", "", caller=STRANGER)
    record = {"key": b"\xff-record", "value": b"v"}
    assert app.call("icrp_info")["mode"][0]["mode"] == {"primary": None}
    assert app.call("icrp_info", caller=STRANGER)["mode"] == []  # state is private

    # A standby: replication yes, the application and deletions no.
    app.ok("icrp_set_mode", {"standby": None}, [])
    assert write_refusal(app.call("add_post", user, "hi", [], caller=STRANGER)) == {
        "NotWritable": {"mode": {"standby": None}, "redirect": []}
    }
    assert "a standby" in app.call("generate_keys", 10, 1)["err"]
    assert app.ok("icrp_import_records", [record]) == 1
    now = head(app)
    assert app.ok("icrp_apply", {"from_seq": now, "to_seq": now, "head_seq": now, "changes": []})
    refused = app.err("icrp_delete_range", {"lower": b"\xff", "upper": []}, [], 10)
    assert refused == {"NotWritable": {"mode": {"standby": None}, "redirect": []}}

    # Read-only (fenced): nothing changes, reads and exports still work.
    app.ok("icrp_set_mode", {"read_only": None}, [])
    for method, args in (
        ("icrp_import_records", ([record],)),
        ("icrp_apply", ({"from_seq": now, "to_seq": now, "head_seq": now, "changes": []},)),
        ("icrp_delete_range", ({"lower": b"\xff", "upper": []}, [], 10)),
    ):
        assert "NotWritable" in app.err(method, *args), method
    assert export(app)["journal_seq"] == head(app)
    assert app.ok("icrp_export_range", {"lower": b"\xff", "upper": []}, [], 1000)["records"]
    # An import can be staged but not committed.
    ticket = export(demo(engine, mib=1, seed=4))
    spec = {
        "source": app.id,
        "snapshot_id": ticket["snapshot_id"],
        "size": 0,
        "chunk_size": ticket["chunk_size"],
        "digest": hashlib.sha256(b"").digest(),
        "chunk_digests": [],
        "journal_seq": 0,
    }
    import_id = app.ok("icrp_begin_import", spec)
    assert "NotWritable" in app.err("icrp_commit_import", import_id)

    # Configuration is for controllers, even trusted peers may not.
    app.ok("icrp_set_peers", [STRANGER])
    for method, args in (
        ("icrp_set_mode", ({"primary": None}, [])),
        ("icrp_set_fences", ([],)),
        ("icrp_set_routing", ({"version": 9, "routes": []},)),
    ):
        assert "NotAuthorized" in app.err(method, *args, caller=STRANGER), method
    # Reversible: a primary again takes writes.
    back = app.ok("icrp_set_mode", {"primary": None}, [])
    assert back["mode"] == {"primary": None}
    assert back["journal_seq"] == head(app)
    assert app.ok("add_post", user, "back", [], caller=STRANGER) == 0


def test_changes_carry_their_time_and_the_backlog_says_how_late_a_replica_is(
    engine: WasmEngine,
) -> None:
    primary, standby = demo(engine), demo(engine)
    times = []
    for i in range(4):
        primary.time_ns += 7 * SECOND
        times.append(primary.time_ns)
        primary.ok("create_user", f"u{i}", "", caller=STRANGER)
    changes = primary.ok("icrp_changes", 0, 1_000_000, [])["changes"]
    assert [c["time"] for c in changes] == times

    behind = primary.ok("icrp_backlog", 1)
    assert behind["head_seq"] == 4
    assert behind["changes"] == 3
    assert behind["oldest_time"] == [times[1]]  # lag = now - the oldest change missing
    assert behind["head_time"] == [times[3]]
    puts = [c["op"]["put"] for c in changes[1:]]
    assert behind["bytes"] == sum(48 + len(p["key"]) + len(p["value"]) for p in puts)
    assert primary.ok("icrp_backlog", 4)["oldest_time"] == []
    assert "InvalidArgument" in primary.err("icrp_backlog", 5)

    # A replica keeps the source's times: its own journal says how old its state is.
    standby.time_ns += 3600 * SECOND
    assert sync(primary, standby, 0) == 4
    assert [c["time"] for c in standby.ok("icrp_changes", 0, 1_000_000, [])["changes"]] == times

    # The journal keeps the newest changes only (here 3): older readers get TooOld.
    primary.ok("set_replication_settings", settings(journal_max_entries=3))
    assert primary.err("icrp_backlog", 0) == {"TooOld": {"oldest_seq": 1}}
    assert primary.err("icrp_changes", 0, 1000, []) == {"TooOld": {"oldest_seq": 1}}
    big = 10_000
    primary.ok("set_replication_settings", settings(journal_max_bytes=big))
    primary.ok("create_user", "v", "x" * (2 * big), caller=STRANGER)  # alone over the bound
    journal = primary.call("icrp_info")["journal"][0]
    assert (journal["entries"], journal["oldest_seq"]) == (0, 5)


def test_the_source_pushes_its_changes_into_the_standby(engine: WasmEngine) -> None:
    primary, standby = demo(engine, mib=1), demo(engine)
    since = relay(primary, standby)[1]["journal_seq"]
    for i in range(3):
        primary.ok("create_user", f"u{i}", "pushed", caller=STRANGER)
    args = (standby.id, since, 1_000_000, [])
    assert "InvalidArgument" in primary.err("icrp_push_changes", *args)  # not a peer yet
    primary.ok("icrp_set_peers", [standby.id])
    standby.ok("icrp_set_peers", [primary.id])
    standby.ok("icrp_set_mode", {"standby": None}, [])

    sent = primary.raw("icrp_push_changes", *args)
    assert [c.method for c in sent.calls] == ["icrp_apply"]
    ack = deliver(primary, sent, standby, ICRP["icrp_push_changes"])
    assert ack == {
        "ok": {
            "to_seq": since + 3,
            "head_seq": since + 3,
            "changes": 3,
            "bytes": ack["ok"]["bytes"],
            "applied_seq": since + 3,
        }
    }
    assert stats(standby)["fingerprint"] == stats(primary)["fingerprint"]
    # The target's own error comes back wrapped: here it is ahead (Gap from the future).
    primary.ok("create_user", "x", "", caller=STRANGER)
    sent = primary.raw("icrp_push_changes", standby.id, since + 3, 1_000_000, [])
    standby.ok("icrp_set_mode", {"read_only": None}, [])
    failed = deliver(primary, sent, standby, ICRP["icrp_push_changes"])
    assert failed == {
        "err": {"Target": {"NotWritable": {"mode": {"read_only": None}, "redirect": []}}}
    }


def test_one_apply_takes_a_batch_of_many_small_changes(engine: WasmEngine) -> None:
    primary, standby = demo(engine), demo(engine)
    count = 20_000
    for first in range(0, count, 5_000):
        records = [
            {"key": b"small-%08d" % i, "value": b"%032d" % i} for i in range(first, first + 5_000)
        ]
        primary.ok("icrp_import_records", records)
    batch = primary.ok("icrp_changes", 0, 2_000_000, [])
    assert len(batch["changes"]) == count  # one batch: ~70 bytes each
    result = standby.raw("icrp_apply", batch)
    assert not result.trapped, result.trap_message
    assert stats(standby)["fingerprint"] == stats(primary)["fingerprint"]
    # Far inside one message's 40 B instructions (figures: benchmarks/icrp_bench.py).
    assert result.instructions / count < 100_000


# ------------------------------------------------------------------ split


def test_a_split_plans_copies_follows_fences_compares_and_frees(engine: WasmEngine) -> None:
    source, shard = demo(engine, mib=2), demo(engine)
    total = stats(source)
    # Plan: buckets of ~256 KiB; the split point is a bucket boundary about half-way.
    dist = source.ok("icrp_key_distribution", EVERYTHING, [], 256 * 1024)
    buckets = dist["buckets"]
    assert dist["next_cursor"] == []
    assert sum(b["records"] for b in buckets) == total["records"]
    assert sum(b["bytes"] for b in buckets) == total["state_bytes"]
    assert all(b["bytes"] >= 256 * 1024 for b in buckets[:-1])
    assert [b["first_key"] for b in buckets] == sorted(b["first_key"] for b in buckets)
    running, split = 0, b""
    for b in buckets:
        if running >= total["state_bytes"] // 2:
            split = bytes(b["first_key"])
            break
        running += b["bytes"]
    moved = {"lower": split[:8], "upper": []}  # on a user boundary: a user stays whole

    # Copy the range into the shard (a standby until the cut-over), then
    # restart its journal at the first page's sequence: it follows from there.
    shard.ok("icrp_set_key_range", [moved])
    shard.ok("icrp_set_mode", {"standby": None}, [])
    copy = source.ok("icrp_export_range", moved, [], 2_000_000)
    since = copy["journal_seq"]
    while True:
        shard.ok("icrp_import_records", copy["records"])
        if not copy["next_cursor"]:
            break
        copy = source.ok("icrp_export_range", moved, copy["next_cursor"], 2_000_000)
    assert head(shard) != since  # the shard numbered the copied records itself
    shard.ok("icrp_reset_journal", since)
    assert shard.call("icrp_info")["journal"][0] == {
        "head_seq": since,
        "oldest_seq": since,
        "entries": 0,
        "bytes": 0,
    }
    before_split = (int.from_bytes(split[:8], "big") - 1).to_bytes(8, "big")
    stays = {"key": before_split + b"\x05stays", "value": b"x"}
    moves = {"key": split[:8] + b"\x05moves", "value": b"y"}
    source.ok("icrp_import_records", [stays, moves])
    filtered = source.ok("icrp_changes", since, 1_000_000, [moved])
    assert filtered["to_seq"] == head(source)
    assert [c["op"]["put"]["key"] for c in filtered["changes"]] == [moves["key"]]
    assert shard.ok("icrp_apply", filtered) == head(source)
    assert shard.ok("icrp_apply", filtered) == head(source)  # again: nothing changes

    # Cut-over: fence the range in the source, naming the shard; publish the routes.
    fenced_at = source.ok("icrp_set_fences", [{"range": moved, "owner": [shard.id]}])
    assert fenced_at == head(source)
    refused = write_refusal(source.call("create_user", "new", "", caller=STRANGER))
    assert [p.bytes for p in refused["OutOfRange"]["owner"]] == [shard.id]  # the newest user
    still = {"key": stays["key"] + b"2", "value": b"z"}
    assert source.ok("icrp_import_records", [still]) == 1  # other ranges take writes
    routes = [
        {"range": {"lower": b"", "upper": [split[:8]]}, "canister": source.id},
        {"range": moved, "canister": shard.id},
    ]
    source.ok("icrp_set_routing", {"version": 1, "routes": routes})
    assert source.ok("icrp_routing", caller=STRANGER)["routes"][1]["canister"].bytes == shard.id
    # The shard refuses what it does not own, naming the owner from its routes.
    shard.ok("icrp_set_routing", {"version": 1, "routes": routes})
    outside = shard.err("icrp_import_records", [{"key": user_key(1), "value": b"x"}])
    assert outside["OutOfRange"]["owner"][0].bytes == source.id

    # The shard holds every change of the range up to the fence: it stops following.
    assert head(shard) == fenced_at
    assert source.ok("icrp_changes", fenced_at, 1_000_000, [moved])["changes"] == []
    shard.ok("icrp_set_mode", {"primary": None}, [])

    # Compare the range on both, page by page under a small query budget.
    source.ok("set_replication_settings", settings(query_instructions=[20_000_000]))
    in_source, pages = whole_digest(source, moved)
    in_shard, _ = whole_digest(shard, moved)
    assert pages > 1
    assert in_source == in_shard
    assert in_source["records"] == stats(shard)["records"]

    # Free the range in the source, in steps that report their progress.
    freed, steps, cursor = 0, 0, []
    while True:
        progress = source.ok("icrp_delete_range", moved, cursor, 10)
        assert progress["deleted"] <= 10
        freed += progress["bytes"]
        steps += 1
        if not progress["next_cursor"]:
            break
        cursor = progress["next_cursor"]
    assert steps > 1
    assert freed == in_source["bytes"]
    assert source.ok("icrp_export_range", moved, [], 1000)["records"] == []
    assert stats(source)["records"] == total["records"] + 3 - in_source["records"]


def whole_digest(canister: Canister, key_range: dict[str, Any]) -> tuple[dict[str, int], int]:
    """The range's records, bytes and digest, pages added up; and the page count."""
    records = size = digest = pages = 0
    cursor: list[bytes] = []
    while True:
        page = canister.ok("icrp_range_digest", key_range, cursor)
        records += page["records"]
        size += page["bytes"]
        digest = (digest + int.from_bytes(page["digest"], "big")) % 2**256
        pages += 1
        if not page["next_cursor"]:
            return {"records": records, "bytes": size, "digest": digest}, pages
        cursor = page["next_cursor"]


def test_the_range_digest_is_the_sum_of_record_hashes(engine: WasmEngine) -> None:
    app = demo(engine, mib=1)
    records = app.ok("icrp_export_range", EVERYTHING, [], 2_000_000)["records"]
    expected = _sum_digest(records)
    got, _ = whole_digest(app, EVERYTHING)
    assert got == {
        "records": len(records),
        "bytes": sum(len(r["key"]) + len(r["value"]) for r in records),
        "digest": expected,
    }
    # A different value of one record gives a different digest.
    app.ok("icrp_import_records", [records[0] | {"value": records[0]["value"] + b"!"}])
    assert whole_digest(app, EVERYTHING)[0]["digest"] != expected
    assert "InvalidArgument" in app.err("icrp_range_digest", {"lower": b"b", "upper": [b"a"]}, [])


def test_fences_and_routes_are_checked_and_routes_are_public(engine: WasmEngine) -> None:
    app = demo(engine)
    owner, other = demo(engine), demo(engine)
    for i in range(4):
        app.ok("create_user", f"u{i}", "", caller=STRANGER)
    overlapping = [{"range": users(1, 3), "owner": []}, {"range": users(2), "owner": []}]
    assert "overlap" in app.err("icrp_set_fences", overlapping)["InvalidArgument"]
    # A fence without an owner names the owner the routing table gives.
    app.ok("icrp_set_fences", [{"range": users(3), "owner": []}])
    routes = [{"range": users(3), "canister": owner.id}]
    app.ok("icrp_set_routing", {"version": 5, "routes": routes})
    refused = write_refusal(app.call("add_post", 3, "x", [], caller=STRANGER))
    assert refused["OutOfRange"]["key"] == user_key(3)
    assert [p.bytes for p in refused["OutOfRange"]["owner"]] == [owner.id]
    assert app.ok("icrp_config")["fences"] == [{"range": users(3), "owner": []}]
    # Records of a fenced range can be deleted (freeing the source), not written.
    assert "OutOfRange" in app.err("icrp_import_records", [{"key": user_key(4), "value": b""}])
    assert app.ok("icrp_delete_range", users(3), [], 100)["deleted"] == 2

    # The routing table: anyone reads it; versions only grow; a retry is harmless.
    table = app.ok("icrp_routing", caller=STRANGER)
    assert table["version"] == 5
    assert app.ok("icrp_set_routing", table) is None
    moved = {"version": 5, "routes": [{"range": users(3), "canister": other.id}]}
    assert "not above the current version" in app.err("icrp_set_routing", moved)["InvalidArgument"]
    app.ok("icrp_set_routing", moved | {"version": 6})
    assert app.ok("icrp_routing", caller=STRANGER)["routes"][0]["canister"].bytes == other.id
    unordered = {"version": 7, "routes": [{"range": users(2), "canister": owner.id}] * 2}
    assert "InvalidArgument" in app.err("icrp_set_routing", unordered)
    # Lifting the fence lets the writes in again.
    app.ok("icrp_set_fences", [])
    assert app.ok("icrp_import_records", [{"key": user_key(4), "value": b""}]) == 1


# ------------------------------------------------------------------ fleet


def test_the_platform_lists_its_fleet_in_pages(engine: WasmEngine) -> None:
    plat = platform(engine)
    info = plat.call("icrp_info")
    assert "fleet" in info["capabilities"]
    members = sorted(bytes([9, 9, i, 1]) for i in range(12))
    for i, member in enumerate(reversed(members)):
        assert plat.call("register_user_canister", bytes([7, i]), member) == {"ok": None}
    stranger = plat.call("register_user_canister", b"\x07\x99", b"\x09", caller=STRANGER)
    assert "NotAuthorized" in stranger["err"]["refused"]
    again = plat.call("register_user_canister", bytes([7, 0]), members[0])
    assert "already has canister" in again["err"]["invalid"]
    assert plat.call("user_canister", bytes([7, 0]), caller=STRANGER)[0].bytes == members[-1]

    # icrp_fleet_members: in principal order, cursor inclusive, limit per page.
    seen: list[bytes] = []
    cursor: list[Any] = []
    while True:
        page = plat.ok("icrp_fleet_members", cursor, 5)
        assert len(page["members"]) <= 5
        seen.extend(m["canister"].bytes for m in page["members"])
        if not page["next_cursor"]:
            break
        cursor = [page["next_cursor"][0].bytes]
    assert seen == members
    assert "NotAuthorized" in plat.err("icrp_fleet_members", [], 5, caller=STRANGER)

    # The plain index: vec principal after a cursor (exclusive).
    first = plat.call("list_user_canisters", [], 7)
    rest = plat.call("list_user_canisters", [first[-1].bytes], 100)
    assert [p.bytes for p in first + rest] == members
    assert plat.call("list_user_canisters", [members[-1]], 100) == []

    # The index is the platform's replicable state: an image carries it.
    copy = platform(engine)
    relay(plat, copy)
    copied = copy.ok("icrp_fleet_members", [], 100)["members"]
    assert [m["canister"].bytes for m in copied] == members
    # A fenced platform refuses new members with the protocol's error.
    plat.ok("icrp_set_mode", {"read_only": None}, [])
    fenced = plat.call("register_user_canister", b"\x07\x77", b"\x09\x09\x77")
    assert "NotWritable" in fenced["err"]["refused"]


def _sum_digest(records: list[dict[str, Any]]) -> int:
    total = 0
    for r in records:
        data = len(r["key"]).to_bytes(4, "big") + r["key"] + r["value"]
        total += int.from_bytes(hashlib.sha256(data).digest(), "big")
    return total % 2**256
