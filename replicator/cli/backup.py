"""``replicator backup``: copy a canister's image into a backup canister."""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.flows import backup


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "backup",
        _backup,
        help="back a canister up into a backup canister (created on demand)",
        description=(
            "Copy the current image of CANISTER into BACKUP, or into the backup canister "
            "the orchestrator created for it before (created now if there is none). "
            "Interrupted or failed runs resume from their checkpoint when the same command "
            "is run again."
        ),
    )
    parser.add_argument("canister", help="the canister to back up (name or id)")
    parser.add_argument(
        "backup", nargs="?", help="the backup canister (name or id; default: its own, on demand)"
    )
    parser.add_argument(
        "--keep", type=int, metavar="N", help="images a newly created backup canister keeps"
    )


async def _backup(ctx: Context) -> int:
    config, args = ctx.config, ctx.args
    source = config.canister(args.canister)
    target = None if args.backup is None else config.canister(args.backup)

    return await run_request(ctx, backup.request(source, target, via=ctx.via, keep=args.keep))
