"""Performs the effects of the image kinds' machine (:mod:`replicator.flows.image.machine`).

Each endpoint becomes a *side* (:mod:`replicator.flows.image.sides`): a
canister speaking ICRP or an archive file.  Copies go through the pump
(:mod:`replicator.pump`).  A chunk is recorded as done only after the
target acknowledged it; a resumed copy first asks the target which chunks
it holds (``icrp_import_status``, or the archive file's intact frames) and
reconciles the checkpoint with that, so nothing acknowledged is copied
twice and nothing the target lost is skipped.  If the source replaces the
snapshot under a running copy (``StaleSnapshot``), the run starts over from
a fresh image (:class:`~replicator.flow.Restart`); pages of two images are
never mixed.

The direct path (the source pushes to the target) is the default between
two canisters on one network; the relay path (read here, write there) is
used when asked for (``via = "relay"``), between networks, when the source
cannot push, or when the identity may not grant the push (unless the
direct path was asked for explicitly, which then fails with exit code 4).
The grants the direct path needs are recorded before they are made and
revoked when the copy ends (:mod:`replicator.flows.image.grants`): a
finished copy when the machine releases them, a run that fails or is
cancelled when it closes (best effort), a run that died by the job's next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from replicator.chunkbook import ChunkBook
from replicator.chunking import Path
from replicator.errors import AccessDeniedError, ReplicatorError, UsageError
from replicator.flow import Restart, RunContext, RunReport
from replicator.flows.image import archive as archive_sides
from replicator.flows.image import canister as canister_sides
from replicator.flows.image.grants import Grants
from replicator.flows.image.machine import (
    AbortImport,
    CheckChunks,
    ChunksDone,
    Commit,
    Committed,
    CopyChunks,
    DiscardProgress,
    Grant,
    GrantsNeeded,
    GrantsReleased,
    PrepareSource,
    PrepareTarget,
    ReleaseGrants,
    ReleaseSource,
    SourceReady,
    TargetReady,
    Verified,
    VerifyTarget,
    image_of,
)
from replicator.flows.image.sides import Prepared, SourceSide, TargetSide
from replicator.integrity import ImageInfo
from replicator.job import CanisterRef, Job, JobState
from replicator.pump import DirectMover, Mover, Pump, RelayMover
from replicator.routes import Route, check_via

T = TypeVar("T")
U = TypeVar("U")
log = logging.getLogger(__name__)


class ImagePerformer:
    """One run of an image job: its sides, counters, and the effects."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.job = ctx.job
        self.route: str | None = None
        # Direct: whether the pushes stayed inside one subnet (metered apart by
        # the "auto" byte budget); None on the relay.
        self.in_subnet: bool | None = None
        self.bytes_copied = 0
        self.chunks_copied = 0
        self.chunks_skipped = 0
        self.target_digest: bytes | None = None
        self.source = _source_side(self.job, ctx)
        self._target = _target_side(self.job, ctx)
        self.grants = Grants(ctx.calls, ctx.store, self.job.id)
        # Grants this run may have made and not released: revoked when the run
        # ends without releasing them (failed, cancelled).
        self._unreleased: set[Grant] = set()
        # Grants this run made already (while the target prepared).
        self._granted: set[Grant] = set()

    async def perform(self, effect: object) -> object | None:
        try:
            return await self._perform(effect)
        except ie.StaleSnapshot as exc:
            raise Restart(
                f"the source replaced its snapshot ({exc}); starting from a new image", exc
            ) from exc

    async def _perform(self, effect: object) -> object | None:
        match effect:
            case PrepareSource(resume=resume, name_grants=name_grants):
                if not name_grants:
                    return SourceReady(await self.source.prepare(resume))
                image, grants = await _together(self.source.prepare(resume), self._named_grants())
                return SourceReady(image, grants)
            case PrepareTarget(image=image, resume_import_id=resume_id, grants=grants):
                prepared, _ = await _together(
                    self._prepare_target(image, resume_id), self._grant_early(grants)
                )
                return TargetReady(prepared.import_id, prepared.committed)
            case DiscardProgress(reason=reason):
                self.ctx.note(f"starting the copy over: {reason}")
                await self.ctx.reset_chunks()
                await self.target.discard()
                return None
            case AbortImport(import_id=import_id):
                await self.target.abort(import_id)
                return None
            case CopyChunks(image=image, import_id=import_id, grants=grants):
                self._unreleased.update(grants)
                return await self._copy(image, import_id, grants)
            case ReleaseGrants(grants=grants):
                await self._revoke(grants)
                return GrantsReleased(grants)
            case CheckChunks(image=image):
                return ChunksDone(await self._check(image))
            case Commit():
                return await self._commit(effect)
            case VerifyTarget():
                return await self._verify(effect)
            case ReleaseSource(image=image):
                await self.source.release(image)
                return None
        raise TypeError(f"not an effect of the image kinds: {effect!r}")

    async def _prepare_target(self, image: ImageInfo, resume_id: int | None) -> Prepared:
        digests = await self.source.chunk_digests(image)
        prepared = await self.target.prepare(
            image, self.source.origin, self.source.journal_seq, digests, resume_id
        )
        if prepared.committed:  # nothing to copy: the target holds the image
            self.ctx.total(image.size, image.size)
        return prepared

    async def _named_grants(self) -> tuple[Grant, ...]:
        """The grants a direct copy would make, named early (quietly: the copy decides).

        Nothing is granted here; any question left open (no direct path, no
        right to grant) is met again, and reported, by the copy.
        """
        source, target = self.source, self._target
        if not (
            isinstance(source, canister_sides.CanisterSource)
            and isinstance(target, canister_sides.CanisterTarget)
        ):
            return ()
        try:
            # The target's icrp_info (its role decides the grants) meanwhile.
            direct, _ = await _together(self._direct(source, target, quiet=True), target.info())
            if not direct:
                return ()
            needed = await self._needed_grants(source, target)
            return tuple(await self.grants.to_record(needed, ()))
        except (ic.IcError, ReplicatorError):
            return ()

    async def _grant_early(self, grants: tuple[Grant, ...]) -> None:
        """Make recorded ``grants`` while the target prepares (best effort, see above)."""
        if not grants:
            return
        self._unreleased.update(grants)
        try:
            await self.grants.grant(grants)
        except (ic.IcError, ReplicatorError) as exc:
            log.info("job %s: granting early failed, the copy grants again: %s", self.job.id, exc)
            return
        self._granted.update(grants)

    async def _commit(self, effect: Commit) -> Committed:
        """The target's commit; the grants revoked and the source's export ended meanwhile."""
        image, release = effect.image, effect.release is not None
        meanwhile = self._meanwhile(effect.grants, image if release else None)
        digest, _ = await _together(self.target.commit(image, effect.import_id), meanwhile)
        if digest is not None:
            self.target_digest = digest
        return Committed(effect.grants, digest, source_released=release)

    async def _meanwhile(self, grants: tuple[Grant, ...], release: ImageInfo | None) -> None:
        """What a commit overlaps: revoking the copy's grants, ending the source's export."""
        if release is None:
            await self._revoke(grants)
        else:
            await _together(self._revoke(grants), self.source.release(release))

    async def _verify(self, effect: VerifyTarget) -> Verified:
        """The target's digest; the source's export ended meanwhile if asked."""
        image, released = effect.image, effect.release is not None
        check = self.target.digest(image, effect.import_id)
        if released:
            digest, _ = await _together(check, self.source.release(image))
        else:
            digest = await check
        self.target_digest = digest
        return Verified(digest, source_released=released or effect.source_released)

    async def _revoke(self, grants: tuple[Grant, ...]) -> None:
        if grants:
            await self.grants.revoke(grants)
            self._unreleased.difference_update(grants)

    @property
    def target(self) -> TargetSide:
        if self._target is None:
            raise UsageError(f"job {self.job.id} has no target")
        return self._target

    # -- copies

    async def _copy(
        self, image: ImageInfo, import_id: int | None, grants: tuple[Grant, ...]
    ) -> ChunksDone | GrantsNeeded:
        digests = await self.source.chunk_digests(image)
        held = await self.target.held(image, import_id)
        book = await self._book(image, digests, held)
        mover = await self._mover(image, import_id, digests, grants, nothing_left=book.done)
        if isinstance(mover, GrantsNeeded):
            return mover  # recorded first, then granted by the next CopyChunks
        self.route = None if book.done else mover.route  # nothing to move: no route taken
        return ChunksDone(await self._pump(image, book, mover))

    async def _check(self, image: ImageInfo) -> bytes:
        digests = await self.source.chunk_digests(image)
        held = {i for i, d in self.ctx.acked.items() if i < len(digests) and d == digests[i]}
        book = await self._book(image, digests, held)
        reader = self.source.reader(image)
        mover = RelayMover(reader, None, image, digests, describe=str(self.job.source))
        return await self._pump(image, book, mover, copying=False)

    async def _book(self, image: ImageInfo, digests: Sequence[bytes], held: set[int]) -> ChunkBook:
        """Reconcile the checkpoint with what the target holds (its word wins)."""
        acked = {i: digests[i] for i in held}
        if any(acked.get(i) != d for i, d in self.ctx.acked.items()):
            await self.ctx.reset_chunks()
        missing = sorted(i for i in acked if i not in self.ctx.acked)
        if missing:
            await self.ctx.ack([(i, acked[i]) for i in missing])
        self.chunks_skipped = len(acked)
        book = ChunkBook.for_image(image, acked)
        self.ctx.total(image.size, book.acked_bytes(image.size, image.chunk_size))
        return book

    async def _mover(
        self,
        image: ImageInfo,
        import_id: int | None,
        digests: Sequence[bytes],
        recorded: tuple[Grant, ...],
        *,
        nothing_left: bool,
    ) -> Mover | GrantsNeeded:
        source, target = self.source, self.target
        if (
            import_id is not None
            and not nothing_left  # no push to make: no grant either
            and isinstance(source, canister_sides.CanisterSource)
            and isinstance(target, canister_sides.CanisterTarget)
            and await self._direct(source, target)
        ):
            allowed = await self._push_allowed(source, target, recorded)
            if isinstance(allowed, GrantsNeeded):
                return allowed
            if allowed:
                in_subnet = await self.ctx.calls.same_subnet(
                    source.endpoint.network,
                    source.endpoint.canister_id,
                    target.endpoint.canister_id,
                )
                self.in_subnet = in_subnet
                pusher = source.pusher(target.principal, image, import_id, in_subnet=in_subnet)
                return DirectMover(pusher, source.sizer(Path.PUSH), digests)
        writer = target.writer(image, import_id)
        reader = source.reader(image, charged=not writer.charges_bytes)
        describe = str(self.job.source)
        return RelayMover(reader, writer, image, digests, describe=describe)

    async def _direct(
        self,
        source: canister_sides.CanisterSource,
        target: canister_sides.CanisterTarget,
        *,
        quiet: bool = False,
    ) -> bool:
        note = (lambda _text: None) if quiet else self.ctx.note
        via = check_via(self.job.options.get("via") or self.ctx.settings.via)
        if via == Route.RELAY:
            return False
        if source.endpoint.network != target.endpoint.network:
            note("source and target are on different networks: using the relay path")
            return False
        info = await source.info()
        if not info.can("push"):
            note(f"{source.endpoint} cannot push (no 'push' capability): using the relay")
            return False
        return True

    async def _push_allowed(
        self,
        source: canister_sides.CanisterSource,
        target: canister_sides.CanisterTarget,
        recorded: tuple[Grant, ...],
    ) -> bool | GrantsNeeded:
        """Grant what the direct path needs; without the rights, relay — unless asked for.

        Grants not recorded yet are asked for first (``GrantsNeeded``): the
        machine records them before this copy may make them.
        """
        needed = await self._needed_grants(source, target)
        try:
            unrecorded = await self.grants.to_record(needed, recorded)
            if unrecorded:
                return GrantsNeeded(tuple(unrecorded))
            await self.grants.grant(g for g in needed if g in recorded and g not in self._granted)
        except AccessDeniedError as exc:
            if self.job.options.get("via") == Route.DIRECT:
                raise
            self.ctx.note(f"using the relay path: {exc}")
            return False
        return True

    async def _needed_grants(
        self, source: canister_sides.CanisterSource, target: canister_sides.CanisterTarget
    ) -> list[Grant]:
        """``icrp_push`` goes only to the source's peers, and the target accepts the
        source's ``icrp_write`` only if it trusts the source — except a backup
        canister, which trusts the one source it accepts images from."""
        network = source.endpoint.network
        grants = [Grant(network, source.endpoint.canister_id, target.endpoint.canister_id)]
        backup = (await target.info()).role == "backup"
        if not (backup and source.origin == source.principal):
            grants.append(Grant(network, target.endpoint.canister_id, source.endpoint.canister_id))
        return grants

    async def _pump(
        self, image: ImageInfo, book: ChunkBook, mover: Mover, *, copying: bool = True
    ) -> bytes:
        ctx, job = self.ctx, self.job

        def advanced(nbytes: int, nchunks: int) -> None:
            self.bytes_copied += nbytes
            self.chunks_copied += nchunks
            if copying:
                ctx.metrics.record_copied(job.kind, mover.route, nbytes, nchunks)
            ctx.advanced(nbytes)

        pump = Pump(
            image, book, mover, ack=ctx.ack, advanced=advanced, concurrency=ctx.settings.concurrency
        )
        return await pump.run()

    # -- the end

    def report(self, state: JobState) -> RunReport:
        image = image_of(state)
        return RunReport(
            route=self.route,
            bytes_copied=self.bytes_copied,
            chunks_copied=self.chunks_copied,
            chunks_skipped=self.chunks_skipped,
            digest=None if image is None else image.digest,
            source_digest=None if image is None else image.digest,
            target_digest=self.target_digest,
            details={
                "snapshot_id": None if image is None else image.snapshot_id,
                "size": None if image is None else image.size,
                "in_subnet": self.in_subnet if self.route == Route.DIRECT else None,
            },
        )

    async def close(self) -> None:
        if self._unreleased:  # best effort: the job's next run revokes what stays
            await self.grants.revoke_quietly(sorted(self._unreleased))
            self._unreleased.clear()
        await self.source.close()
        if self._target is not None:
            await self._target.close()


async def _together(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Both at once; if one fails the other is cancelled and the failure raised.

    The failure itself, not the task group's ``ExceptionGroup``: callers and
    the engine classify errors by their type (``StaleSnapshot`` restarts).
    """
    try:
        async with asyncio.TaskGroup() as group:
            a, b = group.create_task(_awaited(first)), group.create_task(_awaited(second))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return a.result(), b.result()


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


def _source_side(job: Job, ctx: RunContext) -> SourceSide:
    if isinstance(job.source, CanisterRef):
        snapshot = _int_option(job, "snapshot")
        return canister_sides.CanisterSource(job.source, ctx.calls, snapshot=snapshot)
    return archive_sides.ArchiveSource(job.source, ctx.calls)


def _target_side(job: Job, ctx: RunContext) -> TargetSide | None:
    if job.target is None:
        return None
    if isinstance(job.target, CanisterRef):
        return canister_sides.CanisterTarget(job.target, ctx.calls)
    return archive_sides.ArchiveTarget(job.target, ctx.calls)


def _int_option(job: Job, name: str) -> int | None:
    value = job.options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"option {name} must be an integer, got {value!r}")
    return value


__all__ = ["ImagePerformer"]
