"""Atomic executions: dirty-page rollback agrees with the full-copy reference.

The same random sequence of messages runs on two sandboxes of the
``rollback`` canister, one rolling back by dirty-page tracking and one by full
copies. Messages mutate heap collections, write and grow a Region (stable
memory), allocate enough to grow the Wasm memory, and then commit, trap or
spin until the instruction limit. After every message both sandboxes must
hold identical heap, stable memory and globals, and the canister's own view
of its state must equal a Python model that only applies committed messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from icp_candid.candid import Types
from sandbox_util import candid, decoded, load_installed, run

from localnet.errors import ErrorCode
from localnet.execution import EntryKind, ExecResult
from localnet.sandbox import CanisterSandbox, WasmEngine

PAGE = 65536
MAX_REGION_PAGES = 4
OPS = 240
SPIN_LIMIT = 20_000_000

OpType = Types.Variant(
    {
        "put": Types.Record({"key": Types.Nat, "size": Types.Nat, "fill": Types.Nat8}),
        "remove": Types.Nat,
        "regionWrite": Types.Record({"offset": Types.Nat64, "size": Types.Nat, "fill": Types.Nat8}),
        "regionGrow": Types.Nat64,
        "hold": Types.Record({"size": Types.Nat, "fill": Types.Nat8}),
        "release": Types.Null,
    }
)
EndingType = Types.Variant({"commit": Types.Null, "trap": Types.Null, "spin": Types.Null})
SummaryType = Types.Record(
    {
        "applied": Types.Nat,
        "entries": Types.Vec(Types.Tuple(Types.Nat, Types.Nat, Types.Nat8)),
        "regionPages": Types.Nat64,
        "held": Types.Vec(Types.Tuple(Types.Nat, Types.Nat8)),
    }
)


@dataclass
class Model:
    """What the canister's state must be: only committed messages count."""

    applied: int = 0
    entries: dict[int, tuple[int, int]] = field(default_factory=dict)
    region: bytearray = field(default_factory=bytearray)
    held: list[tuple[int, int]] = field(default_factory=list)

    def copy(self) -> Model:
        return Model(self.applied, dict(self.entries), bytearray(self.region), list(self.held))

    def apply(self, op: dict[str, Any]) -> bool:
        """Apply one op; False if the canister traps on it."""
        ((name, v),) = op.items()
        if name == "put":
            self.entries[v["key"]] = (v["size"], v["fill"])
        elif name == "remove":
            self.entries.pop(v, None)
        elif name == "regionWrite":
            if v["offset"] + v["size"] > len(self.region):
                return False
            self.region[v["offset"] : v["offset"] + v["size"]] = bytes([v["fill"]]) * v["size"]
        elif name == "regionGrow":
            self.region += bytes(v * PAGE)
        elif name == "hold":
            self.held.append((v["size"], v["fill"]))
        else:
            self.held = []
        return True


def random_op(rng: random.Random, model: Model) -> dict[str, Any]:
    kind = rng.choices(
        ["put", "remove", "regionWrite", "regionGrow", "hold", "release"],
        weights=[35, 12, 25, 5, 18, 5],
    )[0]
    fill = rng.randrange(1, 256)
    if kind == "put":
        return {"put": {"key": rng.randrange(40), "size": rng.randrange(3000), "fill": fill}}
    if kind == "remove":
        return {"remove": rng.randrange(40)}
    if kind == "regionWrite":
        # Mostly in bounds; sometimes past the end, which traps in the canister.
        span = max(len(model.region), PAGE)
        offset = rng.randrange(span)
        size = rng.randrange(1, 9000)
        return {"regionWrite": {"offset": offset, "size": size, "fill": fill}}
    if kind == "regionGrow" and len(model.region) < MAX_REGION_PAGES * PAGE:
        return {"regionGrow": 1}
    if kind == "hold":
        return {"hold": {"size": rng.randrange(1_000, 60_000), "fill": fill}}
    return {"release": None}


def apply_message(sandbox: CanisterSandbox, ops: list[dict[str, Any]], ending: str) -> ExecResult:
    arg = candid((Types.Vec(OpType), ops), (EndingType, {ending: None}))
    limit = SPIN_LIMIT if ending == "spin" else 2_000_000_000
    return run(sandbox, EntryKind.UPDATE, "apply", arg, limit=limit)


def check_against_model(sandbox: CanisterSandbox, model: Model) -> None:
    (summary,) = decoded(run(sandbox, EntryKind.QUERY, "summary", candid()), SummaryType)
    assert summary["applied"] == model.applied
    assert sorted(tuple(e) for e in summary["entries"]) == sorted(
        (k, size, fill if size else 0) for k, (size, fill) in model.entries.items()
    )
    assert summary["regionPages"] == len(model.region) // PAGE
    assert [tuple(h) for h in summary["held"]] == model.held
    if model.region:
        arg = candid((Types.Nat64, 0), (Types.Nat, len(model.region)))
        (content,) = decoded(
            run(sandbox, EntryKind.QUERY, "regionRead", arg), Types.Vec(Types.Nat8)
        )
        assert bytes(content) == bytes(model.region)


