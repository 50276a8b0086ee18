"""FreshImages: a planner's frozen image goes to one job, and only while fresh."""

from __future__ import annotations

from canister_iface.icrp_types import ExportTicket
from replicator.fresh import FRESH_SECONDS, FreshImages


def _ticket(snapshot_id: int, *, ready: bool = True) -> ExportTicket:
    return ExportTicket(
        snapshot_id=snapshot_id,
        ready=ready,
        done_bytes=10,
        size=10,
        chunk_size=4,
        chunk_count=3,
        digest=b"\x01" * 32 if ready else None,
        journal_seq=1,
        created_at=0,
        origin=None,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_kept_ticket_is_taken_once_for_its_canister_only() -> None:
    fresh = FreshImages(Clock())
    fresh.keep("local", "app", _ticket(7))
    assert fresh.take("local", "other") is None
    assert fresh.take("ic", "app") is None  # another network
    taken = fresh.take("local", "app")
    assert taken is not None
    assert taken.snapshot_id == 7
    assert fresh.take("local", "app") is None  # once


def test_an_old_ticket_is_not_handed_out() -> None:
    clock = Clock()
    fresh = FreshImages(clock)
    fresh.keep("local", "app", _ticket(7))
    clock.now += FRESH_SECONDS + 0.1
    assert fresh.take("local", "app") is None  # the job asks the source instead


def test_the_newest_freeze_wins() -> None:
    fresh = FreshImages(Clock())
    fresh.keep("local", "app", _ticket(7))
    fresh.keep("local", "app", _ticket(8))  # the source keeps one export: 7 is gone there
    taken = fresh.take("local", "app")
    assert taken is not None
    assert taken.snapshot_id == 8


def test_tickets_no_job_took_do_not_pile_up() -> None:
    clock = Clock()
    fresh = FreshImages(clock)
    fresh.keep("local", "dry-run", _ticket(1))
    clock.now += FRESH_SECONDS + 1
    fresh.keep("local", "late", _ticket(2))
    assert set(fresh._tickets) == {("local", "late")}  # the stale one was forgotten
    assert fresh.take("local", "late") is not None


def test_a_ticket_still_preparing_is_not_kept() -> None:
    fresh = FreshImages(Clock())
    fresh.keep("local", "app", _ticket(7, ready=False))
    assert fresh.take("local", "app") is None
