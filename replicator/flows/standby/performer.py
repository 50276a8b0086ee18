"""Performs the standby machine's effects (:mod:`replicator.flows.standby.machine`).

The seed is the image kinds' copy, performed by their performer
(:class:`~replicator.flows.image.performer.ImagePerformer`: direct path
with recorded grants, resume from the target's word, digests checked); the
tail is :class:`~replicator.flows.standby.tail.Tail`.  Before either, the
standby is put into ``standby`` mode, so that its application refuses
writes (naming the primary) and only replication changes it.
"""

from __future__ import annotations

from replicator.errors import JobFailed, UsageError
from replicator.flow import RunContext, RunReport
from replicator.flows.image import machine as image
from replicator.flows.image.canister import CanisterSource
from replicator.flows.image.performer import ImagePerformer
from replicator.flows.standby.machine import (
    ForgetSeed,
    PrepareStandby,
    StandbyDetail,
    StandbyReady,
    Tail,
)
from replicator.flows.standby.metrics import StandbyMetrics
from replicator.flows.standby.tail import Tail as TailLoop
from replicator.flows.standby.tail import TailOptions
from replicator.job import CanisterRef, JobState

_IMAGE_EFFECTS = (
    image.PrepareSource,
    image.PrepareTarget,
    image.DiscardProgress,
    image.AbortImport,
    image.CopyChunks,
    image.ReleaseGrants,
    image.Commit,
    image.VerifyTarget,
    image.ReleaseSource,
)


def job_name(ctx: RunContext) -> str:
    """The metrics label: the config's job name under ``serve``, else the job id."""
    from replicator.service import current_job  # the service sets it per job loop

    return current_job.get() or str(ctx.job.options.get("name") or ctx.job.id)


class StandbyPerformer:
    """One run of a standby job."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.options = TailOptions.of(ctx.job)  # a bad option fails the job before any call
        self.metrics = ctx.metrics.extension(StandbyMetrics)
        self.name = job_name(ctx)
        self._seed: ImagePerformer | None = None
        self._tail: TailLoop | None = None

    async def perform(self, effect: object) -> object | None:
        match effect:
            case PrepareStandby(source=source, standby=standby):
                await self._prepare(source, standby)
                return StandbyReady()
            case ForgetSeed():
                await self.ctx.reset_chunks()
                return None
            case Tail(source=source, standby=standby):
                self._tail = TailLoop(
                    CanisterSource(source, self.ctx.calls),
                    CanisterSource(standby, self.ctx.calls),
                    self.options,
                    self.metrics,
                    self.name,
                    self.ctx.note,
                )
                return await self._tail.run()
        if isinstance(effect, _IMAGE_EFFECTS):
            return await self.seed.perform(effect)
        raise TypeError(f"not an effect of the standby kind: {effect!r}")

    @property
    def seed(self) -> ImagePerformer:
        if self._seed is None:
            self._seed = ImagePerformer(self.ctx)
        return self._seed

    async def _prepare(self, source: CanisterRef, standby: CanisterRef) -> None:
        src = CanisterSource(source, self.ctx.calls)
        await src.require("journal", "serve its journal (icrp_changes)")
        await src.require("image", "export an image")
        side = CanisterSource(standby, self.ctx.calls)
        info = await side.require("apply", "apply changes (icrp_apply)")
        await side.require("import", "import an image")
        await side.require("mode", "be put into standby mode (icrp_set_mode)")
        if info.role != "app":
            raise UsageError(
                f"{standby} is a {info.role} canister; a standby must run the application "
                "(an app canister of the same kind as the source)"
            )
        mode = info.mode
        if mode is not None and mode.mode == "standby" and mode.redirect == src.principal:
            return
        if mode is not None and mode.mode == "primary" and mode.changed_at != 0:
            # A controller made it primary (a promotion): never demote it behind their back.
            raise UsageError(
                f"{standby} was made primary (its mode was set at {mode.changed_at} ns); a "
                "standby job does not demote it. To follow the new primary, run a standby "
                f"job from {standby} instead (replicator promote --reverse), or set its mode to "
                "standby by hand if this job is right"
            )
        if info.journal is not None and info.journal.head_seq > 0:
            self.ctx.note(f"{standby} had state of its own; it becomes a standby of {source}")
        now = await side.call(
            "icrp_set_mode", lambda: side.client.set_mode("standby", src.principal)
        )
        if now.mode != "standby":
            raise JobFailed(f"{standby} did not enter standby mode (it is {now.mode})")

    def report(self, state: JobState) -> RunReport:
        seed = self._seed.report(state) if self._seed is not None else RunReport()
        detail = StandbyDetail.of(state)
        tail = self._tail
        details: dict[str, object] = {
            "seeded": detail.seeded,
            "resyncs": detail.resyncs,
            "applied_seq": None if tail is None else tail.applied,
            "changes_applied": 0 if tail is None else tail.changes_applied,
            "bytes_applied": 0 if tail is None else tail.bytes_applied,
            "consistency_checks": {} if tail is None else dict(tail.checks),
        }
        return RunReport(
            route=seed.route,
            bytes_copied=seed.bytes_copied,
            chunks_copied=seed.chunks_copied,
            chunks_skipped=seed.chunks_skipped,
            digest=seed.digest,
            source_digest=seed.source_digest,
            target_digest=seed.target_digest,
            details=details,
        )

    async def close(self) -> None:
        if self._seed is not None:
            await self._seed.close()
