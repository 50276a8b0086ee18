"""What every ``replicator`` command shares: global flags, settings, and the error boundary.

Global flags are accepted before and after the command name
(``replicator --json backup app`` and ``replicator backup app --json``).
Flags win over the configuration file: they are applied to it as
``overrides`` and validated like keys of the file, so a bad flag is reported
as precisely as a bad key (``--bytes-per-second: expected a size ...``).

:func:`run_command` is the boundary: it runs a command's coroutine and turns
*every* way it can end into a message and a documented exit code
(:mod:`replicator.errors`): SIGINT and SIGTERM cancel the command (the engine
checkpoints before it stops) and exit 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canister_iface import errors as ic
from canister_iface.agent import Agent
from canister_iface.errors import IdentityError
from canister_iface.identity import Identity
from replicator import kinds
from replicator.classify import exit_code_for, job_error
from replicator.cli.render import Renderer, make_renderer
from replicator.config import COMMAND_LINE, Config, Network, load_config
from replicator.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    ReplicatorError,
    RetriesExhausted,
    UsageError,
)
from replicator.flow import Action
from replicator.metrics import Metrics, MetricsServer, serve_metrics
from replicator.routes import VIA

log = logging.getLogger(__name__)


# configuration key → the flag that overrides it (limits: of the chosen network).
_FLAGS = {
    "calls_per_second": "--calls-per-second",
    "bytes_per_second": "--bytes-per-second",
    "in_flight": "--in-flight",
    "cycles_budget": "--cycles-budget",
    "network": "--network",
    "identity.pem": "--identity",
    "checkpoints": "--state",
    "metrics.port": "--metrics-port",
}


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Add the global flags to ``parser``.

    On sub-command parsers (``top=False``) they default to "not given", so a
    flag placed before the command is not reset by the sub-command's default.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument("--config", metavar="FILE", default=default(None), help="TOML config file")
    group.add_argument(
        "--network",
        metavar="NAME",
        default=default(None),
        help="local, ic, or a network of the config file (default: the file's, else ic)",
    )
    who = group.add_mutually_exclusive_group()
    who.add_argument(
        "--identity", metavar="PEM", default=default(None), help="sign as the key in this PEM file"
    )
    who.add_argument(
        "--dfx-identity", metavar="NAME", default=default(None), help="sign as this dfx identity"
    )
    group.add_argument(
        "--canister-ids",
        metavar="FILE",
        action="append",
        default=default(None),
        help="dfx canister_ids.json with canister names (repeatable)",
    )
    group.add_argument(
        "--calls-per-second", type=float, metavar="N", default=default(None), help="call rate limit"
    )
    group.add_argument(
        "--bytes-per-second",
        metavar="SIZE",
        default=default(None),
        help='byte rate limit, e.g. 2097152 or "2 MiB"',
    )
    group.add_argument(
        "--in-flight", type=int, metavar="N", default=default(None), help="concurrent calls"
    )
    group.add_argument(
        "--cycles-budget",
        metavar="CYCLES",
        default=default(None),
        help='cycles all runs may spend per budget period (default a day), e.g. "5T"',
    )
    group.add_argument(
        "--via",
        choices=VIA,
        default=default(None),
        help="canister to canister (direct, default) or through this machine (relay)",
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=default(None),
        help="serve Prometheus /metrics on this port while the command runs (0: any free port)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON lines (events and a final summary) on stdout instead of text",
    )
    group.add_argument(
        "--yes",
        "-y",
        action="store_true",
        default=default(False),
        help="go ahead with actions that cost cycles or replace state without asking",
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        default=default(False),
        help="print what the command would create, spend, overwrite and move; change nothing",
    )
    group.add_argument(
        "--state",
        dest="state",
        metavar="PATH",
        default=default(None),
        help="the checkpoint database (default: ~/.local/state/replicator/checkpoints.sqlite3)",
    )


# ------------------------------------------------------------------ settings


def load_settings(args: argparse.Namespace) -> Config:
    """The configuration file (or defaults) with the global flags applied."""
    overrides = _plain_overrides(args)
    ids = list(args.canister_ids or [])
    known = kinds.names()
    try:
        config = load_config(args.config, overrides=overrides, canister_ids=ids, kinds=known)
        limits = _limit_overrides(args)
        if limits:
            prefix = f"networks.{config.network}.limits"
            scoped = {f"{prefix}.{k}": v for k, v in limits.items()}
            config = load_config(
                args.config, overrides={**overrides, **scoped}, canister_ids=ids, kinds=known
            )
    except ConfigError as exc:
        raise _as_flag_error(exc, args) from None
    return config


def _plain_overrides(args: argparse.Namespace) -> dict[str, object]:
    values = {
        "network": args.network,
        "identity.pem": args.identity,
        "checkpoints": args.state,
        "metrics.port": args.metrics_port,
    }
    return {k: v for k, v in values.items() if v is not None}


def _limit_overrides(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {
        "calls_per_second": args.calls_per_second,
        "bytes_per_second": _size_flag(args.bytes_per_second),
        "in_flight": args.in_flight,
        "cycles_budget": args.cycles_budget,
    }
    return {k: v for k, v in values.items() if v is not None}


def _size_flag(text: str | None) -> object:
    """``"2097152"`` → 2097152; ``"2 MiB"`` stays text for the config's size parser."""
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text


