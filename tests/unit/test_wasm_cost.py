"""benchmarks/wasm_cost.py: one pass of a loop on wasmtime's and the IC's tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from benchmarks.wasm_cost import WasmCostError, ic_cost, loop_cost

# Per operator (fuel, IC): get/const/add/set/lt_u 1/1, i64.load 1/2, drop 0/1,
# if and br_if 1/2, nop 0/1, call 1/5; block/loop/else/end free on both.
LOOP = """
(module
  (memory i64 1)
  (func $callee)
  (func $hot (param $n i64) (local $i i64)
    i64.const 99 drop
    (loop $l
      local.get $i i64.const 1 i64.add local.set $i
      local.get $i i64.load drop
      local.get $i local.get $n i64.lt_u
      (if (then nop) (else (block unreachable) unreachable))
      call $callee
      local.get $i local.get $n i64.lt_u br_if $l)
    i64.const 7 drop)
  (func $flat i64.const 1 drop))
"""


def _wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(LOOP))


def test_one_pass_takes_then_arms_and_stops_at_the_loop_end() -> None:
    cost = loop_cost(_wasm(), "hot")
    # fuel: 4 + (get, load) 2 + 3 + if 1 + call 1 + 3 + br_if 1
    assert cost.fuel == 15
    # IC: 4 + (get 1, load 2, drop 1) + 3 + if 2 + nop 1 + call 5 + 3 + br_if 2
    assert cost.ic == 24
    assert cost.calls == 1


def test_ic_table_weights() -> None:
    assert [ic_cost(op) for op in (0x02, 0x03, 0x05, 0x0B)] == [0, 0, 0, 0]
    assert ic_cost(0x29) == 2  # i64.load in a Wasm64 module
    assert ic_cost(0x10) == 5
    assert ic_cost(0x11) == 10
    assert ic_cost(0x04) == 2
    assert ic_cost(0x0D) == 2
    assert ic_cost(0x7F) == 10  # i64.div_s
    assert ic_cost(0x7C) == 1  # i64.add


def test_bad_input_says_what_is_wrong() -> None:
    with pytest.raises(WasmCostError, match="not a Wasm module"):
        loop_cost(b"nope", "hot")
    with pytest.raises(WasmCostError, match="no function named 'missing'"):
        loop_cost(_wasm(), "missing")
    with pytest.raises(WasmCostError, match="has no loop"):
        loop_cost(_wasm(), "flat")


def test_reads_the_motoko_sha256_canister() -> None:
    wasm = (Path(__file__).parents[1] / "canisters" / "wasm" / "sha256.wasm").read_bytes()
    blob = loop_cost(wasm, "compressBlob")
    # The Blob loop reads bytes inline (no calls) and loads more than it
    # branches: the IC's table charges it more than localnet's fuel.
    assert blob.calls == 0
    assert blob.ic > blob.fuel > 64 * 64
