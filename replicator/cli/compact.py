"""``replicator compact``: replicate canisters into fresh instances of themselves."""

from __future__ import annotations

import asyncio
from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import (
    RenderedProgress,
    job_summary,
    open_engine,
    render_summary,
    run_request,
)
from replicator.errors import EXIT_OK, UsageError
from replicator.flows.compact import kind as compact
from replicator.job import JobOutcome


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "compact",
        _compact,
        help="shrink canisters' memory: image, verified backup, reinstall, restore",
        description=(
            "A Wasm memory never shrinks: after a big delete a canister keeps paying for "
            "pages it no longer uses. compact fences CANISTER (writes are refused meanwhile), "
            "verifies its image in its backup canister, reinstalls it with its module, "
            "restores the image and compares every record, then takes writes again; the "
            "summary reports memory_size before and after. Several canisters run together "
            "under the global limits. Re-run the same command to continue after a crash. "
            "With --new-canister the state goes into a new canister instead (same module, "
            "exactly the configured controllers): once its digests match, it takes the "
            "writes, and the old canister routes every key to it (it answers OutOfRange "
            "naming the new canister) and is left for you to delete."
        ),
    )
    parser.add_argument("canisters", nargs="+", metavar="CANISTER", help="name or id")
    parser.add_argument(
        "--wasm",
        metavar="PATH",
        help="the module the canisters run (default: the shipped demo, when they run it)",
    )
    parser.add_argument(
        "--new-canister",
        action="store_true",
        help="replicate into a new canister and route the keys to it, instead of reinstalling "
        "in place (the module's own settings then survive; the old canister is left to you)",
    )
    parser.add_argument(
        "--free-old",
        action="store_true",
        help="with --new-canister: delete the old canister's records once the new one took over",
    )


async def _compact(ctx: Context) -> int:
    config, args = ctx.config, ctx.args
    if args.free_old and not args.new_canister:
        raise UsageError("--free-old deletes the old canister's records: add --new-canister")
    requests = [
        compact.request(
            config.canister(c),
            wasm=args.wasm,
            new_canister=args.new_canister,
            free_old=args.free_old,
        )
        for c in args.canisters
    ]
    if len(requests) == 1 or args.dry_run:
        codes = [await run_request(ctx, r) for r in requests]
        return max(codes)
    progress = RenderedProgress(ctx.renderer)
    with ctx.serving_metrics():
        async with open_engine(ctx, progress) as engine:
            outcomes: list[JobOutcome] = await asyncio.gather(
                *(engine.submit(r, consent=ctx.consent) for r in requests)
            )
    for outcome in outcomes:
        if not outcome.ok and outcome.error:
            ctx.renderer.error(outcome.error, outcome.exit_code)
        render_summary(ctx, job_summary(outcome, progress.retries, ctx.metrics_url))
    return next((o.exit_code for o in outcomes if not o.ok), EXIT_OK)