def _as_flag_error(exc: ConfigError, args: argparse.Namespace) -> ConfigError:
    """Name the flag (and its value) rather than the configuration key it overrode."""
    if exc.source != COMMAND_LINE:
        return exc
    key = exc.key.rsplit(".limits.", 1)[-1] if ".limits." in exc.key else exc.key
    flag = _FLAGS.get(key)
    if flag is None:
        return exc
    value = getattr(args, flag[2:].replace("-", "_"), None)
    return ConfigError(COMMAND_LINE, flag, exc.expected, value)


def resolve_identity(args: argparse.Namespace, config: Config) -> Identity:
    """``--identity`` > ``--dfx-identity`` > ``[identity] pem`` > dfx's selected one > anonymous.

    The anonymous identity controls nothing: commands that need rights fail
    with exit code 4 and a message naming the identity to use.
    """
    if args.identity is not None and args.dfx_identity is not None:
        raise UsageError("--identity and --dfx-identity exclude each other: give one")
    try:
        if args.dfx_identity is not None:
            return Identity.from_dfx(args.dfx_identity)
        if config.identity_pem is not None:
            return Identity.from_pem_file(config.identity_pem)
        with contextlib.suppress(IdentityError):
            return Identity.from_dfx()
    except IdentityError as exc:
        raise UsageError(str(exc)) from None
    log.warning("no identity given (--identity, --dfx-identity, [identity]): calling anonymously")
    return Identity.anonymous()


def open_agent(network: Network, identity: Identity) -> Agent:
    """An agent for ``network`` that trusts its configured root key."""
    return Agent(
        network.url,
        identity,
        network=network.name,
        root_key=network.root_key,
        fetch_root_key=network.fetch_root_key,
    )


async def preflight(agent: Agent) -> None:
    """Fail fast, with the URL in the message, when the network cannot be reached."""
    try:
        await agent.status()
    except ic.TransientError as exc:
        raise RetriesExhausted(
            f"cannot reach the network at {agent.url}: {exc.message}; check --network and "
            "the network's url in the config file, then re-run the same command",
            attempts=1,
            elapsed=0.0,
        ) from None


# ----------------------------------------------------------------- a command


