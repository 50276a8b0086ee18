"""``replicator demo``: back a demo app up and restore it on a local IC started for it.

``--snapshot`` tours snapshot backups of a canister without ICRP instead.
"""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.demo.snapshot_tour import run_snapshot_demo
from replicator.cli.demo.standby_tour import run_standby_demo
from replicator.cli.demo.tour import DEFAULT_MIB, run_demo
from replicator.errors import UsageError

DEFAULT_SNAPSHOT_MIB = 16


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
            "/metrics is served on a free port unless --metrics-port is given. --snapshot "
            "tours snapshot backups instead: a plain canister without ICRP backed up twice "
            "into a deduplicating repository (1 % of its data changed between), the newest "
            "snapshot restored into a new canister that answers the same queries."
        ),
    )
    parser.add_argument(
        "--mib",
        type=int,
        metavar="N",
        help=f"MiB of data (default {DEFAULT_MIB}, {DEFAULT_SNAPSHOT_MIB} with --snapshot)",
    )
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="the snapshot tour: back a canister without ICRP up twice, restore it into a new one",
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
    if ctx.args.mib is None:
        # A snapshot holds the canister's whole memory (several times its data), and
        # the tour moves it four times under the demo's byte rate: less data, as long.
        ctx.args.mib = DEFAULT_SNAPSHOT_MIB if ctx.args.snapshot else DEFAULT_MIB
    if not 1 <= ctx.args.mib <= 1024:
        raise UsageError(f"--mib: expected 1 to 1024 MiB, got {ctx.args.mib}")
    tours = [f"--{t}" for t in ("snapshot", "standby", "split") if getattr(ctx.args, t)]
    if len(tours) > 1:
        raise UsageError(f"{' and '.join(tours)} are separate tours: run one, then the other")
    if ctx.args.snapshot:
        return await run_snapshot_demo(ctx)
    if ctx.args.standby:
        return await run_standby_demo(ctx)
    return await run_demo(ctx)
