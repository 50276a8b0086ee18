"""--state-dir at fleet scale: sparse memories on disk and in the journal, each
module stored once, canisters loaded asleep, and format 1 directories still read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import cbor2
import pytest
from icp_candid import Types, decode, encode
from test_sandbox_rollback import EndingType, OpType

from canister_iface.agent import Agent
from localnet import LocalNet, persist
from localnet.persist import _Sparse

pytestmark = pytest.mark.integration

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
EMPTY = encode([])
KiB = 1024


def nat(reply: bytes) -> int:
    value = decode(reply, [Types.Nat])[0]["value"]
    assert isinstance(value, int)
    return value


def test_sparse_bytes_patch_like_a_bytearray() -> None:
    page = _Sparse.PAGE
    sparse, reference = _Sparse(), bytearray()
    steps = [
        (3 * page, [(10, b"abc"), (page - 1, b"xy")]),  # across a page boundary
        (5 * page, [(4 * page, b"z" * page)]),  # a whole page
        (2 * page, []),  # shrinking drops the pages beyond
        (2 * page + 100, [(2 * page + 50, b"tail")]),  # a partial last page
        (4 * page, []),  # growing back reads zeros where the tail was cut
    ]
    for size, pieces in steps:
        sparse.patch(size, pieces)
        del reference[size:]
        reference.extend(bytes(size - len(reference)))
        for offset, data in pieces:
            reference[offset : offset + len(data)] = data
        rebuilt = bytearray(size)
        for offset, data in sparse.nonzero():
            rebuilt[offset : offset + len(data)] = data
        assert rebuilt == reference


def test_sparse_files_read_back_only_their_data(tmp_path: Path) -> None:
    page = _Sparse.PAGE
    path = tmp_path / "heap.bin"
    pages = [(0, b"a" * page), (100 * page, b"b" * page)]
    persist._write_sparse(path, 1024 * page, pages)
    assert path.stat().st_size == 1024 * page
    assert path.stat().st_blocks * 512 <= 64 * page  # holes take no blocks
    assert _Sparse.read(path).nonzero() == pages


async def install_counters(net: LocalNet, count: int) -> list[bytes]:
    canisters = []
    for _ in range(count):
        canisters.append(await net.create_canister())
        await net.install_code(canisters[-1], COUNTER)
    return canisters


async def test_a_checkpoint_keeps_memories_sparse_and_each_module_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with LocalNet(state_dir=state) as net:
        canisters = await install_counters(net, 5)
        journal = (state / persist.JOURNAL).stat().st_size
        # Five 5 MiB heaps, journaled as their non-zero pages.
        assert journal < 5 * 200 * KiB
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await agent.update(canisters[2], "inc", EMPTY)
    assert len(list((state / "modules").iterdir())) == 1
    disk = sum(p.stat().st_blocks * 512 for p in state.rglob("*") if p.is_file())
    assert disk < 5 * 300 * KiB + len(COUNTER)
    async with LocalNet(state_dir=state) as net:
        assert net.engine.residency.resident == 0
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            counts = [nat(await agent.query(c, "get", EMPTY)) for c in canisters]
        assert counts == [0, 0, 1, 0, 0]


async def test_the_journal_may_grow_to_twice_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint rewrites every canister: a fixed journal limit made a
    # fleet's checkpoints quadratic in its size.
    state, saved = tmp_path / "state", []
    real_save = persist.save

    def save(*args: Any) -> int:
        saved.append(real_save(*args))
        return saved[-1]

    monkeypatch.setattr(persist, "JOURNAL_LIMIT", 1)  # the floor alone: every commit
    monkeypatch.setattr(persist, "save", save)
    async with LocalNet(state_dir=state) as net:
        canisters = await install_counters(net, 2)
        assert saved[-1] >= len(COUNTER)  # the module, and the memories' pages
        journal = net._journal
        assert journal is not None
        assert journal.limit == persist.JOURNAL_FACTOR * saved[-1]
        checkpoints = len(saved)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            for _ in range(3):
                await agent.update(canisters[1], "inc", EMPTY)
        assert len(saved) == checkpoints  # journaled, not checkpointed
        assert (state / persist.JOURNAL).stat().st_size > 0
    async with (
        LocalNet(state_dir=state) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        assert [nat(await agent.query(c, "get", EMPTY)) for c in canisters] == [0, 3]


async def test_a_format_1_state_dir_is_still_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with LocalNet(state_dir=state) as net:
        canisters = await install_counters(net, 2)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await agent.update(canisters[1], "inc", EMPTY)
    # Rewrite the checkpoint the way format 1 laid it out: a module per
    # canister, memories written in full, then one format 1 journal record.
    for folder in (state / "canisters").iterdir():
        digest = (folder / "module.sha256").read_text()
        shutil.copy(state / "modules" / f"{digest}.wasm", folder / "module.wasm")
        (folder / "module.sha256").unlink()
        for name in ("heap.bin", "stable.bin"):
            (folder / name).write_bytes((folder / name).read_bytes())
    shutil.rmtree(state / "modules")
    meta = cbor2.loads((state / "localnet.cbor").read_bytes())
    (state / "localnet.cbor").write_bytes(cbor2.dumps({**meta, "format": 1}))
    async with (
        LocalNet(state_dir=state) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        assert [nat(await agent.query(c, "get", EMPTY)) for c in canisters] == [0, 1]
        assert nat(await agent.update(canisters[0], "inc", EMPTY)) == 1
    assert cbor2.loads((state / "localnet.cbor").read_bytes())["format"] == persist.FORMAT_VERSION


def as_format_1(memory: dict[str, Any] | None) -> dict[str, Any] | None:
    """A format 2 memory entry as format 1 wrote it: full memories as one piece."""
    if memory is None:
        return None
    out = dict(memory)
    for part in ("heap", "stable"):
        if out.pop(f"{part}_full"):
            whole = bytearray(out[f"{part}_size"])
            for offset, data in out[part]:
                whole[offset : offset + len(data)] = data
            out[part] = [(0, bytes(whole))]
    return out


async def test_a_format_1_journal_is_still_replayed(tmp_path: Path) -> None:
    state, crashed = tmp_path / "state", tmp_path / "crashed"
    async with LocalNet(state_dir=state) as net:
        (canister,) = await install_counters(net, 1)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await agent.update(canister, "inc", EMPTY)
        net._journal.close()  # type: ignore[union-attr]  # a crash: the journal stays
        shutil.copytree(state, crashed)
    records = persist._replay(crashed / persist.JOURNAL)
    assert any(
        "module" in entry and (entry.get("memory") or {}).get("heap_full")
        for record in records
        for entry in record["canisters"]
    )
    raw = b""
    for record in records:
        for entry in record["canisters"]:
            if "memory" in entry:
                entry["memory"] = as_format_1(entry["memory"])
        payload = cbor2.dumps(record)
        raw += persist._HEADER.pack(persist._MAGIC, len(payload), persist._digest(payload))
        raw += payload
    (crashed / persist.JOURNAL).write_bytes(raw)
    async with (
        LocalNet(state_dir=crashed) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        assert nat(await agent.query(canister, "get", EMPTY)) == 1
        assert nat(await agent.update(canister, "inc", EMPTY)) == 2


async def test_a_newer_format_is_refused_with_a_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "localnet.cbor").write_bytes(cbor2.dumps({"format": 99}))
    with pytest.raises(persist.StateDirError, match="incompatible localnet"):
        LocalNet(state_dir=state)


def test_holes_are_reported_where_the_file_system_supports_them(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with path.open("wb") as f:
        f.seek(1 << 20)
        f.write(b"x")
    with path.open("rb") as f:
        extents = persist._data_extents(f.fileno(), os.fstat(f.fileno()).st_size)
    assert extents[-1][1] == (1 << 20) + 1
    assert sum(end - start for start, end in extents) <= (1 << 20) + 1


async def test_a_reinstall_replayed_from_the_journal_leaves_nothing_of_the_old_heap(
    tmp_path: Path,
) -> None:
    """Full memories are journaled as their non-zero pages: replaying one must
    start from zeros, or pages the old heap had and the new one zeroed survive."""
    state, crashed = tmp_path / "state", tmp_path / "crashed"
    rollback = (WASM / "rollback.wasm").read_bytes()
    held = [{"hold": {"size": 300_000, "fill": 7}}]
    arg = encode(
        [
            {"type": Types.Vec(OpType), "value": held},
            {"type": EndingType, "value": {"commit": None}},
        ]
    )
    async with LocalNet(state_dir=state) as net:
        canister = await net.create_canister()
        await net.install_code(canister, rollback)
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            await agent.update(canister, "apply", arg)
        await net.install_code(canister, rollback, mode="reinstall")
        expected = net.replica.canisters[canister].sandbox.capture()  # type: ignore[union-attr]
        assert b"\x07" * 4096 not in expected.heap
        net._journal.close()  # type: ignore[union-attr]  # a crash: the journal stays
        shutil.copytree(state, crashed)
    async with LocalNet(state_dir=crashed) as net:
        sandbox = net.replica.canisters[canister].sandbox
        assert sandbox is not None
        assert sandbox.capture() == expected
