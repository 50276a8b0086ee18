"""``replicator archive export | import``: a canister's image to and from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.flows import archive


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "archive",
        help="export a canister's image to a file, or import one",
        description="Off-chain archives (format: docs/archive-format.md).",
    )
    actions = parser.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    export = add_command(
        actions,
        "export",
        _export,
        help="write a canister's image to an archive file (resumes a partial file)",
    )
    export.add_argument("canister", help="the canister (name or id)")
    export.add_argument("file", type=_path, help="the archive file to write")
    imp = add_command(
        actions,
        "import",
        _import,
        help="restore a canister from an archive file (verified before anything is written)",
    )
    imp.add_argument("file", type=_path, help="the archive file")
    imp.add_argument("canister", help="the canister to restore into (name or id)")


def _path(text: str) -> Path:
    return Path(text).expanduser().absolute()


async def _export(ctx: Context) -> int:
    source = ctx.config.canister(ctx.args.canister)
    path: Path = ctx.args.file

    return await run_request(ctx, archive.export_request(source, path))


async def _import(ctx: Context) -> int:
    target = ctx.config.canister(ctx.args.canister)
    path: Path = ctx.args.file

    return await run_request(ctx, archive.import_request(path, target))
