"""Parsing and instrumenting canister Wasm binaries (localnet.wasm_module)."""

from __future__ import annotations

import gzip

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st
from sandbox_util import canister_wasm, wat

from localnet import wasm_module as wm
from localnet.wasm_module import InvalidModule


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.wasm_memory64 = True
    return wasmtime.Engine(config)


def test_parse_a_motoko_canister() -> None:
    info = wm.parse(canister_wasm("sysapi"))
    assert {i.module for i in info.imports} == {"ic0"}
    assert any(i.name == "call_new" for i in info.imports)
    assert info.memory64
    assert info.memories == 1
    assert info.tables == 1
    assert info.start is not None
    assert len(info.mutable_globals) > 10
    assert "icp:private enhanced-orthogonal-persistence" in info.custom_sections
    assert b"service" in info.custom_sections["icp:private candid:service"]
    names = info.export_names()
    assert "canister_update inc" in names
    assert "canister_composite_query peek" in names


def test_instrument_changes_only_exports_and_start() -> None:
    raw = canister_wasm("sysapi")
    info = wm.parse(raw)
    out = wm.instrument(raw, info)
    old = {s.id: raw[s.start : s.end] for s in wm._sections(raw) if s.id != 0}
    new = {s.id: out[s.start : s.end] for s in wm._sections(out) if s.id != 0}
    assert set(old) - set(new) == {wm.SECTION_START}
    for sid, content in old.items():
        if sid not in (wm.SECTION_EXPORT, wm.SECTION_START):
            assert new[sid] == content
    customs = [raw[s.start : s.end] for s in wm._sections(raw) if s.id == 0]
    assert customs == [out[s.start : s.end] for s in wm._sections(out) if s.id == 0]
    # The original export entries keep their bytes, the new ones follow.
    again = wm.parse(out)
    assert again.exports[: len(info.exports)] == info.exports
    added = {e.name: e for e in again.exports[len(info.exports) :]}
    assert set(added) == {
        *(f"__localnet_g{g.index}" for g in info.mutable_globals),
        wm.MEMORY_EXPORT,
        wm.TABLE_EXPORT,
        wm.START_EXPORT,
    }
    assert added[wm.START_EXPORT].index == info.start
    assert again.start is None
    wasmtime.Module.validate(_engine(), out)


def test_instrument_creates_an_export_section_and_counts_imported_globals() -> None:
    raw = wat(
        """
        (module
          (import "env" "imported" (global (mut i32)))
          (import "env" "constant" (global i64))
          (global (mut i64) (i64.const 42))
          (global f32 (f32.const 1))
          (global (mut f64) (f64.const 2.5))
          (func (result i64) (global.get 2)))
        """
    )
    info = wm.parse(raw)
    assert [(g.index, g.valtype, g.mutable) for g in info.globals] == [
        (0, "i32", True), (1, "i64", False), (2, "i64", True), (3, "f32", False), (4, "f64", True),
    ]  # fmt: skip
    assert info.exports == []
    out = wm.instrument(raw, info)
    module = wasmtime.Module(_engine(), out)
    assert [e.name for e in module.exports] == ["__localnet_g0", "__localnet_g2", "__localnet_g4"]
    store = wasmtime.Store(_engine())
    imported = wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i32(), True), 5)
    constant = wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i64(), False), 6)
    instance = wasmtime.Instance(store, wasmtime.Module(store.engine, out), [imported, constant])
    values = instance.exports(store)
    names = ("__localnet_g0", "__localnet_g2", "__localnet_g4")
    assert [values[n].value(store) for n in names] == [5, 42, 2.5]


def test_a_module_needing_nothing_is_returned_unchanged() -> None:
    raw = wat("(module (global i32 (i32.const 1)) (func))")
    assert wm.instrument(raw, wm.parse(raw)) == raw


def test_reserved_export_names_are_refused() -> None:
    raw = wat('(module (global $g (mut i32) (i32.const 0)) (export "__localnet_g0" (global $g)))')
    with pytest.raises(InvalidModule, match="reserved"):
        wm.instrument(raw, wm.parse(raw))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x7fELF....", "not a Wasm module"),
        (b"\x00asm\x02\x00\x00\x00", "version"),
        (b"\x00asm\x01\x00\x00\x00\x07\x10\x01", "runs past the end"),
        (b"\x00asm\x01\x00\x00\x00\x06\x04\x01\x7f\x01\x99", "constant expression"),
        (b"\x00asm\x01\x00\x00\x00\x02\x03\x01\x01\xff", "not UTF-8"),
    ],
)
def test_malformed_modules(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidModule, match=problem):
        wm.parse(data)


def test_gzip_modules() -> None:
    raw = canister_wasm("rollback")
    assert wm.decompress(gzip.compress(raw)) == raw
    assert wm.decompress(raw) is raw
    with pytest.raises(InvalidModule, match="gzip"):
        wm.decompress(gzip.compress(raw)[:100])


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_leb128_round_trip(value: int) -> None:
    encoded = wm.uleb128(value)
    reader = wm._Reader(encoded)
    assert reader.uleb() == value
    assert reader.at_end()


def test_active_data_segments_skip_passive_ones_and_read_64_bit_offsets() -> None:
    module32 = wat(
        '(module (memory 1) (data (i32.const 7) "ab") (data "passive") (data (i32.const 100) "c"))'
    )
    assert wm.parse(module32).data_segments == [(7, b"ab"), (100, b"c")]
    module64 = wat('(module (memory i64 1) (data (i64.const 70000) "xyz"))')
    assert wm.parse(module64).data_segments == [(70000, b"xyz")]
    assert wm.parse(wat("(module)")).data_segments == []
