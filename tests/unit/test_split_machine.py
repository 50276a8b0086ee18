"""The split kind's pure parts: choosing boundaries and the state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.errors import EXIT_INTEGRITY, InvalidTransition, UsageError
from replicator.flows.split import machine as m
from replicator.flows.split.ranges import (
    Bucket,
    Span,
    balanced_boundaries,
    boundaries_text,
    estimate,
    parse_boundaries,
    parse_size,
    shard_count,
    spans,
)
from replicator.job import CanisterRef, Job, JobState, Phase
from replicator.machine import Cancel, Fail, Start

SOURCE = "aaaaa-source"
SHARDS = ("shard-one", "shard-two")


def _job() -> Job:
    options = {"split_at": "10,20", "shard_canisters": ",".join(SHARDS)}
    return Job("split", CanisterRef(SOURCE, "local"), None, options, id="split-1")


def _state() -> JobState:
    return JobState(_job())


def _run(state: JobState, event: object) -> tuple[JobState, object | None]:
    step = m.advance(state, event)
    return step.state, (step.effects[0] if step.effects else None)


# ------------------------------------------------------------------- ranges


def test_boundaries_balance_bytes_not_records() -> None:
    # One fat bucket of pictures, many thin buckets of users.
    buckets = [Bucket(bytes([i]), 100, 10) for i in range(1, 10)] + [Bucket(b"\x50", 1, 900)]
    assert balanced_boundaries(buckets, 2) == (b"\x50",)


def test_even_buckets_split_evenly() -> None:
    buckets = [Bucket(bytes([i]), 1, 100) for i in range(8)]
    assert balanced_boundaries(buckets, 4) == (b"\x02", b"\x04", b"\x06")
    parts = estimate(buckets, (b"\x02", b"\x04", b"\x06"))
    assert [p.nbytes for p in parts] == [200, 200, 200, 200]
    assert next(p.span for p in parts) == Span(b"", b"\x02")
    assert parts[-1].span == Span(b"\x06", None)


@given(
    st.lists(st.integers(min_value=1, max_value=10_000), min_size=4, max_size=60),
    st.integers(min_value=2, max_value=4),
)
def test_boundaries_always_increase_and_count(sizes: list[int], parts: int) -> None:
    buckets = [Bucket(i.to_bytes(2, "big"), 1, size) for i, size in enumerate(sizes)]
    chosen = balanced_boundaries(buckets, parts)
    assert len(chosen) == parts - 1
    assert list(chosen) == sorted(set(chosen))
    assert b"" not in chosen
    assert sum(p.nbytes for p in estimate(buckets, chosen)) == sum(sizes)


def test_too_few_buckets_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="too few"):
        balanced_boundaries([Bucket(b"", 1, 10)], 3)


def test_operator_boundaries_parse_and_check() -> None:
    assert parse_boundaries("g, 0x6d, t") == (b"g", b"m", b"t")
    assert parse_boundaries(boundaries_text((b"\x00\x01", b"\xff"))) == (b"\x00\x01", b"\xff")
    with pytest.raises(UsageError, match="increase"):
        parse_boundaries("m,g")
    with pytest.raises(UsageError, match="hex"):
        parse_boundaries("0xzz")
    with pytest.raises(UsageError, match="at least one"):
        parse_boundaries(" , ")
    assert spans((b"m",)) == (Span(b"", b"m"), Span(b"m", None))


def test_shard_count_from_max_bytes() -> None:
    assert shard_count(1000, 300) == 4
    assert shard_count(10, 300) == 2
    with pytest.raises(UsageError):
        shard_count(10, 0)


# ------------------------------------------------------------------ machine


def test_a_split_walks_every_step() -> None:
    state, effect = _run(_state(), Start())
    assert state.phase == m.COPYING
    assert effect == m.MeasureSource("before")
    state, effect = _run(state, m.Measured("before", m.Measure(10, 1000)))
    assert isinstance(effect, m.CopyRanges)
    assert [t.since for t in effect.tasks] == [None, None]
    assert effect.tasks[0].span == Span(b"\x10", b"\x20")
    assert effect.tasks[1].span == Span(b"\x20", None)
    # The first round notes the journal head only.
    state, effect = _run(
        state, m.Copied((m.CopyProgress(0, 7, None, False), m.CopyProgress(1, 7, None, False)))
    )
    assert isinstance(effect, m.CopyRanges)
    assert [t.since for t in effect.tasks] == [7, 7]
    state, effect = _run(
        state,
        m.Copied(
            (m.CopyProgress(0, 7, None, True, 3, 30), m.CopyProgress(1, 7, b"k", False, 1, 9))
        ),
    )
    assert isinstance(effect, m.CopyRanges)
    assert [t.index for t in effect.tasks] == [1]
    assert effect.tasks[0].cursor == b"k"
    state, effect = _run(state, m.Copied((m.CopyProgress(1, 7, None, True, 2, 20),)))
    assert effect == m.ResetShard(0, "shard-one", 7)
    state, effect = _run(state, m.ShardReset(0))
    assert effect == m.ResetShard(1, "shard-two", 7)
    state, effect = _run(state, m.ShardReset(1))
    assert state.phase == m.CATCHING_UP
    assert isinstance(effect, m.FollowRanges)
    assert len(effect.tasks) == 2
    state, effect = _run(
        state, m.Followed((m.FollowProgress(0, 9, True), m.FollowProgress(1, 8, False)))
    )
    assert isinstance(effect, m.FollowRanges)
    assert [t.index for t in effect.tasks] == [1]
    state, effect = _run(state, m.Followed((m.FollowProgress(1, 9, True),)))
    assert state.phase == m.CUTTING_OVER
    assert isinstance(effect, m.CutOver)
    assert effect.index == 0
    assert effect.fences == (m.Route(Span(b"\x10", b"\x20"), "shard-one"),)
    assert [r.canister for r in effect.routes] == [SOURCE, "shard-one", SOURCE]
    state, effect = _run(state, m.CutOverDone(0, 12, 3, 30, b"d" * 32, 0.01))
    assert isinstance(effect, m.CutOver)
    assert effect.index == 1
    assert [f.canister for f in effect.fences] == ["shard-one", "shard-two"]
    assert [r.canister for r in effect.routes] == [SOURCE, "shard-one", "shard-two"]
    state, effect = _run(state, m.CutOverDone(1, 13, 3, 29, b"e" * 32, 0.02))
    assert state.phase == m.FREEING
    assert effect == m.FreeRange(0, Span(b"\x10", b"\x20"), None)
    state, effect = _run(state, m.FreedSome(0, b"x", 2, 20, False))
    assert effect == m.FreeRange(0, Span(b"\x10", b"\x20"), b"x")
    state, effect = _run(state, m.FreedSome(0, None, 1, 10, True))
    state, effect = _run(state, m.FreedSome(1, None, 3, 29, True))
    assert effect == m.MeasureSource("after")
    state, effect = _run(state, m.Measured("after", m.Measure(4, 941)))
    assert effect == m.ReleaseShards(SHARDS)
    state, effect = _run(state, m.ShardsReleased())
    assert state.phase == Phase.DONE
    assert effect is None
    detail = m.detail_of(state)
    assert [r.freed_bytes for r in detail.ranges] == [30, 29]
    assert [r.copied_records for r in detail.ranges] == [3, 3]
    assert [r.canister for r in m.routes_of(state)] == [SOURCE, "shard-one", "shard-two"]


def test_a_resumed_split_continues_from_its_checkpoint() -> None:
    state, _ = _run(_state(), Start())
    state, _ = _run(state, m.Measured("before", m.Measure(10, 1000)))
    state, _ = _run(
        state, m.Copied((m.CopyProgress(0, 5, b"c", False, 1, 1), m.CopyProgress(1, 5, None, True)))
    )
    state, _ = _run(state, Cancel())
    assert state.phase == Phase.CANCELLED
    state, effect = _run(state, Start())
    assert state.phase == m.COPYING
    assert state.starts == 2
    assert effect == m.CopyRanges((m.CopyTask(0, Span(b"\x10", b"\x20"), "shard-one", 5, b"c"),))


def test_a_journal_gone_clears_the_shard_and_copies_again() -> None:
    state = _at_follow()
    state, effect = _run(
        state,
        m.Followed((m.FollowProgress(0, 5, False, too_old=True), m.FollowProgress(1, 9, True))),
    )
    assert effect == m.ClearShard(0, Span(b"\x10", b"\x20"), "shard-one")
    state, effect = _run(state, m.ShardCleared(0))
    assert isinstance(effect, m.CopyRanges)
    assert effect.tasks == (m.CopyTask(0, Span(b"\x10", b"\x20"), "shard-one", None, None),)


def test_a_mismatch_at_cut_over_fails_as_an_integrity_error() -> None:
    state = _at_follow()
    state, effect = _run(
        state, m.Followed((m.FollowProgress(0, 9, True), m.FollowProgress(1, 9, True)))
    )
    assert isinstance(effect, m.CutOver)
    state, effect = _run(state, m.CutOverFailed(0, "3 records in the source, 2 in the shard"))
    assert state.phase == Phase.FAILED
    assert state.exit_code == EXIT_INTEGRITY
    assert "source still owns it" in (state.error or "")
    state, effect = _run(state, Start())  # a resume tries the cut-over again
    assert isinstance(effect, m.CutOver)
    assert effect.index == 0


def test_fail_and_cancel_are_accepted_and_done_is_final() -> None:
    state, _ = _run(_state(), Start())
    failed, _ = _run(state, Fail("boom", 5))
    assert failed.phase == Phase.FAILED
    assert failed.exit_code == 5
    with pytest.raises(InvalidTransition):
        m.advance(state, object())


def test_a_job_without_a_plan_is_refused() -> None:
    job = Job("split", CanisterRef(SOURCE, "local"), None, {"split_at": "10"}, id="split-2")
    with pytest.raises(InvalidTransition, match="as many shards"):
        m.advance(JobState(job), Start())


def _at_follow() -> JobState:
    state, _ = _run(_state(), Start())
    state, _ = _run(state, m.Measured("before", m.Measure(10, 1000)))
    state, _ = _run(
        state, m.Copied((m.CopyProgress(0, 5, None, True), m.CopyProgress(1, 5, None, True)))
    )
    state, _ = _run(state, m.ShardReset(0))
    state, _ = _run(state, m.ShardReset(1))
    assert state.phase == m.CATCHING_UP
    return state


def test_sizes_parse_with_units_and_refuse_nonsense() -> None:
    assert parse_size("256 MiB", "x") == 256 << 20
    assert parse_size(1000, "x") == 1000
    assert parse_size("2GB", "x") == 2 * 10**9
    for bad in ("lots", "-1", 0, "5 parsecs", True):
        with pytest.raises(UsageError, match="256 MiB"):
            parse_size(bad, "max_shard_bytes")


def test_a_journal_gone_at_cut_over_copies_that_range_again() -> None:
    state = _at_follow()
    state, effect = _run(
        state, m.Followed((m.FollowProgress(0, 9, True), m.FollowProgress(1, 9, True)))
    )
    assert isinstance(effect, m.CutOver)
    state, effect = _run(state, m.Followed((m.FollowProgress(0, 0, False, too_old=True),)))
    assert effect == m.ClearShard(0, Span(b"\x10", b"\x20"), "shard-one")
    assert state.phase == m.COPYING
