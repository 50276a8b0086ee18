"""Archive files and verify jobs with the engine on localnet."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import (
    World,
    ref,
    run_archive_export,
    run_archive_import,
    run_backup,
    run_restore,
    run_verify,
    world,
)

from replicator.archive import ArchiveReader
from replicator.errors import EXIT_INTEGRITY, EXIT_USAGE, UsageError
from replicator.job import ArchiveRef, Job, Phase
from replicator.progress import RecordingProgress
from replicator.settings import Transfer

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


class _After(RecordingProgress):
    """Says when ``threshold`` bytes were acknowledged."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.reached = asyncio.Event()

    def advanced(self, job: Job, nbytes: int) -> None:
        super().advanced(job, nbytes)
        if self.bytes_advanced() >= self.threshold:
            self.reached.set()


async def test_an_interrupted_export_resumes_the_partial_file(w: World, tmp_path: Path) -> None:
    demo = await w.demo(mib=2, chunk_size=64 * 1024)
    path = tmp_path / "demo.icra"
    w.progress = after = _After(256 * 1024)
    small = Transfer(max_size=128 * 1024)
    w.net.faults.set(latency_s={"query": 0.02})
    engine = w.engine(concurrency=1, transfer=small)
    task = asyncio.create_task(run_archive_export(engine, ref(demo), path))
    await after.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    w.net.faults.reset()
    assert not path.exists()  # the archive's own name only ever holds a complete archive
    partial = path.with_name("demo.icra.partial")
    assert partial.stat().st_size > 0
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    async with w.engine(transfer=small) as again:
        outcome = await run_archive_export(again, ref(demo), path)
    assert outcome.ok, outcome.error
    assert outcome.resumed
    assert outcome.chunks_skipped > 0
    assert any("resuming" in note for note in outcome.notes)
    with ArchiveReader(path) as reader:
        assert reader.verify() == outcome.digest
    assert not partial.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_re_running_an_export_is_nothing_to_do_or_a_refresh(w: World, tmp_path: Path) -> None:
    """The same file again: nothing to do while the source is unchanged, replaced once it moved."""
    demo = await w.demo(mib=1)
    path = tmp_path / "demo.icra"
    async with w.engine() as engine:
        first = await run_archive_export(engine, ref(demo), path)
        assert first.ok, first.error
        again = await run_archive_export(engine, ref(demo), path)
        assert again.ok, again.error
        assert again.bytes_copied == 0
        assert any("nothing to write" in n for n in again.notes), again.notes
        await w.add_user(demo, "erin")  # the source moves on
        refreshed = await run_archive_export(engine, ref(demo), path)
        assert refreshed.ok, refreshed.error
    assert refreshed.digest != first.digest
    with ArchiveReader(path) as reader:
        assert reader.verify() == refreshed.digest
    names = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert [n for n in names if "demo" in n] == ["demo.icra"]


async def test_an_export_template_names_a_file_per_image(w: World, tmp_path: Path) -> None:
    demo = await w.demo(mib=1)
    template = str(tmp_path / "{canister}-{snapshot}.icra")
    async with w.engine() as engine:
        first = await run_archive_export(engine, ref(demo), template)
        await w.add_user(demo, "frank")
        second = await run_archive_export(engine, ref(demo), template)
        with pytest.raises(UsageError, match=r"\{canister\}, \{snapshot\}") as typo:
            await run_archive_export(engine, ref(demo), str(tmp_path / "{canistr}.icra"))
    assert first.ok, first.error
    assert second.ok, second.error
    files = await asyncio.to_thread(lambda: sorted(tmp_path.glob(f"{demo.to_text()}-*.icra")))
    assert len(files) == 2
    digests = set()
    for file in files:
        with ArchiveReader(file) as reader:
            digests.add(reader.verify())
    assert digests == {first.digest, second.digest}
    assert "canistr" in str(typo.value)  # refused before anything ran
    assert len(await engine.store.list_jobs()) == 2


