"""``replicator restore``: put an image from a backup canister back into a canister."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.errors import UsageError
from replicator.flows import restore


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "restore",
        _restore,
        help="restore a canister from its backup canister",
        description=(
            "Copy an image (the newest, or --snapshot) from BACKUP into CANISTER — by default "
            "the canister the image came from — and make it the canister's state. "
            "The canister's current state is replaced."
        ),
    )
    parser.add_argument("backup", help="the backup canister (name or id)")
    parser.add_argument(
        "canister", nargs="?", help="where to restore (default: the image's source canister)"
    )
    parser.add_argument("--snapshot", type=int, metavar="ID", help="restore this image id")
    parser.add_argument(
        "--new-canister",
        action="store_true",
        help="restore into a newly created canister (running --wasm, or the source's module)",
    )
    parser.add_argument("--wasm", type=Path, metavar="FILE", help="module for --new-canister")


async def _restore(ctx: Context) -> int:
    config, args = ctx.config, ctx.args
    if args.wasm is not None and not args.new_canister:
        raise UsageError("--wasm only applies with --new-canister")
    if args.new_canister and args.canister is not None:
        raise UsageError("give either a target canister or --new-canister, not both")
    backup = config.canister(args.backup)
    target = None if args.canister is None else config.canister(args.canister)

    request = restore.request(
        backup,
        target,
        snapshot=args.snapshot,
        via=ctx.via,
        new_canister=args.new_canister,
        wasm=args.wasm,
    )
    return await run_request(ctx, request)
