"""``replicator demo --split``: after the backup round trip, split the app and compact it."""

from __future__ import annotations

from typing import Any

from replicator.cli.render import Renderer
from replicator.engine import Engine
from replicator.errors import JobFailed
from replicator.flows.compact import kind as compact
from replicator.flows.split import kind as split
from replicator.job import CanisterRef, JobOutcome

SHARDS = 3


async def split_tour(engine: Engine, source: CanisterRef, renderer: Renderer) -> dict[str, Any]:
    """Split ``source`` into shards, then compact it; the summary's extra fields."""
    renderer.note(f"splitting the app into {SHARDS} shards by key range (it keeps serving)")
    done = _ok("split", await engine.submit(split.request(source, shards=SHARDS, name="demo")))
    ranges = done.details.get("ranges") or []
    for r in ranges:
        renderer.note(
            f"range {r['range']} → {r['shard']}: {r['records']:,} records, writes refused "
            f"for {r['freeze_seconds']:.2f} s"
        )
    renderer.note("compacting the app: its memory does not shrink after the split by itself")
    shrunk = _ok("compact", await engine.submit(compact.request(source, name="demo")))
    before, after = shrunk.details.get("memory_before"), shrunk.details.get("memory_after")
    renderer.note(f"memory_size {before:,} → {after:,} bytes")
    return {
        "routing": done.details.get("routing"),
        "split_seconds": round(done.elapsed, 2),
        "max_freeze_seconds": max((r["freeze_seconds"] or 0.0 for r in ranges), default=None),
        "source_before": done.details.get("source_before"),
        "source_after": done.details.get("source_after"),
        "memory_before": before,
        "memory_after": after,
    }


def _ok(name: str, outcome: JobOutcome) -> JobOutcome:
    if not outcome.ok:
        error = JobFailed(f"the demo's {name} job failed: {outcome.error}")
        error.exit_code = outcome.exit_code
        raise error
    return outcome
