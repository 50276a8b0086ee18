"""The snapshot kinds: typed requests, planners and their registration.

=====================  ==================  ==================  ===============================
kind                   source              target              options
=====================  ==================  ==================  ===============================
``snapshot-backup``    a canister          ``file:REPO``       ``stop`` (default true),
                                                               ``keep_on_chain``,
                                                               ``ic_snapshot`` (store this
                                                               existing one), ``tags``
``snapshot-restore``   ``file:REPO``       a canister          ``snapshot`` (id or prefix;
                                           (default: the       default the newest of ``of``),
                                           snapshot's own)     ``new_canister``,
                                                               ``keep_on_chain``
``snapshot-copy``      a canister          a canister          ``stop``, ``keep_on_chain``,
                                                               ``via`` (``direct``: load on
                                                               the same subnet, ``relay``:
                                                               stream; default: whichever fits)
=====================  ==================  ==================  ===============================

``REPO`` is a snapshot repository directory (:mod:`replicator.repository`),
created by the first backup into it.  A restore pins the snapshot it chose
in its options, so a resumed restore loads the same one even if backups
landed meanwhile.  Planners check what they can without changing anything
(the repository, the snapshot, a restore target's controllers) and
announce what the job will stop, overwrite and create.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import AccessDeniedError, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.snapshot.machine import BACKUP, COPY, PHASES, RESTORE, advance
from replicator.flows.snapshot.metrics import SnapshotMetrics
from replicator.flows.snapshot.performer import SnapshotPerformer
from replicator.job import ArchiveRef, CanisterRef, Job, JobRequest, Scalar
from replicator.repository import Repository, StoredManifest
from replicator.repository.manifest import ns_to_iso
from replicator.routes import check_via

# Options that only steer planning; the job keeps the others.
_PLANNING = ("new_canister", "of")


# ------------------------------------------------------------------ requests


def backup_request(
    canister: CanisterRef,
    repository: str | Path,
    *,
    stop: bool = True,
    keep_on_chain: bool = False,
    ic_snapshot: str | None = None,
    tags: tuple[str, ...] = (),
    job_id: str = "",
) -> JobRequest:
    """Store a snapshot of ``canister`` in the repository at ``repository``.

    ``stop=False`` takes it from the running canister; ``ic_snapshot`` stores
    that existing snapshot instead of taking one.
    """
    options: dict[str, Scalar] = {
        "stop": None if stop else False,
        "keep_on_chain": True if keep_on_chain else None,
        "ic_snapshot": ic_snapshot,
        "tags": ",".join(tags) or None,
    }
    return JobRequest(BACKUP, canister, ArchiveRef(_path(repository)), options, id=job_id)


def restore_request(
    repository: str | Path,
    canister: CanisterRef,
    *,
    snapshot: str | None = None,
    into: CanisterRef | None = None,
    new_canister: bool = False,
    keep_on_chain: bool = False,
    job_id: str = "",
) -> JobRequest:
    """Restore ``snapshot`` (default: the newest) of ``canister`` into it, ``into`` another
    canister, or into a new one."""
    if into is not None and new_canister:
        raise UsageError("give --into OTHER or --new-canister, not both")
    options: dict[str, Scalar] = {
        "snapshot": snapshot,
        "of": canister.canister_id,
        "new_canister": True if new_canister else None,
        "keep_on_chain": True if keep_on_chain else None,
    }
    target = into if into is not None or new_canister else canister
    return JobRequest(RESTORE, ArchiveRef(_path(repository)), target, options, id=job_id)


def copy_request(
    source: CanisterRef,
    target: CanisterRef,
    *,
    stop: bool = True,
    keep_on_chain: bool = False,
    via: str | None = None,
    job_id: str = "",
) -> JobRequest:
    """Copy ``source``'s state into ``target`` through a snapshot."""
    options: dict[str, Scalar] = {
        "stop": None if stop else False,
        "keep_on_chain": True if keep_on_chain else None,
        "via": via,
    }
    return JobRequest(COPY, source, target, options, id=job_id)


def _path(repository: str | Path) -> str:
    return str(Path(repository).expanduser().absolute())


# ------------------------------------------------------------------ planners


async def plan_backup(ctx: PlanContext, req: JobRequest) -> Job:
    source, repo = _canister(req.source, "backs up"), _repository(req.target)
    _flag(req, "stop")
    _flag(req, "keep_on_chain")
    for name in ("tags", "ic_snapshot"):
        if req.options.get(name) is not None and not isinstance(req.options.get(name), str):
            raise UsageError(f"option {name} must be a string, got {req.options.get(name)!r}")
    await asyncio.to_thread(_check_repository_for_backup, Path(repo.path))
    actions = []
    if req.options.get("stop") is not False and req.options.get("ic_snapshot") is None:
        actions.append(
            Action(
                Verb.STOP,
                f"{source} while its snapshot is taken (stop → snapshot → start)",
                consent=False,
            )
        )
    actions.append(Action(Verb.MOVE, f"a snapshot of {source} into {repo.path}", consent=False))
    await ctx.intend(*actions)
    return req.job()


