"""The snapshot repository: chunks, manifests last, verify, prune, full disks and crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canister_iface.management_types import SnapshotMetadata
from replicator.classify import exit_code_for
from replicator.errors import EXIT_INTEGRITY, EXIT_TEMPORARY, EXIT_USAGE
from replicator.repository import (
    ChunkDamaged,
    ChunkMissing,
    ChunksUnavailable,
    FormatTooNew,
    LocalBackend,
    ManifestBuilder,
    ManifestDamaged,
    Policy,
    Repository,
    RepositoryError,
    RepositoryExists,
    RepositoryFull,
    RepositoryIOError,
    RepositoryNotFound,
    SnapshotNotFound,
    StoredManifest,
    aiter_part,
    split_slice,
)
from replicator.repository.chunks import codec_of
from replicator.repository.store import FileType, Handle

CANISTER = "kipf3-nqaaa-fake3-aaaaa-cai"
OTHER = "sppxf-mqaaa-fake2-aaaaa-cai"
CHUNK = 100_000
HOUR_NS = 3600 * 10**9
T0 = 1_750_000_000 * 10**9


def _metadata(memory: int, *, module: int = 0, at: int = T0) -> SnapshotMetadata:
    return SnapshotMetadata(
        source="taken_from_canister",
        taken_at_timestamp=at,
        wasm_module_size=module,
        globals=(),
        wasm_memory_size=memory,
        stable_memory_size=0,
        wasm_chunk_store=(),
        canister_version=1,
        certified_data=b"",
    )


def _backup(
    repo: Repository,
    memory: bytes,
    *,
    canister: str = CANISTER,
    at: int = T0,
    chunk_size: int = CHUNK,
    slice_size: int | None = None,
) -> StoredManifest:
    """What a snapshot job does: read slices, store chunks, then the manifest."""
    builder = ManifestBuilder(
        canister=canister,
        network="local",
        metadata=_metadata(len(memory), at=at),
        chunk_size=chunk_size,
    )
    step = slice_size or chunk_size
    for offset in range(0, len(memory), step):
        for index, piece in split_slice(offset, memory[offset : offset + step], chunk_size):
            builder.add("wasm_memory", index, repo.put_chunk(piece))
    return repo.write_manifest(builder.build())


def _memory(size: int, seed: int = 1) -> bytes:
    # Half random, half zeros: like a heap with free space.
    rng = random.Random(seed)
    pages = -(-size // 4096)
    return b"".join(
        rng.randbytes(4096) if rng.random() < 0.5 else bytes(4096) for _ in range(pages)
    )[:size]


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "repo", chunk_size=CHUNK)


def _chunk_file(repo: Repository, digest: bytes) -> Path:
    assert isinstance(repo.backend, LocalBackend)
    return repo.backend.path(Handle(FileType.CHUNK, digest.hex()))


def _age(repo: Repository, hours: float) -> None:
    """Make every chunk look untouched for ``hours``."""
    past = time.time() - hours * 3600
    for info in repo.backend.list(FileType.CHUNK):
        os.utime(_chunk_file(repo, bytes.fromhex(info.name)), (past, past))


# ------------------------------------------------------------------ opening


def test_init_and_open(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r", compression="none", chunk_size=CHUNK)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["format"] == "ic-replicator-repository"
    assert config["compression"] == "none"
    assert config["chunk_size"] == CHUNK
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "chunks",
        "config.json",
        "snapshots",
        "tmp",
        "trash",
    ]
    again = Repository.open(tmp_path / "r", compression="zstd")
    assert again.config == repo.config
    assert again.compression == "zstd"


def test_init_refuses_a_used_directory(tmp_path: Path) -> None:
    Repository.init(tmp_path / "r")
    with pytest.raises(RepositoryExists, match="already holds one"):
        Repository.init(tmp_path / "r")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RepositoryExists, match="not empty"):
        Repository.init(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_open_refuses_what_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="not a snapshot repository") as caught:
        Repository.open(tmp_path)
    assert exit_code_for(caught.value) == EXIT_USAGE


def test_open_refuses_a_newer_repository(tmp_path: Path) -> None:
    Repository.init(tmp_path / "r")
    config = tmp_path / "r" / "config.json"
    doc = json.loads(config.read_text())
    doc["version"] = 2
    config.chmod(0o644)
    config.write_text(json.dumps(doc))
    with pytest.raises(
        FormatTooNew, match="format version 2; this ic-replicator reads up to version 1"
    ):
        Repository.open(tmp_path / "r")
    config.write_text("{ damaged")
    with pytest.raises(RepositoryError, match=r"config\.json is damaged"):
        Repository.open(tmp_path / "r")


# ------------------------------------------------------------------- chunks


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_put_get_and_dedup(tmp_path: Path, compression: str) -> None:
    repo = Repository.init(tmp_path / "r", compression=compression)  # type: ignore[arg-type]
    data = _memory(CHUNK)
    first = repo.put_chunk(data)
    assert first.new
    assert first.digest == hashlib.sha256(data).digest()
    again = repo.put_chunk(data)
    assert not again.new
    assert again.stored_size == first.stored_size
    assert repo.get_chunk(first.digest, len(data)) == data
    assert repo.get_chunk(first) == data
    with pytest.raises(ChunkDamaged, match="the manifest says"):
        repo.get_chunk(first.digest, len(data) + 1)
    assert repo.has_chunk(first.digest)
    assert len(list(repo.backend.list(FileType.CHUNK))) == 1
    if compression == "zstd":
        assert first.stored_size < len(data) * 0.7
    else:
        assert first.stored_size == len(data) + 5


def test_compression_is_recorded_per_chunk(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r", compression="zstd")
    random_ref = repo.put_chunk(random.Random(2).randbytes(CHUNK))
    zeros_ref = repo.put_chunk(bytes(CHUNK))
    assert codec_of(_chunk_file(repo, random_ref.digest).read_bytes()) == "plain"
    assert codec_of(_chunk_file(repo, zeros_ref.digest).read_bytes()) == "zstd"
    plain = Repository.open(tmp_path / "r", compression="none")
    assert plain.get_chunk(zeros_ref.digest) == bytes(CHUNK)


def test_chunk_objects_are_read_only_and_leave_no_temporary_files(repo: Repository) -> None:
    ref = repo.put_chunk(b"x" * 1000)
    assert _chunk_file(repo, ref.digest).stat().st_mode & 0o777 == 0o444
    assert not any((Path(repo.location) / "tmp").iterdir())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), compressible=st.booleans())
def test_any_damaged_byte_of_a_chunk_is_caught(
    tmp_path: Path, data: st.DataObject, compressible: bool
) -> None:
    repo = (
        Repository.open(tmp_path / "r")
        if (tmp_path / "r").exists()
        else Repository.init(tmp_path / "r")
    )
    content = (
        _memory(20_480) if compressible else random.Random(3).randbytes(20_480)
    ) + os.urandom(8)
    ref = repo.put_chunk(content)
    path = _chunk_file(repo, ref.digest)
    blob = bytearray(path.read_bytes())
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    blob[position] ^= data.draw(st.integers(1, 255), label="xor")
    path.chmod(0o644)
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkDamaged) as caught:
        repo.get_chunk(ref.digest, len(content))
    assert caught.value.digest == ref.digest
    assert exit_code_for(caught.value) == EXIT_INTEGRITY
    path.unlink()


def test_a_truncated_or_missing_chunk_is_caught(repo: Repository) -> None:
    ref = repo.put_chunk(_memory(CHUNK))
    path = _chunk_file(repo, ref.digest)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ChunkDamaged):
        repo.get_chunk(ref.digest)
    path.unlink()
    with pytest.raises(ChunkMissing, match=ref.digest.hex()):
        repo.get_chunk(ref.digest)


def test_check_existing_replaces_a_damaged_chunk(repo: Repository) -> None:
    data = _memory(CHUNK)
    ref = repo.put_chunk(data)
    path = _chunk_file(repo, ref.digest)
    path.chmod(0o644)
    path.write_bytes(b"ICRK\x00garbage")
    assert not repo.put_chunk(data).new  # trusted without reading
    assert repo.put_chunk(data, check_existing=True).new
    assert repo.get_chunk(ref.digest) == data


# ---------------------------------------------------------------- manifests


def test_backup_restore_round_trip(repo: Repository) -> None:
    memory = _memory(1_050_000)
    stored = _backup(repo, memory, slice_size=4 * CHUNK)
    loaded = repo.load_manifest(stored.id[:10])
    assert loaded == stored
    assert b"".join(d for _, d in repo.iter_part(loaded.manifest, "wasm_memory")) == memory
    slices = list(repo.iter_part(loaded.manifest, "wasm_memory", slice_size=4 * CHUNK))
    assert [(o, len(d)) for o, d in slices] == [
        (0, 400_000),
        (400_000, 400_000),
        (800_000, 250_000),
    ]
    resumed = list(
        repo.iter_part(loaded.manifest, "wasm_memory", start=800_000, slice_size=4 * CHUNK)
    )
    assert resumed == slices[2:]
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        list(repo.iter_part(loaded.manifest, "wasm_memory", slice_size=CHUNK + 1))
    repo.ensure_restorable(loaded)
    report = repo.verify()
    assert report.ok
    assert report.snapshots == 1
    assert report.chunks == len(set(loaded.manifest.wasm_memory.chunks))


async def test_aiter_part_reads_in_threads(repo: Repository) -> None:
    memory = _memory(350_000)
    stored = await asyncio.to_thread(_backup, repo, memory)
    pieces = [
        p async for p in aiter_part(repo, stored.manifest, "wasm_memory", slice_size=2 * CHUNK)
    ]
    assert [o for o, _ in pieces] == [0, 200_000]
    assert b"".join(d for _, d in pieces) == memory


def test_write_manifest_refuses_missing_chunks_and_writes_nothing(repo: Repository) -> None:
    memory = _memory(300_000)
    builder = ManifestBuilder(
        canister=CANISTER, network="local", metadata=_metadata(len(memory)), chunk_size=CHUNK
    )
    refs = [repo.put_chunk(piece) for _, piece in split_slice(0, memory, CHUNK)]
    for index, ref in enumerate(refs):
        builder.add("wasm_memory", index, ref)
    _chunk_file(repo, refs[1].digest).unlink()
    with pytest.raises(
        ChunksUnavailable, match=f"1 missing \\({refs[1].digest.hex()[:16]}\\)"
    ) as caught:
        repo.write_manifest(builder.build())
    assert caught.value.missing == (refs[1].digest,)
    assert repo.snapshot_ids() == []


def test_restore_refuses_a_snapshot_with_missing_or_damaged_chunks_naming_them(
    repo: Repository,
) -> None:
    stored = _backup(repo, _memory(500_000))
    chunks = stored.manifest.wasm_memory.chunks
    _chunk_file(repo, chunks[0]).unlink()
    damaged = _chunk_file(repo, chunks[3])
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ChunksUnavailable) as caught:
        repo.ensure_restorable(stored)
    assert caught.value.missing == (chunks[0],)
    assert list(caught.value.damaged) == [chunks[3]]
    assert "nothing was written to the target" in str(caught.value)
    report = repo.verify()
    assert not report.ok
    assert report.missing == {chunks[0]: [stored.id]}
    assert list(report.damaged) == [chunks[3]]
    assert len(report.problems()) == 2
    quick = repo.verify(stored.id, read_data=False)
    assert list(quick.missing) == [chunks[0]]
    assert not quick.damaged


def test_snapshot_ids_resolve_by_prefix(repo: Repository) -> None:
    a = _backup(repo, _memory(CHUNK, 1), at=T0)
    b = _backup(repo, _memory(CHUNK, 2), at=T0 + HOUR_NS)
    assert repo.resolve(a.id[:12]) == a.id
    assert [s.id for s in repo.manifests()] == [a.id, b.id]  # oldest first
    with pytest.raises(SnapshotNotFound, match="no snapshot"):
        repo.resolve("zzzz")
    for name in ("ab" + "0" * 62, "ab" + "1" * 62):  # two ids with a common prefix
        repo.backend.save(Handle(FileType.SNAPSHOT, name), b"{}")
    with pytest.raises(SnapshotNotFound, match="names 2 snapshots"):
        repo.resolve("ab")
    for name in ("ab" + "0" * 62, "ab" + "1" * 62):
        repo.backend.remove(Handle(FileType.SNAPSHOT, name))
    assert repo.remove_snapshot(a.id[:12]) == a.id
    assert [s.id for s in repo.manifests()] == [b.id]


def test_a_damaged_manifest_is_reported(repo: Repository) -> None:
    stored = _backup(repo, _memory(CHUNK))
    path = Path(repo.location) / "snapshots" / f"{stored.id}.json"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"local"', b'"lokal"'))
    with pytest.raises(ManifestDamaged, match="hashes to"):
        repo.load_manifest(stored.id)
    assert repo.manifests(skip_unreadable=True) == []
    assert list(repo.verify().bad_manifests) == [stored.id]


# -------------------------------------------------------------------- prune


def test_prune_applies_the_policy_per_canister_and_collects_chunks(repo: Repository) -> None:
    shared = _memory(CHUNK, 7)
    ours = [_backup(repo, shared + _memory(CHUNK, i), at=T0 + i * HOUR_NS) for i in range(3)]
    theirs = _backup(repo, shared + _memory(CHUNK, 99), canister=OTHER, at=T0)
    _age(repo, 48)
    dry = repo.prune(Policy(last=1), dry_run=True)
    assert dry.removed_snapshots == [ours[1].id, ours[0].id]
    assert dry.chunks_removed == 2
    assert len(repo.snapshot_ids()) == 4
    report = repo.prune(Policy(last=1))
    assert report.removed_snapshots == dry.removed_snapshots
    assert report.chunks_removed == 2
    assert report.chunks_kept == 3  # shared, ours[2]'s own, theirs' own
    assert {s.id for s in repo.manifests()} == {ours[2].id, theirs.id}
    assert repo.verify().ok
    assert repo.verify().unreferenced == 0
    group = next(g for g in report.groups if g.canister == CANISTER)
    assert [(d.item.id, d.keep, d.reasons) for d in group.decisions] == [
        (ours[2].id, True, ("last snapshot",)),
        (ours[1].id, False, ()),
        (ours[0].id, False, ()),
    ]


def test_prune_without_a_policy_only_collects_garbage(repo: Repository) -> None:
    stored = _backup(repo, _memory(2 * CHUNK))
    repo.put_chunk(b"left by a crashed backup")
    _age(repo, 48)
    report = repo.prune()
    assert report.removed_snapshots == []
    assert report.chunks_removed == 1
    assert repo.verify(stored.id).ok


def test_crash_between_chunks_and_manifest_leaves_only_what_prune_collects(
    repo: Repository,
) -> None:
    kept = _backup(repo, _memory(3 * CHUNK, 1))
    # A backup that stored its chunks and died before its manifest.
    for _, piece in split_slice(0, _memory(3 * CHUNK, 2), CHUNK):
        repo.put_chunk(piece)
    (Path(repo.location) / "tmp" / f"{'ab' * 32}-dead.tmp").write_bytes(b"half a chunk")
    assert repo.verify().ok
    assert repo.verify().unreferenced == 3
    young = repo.prune()  # within the grace period: maybe a backup still running
    assert young.chunks_removed == 0
    assert young.chunks_spared == 3
    report = repo.prune(grace=dt.timedelta(0))
    assert report.chunks_removed == 3
    assert report.temporary_removed == 1
    assert repo.verify().ok
    assert repo.verify().unreferenced == 0
    assert repo.verify(kept.id).chunks == 3


def test_prune_spares_chunks_a_running_backup_deduplicated_against(repo: Repository) -> None:
    old = _backup(repo, _memory(2 * CHUNK, 1))
    repo.remove_snapshot(old.id)  # forgotten: its chunks are garbage now
    _age(repo, 48)
    # A backup of the same bytes starts: its dedup hits touch the chunks ...
    refs = [repo.put_chunk(p) for _, p in split_slice(0, _memory(2 * CHUNK, 1), CHUNK)]
    assert not any(r.new for r in refs)
    report = repo.prune(grace=dt.timedelta(hours=1))  # ... so prune leaves them
    assert report.chunks_removed == 0
    assert all(repo.has_chunk(r.digest) for r in refs)


def test_a_touch_during_deletion_keeps_the_chunk(repo: Repository) -> None:
    backend = repo.backend
    assert isinstance(backend, LocalBackend)
    ref = repo.put_chunk(b"in use")
    h = Handle(FileType.CHUNK, ref.name)
    # prune moved it to trash/ (first step of remove_if_untouched) when a backup touches it:
    os.rename(backend.path(h), Path(repo.location) / "trash" / ref.name)
    assert backend.touch(h)
    assert repo.get_chunk(ref.digest) == b"in use"
    # an interrupted prune's trash is put back before the next prune judges anything
    os.rename(backend.path(h), Path(repo.location) / "trash" / ref.name)
    repo.prune(grace=dt.timedelta(hours=1))
    assert backend.path(h).exists()
    assert not backend.remove_if_untouched(h, cutoff=time.time() - 3600)
    assert backend.remove_if_untouched(h, cutoff=time.time() + 1)
    assert not backend.touch(h)


def test_prune_refuses_while_a_manifest_cannot_be_read(repo: Repository) -> None:
    _backup(repo, _memory(CHUNK, 1))
    doc = json.loads(
        manifest_bytes := next((Path(repo.location) / "snapshots").iterdir()).read_bytes()
    )
    assert manifest_bytes
    doc["version"] = 2
    newer = json.dumps(doc).encode()
    repo.backend.save(Handle(FileType.SNAPSHOT, hashlib.sha256(newer).hexdigest()), newer)
    _age(repo, 48)
    with pytest.raises(FormatTooNew):
        repo.prune(Policy(last=1), grace=dt.timedelta(0))
    assert len(repo.snapshot_ids()) == 2
    assert len(list(repo.backend.list(FileType.CHUNK))) == 1
    repo.backend.remove(Handle(FileType.SNAPSHOT, hashlib.sha256(newer).hexdigest()))
    bad = Handle(FileType.SNAPSHOT, "f" * 64)
    repo.backend.save(bad, b"{}")
    with pytest.raises(ManifestDamaged, match="prune deletes nothing"):
        repo.prune(grace=dt.timedelta(0))


# -------------------------------------------------------------------- dedup


def test_dedup_unchanged_and_scattered_page_changes(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "r", durable=False), chunk_size=2_000_000)
    memory = bytearray(_memory(16 * 1024 * 1024))
    first = _backup(repo, bytes(memory), chunk_size=2_000_000).manifest.summary
    assert first is not None
    assert first.chunks_new == 9
    unchanged = _backup(repo, bytes(memory), at=T0 + HOUR_NS, chunk_size=2_000_000).manifest.summary
    assert unchanged is not None
    assert (unchanged.chunks_new, unchanged.bytes_new) == (0, 0)
    rng = random.Random(5)
    pages = rng.sample(range(len(memory) // 4096), 6)
    for page in pages:
        memory[page * 4096 : page * 4096 + 4096] = rng.randbytes(4096)
    touched = {page * 4096 // 2_000_000 for page in pages} | {
        (page * 4096 + 4095) // 2_000_000 for page in pages
    }
    changed = _backup(
        repo, bytes(memory), at=T0 + 2 * HOUR_NS, chunk_size=2_000_000
    ).manifest.summary
    assert changed is not None
    assert changed.chunks_new == len(touched)
    assert changed.bytes_new == sum(min(2_000_000, len(memory) - i * 2_000_000) for i in touched)
    stats = repo.stats()
    assert stats.logical_bytes == 3 * len(memory)
    assert stats.unique_bytes == len(memory) + changed.bytes_new
    assert stats.dedup_ratio == pytest.approx(3 * len(memory) / stats.unique_bytes)
    assert stats.compression_ratio > 1.5


# ---------------------------------------------------------------- full disk


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a real file system that fills up (needs root, as in CI)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_stops_cleanly_and_resumes_after_space_is_freed(small_fs: Path) -> None:
    repo = Repository.init(small_fs / "repo", compression="none", chunk_size=500_000)
    filler = small_fs / "filler"
    filler.write_bytes(bytes(4 * 1024 * 1024))
    memory = random.Random(9).randbytes(6_000_000)  # does not fit next to the filler
    with pytest.raises(RepositoryFull, match=f"no space left in {small_fs / 'repo'}") as caught:
        _backup(repo, memory, chunk_size=500_000)
    assert exit_code_for(caught.value) == EXIT_TEMPORARY
    assert "free space" in str(caught.value)
    assert not any((small_fs / "repo" / "tmp").iterdir())  # the half-written chunk is gone
    assert repo.snapshot_ids() == []
    report = repo.verify()
    assert report.ok
    assert report.unreferenced > 0  # whole chunks, no manifest names them
    filler.unlink()  # space is freed; re-running resumes (stored chunks dedupe)
    stored = _backup(repo, memory, chunk_size=500_000)
    assert stored.manifest.summary is not None
    assert stored.manifest.summary.chunks_new < 12
    assert b"".join(d for _, d in repo.iter_part(stored.manifest, "wasm_memory")) == memory


def test_full_disk_while_writing_the_manifest(small_fs: Path) -> None:
    repo = Repository.init(small_fs / "repo", compression="none", chunk_size=100_000)
    memory = random.Random(9).randbytes(1_000_000)
    builder = ManifestBuilder(
        canister=CANISTER, network="local", metadata=_metadata(len(memory)), chunk_size=100_000
    )
    for index, piece in split_slice(0, memory, 100_000):
        builder.add("wasm_memory", index, repo.put_chunk(piece))
    _fill(small_fs / "filler")
    manifest = builder.build()
    with pytest.raises(RepositoryFull):
        repo.write_manifest(manifest)
    assert repo.snapshot_ids() == []
    assert not any((small_fs / "repo" / "tmp").iterdir())
    (small_fs / "filler").unlink()
    stored = repo.write_manifest(manifest)
    assert repo.verify(stored.id).ok


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(bytes(4096))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


def test_a_read_only_file_system_is_a_clear_error(small_fs: Path) -> None:
    repo = Repository.init(small_fs / "repo")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(RepositoryIOError, match="read-only"):
        repo.put_chunk(b"anything")


# -------------------------------------------------------------------- crash

_WRITER = textwrap.dedent(
    """
    import os, sys
    from replicator.repository import Repository
    repo = Repository.open(sys.argv[1], compression="none")
    print("ready", flush=True)
    while True:
        repo.put_chunk(os.urandom(4_000_000))
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_killed_mid_write_leaves_only_whole_chunks(repo: Repository, delay: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, repo.location], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    names = [info.name for info in repo.backend.list(FileType.CHUNK)]
    for name in names:  # every chunk object is whole: it hashes to its name
        repo.get_chunk(bytes.fromhex(name))
    report = repo.prune(grace=dt.timedelta(0))
    assert report.chunks_removed == len(names)
    assert not any((Path(repo.location) / "tmp").iterdir())
    assert list(repo.backend.list(FileType.CHUNK)) == []
