"""``replicator standby`` (keep a hot standby) and ``replicator promote`` (fail over to it)."""

from __future__ import annotations

from typing import Any

from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import RenderedProgress, open_engine, run_request
from replicator.errors import EXIT_OK
from replicator.flow import Action, Verb
from replicator.flows.standby import kind as standby
from replicator.flows.standby.promote import Promotion, promote
from replicator.job import CanisterRef


def register(commands: Any) -> None:
    _register_standby(commands)
    _register_promote(commands)


def _register_standby(commands: Any) -> None:
    parser = add_command(
        commands,
        "standby",
        _standby,
        help="keep a hot standby of a canister (created on demand), until interrupted",
        description=(
            "Seed STANDBY (or a canister created for CANISTER, running its module or --wasm) "
            "with a full image of CANISTER, then apply CANISTER's journal to it as it grows, "
            "until interrupted (Ctrl-C stops at a checkpoint; the same command continues from "
            "the standby's applied sequence). The standby refuses application writes until it "
            "is promoted. A journal that no longer reaches the standby seeds it again; a "
            "second writer (Gap) or a failed consistency check stops the job."
        ),
    )
    parser.add_argument("canister", help="the primary to follow (name or id)")
    parser.add_argument(
        "standby", nargs="?", help="the standby canister (name or id; default: created)"
    )
    parser.add_argument(
        "--poll-max",
        type=float,
        metavar="SECONDS",
        help="longest wait between polls of an idle journal (default 1)",
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between consistency checks (default 3600; 0: never)",
    )
    parser.add_argument("--wasm", metavar="PATH", help="the module of a created standby")
    parser.add_argument(
        "--once", action="store_true", help="stop once the standby is at the primary's head"
    )


async def _standby(ctx: Context) -> int:
    config, args = ctx.config, ctx.args
    source = config.canister(args.canister)
    target = None if args.standby is None else config.canister(args.standby)
    return await run_request(ctx, _request(ctx, source, target))


def _request(ctx: Context, source: CanisterRef, target: CanisterRef | None) -> Any:
    args = ctx.args
    return standby.request(
        source,
        target,
        poll_max=getattr(args, "poll_max", None),
        check_interval=getattr(args, "check_interval", None),
        once=bool(args.once),
        via=ctx.via,
        wasm=getattr(args, "wasm", None),
    )


def _register_promote(commands: Any) -> None:
    parser = add_command(
        commands,
        "promote",
        _promote,
        help="make a standby the primary: fence the primary, drain, compare, switch",
        description=(
            "Fence the primary (it refuses writes, naming STANDBY), apply its last changes to "
            "STANDBY, compare images of both at the final journal sequence, and make STANDBY "
            "the primary. If a step fails the primary takes writes again and nothing changed. "
            "--force promotes with what STANDBY applied when the primary does not answer, and "
            "states what may be lost (the RPO). --reverse then keeps the old primary as a "
            "standby of the new one (until interrupted)."
        ),
    )
    parser.add_argument("standby", help="the standby to promote (name or id)")
    parser.add_argument(
        "--primary",
        metavar="CANISTER",
        help="the primary (default: the one the standby names in its mode)",
    )
    parser.add_argument(
        "--force", action="store_true", help="promote even if the primary does not answer"
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="afterwards, keep the old primary as a standby of the new one",
    )
    parser.add_argument(
        "--once", action="store_true", help="with --reverse: stop once the reverse is caught up"
    )


async def _promote(ctx: Context) -> int:
    config, args = ctx.config, ctx.args
    target = config.canister(args.standby)
    primary = None if args.primary is None else config.canister(args.primary)
    what = f"{target} becomes the primary; the primary is fenced (it refuses writes)"
    if args.force:
        what += "; with --force, changes it has and the standby lacks are given up"
    action = Action(Verb.OVERWRITE, what)
    if args.dry_run:
        ctx.renderer.note(f"would {action}", action=action.verb.value, what=action.what)
        ctx.renderer.summary({"ok": True, "exit_code": EXIT_OK, "dry_run": True, "what": what})
        return EXIT_OK
    await ctx.consent([action])
    progress = RenderedProgress(ctx.renderer)
    async with open_engine(ctx, progress) as engine:
        calls = engine.calls(ctx.renderer.note)
        done = await promote(calls, target, primary=primary, force=bool(args.force))
    _summary(ctx, done)
    if not args.reverse:
        return EXIT_OK
    ctx.renderer.note(f"keeping {done.old_primary} as a standby of {done.new_primary}")
    return await run_request(ctx, _request(ctx, done.new_primary, done.old_primary))


def _summary(ctx: Context, done: Promotion) -> None:
    fields = {"ok": True, "exit_code": EXIT_OK, **done.to_json()}
    if not ctx.args.json:
        rpo = fields.pop("rpo")
        fields = {k: v for k, v in fields.items() if v is not None}
        fields.update({f"rpo_{k}": v for k, v in rpo.items() if v is not None})
    ctx.renderer.summary(fields)
