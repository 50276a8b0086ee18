"""The adaptive transfer size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canister_iface import errors as ic
from canister_iface.candid_value import decode_single, encode_value
from canister_iface.icrp_errors import error_from_candid
from canister_iface.icrp_types import ICRP
from replicator.chunking import (
    INGRESS_LIMIT,
    QUERY_REPLY_LIMIT,
    SNAPSHOT_DATA_LIMIT,
    KiB,
    MiB,
    Path,
    SizePolicy,
    TransferSize,
    ceiling_for,
    shrink_reason,
    split_evenly,
)


def _policy(**kw: int | float) -> SizePolicy:
    base: dict[str, int | float] = {"ceiling": 1 * MiB, "floor": 4 * KiB, "granularity": 4 * KiB}
    base.update(kw)
    return SizePolicy(**base)  # type: ignore[arg-type]


def test_ceilings_leave_room_for_the_envelope() -> None:
    assert ceiling_for(Path.WRITE) < INGRESS_LIMIT
    assert ceiling_for(Path.WRITE) >= INGRESS_LIMIT - 64 * KiB
    assert INGRESS_LIMIT < ceiling_for(Path.READ) < QUERY_REPLY_LIMIT
    assert ceiling_for(Path.PUSH) < 2 * MiB
    assert ceiling_for(Path.SNAPSHOT) == SNAPSHOT_DATA_LIMIT


def test_starts_at_the_ceiling_even_when_it_is_not_a_multiple_of_the_granularity() -> None:
    size = TransferSize.for_path(Path.SNAPSHOT)
    assert size.size == 2_000_000
    assert TransferSize.for_path(Path.READ, limit=2_000_000).size == 2_000_000


def test_shrinks_multiplicatively_down_to_the_floor_then_gives_up() -> None:
    size = TransferSize(_policy())
    seen = [size.size]
    while size.on_too_large():
        seen.append(size.size)
    assert seen[:3] == [1 * MiB, 512 * KiB, 256 * KiB]
    assert seen[-1] == 4 * KiB
    assert size.at_floor
    assert not size.on_too_large()  # still failing at the floor: nothing smaller to try


def test_grows_back_after_successes_but_not_to_a_size_that_failed_until_probing() -> None:
    policy = _policy(grow_after=2, probe_after=20, grow_factor=2.0)
    size = TransferSize(policy)
    size.on_too_large()  # 1 MiB failed
    assert size.size == 512 * KiB
    for _ in range(10):
        size.on_success()
    assert size.size == 1 * MiB - 4 * KiB  # just below the size that failed
    for _ in range(10):
        size.on_success()  # 20 successes since the failure: probe again
    assert size.size == 1 * MiB


def test_a_late_failure_of_a_large_call_does_not_shrink_twice() -> None:
    size = TransferSize(_policy())
    assert size.on_too_large(1 * MiB)
    assert size.size == 512 * KiB
    assert size.on_too_large(1 * MiB)  # a concurrent call of the old size failed later
    assert size.size == 512 * KiB


def test_a_failure_of_a_smaller_call_than_the_current_size_shrinks_below_it() -> None:
    size = TransferSize(_policy())
    size.on_too_large(100 * KiB)
    assert size.size == 48 * KiB  # half of 100 KiB, rounded down to 4 KiB


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="floor"):
        SizePolicy(ceiling=10, floor=20)
    with pytest.raises(ValueError, match="shrink_factor"):
        SizePolicy(ceiling=10, floor=1, shrink_factor=1.0)
    with pytest.raises(ValueError, match="grow_factor"):
        SizePolicy(ceiling=10, floor=1, grow_factor=1.0)


@given(
    st.lists(st.sampled_from(["ok", "too_large"]), max_size=200),
    st.integers(min_value=1, max_value=64),
)
def test_size_stays_within_floor_and_ceiling(events: list[str], floor_kib: int) -> None:
    policy = _policy(floor=floor_kib * KiB, grow_after=3, probe_after=10)
    size = TransferSize(policy)
    for event in events:
        if event == "ok":
            size.on_success()
        else:
            size.on_too_large()
        assert policy.floor <= size.size <= policy.ceiling
        assert size.size == policy.ceiling or size.size % policy.granularity == 0 or size.at_floor


def _reject(code: int, message: str, error_code: str | None = None) -> ic.IcError:
    return ic.classify(ic.Rejection(code, message, error_code))


def test_shrink_reasons() -> None:
    assert shrink_reason(ic.classify(ic.HttpFailure(413, "too big"))) == "too_large"
    limit = _reject(5, "Canister exceeded the limit of 40000000000 instructions", "IC0522")
    assert shrink_reason(limit) == "instruction_limit"
    reply = _reject(
        5,
        "Canister violated contract: ic0.msg_reply_data_append: application payload size "
        "(3200000) cannot be larger than 3145728.",
        "IC0504",
    )
    assert shrink_reason(reply) == "too_large"
    slice_ = _reject(4, "Requested slice too large: 3000000 > 2000000", "IC0408")
    assert shrink_reason(slice_) == "too_large"


def test_errors_that_are_not_about_size_do_not_shrink() -> None:
    assert shrink_reason(_reject(5, "Canister trapped: out of bounds", "IC0502")) is None
    assert shrink_reason(ic.classify(ic.HttpFailure(503, ""))) is None
    assert shrink_reason(ValueError("too large")) is None


def test_push_failures_too_large_for_their_call_shrink() -> None:
    def call_failed(code: int, message: str) -> ic.IcError:
        # As the agent reads it off the wire: icrp.did's Error, decoded untyped.
        value = {"CallFailed": {"code": code, "message": message}}
        wire = encode_value(ICRP.type("Error"), value)
        return error_from_candid(decode_single(wire, "icrp_push"))

    assert shrink_reason(call_failed(5, "argument exceeds the maximum of 2097152 bytes")) == (
        "too_large"
    )
    assert shrink_reason(call_failed(5, "target is stopped")) is None
    assert shrink_reason(call_failed(2, "queue full: too large a backlog")) is None  # transient


def test_a_canisters_own_words_about_size_do_not_shrink() -> None:
    # Only the IC's size limits shrink transfers, not a canister trapping "too large".
    trap = "Canister called `ic0.trap` with message: 'chunk too large'"
    assert shrink_reason(_reject(5, trap, "IC0503")) is None


def test_split_evenly() -> None:
    assert split_evenly(0, 2 * MiB, 2 * MiB - 64 * KiB) == [(0, MiB), (MiB, MiB)]
    assert split_evenly(10, 7, 3) == [(10, 3), (13, 2), (15, 2)]
    assert split_evenly(5, 0, 3) == []


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=1, max_value=500),
)
def test_split_evenly_covers_the_range_in_as_few_pieces_as_possible(
    offset: int, length: int, pieces_wanted: int
) -> None:
    max_piece = max(1, length // pieces_wanted)
    pieces = split_evenly(offset, length, max_piece)
    assert len(pieces) == -(-length // max_piece)
    position = offset
    for start, size in pieces:
        assert start == position
        assert 0 < size <= max_piece
        position += size
    assert position == offset + length
    if pieces:
        sizes = [s for _, s in pieces]
        assert max(sizes) - min(sizes) <= 1
