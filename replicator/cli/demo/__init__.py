"""``replicator demo``: back a demo app up and restore it on a local IC started for it."""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.demo.standby_tour import run_standby_demo
from replicator.cli.demo.tour import run_demo
from replicator.errors import UsageError


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "demo",
        _demo,
        help="the one-command tour: back a canister up and restore it on a local IC",
        description=(
            "Start a local IC, deploy the demo app with synthetic data, back it up into a "
            "backup canister created on demand (rate-limited, with a progress bar), verify, "
            "wipe the app, restore it, verify again and print a summary. Needs nothing but "
            "this package. The byte rate defaults to 8 MiB/s (--bytes-per-second); "
            "/metrics is served on a free port unless --metrics-port is given."
        ),
    )
    parser.add_argument(
        "--mib", type=int, default=64, metavar="N", help="MiB of synthetic data (default 64)"
    )
    parser.add_argument(
        "--standby",
        action="store_true",
        help="the hot standby tour instead: writes flowing, lag shown live, promote",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="then split the app into 3 shards by key range and compact it",
    )


async def _demo(ctx: Context) -> int:
    if not 1 <= ctx.args.mib <= 1024:
        raise UsageError(f"--mib: expected 1 to 1024 MiB, got {ctx.args.mib}")
    if ctx.args.standby and ctx.args.split:
        raise UsageError("--standby and --split are two tours: run one, then the other")
    if ctx.args.standby:
        return await run_standby_demo(ctx)
    return await run_demo(ctx)