def assert_same_state(a: CanisterSandbox, b: CanisterSandbox) -> None:
    ia, ib = a.capture(), b.capture()
    assert a.heap_size == b.heap_size
    assert ia.heap == ib.heap, "heaps differ between dirty tracking and the full-copy reference"
    assert ia.stable == ib.stable
    assert ia.globals == ib.globals


def assert_same_small_state(a: CanisterSandbox, b: CanisterSandbox) -> None:
    """Like assert_same_state without the heap bytes (cheap enough for every op)."""
    assert a.heap_size == b.heap_size
    assert a.stable_size == b.stable_size
    assert a.global_values() == b.global_values()


def step(
    rng: random.Random, pair: tuple[CanisterSandbox, CanisterSandbox], model: Model
) -> tuple[Model, str]:
    ops = [random_op(rng, model) for _ in range(rng.randrange(1, 5))]
    ending = rng.choices(["commit", "trap", "spin"], weights=[55, 30, 15])[0]
    expected = model.copy()
    expected.applied += 1
    ok = all(expected.apply(op) for op in ops) and ending == "commit"
    dirty_result, copy_result = (apply_message(sb, ops, ending) for sb in pair)
    assert dirty_result == copy_result
    if ok:
        assert decoded(dirty_result, Types.Nat) == [expected.applied]
        return expected, "commit"
    assert dirty_result.trapped
    assert dirty_result.response is None
    assert not dirty_result.calls
    if ending == "spin" and all(model.copy().apply(op) for op in ops):
        assert dirty_result.error_code == ErrorCode.CANISTER_INSTRUCTION_LIMIT_EXCEEDED
    return model, "trap"


@pytest.mark.usefixtures("needs_dirty_tracking")
def test_dirty_rollback_matches_full_copy_reference(engine: WasmEngine) -> None:
    rng = random.Random(20261122)
    pair = (
        load_installed(engine, "rollback", rollback="dirty"),
        load_installed(engine, "rollback", rollback="copy"),
    )
    assert [sb.rollback_mode for sb in pair] == ["dirty", "copy"]
    model = Model()
    outcomes = {"commit": 0, "trap": 0, "grown": 0}
    try:
        for i in range(OPS):
            before = pair[0].heap_size
            model, outcome = step(rng, pair, model)
            outcomes[outcome] += 1
            outcomes["grown"] += pair[0].heap_size > before
            # Copying two heaps after every op would dominate the test's time;
            # a divergence persists, so every third op still catches it.
            if i % 3 == 0:
                assert_same_state(*pair)
            else:
                assert_same_small_state(*pair)
            if i % 10 == 0:
                # Queries run on both: a query that grows the Wasm memory leaves
                # it grown (zeroed), which changes later instruction counts.
                for sb in pair:
                    check_against_model(sb, model)
    finally:
        for sb in pair:
            sb.close()
    # The sequence must really have exercised all paths.
    assert outcomes["commit"] > OPS // 4
    assert outcomes["trap"] > OPS // 4
    assert outcomes["grown"] >= 3


@pytest.mark.usefixtures("needs_dirty_tracking")
def test_trap_after_memory_grow_restores_size_and_content(engine: WasmEngine) -> None:
    sb = load_installed(engine, "rollback", rollback="dirty")
    try:
        before = sb.capture()
        big = [{"hold": {"size": 3_000_000, "fill": 3}}]
        assert apply_message(sb, big, "trap").trapped
        after = sb.capture()
        assert sb.heap_size == len(before.heap)
        assert after == before
        assert decoded(apply_message(sb, [{"put": {"key": 1, "size": 5, "fill": 1}}], "commit"),
                       Types.Nat) == [1]  # fmt: skip
    finally:
        sb.close()


@pytest.mark.parametrize("mode", ["copy", "dirty"])
def test_queries_never_persist(engine: WasmEngine, mode: str) -> None:
    if mode == "dirty" and __import__("localnet.dirty").dirty.probe() is not None:
        pytest.skip("dirty-page tracking unavailable")
    sb = load_installed(engine, "rollback", rollback=mode)
    try:
        apply_message(sb, [{"put": {"key": 3, "size": 10, "fill": 4}}], "commit")
        before = sb.capture()
        for _ in range(3):
            # The query mutates the heap (and allocates a megabyte) and replies.
            assert decoded(run(sb, EntryKind.QUERY, "mutateInQuery", candid()), Types.Nat) == [1001]
            assert sb.capture() == before
        model = Model(applied=1, entries={3: (10, 4)})
        check_against_model(sb, model)
    finally:
        sb.close()


@pytest.mark.usefixtures("needs_dirty_tracking")
def test_dirty_rollback_copies_only_written_pages(engine: WasmEngine) -> None:
    sb = load_installed(engine, "rollback", rollback="dirty")
    try:
        for _ in range(8):  # a heap of some tens of MiB
            apply_message(sb, [{"hold": {"size": 1_000_000, "fill": 1}}], "commit")
        heap = sb.heap_size
        assert heap > 16 * 1024 * 1024
        result = apply_message(sb, [{"put": {"key": 1, "size": 100, "fill": 1}}], "trap")
        assert result.trapped
        assert 0 < sb.last_copied_bytes < heap // 16
        run(sb, EntryKind.QUERY, "summary", candid())
        assert sb.last_copied_bytes < heap // 16
    finally:
        sb.close()
