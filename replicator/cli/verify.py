"""``replicator verify``: check an image chunk by chunk, and that a copy holds the same one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.config import FILE_PREFIX
from replicator.flows import verify
from replicator.job import ArchiveRef, CanisterRef


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "verify",
        _verify,
        help="verify an image (canister or archive file) and optionally a copy of it",
        description=(
            "Read every chunk of SOURCE's current image (a canister, or an archive file given "
            "as a path or file:PATH) and check it against the image digest; with COPY, also "
            "check that COPY holds the same image. Exit code 5 when a digest does not match."
        ),
    )
    parser.add_argument("source", help="canister (name or id) or archive file")
    parser.add_argument("copy", nargs="?", help="a canister or archive that should hold the same")


def _endpoint(ctx: Context, text: str) -> CanisterRef | ArchiveRef:
    """An archive (``file:PATH`` or an existing path) or a canister."""
    if text.startswith(FILE_PREFIX):
        text = text[len(FILE_PREFIX) :]
        return ArchiveRef(str(Path(text).expanduser().absolute()))
    if "/" in text or Path(text).exists():  # canister names and ids never contain "/"
        return ArchiveRef(str(Path(text).expanduser().absolute()))
    return ctx.config.canister(text)


async def _verify(ctx: Context) -> int:
    source = _endpoint(ctx, ctx.args.source)
    copy = None if ctx.args.copy is None else _endpoint(ctx, ctx.args.copy)

    return await run_request(ctx, verify.request(source, copy))
