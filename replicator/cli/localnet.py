"""``replicator localnet start``: run the embedded local IC in the foreground."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    # Imported here: only this command needs localnet (and wasmtime).
    from localnet import serve

    parser = commands.add_parser("localnet", help="run the embedded local IC")
    sub = parser.add_subparsers(dest="localnet_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start a local IC in the foreground (Ctrl-C stops it)")
    serve.add_arguments(start)
    start.set_defaults(run=_start)


def _start(args: argparse.Namespace) -> int:
    from localnet import serve

    return serve.run(args)
