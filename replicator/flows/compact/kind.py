"""The ``compact`` kind: its request, its planner and its registration.

``plan_compact`` checks the canister first (it exports and imports images,
has modes, and this identity controls it: ``canister_status`` answers),
finds the module to reinstall (:mod:`replicator.flows.modules`), then
finds or creates the canister's backup canister (the job's target, as for
a backup) and announces what it will do: writes refused while it runs, the
canister reinstalled.  Nothing happens under ``--dry-run``.

With ``new_canister`` the job's target is a new canister instead: created
here through the provisioner (recorded in the registry under
``compact-new`` *before* it is created, so a crash never creates two;
same module, exactly the configured controllers); a re-run finds it in the
registry and continues the unfinished job.  A canister that already routes
keys elsewhere (fences set: split, or compacted into a new canister) is
refused.
"""

from __future__ import annotations

from canister_iface.icrp import IcrpClient
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import JobFailed, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.backup import backup_target
from replicator.flows.compact.machine import PHASES, advance
from replicator.flows.compact.metrics import CompactMetrics
from replicator.flows.compact.performer import NEW_KEY, CompactPerformer
from replicator.flows.modules import module_of
from replicator.job import CanisterRef, Job, JobRequest

KIND = "compact"
NEEDED = ("image", "import", "mode", "range_digest")


def request(
    canister: CanisterRef,
    backup: CanisterRef | None = None,
    *,
    wasm: str | None = None,
    name: str | None = None,
    new_canister: bool = False,
    free_old: bool = False,
    job_id: str = "",
) -> JobRequest:
    """Compact ``canister`` through ``backup`` (or its registered or a new backup canister);
    with ``new_canister``, into a new canister that takes over its keys (``free_old``: then
    delete the old canister's records)."""
    options = {
        "wasm": wasm,
        "name": name,
        "new_canister": new_canister or None,
        "free_old": free_old or None,
    }
    return JobRequest(KIND, canister, backup, options, id=job_id)


async def plan_compact(ctx: PlanContext, req: JobRequest) -> Job:
    canister = req.source
    if not isinstance(canister, CanisterRef):
        raise UsageError(f"compact works on a canister, not {canister}")
    if req.options.get("free_old") and not req.options.get("new_canister"):
        raise UsageError("free_old deletes the old canister's records: it needs new_canister")
    if req.options.get("new_canister"):
        return await _plan_new(ctx, req, canister)
    await _check(ctx, canister)
    await module_of(ctx.calls, canister, req.options.get("wasm"))
    target = req.target
    if target is None:
        target = await backup_target(ctx, canister, keep=None)
    stop = Action(
        Verb.STOP,
        f"writes to {canister}, from its image until it is restored and checked",
        consent=False,
    )
    reinstall = Action(
        Verb.OVERWRITE,
        f"{canister}: reinstalled with its module, then restored from its image verified in "
        f"{target}",
    )
    if not await ctx.intend(stop, reinstall):
        return req.job(target)
    return req.job(target)


async def _plan_new(ctx: PlanContext, req: JobRequest, canister: CanisterRef) -> Job:
    """Compact ``canister`` into a new canister (see the module docstring)."""
    network = canister.network
    entry = await ctx.store.registry.get(network, canister.canister_id, NEW_KEY)
    if entry is not None and entry.canister is not None:
        job = req.job(CanisterRef(entry.canister, network))
        if await ctx.store.find_resumable(job.fingerprint) is not None:
            # Past the switch the old canister is fenced: no check would pass again.
            ctx.note(f"continuing the unfinished compact of {canister} into {entry.canister}")
            return job
    await _check(ctx, canister)
    await _check_unmoved(ctx, canister)
    wasm = await module_of(ctx.calls, canister, req.options.get("wasm"))
    provisioner = ctx.provisioner_for(network)
    cycles = ctx.settings.initial_cycles
    actions = [
        Action(
            Verb.CREATE,
            f"a new canister for the state of {canister}, running its module, with "
            f"{cycles:,} cycles",
            cycles=cycles,
            consent=provisioner.paid,
        ),
        Action(
            Verb.STOP,
            f"writes to {canister}, from its image until the new canister takes them",
            consent=False,
        ),
        Action(
            Verb.MOVE,
            f"{canister}'s keys to the new canister: it answers OutOfRange naming the new "
            "canister from then on, and is left for you to delete",
            consent=False,
        ),
    ]
    if req.options.get("free_old"):
        actions.append(Action(Verb.DELETE, f"every record of {canister}, once moved"))
    if not await ctx.intend(*actions):
        return req.job(to_be_created("new canister", network))
    made = await provisioner.app_canister(canister.canister_id, NEW_KEY, wasm)
    return req.job(CanisterRef(made.to_text(), network))


async def _check_unmoved(ctx: PlanContext, canister: CanisterRef) -> None:
    icrp = IcrpClient(ctx.calls.agent_for(canister.network), _principal(canister))
    runner = ctx.calls.runner_for(canister.network)
    config = await runner.call(canister.canister_id, "icrp_config", icrp.config, cost="query")
    routing = await runner.call(canister.canister_id, "icrp_routing", icrp.routing, cost="query")
    me = _principal(canister)
    # Fenced ranges and no route naming it: its keys were moved to another canister
    # (a split source keeps a route of its own, and is compacted as usual).
    if config.fences and not any(r.canister == me for r in routing.routes):
        owners = sorted({str(f.owner) for f in config.fences if f.owner is not None})
        raise UsageError(
            f"{canister} has fenced key ranges (owned by {', '.join(owners) or 'others'}) and "
            "routes no key to itself: it was compacted into a new canister already; compact "
            "the canister that owns the keys"
        )


def _principal(ref: CanisterRef) -> Principal:
    return Principal.from_text(ref.canister_id)


async def _check(ctx: PlanContext, canister: CanisterRef) -> None:
    agent = ctx.calls.agent_for(canister.network)
    runner = ctx.calls.runner_for(canister.network)
    principal = Principal.from_text(canister.canister_id)
    icrp = IcrpClient(agent, principal)
    info = await runner.call(canister.canister_id, "icrp_info", icrp.info)
    lacking = [c for c in NEEDED if not info.can(c)]
    if lacking:
        raise JobFailed(
            f"{canister} cannot be compacted: it lacks the ICRP capabilities "
            f"{', '.join(lacking)} (it has: {', '.join(info.capabilities) or 'none'})"
        )
    mgmt = ManagementClient(agent)
    await runner.call(
        canister.canister_id,
        "canister_status",
        lambda: mgmt.canister_status(principal),
        what=f"canister_status of {canister} (compact reinstalls it: this identity must be a "
        "controller)",
    )


COMPACT = kinds.register(
    Kind(
        name=KIND,
        summary="a canister replicated into a fresh instance of itself, so its memory shrinks",
        advance=advance,
        performer=CompactPerformer,
        plan=plan_compact,
        target_optional=True,
        metrics=CompactMetrics,
        phases=PHASES,
    )
)
