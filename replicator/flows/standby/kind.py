"""Standby jobs: a canister kept as a hot standby of its source (the primary).

``plan_standby`` checks the source first (it speaks ICRP, exports images
and serves its journal, and trusts our identity), then takes the standby
given, or the one created for this source before (the registry, key
``standby``), or creates one running ``wasm`` — by default the module the
source runs, read through a canister snapshot as a restore does — with
exactly the configured controllers.

The job (:mod:`.machine`, :mod:`.performer`, :mod:`.tail`): put the
standby into ``standby`` mode, seed it with a full image over the direct
path (the source pushes; the import is staged, so a standby that had state
keeps serving it until the image commits), then apply the source's journal
until the job is cancelled.  Options (also ``[jobs.NAME] options``):
``poll_max`` (the idle poll ceiling, seconds), ``check_interval`` (seconds
between consistency checks, 0: never), ``max_bytes`` (of one batch),
``once`` (stop when caught up), ``via`` and ``wasm``/``new_canister`` as
for restores.
"""

from __future__ import annotations

from replicator import kinds
from replicator.errors import UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.image.canister import CanisterSource
from replicator.flows.restore import _module_of, _read_wasm
from replicator.flows.standby.machine import PHASES, advance
from replicator.flows.standby.metrics import StandbyMetrics
from replicator.flows.standby.performer import StandbyPerformer
from replicator.flows.standby.tail import TailOptions
from replicator.job import CanisterRef, Job, JobRequest, Scalar, new_job_id
from replicator.routes import check_via

KIND = "standby"
STANDBY_ROLE = "standby"  # the registry key of a standby created for a source
_PLANNING = ("wasm",)


def request(
    source: CanisterRef,
    standby: CanisterRef | None = None,
    *,
    poll_max: float | None = None,
    check_interval: float | None = None,
    max_bytes: int | None = None,
    once: bool = False,
    via: str | None = None,
    wasm: str | None = None,
    name: str | None = None,
    job_id: str = "",
) -> JobRequest:
    """Keep ``standby`` (or a created one) a hot standby of ``source``."""
    options: dict[str, Scalar] = {
        "poll_max": poll_max,
        "check_interval": check_interval,
        "max_bytes": max_bytes,
        "via": via,
        "wasm": wasm,
        "name": name,
    }
    if once:
        options["once"] = True
    return JobRequest(KIND, source, standby, options, id=job_id)


async def plan_standby(ctx: PlanContext, req: JobRequest) -> Job:
    """The standby job of ``req.source`` (creating its standby when none is given)."""
    source = req.source
    if not isinstance(source, CanisterRef):
        raise UsageError(f"a standby follows a canister, not {source}")
    via = req.options.get("via")
    if via is not None:
        check_via(via, "--via")
    side = CanisterSource(source, ctx.calls)
    await side.require("journal", "serve its journal (icrp_changes)")
    await side.require("image", "export an image")
    options = {k: v for k, v in req.options.items() if k not in _PLANNING and v is not None}
    target = req.target
    if target is None:
        wasm = req.options.get("wasm")
        target = await _created_standby(ctx, source, None if wasm is None else str(wasm))
    elif isinstance(target, CanisterRef):
        await ctx.intend(
            Action(
                Verb.OVERWRITE,
                f"the state of {target}: it becomes a standby of {source} (seeded with its "
                "image, then following its journal; its application refuses writes)",
            )
        )
    else:
        raise UsageError(f"a standby is a canister, not {target}")
    job = Job(KIND, source, target, options=options, id=req.id or new_job_id(KIND))
    TailOptions.of(job)  # a bad option is a usage error before anything runs
    return job


async def _created_standby(ctx: PlanContext, source: CanisterRef, wasm: str | None) -> CanisterRef:
    module = _read_wasm(wasm) if wasm is not None else None
    provisioner = ctx.provisioner_for(source.network)
    if await provisioner.existing(source.canister_id, STANDBY_ROLE) is None:
        cycles = ctx.settings.initial_cycles
        create = Action(
            Verb.CREATE,
            f"a standby canister for {source} with {cycles:,} cycles",
            cycles=cycles,
            consent=provisioner.paid,
        )
        if not await ctx.intend(create):
            return to_be_created("a new standby canister", source.network)
    if module is None:
        module = await _module_of(ctx, source, CanisterSource(source, ctx.calls).principal)
    canister = await provisioner.app_canister(source.canister_id, STANDBY_ROLE, module)
    return CanisterRef(canister.to_text(), source.network)


STANDBY = kinds.register(
    Kind(
        name=KIND,
        summary="a hot standby of a canister: seeded with its image, then following its journal",
        advance=advance,
        performer=StandbyPerformer,
        plan=plan_standby,
        target_optional=True,
        metrics=StandbyMetrics,
        phases=PHASES,
    )
)
