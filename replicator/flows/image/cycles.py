"""Keeping the backup canisters the orchestrator created alive: checked on every run.

Before a backup copies into a backup canister the orchestrator created, or
a restore copies out of one, the planner calls :func:`keep_alive`: it reads
the canister's cycles (``canister_status``, as a controller), exports them
(:class:`~replicator.metrics.CyclesMetrics`: days before it would freeze,
lowest balance, top-ups), and when the balance is below the floor of the
policy (:mod:`replicator.topup`, ``[cycles]`` of the configuration) tops it
up to the target — announced first as a ``spend`` action (asked for on
mainnet, listed by ``--dry-run``) and charged to the cycles budget.

A top-up that fails (the budget, an empty ledger account) does not stop
the job — the canister may well afford this run — but it is never silent:
a note on the job, a warning in the log, ``replicator_backup_canister_top_ups_total
{outcome="failed"}`` and the alerts of ``deploy/alerts/cycles.yml``.  A
canister whose status the identity may not read is reported the same way
(``checks_total{outcome="unreadable"}``): nothing can watch it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

from canister_iface import errors as ic
from canister_iface.principal import Principal
from replicator.errors import ReplicatorError, UsageError
from replicator.flow import Action, PlanContext, Verb
from replicator.job import CanisterRef
from replicator.metrics import CyclesMetrics
from replicator.topup import Balance, floor, top_up_amount

log = logging.getLogger(__name__)


class TopUpFunding(Protocol):
    """Where a top-up's cycles are drawn from besides the network's budget (a fleet's)."""

    async def draw(self, cycles: int, of: str) -> bool:
        """Take ``cycles`` for a top-up of ``of``; False: they do not fit."""
        ...

    def done(self, cycles: int, of: str, *, ok: bool) -> None: ...

    def refused_text(self, cycles: int) -> str: ...


# Set by a fleet around its members' jobs (:mod:`replicator.flows.fleets.budget`).
top_up_funding: ContextVar[TopUpFunding | None] = ContextVar("top_up_funding", default=None)


async def keep_alive(
    ctx: PlanContext, canister: CanisterRef, *, work: Callable[[], Awaitable[int]]
) -> None:
    """Check (and top up) ``canister`` if it is a backup canister the orchestrator created.

    ``work()``: what the coming copy costs it (:func:`replicator.topup.copy_cost`),
    asked only for a created backup canister.
    """
    provisioner = ctx.provisioner_for(canister.network)
    if not await provisioner.created_backup(canister.canister_id):
        return
    metrics = provisioner.metrics.extension(CyclesMetrics)
    policy = ctx.settings.top_up
    principal = Principal.from_text(canister.canister_id)
    balance = await provisioner.balance(principal)
    if balance is None:
        metrics.unreadable()
        _warn(
            ctx,
            f"cannot read the cycles of {canister}: the identity is not its controller, so "
            "nothing keeps it from freezing; add the identity as a controller",
        )
        return
    cost = await work()
    amount = top_up_amount(balance, policy, cost)
    if amount == 0:
        _observed(metrics, canister, balance, low=False)
        return
    runway = _runway(balance)
    if policy.off:
        metrics.top_up_missed("off")
        _observed(metrics, canister, balance, low=True)
        _warn(ctx, f"{canister} needs cycles ({runway}), but top-ups are off ([cycles] top_up)")
        return
    action = Action(
        Verb.SPEND,
        f"{amount:,} cycles to top up {canister} ({balance.cycles:,} cycles: {runway})"
        + (", through the cycles ledger" if provisioner.paid else ""),
        cycles=amount,
        consent=provisioner.paid,
    )
    if not await ctx.intend(action):
        return
    funding = top_up_funding.get()
    if funding is not None and not await funding.draw(amount, "backup"):
        metrics.top_up_missed("budget")
        _observed(metrics, canister, balance, low=True)
        _warn(ctx, f"{canister} was not topped up ({runway}): {funding.refused_text(amount)}")
        return
    try:
        await provisioner.top_up(principal, amount, source=policy.source)
    except (ic.IcError, ReplicatorError) as exc:
        if funding is not None:
            funding.done(amount, "backup", ok=False)
        if isinstance(exc, UsageError):
            raise
        metrics.top_up_missed("failed")
        _observed(metrics, canister, balance, low=True)
        _warn(ctx, f"could not top up {canister} ({runway}): {exc}")
        return
    if funding is not None:
        funding.done(amount, "backup", ok=True)
    metrics.topped_up(amount)
    after = Balance(
        balance.cycles + amount, balance.idle_per_day, balance.freezing_threshold, balance.reserved
    )
    _observed(metrics, canister, after, low=after.cycles < floor(after, policy, cost))
    ctx.note(f"topped {canister} up with {amount:,} cycles ({_runway(after)})")


def _observed(metrics: CyclesMetrics, ref: CanisterRef, balance: Balance, *, low: bool) -> None:
    metrics.observed(ref.canister_id, days_left=balance.days_left, cycles=balance.cycles, low=low)


def _runway(balance: Balance) -> str:
    days = balance.days_left
    if balance.frozen:
        return "it is frozen"
    if days > 3650:
        return "years before it would freeze"
    return f"it freezes in {days:.1f} days if idle"


def _warn(ctx: PlanContext, text: str) -> None:
    log.warning("%s", text)
    ctx.note(text)
