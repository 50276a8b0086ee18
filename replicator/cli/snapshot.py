"""``replicator snapshot …``: any canister backed up, restored and copied through IC snapshots.

Jobs (resumable, with progress, ``--json``, ``--dry-run`` and the usual exit codes)::

    replicator snapshot backup CANISTER [--repo DIR] [--no-stop] [--keep-on-chain]
    replicator snapshot restore CANISTER [SNAPSHOT] [--into OTHER | --new-canister]
    replicator snapshot copy SRC DST [--no-stop] [--keep-on-chain] [--via direct|relay]

The repository (no network needed)::

    replicator snapshot list [CANISTER]
    replicator snapshot verify [SNAPSHOT] [--no-read-data]
    replicator snapshot prune [--keep-last N] [--keep-daily N] ... [--grace 24h]
    replicator snapshot import-dir DIR CANISTER      # icp-cli's snapshot directory
    replicator snapshot export-dir SNAPSHOT DIR

The repository is ``--repo DIR``, else ``$REPLICATOR_REPOSITORY``, else
``~/.local/share/replicator/snapshots``; the first backup creates it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.cli.render import format_bytes
from replicator.errors import EXIT_INTEGRITY, EXIT_OK, UsageError
from replicator.flows.snapshot import jobs
from replicator.repository import (
    Duration,
    Policy,
    PruneReport,
    Repository,
    RepositoryNotFound,
    StoredManifest,
    export_icp_cli_dir,
    import_icp_cli_dir,
)
from replicator.repository.manifest import ns_to_iso

REPOSITORY_ENV = "REPLICATOR_REPOSITORY"
DEFAULT_REPOSITORY = "~/.local/share/replicator/snapshots"
_KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "snapshot",
        help="back up, restore and copy any canister through IC snapshots (no ICRP needed)",
        description=(
            "Canister snapshots need no cooperation from the canister, only a controller (or, "
            "for backups, a snapshot viewer). Snapshots are kept in a deduplicating repository "
            "(docs/repository-format.md)."
        ),
    )
    actions = parser.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    _backup_parser(actions)
    _restore_parser(actions)
    _copy_parser(actions)
    _list_parser(actions)
    _verify_parser(actions)
    _prune_parser(actions)
    _import_parser(actions)
    _export_parser(actions)


def _repo_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo",
        metavar="DIR",
        help=f"the snapshot repository (default: ${REPOSITORY_ENV}, else {DEFAULT_REPOSITORY})",
    )


def repository_path(args: argparse.Namespace) -> Path:
    text = args.repo or os.environ.get(REPOSITORY_ENV) or DEFAULT_REPOSITORY
    return Path(text).expanduser().absolute()


# ------------------------------------------------------------------- jobs


def _backup_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "backup",
        _backup,
        help="take a snapshot of a canister and store it in the repository",
        description=(
            "Stop CANISTER, take a snapshot, start it again (the downtime is reported), read "
            "every part of the snapshot into the repository, then delete the IC snapshot. "
            "Only new chunks are stored. An identity that is only a snapshot viewer stores "
            "the canister's newest existing snapshot instead."
        ),
    )
    p.add_argument("canister", help="the canister (name or id)")
    _repo_option(p)
    p.add_argument(
        "--no-stop",
        action="store_true",
        help="take the snapshot from the running canister (calls in flight are then in it)",
    )
    p.add_argument(
        "--keep-on-chain", action="store_true", help="keep the IC snapshot after storing it"
    )
    p.add_argument("--ic-snapshot", metavar="ID", help="store this existing IC snapshot (hex)")
    p.add_argument("--tag", action="append", default=[], help="a tag for the snapshot (repeat)")


async def _backup(ctx: Context) -> int:
    args = ctx.args
    request = jobs.backup_request(
        ctx.config.canister(args.canister),
        repository_path(args),
        stop=not args.no_stop,
        keep_on_chain=args.keep_on_chain,
        ic_snapshot=args.ic_snapshot,
        tags=tuple(args.tag),
    )
    return await run_request(ctx, request)


def _restore_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "restore",
        _restore,
        help="load a stored snapshot into the canister, another one, or a new one",
        description=(
            "Upload SNAPSHOT (default: the newest of CANISTER) to the target, re-read and "
            "check it, stop the target, load it, start it and check the certified module hash "
            "and memory sizes. The target's current state is replaced. Needs a controller."
        ),
    )
    p.add_argument("canister", help="the canister whose snapshot to restore (name or id)")
    p.add_argument("snapshot", nargs="?", help="the snapshot id or a unique prefix")
    _repo_option(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--into", metavar="OTHER", help="restore into this canister instead")
    where.add_argument(
        "--new-canister", action="store_true", help="restore into a canister created for it"
    )
    p.add_argument(
        "--keep-on-chain",
        action="store_true",
        help="keep the uploaded snapshot on the target after loading it",
    )


async def _restore(ctx: Context) -> int:
    args = ctx.args
    config = ctx.config
    request = jobs.restore_request(
        repository_path(args),
        config.canister(args.canister),
        snapshot=args.snapshot,
        into=None if args.into is None else config.canister(args.into),
        new_canister=args.new_canister,
        keep_on_chain=args.keep_on_chain,
    )
    return await run_request(ctx, request)


def _copy_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "copy",
        _copy,
        help="copy a canister's state into another canister through a snapshot",
        description=(
            "Snapshot SRC and load it into DST. On one subnet the snapshot is loaded straight "
            "into DST; across subnets it is streamed through this machine (a bounded buffer, "
            "no local copy) and uploaded. --via direct / relay forces one way. DST's state "
            "is replaced."
        ),
    )
    p.add_argument("source", help="the canister to copy (name or id)")
    p.add_argument("target", help="the canister to copy into (name or id)")
    p.add_argument("--no-stop", action="store_true", help="do not stop SRC for the snapshot")
    p.add_argument(
        "--keep-on-chain", action="store_true", help="keep the IC snapshots after the copy"
    )


async def _copy(ctx: Context) -> int:
    args = ctx.args
    config = ctx.config
    request = jobs.copy_request(
        config.canister(args.source),
        config.canister(args.target),
        stop=not args.no_stop,
        keep_on_chain=args.keep_on_chain,
        via=ctx.via,
    )
    return await run_request(ctx, request)


# ------------------------------------------------------------- repository


def _list_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "list",
        _list,
        help="the snapshots the repository holds",
        description="List the stored snapshots, oldest first (of CANISTER, or all).",
    )
    p.add_argument("canister", nargs="?", help="only this canister's (name or id)")
    _repo_option(p)


async def _list(ctx: Context) -> int:
    args = ctx.args
    repo = await asyncio.to_thread(Repository.open, repository_path(args))
    canister = None if args.canister is None else ctx.config.canister(args.canister)
    found = await asyncio.to_thread(
        repo.manifests,
        None if canister is None else canister.canister_id,
        network=None if canister is None else canister.network,
    )
    rows = [_row(s) for s in found]
    if ctx.args.json:
        for row in rows:
            ctx.renderer.note("snapshot", **row)
        ctx.renderer.summary(
            {"ok": True, "exit_code": EXIT_OK, "repository": repo.location, "snapshots": len(rows)}
        )
        return EXIT_OK
    if not rows:
        print(f"{repo.location} holds no snapshot" + (f" of {canister}" if canister else ""))
        return EXIT_OK
    table = [("ID", "TIME (UTC)", "CANISTER", "NETWORK", "SIZE", "NEW", "TAGS")]
    for r in rows:
        table.append(
            (
                r["short_id"],
                r["time"][:19].replace("T", " "),
                r["canister"],
                r["network"],
                format_bytes(r["size"]),
                "-" if r["bytes_new"] is None else format_bytes(r["bytes_new"]),
                ",".join(r["tags"]),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return EXIT_OK


def _row(stored: StoredManifest) -> dict[str, Any]:
    m = stored.manifest
    return {
        "id": stored.id,
        "short_id": stored.short_id,
        "time": ns_to_iso(m.metadata.taken_at_timestamp),
        "canister": m.canister,
        "network": m.network,
        "size": m.size,
        "chunk_size": m.chunk_size,
        "chunks": len(m.digests()),
        "ic_snapshot_id": None if m.ic_snapshot_id is None else m.ic_snapshot_id.hex(),
        "bytes_new": None if m.summary is None else m.summary.bytes_new,
        "stored_new": None if m.summary is None else m.summary.stored_new,
        "tags": list(m.tags),
    }


def _verify_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "verify",
        _verify,
        help="check the repository: manifests, chunks present, every chunk re-hashed",
        description=(
            "Check SNAPSHOT (or every snapshot): its manifest against its id, that every chunk "
            "it names is stored and, unless --no-read-data, that every chunk hashes to its "
            "name. Exit 5 names every missing or damaged chunk."
        ),
    )
    p.add_argument("snapshot", nargs="?", help="one snapshot (id or prefix); default: all")
    _repo_option(p)
    p.add_argument("--no-read-data", action="store_true", help="only check that chunks exist")


async def _verify(ctx: Context) -> int:
    args = ctx.args
    repo = await asyncio.to_thread(Repository.open, repository_path(args))
    report = await asyncio.to_thread(repo.verify, args.snapshot, read_data=not args.no_read_data)
    for line in report.problems():
        ctx.renderer.note(line)
    code = EXIT_OK if report.ok else EXIT_INTEGRITY
    ctx.renderer.summary(
        {
            "ok": report.ok,
            "exit_code": code,
            "repository": repo.location,
            "snapshots": report.snapshots,
            "chunks": report.chunks,
            "bytes_read": report.bytes_read,
            "missing": len(report.missing),
            "damaged": len(report.damaged),
            "bad_manifests": len(report.bad_manifests),
            "unreferenced": report.unreferenced,
        }
    )
    return code


def _prune_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "prune",
        _prune,
        help="forget snapshots a retention policy does not keep; delete unreferenced chunks",
        description=(
            "restic's retention rules, per canister: --keep-last N keeps the newest N, "
            "--keep-daily N the newest of each of the last N days with one (hourly, weekly, "
            "monthly, yearly alike; -1: all), --keep-within D everything within D (2y5m7d3h) "
            "of the newest, --keep-tag T snapshots with that tag. Without a rule no snapshot "
            "is forgotten and only unreferenced chunks are deleted. Chunks written or used "
            "within --grace are spared (a backup in progress). --dry-run lists, deletes nothing."
        ),
    )
    _repo_option(p)
    for unit in _KEEPS:
        p.add_argument(f"--keep-{unit}", type=int, metavar="N", default=0)
    p.add_argument("--keep-within", metavar="D", help="keep all within D of the newest")
    for unit in _KEEPS[1:]:
        p.add_argument(f"--keep-within-{unit}", metavar="D", help=f"keep one {unit} within D")
    p.add_argument("--keep-tag", action="append", default=[], metavar="T[,T...]")
    p.add_argument("--grace", default="24h", metavar="D", help="spare chunks used within D")


def policy_of(args: argparse.Namespace) -> Policy:
    """The retention policy the prune flags ask for (a usage error naming the flag)."""

    def duration(flag: str, value: str | None) -> Duration | None:
        if value is None:
            return None
        try:
            return Duration.parse(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None

    try:
        return Policy(
            last=args.keep_last,
            hourly=args.keep_hourly,
            daily=args.keep_daily,
            weekly=args.keep_weekly,
            monthly=args.keep_monthly,
            yearly=args.keep_yearly,
            within=duration("--keep-within", args.keep_within),
            within_hourly=duration("--keep-within-hourly", args.keep_within_hourly),
            within_daily=duration("--keep-within-daily", args.keep_within_daily),
            within_weekly=duration("--keep-within-weekly", args.keep_within_weekly),
            within_monthly=duration("--keep-within-monthly", args.keep_within_monthly),
            within_yearly=duration("--keep-within-yearly", args.keep_within_yearly),
            tags=tuple(tuple(t for t in tag.split(",") if t) for tag in args.keep_tag),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _grace(text: str) -> dt.timedelta:
    try:
        d = Duration.parse(text)
    except ValueError as exc:
        raise UsageError(f"--grace: {exc}") from None
    if d.years or d.months:
        raise UsageError("--grace: give days and hours (e.g. 24h, 2d)")
    return dt.timedelta(days=d.days, hours=d.hours)


async def _prune(ctx: Context) -> int:
    args = ctx.args
    policy = policy_of(args)
    grace = _grace(args.grace)
    repo = await asyncio.to_thread(Repository.open, repository_path(args))
    report = await asyncio.to_thread(repo.prune, policy, dry_run=args.dry_run, grace=grace)
    _render_prune(ctx, report)
    return EXIT_OK


def _render_prune(ctx: Context, report: PruneReport) -> None:
    for group in report.groups:
        for d in group.decisions:
            verb = "keep" if d.keep else ("would forget" if report.dry_run else "forget")
            why = f" ({', '.join(d.reasons)})" if d.reasons else ""
            ctx.renderer.note(
                f"{verb} {d.item.short_id} {group.canister}@{group.network} "
                f"{d.time:%Y-%m-%d %H:%M}{why}",
                snapshot=d.item.id,
                keep=d.keep,
                reasons=list(d.reasons),
            )
    ctx.renderer.summary(
        {
            "ok": True,
            "exit_code": EXIT_OK,
            "dry_run": report.dry_run,
            "policy": report.policy,
            "forgotten": len(report.removed_snapshots),
            "kept": sum(1 for g in report.groups for d in g.decisions if d.keep),
            "chunks_removed": report.chunks_removed,
            "bytes_removed": report.bytes_removed,
            "chunks_kept": report.chunks_kept,
            "chunks_spared": report.chunks_spared,
        }
    )


def _import_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "import-dir",
        _import_dir,
        help="store an icp-cli snapshot directory (icp canister snapshot download) as a snapshot",
        description=(
            "Check DIR (metadata.json, wasm_module.bin, wasm_memory.bin, stable_memory.bin, "
            "wasm_chunk_store/) and store it as a snapshot of CANISTER (the directory does not "
            "say which canister it came from)."
        ),
    )
    p.add_argument("directory", type=Path, help="the icp-cli snapshot directory")
    p.add_argument("canister", help="the canister it is a snapshot of (name or id)")
    _repo_option(p)
    p.add_argument("--tag", action="append", default=[], help="a tag for the snapshot (repeat)")


async def _import_dir(ctx: Context) -> int:
    args = ctx.args
    canister = ctx.config.canister(args.canister)
    root = repository_path(args)

    def work() -> StoredManifest:
        try:
            repo = Repository.open(root)
        except RepositoryNotFound:
            if root.exists() and any(root.iterdir()):
                raise
            repo = Repository.init(root)
        return import_icp_cli_dir(
            repo,
            args.directory,
            canister=canister.canister_id,
            network=canister.network,
            tags=args.tag,
        )

    stored = await asyncio.to_thread(work)
    ctx.renderer.summary({"ok": True, "exit_code": EXIT_OK, "repository": str(root)} | _row(stored))
    return EXIT_OK


def _export_parser(actions: Any) -> None:
    p = add_command(
        actions,
        "export-dir",
        _export_dir,
        help="write a stored snapshot as an icp-cli snapshot directory",
        description=(
            "Write SNAPSHOT into DIR (new or empty) as `icp canister snapshot upload` reads it; "
            "every chunk is verified as it is read, and on any error nothing is left in DIR."
        ),
    )
    p.add_argument("snapshot", help="the snapshot id or a unique prefix")
    p.add_argument("directory", type=Path, help="where to write it (new or empty)")
    _repo_option(p)


async def _export_dir(ctx: Context) -> int:
    args = ctx.args
    repo = await asyncio.to_thread(Repository.open, repository_path(args))
    stored = await asyncio.to_thread(repo.load_manifest, args.snapshot)
    out = await asyncio.to_thread(export_icp_cli_dir, repo, stored, args.directory)
    ctx.renderer.summary({"ok": True, "exit_code": EXIT_OK, "directory": str(out)} | _row(stored))
    return EXIT_OK