async def test_an_export_never_replaces_another_canisters_archive_or_a_foreign_file(
    w: World, tmp_path: Path
) -> None:
    demo, other = await w.demo(mib=1), await w.demo(mib=1, seed=5)
    path, foreign = tmp_path / "demo.icra", tmp_path / "notes.txt"
    foreign.write_text("my notes")
    async with w.engine() as engine:
        assert (await run_archive_export(engine, ref(demo), path)).ok
        before = path.read_bytes()
        refused = await run_archive_export(engine, ref(other), path)
        not_ours = await run_archive_export(engine, ref(demo), foreign)
    assert refused.exit_code == EXIT_USAGE
    assert f"holds an archive of canister {demo.to_text()}" in (refused.error or "")
    assert path.read_bytes() == before
    assert not_ours.exit_code == EXIT_USAGE
    assert foreign.read_text() == "my notes"


async def test_a_damaged_archive_is_refused_before_the_target_is_touched(
    w: World, tmp_path: Path
) -> None:
    demo = await w.demo(mib=1)
    path = tmp_path / "demo.icra"
    target = await w.demo(mib=1, seed=9)
    before = await w.fingerprint(target)
    async with w.engine() as engine:
        exported = await run_archive_export(engine, ref(demo), path)
        assert exported.ok, exported.error
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        imported = await run_archive_import(engine, path, ref(target))
        checked = await run_verify(engine, ArchiveRef(str(path)))
    assert imported.phase == Phase.FAILED
    assert imported.exit_code == EXIT_INTEGRITY
    assert "damaged" in (imported.error or "")
    assert checked.exit_code == EXIT_INTEGRITY
    assert await w.fingerprint(target) == before


async def test_verify_compares_source_backup_and_archive(w: World, tmp_path: Path) -> None:
    demo = await w.demo(mib=1)
    backup = await w.backup_canister(demo)
    path = tmp_path / "demo.icra"
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo), ref(backup))
        exported = await run_archive_export(engine, ref(demo), path)
        alone = await run_verify(engine, ref(demo))
        with_backup = await run_verify(engine, ref(demo), ref(backup))
        backup_and_file = await run_verify(engine, ref(backup), ArchiveRef(str(path)))
        await w.add_user(demo, "carol")  # the source moves on: the backup is stale now
        stale = await run_verify(engine, ref(demo), ref(backup))
    digest = backed.digest
    assert exported.digest == digest
    for outcome in (alone, with_backup, backup_and_file):
        assert outcome.ok, outcome.error
        assert outcome.source_digest == digest
    assert alone.target_digest is None
    assert with_backup.target_digest == digest
    assert backup_and_file.target_digest == digest
    assert stale.exit_code == EXIT_INTEGRITY
    assert stale.source_digest != digest
    assert stale.target_digest == digest


async def test_an_archive_of_a_backup_restores_through_another_backup_canister(
    w: World, tmp_path: Path
) -> None:
    demo = await w.demo(mib=1)
    before = await w.fingerprint(demo)
    first, second = await w.backup_canister(demo), await w.backup_canister(demo)
    path = tmp_path / "backup.icra"
    async with w.engine() as engine:
        assert (await run_backup(engine, ref(demo), ref(first))).ok
        exported = await run_archive_export(engine, ref(first), path)
        assert exported.ok, exported.error
        with ArchiveReader(path) as reader:
            assert reader.header.source == demo.to_text()  # the image's origin, not the copy
        imported = await run_archive_import(engine, path, ref(second))
        assert imported.ok, imported.error
        copied = await run_backup(engine, ref(second), ref(first))  # backup to backup, direct
        assert copied.ok, copied.error
        await w.add_user(demo, "dave")
        restored = await run_restore(engine, ref(second))
    assert restored.ok, restored.error
    assert restored.job.target == ref(demo)
    assert await w.fingerprint(demo) == before
