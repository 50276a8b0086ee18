"""Performs the effects of the split machine (:mod:`replicator.flows.split.machine`).

Every call goes through the engine's :class:`~replicator.calls.CallRunner`
(limits, retries, metrics).  Records travel on the relay path: pages of
``icrp_export_range`` (queries, sized by the adaptive sizer of the write
path, since each page becomes one ``icrp_import_records`` ingress message)
are written into the shard.  The canisters are the truth on resume: a
shard's journal head is where following continues, a shard that is
``primary`` already was cut over, the source's fences and routing table
are set idempotently (the same set again changes nothing).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import Change, Fence, KeyRange, RangeDigest, Routing
from canister_iface.icrp_types import Route as IcrpRoute
from canister_iface.principal import Principal
from replicator.calls import CallCost
from replicator.chunking import Path, shrink_reason
from replicator.errors import JobFailed
from replicator.flow import RunContext, RunReport
from replicator.flows.split.machine import (
    ClearShard,
    Copied,
    CopyProgress,
    CopyRanges,
    CopyTask,
    CutOver,
    CutOverDone,
    CutOverFailed,
    Followed,
    FollowProgress,
    FollowRanges,
    FollowTask,
    FreedSome,
    FreeRange,
    Measure,
    Measured,
    MeasureSource,
    ReleaseShards,
    ResetShard,
    Route,
    ShardCleared,
    ShardReset,
    ShardsReleased,
    detail_of,
    routes_of,
)
from replicator.flows.split.metrics import SplitMetrics
from replicator.flows.split.ranges import Span
from replicator.job import CanisterRef, JobState
from replicator.pump import TransferTooLarge
from replicator.service import current_job

T = TypeVar("T")

# One round of a copy moves about this much per range before the cursor is
# saved: a crash repeats at most one round (imports are idempotent puts).
ROUND_BYTES = 8 * 1024 * 1024
# A round of following stops after this long, so progress is saved.
FOLLOW_ROUND_SECONDS = 5.0
# A range is caught up when at most this many changes of the source are not
# yet covered; the cut-over drains the rest while the range is fenced.
CAUGHT_UP_CHANGES = 64
# Changes per icrp_changes call.
CHANGES_BYTES = 1_000_000
# icrp_delete_range deletes at most this many records per call.
DELETE_RECORDS = 10_000
DELETE_CALLS_PER_ROUND = 20
# At cut-over a range is compared in parts of about this many bytes, in parallel:
# the comparison happens while writes to the range are refused.
DIGEST_PART_BYTES = 1024 * 1024
EVERYTHING = KeyRange()


def key_range(span: Span) -> KeyRange:
    return KeyRange(span.lower, span.upper)


class SplitPerformer:
    """One run of a split job."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.job = ctx.job
        if not isinstance(self.job.source, CanisterRef):
            raise JobFailed(f"a split reads from a canister, not {self.job.source}")
        self.network = self.job.source.network
        self.source_id = self.job.source.canister_id
        self.agent = ctx.calls.agent_for(self.network)
        self.runner = ctx.calls.runner_for(self.network)
        self.metrics = ctx.metrics.extension(SplitMetrics)
        # The metrics label: the config's job name under `serve`, else a fixed one
        # (a job id per command would make a series per run).
        self.name = str(self.job.options.get("name") or current_job.get() or "command-line")
        self.records_copied = 0
        self.bytes_copied = 0
        self._sizer = ctx.calls.sizer_for(Path.WRITE, None)
        self.metrics.started(self.name)

    async def perform(self, effect: object) -> object | None:
        match effect:
            case MeasureSource(when=when):
                total = await self._digest(self.source_id, EVERYTHING)
                return Measured(when, Measure(total.records, total.bytes))
            case CopyRanges(tasks=tasks):
                done = await asyncio.gather(*(self._copy(t) for t in tasks))
                return Copied(tuple(done))
            case ClearShard(index=index, span=span, shard=shard):
                await self._clear(span, shard)
                return ShardCleared(index)
            case ResetShard(index=index, shard=shard, since=since):
                icrp = self._icrp(shard)
                await self._call(shard, "icrp_reset_journal", lambda: icrp.reset_journal(since))
                return ShardReset(index)
            case FollowRanges(tasks=tasks):
                followed = await asyncio.gather(*(self._follow(t) for t in tasks))
                return Followed(tuple(followed))
            case CutOver():
                return await self._cut_over(effect)
            case FreeRange(index=index, span=span, cursor=cursor):
                return await self._free(index, span, cursor)
            case ReleaseShards(shards=shards):
                await self._release(shards)
                return ShardsReleased()
        raise TypeError(f"not an effect of a split: {effect!r}")

    def report(self, state: JobState) -> RunReport:
        detail = detail_of(state) if state.detail else None
        if detail is None:
            return RunReport(route="relay")
        ranges = [
            {
                "range": r.span.to_payload(),
                "shard": r.shard,
                "step": r.step,
                "records": r.records,
                "bytes": r.nbytes,
                "digest": None if r.digest is None else r.digest.hex(),
                "copied_records": r.copied_records,
                "copied_bytes": r.copied_bytes,
                "freeze_seconds": r.freeze_seconds,
                "freed_records": r.freed_records,
                "freed_bytes": r.freed_bytes,
            }
            for r in detail.ranges
        ]
        routes = [{"range": r.span.to_payload(), "canister": r.canister} for r in routes_of(state)]
        details: dict[str, Any] = {
            "kept": detail.kept.to_payload(),
            "ranges": ranges,
            "routing": routes,
            "source_before": None if detail.before is None else detail.before.to_payload(),
            "source_after": None if detail.after is None else detail.after.to_payload(),
            "records_copied": self.records_copied,
        }
        return RunReport(route="relay", bytes_copied=self.bytes_copied, details=details)

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ calls

    def _icrp(self, canister: str) -> IcrpClient:
        return IcrpClient(self.agent, Principal.from_text(canister))

    async def _call(
        self,
        canister: str,
        method: str,
        perform: Callable[[], Awaitable[T]],
        *,
        cost: CallCost = "update",
        nbytes: int = 0,
    ) -> T:
        return await self.runner.call(canister, method, perform, cost=cost, nbytes=nbytes)

    async def _head(self, canister: str) -> int:
        icrp = self._icrp(canister)
        info = await self._call(canister, "icrp_info", icrp.info, cost="query")
        if info.journal is None:
            raise JobFailed(
                f"canister {canister} does not show its journal to this identity: make it a "
                "controller or a trusted peer"
            )
        return info.journal.head_seq

    async def _digest(self, canister: str, keys: KeyRange) -> RangeDigest:
        icrp = self._icrp(canister)
        total, cursor = RangeDigest(), None
        while True:
            page = await self._call(
                canister,
                "icrp_range_digest",
                lambda c=cursor: icrp.range_digest(keys, c),  # type: ignore[misc]
                cost="query",
            )
            total += page
            if page.next_cursor is None:
                return total
            cursor = page.next_cursor

    async def _parts(self, span: Span) -> list[KeyRange]:
        """``span`` cut on bucket boundaries of about ``DIGEST_PART_BYTES`` (covering it all)."""
        source, keys = self._icrp(self.source_id), key_range(span)
        bounds: list[bytes] = []
        cursor: bytes | None = None
        while True:
            page = await self._call(
                self.source_id,
                "icrp_key_distribution",
                lambda c=cursor: source.key_distribution(keys, c, DIGEST_PART_BYTES),  # type: ignore[misc]
                cost="query",
            )
            bounds.extend(b.first_key for b in page.buckets if b.first_key > span.lower)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        edges: list[bytes | None] = [span.lower, *sorted(set(bounds)), span.upper]
        return [KeyRange(lo or b"", hi) for lo, hi in itertools.pairwise(edges)]

    # ------------------------------------------------------------------- copy

    async def _copy(self, task: CopyTask) -> CopyProgress:
        if task.since is None:  # noted before any record of the range is imported
            return CopyProgress(task.index, await self._head(self.source_id), None, False)
        source, shard = self._icrp(self.source_id), self._icrp(task.shard)
        keys = key_range(task.span)
        cursor, records, nbytes = task.cursor, 0, 0
        while nbytes < ROUND_BYTES:
            batch = await self._page(source, keys, cursor, shard, task.shard)
            if batch is None:
                continue  # smaller pages now
            sent, size, cursor = batch
            records += sent
            nbytes += size
            self._copied(sent, size)
            if cursor is None:
                return CopyProgress(task.index, task.since, None, True, records, nbytes)
        return CopyProgress(task.index, task.since, cursor, False, records, nbytes)

    async def _page(
        self,
        source: IcrpClient,
        keys: KeyRange,
        cursor: bytes | None,
        shard: IcrpClient,
        shard_id: str,
    ) -> tuple[int, int, bytes | None] | None:
        """One page source → shard: (records, bytes, next cursor); None: size shrunk, again."""
        want = min(self._sizer.current, ROUND_BYTES)
        batch = await self._call(
            self.source_id,
            "icrp_export_range",
            lambda: source.export_range(keys, cursor, want),
            cost="query",
            nbytes=want,
        )
        size = sum(len(r.key) + len(r.value) for r in batch.records)
        if batch.records:
            try:
                await self._call(
                    shard_id,
                    "icrp_import_records",
                    lambda: shard.import_records(batch.records),
                    nbytes=size,
                )
            except ic.IcError as exc:
                if shrink_reason(exc) is None:
                    raise
                if not self._sizer.size.on_too_large(want):
                    raise TransferTooLarge(
                        f"a page of {size:,} bytes cannot be imported even at the smallest size"
                    ) from exc
                return None
            self._sizer.size.on_success()
        return len(batch.records), size, batch.next_cursor

    def _copied(self, records: int, nbytes: int) -> None:
        self.records_copied += records
        self.bytes_copied += nbytes
        self.metrics.copied(self.name, records, nbytes)
        self.ctx.metrics.record_copied("split", "relay", nbytes, 0)
        self.ctx.advanced(nbytes)

    async def _clear(self, span: Span, shard: str) -> None:
        """Empty the shard's copy of ``span`` (a standby refuses deletes: primary meanwhile)."""
        icrp = self._icrp(shard)
        await self._call(shard, "icrp_set_mode", lambda: icrp.set_mode("primary"))
        await self._delete_all(shard, span)
        await self._call(shard, "icrp_set_mode", lambda: icrp.set_mode("standby"))
        self.ctx.note(f"the journal no longer reaches back: copying {span} again")

    async def _delete_all(self, canister: str, span: Span) -> None:
        icrp, keys, cursor = self._icrp(canister), key_range(span), None
        while True:
            step = await self._call(
                canister,
                "icrp_delete_range",
                lambda c=cursor: icrp.delete_range(keys, c, DELETE_RECORDS),  # type: ignore[misc]
            )
            if step.next_cursor is None:
                return
            cursor = step.next_cursor

    # ----------------------------------------------------------------- follow

    async def _follow(self, task: FollowTask) -> FollowProgress:
        applied = await self._head(task.shard)
        deadline = time.monotonic() + FOLLOW_ROUND_SECONDS
        try:
            while True:
                applied, behind = await self._follow_once(task.span, task.shard, applied)
                if behind <= CAUGHT_UP_CHANGES:
                    return FollowProgress(task.index, applied, True)
                if time.monotonic() >= deadline:
                    return FollowProgress(task.index, applied, False)
        except ie.TooOld:
            return FollowProgress(task.index, applied, False, too_old=True)

    async def _follow_once(
        self, span: Span, shard: str, applied: int, dirty: Dirty | None = None
    ) -> tuple[int, int]:
        """One batch of the range's changes into the shard: (applied now, source head - applied).

        ``dirty`` collects the keys the batch changed.
        """
        source, target, keys = self._icrp(self.source_id), self._icrp(shard), key_range(span)
        batch = await self._call(
            self.source_id,
            "icrp_changes",
            lambda: source.changes(applied, CHANGES_BYTES, keys),
            cost="query",
            nbytes=CHANGES_BYTES,
        )
        if dirty is not None:
            dirty.add(batch.changes)
        if batch.to_seq > applied:
            size = sum(c.size for c in batch.changes)
            applied = await self._call(
                shard, "icrp_apply", lambda: target.apply(batch), nbytes=size
            )
            self.metrics.changes_applied(self.name, len(batch.changes))
        return applied, max(0, batch.head_seq - applied)

    async def _drain(
        self, span: Span, shard: str, until: int, applied: int, dirty: Dirty | None = None
    ) -> int:
        """Apply the range's changes until the shard reached ``until``; where it is then."""
        while applied < until:
            applied, _ = await self._follow_once(span, shard, applied, dirty)
        return applied

    async def _changed(self, span: Span, since: int, until: int, dirty: Dirty) -> None:
        """Collect the keys of ``span`` the source changed in (``since``, ``until``]."""
        source, keys = self._icrp(self.source_id), key_range(span)
        while since < until:
            batch = await self._call(
                self.source_id,
                "icrp_changes",
                lambda s=since: source.changes(s, CHANGES_BYTES, keys),  # type: ignore[misc]
                cost="query",
            )
            dirty.add(batch.changes)
            if batch.to_seq <= since:
                return
            since = batch.to_seq

    # ---------------------------------------------------------------- cut-over

    async def _cut_over(self, cut: CutOver) -> CutOverDone | CutOverFailed | Followed:
        try:
            return await self._cut_over_once(cut)
        except ie.TooOld:
            # The journal no longer reaches back to the shard: the source takes the
            # range back (no fence) and the range is copied again.
            await self._fence(tuple(f for f in cut.fences if f.span != cut.span))
            return Followed((FollowProgress(cut.index, 0, False, too_old=True),))

    async def _cut_over_once(self, cut: CutOver) -> CutOverDone | CutOverFailed:
        shard = self._icrp(cut.shard)
        keys = key_range(cut.span)
        info = await self._call(cut.shard, "icrp_info", shard.info, cost="query")
        if info.mode is not None and info.mode.mode == "primary":
            # An earlier run compared the range and made the shard primary: publish.
            await self._publish(cut.routes)
            fenced_at = await self._fence(cut.fences)
            total = await self._digest(self.source_id, keys)
            return CutOverDone(cut.index, fenced_at, total.records, total.bytes, total.digest, 0.0)
        # Compared part by part before the fence; behind it, only the parts whose
        # keys changed since (or that differed) are compared again.
        check = await self._precheck(cut)
        fenced_at = await self._fence(cut.fences)
        # Writes to the range are refused from here (the fence took effect when the
        # call was executed, just before it answered) until the shard takes them.
        started = time.monotonic()
        await self._drain(cut.span, cut.shard, fenced_at, check.applied, check.dirty)
        in_source, in_shard = await self._recheck(cut.shard, check)
        if not in_source.same_records(in_shard):
            await self._fence(tuple(f for f in cut.fences if f.span != cut.span))
            self.metrics.cutover(self.name, "mismatch")
            return CutOverFailed(
                cut.index,
                f"{in_source.records:,} records / {in_source.bytes:,} bytes in the source, "
                f"{in_shard.records:,} / {in_shard.bytes:,} in the shard, digests "
                f"{in_source.digest.hex()[:16]}… and {in_shard.digest.hex()[:16]}…",
            )
        await self._call(cut.shard, "icrp_set_mode", lambda: shard.set_mode("primary"))
        frozen = time.monotonic() - started
        await self._publish(cut.routes)
        self.metrics.cutover(self.name, "ok", frozen)
        self.ctx.note(
            f"{cut.span} now belongs to {cut.shard}: {in_source.records:,} records, "
            f"writes refused for {frozen:.3f} s"
        )
        return CutOverDone(
            cut.index, fenced_at, in_source.records, in_source.bytes, in_source.digest, frozen
        )

    async def _precheck(self, cut: CutOver) -> _Check:
        """Both sides' digests of every part, comparable at the shard's sequence.

        The source's parts are read first (pages at sequences from ``low`` on),
        then the shard is brought past every page's sequence and read (standby:
        only this job writes to it).  A part no key of which changes after
        ``low`` has the same digest at the fence on the source, and on the shard
        (its only changes are the source's), as read here.
        """
        head, applied = await asyncio.gather(self._head(self.source_id), self._head(cut.shard))
        applied = await self._drain(cut.span, cut.shard, head, applied)
        parts = await self._parts(cut.span)
        pages = await asyncio.gather(*(self._digest_low(self.source_id, p) for p in parts))
        low = min(seq for _, seq, _ in pages)
        high = max(top for _, _, top in pages)
        dirty = Dirty()
        await self._changed(cut.span, low, applied, dirty)  # already applied: keys only
        applied = await self._drain(cut.span, cut.shard, max(high, applied), applied, dirty)
        shard = await asyncio.gather(*(self._digest(cut.shard, p) for p in parts))
        source = [d for d, _, _ in pages]
        return _Check(parts, source, list(shard), applied, dirty)

    async def _recheck(self, shard: str, check: _Check) -> tuple[RangeDigest, RangeDigest]:
        """Both sides' digests of the whole range at the fence (parts read again where needed)."""
        again = [
            i
            for i, part in enumerate(check.parts)
            if check.dirty.touches(part) or not check.source[i].same_records(check.shard[i])
        ]
        fresh = await asyncio.gather(
            *(self._digest(self.source_id, check.parts[i]) for i in again),
            *(self._digest(shard, check.parts[i]) for i in again),
        )
        source, target = list(check.source), list(check.shard)
        for n, i in enumerate(again):
            source[i], target[i] = fresh[n], fresh[len(again) + n]
        return _sum(source), _sum(target)

    async def _digest_low(self, canister: str, keys: KeyRange) -> tuple[RangeDigest, int, int]:
        """The digest of ``keys`` and the lowest and highest sequence of its pages."""
        icrp = self._icrp(canister)
        total, cursor, seqs = RangeDigest(), None, []
        while True:
            page = await self._call(
                canister,
                "icrp_range_digest",
                lambda c=cursor: icrp.range_digest(keys, c),  # type: ignore[misc]
                cost="query",
            )
            total += page
            seqs.append(page.journal_seq)
            if page.next_cursor is None:
                return total, min(seqs), max(seqs)
            cursor = page.next_cursor

    async def _fence(self, fences: Sequence[Route]) -> int:
        source = self._icrp(self.source_id)
        wanted = [Fence(key_range(f.span), Principal.from_text(f.canister)) for f in fences]
        return await self._call(
            self.source_id, "icrp_set_fences", lambda: source.set_fences(wanted)
        )

    async def _publish(self, routes: Sequence[Route]) -> None:
        """Set the source's routing table to ``routes`` unless it holds them already."""
        canister = self.source_id
        icrp = self._icrp(canister)
        wanted = tuple(
            IcrpRoute(key_range(r.span), Principal.from_text(r.canister)) for r in routes
        )
        current = await self._call(canister, "icrp_routing", icrp.routing, cost="query")
        if tuple(current.routes) == wanted:
            return
        table = Routing(current.version + 1, wanted)
        await self._call(canister, "icrp_set_routing", lambda: icrp.set_routing(table))

    # ------------------------------------------------------------------- free

    async def _free(self, index: int, span: Span, cursor: bytes | None) -> FreedSome:
        source, keys = self._icrp(self.source_id), key_range(span)
        records = nbytes = 0
        for _ in range(DELETE_CALLS_PER_ROUND):
            step = await self._call(
                self.source_id,
                "icrp_delete_range",
                lambda c=cursor: source.delete_range(keys, c, DELETE_RECORDS),  # type: ignore[misc]
            )
            records += step.deleted
            nbytes += step.bytes or 0
            self.metrics.freed(self.name, step.bytes or 0)
            cursor = step.next_cursor
            if cursor is None:
                return FreedSome(index, None, records, nbytes, True)
        self.ctx.note(f"freeing {span} in the source: {records:,} records deleted in this step")
        return FreedSome(index, cursor, records, nbytes, False)

    async def _release(self, shards: Sequence[str]) -> None:
        """Give every shard the source's routing table; the registry forgets them."""
        source = self._icrp(self.source_id)
        table = await self._call(self.source_id, "icrp_routing", source.routing, cost="query")
        for shard in shards:
            icrp = self._icrp(shard)
            current = await self._call(shard, "icrp_routing", icrp.routing, cost="query")
            if current != table:
                await self._call(
                    shard,
                    "icrp_set_routing",
                    lambda i=icrp: i.set_routing(table),  # type: ignore[misc]
                )
        registry = self.ctx.store.registry
        for entry in await registry.entries():
            if entry.network == self.network and entry.canister in shards:
                await registry.forget(entry.network, entry.source, entry.role)


class Dirty:
    """Keys changed in a stretch of the journal (an application change touches every key)."""

    def __init__(self) -> None:
        self.keys: set[bytes] = set()
        self.everything = False

    def add(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.op.kind == "app":
                self.everything = True
            else:
                self.keys.add(change.op.key)

    def touches(self, part: KeyRange) -> bool:
        return self.everything or any(part.contains(k) for k in self.keys)


@dataclass
class _Check:
    """A range compared part by part before its fence."""

    parts: list[KeyRange]
    source: list[RangeDigest]
    shard: list[RangeDigest]
    applied: int  # the shard's sequence when it was read
    dirty: Dirty  # keys changed since the source's parts were read


def _sum(digests: Iterable[RangeDigest]) -> RangeDigest:
    total = RangeDigest()
    for d in digests:
        total += d
    return total
