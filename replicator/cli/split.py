"""``replicator split``: a canister into shards by key range."""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import RenderedProgress, open_engine, run_request
from replicator.errors import EXIT_OK
from replicator.flows.split import kind as split
from replicator.flows.split.abort import abort_split
from replicator.job import CanisterRef


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
    how.add_argument(
        "--abort",
        action="store_true",
        help="give up an unfinished split before its first cut-over: delete its shards",
    )
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
    if args.abort:
        return await _abort(ctx, source)
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


async def _abort(ctx: Context, source: CanisterRef) -> int:
    progress = RenderedProgress(ctx.renderer)
    async with open_engine(ctx, progress) as engine:
        calls = engine.calls(lambda text: ctx.renderer.note(text))
        request = split.request(source)
        done = await abort_split(
            engine.store, calls, request, ctx.consent, dry_run=bool(ctx.args.dry_run)
        )
    fields = {"ok": True, "exit_code": EXIT_OK, "source": str(source), **done.to_json()}
    ctx.renderer.summary(fields)
    return EXIT_OK
