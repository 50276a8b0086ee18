"""A fleet's cycles budget: the top-ups of its backup canisters (and members) draw from it.

A fleet's runs keep its canisters from freezing with the ordinary keep-alive
(:mod:`replicator.flows.image.cycles`): a backup canister below the floor of
the ``[cycles]`` policy is topped up to its target before a backup into it.
The fleet option ``cycles_budget`` caps what those top-ups spend per period
(``cycles_budget_period``, a day by default) for the whole fleet: each top-up
first draws its cycles from the budget, and one that does not fit is not
made (``replicator_fleet_topups_total{outcome="refused"}``, a note on the
member's job) — the backup itself goes on, as after a failed top-up.  With
``top_up_members = true`` (off by default) the members themselves are kept
above the same floor, before each member's job, from the same budget.

The spending lives in the checkpoint store (:attr:`Store.spending`, scope
``fleet:NAME``), as the network budgets' does: every process using the store
— the workers of a PostgreSQL store too — shares one fleet budget, and a
restart does not renew it.  ``replicator_fleet_cycles_budget_remaining``
falls as it is spent; the alert ``ReplicatorFleetCyclesBudgetLow`` fires
before it runs out.

The funding reaches the member jobs' keep-alive through
:data:`replicator.flows.image.cycles.top_up_funding` (a context variable the
fleet sets around each member's job: its planner runs in the same task).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from canister_iface import errors as ic
from canister_iface.principal import Principal
from replicator.errors import ReplicatorError
from replicator.flow import RunContext
from replicator.flows.fleets.metrics import FleetMetrics
from replicator.limits import Spending
from replicator.topup import TopUpPolicy, top_up_amount

log = logging.getLogger(__name__)


class FleetFunding:
    """The top-ups of one fleet: counted always, capped when the fleet has a budget.

    Implements :class:`replicator.flows.image.cycles.TopUpFunding`.
    """

    def __init__(
        self,
        name: str,
        *,
        budget: int | None,
        period: float,
        spending: Spending,
        metrics: FleetMetrics,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.budget = budget
        self.period = period
        self.scope = f"fleet:{name}"
        self._spending = spending
        self._metrics = metrics
        self._wall = wall
        self._known = (self.period_start(), 0)  # (period, spent), as last seen
        metrics.add_budget(name, budget, self.remaining)

    def period_start(self) -> int:
        return int(math.floor(self._wall() / self.period) * self.period)

    def remaining(self) -> float:
        """What the budget has left in this period, as last seen (inf: no budget)."""
        if self.budget is None:
            return math.inf
        period, spent = self._known
        return max(0, self.budget - (spent if period == self.period_start() else 0))

    async def refresh(self) -> float:
        """Read what every process spent in this period; returns what is left."""
        period = self.period_start()
        self._known = (period, await self._spending.spent(self.scope, period))
        return self.remaining()

    async def draw(self, cycles: int, of: str) -> bool:
        """Take ``cycles`` from the budget for a top-up of ``of`` (``backup``, ``member``).

        False (and counted as refused) when they do not fit in this period.
        """
        if self.budget is not None:
            period = self.period_start()
            added, total = await self._spending.spend(self.scope, period, cycles, self.budget)
            self._known = (period, total)
            if not added:
                self._metrics.topped_up(self.name, of, "refused")
                return False
        return True

    def done(self, cycles: int, of: str, *, ok: bool) -> None:
        """A drawn top-up was sent (``ok``) or failed (its cycles stay drawn, as fees do)."""
        self._metrics.topped_up(self.name, of, "ok" if ok else "failed", cycles if ok else 0)

    def refused_text(self, cycles: int) -> str:
        return (
            f"the top-up of {cycles:,} cycles does not fit in fleet {self.name}'s cycles budget "
            f"({self.remaining():,.0f} of {self.budget:,} left in this period of "
            f"{self.period:g} s); raise the fleet's cycles_budget or wait for the next period"
        )


async def keep_member_alive(
    ctx: RunContext, member: str, network: str, funding: FleetFunding, policy: TopUpPolicy
) -> None:
    """Top the member up to the policy's target if it is below its floor (``top_up_members``).

    Never stops the member's job: a member whose cycles cannot be read (the
    identity is not its controller), a refused or failed top-up is a note.
    """
    provisioner = ctx.provisioner_for(network)
    principal = Principal.from_text(member)
    try:
        balance = await provisioner.balance(principal)
        if balance is None:
            ctx.note(f"cannot read the cycles of member {member}: not its controller")
            return
        amount = top_up_amount(balance, policy, 0)
        if amount == 0 or policy.off:
            return
        if not await funding.draw(amount, "member"):
            ctx.note(f"member {member} was not topped up: {funding.refused_text(amount)}")
            return
        try:
            await provisioner.top_up(principal, amount, source=policy.source)
        except (ic.IcError, ReplicatorError):
            funding.done(amount, "member", ok=False)
            raise
        funding.done(amount, "member", ok=True)
        ctx.note(f"topped member {member} up with {amount:,} cycles")
    except (ic.IcError, ReplicatorError) as exc:
        log.warning("fleet %s: member %s: top-up failed: %s", funding.name, member, exc)
        ctx.note(f"could not top member {member} up: {exc}")
