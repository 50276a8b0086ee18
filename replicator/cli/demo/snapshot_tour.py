"""``replicator demo --snapshot``: snapshot backups of a canister that does not speak ICRP.

What it does, on a local IC started for it, as a user would with
``replicator snapshot backup`` / ``restore``:

1. starts localnet in a child process (its root key pinned from its output,
   certificates verified) and deploys ``plain_kv``, a plain Motoko canister
   without ICRP; it generates ``--mib`` MiB of data itself: seven eighths as
   4 KiB pages of stable memory, one eighth as 4 KiB entries on its heap;
2. backs it up (``snapshot-backup``: stop → snapshot → start, every part
   read into a deduplicating repository in a temporary directory);
3. rewrites 1 % of the pages and 1 % of the entries and backs it up again:
   only the chunks that changed are new in the repository;
4. restores the newest snapshot into a canister created for it
   (``snapshot-restore --new-canister``) and checks that the copy answers
   the same queries as the source: ``stats()`` (with a fingerprint of the
   whole state), ``get`` of entries and ``load`` of pages, changed ones
   included;
5. prints a summary: the downtime of each backup, the new bytes of each
   against the snapshot's size, the repository's size, the restore's time.

The jobs are the same requests, through the same engine, as the command line
submits; the repository and (unless ``--state``) the checkpoint store are
temporary, and the local IC is gone when the tour ends.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.cli.common import Context, open_agent
from replicator.cli.demo.plain_kv import PAGE, PlainKv, PlainStats, sample
from replicator.cli.demo.tour import MiB, canisters_created, demo_config, state_file
from replicator.cli.jobrun import RenderedProgress, open_store
from replicator.cli.localnet import require_localnet
from replicator.cli.render import Renderer, format_bytes
from replicator.config import LOCAL
from replicator.engine import Engine
from replicator.errors import EXIT_OK, IntegrityError, JobFailed
from replicator.flows.snapshot import jobs
from replicator.job import CanisterRef, JobOutcome
from replicator.repository import Repository

CHANGED = 0.01  # the share of pages and entries rewritten between the backups
HEAP_SHARE = 8  # one eighth of the data lives on the heap
_PROBES = 8  # entries and pages of each kind compared after the restore


@dataclass
class BackupFigures:
    """One backup's figures, from its job's summary and its manifest."""

    seconds: float
    downtime_seconds: float | None
    snapshot_bytes: int
    new_bytes: int
    stored_bytes: int
    chunk_size: int

    @classmethod
    def of(cls, outcome: JobOutcome, repo: Repository) -> BackupFigures:
        d = outcome.details
        manifest = repo.load_manifest(str(d["snapshot"])).manifest
        return cls(
            seconds=round(outcome.elapsed, 2),
            downtime_seconds=d.get("downtime_seconds"),
            snapshot_bytes=manifest.size,
            new_bytes=int(d.get("bytes_new") or 0),
            stored_bytes=int(d.get("stored_new") or 0),
            chunk_size=manifest.chunk_size,
        )


@dataclass
class SnapshotReport:
    """What the summary shows."""

    localnet_url: str = ""
    canister: str = ""
    restored: str = ""
    stats: PlainStats | None = None
    changed_pages: int = 0
    changed_entries: int = 0
    backups: list[BackupFigures] = field(default_factory=list)
    restore_seconds: float = 0.0
    repository_stored_bytes: int = 0
    repository_logical_bytes: int = 0
    queries_compared: int = 0
    fingerprint_source: int = 0  # at the restore: after the change
    fingerprint_restored: int = 0

    def fields(self, retries: int, created: int, metrics_url: str | None) -> dict[str, Any]:
        first, second = self.backups
        stats = self.stats
        assert stats is not None  # set before the first backup
        return {
            "ok": True,
            "exit_code": EXIT_OK,
            "localnet": self.localnet_url,
            "canister": self.canister,
            "restored_canister": self.restored,
            "entries": stats.entries,
            "heap_bytes": stats.heap_bytes,
            "stable_bytes": stats.stable_bytes,
            "changed_pages": self.changed_pages,
            "changed_entries": self.changed_entries,
            "backup_1_seconds": first.seconds,
            "backup_1_downtime_seconds": first.downtime_seconds,
            "backup_1_snapshot_bytes": first.snapshot_bytes,
            "backup_1_new_bytes": first.new_bytes,
            "backup_1_stored_bytes": first.stored_bytes,
            "backup_2_seconds": second.seconds,
            "backup_2_downtime_seconds": second.downtime_seconds,
            "backup_2_snapshot_bytes": second.snapshot_bytes,
            "backup_2_new_bytes": second.new_bytes,
            "backup_2_stored_bytes": second.stored_bytes,
            "backup_2_new_percent": _percent(second.new_bytes, second.snapshot_bytes),
            "repository_logical_bytes": self.repository_logical_bytes,
            "repository_stored_bytes": self.repository_stored_bytes,
            "restore_seconds": self.restore_seconds,
            "fingerprint_first_backup": f"{stats.fingerprint:016x}",
            "fingerprint_source": f"{self.fingerprint_source:016x}",
            "fingerprint_restored": f"{self.fingerprint_restored:016x}",
            "queries_compared": self.queries_compared,
            "retries": retries,
            "canisters_created": created,
            "metrics_url": metrics_url,
        }


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


async def run_snapshot_demo(ctx: Context) -> int:
    """The whole snapshot tour; its exit code."""
    # Only the demo starts a local IC: without the localnet extra it stops here (exit 2).
    require_localnet("demo --snapshot")
    from localnet.process import LocalNetProcess

    report = SnapshotReport()
    identity = Identity.generate_ed25519()
    renderer = ctx.renderer
    renderer.note(f"starting a local IC (localnet) in a child process; you are {identity}")
    with (
        state_file(ctx.args.state) as state,
        tempfile.TemporaryDirectory(prefix="replicator-demo-snapshots-") as tmp,
    ):
        async with LocalNetProcess() as net:
            report.localnet_url = net.url
            renderer.note(f"localnet at {net.url}, root key pinned from its output")
            ctx.use_config(demo_config(net.url, net.root_key, ctx.args, state))
            progress = RenderedProgress(renderer)
            with ctx.serving_metrics():
                await _tour(ctx, identity, progress, Path(tmp) / "snapshots", report)
            created = canisters_created(ctx)
    renderer.summary(report.fields(progress.retries, created, ctx.metrics_url))
    return EXIT_OK


async def _tour(
    ctx: Context, identity: Identity, progress: RenderedProgress, repo: Path, report: SnapshotReport
) -> None:
    config, renderer = ctx.config, ctx.renderer
    rng = random.Random(f"demo-snapshot-{ctx.args.mib}")
    async with open_agent(config.network_named(), identity) as agent:
        app = await PlainKv.deploy(agent, identity.principal)
        report.canister = str(app.canister_id)
        renderer.note(f"deployed plain_kv (a Motoko canister without ICRP) as {app.canister_id}")
        pages, keys = await _fill(app, ctx.args.mib, renderer)
        report.stats = await app.stats()
        renderer.note(
            f"it holds {format_bytes(report.stats.stable_bytes)} of stable memory and "
            f"{report.stats.entries:,} entries ({format_bytes(report.stats.heap_bytes)}) on its "
            f"heap; state fingerprint {report.stats.fingerprint:016x}"
        )
        store = open_store(config.checkpoints)
        engine = Engine.from_config(config, store, ctx.metrics, progress, identity=identity)
        try:
            async with engine:
                changed = await _backups(engine, app, repo, (pages, keys), rng, report, renderer)
                source = await app.stats()
                restored = await _restore(engine, agent, app, repo, report, renderer)
        finally:
            await store.close()
        await _compare(app, restored, source, changed, report, renderer)


async def _fill(app: PlainKv, mib: int, renderer: Renderer) -> tuple[int, int]:
    """Generate ``mib`` MiB in the canister; (stable pages, heap entries)."""
    units = mib * MiB // PAGE
    keys = max(1, units // HEAP_SHARE)
    pages = units - keys
    label = f"generate-{mib}mib"
    renderer.start(label, "generate", str(app.canister_id), None)
    renderer.total(label, units * PAGE)
    renderer.phase(label, "generating")
    for first in range(0, pages, 1024):  # 4 MiB a step: a moving bar
        await app.generate_pages(first, min(1024, pages - first), seed=1)
        renderer.progress(label, (first + min(1024, pages - first)) * PAGE)
    await app.generate_entries(list(range(keys)), seed=1)
    renderer.progress(label, units * PAGE)
    renderer.phase(label, "done")
    return pages, keys


async def _backups(
    engine: Engine,
    app: PlainKv,
    repo: Path,
    sizes: tuple[int, int],
    rng: random.Random,
    report: SnapshotReport,
    renderer: Renderer,
) -> tuple[list[int], list[int]]:
    """Back up, change 1 %, back up again; the pages and keys that changed."""
    source = CanisterRef(str(app.canister_id), LOCAL)
    renderer.note(f"backing it up into a snapshot repository at {repo} (snapshot-backup)")
    first = await _backup(engine, source, repo, "backup", report)
    renderer.note(
        f"stored a {format_bytes(first.snapshot_bytes)} snapshot: "
        f"{format_bytes(first.new_bytes)} new, {format_bytes(first.stored_bytes)} after "
        f"compression; downtime {_seconds(first.downtime_seconds)}"
    )
    pages = sample(rng, sizes[0], CHANGED) if sizes[0] else []
    keys = sample(rng, sizes[1], CHANGED)
    await app.scatter(pages, seed=2)
    await app.generate_entries(keys, seed=2)
    report.changed_pages, report.changed_entries = len(pages), len(keys)
    renderer.note(
        f"rewrote {len(pages):,} of {sizes[0]:,} stable pages and {len(keys):,} of "
        f"{sizes[1]:,} entries ({CHANGED:.0%}); backing it up again"
    )
    second = await _backup(engine, source, repo, "backup-again", report)
    renderer.note(
        f"the second snapshot is {format_bytes(second.snapshot_bytes)}, of which "
        f"{format_bytes(second.new_bytes)} "
        f"({_percent(second.new_bytes, second.snapshot_bytes):.2f} %) was new to the repository "
        f"({format_bytes(second.stored_bytes)} stored); downtime "
        f"{_seconds(second.downtime_seconds)}"
    )
    renderer.note(
        f"(more than {CHANGED:.0%}: a rewritten 4 KiB page makes its whole "
        f"{second.chunk_size:,}-byte chunk new, and the heap's writes move objects)"
    )
    stats = await asyncio.to_thread(lambda: Repository.open(repo).stats())
    report.repository_stored_bytes = stats.stored_bytes
    report.repository_logical_bytes = stats.logical_bytes
    renderer.note(
        f"the repository holds {stats.snapshots} snapshots of {format_bytes(stats.logical_bytes)} "
        f"in {format_bytes(stats.stored_bytes)}"
    )
    return pages, keys


async def _backup(
    engine: Engine,
    source: CanisterRef,
    repo: Path,
    name: str,
    report: SnapshotReport,
) -> BackupFigures:
    outcome = _checked(name, await engine.submit(jobs.backup_request(source, repo)))
    figures = await asyncio.to_thread(BackupFigures.of, outcome, Repository.open(repo))
    report.backups.append(figures)
    return figures


async def _restore(
    engine: Engine,
    agent: Any,
    app: PlainKv,
    repo: Path,
    report: SnapshotReport,
    renderer: Renderer,
) -> PlainKv:
    renderer.note("restoring the newest snapshot into a new canister (--new-canister)")
    source = CanisterRef(str(app.canister_id), LOCAL)
    request = jobs.restore_request(repo, source, new_canister=True)
    outcome = _checked("restore", await engine.submit(request))
    target = outcome.job.target
    if not isinstance(target, CanisterRef):
        raise JobFailed(f"the restore job loaded the snapshot into {target}, not a canister")
    report.restored = target.canister_id
    report.restore_seconds = round(outcome.elapsed, 2)
    return PlainKv(agent, Principal.from_text(target.canister_id))


async def _compare(
    app: PlainKv,
    copy: PlainKv,
    source: PlainStats,
    changed: tuple[list[int], list[int]],
    report: SnapshotReport,
    renderer: Renderer,
) -> None:
    """The copy answers what the source answers: stats, entries and pages, changed ones too."""
    restored = await copy.stats()
    report.fingerprint_source = source.fingerprint
    report.fingerprint_restored = restored.fingerprint
    if restored != source:
        raise IntegrityError(
            f"the restored canister {copy.canister_id} reports {restored}, the source {source}"
        )
    pages, keys = changed
    probes = [("get", k) for k in [*keys[:_PROBES], 0, source.entries - 1]]
    if source.stable_bytes:
        last = source.stable_bytes // PAGE - 1
        probes += [("load", p) for p in [*pages[:_PROBES], 0, last]]
    for method, arg in probes:
        if method == "get":
            mine, theirs = await app.get(arg), await copy.get(arg)
        else:
            mine, theirs = await app.load_page(arg), await copy.load_page(arg)
        if mine != theirs or mine is None:
            raise IntegrityError(
                f"the restored canister answers {method}({arg}) differently from the source"
            )
    report.queries_compared = 1 + len(probes)
    renderer.note(
        f"{copy.canister_id} answers the same {report.queries_compared} queries as the source "
        f"(stats, get, load); fingerprint {restored.fingerprint:016x}: equal"
    )


def _checked(name: str, outcome: JobOutcome) -> JobOutcome:
    if not outcome.ok:
        error = JobFailed(f"the demo's {name} job failed: {outcome.error}")
        error.exit_code = outcome.exit_code
        raise error
    return outcome


def _seconds(value: float | None) -> str:
    return "none (not stopped)" if value is None else f"{value:.3f} s"
