"""When scheduled jobs run: intervals, 5-field cron, jitter and UTC windows — pure.

Nothing here sleeps or reads the clock; every function takes the time it
reasons about, so the service and the tests drive it alike.

Triggers (:func:`parse_trigger`):

- ``"every 15m"`` — :class:`Every`: runs at multiples of the interval since
  the Unix epoch (every 6 h: 00:00, 06:00, 12:00, 18:00 UTC).  Aligned runs
  do not drift when the service restarts.
- ``"0 3 * * *"`` — :class:`Cron`: minute, hour, day of month, month, day of
  week, in UTC.  Fields take ``*``, numbers, ranges ``1-5``, steps ``*/15``
  and ``10-50/10``, lists ``1,15`` and names (``jan``, ``mon``); day of week
  0 and 7 are Sunday.  As in Vixie cron, when both day fields are restricted
  a day matching either one matches.  ``@hourly``, ``@daily``
  (``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly`` (``@annually``)
  are the usual shorthands.

:class:`JobSchedule` adds two things to a trigger:

- **jitter**: every job is offset from its trigger by a fixed amount in
  ``[0, jitter)`` derived from a hash of its name.  Many jobs on the same
  trigger then start spread over the jitter, the same jobs at the same
  offsets after every restart (like Prometheus spreads its scrapes).
- **windows**: a job starts only inside one of its UTC windows.  A run that
  falls outside is deferred to the next opening (plus the job's offset,
  folded into the window's length), and runs that would fall into the same
  closed stretch collapse into that one deferred run.  A run already going
  when a window closes is not stopped; ``[limits] windows`` is the setting
  that holds calls back.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from replicator.limits import Window

UTC = dt.UTC
_MINUTE = dt.timedelta(minutes=1)
# A cron expression that can match at all matches within 28 years (the
# Gregorian calendar's weekday-and-leap-year cycle); searching longer is a bug.
_CRON_HORIZON_YEARS = 28

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_MONTHS = {n.lower(): i for i, n in enumerate(calendar.month_abbr) if n}
_DAYS = {n.lower(): (i + 1) % 7 for i, n in enumerate(calendar.day_abbr)}  # sun = 0
_SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    else:
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError("an empty string is not a duration")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION.findall(text)
            if not parts or "".join(f"{n}{u}" for n, u in parts).lower() != text.lower():
                raise ValueError(
                    f"{value!r} is not a duration like '90s', '15m', '6h', '1d' or '1h30m'"
                )
            seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None:
        raise ValueError(f"schedules need aware datetimes (UTC), got the naive {t}")
    return t.astimezone(UTC)


# ------------------------------------------------------------------- triggers


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, aligned to multiples of it since the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 1:
            raise ValueError(f"an interval must be at least 1 second, got {self.seconds}")

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first run strictly after ``t``."""
        ts = _utc(t).timestamp()
        runs = ts // self.seconds + 1
        return dt.datetime.fromtimestamp(runs * self.seconds, UTC)

    def __str__(self) -> str:
        return f"every {self.seconds:g}s"


@dataclass(frozen=True)
class Cron:
    """A 5-field cron expression in UTC (see the module docstring)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month field is "*"
    any_weekday: bool  # day-of-week field is "*"

    @classmethod
    def parse(cls, text: str) -> Cron:
        expr = _SHORTHANDS.get(text.strip().lower(), text)
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(
                f"{text!r} is not a cron expression: it needs 5 fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
            )
        minute, hour, day, month, weekday = fields
        weekdays = frozenset(d % 7 for d in _field(weekday, 0, 7, _DAYS, "day of week", text))
        cron = cls(
            text=text.strip(),
            minutes=_field(minute, 0, 59, {}, "minute", text),
            hours=_field(hour, 0, 23, {}, "hour", text),
            days=_field(day, 1, 31, {}, "day of month", text),
            months=_field(month, 1, 12, _MONTHS, "month", text),
            weekdays=weekdays,
            any_day=day == "*",
            any_weekday=weekday == "*",
        )
        cron._check_satisfiable()
        return cron

    def _check_satisfiable(self) -> None:
        if not self.any_weekday and not self.any_day:
            return  # either day field may match: a weekday always comes
        if not self.any_weekday:
            return  # days are "*": every weekday occurs in every month
        longest = max(_days_in_month(m, leap=True) for m in self.months)
        if min(self.days) > longest:
            raise ValueError(
                f"{self.text!r} never runs: no selected month has day {min(self.days)}"
            )

    def matches(self, t: dt.datetime) -> bool:
        t = _utc(t)
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.month in self.months
            and self._day_matches(t)
        )

    def _day_matches(self, t: dt.datetime) -> bool:
        in_days = t.day in self.days
        in_weekdays = (t.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays  # the "*" field matches everything
        return in_days or in_weekdays

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``t``."""
        t = _utc(t).replace(second=0, microsecond=0) + _MINUTE
        horizon = t.year + _CRON_HORIZON_YEARS
        while t.year <= horizon:
            if t.month not in self.months:
                t = _first_of_next_month(t)
            elif not self._day_matches(t):
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += _MINUTE
            else:
                return t
        raise ValueError(f"{self.text!r} does not run within {_CRON_HORIZON_YEARS} years")

    def __str__(self) -> str:
        return f"cron {self.text!r} (UTC)"


