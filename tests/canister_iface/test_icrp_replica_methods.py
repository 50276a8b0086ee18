"""The protocol parts for standbys, splits and fleets, in the Motoko reference.

The built demo app and platform canister run message by message in
localnet's sandbox (as in ``test_icrp_reference_canisters``): a failover
(fence, drain, images at one sequence, role switch), a split (key
distribution, range-filtered journal, fences naming the owner, range
digests, stepwise deletion), the direct journal path, and what it costs in
instructions per change, per MiB and per record.
"""

from __future__ import annotations

from typing import Any

from test_icrp_reference_canisters import (
    STRANGER,
    Canister,
    WasmEngine,
    demo,
    export,
    relay,
    stats,
)

EVERYTHING: dict[str, Any] = {"lower": b"", "upper": []}


def user_key(user: int) -> bytes:
    return user.to_bytes(8, "big") + b"\x00"


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
    assert "err" in reply, reply
    assert "refused" in reply["err"], reply
    return dict(reply["err"]["refused"])


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
    assert standby.call("icrp_info")["journal"][0]["head_seq"] == applied  # resume point
    late = primary.ok("create_user", "late", "written before the fence", caller=STRANGER)

    # Fence: every change refused, the answer names the final sequence.
    fenced = primary.ok("icrp_set_mode", {"read_only": None}, [standby.id])
    final = fenced["journal_seq"]
    assert final == primary.call("icrp_info")["journal"][0]["head_seq"]
    refused = write_refusal(primary.call("create_user", "x", "", caller=STRANGER))
    assert refused["NotWritable"]["mode"] == {"read_only": None}
    assert refused["NotWritable"]["redirect"][0].bytes == standby.id
    assert "NotWritable" in primary.err("icrp_import_records", [{"key": b"k", "value": b"v"}])
    assert "generate is" not in primary.err("generate", 2, 7)  # refused as read-only, not access
    assert primary.ok("icrp_set_mode", {"read_only": None}, [standby.id]) == fenced  # retry

    # Drain, then compare images frozen at the final sequence on both.
    assert sync(primary, standby, applied) == final
    assert primary.ok("icrp_backlog", final)["changes"] == 0
    at_primary = export_at(primary, final)
    at_standby = export_at(standby, final)
    assert at_primary["digest"] == at_standby["digest"]
    assert at_standby["journal_seq"] == final

    # Switch: the standby takes writes and continues the sequence.
    standby.ok("icrp_set_mode", {"primary": None}, [])
    assert standby.ok("get_user", late) if False else standby.call("get_user", late)[0]
    user = standby.ok("create_user", "after", "the failover", caller=STRANGER)
    assert user == late + 1
    assert standby.call("icrp_info")["journal"][0]["head_seq"] == final + 1
    # The old primary follows the new one from the final sequence.
    primary.ok("icrp_set_mode", {"standby": None}, [])
    assert sync(standby, primary, final) == final + 1
    assert stats(primary)["fingerprint"] == stats(standby)["fingerprint"]


def export_at(canister: Canister, seq: int) -> dict[str, Any]:
    ticket = canister.ok("icrp_begin_export_at", seq)
    while "ready" not in ticket["state"]:
        ticket = canister.ok("icrp_export_status", ticket["snapshot_id"])
    return dict(ticket)


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
    head = start + 6
    assert standby.err("icrp_begin_export_at", target - 1) == {"TooOld": {"oldest_seq": head}}
    # A plain export replaces an image still waiting for its sequence.
    ahead = standby.ok("icrp_begin_export_at", head + 10)
    assert export(standby)["snapshot_id"] > ahead["snapshot_id"]
    assert "StaleSnapshot" in standby.err("icrp_export_status", ahead["snapshot_id"])
