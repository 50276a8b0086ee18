"""The state machine of ``split``: pure (see :mod:`replicator.machine`).

A split moves every part of the source's key space but the first into a
shard of its own (the planner chose the parts and created the shards).
Each moved part (a *range*) walks these steps, recorded per range in the
job's ``detail``, so that a run that dies continues where it stopped::

    copy ─→ reset ─→ follow ─→ cutover ─→ free ─→ done
      ↑                 │
      └──── clear ←─────┘  (the journal no longer reaches back: copy again)

- ``copy``: the first round only notes ``since``, the source's journal head
  *before* any record of the range is imported, then pages of
  ``icrp_export_range`` go into the shard (``icrp_import_records``), the
  cursor saved after every round.  Every copied record is therefore at
  least as new as ``since``, and replaying the journal from ``since`` ends
  at the source's state (``icrp.did``, "A split, step by step").
- ``reset``: ``icrp_reset_journal(since)`` on the shard: it now counts in
  the source's sequence numbers.
- ``follow``: journal changes of the range → the shard until it is close
  to the head (every range in parallel).
- ``cutover`` (one range at a time): fence the range on the source
  (writes answer ``OutOfRange`` naming the shard), apply the last changes,
  compare record count and digest of the range on both, make the shard
  primary and publish the routing table.  A mismatch removes the fence
  again and fails the job: the source still owns the range.
- ``free``: ``icrp_delete_range`` on the source, in steps.

Ranges copy and follow in parallel; cut-overs go one by one (each replaces
the source's set of fences).  Before the first copy and after the last
free the source's live data is measured (``before`` / ``after``); at the
end the shards are released from the creation registry.

Phases: ``pending → copying → catching_up → cutting_over → freeing →
done``; ``Fail`` / ``Cancel`` as everywhere; ``Start`` resumes from the
recorded steps, and the performer reconciles with what the canisters say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from replicator.errors import EXIT_INTEGRITY, InvalidTransition
from replicator.flows.split.ranges import Span
from replicator.job import JobState, Phase
from replicator.machine import Cancel, Fail, Start, Step, expect, failed, started, stopped

COPYING = "copying"
CATCHING_UP = "catching_up"
CUTTING_OVER = "cutting_over"
FREEING = "freeing"
PHASES = (COPYING, CATCHING_UP, CUTTING_OVER, FREEING)

# The steps of one range, in order.
COPY, CLEAR, RESET, FOLLOW, CUTOVER, FREE, DONE = (
    "copy",
    "clear",
    "reset",
    "follow",
    "cutover",
    "free",
    "done",
)
_ORDER = (COPY, CLEAR, RESET, FOLLOW, CUTOVER, FREE, DONE)


# ------------------------------------------------------------------- detail


@dataclass(frozen=True)
class RangeState:
    """One moved range and how far it got."""

    span: Span
    shard: str  # the canister that will own it
    step: str = COPY
    since: int | None = None  # the source's journal head before the copy began
    cursor: bytes | None = None  # where the copy (or the free) continues
    copied_records: int = 0
    copied_bytes: int = 0
    applied: int | None = None  # the shard's sequence, as last reported
    fenced_at: int | None = None
    records: int | None = None  # verified at cut-over
    nbytes: int | None = None
    digest: bytes | None = None
    freeze_seconds: float | None = None  # writes refused: fence → shard primary
    freed_records: int = 0
    freed_bytes: int = 0

    def to_payload(self) -> dict[str, Any]:
        return {
            "span": self.span.to_payload(),
            "shard": self.shard,
            "step": self.step,
            "since": self.since,
            "cursor": None if self.cursor is None else self.cursor.hex(),
            "copied_records": self.copied_records,
            "copied_bytes": self.copied_bytes,
            "applied": self.applied,
            "fenced_at": self.fenced_at,
            "records": self.records,
            "bytes": self.nbytes,
            "digest": None if self.digest is None else self.digest.hex(),
            "freeze_seconds": self.freeze_seconds,
            "freed_records": self.freed_records,
            "freed_bytes": self.freed_bytes,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> RangeState:
        cursor, digest = data.get("cursor"), data.get("digest")
        return cls(
            span=Span.from_payload(data["span"]),
            shard=str(data["shard"]),
            step=str(data.get("step", COPY)),
            since=_opt_int(data.get("since")),
            cursor=None if cursor is None else bytes.fromhex(cursor),
            copied_records=int(data.get("copied_records", 0)),
            copied_bytes=int(data.get("copied_bytes", 0)),
            applied=_opt_int(data.get("applied")),
            fenced_at=_opt_int(data.get("fenced_at")),
            records=_opt_int(data.get("records")),
            nbytes=_opt_int(data.get("bytes")),
            digest=None if digest is None else bytes.fromhex(digest),
            freeze_seconds=data.get("freeze_seconds"),
            freed_records=int(data.get("freed_records", 0)),
            freed_bytes=int(data.get("freed_bytes", 0)),
        )


@dataclass(frozen=True)
class Measure:
    """The source's live data (records, key and value bytes)."""

    records: int
    nbytes: int

    def to_payload(self) -> list[int]:
        return [self.records, self.nbytes]

    @classmethod
    def from_payload(cls, data: Sequence[int] | None) -> Measure | None:
        return None if data is None else cls(int(data[0]), int(data[1]))