@dataclass
class Context:
    """What a running command has: its arguments, settings, output and metrics."""

    args: argparse.Namespace
    renderer: Renderer
    metrics: Metrics = field(default_factory=Metrics)
    metrics_url: str | None = None
    interrupted_reported: bool = False  # the command already said where it stopped
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_settings(self.args)
        return self._config

    def use_config(self, config: Config) -> None:
        """Run with ``config`` instead of the one the flags describe (the demo's)."""
        self._config = config

    @property
    def network(self) -> Network:
        return self.config.network_named()

    @property
    def via(self) -> str | None:
        value: str | None = self.args.via
        return value

    @asynccontextmanager
    async def agent(self, identity: Identity | None = None) -> AsyncIterator[Agent]:
        who = identity if identity is not None else resolve_identity(self.args, self.config)
        async with open_agent(self.network, who) as agent:
            yield agent

    async def consent(self, actions: Sequence[Action]) -> None:
        """Go ahead with ``actions`` that cost or destroy: ``--yes``, or a terminal's yes."""
        if self.args.yes:
            return
        listed = "; ".join(str(a) for a in actions)
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError(
                f"this would {listed}. Re-run with --yes to go ahead, or --dry-run to see the "
                "whole plan; nothing was changed"
            )
        answer = await asyncio.to_thread(_ask, f"This will {listed}.\nProceed? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("not confirmed; nothing was changed")

    @contextlib.contextmanager
    def serving_metrics(self) -> Iterator[None]:
        """Serve ``/metrics`` while the body runs, if a port is configured."""
        port = self.config.metrics.port
        if port is None:
            yield
            return
        addr = self.config.metrics.addr
        try:
            server: MetricsServer = serve_metrics(port, self.metrics.registry, addr=addr)
        except OSError as exc:
            raise UsageError(
                f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; "
                "choose another --metrics-port (0 picks a free one)"
            ) from None
        self.metrics_url = f"http://{addr}:{server.port}/metrics"
        self.renderer.note(f"metrics: {self.metrics_url}", metrics_url=self.metrics_url)
        try:
            yield
        finally:
            server.close()


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()


Body = Callable[[Context], Awaitable[int]]


def run_command(args: argparse.Namespace, body: Body) -> int:
    """Run ``body`` under the error boundary; returns the exit code."""
    renderer = make_renderer(json_output=bool(args.json))
    ctx = Context(args, renderer)
    try:
        return asyncio.run(_guarded(ctx, body))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if not ctx.interrupted_reported:  # e.g. interrupted while starting up
            renderer.error("interrupted; re-run the same command to resume", EXIT_INTERRUPTED)
            _final_failure(renderer, EXIT_INTERRUPTED, "interrupted")
        return EXIT_INTERRUPTED
    finally:
        renderer.close()


async def _guarded(ctx: Context, body: Body) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        # systemd and `kill` stop with SIGTERM: checkpoint and stop as for Ctrl-C.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await body(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return report_failure(ctx.renderer, exc, verbose=bool(getattr(ctx.args, "verbose", 0)))
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


def describe(exc: BaseException) -> str:
    """The user-facing message for ``exc``: what is wrong and what to do."""
    if isinstance(exc, ReplicatorError):
        return exc.message
    if isinstance(exc, IdentityError):
        return str(exc)
    if isinstance(exc, ic.TransientError):
        return (
            f"{exc}; the network kept failing beyond the retry limits: check that it is "
            "reachable, then re-run the same command to resume"
        )
    if isinstance(exc, ic.IcError):
        return job_error(exc).message
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"internal error: {type(exc).__name__}: {exc} (please report this; -vv shows more)"


def report_failure(renderer: Renderer, exc: BaseException, *, verbose: bool = False) -> int:
    """Render ``exc`` and return its exit code."""
    code = EXIT_USAGE if isinstance(exc, IdentityError) else exit_code_for(exc)
    if verbose or not isinstance(exc, ReplicatorError | ic.IcError | OSError):
        log.debug("command failed", exc_info=exc)
        if verbose:
            traceback.print_exception(exc)
    message = describe(exc)
    renderer.error(message, code)
    _final_failure(renderer, code, message)
    return code


def _final_failure(renderer: Renderer, code: int, message: str) -> None:
    if renderer.always_summarize:
        renderer.summary({"ok": False, "exit_code": code, "error": message})


def add_command(
    commands: Any, name: str, body: Body, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command parser with the global flags, running ``body`` under the boundary."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description or help
    )
    add_global_options(parser, top=False)
    parser.set_defaults(run=lambda args: run_command(args, body))
    return parser


def state_path(config: Config) -> Path:
    return config.checkpoints
