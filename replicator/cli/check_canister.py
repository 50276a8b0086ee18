"""``replicator check-canister``: run the ICRP conformance suite against a live canister.

Exit code 0 when the canister conforms (every applicable check ran and
passed; checks of capabilities it does not claim do not apply), 1 when a
check failed or an applicable check could not be run here (no
``--push-target``, no ``--allow-commit``, a transient error that outlasted
the retries: the report names each and why), 3 when the canister has no code
installed;
connection, identity and usage problems exit with their documented codes.
The access checks call as a fresh, throwaway identity that controls nothing.

The suite ends the canister's current export and aborts an unfinished
import (a backup or restore in flight loses its progress there), and with
``--allow-commit`` commits the canister's own image back: like every
destructive action it asks first on a terminal, needs ``--yes`` otherwise,
and ``--dry-run`` only says what it would do.
"""

from __future__ import annotations

from typing import Any

from canister_iface import errors as ic
from canister_iface.agent import Agent
from canister_iface.conformance import check_canister
from canister_iface.icrp import IcrpClient
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.cli.common import Context, add_command, open_agent, preflight
from replicator.errors import EXIT_FAILED, EXIT_OK, UsageError
from replicator.flow import Action, Verb

MiB = 1024 * 1024


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "check-canister",
        _check,
        help="check that a canister implements the replication protocol (ICRP)",
        description=(
            "Run every ICRP requirement against a canister and report passed, failed, not run "
            "and not applicable checks. The identity must control the canister. The suite ends the "
            "canister's current export and aborts unfinished imports (a backup or restore "
            "in flight loses its progress there): it asks first, or needs --yes; run it on a "
            "quiet canister. Exit code 0: conformant; 1: a check failed or could not be run here "
            "(pass --push-target and, on a test canister, --allow-commit to run them all); "
            "3: no code installed."
        ),
    )
    parser.add_argument("canister", help="canister name (config, canister_ids.json) or id")
    parser.add_argument(
        "--allow-commit",
        action="store_true",
        help="also export the image and commit it back (state unchanged; for test canisters)",
    )
    parser.add_argument(
        "--push-target",
        metavar="CANISTER",
        help="an ICRP canister that trusts this one and is trusted by it: checks icrp_push",
    )
    parser.add_argument(
        "--import-source",
        metavar="CANISTER",
        help="the source a backup canister accepts images from (for the import checks)",
    )
    parser.add_argument(
        "--max-verify-mib",
        type=int,
        default=64,
        metavar="N",
        help="read images up to N MiB completely; larger ones on three chunks (default 64)",
    )


async def _check(ctx: Context) -> int:
    args = ctx.args
    config = ctx.config
    canister = config.canister(args.canister)
    if Principal.from_text(canister.canister_id).is_management_canister:
        raise UsageError(
            "aaaaa-aa is the management canister, which holds no replicable state: "
            "give the id of an application, backup or shard canister"
        )
    push = None if args.push_target is None else config.canister(args.push_target).canister_id
    source = None if args.import_source is None else config.canister(args.import_source)
    stranger = open_agent(ctx.network, Identity.generate_ed25519())
    async with ctx.agent() as agent, stranger:
        await preflight(agent)
        actions = await _actions(agent, canister.canister_id, allow_commit=args.allow_commit)
        if args.dry_run:
            return _plan(ctx, canister.canister_id, actions)
        if actions:
            await ctx.consent(actions)
        report = await check_canister(
            agent,
            canister.canister_id,
            identity_other=stranger,
            allow_commit=args.allow_commit,
            max_verify_bytes=args.max_verify_mib * MiB,
            push_target=push,
            import_source=None if source is None else source.canister_id,
        )
    code = EXIT_OK if report.conformant else EXIT_FAILED
    if args.json:
        ctx.renderer.summary({"ok": report.conformant, "exit_code": code, **report.to_dict()})
    else:
        print(report.render())
    return code


async def _actions(agent: Agent, canister: str, *, allow_commit: bool) -> list[Action]:
    """What the suite would change on ``canister``; nothing if it does not speak ICRP.

    A canister without code fails here (exit 3): there is nothing to check.
    """
    try:
        await IcrpClient(agent, canister).info()
    except ic.MethodNotFound:
        return []  # the suite reports it; it can change nothing there
    actions = [
        Action(
            Verb.DELETE,
            f"the current export and any unfinished import of {canister} (an import a backup "
            "or restore is writing loses its progress)",
        )
    ]
    if allow_commit:
        actions.append(
            Action(Verb.OVERWRITE, f"the state of {canister} with its own exported image")
        )
    return actions


def _plan(ctx: Context, canister: str, actions: list[Action]) -> int:
    for action in actions:
        ctx.renderer.note(f"would {action}", action=action.verb.value, what=action.what)
    fields: dict[str, Any] = {
        "ok": True,
        "exit_code": EXIT_OK,
        "dry_run": True,
        "canister": canister,
        "actions": [{"verb": a.verb.value, "what": a.what} for a in actions],
    }
    if ctx.args.json:
        ctx.renderer.summary(fields)
    else:
        ctx.renderer.summary({"canister": canister, "dry_run": "nothing was changed"})
    return EXIT_OK
