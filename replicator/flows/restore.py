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

The job itself (engine): the backup canister pushes the image into the
target (direct) or the orchestrator relays it; the target stages it and
its previous state stays current until ``icrp_commit_import`` has checked
the image digest and rebuilt the state (in steps).  Afterwards the engine
checks the committed import's digest and, while nothing has changed the
restored state since, that the target exports the very same image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from canister_iface import errors as ic
from canister_iface.icrp_types import ExportTicket
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator.calls import job_level_error
from replicator.errors import UsageError
from replicator.flows.backup import check_route
from replicator.flows.canister import CanisterSource
from replicator.jobs import CanisterRef, Job, JobKind, Scalar

if TYPE_CHECKING:
    from replicator.engine import Engine

_WASM_MAGIC = b"\x00asm"
_GZIP_MAGIC = b"\x1f\x8b"


async def plan_restore(
    engine: Engine,
    backup: CanisterRef,
    target: CanisterRef | None,
    *,
    snapshot: int | None = None,
    via: str | None = None,
    new_canister: bool = False,
    wasm: str | Path | None = None,
) -> Job:
    """The restore job (creating the target when ``new_canister``)."""
    if target is not None and new_canister:
        raise UsageError("give a target canister or ask for a new one, not both")
    options: dict[str, Scalar] = {}
    if via is not None:
        options["via"] = check_route(via)
    if snapshot is not None:
        options["snapshot"] = snapshot
    if target is None:
        try:
            ticket = await chosen_image(engine, backup, snapshot)
            options["snapshot"] = ticket.snapshot_id
            target = await _target_for(engine, backup, ticket, new_canister, wasm)
        except ic.IcError as exc:
            raise job_level_error(exc) from exc
    return Job(JobKind.RESTORE, backup, target, options=options)


async def chosen_image(engine: Engine, backup: CanisterRef, snapshot: int | None) -> ExportTicket:
    """The image to restore: ``snapshot``, or the newest ``backup`` holds."""
    source = CanisterSource(backup, engine.context())
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
    engine: Engine,
    backup: CanisterRef,
    ticket: ExportTicket,
    new_canister: bool,
    wasm: str | Path | None,
) -> CanisterRef:
    original = None if ticket.origin is None else ticket.origin.source
    if not new_canister:
        if original is None:
            raise UsageError(
                f"snapshot {ticket.snapshot_id} of {backup} does not say which canister it came "
                "from; give the target canister"
            )
        return CanisterRef(original.to_text(), backup.network)
    module = _read_wasm(wasm) if wasm is not None else await _module_of(engine, backup, original)
    provisioner = engine.provisioner(backup.network)
    canister = await provisioner.app_canister(
        backup.canister_id, f"restore-{ticket.snapshot_id}", module
    )
    return CanisterRef(canister.to_text(), backup.network)


def _read_wasm(path: str | Path) -> bytes:
    try:
        module = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the Wasm module {path}: {exc.strerror}") from None
    if not module.startswith((_WASM_MAGIC, _GZIP_MAGIC)):
        raise UsageError(f"{path} is not a Wasm module (nor a gzipped one)")
    return module


async def _module_of(engine: Engine, backup: CanisterRef, original: Principal | None) -> bytes:
    """The module ``original`` runs, through a short-lived canister snapshot."""
    if original is None:
        raise UsageError("the image does not name its original canister; pass the app's --wasm")
    runner = engine.runner(backup.network)
    mgmt = ManagementClient(engine.agent(backup.network))
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
