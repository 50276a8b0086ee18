"""The retention policy against restic's documented examples, and its laws."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.repository.retention import UNLIMITED, Duration, Policy, apply_policy

UTC = dt.UTC


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# restic's doc/060_forget.rst: backups every weekday for two weeks, an extra
# one on Fridays, the second Wednesday missed.
_WEEKDAYS = [
    _t(s)
    for s in (
        "2025-04-21 11:00",
        "2025-04-22 11:00",
        "2025-04-23 11:00",
        "2025-04-24 11:00",
        "2025-04-25 11:00",
        "2025-04-25 23:00",
        "2025-04-28 11:00",
        "2025-04-29 11:00",
        "2025-05-01 11:00",
        "2025-05-02 11:00",
        "2025-05-02 23:00",
    )
]


def _decide(
    times: list[dt.datetime], policy: Policy, **kw: object
) -> list[tuple[dt.datetime, tuple[str, ...]]]:
    decisions = apply_policy(times, policy, time_of=lambda t: t, **kw)  # type: ignore[arg-type]
    return [(d.time, d.reasons) for d in decisions if d.keep]


def test_keep_daily_5_documented_example() -> None:
    kept = _decide(_WEEKDAYS, Policy(daily=5))
    assert [t for t, _ in kept] == [
        _t("2025-05-02 23:00"),
        _t("2025-05-01 11:00"),
        _t("2025-04-29 11:00"),
        _t("2025-04-28 11:00"),
        _t("2025-04-25 23:00"),  # the previous Friday: Wednesday was missed
    ]
    assert all(reasons == ("daily snapshot",) for _, reasons in kept)


def test_keep_within_daily_7d_documented_example() -> None:
    kept = _decide(_WEEKDAYS, Policy(within_daily=Duration.parse("7d")))
    assert [t for t, _ in kept] == [
        _t("2025-05-02 23:00"),
        _t("2025-05-01 11:00"),
        _t("2025-04-29 11:00"),
        _t("2025-04-28 11:00"),
    ]
    assert all(reasons == ("daily within 7d",) for _, reasons in kept)


def test_hundred_years_of_dailies_documented_example() -> None:
    # "--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 would
    # keep the most recent 7 daily snapshots and 4 last-day-of-the-week ones,
    # 12 or 11 last-day-of-the-month snapshots, and 75 or 74
    # last-day-of-the-year snapshots."
    # Ending on a Sunday, so that the 7 dailies hold exactly one end of a week.
    end = _t("2025-05-04 03:00")
    times = [end - dt.timedelta(days=i) for i in range(100 * 365 + 24)][::-1]
    policy = Policy(daily=7, weekly=5, monthly=12, yearly=75)
    decisions = apply_policy(times, policy, time_of=lambda t: t)
    kept = [d for d in decisions if d.keep]
    only = {r: sum(1 for d in kept if d.reasons == (r,)) for r in ("weekly snapshot",)}
    assert [d.time for d in kept[:7]] == times[-1:-8:-1]
    assert only["weekly snapshot"] == 4
    monthly = sum(1 for d in kept if "monthly snapshot" in d.reasons)
    yearly = sum(1 for d in kept if "yearly snapshot" in d.reasons)
    assert monthly == 12
    assert yearly == 75
    # The doc's "12 or 11" and "75 or 74" count one overlap; here the last
    # day of April is also a daily and the last day of 2024 also a monthly,
    # so the exact set is the union of the newest per unit:
    expected = set(times[-7:])
    for unit, count in ((_week, 5), (_month, 12), (_year, 75)):
        newest: dict[object, dt.datetime] = {}
        for t in times:
            newest[unit(t)] = t
        expected |= set(sorted(newest.values())[-count:])
    assert {d.time for d in kept} == expected
    assert len(kept) == 7 + 4 + 10 + 73


def _week(t: dt.datetime) -> object:
    return t.isocalendar()[:2]


def _month(t: dt.datetime) -> object:
    return (t.year, t.month)


def _year(t: dt.datetime) -> object:
    return t.year


def test_oldest_is_kept_while_a_rule_has_count_left() -> None:
    times = [_t("2025-01-01 10:00"), _t("2025-01-01 12:00"), _t("2025-01-02 10:00")]
    kept = _decide(times, Policy(daily=5))
    assert kept == [
        (_t("2025-01-02 10:00"), ("daily snapshot",)),
        (_t("2025-01-01 12:00"), ("daily snapshot",)),
        (_t("2025-01-01 10:00"), ("oldest daily snapshot",)),
    ]


def test_every_rule_that_keeps_a_snapshot_is_named() -> None:
    kept = _decide(_WEEKDAYS, Policy(last=1, daily=1, weekly=1, monthly=1, yearly=1))
    assert kept[0] == (
        _t("2025-05-02 23:00"),
        (
            "last snapshot",
            "daily snapshot",
            "weekly snapshot",
            "monthly snapshot",
            "yearly snapshot",
        ),
    )


def test_keep_within_is_relative_to_the_newest_not_to_now() -> None:
    now = _t("2030-01-01 00:00")
    kept = _decide(_WEEKDAYS, Policy(within=Duration.parse("2d")), now=now)
    assert [t for t, _ in kept] == [
        _t("2025-05-02 23:00"),
        _t("2025-05-02 11:00"),
        _t("2025-05-01 11:00"),
    ]
    assert kept[0][1] == ("within 2d",)


def test_future_snapshots_are_not_the_newest_and_are_kept() -> None:
    future = _t("2025-06-01 00:00")
    kept = _decide(
        [*_WEEKDAYS, future], Policy(within=Duration.parse("1d")), now=_t("2025-05-03 00:00")
    )
    assert [t for t, _ in kept] == [future, _t("2025-05-02 23:00"), _t("2025-05-02 11:00")]


def test_keep_tag_lists() -> None:
    items = [
        (_t("2025-01-01 00:00"), ("a", "b")),
        (_t("2025-01-02 00:00"), ("a",)),
        (_t("2025-01-03 00:00"), ()),
    ]
    decisions = apply_policy(
        items, Policy(tags=(("a", "b"), ("",))), time_of=lambda i: i[0], tags_of=lambda i: i[1]
    )
    assert [(d.item[0].day, d.reasons) for d in decisions] == [
        (3, ("has tags []",)),
        (2, ()),
        (1, ("has tags [a, b]",)),
    ]


def test_an_empty_policy_keeps_everything() -> None:
    assert Policy().empty
    assert Policy(last=0, within=Duration()).empty
    decisions = apply_policy(_WEEKDAYS, Policy(), time_of=lambda t: t)
    assert all(d.keep and d.reasons == ("no policy",) for d in decisions)


def test_unlimited() -> None:
    assert len(_decide(_WEEKDAYS, Policy(last=UNLIMITED))) == len(_WEEKDAYS)
    assert len(_decide(_WEEKDAYS, Policy(daily=UNLIMITED))) == 9
    with pytest.raises(ValueError, match="keep-daily"):
        Policy(daily=-2)


def test_calendar_units_follow_the_time_zone() -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    older = _t("2024-12-01 00:00")
    late, early = _t("2025-01-01 14:00"), _t("2025-01-01 16:00")  # 23:00 and 01:00 in Tokyo
    kept_utc = [t for t, _ in _decide([older, late, early], Policy(daily=UNLIMITED))]
    kept_tokyo = [t for t, _ in _decide([older, late, early], Policy(daily=UNLIMITED), tz=tokyo)]
    assert kept_utc == [early, older]
    assert kept_tokyo == [early, late, older]


def test_weeks_are_iso_weeks_monday_to_sunday() -> None:
    older = _t("2025-04-16 12:00")
    saturday, sunday, monday = (
        _t("2025-05-03 12:00"),
        _t("2025-05-04 12:00"),
        _t("2025-05-05 12:00"),
    )
    kept = _decide([older, saturday, sunday, monday], Policy(weekly=UNLIMITED))
    assert [t for t, _ in kept] == [monday, sunday, older]


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("7d", Duration(days=7)),
        ("2y5m7d3h", Duration(2, 5, 7, 3)),
        ("1m14d", Duration(months=1, days=14)),
    ],
)
def test_duration_parse(text: str, duration: Duration) -> None:
    assert Duration.parse(text) == duration
    assert str(duration) == text


@pytest.mark.parametrize("text", ["", "1w", "d7", "7 d", "-1d", "1.5d"])
def test_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        Duration.parse(text)


def test_duration_before_normalises_like_go_adddate() -> None:
    # Go: 2025-03-31 AddDate(0, -1, 0) = "2025-02-31" = 2025-03-03.
    assert Duration(months=1).before(_t("2025-03-31 10:00")) == _t("2025-03-03 10:00")
    assert Duration(years=1, hours=2).before(_t("2024-02-29 01:00")) == _t("2023-02-28 23:00")
    assert Duration(years=10_000).before(_t("2025-01-01 00:00")).year == 1


def test_policy_describes_itself_in_restics_words() -> None:
    policy = Policy(daily=7, weekly=4, monthly=UNLIMITED, within=Duration(years=1))
    assert str(policy) == (
        "keep 7 daily, 4 weekly, all monthly snapshots and all snapshots within 1y of the newest"
    )


# ---------------------------------------------------------------- properties

_times = st.lists(
    st.datetimes(
        min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2026, 1, 1), timezones=st.just(UTC)
    ),
    max_size=40,
)
_counts = st.integers(min_value=0, max_value=6)


@settings(max_examples=150, deadline=None)
@given(times=_times, last=_counts, daily=_counts, weekly=_counts, monthly=_counts)
def test_laws(times: list[dt.datetime], last: int, daily: int, weekly: int, monthly: int) -> None:
    policy = Policy(last=last, daily=daily, weekly=weekly, monthly=monthly)
    decisions = apply_policy(
        times, policy, time_of=lambda t: t, now=dt.datetime(2030, 1, 1, tzinfo=UTC)
    )
    # Every snapshot is decided once, newest first; kept ones say why, removed ones do not.
    assert sorted(d.time for d in decisions) == sorted(times)
    assert [d.time for d in decisions] == sorted(times, reverse=True)
    assert all(d.keep == bool(d.reasons) for d in decisions)
    kept = [d for d in decisions if d.keep]
    if policy.empty:
        assert len(kept) == len(times)
        return
    # Each rule keeps at most its count (the oldest snapshot included).
    assert len(kept) <= last + daily + weekly + monthly
    assert all(d.keep for d in decisions[:last])
    # More of a rule never removes a snapshot that fewer kept.
    more = apply_policy(
        times,
        Policy(last=last + 1, daily=daily, weekly=weekly, monthly=monthly),
        time_of=lambda t: t,
    )
    kept_more = {id(d.item) for d in more if d.keep}
    assert {id(d.item) for d in kept} <= kept_more
