"""``replicator demo --standby``: a hot standby and a failover, on a local IC started for it.

1. starts localnet in a child process (root key pinned from its output) and
   deploys the demo app with about ``--mib`` MiB of synthetic data;
2. starts a ``standby`` job with no target: a standby canister is created
   with the app's module, seeded with its image and follows its journal;
3. writes to the app for a few seconds while the lag is shown live (from
   the job's own metrics: seconds and changes behind, changes applied);
4. promotes the standby (fence the app, drain, compare images at the final
   sequence, switch) and shows that the app now refuses writes, the
   standby takes them, and both held the same state (``stats()``
   fingerprints and image digests equal).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from canister_iface.errors import ProtocolError
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.cli.common import Context, open_agent
from replicator.cli.demo.app import DemoApp
from replicator.cli.demo.tour import demo_config, state_file
from replicator.cli.jobrun import RenderedProgress, open_store
from replicator.cli.localnet import require_localnet
from replicator.config import LOCAL
from replicator.engine import Engine
from replicator.errors import EXIT_OK, IntegrityError, JobFailed
from replicator.flows.standby import kind as standby
from replicator.flows.standby.promote import Promotion, promote
from replicator.job import CanisterRef, JobOutcome

WRITE_SECONDS = 6.0
NAME = "demo-standby"


@dataclass
class _Live:
    writes: int = 0
    max_lag_seconds: float = 0.0
    max_lag_changes: float = 0.0


async def run_standby_demo(ctx: Context) -> int:
    require_localnet("demo")
    from localnet.process import LocalNetProcess

    args, renderer = ctx.args, ctx.renderer
    identity = Identity.generate_ed25519()
    renderer.note(f"starting a local IC (localnet) in a child process; you are {identity}")
    with state_file(args.state) as state:
        async with LocalNetProcess() as net:
            renderer.note(f"localnet at {net.url}, root key pinned from its output")
            ctx.use_config(demo_config(net.url, net.root_key, args, state))
            progress = RenderedProgress(renderer)
            with ctx.serving_metrics():
                fields = await _tour(ctx, identity, progress)
    renderer.summary({"ok": True, "exit_code": EXIT_OK, **fields, "metrics_url": ctx.metrics_url})
    return EXIT_OK


async def _tour(ctx: Context, identity: Identity, progress: RenderedProgress) -> dict[str, Any]:
    config, renderer = ctx.config, ctx.renderer
    async with open_agent(config.network_named(), identity) as agent:
        app = await DemoApp.deploy(agent, identity.principal)
        renderer.note(f"deployed the demo app as {app.canister_id}; generating {ctx.args.mib} MiB")
        await app.generate(ctx.args.mib, 1)
        source = CanisterRef(str(app.canister_id), LOCAL)
        store = open_store(config.checkpoints)
        engine = Engine.from_config(config, store, ctx.metrics, progress, identity=identity)
        try:
            async with engine:
                request = standby.request(source, check_interval=3, poll_max=0.5, name=NAME)
                renderer.note("starting a standby job: a standby canister is created and seeded")
                job = asyncio.ensure_future(engine.submit(request))
                try:
                    target = await _following(ctx, engine, job)
                    live = await _writes(ctx, agent, app, job)
                    renderer.note(f"promoting {target} (fence, drain, compare, switch)")
                    done = await promote(engine.calls(renderer.note), target)
                finally:
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job
        finally:
            await store.close()
        return await _after(ctx, agent, app, done, live)


async def _following(ctx: Context, engine: Engine, job: asyncio.Future[JobOutcome]) -> CanisterRef:
    """Wait until the job tails the journal; the standby it follows with."""
    while True:
        if job.done():
            outcome = job.result()
            raise JobFailed(f"the standby job ended: {outcome.error}")
        for row in await engine.store.list_jobs():
            if row.kind == "standby" and row.phase == "tailing" and row.target is not None:
                target = CanisterRef(row.target.split("@")[0], LOCAL)
                ctx.renderer.note(f"the standby {target} is seeded and follows the app")
                return target
        await asyncio.sleep(0.2)


async def _writes(ctx: Context, agent: Any, app: DemoApp, job: asyncio.Future[JobOutcome]) -> _Live:
    """Users created for a few seconds, the lag shown once a second."""
    live = _Live()
    started = time.monotonic()
    next_report = started + 1

    def sample(name: str) -> float:
        value = ctx.metrics.registry.get_sample_value(name, {"name": NAME})
        return value or 0.0

    while time.monotonic() - started < WRITE_SECONDS and not job.done():
        await app.create_user(f"user-{live.writes}", "written during the standby demo")
        live.writes += 1
        if time.monotonic() >= next_report:
            next_report += 1
            seconds = sample("replicator_standby_lag_seconds")
            changes = sample("replicator_standby_lag_changes")
            live.max_lag_seconds = max(live.max_lag_seconds, seconds)
            live.max_lag_changes = max(live.max_lag_changes, changes)
            ctx.renderer.note(
                f"{live.writes} writes; the standby lags {seconds:.2f} s ({changes:.0f} "
                f"changes); applied {sample('replicator_standby_applied_changes_total'):.0f}"
            )
    return live


async def _after(
    ctx: Context, agent: Any, app: DemoApp, done: Promotion, live: _Live
) -> dict[str, Any]:
    new_primary = DemoApp(agent, Principal.from_text(done.new_primary.canister_id))
    before, after = await app.stats(), await new_primary.stats()
    if before.fingerprint != after.fingerprint:
        raise IntegrityError(
            f"the promoted standby's fingerprint {after.fingerprint:016x} differs from the "
            f"app's {before.fingerprint:016x}"
        )
    try:
        await app.create_user("too-late", "the old primary is fenced")
    except ProtocolError:  # the demo app's refusal (NotWritable, naming the new primary)
        ctx.renderer.note(f"the old primary {app.canister_id} refuses writes (fenced)")
    else:
        raise JobFailed("the fenced primary accepted a write")
    await new_primary.create_user("first-after-failover", "the new primary takes writes")
    ctx.renderer.note(f"{done.new_primary} is the primary now and takes writes")
    return {
        "app": str(app.canister_id),
        "standby": done.new_primary.canister_id,
        "writes": live.writes,
        "max_lag_seconds": round(live.max_lag_seconds, 3),
        "max_lag_changes": live.max_lag_changes,
        "promote_seconds": round(done.seconds, 3),
        "final_seq": done.final_seq,
        "digest": None if done.digest is None else done.digest.hex(),
        "fingerprint": f"{before.fingerprint:016x}",
        "fingerprints_equal": True,
    }
