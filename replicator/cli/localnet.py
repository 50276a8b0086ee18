"""``replicator localnet start``: run the embedded local IC in the foreground.

The local IC is an optional extra (``pip install 'ic-replicator[localnet]'``:
wasmtime runs the canister Wasm).  The orchestrator never needs it;
:func:`require_localnet` is the one check that the commands starting it
(``localnet start``, ``demo``) make first, so that without the extra they
stop with exit code 2 and the install command instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from replicator.errors import EXIT_USAGE, UsageError

INSTALL_LOCALNET = "pip install 'ic-replicator[localnet]'"

# What the local IC loads: importing it proves a child process can run it.
_LOCALNET_MODULE = "localnet.net"


def require_localnet(command: str) -> None:
    """Raise :class:`UsageError` unless the local IC can be loaded.

    ``command`` (``"demo"``, ``"localnet start"``) names what needs it in the message.
    """
    try:
        importlib.import_module(_LOCALNET_MODULE)
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"`replicator {command}` runs a local IC, an optional part of ic-replicator "
            f"that is not installed here (the Python module {exc.name or exc!s} is missing). "
            f"Install it with: {INSTALL_LOCALNET}"
        ) from None
    except ImportError as exc:  # installed, but a version the local IC cannot use
        raise UsageError(
            f"`replicator {command}` runs a local IC, which cannot be loaded here ({exc}). "
            f"Install the versions it needs with: {INSTALL_LOCALNET}"
        ) from None


def register(commands: Any) -> None:
    # Imported here: localnet.serve is stdlib only until it runs (no wasmtime),
    # so the parser and --help work without the localnet extra.
    from localnet import serve

    parser = commands.add_parser("localnet", help="run the embedded local IC")
    sub = parser.add_subparsers(dest="localnet_command", metavar="ACTION", required=True)
    start = sub.add_parser(
        "start",
        help="start a local IC in the foreground (Ctrl-C stops it)",
        description="Start a local IC in the foreground (Ctrl-C stops it). Needs the "
        f"localnet extra: {INSTALL_LOCALNET}",
    )
    serve.add_arguments(start)
    start.set_defaults(run=_start)


def _start(args: argparse.Namespace) -> int:
    try:
        require_localnet("localnet start")
    except UsageError as exc:
        print(f"error: {exc.message} (exit code {EXIT_USAGE})", file=sys.stderr)
        return EXIT_USAGE
    from localnet import serve

    return serve.run(args)
