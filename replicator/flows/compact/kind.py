"""The ``compact`` kind: its request, its planner and its registration.

``plan_compact`` checks the canister first (it exports and imports images,
has modes, and this identity controls it: ``canister_status`` answers),
finds the module to reinstall (:mod:`replicator.flows.modules`), then
finds or creates the canister's backup canister (the job's target, as for
a backup) and announces what it will do: writes refused while it runs, the
canister reinstalled.  Nothing happens under ``--dry-run``.
"""

from __future__ import annotations

from canister_iface.icrp import IcrpClient
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import JobFailed, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb
from replicator.flows.backup import backup_target
from replicator.flows.compact.machine import PHASES, advance
from replicator.flows.compact.metrics import CompactMetrics
from replicator.flows.compact.performer import CompactPerformer
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
    job_id: str = "",
) -> JobRequest:
    """Compact ``canister`` through ``backup`` (or its registered or a new backup canister)."""
    return JobRequest(KIND, canister, backup, {"wasm": wasm, "name": name}, id=job_id)


async def plan_compact(ctx: PlanContext, req: JobRequest) -> Job:
    canister = req.source
    if not isinstance(canister, CanisterRef):
        raise UsageError(f"compact works on a canister, not {canister}")
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
