"""The canister table's dirty set and timer heap (``localnet.canisters``).

The ``--state-dir`` journal writes only the canisters in the dirty set, so a
change that does not reach it is lost after a crash. These tests fail when a
way of changing a ``CanisterState`` bypasses the marking: a new field, a new
mutable container, a mutating method of ``dict``/``list`` the tracking
containers do not override, an in-place settings change, or a sandbox
commit; and they show that ``LOCALNET_CHECK_DIRTY=1`` catches a bypass.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from localnet.canisters import CanisterTable
from localnet.clock import Clock
from localnet.execution import EntryKind, MessageContext
from localnet.persist import DirtyMissed, Journal
from localnet.replica import Replica
from localnet.sandbox import CanisterSandbox, WasmEngine
from localnet.state import (
    CanisterState,
    CanisterStatus,
    Settings,
    Snapshot,
    TrackedDict,
    TrackedList,
)

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
USER = b"\x01" * 29
EMPTY_ARGS = b"DIDL\x00\x00"
CID = b"\x00" * 9 + b"\x01"

# Methods of dict and list that do not change the container.
_READ_ONLY = {
    "copy", "count", "fromkeys", "get", "index", "items", "keys", "values",
    "__class_getitem__", "__contains__", "__eq__", "__ge__", "__getitem__", "__gt__",
    "__iter__", "__le__", "__len__", "__lt__", "__ne__", "__or__", "__ror__", "__repr__",
    "__reversed__", "__sizeof__", "__add__", "__mul__", "__rmul__", "__getattribute__",
    "__init__", "__new__", "__hash__", "__init_subclass__", "__subclasshook__", "__reduce__",
    "__reduce_ex__", "__format__", "__dir__", "__str__", "__getstate__", "__class__",
    "__doc__", "__delattr__", "__setattr__",
}  # fmt: skip


def _canister() -> CanisterState:
    return CanisterState(CID, Settings(controllers=[USER]), cycles=10**12)


def _tracked() -> tuple[CanisterTable, CanisterState]:
    table = CanisterTable()
    canister = _canister()
    table[CID] = canister
    table.take_dirty()
    return table, canister


def test_every_field_assignment_marks_the_canister() -> None:
    table, canister = _tracked()
    for field in dataclasses.fields(CanisterState):
        if field.name == "tracker":
            continue
        setattr(canister, field.name, getattr(canister, field.name))
        assert table.take_dirty() == {CID}, field.name


def test_every_mutable_field_is_held_in_a_tracking_container() -> None:
    # A new dict/list field must join _TRACKED_DICTS/_TRACKED_LISTS (localnet.state).
    canister = _canister()
    for field in dataclasses.fields(CanisterState):
        value = getattr(canister, field.name)
        if isinstance(value, dict):
            assert isinstance(value, TrackedDict), field.name
        elif isinstance(value, list):
            assert isinstance(value, TrackedList), field.name
        else:
            assert isinstance(value, (int, bytes, str, type(None), Settings, CanisterStatus)), (
                f"{field.name}: a mutable {type(value).__name__} is not tracked"
            )
    # Assigned plain containers are wrapped too.
    canister.chunk_store = {b"a": b"b"}
    assert isinstance(canister.chunk_store, TrackedDict)
    canister.history = []
    assert isinstance(canister.history, TrackedList)


@pytest.mark.parametrize(("container", "tracked"), [(dict, TrackedDict), (list, TrackedList)])
def test_tracking_containers_override_every_mutating_method(container: type, tracked: type) -> None:
    mutating = {name for name in dir(container) if name not in _READ_ONLY}
    missing = {name for name in mutating if name not in tracked.__dict__}
    assert not missing, f"{tracked.__name__} does not report changes through {sorted(missing)}"


def test_container_mutations_mark_the_canister() -> None:
    table, canister = _tracked()
    snapshot = Snapshot(b"s", 0, 0, b"", b"", b"", [], b"", 0)
    steps = [
        lambda: canister.chunk_store.__setitem__(b"d", b"chunk"),
        lambda: canister.chunk_store.update({b"e": b"x"}),
        lambda: canister.chunk_store.pop(b"e"),
        lambda: canister.chunk_store.setdefault(b"f", b"y"),
        lambda: canister.chunk_store.__delitem__(b"f"),
        lambda: canister.chunk_store.clear(),
        lambda: canister.snapshots.__setitem__(b"s", snapshot),
        lambda: canister.snapshots.popitem(),
        lambda: canister.history.append({"change": 1}),
        lambda: canister.history.extend([{"change": 2}]),
        lambda: canister.history.pop(0),
        lambda: canister.history.__delitem__(0),
    ]
    for index, step in enumerate(steps):
        step()
        assert table.take_dirty() == {CID}, index


def test_settings_cannot_change_in_place() -> None:
    canister = _canister()
    with pytest.raises(dataclasses.FrozenInstanceError):
        canister.settings.freezing_threshold = 1  # type: ignore[misc]


def test_removing_or_replacing_a_canister_marks_its_id() -> None:
    table, canister = _tracked()
    del table[CID]
    assert table.take_dirty() == {CID}
    assert canister.tracker is None
    canister.cycles = 1
    assert table.take_dirty() == set()  # no longer ours
    table[CID] = canister
    replacement = _canister()
    table[CID] = replacement
    assert canister.tracker is None
    assert replacement.tracker is table
    assert table.pop(CID) is replacement
    assert table.take_dirty() == {CID}


def test_an_execution_marks_the_canister_through_its_sandbox(engine: WasmEngine) -> None:
    replica = Replica(engine=engine, clock=Clock(frozen_at_ns=1_700_000_000_000_000_000))
    wasm = (WASM / "counter.wasm").read_bytes()
    canister = _canister()
    canister.wasm_module = wasm
    canister.sandbox = CanisterSandbox.load(engine, wasm)
    replica.canisters[CID] = canister
    system = replica.system_state(canister)
    canister.sandbox.execute(
        MessageContext(kind=EntryKind.INIT, arg=EMPTY_ARGS, caller=USER), system, 10**10
    )
    replica.canisters.take_dirty()
    # No field of the canister is assigned here: only the sandbox commits.
    canister.sandbox.execute(
        MessageContext(kind=EntryKind.UPDATE, method="inc", arg=EMPTY_ARGS, caller=USER),
        system,
        10**10,
    )
    assert replica.canisters.take_dirty() == {CID}
    canister.sandbox.execute(
        MessageContext(kind=EntryKind.QUERY, method="get", arg=EMPTY_ARGS, caller=USER),
        system,
        10**10,
    )
    assert replica.canisters.take_dirty() == set()  # a query keeps nothing


def test_timers_come_off_a_heap_in_deadline_order() -> None:
    table = CanisterTable()
    a, b = _canister(), CanisterState(b"\x02", Settings(controllers=[]), cycles=0)
    table[a.canister_id], table[b.canister_id] = a, b
    assert table.next_timer_ns() is None
    a.global_timer, b.global_timer = 300, 200
    assert table.next_timer_ns() == 200
    b.global_timer = 500  # re-armed: the entry at 200 is stale
    assert table.next_timer_ns() == 300
    assert table.due_timers(299) == []
    assert table.due_timers(400) == [a]
    assert table.due_timers(400) == [a]  # not fired (say, stopped): due again
    a.global_timer = 0  # fired
    assert table.due_timers(1000) == [b]
    b.global_timer = 0
    assert table.next_timer_ns() is None
    del table[a.canister_id]
    a.global_timer = 10  # a removed canister's timer is not ours
    assert table.due_timers(1000) == []


def test_re_arming_a_timer_does_not_grow_the_heap_without_bound() -> None:
    table, canister = _tracked()
    for deadline in range(1, 10_000):
        canister.global_timer = deadline
    assert len(table._timers) <= 2 * len(table) + 1024 + 1
    assert table.next_timer_ns() == 9_999


def test_a_loaded_canister_with_a_timer_is_on_the_heap() -> None:
    canister = _canister()
    canister.global_timer = 42
    table = CanisterTable({CID: canister})
    assert table.next_timer_ns() == 42


def test_check_mode_raises_when_a_change_bypasses_the_marking(
    tmp_path: Path, engine: WasmEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALNET_CHECK_DIRTY", "1")
    replica = Replica(engine=engine, clock=Clock(frozen_at_ns=1_700_000_000_000_000_000))
    replica.canisters[CID] = _canister()
    journal = Journal(replica, tmp_path / "state", {})
    try:
        replica.canisters[CID].cycles += 1
        journal.commit()  # marked: fine
        object.__setattr__(replica.canisters[CID], "cycles", 7)  # behind the tracker's back
        with pytest.raises(DirtyMissed, match="without being marked dirty"):
            journal.commit()
    finally:
        journal.close()