@dataclass(frozen=True)
class SplitDetail:
    """What the machine keeps between runs (``JobState.detail``)."""

    kept: Span  # the part that stays in the source
    ranges: tuple[RangeState, ...]
    before: Measure | None = None
    after: Measure | None = None
    released: bool = False

    @classmethod
    def of(cls, state: JobState) -> SplitDetail:
        data = state.detail
        if "ranges" not in data:
            return plan_detail(state)
        return cls(
            kept=Span.from_payload(data["kept"]),
            ranges=tuple(RangeState.from_payload(r) for r in data["ranges"]),
            before=Measure.from_payload(data.get("before")),
            after=Measure.from_payload(data.get("after")),
            released=bool(data.get("released", False)),
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "kept": self.kept.to_payload(),
            "ranges": [r.to_payload() for r in self.ranges],
            "before": None if self.before is None else self.before.to_payload(),
            "after": None if self.after is None else self.after.to_payload(),
            "released": self.released,
        }

    def with_range(self, index: int, **changes: Any) -> SplitDetail:
        ranges = list(self.ranges)
        ranges[index] = replace(ranges[index], **changes)
        return replace(self, ranges=tuple(ranges))


def plan_detail(state: JobState) -> SplitDetail:
    """The detail of a job that has not started: from its options (set by the planner).

    ``split_at``: the boundaries, hex joined by ``,``; ``shard_canisters``: ids joined by ``,``.
    """
    options = state.job.options
    boundaries = [bytes.fromhex(b) for b in str(options.get("split_at") or "").split(",") if b]
    shards = [s for s in str(options.get("shard_canisters") or "").split(",") if s]
    if not boundaries or len(shards) != len(boundaries):
        raise InvalidTransition(
            f"split job {state.job.id} needs as many shards as boundaries, got "
            f"{len(shards)} shards for {len(boundaries)} boundaries"
        )
    edges: list[bytes | None] = [*boundaries, None]
    ranges = tuple(
        RangeState(Span(lower, upper), shard)
        for lower, upper, shard in zip(boundaries, edges[1:], shards, strict=True)
    )
    return SplitDetail(kept=Span(b"", boundaries[0]), ranges=ranges)


def detail_of(state: JobState) -> SplitDetail:
    """The split detail of ``state`` (planned from the options before the first start)."""
    return SplitDetail.of(state)


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class Measured:
    """The source holds ``measure`` now (``when``: ``before`` or ``after``)."""

    when: str
    measure: Measure


@dataclass(frozen=True)
class CopyProgress:
    """A round of copying one range: the journal head noted, or pages copied."""

    index: int
    since: int
    cursor: bytes | None
    done: bool
    records: int = 0
    nbytes: int = 0


@dataclass(frozen=True)
class Copied:
    progress: tuple[CopyProgress, ...]


@dataclass(frozen=True)
class ShardCleared:
    """The shard holds nothing of range ``index`` any more."""

    index: int


@dataclass(frozen=True)
class ShardReset:
    """The shard's journal continues from the range's ``since``."""

    index: int


@dataclass(frozen=True)
class FollowProgress:
    """How far following range ``index`` got; ``too_old``: its journal is gone."""

    index: int
    applied: int
    caught_up: bool
    too_old: bool = False


@dataclass(frozen=True)
class Followed:
    progress: tuple[FollowProgress, ...]


