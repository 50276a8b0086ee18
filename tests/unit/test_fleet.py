"""The fleet kind's pure parts: machine, timing, options, member files, the member table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.checkpoints import SqliteStore
from replicator.errors import InvalidTransition, UsageError
from replicator.fleetstore import MemberResult, fleet_table
from replicator.flows import fleet
from replicator.flows.fleets.budget import FleetFunding
from replicator.flows.fleets.machine import (
    DISCOVERING,
    RUNNING,
    Discover,
    Discovered,
    MembersRan,
    RunMembers,
    advance,
)
from replicator.flows.fleets.members import read_file, static
from replicator.flows.fleets.metrics import FleetMetrics
from replicator.flows.fleets.options import FleetOptions
from replicator.flows.fleets.timing import member_state, next_slot, offset, retry_at
from replicator.job import ArchiveRef, CanisterRef, JobState, Phase
from replicator.limits import MemorySpending
from replicator.machine import Cancel, Fail, Start
from replicator.metrics import Metrics

A = "bcoug-tyaaa-aaap5-aaaaa-cai"
B = "dls7i-7qaaa-aaap5-ad3xq-cai"
C = "rxfxw-ciaaa-aaap5-ahxpa-cai"
INDEX = CanisterRef("cay7m-rqaaa-aaap5-altgq-cai", "local")


def state() -> JobState:
    return JobState(fleet.request(INDEX, name="users").job())


# ------------------------------------------------------------------ machine


def test_a_run_discovers_then_runs_the_members_then_is_done() -> None:
    s = state()
    step = advance(s, Start())
    assert step.state.phase == DISCOVERING
    assert step.effects == (Discover(),)
    step = advance(step.state, Discovered(listed=3, added=3, gone=0))
    assert step.state.phase == RUNNING
    assert step.effects == (RunMembers(s.job.id),)
    step = advance(step.state, MembersRan(ok=2, failed=1, failures={"not_icrp": 1}))
    assert step.state.phase == Phase.DONE
    assert step.effects == ()
    assert step.state.detail["failures"] == {"not_icrp": 1}


def test_a_resumed_run_past_discovery_runs_the_members_of_the_same_round() -> None:
    s = advance(advance(state(), Start()).state, Discovered(3, 3, 0)).state
    s = advance(s, Cancel()).state
    assert s.phase == Phase.CANCELLED
    step = advance(s, Start())
    assert step.state.phase == RUNNING
    assert step.effects == (RunMembers(s.job.id),)


def test_a_run_failed_in_discovery_discovers_again() -> None:
    s = advance(advance(state(), Start()).state, Fail("no index", 3)).state
    assert advance(s, Start()).effects == (Discover(),)


def test_events_out_of_order_are_refused() -> None:
    with pytest.raises(InvalidTransition):
        advance(state(), MembersRan(0, 0))
    with pytest.raises(InvalidTransition):
        advance(advance(state(), Start()).state, MembersRan(0, 0))
    with pytest.raises(InvalidTransition):
        advance(state(), object())


# ------------------------------------------------------------------- timing


@given(st.text(min_size=1, max_size=30), st.floats(min_value=0, max_value=4e9))
def test_a_members_slot_is_after_now_within_one_interval_at_its_fixed_offset(
    member: str, now: float
) -> None:
    every = 86_400.0
    slot = next_slot(member, every, now)
    assert now < slot <= now + every + 1e-3
    assert (
        abs((slot - offset(member, every)) / every - round((slot - offset(member, every)) / every))
        < 1e-6
    )


def test_members_are_spread_over_the_interval() -> None:
    offsets = sorted(offset(f"member-{i}", 86_400.0) for i in range(1000))
    hours = [int(o // 3600) for o in offsets]
    assert min(hours.count(h) for h in range(24)) > 20  # ~41 per hour, none empty


def test_backoff_doubles_and_is_capped_by_the_interval() -> None:
    assert retry_at(1, 86_400, 0) == 300
    assert retry_at(2, 86_400, 0) == 600
    assert retry_at(30, 86_400, 0) == 86_400


def test_member_states() -> None:
    kw = {"every": 100.0, "now": 1000.0}
    assert member_state(state="ok", gone=True, last_ok_at=990, **kw) == "gone"
    assert member_state(state="failing", gone=False, last_ok_at=990, **kw) == "failing"
    assert member_state(state="never", gone=False, last_ok_at=None, **kw) == "never"
    assert member_state(state="ok", gone=False, last_ok_at=900, **kw) == "ok"
    assert member_state(state="ok", gone=False, last_ok_at=800, **kw) == "overdue"


# ------------------------------------------------------------------ options


def test_options_are_checked_with_clear_errors() -> None:
    assert FleetOptions.of(fleet.request(INDEX, name="users")).network == "local"
    with pytest.raises(UsageError, match="needs a name"):
        FleetOptions.of(fleet.request(INDEX, name="bad name"))
    with pytest.raises(UsageError, match="network"):
        FleetOptions.of(fleet.request(ArchiveRef("m.txt"), name="f"))
    with pytest.raises(UsageError, match="concurrency"):
        FleetOptions.of(fleet.request(INDEX, name="f", concurrency=0))
    with pytest.raises(UsageError, match="duration"):
        FleetOptions.of(fleet.request(INDEX, name="f", every="often"))
    assert FleetOptions.of(fleet.request(INDEX, name="f", every="6h")).every == 6 * 3600


def test_each_action_has_its_own_member_rows_and_snapshots_need_a_repository() -> None:
    backup = FleetOptions.of(fleet.request(INDEX, name="users"))
    assert (backup.action, backup.table) == ("backup", "users")
    verify = FleetOptions.of(fleet.request(INDEX, name="users", action="verify"))
    assert verify.table == "users@verify"  # '@' is not allowed in names: no clash
    with pytest.raises(UsageError, match="needs a name"):
        FleetOptions.of(fleet.request(INDEX, name="users@verify"))
    with pytest.raises(UsageError, match="action must be one of backup, snapshot-backup"):
        FleetOptions.of(fleet.request(INDEX, name="f", action="restore"))
    with pytest.raises(UsageError, match="needs a repository directory"):
        FleetOptions.of(fleet.request(INDEX, name="f", action="snapshot-backup"))
    snap = fleet.request(INDEX, name="f", action="snapshot-backup", repository="/r")
    assert FleetOptions.of(snap).repository == "/r"


# ------------------------------------------------------------------ members


def test_member_files_lines_json_and_canister_ids(tmp_path: Path) -> None:
    lines = tmp_path / "m.txt"
    lines.write_text(f"# users\n{A}\n\n{B.upper()}  # shouting\n")
    assert read_file(lines, "ic") == [A, B]
    listed = tmp_path / "m.json"
    listed.write_text(json.dumps([A, C]))
    assert read_file(listed, "ic") == [A, C]
    dfx = tmp_path / "canister_ids.json"
    dfx.write_text(json.dumps({"a": {"ic": A, "local": B}, "b": {"local": C}}))
    assert read_file(dfx, "ic") == [A]
    assert static(f"{A}, {B} {C}", "members") == [A, B, C]


def test_a_bad_id_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.txt"
    bad.write_text(f"{A}\nnot-an-id\n")
    with pytest.raises(UsageError, match=r"m\.txt line 2: 'not-an-id' is not a canister id"):
        read_file(bad, "ic")
    with pytest.raises(UsageError, match="aaaaa-aa"):
        static("aaaaa-aa", "members")
    with pytest.raises(UsageError, match="cannot read"):
        read_file(tmp_path / "missing.txt", "ic")


# ---------------------------------------------------------------- the table


async def test_the_member_table_tracks_membership_and_rounds(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        table = fleet_table(store)
        change = await table.sync("f", "local", [A, B], now=10.0)
        assert (change.added, change.gone, change.total) == (2, 0, 2)
        assert [r.member for r in await table.due("f", "local", "r1", 10.0)] == [A, B]
        await table.finish("f", "local", "r1", MemberResult(A, True, 11.0, next_due=100.0))
        await table.finish("f", "local", "r1", MemberResult(B, False, 12.0, 50.0, "no", "not_icrp"))
        assert await table.due("f", "local", "r1", None) == []  # both finished this round
        assert [r.member for r in await table.due("f", "local", "r2", 60.0)] == [B]
        # Never backed up first, then the oldest success.
        await table.sync("f", "local", [A, B, C], now=70.0)
        assert [r.member for r in await table.due("f", "local", "r2", None)] == [B, C, A]
        change = await table.sync("f", "local", [C], now=80.0)
        assert (change.added, change.gone) == (0, 2)
        rows = {r.member: r for r in await table.members("f")}
        assert rows[A].gone
        assert rows[A].state == "ok"
        assert rows[B].failures == 1
        assert [r.member for r in await table.due("f", "local", "r3", None)] == [C]
        assert (await table.sync("f", "local", [A, C], now=90.0)).returned == 1
        assert await table.fleets() == ["f"]


def test_a_store_without_a_member_table_is_named() -> None:
    with pytest.raises(UsageError, match="does not keep fleet members"):
        fleet_table(object())


async def test_a_fleet_budget_draws_until_spent_and_renews_with_its_period() -> None:
    now = [1_000_000.0]
    registry = Metrics()
    metrics = registry.extension(FleetMetrics)
    spending = MemorySpending()

    def funding() -> FleetFunding:
        return FleetFunding(
            "f", budget=10, period=100.0, spending=spending, metrics=metrics, wall=lambda: now[0]
        )

    one = funding()
    assert await one.draw(6, "backup")
    one.done(6, "backup", ok=True)
    assert not await one.draw(5, "member")  # 6 + 5 > 10
    assert one.remaining() == 4
    assert await funding().refresh() == 4  # another process sees the same spending
    sample = registry.registry.get_sample_value
    assert sample("replicator_fleet_cycles_budget_remaining", {"name": "f"}) == 4
    now[0] += 100.0  # the next period
    assert one.remaining() == 10
    assert await one.draw(10, "backup")
    refused = {"name": "f", "of": "member", "outcome": "refused"}
    assert sample("replicator_fleet_topups_total", refused) == 1
    spent = sample("replicator_fleet_cycles_spent_total", {"name": "f"})
    assert spent == 6
    unlimited = FleetFunding(
        "g", budget=None, period=100.0, spending=spending, metrics=metrics, wall=lambda: now[0]
    )
    assert await unlimited.draw(10**15, "backup")  # no budget: counted, never refused
