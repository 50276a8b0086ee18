"""Which snapshots to keep: restic's retention policy, rule for rule.

This follows ``restic forget`` (``internal/data/snapshot_policy.go``, restic
0.18): snapshots are taken newest first; each ``--keep-<unit> N`` rule keeps
the newest snapshot of each of the last N calendar hours / days / ISO weeks /
months / years that have a snapshot (``--keep-last N``: the newest N), and,
while a rule still has count left when the oldest snapshot is reached, that
oldest one too ("oldest daily snapshot").  ``-1`` means unlimited.
``--keep-within D`` keeps everything within D of the *newest* snapshot (not
of now; snapshots in the future are ignored when finding the newest), and
``--keep-within-<unit> D`` keeps one per unit within D.  ``--keep-tag``
keeps snapshots carrying all tags of one of the lists.  A snapshot kept by
any rule is kept, and every rule that kept it is named, as restic's
``forget`` shows them.  A policy with no rule keeps everything (restic
refuses to forget with an empty policy).

Calendar units are taken in one time zone (UTC by default; pass the local
zone to group by local days as restic does).

This module is pure: it decides over anything with a time and tags, and
:meth:`Repository.prune` applies it per (network, canister) group.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_T = TypeVar("_T")
UNLIMITED = -1
_DURATION = re.compile(r"(\d+)([ymdh])")


@dataclass(frozen=True)
class Duration:
    """Years, months, days and hours, as restic writes them: ``2y5m7d3h``."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """``1y2m3d4h`` (any subset, in any order); ``ValueError`` saying what is wrong."""
        spec = text.strip()
        parts = _DURATION.findall(spec)
        if not spec or "".join(n + u for n, u in parts) != spec:
            raise ValueError(
                f"{text!r} is not a duration: write a number of years, months, days and hours "
                "such as '7d', '1m', '2y5m7d3h' (there is no 'w': use '7d')"
            )
        values = {"y": 0, "m": 0, "d": 0, "h": 0}
        for number, unit in parts:
            values[unit] += int(number)
        return cls(values["y"], values["m"], values["d"], values["h"])

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, when: dt.datetime) -> dt.datetime:
        """``when`` minus this duration, as Go's ``AddDate(-y, -m, -d).Add(-h)`` computes it."""
        months = when.month - 1 - self.months
        year = when.year - self.years + months // 12
        try:
            first = when.replace(year=year, month=months % 12 + 1, day=1)
            shifted = first + dt.timedelta(days=when.day - 1 - self.days)
            return shifted.astimezone(dt.UTC) - dt.timedelta(hours=self.hours)
        except (ValueError, OverflowError):
            return dt.datetime.min.replace(tzinfo=dt.UTC)  # before every snapshot

    def __str__(self) -> str:
        text = "".join(
            f"{n}{u}"
            for n, u in ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
            if n
        )
        return text or "0h"


@dataclass(frozen=True)
class Policy:
    """The ``--keep-*`` rules (0: rule off, ``UNLIMITED``: keep all of that unit)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    within_hourly: Duration | None = None
    within_daily: Duration | None = None
    within_weekly: Duration | None = None
    within_monthly: Duration | None = None
    within_yearly: Duration | None = None
    tags: tuple[tuple[str, ...], ...] = ()  # keep-tag lists: all tags of one list

    def __post_init__(self) -> None:
        for name, count in self._counts():
            if count < UNLIMITED:
                raise ValueError(f"keep-{name} must be >= 0 or -1 (unlimited), got {count}")

    def _counts(self) -> list[tuple[str, int]]:
        return [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]

    def _withins(self) -> list[tuple[str, Duration | None]]:
        return [
            ("hourly", self.within_hourly),
            ("daily", self.within_daily),
            ("weekly", self.within_weekly),
            ("monthly", self.within_monthly),
            ("yearly", self.within_yearly),
        ]

    @property
    def empty(self) -> bool:
        """No rule at all: such a policy keeps every snapshot."""
        return (
            all(count == 0 for _, count in self._counts())
            and all(d is None or d.zero for _, d in self._withins())
            and (self.within is None or self.within.zero)
            and not self.tags
        )

    def __str__(self) -> str:
        """In restic's words: ``keep 7 daily, 4 weekly snapshots and all snapshots within 1y…``."""
        keeps = [
            f"{'all' if count == UNLIMITED else count} {'latest' if name == 'last' else name}"
            for name, count in self._counts()
            if count
        ]
        text = f"{', '.join(keeps)} snapshots" if keeps else ""
        withins = [
            f"{name} snapshots within {d}" for name, d in self._withins() if d and not d.zero
        ]
        if withins:
            text = ", ".join([t for t in (text, *withins) if t])
        if self.tags:
            lists = " or ".join(",".join(t) or "''" for t in self.tags)
            text += (" and " if text else "") + f"all snapshots with tags {lists}"
        if self.within and not self.within.zero:
            text += (" and " if text else "") + f"all snapshots within {self.within} of the newest"
        return f"keep {text}" if text else "keep everything (no rule given)"


