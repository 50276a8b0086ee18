"""replicator.schedule: intervals, cron, jitter and windows (pure next-run computation)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.limits import Window
from replicator.schedule import Cron, Every, JobSchedule, parse_duration, parse_trigger

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("0s", 0.0),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "5x", "1h junk", "-5s", "1.2.3m", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# ------------------------------------------------------------------ intervals


def test_every_is_aligned_to_the_epoch() -> None:
    every = Every(6 * 3600)
    assert every.next_after(at("2026-03-01T05:59:59")) == at("2026-03-01T06:00:00")
    assert every.next_after(at("2026-03-01T06:00:00")) == at("2026-03-01T12:00:00")
    assert every.next_after(at("2026-03-01T23:00:00")) == at("2026-03-02T00:00:00")


def test_every_rejects_tiny_intervals() -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        Every(0.5)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Every(60).next_after(dt.datetime(2026, 1, 1))


# ----------------------------------------------------------------------- cron


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 3 * * *", "2026-03-01T02:59", "2026-03-01T03:00"),
        ("0 3 * * *", "2026-03-01T03:00", "2026-03-02T03:00"),
        ("*/15 * * * *", "2026-03-01T10:07", "2026-03-01T10:15"),
        ("*/15 * * * *", "2026-03-01T10:45:30", "2026-03-01T11:00"),
        ("10-50/20 * * * *", "2026-03-01T10:31", "2026-03-01T10:50"),
        ("5/20 * * * *", "2026-03-01T10:46", "2026-03-01T11:05"),
        ("0 0 1 * *", "2026-01-31T12:00", "2026-02-01T00:00"),
        ("0 0 * * mon", "2026-03-01T00:00", "2026-03-02T00:00"),  # 1 March 2026 is a Sunday
        ("0 0 * * 7", "2026-03-01T00:00", "2026-03-08T00:00"),  # 7 is Sunday too
        ("0 0 29 feb *", "2026-01-01T00:00", "2028-02-29T00:00"),
        ("30 12 * nov-dec *", "2026-06-01T00:00", "2026-11-01T12:30"),
        ("0 0 31 * *", "2026-04-01T00:00", "2026-05-31T00:00"),
        ("@hourly", "2026-03-01T10:07", "2026-03-01T11:00"),
        ("@daily", "2026-03-01T10:07", "2026-03-02T00:00"),
        ("@weekly", "2026-03-02T00:00", "2026-03-08T00:00"),
        ("@monthly", "2026-03-02T00:00", "2026-04-01T00:00"),
        ("@yearly", "2026-03-02T00:00", "2027-01-01T00:00"),
        ("0 8 1,15 * *", "2026-03-02T00:00", "2026-03-15T08:00"),
    ],
)
def test_cron_next(expr: str, after: str, expected: str) -> None:
    assert Cron.parse(expr).next_after(at(after)) == at(expected)


def test_cron_days_are_either_when_both_restricted() -> None:
    # Vixie cron: the 13th of the month OR any Friday.
    cron = Cron.parse("0 0 13 * fri")
    runs = []
    t = at("2026-03-01T00:00")
    for _ in range(4):
        t = cron.next_after(t)
        runs.append(t.date().isoformat())
    assert runs == ["2026-03-06", "2026-03-13", "2026-03-20", "2026-03-27"]
    assert cron.next_after(at("2026-04-10T00:00")) == at("2026-04-13T00:00")  # a Monday


def test_cron_matches_what_it_returns() -> None:
    cron = Cron.parse("7 */4 * * 1-5")
    t = at("2026-03-01T00:00")
    for _ in range(50):
        t = cron.next_after(t)
        assert cron.matches(t)
        assert t.weekday() < 5
        assert t.minute == 7
        assert t.hour % 4 == 0


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "5 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 8", "outside 0-7"),
        ("*/0 * * * *", "positive step"),
        ("30-10 * * * *", "backwards"),
        ("x * * * *", "not a number"),
        ("0 0 30 feb *", "never runs"),
    ],
)
def test_bad_cron(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cron.parse(expr)


def test_parse_trigger() -> None:
    assert parse_trigger("every 15m") == Every(900)
    assert parse_trigger("  every 2h30m ") == Every(9000)
    assert isinstance(parse_trigger("0 3 * * *"), Cron)
    assert isinstance(parse_trigger("@daily"), Cron)


@settings(max_examples=60, deadline=None)
@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2090, 1, 1),
        timezones=st.just(UTC),
    ),
)
def test_cron_next_is_the_first_match(minute: int, hour: int, start: dt.datetime) -> None:
    cron = Cron.parse(f"{minute} {hour} * * *")
    got = cron.next_after(start)
    assert got > start
    assert (got.hour, got.minute) == (hour, minute)
    assert got - start <= dt.timedelta(days=1)


# ----------------------------------------------------------------- schedules


def test_jitter_offsets_are_stable_and_spread() -> None:
    schedule = JobSchedule(Every(3600), jitter=600)
    offsets = [schedule.offset(f"job-{i}") for i in range(200)]
    assert all(0 <= o < 600 for o in offsets)
    assert offsets == [schedule.offset(f"job-{i}") for i in range(200)]  # stable
    assert len({round(o) for o in offsets}) > 150  # spread, not bunched
    assert min(offsets) < 60
    assert max(offsets) > 540


def test_no_jitter_no_offset() -> None:
    assert JobSchedule(Every(3600)).offset("anything") == 0.0


def test_next_run_adds_the_offset() -> None:
    schedule = JobSchedule(Every(3600), jitter=600)
    offset = dt.timedelta(seconds=schedule.offset("nightly"))
    run = schedule.next_run("nightly", at("2026-03-01T10:00"))
    assert run == at("2026-03-01T10:00") + offset  # 10:00 + offset is after 10:00
    again = schedule.next_run("nightly", run)
    assert again == run + dt.timedelta(hours=1)
    # Just before the offset run: still that run.
    assert schedule.next_run("nightly", run - dt.timedelta(seconds=1)) == run


def test_runs_outside_the_window_are_deferred_to_its_opening() -> None:
    schedule = JobSchedule(Every(900), windows=(Window.parse("01:00-05:00"),))
    runs = schedule.runs("job", at("2026-03-01T22:00"), 3)
    # Everything from 22:15 to 00:45 collapses into one run at 01:00.
    assert runs == [at("2026-03-02T01:00"), at("2026-03-02T01:15"), at("2026-03-02T01:30")]
    late = schedule.runs("job", at("2026-03-02T04:40"), 2)
    assert late == [at("2026-03-02T04:45"), at("2026-03-03T01:00")]


def test_deferred_runs_stay_spread_by_jitter() -> None:
    window = Window.parse("01:00-02:00")
    schedule = JobSchedule(Cron.parse("0 12 * * *"), jitter=7200, windows=(window,))
    starts = [schedule.next_run(f"job-{i}", at("2026-03-01T00:30")) for i in range(50)]
    assert all(window.is_open(s) for s in starts)
    assert len(set(starts)) > 40


def test_daily_trigger_outside_a_window_runs_daily_inside_it() -> None:
    schedule = JobSchedule(Cron.parse("0 12 * * *"), windows=(Window.parse("23:00-01:00"),))
    runs = schedule.runs("job", at("2026-03-01T00:00"), 3)
    assert runs == [at("2026-03-01T23:00"), at("2026-03-02T23:00"), at("2026-03-03T23:00")]


def test_is_open() -> None:
    schedule = JobSchedule(Every(60), windows=(Window.parse("01:00-05:00"),))
    assert schedule.is_open(at("2026-03-01T03:00"))
    assert not schedule.is_open(at("2026-03-01T05:00"))
    assert JobSchedule(Every(60)).is_open(at("2026-03-01T05:00"))


def test_max_gap() -> None:
    start = at("2026-03-01T00:00")
    assert JobSchedule(Every(300)).max_gap("j", start) == 300
    assert JobSchedule(Cron.parse("0 3 * * 1-5")).max_gap("j", start) == 3 * 86400
    windowed = JobSchedule(Every(900), windows=(Window.parse("01:00-05:00"),))
    assert windowed.max_gap("j", start) == 20 * 3600 + 900  # 04:45 → 01:00 next day


def test_str_describes_the_schedule() -> None:
    schedule = JobSchedule(
        Cron.parse("0 3 * * *"), jitter=60, windows=(Window.parse("01:00-05:00"),)
    )
    assert str(schedule) == "cron '0 3 * * *' (UTC), jitter 60s, only 01:00-05:00 UTC"
