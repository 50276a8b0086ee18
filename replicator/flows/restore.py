"""Restore jobs: an image held by a backup canister back into an app canister.

``plan_restore`` picks the image and the canister it goes into:

- the image: the newest the backup canister holds, or ``snapshot`` (a backup
  canister keeps several; ``icrp_list_images`` lists them).  The chosen
  snapshot id is pinned in the job's options, so a resumed restore copies
  the same image even if a backup lands meanwhile;
- the target: the canister given; or, without one, the canister the image
  came from (the image's ``origin``); or, with ``new_canister``, a canister
  created for it (:mod:`replicator.provision`) running ``wasm``.

Which code a new canister runs: ``wasm`` (a path to the app's module —
what a user restoring after a disaster has), or, when it is not given, the
module the original canister runs now, read through the management
canister's snapshot API (take a snapshot, read its ``wasm_module``, delete
the snapshot; needs controller rights on the original).  The module is
installed with an empty init argument: an app whose init needs arguments
must be installed by hand and given as the target.

A backup canister the orchestrator created is checked before every
restore out of it (:mod:`replicator.flows.image.cycles`): pushing an image
costs it cycles, and it must not freeze meanwhile.

The job itself (:mod:`replicator.flows.image`): the backup canister pushes the image into the
target (direct) or the orchestrator relays it; the target stages it and
its previous state stays current until ``icrp_commit_import`` has checked
the image digest and rebuilt the state (in steps).  Afterwards the engine
checks the committed import's digest and, while nothing has changed the
restored state since, that the target exports the very same image.
"""

from __future__ import annotations

from pathlib import Path

from canister_iface import errors as ic
from canister_iface.icrp_types import ExportTicket
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import ReplicatorError, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.image.canister import CanisterSource
from replicator.flows.image.cycles import keep_alive
from replicator.flows.image.machine import advance_copy
from replicator.flows.image.performer import ImagePerformer
from replicator.job import CanisterRef, Endpoint, Job, JobRequest, Scalar
from replicator.metrics import CyclesMetrics
from replicator.routes import check_via
from replicator.topup import copy_cost

KIND = "restore"
_WASM_MAGIC = b"\x00asm"
_GZIP_MAGIC = b"\x1f\x8b"
# Options that only steer planning; the job keeps the others.
_PLANNING = ("new_canister", "wasm")


def request(
    backup: CanisterRef,
    target: CanisterRef | None = None,
    *,
    snapshot: int | None = None,
    via: str | None = None,
    new_canister: bool = False,
    wasm: str | Path | None = None,
    job_id: str = "",
) -> JobRequest:
    """Restore an image of ``backup`` (newest, or ``snapshot``) into ``target``.

    Without ``target`` the image goes back into the canister it came from;
    with ``new_canister`` into a canister created for it, running ``wasm``
    (a path; default: the module the original canister runs).
    """
    options: dict[str, Scalar] = {"snapshot": snapshot, "via": via}
    if new_canister:
        options["new_canister"] = True
    if wasm is not None:
        options["wasm"] = str(wasm)
    return JobRequest(KIND, backup, target, options, id=job_id)


async def plan_restore(ctx: PlanContext, req: JobRequest) -> Job:
    """The restore job (creating the target when ``new_canister``)."""
    backup, target = req.source, req.target
    if not isinstance(backup, CanisterRef):
        raise UsageError(f"a restore reads from a backup canister, not {backup}")
    new_canister = bool(req.options.get("new_canister"))
    if target is not None and new_canister:
        raise UsageError("give a target canister or ask for a new one, not both")
    via = req.options.get("via")
    if via is not None:
        check_via(via, "--via")
    snapshot = _snapshot_option(req)
    # First: a frozen backup canister answers nothing, not even which images it holds.
    await keep_alive(ctx, backup, work=lambda: _push_cost(ctx, backup, snapshot))
    options = {k: v for k, v in req.options.items() if k not in _PLANNING and v is not None}
    if target is None:
        ticket = await chosen_image(ctx, backup, snapshot)
        options["snapshot"] = ticket.snapshot_id
        wasm = req.options.get("wasm")
        target = await _target_for(
            ctx, backup, ticket, new_canister, None if wasm is None else str(wasm)
        )
    else:
        await ctx.intend(await _overwrite_given(ctx, target, backup, snapshot))
    return Job(KIND, backup, target, options=options, id=req.id)


async def _push_cost(ctx: PlanContext, backup: CanisterRef, snapshot: int | None) -> int:
    """What pushing the chosen image costs the backup canister (0: unknown)."""
    try:
        ticket = await chosen_image(ctx, backup, snapshot)
    except (ReplicatorError, ic.IcError):  # the job itself reports what stands in the way
        return 0
    return copy_cost(ticket.size, pushes=True)


