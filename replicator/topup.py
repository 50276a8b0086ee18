"""How many cycles a created backup canister needs so that it never freezes: the policy.

A canister whose balance drops below its *freezing limit* is frozen: it
refuses every call.  Once the balance is gone the IC deletes it, with every
image it holds — a backup that dies of cycles takes the backups with it.
The freezing limit is what the canister's idle state costs for its
``freezing_threshold`` (seconds, 30 days by default)::

    idle burn      = idle_cycles_burned_per_day       (memory × seconds × price; canister_status)
    freezing limit = idle burn × freezing_threshold / 1 day − reserved cycles
    days left      = (balance − freezing limit) / idle burn       (until it freezes, idle)

A canister's idle burn does not show the work it does: every backup run
costs the backup canister the ingress bytes it receives (relay) or the
execution of the pushes it accepts, and a restore costs it the bytes it
pushes.  So besides days of idle burn the policy keeps a *reserve* for that
work — the larger of ``reserve`` and the cost of the copy about to run —
and a top-up adds one more ``reserve``, so that the runs after it do not
each need one (the days alone are a thin margin for a small canister)::

    work   = max(reserve, cost of this copy)
    floor  = freezing limit + idle burn × below_days + work             (top up below this)
    target = freezing limit + idle burn × to_days    + work + reserve   (… to this)

Pure: the numbers only.  Reading the status and sending cycles is
:mod:`replicator.provision`; doing it before every run that uses a backup
canister is :mod:`replicator.flows.image.cycles`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from replicator.errors import UsageError
from replicator.limits import estimate_cycles

SECONDS_PER_DAY = 86_400
B = 10**9
T = 10**12
# Where top-up cycles come from: "auto" as canisters are created (provisional
# on local networks, the cycles ledger elsewhere), one of the two, or "off"
# (balances are still read and exported; nothing is sent).
SOURCES = ("auto", "provisional", "ledger", "off")


@dataclass(frozen=True)
class TopUpPolicy:
    """``[cycles]`` of the configuration (see :mod:`replicator.config`)."""

    source: str = "auto"
    below_days: float = 30.0  # top up when fewer days of idle burn are left above the limit
    to_days: float = 90.0  # … up to this many
    reserve: int = 500 * B  # cycles kept beyond the days for the canister's own work

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise UsageError(f"top_up must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not (0 <= self.below_days <= self.to_days and math.isfinite(self.to_days)):
            raise UsageError(
                f"top-up days must satisfy 0 <= below ({self.below_days}) <= to ({self.to_days})"
            )
        if self.reserve < 0:
            raise UsageError(f"the top-up reserve must not be negative, got {self.reserve}")

    @property
    def off(self) -> bool:
        return self.source == "off"


@dataclass(frozen=True)
class Balance:
    """What ``canister_status`` says about a canister's cycles."""

    cycles: int
    idle_per_day: int  # idle_cycles_burned_per_day
    freezing_threshold: int  # seconds
    reserved: int = 0  # reserved_cycles (pay for memory first)

    @property
    def freezing_limit(self) -> int:
        """Below this balance the IC freezes the canister."""
        limit = self.idle_per_day * self.freezing_threshold // SECONDS_PER_DAY
        return max(0, limit - self.reserved)

    @property
    def days_left(self) -> float:
        """Days until the canister freezes if it did nothing (``inf``: it burns nothing)."""
        spare = self.cycles - self.freezing_limit
        if spare <= 0:
            return 0.0
        return math.inf if self.idle_per_day <= 0 else spare / self.idle_per_day

    @property
    def frozen(self) -> bool:
        return self.cycles < self.freezing_limit


def floor(balance: Balance, policy: TopUpPolicy, work: int = 0) -> int:
    """The balance below which the canister is topped up.

    ``work``: what the coming run costs the canister (:func:`copy_cost`).
    """
    return _level(balance, policy.below_days, max(policy.reserve, work))


def target(balance: Balance, policy: TopUpPolicy, work: int = 0) -> int:
    """The balance a top-up brings the canister to."""
    return _level(balance, policy.to_days, max(policy.reserve, work) + policy.reserve)


def top_up_amount(balance: Balance, policy: TopUpPolicy, work: int = 0) -> int:
    """Cycles to send now (0: none): up to the target once below the floor."""
    if balance.cycles >= floor(balance, policy, work):
        return 0
    return target(balance, policy, work) - balance.cycles


def copy_cost(nbytes: int, *, pushes: bool) -> int:
    """What copying an image of ``nbytes`` costs the backup canister, message fees only.

    Receiving (a backup): the ingress bytes of relay writes, the dearer path.
    Sending (a restore, ``pushes``): the inter-canister bytes it pushes.
    Execution is not counted: the reserve covers it.
    """
    return estimate_cycles("push" if pushes else "update", nbytes)


def _level(balance: Balance, days: float, reserve: int) -> int:
    return balance.freezing_limit + math.ceil(balance.idle_per_day * days) + reserve


__all__ = ["Balance", "TopUpPolicy", "copy_cost", "floor", "target", "top_up_amount"]