async def plan_restore(ctx: PlanContext, req: JobRequest) -> Job:
    repo_ref = _repository(req.source)
    _flag(req, "keep_on_chain")
    repo = await asyncio.to_thread(Repository.open, repo_ref.path)
    of = req.options.get("of")
    network = req.target.network if isinstance(req.target, CanisterRef) else None
    stored = await asyncio.to_thread(_chosen, repo, req.options.get("snapshot"), of, network)
    m = stored.manifest
    options = {k: v for k, v in req.options.items() if k not in _PLANNING and v is not None}
    options["snapshot"] = stored.id
    taken = ns_to_iso(m.metadata.taken_at_timestamp)
    described = f"snapshot {stored.short_id} of {m.canister} taken {taken} ({m.size:,} bytes)"
    target = req.target
    if req.options.get("new_canister"):
        net = network or m.network
        key = f"snapshot-restore-{stored.id[:16]}"
        options["created"] = key
        target = await _new_canister(ctx, repo_ref, net, key, described)
    elif isinstance(target, CanisterRef):
        await _check_controller(ctx, target)
        await ctx.intend(
            Action(
                Verb.OVERWRITE,
                f"the state of {target} with {described}; its current state is replaced",
                nbytes=m.size,
            )
        )
    if target is None:
        raise UsageError("a snapshot restore needs a target canister (or --new-canister)")
    return Job(RESTORE, repo_ref, target, options=options, id=req.id)


async def plan_copy(ctx: PlanContext, req: JobRequest) -> Job:
    source = _canister(req.source, "copies")
    target = _canister(req.target, "copies into")
    _flag(req, "stop")
    _flag(req, "keep_on_chain")
    via = req.options.get("via")
    if via is not None:
        check_via(via, "--via")
    await _check_controller(ctx, target)
    await ctx.intend(
        Action(Verb.STOP, f"{source} while its snapshot is taken", consent=False),
        Action(
            Verb.OVERWRITE,
            f"the state of {target} with a snapshot of {source}; its current state is replaced",
        ),
    )
    return req.job()


def _canister(endpoint: object, what: str) -> CanisterRef:
    if not isinstance(endpoint, CanisterRef):
        raise UsageError(f"a snapshot job {what} a canister, not {endpoint}")
    return endpoint


def _repository(endpoint: object) -> ArchiveRef:
    if not isinstance(endpoint, ArchiveRef):
        raise UsageError(
            f"a snapshot backup or restore needs a repository directory (file:DIR), not {endpoint}"
        )
    return endpoint


def _flag(req: JobRequest, name: str) -> None:
    value = req.options.get(name)
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"option {name} must be true or false, got {value!r}")


def _check_repository_for_backup(root: Path) -> None:
    if (root / "config.json").exists():
        Repository.open(root)  # a newer format, a damaged config: refused now
    elif root.exists() and not root.is_dir():
        raise UsageError(f"{root} is a file, not a snapshot repository: choose a directory")
    elif root.exists() and any(root.iterdir()):
        raise UsageError(
            f"{root} is neither a snapshot repository nor empty: choose a new or empty "
            "directory for one (the first backup creates it)"
        )


def _chosen(repo: Repository, snapshot: object, of: object, network: str | None) -> StoredManifest:
    if snapshot is not None:
        if not isinstance(snapshot, str):
            raise UsageError(f"option snapshot must be a snapshot id, got {snapshot!r}")
        return repo.load_manifest(snapshot)
    if not isinstance(of, str):
        raise UsageError("name the snapshot to restore, or the canister whose newest one to use")
    found = repo.manifests(of, network=network)
    if not found:
        raise UsageError(
            f"{repo.location} holds no snapshot of {of}"
            + (f" on {network}" if network else "")
            + f": back it up first (replicator snapshot backup {of})"
        )
    return found[-1]


async def _check_controller(ctx: PlanContext, target: CanisterRef) -> None:
    agent = ctx.calls.agent_for(target.network)
    runner = ctx.calls.runner_for(target.network)
    principal = Principal.from_text(target.canister_id)
    controllers = await runner.call(
        target.canister_id,
        "read_state controllers",
        lambda: agent.controllers(principal),
        what=f"the controllers of {target}",
    )
    me = agent.identity.principal
    if me not in controllers:
        raise AccessDeniedError(
            f"loading a snapshot into {target} needs a controller of it, and this identity "
            f"({me}) is not one (a snapshot viewer may back snapshots up, but only a "
            "controller restores); use a controller identity; nothing was changed"
        )


async def _new_canister(
    ctx: PlanContext, repo: ArchiveRef, network: str, key: str, described: str
) -> CanisterRef:
    provisioner = ctx.provisioner_for(network)
    cycles = ctx.settings.initial_cycles
    if await provisioner.existing(repo.path, key) is None:
        create = Action(
            Verb.CREATE,
            f"a canister to restore {described} into, with {cycles:,} cycles"
            + (" bought through the cycles ledger" if provisioner.paid else ""),
            cycles=cycles,
            consent=provisioner.paid,
        )
        if not await ctx.intend(create):
            return to_be_created("a new canister", network)
    canister = await provisioner.empty_canister(repo.path, key)
    return CanisterRef(canister.to_text(), network)


# -------------------------------------------------------------- registration

_COMMON: dict[str, Any] = {
    "advance": advance,
    "performer": SnapshotPerformer,
    "metrics": SnapshotMetrics,
    "phases": PHASES,
}

SNAPSHOT_BACKUP = kinds.register(
    Kind(
        name=BACKUP,
        summary="a snapshot of any canister into a deduplicating repository",
        sources=(CanisterRef,),
        targets=(ArchiveRef,),
        plan=plan_backup,
        **_COMMON,
    )
)
SNAPSHOT_RESTORE = kinds.register(
    Kind(
        name=RESTORE,
        summary="a stored snapshot loaded into a canister (its own, another or a new one)",
        sources=(ArchiveRef,),
        targets=(CanisterRef,),
        plan=plan_restore,
        target_optional=True,
        **_COMMON,
    )
)
SNAPSHOT_COPY = kinds.register(
    Kind(
        name=COPY,
        summary="a canister's state into another canister through a snapshot (any subnet)",
        sources=(CanisterRef,),
        targets=(CanisterRef,),
        plan=plan_copy,
        **_COMMON,
    )
)
