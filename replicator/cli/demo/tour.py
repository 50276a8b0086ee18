"""``replicator demo``: the one-command tour, on a local IC started for it.

What it does, as a user would with real canisters:

1. starts localnet in a child process and trusts the root key the child
   prints (never one fetched over HTTP); every call below goes over HTTP
   through the real agent, certificates verified;
2. deploys the demo app (``canister_iface/wasm/demo_app.wasm``) and fills it
   with about ``--mib`` MiB of synthetic users, posts and pictures (its
   ``generate`` update, in steps);
3. backs it up under a visible byte-rate limit into a backup canister the
   orchestrator creates on demand, and verifies the copy chunk by chunk;
4. wipes the app, restores it from the backup and verifies again: the app's
   ``stats()`` fingerprint after the restore equals the one before the wipe;
5. prints a summary: bytes, times, rates, retries, canisters created, and
   where ``/metrics`` was served.

The checkpoint store is a temporary file unless ``--state`` is given; the
local IC and everything in it are gone when the demo ends.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canister_iface.identity import Identity
from replicator.cli.common import Context, open_agent
from replicator.cli.demo.app import DemoApp, Stats
from replicator.cli.demo.split_tour import split_tour
from replicator.cli.jobrun import RenderedProgress, open_store
from replicator.cli.localnet import require_localnet
from replicator.cli.render import Renderer
from replicator.config import LOCAL, Config, load_config
from replicator.engine import Engine
from replicator.errors import EXIT_OK, IntegrityError, JobFailed
from replicator.flows import backup, restore, verify
from replicator.job import CanisterRef, JobOutcome

MiB = 1024 * 1024
DEFAULT_MIB = 64
# Slow enough to watch the bar move and the limit hold, fast enough for a demo.
DEFAULT_BYTES_PER_SECOND = "8 MiB"
DEMO_CALLS_PER_SECOND = 200


@dataclass
class DemoReport:
    """What the summary shows."""

    mib: int
    localnet_url: str = ""
    app: str = ""
    backup: str = ""
    image_bytes: int = 0
    digest: str = ""
    generate_seconds: float = 0.0
    jobs: dict[str, JobOutcome] = field(default_factory=dict)
    fingerprint_before: int = 0
    fingerprint_after: int = 0
    stats: Stats | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the --split tour's fields

    def fields(
        self, retries: int, created: int, metrics_url: str | None, limit: int | None
    ) -> dict[str, Any]:
        backup, restore = self.jobs.get("backup"), self.jobs.get("restore")
        return {
            "ok": True,
            "exit_code": EXIT_OK,
            "localnet": self.localnet_url,
            "app": self.app,
            "backup_canister": self.backup,
            "users": None if self.stats is None else self.stats.users,
            "posts": None if self.stats is None else self.stats.posts,
            "pictures": None if self.stats is None else self.stats.pictures,
            "image_bytes": self.image_bytes,
            "digest": self.digest,
            "fingerprint": f"{self.fingerprint_before:016x}",
            "fingerprint_after_restore": f"{self.fingerprint_after:016x}",
            "generate_seconds": round(self.generate_seconds, 2),
            "backup_seconds": _seconds(backup),
            "backup_bytes_per_second": _rate(backup),
            "restore_seconds": _seconds(restore),
            "restore_bytes_per_second": _rate(restore),
            "verify_seconds": round(
                sum(o.elapsed for k, o in self.jobs.items() if k.startswith("verify")), 2
            ),
            "route": None if backup is None else backup.route,
            "limit_bytes_per_second": limit,
            "retries": retries,
            "canisters_created": created,
            "metrics_url": metrics_url,
            **self.extra,
        }


def _seconds(outcome: JobOutcome | None) -> float | None:
    return None if outcome is None else round(outcome.elapsed, 2)


def _rate(outcome: JobOutcome | None) -> int | None:
    if outcome is None or outcome.elapsed <= 0:
        return None
    return round(outcome.bytes_copied / outcome.elapsed)


def demo_config(url: str, root_key: bytes, args: Any, state: Path) -> Config:
    """The demo's configuration: localnet with its pinned key, the flags' limits."""
    bytes_per_second = args.bytes_per_second or DEFAULT_BYTES_PER_SECOND
    limits: dict[str, object] = {
        "bytes_per_second": int(bytes_per_second)
        if str(bytes_per_second).isdigit()
        else bytes_per_second,
        "calls_per_second": args.calls_per_second or DEMO_CALLS_PER_SECOND,
    }
    if args.in_flight is not None:
        limits["in_flight"] = args.in_flight
    overrides: dict[str, object] = {
        "network": LOCAL,
        f"networks.{LOCAL}.url": url,
        f"networks.{LOCAL}.root_key": root_key.hex(),
        "checkpoints": str(state),
        "metrics.port": args.metrics_port if args.metrics_port is not None else 0,
    }
    overrides |= {f"limits.{k}": v for k, v in limits.items()}
    return load_config(None, overrides=overrides)


@contextmanager
def state_file(given: str | None) -> Iterator[Path]:
    if given is not None:
        yield Path(given).expanduser()
        return
    with tempfile.TemporaryDirectory(prefix="replicator-demo-") as tmp:
        yield Path(tmp) / "checkpoints.sqlite3"


async def run_demo(ctx: Context) -> int:
    """The whole tour; its exit code."""
    # Only the demo starts a local IC: without the localnet extra it stops here (exit 2).
    require_localnet("demo")
    from localnet.process import LocalNetProcess

    args = ctx.args
    renderer = ctx.renderer
    report = DemoReport(mib=args.mib)

    identity = Identity.generate_ed25519()
    renderer.note(f"starting a local IC (localnet) in a child process; you are {identity}")
    with state_file(args.state) as state:
        async with LocalNetProcess() as net:
            report.localnet_url = net.url
            renderer.note(f"localnet at {net.url}, root key pinned from its output")
            ctx.use_config(demo_config(net.url, net.root_key, args, state))
            progress = RenderedProgress(renderer)
            with ctx.serving_metrics():
                await _tour(ctx, identity, progress, report)
            created = canisters_created(ctx)
    limit = ctx.config.limits_for(LOCAL).block_bytes_per_second
    renderer.summary(report.fields(progress.retries, created, ctx.metrics_url, limit))
    return EXIT_OK


async def _tour(
    ctx: Context, identity: Identity, progress: RenderedProgress, report: DemoReport
) -> None:
    config, renderer = ctx.config, ctx.renderer
    async with open_agent(config.network_named(), identity) as agent:
        app = await _deploy(agent, identity, renderer, report)
        before = await app.stats()
        report.stats, report.fingerprint_before = before, before.fingerprint
        renderer.note(
            f"the app holds {before.users:,} users, {before.posts:,} posts and "
            f"{before.pictures:,} pictures; state fingerprint {before.fingerprint:016x}"
        )
        store = open_store(config.checkpoints)
        engine = Engine.from_config(config, store, ctx.metrics, progress, identity=identity)
        try:
            async with engine:
                await _round_trip(engine, app, renderer, report)
                if getattr(ctx.args, "split", False):
                    await _check_restored(app, report, renderer)
                    source = CanisterRef(str(app.canister_id), LOCAL)
                    report.extra = await split_tour(engine, source, renderer)
                    return
        finally:
            await store.close()
        await _check_restored(app, report, renderer)


async def _check_restored(app: DemoApp, report: DemoReport, renderer: Renderer) -> None:
    after = await app.stats()
    report.fingerprint_after = after.fingerprint
    if after.fingerprint != report.fingerprint_before:
        raise IntegrityError(
            f"the restored app's fingerprint {after.fingerprint:016x} differs from "
            f"{report.fingerprint_before:016x} before the wipe"
        )
    renderer.note(f"restored state fingerprint {after.fingerprint:016x}: equal")


async def _deploy(
    agent: Any, identity: Identity, renderer: Renderer, report: DemoReport
) -> DemoApp:
    app = await DemoApp.deploy(agent, identity.principal)
    report.app = str(app.canister_id)
    renderer.note(f"deployed the demo app as {app.canister_id}")
    label = f"generate-{report.mib}mib"
    renderer.start(label, "generate", str(app.canister_id), None)
    renderer.total(label, report.mib * MiB)
    renderer.phase(label, "generating")
    started = time.monotonic()

    def observe(done: int, target: int) -> None:
        renderer.progress(label, min(done, target))

    await app.generate(report.mib, 1, on_progress=observe)
    renderer.phase(label, "done")
    report.generate_seconds = time.monotonic() - started
    return app


async def _round_trip(engine: Engine, app: DemoApp, renderer: Renderer, report: DemoReport) -> None:
    source = CanisterRef(str(app.canister_id), LOCAL)
    renderer.note("backing the app up into a backup canister created for it")
    copied = _checked("backup", await engine.submit(backup.request(source)), report)
    target = copied.job.target
    if not isinstance(target, CanisterRef):
        raise JobFailed(f"the backup job wrote to {target}, not to a canister")
    report.backup = target.canister_id
    size = copied.details.get("size")
    report.image_bytes = size if isinstance(size, int) else 0
    report.digest = copied.digest.hex() if copied.digest else ""
    _checked("verify-backup", await engine.submit(verify.request(target, source)), report)
    renderer.note(f"the backup holds the app's image (digest {report.digest[:16]}…)")

    renderer.note("wiping the app's state")
    await app.wipe()
    wiped = await app.stats()
    renderer.note(f"the app now holds {wiped.users} users and {wiped.records} records")
    if wiped.fingerprint == report.fingerprint_before:
        raise JobFailed("wiping the app left its fingerprint unchanged: nothing to restore")

    renderer.note("restoring the app from its backup")
    _checked("restore", await engine.submit(restore.request(target, source)), report)
    _checked("verify-restore", await engine.submit(verify.request(target, source)), report)


def _checked(name: str, outcome: JobOutcome, report: DemoReport) -> JobOutcome:
    report.jobs[name] = outcome
    if not outcome.ok:
        error = JobFailed(f"the demo's {name} job failed: {outcome.error}")
        error.exit_code = outcome.exit_code
        raise error
    return outcome


def canisters_created(ctx: Context) -> int:
    value = ctx.metrics.registry.get_sample_value(
        "replicator_canisters_created_total", {"network": LOCAL}
    )
    return int(value or 0)
