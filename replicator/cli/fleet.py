"""``replicator fleet backup | snapshot-backup | compact | verify | status``.

``fleet backup NAME`` runs the ``[jobs.NAME]`` of kind ``fleet``; with
``--from INDEX`` (a canister name or id, or ``file:PATH``) it runs an ad-hoc
fleet called NAME.  ``fleet snapshot-backup | compact | verify NAME`` run the
same fleet with another action per member (a snapshot into the fleet's
shared ``--repository``, a compaction in place, a read-back of the newest
image in the member's backup canister); each action keeps its own rows in
the member table (``fleet status NAME --action ACTION``).

Exit codes: 0 every member run ok, 1 some members failed
(``fleet status NAME`` lists them; they are retried by the next run), else
the fleet run's own (e.g. 3 when the index does not list members, 130
interrupted: re-run to resume without redoing finished members).

``fleet status NAME`` reads the member table only (no canister is called).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from replicator import kinds
from replicator.cli.common import Context, add_command
from replicator.cli.jobrun import open_store, run_job_command, run_request
from replicator.engine import Engine
from replicator.errors import EXIT_FAILED, EXIT_OK, UsageError
from replicator.fleetstore import MemberRow, fleet_table
from replicator.flows import fleet
from replicator.flows.fleets.options import ACTIONS, BACKUP, table_key
from replicator.flows.fleets.timing import DEFAULT_EVERY, STATES, member_state
from replicator.job import JobOutcome, JobRequest
from replicator.schedule import parse_duration

SHOWN = 20  # failing members and next runs a person sees (--json: all)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "fleet",
        help="back up every member of a fleet of canisters, or show the fleet's state",
        description="Fleets: per-user canisters listed by an index canister, a file or a list.",
    )
    actions = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    run = _run_parser(
        actions,
        "backup",
        help="back up the fleet's members, each into its own backup canister",
        what="back up each (due) member into its own backup canister, created on demand",
    )
    run.add_argument("--keep", type=int, metavar="N", help="images a new backup canister keeps")
    run.add_argument(
        "--pool",
        type=int,
        metavar="N",
        help="keep N backup canisters created and installed ahead of new members (0)",
    )
    snap = _run_parser(
        actions,
        "snapshot-backup",
        help="store a snapshot of each member in one repository the fleet shares",
        what=(
            "store a management-canister snapshot of each (due) member in the repository "
            "DIR (--repository, or the fleet's repository option), shared by the fleet: "
            "chunks common to members are stored once"
        ),
    )
    snap.add_argument("--repository", metavar="DIR", help="the fleet's snapshot repository")
    snap.add_argument(
        "--no-stop",
        dest="stop",
        action="store_false",
        default=None,
        help="take each snapshot from the running member (default: stop it meanwhile)",
    )
    compact = _run_parser(
        actions,
        "compact",
        help="compact each member in place through its backup canister",
        what="compact each (due) member in place: image, verify, reinstall, restore",
    )
    compact.add_argument(
        "--wasm", metavar="PATH", help="the module the members run (default: the demo app's)"
    )
    _run_parser(
        actions,
        "verify",
        help="read back the newest image in each member's backup canister",
        what=(
            "read the newest image in each (due) member's backup canister chunk by chunk "
            "against its digests (members without one fail as usage errors)"
        ),
    )
    status = add_command(
        actions,
        "status",
        _status,
        help="members by state, the oldest backup, failing members and the next runs",
    )
    status.add_argument("name", help="the fleet's name")
    status.add_argument(
        "--every", metavar="DURATION", help="the fleet's interval (default: its job's, or 1d)"
    )
    status.add_argument(
        "--action",
        choices=ACTIONS,
        default=BACKUP,
        help="whose runs to show (default: backup)",
    )


def _run_parser(actions: Any, action: str, *, help: str, what: str) -> Any:
    """The subcommand running ``action`` on every member, with the options all actions share."""
    run = add_command(
        actions,
        action,
        _run,
        help=help,
        description=(
            f'List the members of fleet NAME ([jobs.NAME] with kind = "fleet", or --from) '
            f"and {what}. A member that fails is counted and retried by the next run; it never "
            "stops the others. Exit 1 when some members failed."
        ),
    )
    run.set_defaults(fleet_action=action)
    run.add_argument("name", help="the fleet: a configured job's name, or a new name with --from")
    run.add_argument(
        "--from",
        dest="index",
        metavar="INDEX",
        help="the index canister (name or id) or file:PATH listing the members",
    )
    run.add_argument(
        "--index-method",
        metavar="METHOD",
        help="the index's plain (opt principal, nat) -> (vec principal) method (default: ICRP)",
    )
    run.add_argument("--members", metavar="IDS", help="more members, ids separated by commas")
    run.add_argument("--every", metavar="DURATION", help="how often each member is due (1d)")
    run.add_argument("--due", action="store_true", default=None, help="only the due members")
    run.add_argument("--concurrency", type=int, metavar="N", help="members at once (8)")
    run.add_argument(
        "--controlled-by",
        metavar="PRINCIPAL",
        help="keep only the listed canisters this principal controls ('me': this identity)",
    )
    return run


def _request(ctx: Context) -> JobRequest:
    a, config = ctx.args, ctx.config
    given = {
        "action": a.fleet_action,
        "index": a.index_method,
        "members": a.members,
        "every": a.every,
        "due": a.due,
        "concurrency": a.concurrency,
        "keep": getattr(a, "keep", None),
        "pool": getattr(a, "pool", None),
        "controlled_by": a.controlled_by,
        "repository": _absolute(getattr(a, "repository", None)),
        "stop": getattr(a, "stop", None),
        "wasm": _absolute(getattr(a, "wasm", None)),
    }
    flags = {k: v for k, v in given.items() if v is not None}
    if a.index is not None:
        source = config.endpoint(a.index, where=("command line", "--from"))
        return fleet.request(source, name=a.name, network=config.network, **flags)
    if a.name not in config.jobs:
        raise UsageError(
            f"no fleet {a.name!r} in the configuration: add [jobs.{a.name}] with "
            'kind = "fleet", or give its index with --from INDEX'
        )
    configured = kinds.configured(config, a.name)
    if configured.kind != fleet.KIND:
        raise UsageError(f"[jobs.{a.name}] is a {configured.kind} job, not a fleet")
    options = {"name": a.name, "network": config.network, **configured.options, **flags}
    return JobRequest(fleet.KIND, configured.source, None, options)


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


async def _run(ctx: Context) -> int:
    request = _request(ctx)
    if ctx.args.dry_run:
        return await run_request(ctx, request)
    outcomes: list[JobOutcome] = []

    async def action(engine: Engine) -> JobOutcome:
        outcome = await engine.submit(request, consent=ctx.consent)
        outcomes.append(outcome)
        return outcome

    code = await run_job_command(ctx, action)
    if code == EXIT_OK and outcomes and outcomes[0].details.get("members_failed"):
        return EXIT_FAILED
    return code


def _every(ctx: Context) -> float:
    text = ctx.args.every
    if text is None:
        template = ctx.config.jobs.get(ctx.args.name)
        text = None if template is None else template.options.get("every")
    if text is None:
        return DEFAULT_EVERY
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None


async def _status(ctx: Context) -> int:
    every = _every(ctx)
    store = open_store(ctx.config.checkpoints, read_only=True)
    try:
        rows = await fleet_table(store).members(table_key(ctx.args.name, ctx.args.action))
        known = await fleet_table(store).fleets()
    finally:
        await store.close()
    if not rows:
        raise UsageError(
            f"no fleet {ctx.args.name!r} in {ctx.config.checkpoints} (known: "
            f"{', '.join(known) or 'none'}); run `replicator fleet backup {ctx.args.name}` first"
        )
    fields = status_fields(ctx.args.name, rows, every, time.time())
    if ctx.args.json:
        ctx.renderer.summary(fields)
    else:
        _print(fields)
    return EXIT_OK


def status_fields(name: str, rows: list[MemberRow], every: float, now: float) -> dict[str, Any]:
    """What ``fleet status`` shows (``--json``: these fields)."""
    states = {
        r.member: member_state(
            state=r.state, gone=r.gone, last_ok_at=r.last_ok_at, every=every, now=now
        )
        for r in rows
    }
    counts = Counter(states.values())
    listed = [r for r in rows if not r.gone]
    oks = [r.last_ok_at for r in listed if r.last_ok_at is not None]
    failing = [r for r in listed if states[r.member] == "failing"]
    upcoming = sorted(listed, key=lambda r: r.next_due)
    return {
        "ok": True,
        "exit_code": EXIT_OK,
        "fleet": name,
        "members": len(listed),
        "by_state": {s: counts.get(s, 0) for s in STATES},
        "oldest_backup_age_seconds": None if not oks else round(now - min(oks), 1),
        "failing": [
            {
                "member": r.member,
                "failures": r.failures,
                "class": r.error_class,
                "error": r.last_error,
                "retry_at": r.next_due,
            }
            for r in failing
        ],
        "next_runs": [
            {"member": r.member, "at": r.next_due, "state": states[r.member]} for r in upcoming
        ],
    }


def _print(fields: dict[str, Any]) -> None:
    now = time.time()
    by_state = ", ".join(f"{n} {s}" for s, n in fields["by_state"].items())
    print(f"fleet {fields['fleet']}: {fields['members']} members ({by_state})")
    age = fields["oldest_backup_age_seconds"]
    print(f"oldest successful backup: {'none yet' if age is None else _ago(age)}")
    failing = fields["failing"]
    if failing:
        print(f"failing ({len(failing)}):")
        for f in failing[:SHOWN]:
            print(f"  {f['member']}  {f['failures']}x {f['class']}: {f['error']}")
        if len(failing) > SHOWN:
            print(f"  … {len(failing) - SHOWN} more (--json lists all)")
    print("next runs:")
    for r in fields["next_runs"][:SHOWN]:
        when = "now" if r["at"] <= now else f"in {_ago(r['at'] - now)}"
        print(f"  {r['member']}  {when}  ({r['state']})")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
