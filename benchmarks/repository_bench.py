"""Snapshot repository: dedup, compression and throughput, side by side in one run.

Configuration (printed at the start): a repository in a temporary directory
on this machine's disk, fsync on (what a job does); chunk size 2,000,000 (the
IC's read slice) unless stated.

1. **Dedup** on a synthetic ``--mib`` MiB memory (default 256; 4 KiB pages,
   half random, half zero, like a heap with free space), stored with zstd:
   the first backup; a second, unchanged backup (target: 0 new bytes); a third
   after changing 1 % of the pages at scattered places (target: new bytes =
   exactly the touched 2,000,000-byte slices); a fourth after changing 1 % in
   one contiguous region (target: at most the region's slices + 1).  The
   scattered change is repeated with ``--small-chunk`` (default 262,144 = 7 per
   1,835,008-byte read slice) to show what a smaller chunk would save.
2. **Throughput** (MiB/s of plain bytes, one thread and two): put of new
   chunks with zstd and without, put of chunks already stored (a dedup hit:
   hash + touch), get (read, decompress, verify).  Targets: new chunks >= 50
   MiB/s with zstd on one thread, get >= 100 MiB/s.
3. **Demo data** (``--demo-mib``, default 64; 0 skips it): localnet in a
   child process, the demo app filled with that much data, a real
   ``take_canister_snapshot`` read through ``read_canister_snapshot_data``
   into the repository: zstd's ratio on it; then the app grows by 1 MiB and a
   second snapshot is stored: what it adds.

``python -m benchmarks repository_bench --mib 64 --demo-mib 0`` runs it smaller.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.figures import Figure
from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import SNAPSHOT_MEMORIES, SnapshotMetadata
from localnet.process import LocalNetProcess
from replicator.cli.demo.app import DemoApp
from replicator.repository import (
    ManifestBuilder,
    Repository,
    StoredManifest,
    split_slice,
)

MiB = 1024 * 1024
PAGE = 4096
SLICE = 2_000_000
CANISTER = "rrkah-fqaaa-aaaaa-aaaaq-cai"
T0 = 1_750_000_000 * 10**9


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks repository_bench")
    parser.add_argument("--mib", type=int, default=256, help="synthetic memory, MiB (default 256)")
    parser.add_argument("--changed", type=float, default=0.01, help="share of pages changed (0.01)")
    parser.add_argument(
        "--small-chunk", type=int, default=262_144, help="the smaller chunk size compared"
    )
    parser.add_argument("--demo-mib", type=int, default=64, help="demo app data, MiB (0: skip)")
    return parser.parse_args(list(argv))


@dataclass
class Result:
    new_bytes: int
    new_chunks: int
    stored_new: int
    seconds: float


def _heap(size: int, seed: int) -> bytearray:
    rng = random.Random(seed)
    pages = size // PAGE
    return bytearray(
        b"".join(rng.randbytes(PAGE) if rng.random() < 0.5 else bytes(PAGE) for _ in range(pages))
    )


def _metadata(size: int, at: int) -> SnapshotMetadata:
    return SnapshotMetadata(
        source="taken_from_canister",
        taken_at_timestamp=at,
        wasm_module_size=0,
        globals=(),
        wasm_memory_size=size,
        stable_memory_size=0,
        wasm_chunk_store=(),
        canister_version=1,
        certified_data=b"",
    )


def _backup(
    repo: Repository, memory: bytes, at: int, *, chunk_size: int = SLICE, threads: int = 1
) -> tuple[StoredManifest, Result]:
    """What the snapshot job will do: slices of k chunks, put in threads, manifest last."""
    builder = ManifestBuilder(
        canister=CANISTER,
        network="bench",
        metadata=_metadata(len(memory), at),
        chunk_size=chunk_size,
    )
    read_slice = SLICE // chunk_size * chunk_size
    pieces = [
        piece
        for offset in range(0, len(memory), read_slice)
        for piece in split_slice(offset, memory[offset : offset + read_slice], chunk_size)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        refs = list(pool.map(lambda p: (p[0], repo.put_chunk(p[1])), pieces))
    for index, ref in refs:
        builder.add("wasm_memory", index, ref)
    stored = repo.write_manifest(builder.build())
    seconds = time.perf_counter() - started
    summary = stored.manifest.summary
    assert summary is not None
    return stored, Result(summary.bytes_new, summary.chunks_new, summary.stored_new, seconds)


def _touch_scattered(memory: bytearray, share: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    pages = rng.sample(range(len(memory) // PAGE), max(1, int(len(memory) // PAGE * share)))
    for page in pages:
        memory[page * PAGE : (page + 1) * PAGE] = rng.randbytes(PAGE)
    return pages


def _slices_of(pages: list[int], chunk_size: int, size: int) -> int:
    """Plain bytes of the chunks that the changed pages fall in."""
    touched = {
        i
        for p in pages
        for i in range(p * PAGE // chunk_size, ((p + 1) * PAGE - 1) // chunk_size + 1)
    }
    return sum(min(chunk_size, size - i * chunk_size) for i in touched)


def _mibs(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


def _dedup(root: Path, args: argparse.Namespace, checks: dict[str, bool]) -> None:
    size = args.mib * MiB
    memory = _heap(size, 1)
    repo = Repository.init(root / "dedup")
    _, first = _backup(repo, bytes(memory), T0)
    print(
        f"backup 1: {size / MiB:.0f} MiB, {first.new_chunks} new chunks, "
        f"{first.new_bytes / MiB:.1f} MiB new, {first.stored_new / MiB:.1f} MiB stored "
        f"(zstd {first.new_bytes / first.stored_new:.2f}x), {_mibs(size, first.seconds):.0f} MiB/s",
        flush=True,
    )
    _, second = _backup(repo, bytes(memory), T0 + 1)
    checks["unchanged stores 0 new bytes"] = second.new_bytes == 0
    print(
        f"backup 2, unchanged: {second.new_bytes} new bytes in {second.new_chunks} chunks "
        f"(target 0), {_mibs(size, second.seconds):.0f} MiB/s",
        flush=True,
    )
    small = bytes(memory)
    pages = _touch_scattered(memory, args.changed, 2)
    expected = _slices_of(pages, SLICE, size)
    _, third = _backup(repo, bytes(memory), T0 + 2)
    checks["scattered change stores exactly the touched slices"] = third.new_bytes == expected
    print(
        f"backup 3, {len(pages)} scattered 4 KiB pages changed ({len(pages) * PAGE / MiB:.2f} MiB "
        f"= {args.changed:.0%}): {third.new_bytes / MiB:.1f} MiB new in {third.new_chunks} chunks; "
        f"touched 2,000,000-byte slices hold {expected / MiB:.1f} MiB (target: equal); "
        f"{third.stored_new / MiB:.1f} MiB stored",
        flush=True,
    )
    region = max(PAGE, int(size * args.changed) // PAGE * PAGE)
    start = size // 3 // PAGE * PAGE
    memory[start : start + region] = random.Random(3).randbytes(region)
    _, fourth = _backup(repo, bytes(memory), T0 + 3)
    bound = (region // SLICE + 2) * SLICE
    checks["clustered change stores the region's slices"] = fourth.new_bytes <= bound
    print(
        f"backup 4, one contiguous {region / MiB:.2f} MiB region changed: "
        f"{fourth.new_bytes / MiB:.1f} MiB new in {fourth.new_chunks} chunks "
        f"(target <= {bound / MiB:.1f} MiB)",
        flush=True,
    )
    stats = repo.stats()
    print(
        f"repository: 4 snapshots, {stats.logical_bytes / MiB:.0f} MiB logical, "
        f"{stats.unique_bytes / MiB:.0f} MiB unique, {stats.stored_bytes / MiB:.0f} MiB on disk; "
        f"dedup {stats.dedup_ratio:.2f}x, compression {stats.compression_ratio:.2f}x",
        flush=True,
    )
    chunk = args.small_chunk
    fine = Repository.init(root / "fine", chunk_size=chunk)
    _backup(fine, small, T0, chunk_size=chunk)
    after = bytearray(small)
    pages = _touch_scattered(after, args.changed, 2)
    _, changed = _backup(fine, bytes(after), T0 + 1, chunk_size=chunk)
    print(
        f"the same scattered change with {chunk:,}-byte chunks: {changed.new_bytes / MiB:.1f} MiB "
        f"new in {changed.new_chunks} chunks (vs {third.new_bytes / MiB:.1f} MiB with 2,000,000); "
        f"chunk files for the memory: {-(-size // chunk)} vs {-(-size // SLICE)}",
        flush=True,
    )


def _throughput(root: Path, args: argparse.Namespace, checks: dict[str, bool]) -> None:
    size = min(args.mib, 128) * MiB
    memory = bytes(_heap(size, 4))
    rows: list[tuple[str, float]] = []

    def timed(name: str, run: Callable[[], object], nbytes: int) -> float:
        started = time.perf_counter()
        run()
        rate = _mibs(nbytes, time.perf_counter() - started)
        rows.append((name, rate))
        return rate

    for compression in ("zstd", "none"):
        for threads in (1, 2):
            repo = Repository.init(root / f"put-{compression}-{threads}", compression=compression)  # type: ignore[arg-type]
            rate = timed(
                f"put new, {compression}, {threads} thread(s)",
                lambda r=repo, t=threads: _backup(r, memory, T0, threads=t),  # type: ignore[misc]
                size,
            )
            if compression == "zstd" and threads == 1:
                checks["put new >= 50 MiB/s (zstd, 1 thread)"] = rate >= 50
                stored = _backup(repo, memory, T0 + 1)[0]
                timed("put existing (dedup hit)", lambda r=repo: _backup(r, memory, T0 + 2), size)  # type: ignore[misc]
                rate = timed(
                    "get + verify, zstd",
                    lambda r=repo, s=stored: sum(
                        len(d) for _, d in r.iter_part(s.manifest, "wasm_memory")
                    ),
                    size,
                )
                checks["get >= 100 MiB/s"] = rate >= 100
    for name, rate in rows:
        print(f"{name}: {rate:.0f} MiB/s ({size / MiB:.0f} MiB)", flush=True)


async def _demo(root: Path, args: argparse.Namespace, checks: dict[str, bool]) -> None:
    identity = Identity.generate_ed25519()
    repos = {
        SLICE: Repository.init(root / "demo"),
        args.small_chunk: Repository.init(root / "demo-fine", chunk_size=args.small_chunk),
    }
    async with LocalNetProcess() as net:
        agent = Agent(net.url, identity, network="local", root_key=net.root_key)
        async with agent:
            app = await DemoApp.deploy(agent, identity.principal)
            mgmt = ManagementClient(agent)
            await app.generate(args.demo_mib, 1)
            first = await _snapshot_into(repos, mgmt, app, T0)
            await app.generate(args.demo_mib + 1, 1)
            second = await _snapshot_into(repos, mgmt, app, T0 + 1)
    plain, stored = first[SLICE].new_bytes, first[SLICE].stored_new
    print(
        f"demo app with {args.demo_mib} MiB: {plain / MiB:.1f} MiB of distinct 2,000,000-byte "
        f"chunks stored as {stored / MiB:.1f} MiB: zstd {plain / stored:.2f}x",
        flush=True,
    )
    for chunk, result in second.items():
        print(
            f"demo app grown by 1 MiB, chunks of {chunk:,}: the second snapshot added "
            f"{result.new_bytes / MiB:.1f} MiB in {result.new_chunks} chunks "
            f"({result.stored_new / MiB:.1f} MiB stored)",
            flush=True,
        )
    checks["demo data compresses"] = plain > stored


async def _snapshot_into(
    repos: dict[int, Repository], mgmt: ManagementClient, app: DemoApp, at: int
) -> dict[int, Result]:
    """A real snapshot of the app, read whole (a benchmark), stored with each chunk size."""
    await mgmt.stop_canister(app.canister_id)
    snapshot = await mgmt.take_canister_snapshot(app.canister_id)
    await mgmt.start_canister(app.canister_id)
    meta = await mgmt.read_canister_snapshot_metadata(app.canister_id, snapshot.id)
    memories = {
        m: await mgmt.read_snapshot_memory(app.canister_id, snapshot.id, m, size=meta.size_of(m))
        for m in SNAPSHOT_MEMORIES
    }
    await mgmt.delete_canister_snapshot(app.canister_id, snapshot.id)
    sizes = ", ".join(f"{m} {len(d) / MiB:.1f} MiB" for m, d in memories.items())
    print(f"  snapshot of the demo app: {sizes}", flush=True)
    results = {}
    for chunk_size, repo in repos.items():
        builder = ManifestBuilder(
            canister=app.canister_id.to_text(),
            network="local",
            metadata=meta,
            chunk_size=chunk_size,
            ic_snapshot_id=snapshot.id,
        )
        started = time.perf_counter()
        for memory, data in memories.items():
            for index, piece in split_slice(0, data, chunk_size):
                builder.add(memory, index, repo.put_chunk(piece))
        summary = repo.write_manifest(builder.build()).manifest.summary
        assert summary is not None
        results[chunk_size] = Result(
            summary.bytes_new, summary.chunks_new, summary.stored_new, time.perf_counter() - started
        )
    return results


# make bench-quick: a smaller memory and no demo app.
QUICK_ARGV = ["--mib", "64", "--demo-mib", "0"]


async def run(argv: Sequence[str] = ()) -> list[Figure]:
    args = parse(argv)
    checks: dict[str, bool] = {}
    print(
        f"configuration: synthetic memory {args.mib} MiB (4 KiB pages, half random, half zero), "
        f"{args.changed:.0%} of pages changed, chunk size 2,000,000 (and {args.small_chunk:,}), "
        f"zstd level 3, fsync on, demo app {args.demo_mib} MiB",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="repository-bench-") as tmp:
        root = Path(tmp)
        _dedup(root, args, checks)
        _throughput(root, args, checks)
        if args.demo_mib > 0:
            await _demo(root, args, checks)
    missed = [name for name, ok in checks.items() if not ok]
    print(
        "summary: " + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items()),
        flush=True,
    )
    config = (
        f"synthetic memory {args.mib} MiB, {args.changed:.0%} changed, demo {args.demo_mib} MiB"
    )
    del missed  # each check becomes a figure: 1 met, 0 missed
    return [Figure(name, config, float(ok), "", target=1) for name, ok in checks.items()]
