"""Run localnet in the foreground: ``python -m localnet`` and ``replicator localnet start``.

Prints the URL and the root key (hex) on their own lines so that scripts and
:class:`localnet.process.LocalNetProcess` can read them, then serves until
SIGINT / SIGTERM and stops cleanly (draining queued messages and saving the
state with ``--state-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from localnet import ids
from localnet.subnet_model import SubnetModel

if TYPE_CHECKING:
    from localnet.residency import ResidencyLimits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4943, help="port (0: any free port)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep canisters, memories, snapshots and keys here across restarts",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for injected faults")
    parser.add_argument(
        "--subnets",
        type=int,
        default=1,
        metavar="N",
        help="number of subnets (default 1); subnet i hosts canister ids i*2^20 to "
        "(i+1)*2^20-1 and, but for the root subnet 0, certifies through a delegation",
    )
    parser.add_argument(
        "--subnet-model",
        nargs="?",
        const="",
        default=None,
        metavar="NAME=VALUE,...",
        help="execute in rounds with block limits (default: an application subnet, one "
        "round per second); override e.g. rounds_per_second=20,xnet_delay_rounds=3 "
        "(see docs/localnet.md)",
    )
    parser.add_argument(
        "--max-live-canisters",
        type=_positive_or_all,
        default=256,
        metavar="N|all",
        help="canisters kept instantiated; the least recently used others sleep on disk "
        "and wake on their next message (default 256)",
    )
    parser.add_argument(
        "--sleep-after",
        type=_seconds_or_never,
        default=60.0,
        metavar="SECONDS|never",
        help="a canister idle this long sleeps on disk (default 60)",
    )
    parser.add_argument(
        "--spill-dir",
        type=Path,
        default=None,
        help="where sleeping canisters' memories go (an unlinked file; default: the "
        "system's temporary directory)",
    )


def _positive_or_all(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number of canisters >= 1 or 'all', not {text!r}"
        )
    return value


def _seconds_or_never(text: str) -> float | None:
    if text == "never":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 or 'never', not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from localnet.residency import ResidencyLimits

    try:
        model = None if args.subnet_model is None else SubnetModel.parse(args.subnet_model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    residency = ResidencyLimits(
        max_resident=args.max_live_canisters,
        idle_seconds=args.sleep_after,
        spill_dir=args.spill_dir,
    )
    return asyncio.run(
        _serve(args.host, args.port, args.state_dir, args.seed, residency, args.subnets, model)
    )


async def _serve(
    host: str,
    port: int,
    state_dir: Path | None,
    seed: int,
    residency: ResidencyLimits | None = None,
    subnets: int = 1,
    model: SubnetModel | None = None,
) -> int:
    # Imported here so that building the CLI parser does not load wasmtime.
    from localnet.net import LocalNet
    from localnet.persist import StateDirError

    try:
        net = LocalNet(
            host=host,
            port=port,
            state_dir=state_dir,
            seed=seed,
            residency=residency,
            subnets=subnets,
            subnet_model=model,
        )
    except (StateDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await net.start()
    except OSError as exc:
        print(
            f"error: cannot listen on {host}:{port}: {exc.strerror}; "
            "choose another --port (0 picks a free one)",
            file=sys.stderr,
        )
        return 2
    try:
        print(f"localnet listening on {net.url}", flush=True)
        print(f"root key: {net.root_key.hex()}", flush=True)
        if state_dir is not None:
            print(f"state dir: {state_dir}", flush=True)
        for subnet in net.subnets:
            lo, hi = subnet.canister_ranges[0]
            print(
                f"subnet {subnet.index}: {ids.to_text(subnet.subnet_id)} "
                f"canisters {ids.to_text(lo)}..{ids.to_text(hi)}",
                flush=True,
            )
        if model is not None:
            rate = f"{model.rounds_per_second:g} rounds/s" if model.rounds_per_second else "manual"
            print(f"subnet model: {rate}", flush=True)
        await stop.wait()
        print("stopping localnet" + (" (saving state)" if state_dir else ""), flush=True)
    finally:
        await net.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localnet", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
