"""``replicator images``: the images a backup canister holds.

One line per image, oldest first: its snapshot id (what ``restore
--snapshot`` takes), when it was taken at its origin or received, its size,
the canister it came from (and the snapshot id it had there) and its digest.
``--json`` prints one ``image`` note per image and a summary.

Works on any ICRP canister that exports images (an app lists its current
export, if any).  A canister that does not speak ICRP, or has no code, exits
3; one that does not trust the identity exits 4.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import ExportTicket, ensure_version
from replicator.calls import CallRunner
from replicator.cli.common import Context, add_command, preflight
from replicator.cli.render import format_bytes
from replicator.errors import EXIT_OK, AccessDeniedError, JobFailed
from replicator.limits import build_caller


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "images",
        _images,
        help="list the images a backup canister holds",
        description=(
            "List the images BACKUP holds, oldest first: snapshot id (for restore "
            "--snapshot), time, size, origin canister and digest. Changes nothing."
        ),
    )
    parser.add_argument("backup", help="the backup canister (name or id)")


async def _images(ctx: Context) -> int:
    config = ctx.config
    canister = config.canister(ctx.args.backup)
    cid = canister.canister_id
    limits = build_caller(config.limits_for(canister.network))
    runner = CallRunner(limits, config.retry, ctx.metrics)
    async with ctx.agent() as agent:
        await preflight(agent)
        client = IcrpClient(agent, cid)
        info = await runner.call(cid, "icrp_info", client.info, what=f"icrp_info on {canister}")
        ensure_version(info)
        if not info.trusted:
            raise AccessDeniedError(
                f"{canister} does not trust {agent.identity.principal}: only its controllers "
                "and trusted peers may list its images. Use a controller's identity"
            )
        if not info.can("image"):
            raise JobFailed(f"{canister} ({info.role}) holds no images: it exports none")
        images = await runner.call(
            cid, "icrp_list_images", client.list_images, what=f"icrp_list_images on {canister}"
        )
    rows = [_fields(t) for t in images]
    if ctx.args.json:
        for row in rows:
            ctx.renderer.note("image", **row)
        ctx.renderer.summary(
            {"ok": True, "exit_code": EXIT_OK, "canister": str(canister), "images": len(rows)}
        )
    else:
        _print_table(str(canister), info.role, rows)
    return EXIT_OK


def _fields(ticket: ExportTicket) -> dict[str, Any]:
    origin = ticket.origin
    # A received image's time is when it arrived; an app's, when it was frozen.
    when = origin.received_at if origin is not None else ticket.created_at
    return {
        "snapshot_id": ticket.snapshot_id,
        "ready": ticket.ready,
        "time": _iso(when),
        "time_ns": when,
        "size": ticket.size,
        "chunk_size": ticket.chunk_size,
        "chunks": ticket.chunk_count,
        "origin": None if origin is None else origin.source.to_text(),
        "origin_snapshot_id": None if origin is None else origin.snapshot_id,
        "journal_seq": ticket.journal_seq,
        "digest": None if ticket.digest is None else ticket.digest.hex(),
    }


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_table(canister: str, role: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        print(f"{canister} ({role}) holds no image yet")
        return
    table = [("ID", "TIME (UTC)", "SIZE", "ORIGIN", "DIGEST")]
    for row in rows:
        origin = "-" if row["origin"] is None else f"{row['origin']} #{row['origin_snapshot_id']}"
        digest = "preparing" if row["digest"] is None else row["digest"]
        table.append(
            (str(row["snapshot_id"]), row["time"], format_bytes(row["size"]), origin, digest)
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for line in table:
        cells = [
            cell.rjust(width) if i in (0, 2) else cell.ljust(width)  # numbers to the right
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        ]
        print("  ".join(cells) + "  " + line[4])