@dataclass(frozen=True)
class CutOverDone:
    """Range ``index`` belongs to its shard now: fenced, drained, compared, routed."""

    index: int
    fenced_at: int
    records: int
    nbytes: int
    digest: bytes
    freeze_seconds: float


@dataclass(frozen=True)
class CutOverFailed:
    """The shard's copy of range ``index`` differs; the fence was removed again."""

    index: int
    message: str


@dataclass(frozen=True)
class FreedSome:
    """Deletion steps of range ``index`` in the source."""

    index: int
    cursor: bytes | None
    records: int
    nbytes: int
    done: bool


@dataclass(frozen=True)
class ShardsReleased:
    """The shards were taken off the creation registry (the job owns them no more)."""


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class MeasureSource:
    """Count the source's records and bytes → ``Measured(when)``."""

    when: str


@dataclass(frozen=True)
class CopyTask:
    index: int
    span: Span
    shard: str
    since: int | None  # None: note the journal head first (and import nothing)
    cursor: bytes | None


@dataclass(frozen=True)
class CopyRanges:
    """One round of copying for each task, in parallel → ``Copied``."""

    tasks: tuple[CopyTask, ...]


@dataclass(frozen=True)
class ClearShard:
    """Delete range ``index`` from its shard (copied too long ago) → ``ShardCleared``."""

    index: int
    span: Span
    shard: str


@dataclass(frozen=True)
class ResetShard:
    """``icrp_reset_journal(since)`` on the shard → ``ShardReset``."""

    index: int
    shard: str
    since: int


@dataclass(frozen=True)
class FollowTask:
    index: int
    span: Span
    shard: str
    since: int  # where the shard's journal was reset (its own head says more)


@dataclass(frozen=True)
class FollowRanges:
    """Apply the journal of each range to its shard until close to the head → ``Followed``."""

    tasks: tuple[FollowTask, ...]


@dataclass(frozen=True)
class Route:
    span: Span
    canister: str


