"""Restores and archive round trips with the engine on localnet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import (
    DEMO_WASM,
    World,
    ref,
    run_archive_export,
    run_archive_import,
    run_backup,
    run_restore,
    run_verify,
    world,
)

from canister_iface.principal import Principal
from replicator.errors import EXIT_USAGE, UsageError
from replicator.job import ArchiveRef

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_restore_brings_back_the_backed_up_state(w: World, via: str) -> None:
    demo = await w.demo(mib=2)
    before = await w.fingerprint(demo)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo), ref(backup), via=via)
        assert backed.ok, backed.error
        await w.add_user(demo, "mallory")  # the state moves on after the backup
        assert await w.fingerprint(demo) != before
        restored = await run_restore(engine, ref(backup), ref(demo), via=via)
    assert restored.ok, restored.error
    assert restored.digest == backed.digest
    assert restored.target_digest == backed.digest
    assert await w.fingerprint(demo) == before


async def test_archive_export_and_import_round_trip(w: World, tmp_path: Path) -> None:
    demo = await w.demo(mib=2)
    before = await w.fingerprint(demo)
    path = tmp_path / "demo.icra"
    other = await w.demo(mib=1, seed=7)
    async with w.engine() as engine:
        exported = await run_archive_export(engine, ref(demo), path)
        assert exported.ok, exported.error
        assert exported.target_digest == exported.digest
        imported = await run_archive_import(engine, path, ref(other))
        assert imported.ok, imported.error
        checked = await run_verify(engine, ArchiveRef(str(path)), ref(other))
    assert imported.digest == exported.digest
    assert await w.fingerprint(other) == before
    assert checked.ok, checked.error
    assert checked.target_digest == exported.digest


async def test_restore_into_a_new_canister_with_the_original_module(w: World) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo))
        assert backed.ok, backed.error
        assert backed.job.target is not None
        restored = await run_restore(engine, backed.job.target, new_canister=True)  # type: ignore[arg-type]
    assert restored.ok, restored.error
    assert restored.job.target not in (ref(demo), backed.job.target)
    fresh = Principal.from_text(restored.job.target.canister_id)  # type: ignore[union-attr]
    assert await w.fingerprint(fresh) == before
    assert await w.agent.controllers(fresh) == [w.me.principal]


async def test_restore_into_a_new_canister_from_a_wasm_file(w: World, tmp_path: Path) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    wasm = tmp_path / "demo_app.wasm"
    wasm.write_bytes(DEMO_WASM)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo))
        assert backed.job.target is not None
        restored = await run_restore(
            engine,
            backed.job.target,  # type: ignore[arg-type]
            new_canister=True,
            wasm=wasm,
        )
    assert restored.ok, restored.error
    fresh = Principal.from_text(restored.job.target.canister_id)  # type: ignore[union-attr]
    assert await w.fingerprint(fresh) == before


async def test_restore_of_a_snapshot_the_backup_does_not_hold_is_a_usage_error(w: World) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        assert (await run_backup(engine, ref(demo), ref(backup))).ok
        with pytest.raises(UsageError, match="holds no snapshot 7"):
            await run_restore(engine, ref(backup), snapshot=7)
        outcome = await run_restore(engine, ref(backup), ref(demo), snapshot=7)
    assert outcome.exit_code == EXIT_USAGE
    assert "it holds: 1" in (outcome.error or "")
    assert await w.fingerprint(demo) == before


async def test_stepwise_export_and_restore_are_waited_for(w: World) -> None:
    demo = await w.demo(mib=2, step_bytes=256 * 1024)
    before = await w.fingerprint(demo)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo), ref(backup))
        assert backed.ok, backed.error
        await w.add_user(demo, "erin")
        restored = await run_restore(engine, ref(backup), ref(demo))
    assert restored.ok, restored.error
    assert any("is preparing snapshot" in note for note in backed.notes)
    assert any("rebuilding its state" in note for note in restored.notes)
    assert await w.fingerprint(demo) == before
