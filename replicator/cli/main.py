"""The ``replicator`` command line: the parser and ``main``.

Each sub-command lives in its own module of :mod:`replicator.cli` and registers
itself here; this module only builds the parser.  Global flags, settings and
the error boundary (messages and exit codes) are in :mod:`replicator.cli.common`;
the exit codes are documented in :mod:`replicator.errors` and the README.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from replicator import __version__
from replicator.cli import (
    archive,
    backup,
    check_canister,
    compact,
    demo,
    fleet,
    images,
    jobs,
    localnet,
    restore,
    resume,
    serve,
    snapshot,
    split,
    standby,
    verify,
)
from replicator.cli.common import add_global_options
from replicator.errors import EXIT_INTERRUPTED, EXIT_USAGE
from replicator.flows.builtin import BUILTIN

# Every built-in job kind is registered before a command runs (resume, run, serve
# meet jobs of any kind).
KINDS = BUILTIN


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replicator",
        description=(
            "Replicate Internet Computer canister state in rate-limited, resumable batches."
        ),
        epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 not ICRP, 4 access denied, "
        "5 integrity, 6 budget, 75 temporary (re-run to resume), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"replicator {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        backup,
        restore,
        archive,
        verify,
        fleet,
        jobs,
        images,
        resume,
        check_canister,
        demo,
        localnet,
        serve,
        snapshot,
        standby,
        split,
        compact,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
