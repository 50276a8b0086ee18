"""Fleets: one job run over every member of a fleet of canisters (per-user canisters).

``request(index, name=...)`` asks for a fleet run: list the members from the
index canister (``icrp_fleet_members``, or the app's plain ``vec principal``
method), a file or a static list (:mod:`.members`); record them in the
store's member table (:mod:`replicator.fleetstore`); back up every member
that is due into its own backup canister, created on demand with exactly
the configured controllers — through the engine, so the members share its
limits — at most ``concurrency`` at once, fairest first (:mod:`.performer`).

The planner lists the members first (so a wrong index or a missing right
creates nothing) and announces what the run will create and spend:
``--dry-run`` shows the total cycles of the backup canisters to be created.
"""

from __future__ import annotations

from replicator import kinds
from replicator.flow import Action, Kind, PlanContext, Verb
from replicator.flows.fleets.machine import PHASES, advance
from replicator.flows.fleets.members import discover
from replicator.flows.fleets.metrics import FleetMetrics
from replicator.flows.fleets.options import FleetOptions
from replicator.flows.fleets.performer import FleetPerformer
from replicator.job import ArchiveRef, CanisterRef, Endpoint, Job, JobRequest, Scalar
from replicator.pool import pool_shortfall

KIND = "fleet"


def request(
    source: Endpoint,
    *,
    name: str,
    network: str | None = None,
    index: str | None = None,
    members: str | None = None,
    every: str | float | None = None,
    due: bool | None = None,
    concurrency: int | None = None,
    keep: int | None = None,
    pool: int | None = None,
    controlled_by: str | None = None,
    action: str | None = None,
    repository: str | None = None,
    cycles_budget: int | None = None,
    cycles_budget_period: str | float | None = None,
    top_up_members: bool | None = None,
    job_id: str = "",
) -> JobRequest:
    """Run ``action`` (default: a backup) on every member of the fleet ``name`` listed by
    ``source`` (see the module; the options: :mod:`.fleets.options`)."""
    options: dict[str, Scalar] = {
        "name": name,
        "network": network,
        "index": index,
        "members": members,
        "every": every,
        "due": due,
        "concurrency": concurrency,
        "keep": keep,
        "pool": pool,
        "controlled_by": controlled_by,
        "action": action,
        "repository": repository,
        "cycles_budget": cycles_budget,
        "cycles_budget_period": cycles_budget_period,
        "top_up_members": top_up_members,
    }
    return JobRequest(KIND, source, None, options, id=job_id)


async def plan_fleet(ctx: PlanContext, req: JobRequest) -> Job:
    """Check the options and the index, then announce what the run creates and spends."""
    options = FleetOptions.of(req)
    ids = await discover(ctx.calls, req.source, options.network, req.options)
    have = {
        e.source
        for e in await ctx.store.registry.in_role(options.network, "backup")
        if e.canister is not None
    }
    new = sum(1 for m in ids if m not in have)
    ctx.note(f"fleet {options.name}: {len(ids)} members listed, {new} without a backup canister")
    actions = _member_actions(options, len(ids))
    if new and options.action in CREATING:
        cycles = new * ctx.settings.initial_cycles
        paid = ctx.provisioner_for(options.network).paid
        actions.insert(
            0,
            Action(
                Verb.CREATE,
                f"up to {new} backup canisters for fleet {options.name}, "
                f"{ctx.settings.initial_cycles:,} cycles each ({cycles:,} cycles in all)"
                + (" bought through the cycles ledger" if paid else ""),
                cycles=cycles,
                consent=paid,
            ),
        )
    if options.pool and (
        short := await pool_shortfall(ctx.store.registry, options.network, options.pool)
    ):
        cycles = short * ctx.settings.initial_cycles
        actions.append(
            Action(
                Verb.CREATE,
                f"{short} warm-pool backup canisters on {options.network} (kept {options.pool} "
                f"ready), {ctx.settings.initial_cycles:,} cycles each ({cycles:,} cycles in all)",
                cycles=cycles,
                consent=ctx.provisioner_for(options.network).paid,
            )
        )
    if options.cycles_budget is not None or options.top_up_members:
        actions.append(_top_ups(options, paid=ctx.provisioner_for(options.network).paid))
    await ctx.intend(*actions)
    return req.job(network=options.network)


def _top_ups(options: FleetOptions, *, paid: bool) -> Action:
    """The top-ups the run may send (:mod:`.fleets.budget`); their sum is the budget's."""
    what = "backup canisters and members" if options.top_up_members else "backup canisters"
    cap = (
        "no fleet budget"
        if options.cycles_budget is None
        else f"at most {options.cycles_budget:,} cycles per {options.cycles_budget_period:g} s "
        "(the fleet's cycles_budget)"
    )
    return Action(
        Verb.SPEND,
        f"top-ups of the fleet's {what} below the [cycles] floor, {cap}",
        consent=paid and options.top_up_members,
    )


# The actions that create a backup canister for a member without one.
CREATING = ("backup", "compact")


def _member_actions(options: FleetOptions, n: int) -> list[Action]:
    """What the members' jobs do, as the plan announces it."""
    match options.action:
        case "snapshot-backup":
            what = f"each of up to {n} members while its snapshot is taken"
            stop = [Action(Verb.STOP, what, consent=False)]
            return [
                *(stop if options.stop else []),
                Action(
                    Verb.MOVE,
                    f"snapshots of up to {n} members into the repository {options.repository}",
                    consent=False,
                ),
            ]
        case "compact":
            return [
                Action(
                    Verb.OVERWRITE,
                    f"up to {n} members: each reinstalled with its module and restored from its "
                    "image verified in its backup canister (writes refused meanwhile)",
                )
            ]
        case "verify":
            what = f"the newest image in the backup canisters of up to {n} members, read back"
            return [Action(Verb.MOVE, what, consent=False)]
    return [Action(Verb.MOVE, f"fresh images of up to {n} members", consent=False)]


FLEET = kinds.register(
    Kind(
        name=KIND,
        summary=(
            "back up (or snapshot, compact, verify) every member of a fleet of canisters "
            "(listed by an index canister)"
        ),
        advance=advance,
        performer=FleetPerformer,
        sources=(CanisterRef, ArchiveRef),
        targets=(None,),
        plan=plan_fleet,
        metrics=FleetMetrics,
        phases=PHASES,
    )
)