@dataclass(frozen=True)
class Decision(Generic[_T]):
    """What the policy does with one snapshot, and why."""

    item: _T
    time: dt.datetime
    keep: bool
    reasons: tuple[str, ...] = ()  # every rule that kept it, in restic's words
    counters: dict[str, int] = field(default_factory=dict)  # counts left after this one


@dataclass
class _Bucket:
    count: int
    unit: Callable[[dt.datetime, int], object]
    reason: str
    last: object = None


def _hour(d: dt.datetime, _: int) -> object:
    return (d.year, d.month, d.day, d.hour)


def _day(d: dt.datetime, _: int) -> object:
    return (d.year, d.month, d.day)


def _week(d: dt.datetime, _: int) -> object:
    iso = d.isocalendar()  # weeks run Monday to Sunday, numbered in their ISO year
    return (iso.year, iso.week)


def _month(d: dt.datetime, _: int) -> object:
    return (d.year, d.month)


def _year(d: dt.datetime, _: int) -> object:
    return d.year


def _each(_: dt.datetime, nr: int) -> object:
    return nr


_UNITS = {"hourly": _hour, "daily": _day, "weekly": _week, "monthly": _month, "yearly": _year}


def apply_policy(
    items: Sequence[_T],
    policy: Policy,
    *,
    time_of: Callable[[_T], dt.datetime],
    tags_of: Callable[[_T], Sequence[str]] = lambda _: (),
    now: dt.datetime | None = None,
    tz: dt.tzinfo = dt.UTC,
) -> list[Decision[_T]]:
    """One decision per item, newest first (items of equal time keep their order).

    An empty policy keeps everything, with the reason ``no policy``.
    """
    ordered = sorted(items, key=time_of, reverse=True)  # stable, like restic's sort.Stable
    if policy.empty:
        return [Decision(i, time_of(i), True, ("no policy",)) for i in ordered]
    if not ordered:
        return []
    local = [time_of(i).astimezone(tz) for i in ordered]
    now = now or dt.datetime.now(dt.UTC)
    # The newest snapshot that is not in the future; with none, every window
    # reaches back past all of them (as restic's zero time does).
    latest = max((t for t in local if t < now), default=None)
    buckets = [
        _Bucket(policy.last, _each, "last snapshot"),
        *(_Bucket(count, _UNITS[name], f"{name} snapshot") for name, count in policy._counts()[1:]),
    ]
    withins = [
        (_Bucket(0, _UNITS[name], f"{name} within {d}"), d)
        for name, d in policy._withins()
        if d is not None and not d.zero
    ]
    oldest = len(ordered) - 1
    decisions = []
    for nr, (item, when) in enumerate(zip(ordered, local, strict=True)):
        reasons = [f"has tags [{', '.join(t)}]" for t in policy.tags if _has_tags(tags_of(item), t)]
        if policy.within and not policy.within.zero and _inside(when, policy.within, latest):
            reasons.append(f"within {policy.within}")
        for bucket in buckets:
            if bucket.count > 0 or bucket.count == UNLIMITED:
                reason = _take(bucket, when, nr, oldest)
                if reason:
                    if bucket.count > 0:
                        bucket.count -= 1
                    reasons.append(reason)
        for bucket, duration in withins:
            if _inside(when, duration, latest):
                reason = _take(bucket, when, nr, oldest)
                if reason:
                    reasons.append(reason)
        counters = {name: b.count for (name, _), b in zip(policy._counts(), buckets, strict=True)}
        decisions.append(Decision(item, time_of(item), bool(reasons), tuple(reasons), counters))
    return decisions


def _take(bucket: _Bucket, when: dt.datetime, nr: int, oldest: int) -> str | None:
    # A new unit keeps the snapshot; so does the oldest snapshot while the
    # rule has count left ("oldest daily snapshot"), to keep the longest history.
    value = bucket.unit(when, nr)
    if value != bucket.last or nr == oldest:
        reason = f"oldest {bucket.reason}" if value == bucket.last else bucket.reason
        bucket.last = value
        return reason
    return None


def _inside(when: dt.datetime, duration: Duration, latest: dt.datetime | None) -> bool:
    return latest is None or when > duration.before(latest)


def _has_tags(tags: Sequence[str], wanted: Sequence[str]) -> bool:
    # An empty tag ('') matches snapshots without tags (restic's --keep-tag '').
    return all((not tags) if tag == "" else tag in tags for tag in wanted)
