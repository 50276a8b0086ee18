"""When members are due (pure): a fixed slot per member, and backoff after failures.

Members are spread uniformly over the interval: each has a fixed offset in
it, derived from its id, so a daily fleet is not backed up all at 01:00 and
a member keeps its time of day from run to run.  A member that never
succeeded is due at once; one that failed is due again after a backoff that
doubles per consecutive failure, capped at the interval.
"""

from __future__ import annotations

import hashlib
import math

DEFAULT_EVERY = 86_400.0  # each member once a day
RETRY_FIRST = 300.0  # a failed member is retried after 5 min, 10, 20, … up to ``every``


def offset(member: str, every: float) -> float:
    """The member's fixed place in the interval, in [0, every)."""
    digest = hashlib.sha256(member.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * every


def next_slot(member: str, every: float, after: float) -> float:
    """The member's first slot strictly after ``after``."""
    phase = offset(member, every)
    k = math.floor((after - phase) / every) + 1
    return phase + k * every


def retry_at(failures: int, every: float, now: float, *, first: float = RETRY_FIRST) -> float:
    """When a member that failed ``failures`` times in a row is due again."""
    wait = min(every, first * 2.0 ** max(0, failures - 1))
    return now + wait


OVERDUE_FACTOR = 1.5  # a member is overdue once its last success is 1.5 intervals old

STATES = ("ok", "overdue", "failing", "never", "gone")


def member_state(
    *, state: str, gone: bool, last_ok_at: float | None, every: float, now: float
) -> str:
    """How ``fleet status`` and the metrics count a member: one of :data:`STATES`."""
    if gone:
        return "gone"
    if state == "failing":
        return "failing"
    if last_ok_at is None:
        return "never"
    if now - last_ok_at > OVERDUE_FACTOR * every:
        return "overdue"
    return "ok"