Trigger = Every | Cron


def parse_trigger(text: str) -> Trigger:
    """``"every <duration>"`` → :class:`Every`; anything else → :class:`Cron`."""
    stripped = text.strip()
    if stripped.lower().startswith("every "):
        return Every(parse_duration(stripped[len("every ") :]))
    return Cron.parse(stripped)


def _field(
    text: str, low: int, high: int, names: dict[str, int], what: str, whole: str
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        values |= _field_part(part.lower(), low, high, names, what, whole)
    return frozenset(values)


def _field_part(
    part: str, low: int, high: int, names: dict[str, int], what: str, whole: str
) -> set[int]:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron {whole!r}: the {what} field {part!r} {why}")

    span, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise bad("needs a positive step after '/'")
        step = int(step_text)
    if span == "*":
        start, end = low, high
    else:
        first, dash, last = span.partition("-")
        start = _value(first, names, bad)
        # "5/10" means from 5 to the end in steps of 10, as in Vixie cron.
        end = _value(last, names, bad) if dash else (high if step_text else start)
    if not (low <= start <= high and low <= end <= high):
        raise bad(f"is outside {low}-{high}")
    if start > end:
        raise bad("has a range that runs backwards")
    return set(range(start, end + 1, step))


def _value(text: str, names: dict[str, int], bad: Callable[[str], ValueError]) -> int:
    if text.isdigit():
        return int(text)
    if text in names:
        return names[text]
    raise bad("is not a number or a known name")


def _days_in_month(month: int, *, leap: bool) -> int:
    return calendar.monthrange(2024 if leap else 2023, month)[1]


def _first_of_next_month(t: dt.datetime) -> dt.datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


# --------------------------------------------------------------- job schedule


@dataclass(frozen=True)
class JobSchedule:
    """When one named job runs: a trigger, a jitter and optional UTC windows."""

    trigger: Trigger
    jitter: float = 0.0  # seconds
    windows: tuple[Window, ...] = ()

    def __post_init__(self) -> None:
        if not self.jitter >= 0:
            raise ValueError(f"jitter must not be negative, got {self.jitter}")

    def offset(self, name: str) -> float:
        """This job's fixed delay after each trigger, in ``[0, jitter)``."""
        if self.jitter <= 0:
            return 0.0
        digest = hashlib.sha256(name.encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return fraction * self.jitter

    def is_open(self, t: dt.datetime) -> bool:
        """May the job start at ``t``?"""
        return not self.windows or any(w.is_open(t) for w in self.windows)

    def next_run(self, name: str, after: dt.datetime) -> dt.datetime:
        """When job ``name`` next starts, strictly after ``after``."""
        after = _utc(after)
        offset = dt.timedelta(seconds=self.offset(name))
        # The trigger time whose offset run comes after ``after``.
        planned = self.trigger.next_after(after - offset) + offset
        if self.is_open(planned):
            return planned
        return self._deferred(planned, offset)

    def _deferred(self, planned: dt.datetime, offset: dt.timedelta) -> dt.datetime:
        window = min(self.windows, key=lambda w: w.seconds_until_open(planned))
        start = planned + dt.timedelta(seconds=window.seconds_until_open(planned))
        # Keep jobs spread inside the window, but never past its end.
        length = _window_seconds(window)
        return start + dt.timedelta(seconds=offset.total_seconds() % length)

    def runs(self, name: str, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next ``count`` runs of ``name`` after ``after``."""
        result: list[dt.datetime] = []
        t = after
        for _ in range(count):
            t = self.next_run(name, t)
            result.append(t)
        return result

    def max_gap(self, name: str, start: dt.datetime, *, samples: int = 500) -> float:
        """The longest time between two runs of ``name`` (seconds), over ``samples`` runs.

        The alert "no successful backup within its schedule" compares the time
        since the last success with this.  Sampling covers every pattern of an
        interval and of a cron expression within a year or more; a rarer one
        (29 February) is measured over its first ``samples`` runs.
        """
        runs = self.runs(name, start, samples + 1)
        return max(_gaps(runs))

    def __str__(self) -> str:
        text = str(self.trigger)
        if self.jitter:
            text += f", jitter {self.jitter:g}s"
        if self.windows:
            text += ", only " + ", ".join(map(str, self.windows))
        return text


def _window_seconds(window: Window) -> float:
    start = window.start.hour * 3600 + window.start.minute * 60
    end = window.end.hour * 3600 + window.end.minute * 60
    return float((end - start) % 86400)


def _gaps(runs: Sequence[dt.datetime]) -> Iterable[float]:
    return ((b - a).total_seconds() for a, b in itertools.pairwise(runs))
