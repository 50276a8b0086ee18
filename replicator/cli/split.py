"""``replicator split``: a canister into shards by key range."""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import run_request
from replicator.flows.split import kind as split


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "split",
        _split,
        help="split a canister into shards by key range (online, resumable, verified)",
        description=(
            "Split SOURCE by key range: the first part stays in SOURCE, every other part "
            "moves to a shard created for it (exactly the configured controllers). Each "
            "part is copied while SOURCE keeps serving, caught up from its journal, then "
            "cut over (SOURCE answers OutOfRange naming the shard), compared by record "
            "count and digest, routed (icrp_routing) and freed in SOURCE. Re-running the "
            "same command continues an interrupted split; --plan-only prints the plan."
        ),
    )
    parser.add_argument("source", help="the canister to split (name or id)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--shards", type=int, metavar="N", help="split into N parts of equal bytes")
    how.add_argument(
        "--max-shard-bytes",
        metavar="SIZE",
        help='as many parts as keep each under SIZE (bytes, or "256 MiB")',
    )
    how.add_argument(
        "--boundaries",
        metavar="K1,K2,...",
        help="split before these keys (0x… hex or text), in increasing order",
    )
    parser.add_argument(
        "--wasm",
        metavar="PATH",
        help="the module the shards run (default: the source's, when it is the shipped demo)",
    )
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="print the plan (ranges, bytes, records, cycles) and change nothing",
    )


async def _split(ctx: Context) -> int:
    args = ctx.args
    source = ctx.config.canister(args.source)
    if args.plan_only:
        args.dry_run = True
    request = split.request(
        source,
        shards=args.shards,
        max_shard_bytes=args.max_shard_bytes,
        boundaries=args.boundaries,
        wasm=args.wasm,
    )
    return await run_request(ctx, request)