@dataclass(frozen=True)
class CutOver:
    """Cut range ``index`` over → ``CutOverDone`` or ``CutOverFailed``.

    ``fences``: every range that is fenced once this one is (with its
    owner); ``routes``: the routing table once this one is cut over.
    """

    index: int
    span: Span
    shard: str
    fences: tuple[Route, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class FreeRange:
    """Delete steps of range ``index`` in the source → ``FreedSome``."""

    index: int
    span: Span
    cursor: bytes | None


@dataclass(frozen=True)
class ReleaseShards:
    """Forget the shards in the creation registry → ``ShardsReleased``."""

    shards: tuple[str, ...]


# ------------------------------------------------------------------- advance


def advance(state: JobState, event: object) -> Step:
    """The next state and effects of a split job."""
    match event:
        case Start():
            detail = detail_of(state)
            return _next(started(state, _phase(detail)), detail)
        case Fail() | Cancel():
            return stopped(state, event)
    expect(state, event, PHASES)
    detail = detail_of(state)
    if isinstance(event, CutOverFailed):
        span = detail.ranges[event.index].span
        text = f"range {span} differs between the source and its shard: {event.message}"
        return failed(_with(state, detail), text + "; the source still owns it", EXIT_INTEGRITY)
    return _next(state, _applied(detail, event))


def _applied(detail: SplitDetail, event: object) -> SplitDetail:
    """``detail`` with what ``event`` reports."""
    match event:
        case Measured(when="before", measure=measure):
            return replace(detail, before=measure)
        case Measured(when="after", measure=measure):
            return replace(detail, after=measure)
        case Copied(progress=progress):
            for p in progress:
                detail = _copied(detail, p)
            return detail
        case ShardCleared(index=index):
            return detail.with_range(index, step=COPY, since=None, cursor=None)
        case ShardReset(index=index):
            return detail.with_range(index, step=FOLLOW, applied=detail.ranges[index].since)
        case Followed(progress=progress):
            for f in progress:
                detail = _followed(detail, f)
            return detail
        case CutOverDone():
            return detail.with_range(
                event.index,
                step=FREE,
                cursor=None,
                fenced_at=event.fenced_at,
                records=event.records,
                nbytes=event.nbytes,
                digest=event.digest,
                freeze_seconds=event.freeze_seconds,
            )
        case FreedSome():
            r = detail.ranges[event.index]
            return detail.with_range(
                event.index,
                step=DONE if event.done else FREE,
                cursor=event.cursor,
                freed_records=r.freed_records + event.records,
                freed_bytes=r.freed_bytes + event.nbytes,
            )
        case ShardsReleased():
            return replace(detail, released=True)
    raise InvalidTransition(f"not an event of a split job: {event!r}")


def _copied(detail: SplitDetail, p: CopyProgress) -> SplitDetail:
    r = detail.ranges[p.index]
    if r.step != COPY:
        raise InvalidTransition(f"range {r.span} is at {r.step}, not copying")
    return detail.with_range(
        p.index,
        step=RESET if p.done else COPY,
        since=p.since,
        cursor=None if p.done else p.cursor,
        copied_records=r.copied_records + p.records,
        copied_bytes=r.copied_bytes + p.nbytes,
    )


def _followed(detail: SplitDetail, f: FollowProgress) -> SplitDetail:
    if f.too_old:  # the copy is too old to catch up with: start that range over
        return detail.with_range(f.index, step=CLEAR, applied=None)
    return detail.with_range(f.index, step=CUTOVER if f.caught_up else FOLLOW, applied=f.applied)


def _next(state: JobState, detail: SplitDetail) -> Step:
    """Save ``detail`` and ask for the work of the earliest unfinished step."""
    state = _with(state, detail, phase=_phase(detail))
    if state.phase == Phase.DONE:
        return Step(state)
    return Step(state, (_effect(state, detail),))


def _effect(state: JobState, detail: SplitDetail) -> object:
    if detail.before is None:
        return MeasureSource("before")
    ranges = list(enumerate(detail.ranges))
    copying = [CopyTask(i, r.span, r.shard, r.since, r.cursor) for i, r in ranges if r.step == COPY]
    if copying:
        return CopyRanges(tuple(copying))
    for i, r in ranges:
        if r.step == CLEAR:
            return ClearShard(i, r.span, r.shard)
        if r.step == RESET:
            return ResetShard(i, r.shard, _since(r))
    following = [FollowTask(i, r.span, r.shard, _since(r)) for i, r in ranges if r.step == FOLLOW]
    if following:
        return FollowRanges(tuple(following))
    for i, r in ranges:
        if r.step == CUTOVER:
            return _cutover(state, detail, i)
    for i, r in ranges:
        if r.step == FREE:
            return FreeRange(i, r.span, r.cursor)
    if detail.after is None:
        return MeasureSource("after")
    return ReleaseShards(tuple(r.shard for r in detail.ranges))


def _cutover(state: JobState, detail: SplitDetail, index: int) -> CutOver:
    source = _source_id(state)
    moved = {i for i, r in enumerate(detail.ranges) if r.step in (FREE, DONE)} | {index}
    fences = tuple(Route(r.span, r.shard) for i, r in enumerate(detail.ranges) if i in moved)
    routes = (
        Route(detail.kept, source),
        *tuple(
            Route(r.span, r.shard if i in moved else source) for i, r in enumerate(detail.ranges)
        ),
    )
    r = detail.ranges[index]
    return CutOver(index, r.span, r.shard, fences, routes)


def routes_of(state: JobState) -> tuple[Route, ...]:
    """The routing table as far as the job got (ranges not cut over stay with the source)."""
    detail = detail_of(state)
    source = _source_id(state)
    return (
        Route(detail.kept, source),
        *tuple(Route(r.span, r.shard if r.step in (FREE, DONE) else source) for r in detail.ranges),
    )


def _phase(detail: SplitDetail) -> str:
    steps = {r.step for r in detail.ranges}
    if steps & {COPY, CLEAR, RESET} or detail.before is None:
        return COPYING
    if FOLLOW in steps:
        return CATCHING_UP
    if CUTOVER in steps:
        return CUTTING_OVER
    if FREE in steps or detail.after is None or not detail.released:
        return FREEING
    return Phase.DONE


def _since(r: RangeState) -> int:
    if r.since is None:
        raise InvalidTransition(f"range {r.span} has no journal start recorded")
    return r.since


def _source_id(state: JobState) -> str:
    source = state.job.source
    return str(getattr(source, "canister_id", source))


def _with(state: JobState, detail: SplitDetail, **changes: Any) -> JobState:
    return replace(state, detail=detail.to_payload(), **changes)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def step_order(step: str) -> int:
    """Where ``step`` lies in a range's walk (for reports)."""
    return _ORDER.index(step)
