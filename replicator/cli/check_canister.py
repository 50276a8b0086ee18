"""``replicator check-canister``: run the ICRP conformance suite against a live canister.

Exit code 0 when the canister conforms (skipped checks do not count against
it), 1 when a check failed; connection, identity and usage problems exit
with their documented codes.  The access checks call as a fresh, throwaway
identity that controls nothing.
"""

from __future__ import annotations

from typing import Any

from canister_iface.conformance import check_canister
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.cli.common import Context, add_command, open_agent, preflight
from replicator.errors import EXIT_FAILED, EXIT_OK, UsageError

MiB = 1024 * 1024


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "check-canister",
        _check,
        help="check that a canister implements the replication protocol (ICRP)",
        description=(
            "Run every ICRP requirement against a canister and report passed, failed and "
            "skipped checks. The identity must control the canister. The suite ends the "
            "canister's current export and aborts unfinished imports: run it on a quiet "
            "canister. Exit code 0: conformant; 1: a check failed."
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
        report = await check_canister(
            agent,
            canister.canister_id,
            identity_other=stranger,
            allow_commit=args.allow_commit,
            max_verify_bytes=args.max_verify_mib * MiB,
            push_target=push,
            import_source=None if source is None else source.canister_id,
        )
    code = EXIT_OK if report.ok else EXIT_FAILED
    if args.json:
        ctx.renderer.summary({"ok": report.ok, "exit_code": code, **report.to_dict()})
    else:
        print(report.render())
    return code