def _overwrite(target: Endpoint, backup: CanisterRef, ticket: ExportTicket) -> Action:
    return Action(
        Verb.OVERWRITE,
        f"the state of {target} with snapshot {ticket.snapshot_id} of {backup} "
        f"({ticket.size:,} bytes); its current state is replaced",
        nbytes=ticket.size,
    )


async def _overwrite_given(
    ctx: PlanContext, target: Endpoint, backup: CanisterRef, snapshot: int | None
) -> Action:
    try:
        return _overwrite(target, backup, await chosen_image(ctx, backup, snapshot))
    except (ReplicatorError, ic.IcError):  # the job itself reports what stands in the way
        what = "its newest image" if snapshot is None else f"snapshot {snapshot}"
        return Action(Verb.OVERWRITE, f"the state of {target} with {what} of {backup}")


def _snapshot_option(req: JobRequest) -> int | None:
    value = req.options.get("snapshot")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"option snapshot must be an integer, got {value!r}")
    return value


async def chosen_image(ctx: PlanContext, backup: CanisterRef, snapshot: int | None) -> ExportTicket:
    """The image to restore: ``snapshot``, or the newest ``backup`` holds."""
    source = CanisterSource(backup, ctx.calls)
    await source.require("image", "serve an image")
    images = await source.call("icrp_list_images", source.client.list_images, cost="query")
    ready = [t for t in images if t.ready]
    if not ready:
        raise UsageError(f"{backup} holds no image yet: back the canister up first")
    if snapshot is None:
        return ready[-1]
    for ticket in ready:
        if ticket.snapshot_id == snapshot:
            return ticket
    held = ", ".join(str(t.snapshot_id) for t in ready)
    raise UsageError(f"{backup} holds no snapshot {snapshot} (it holds: {held})")


async def _target_for(
    ctx: PlanContext,
    backup: CanisterRef,
    ticket: ExportTicket,
    new_canister: bool,
    wasm: str | None,
) -> CanisterRef:
    original = None if ticket.origin is None else ticket.origin.source
    if not new_canister:
        if original is None:
            raise UsageError(
                f"snapshot {ticket.snapshot_id} of {backup} does not say which canister it came "
                "from; give the target canister"
            )
        target = CanisterRef(original.to_text(), backup.network)
        await ctx.intend(_overwrite(target, backup, ticket))
        return target
    module = _read_wasm(wasm) if wasm is not None else None
    provisioner = ctx.provisioner_for(backup.network)
    key = f"restore-{ticket.snapshot_id}"
    if await provisioner.existing(backup.canister_id, key) is None:
        cycles = ctx.settings.initial_cycles
        create = Action(
            Verb.CREATE,
            f"a canister to restore snapshot {ticket.snapshot_id} of {backup} into, with "
            f"{cycles:,} cycles",
            cycles=cycles,
            consent=provisioner.paid,
        )
        if not await ctx.intend(create):
            return to_be_created("a new canister", backup.network)
    if module is None:
        module = await _module_of(ctx, backup, original)
    canister = await provisioner.app_canister(backup.canister_id, key, module)
    return CanisterRef(canister.to_text(), backup.network)


def _read_wasm(path: str | Path) -> bytes:
    try:
        module = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the Wasm module {path}: {exc.strerror}") from None
    if not module.startswith((_WASM_MAGIC, _GZIP_MAGIC)):
        raise UsageError(f"{path} is not a Wasm module (nor a gzipped one)")
    return module


async def _module_of(ctx: PlanContext, backup: CanisterRef, original: Principal | None) -> bytes:
    """The module ``original`` runs, through a short-lived canister snapshot."""
    if original is None:
        raise UsageError("the image does not name its original canister; pass the app's --wasm")
    runner = ctx.calls.runner_for(backup.network)
    mgmt = ManagementClient(ctx.calls.agent_for(backup.network))
    cid = original.to_text()
    try:
        snap = await runner.call(
            cid, "take_canister_snapshot", lambda: mgmt.take_canister_snapshot(original)
        )
        try:
            module = await runner.call(
                cid,
                "read_canister_snapshot_data",
                lambda: mgmt.read_snapshot_memory(original, snap.id, "wasm_module"),
            )
        finally:
            await runner.call(
                cid,
                "delete_canister_snapshot",
                lambda: mgmt.delete_canister_snapshot(original, snap.id),
            )
    except ic.PermanentError as exc:
        raise UsageError(
            f"cannot read the Wasm module of the original canister {cid} ({exc}); pass the "
            "app's module with --wasm"
        ) from exc
    return module


RESTORE = kinds.register(
    Kind(
        name=KIND,
        summary="an image held by a backup canister into a canister (its origin, or a new one)",
        advance=advance_copy,
        performer=ImagePerformer,
        plan=plan_restore,
        target_optional=True,
        metrics=CyclesMetrics,
    )
)
