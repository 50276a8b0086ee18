"""``replicator localnet start``: run the embedded local IC in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("localnet", help="run the embedded local IC")
    sub = parser.add_subparsers(dest="localnet_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start a local IC in the foreground (Ctrl-C stops it)")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on")
    start.add_argument("--port", type=int, default=4943, help="port (0: any free port)")
    start.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep canisters, memories, snapshots and keys here across restarts",
    )
    start.add_argument("--seed", type=int, default=0, help="seed for injected faults")
    start.set_defaults(run=_start)


def _start(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    # Imported here: only this command needs localnet (and wasmtime).
    from localnet import LocalNet
    from localnet.persist import StateDirError

    try:
        net = LocalNet(host=args.host, port=args.port, state_dir=args.state_dir, seed=args.seed)
    except StateDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with net:
        print(f"localnet listening on {net.url}", flush=True)
        print(f"root key: {net.root_key.hex()}", flush=True)
        if args.state_dir is not None:
            print(f"state dir: {args.state_dir}", flush=True)
        await stop.wait()
        print(
            "stopping localnet (saving state)" if args.state_dir else "stopping localnet",
            flush=True,
        )
    return 0
