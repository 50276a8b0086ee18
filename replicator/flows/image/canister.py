"""Canisters as sources and targets: the ICRP side of a job.

Every call goes through the network's :class:`~replicator.calls.CallRunner`
(limits, retries, metrics).  Before anything else each side asks
``icrp_info``: a canister that does not answer it does not speak ICRP, and
one that says ``trusted = false`` will refuse our identity — both stop the
job before it changes anything.

Source (:class:`CanisterSource`): ``prepare`` reuses the snapshot a resumed
job was copying while the canister still offers it, otherwise freezes a new
image with ``icrp_begin_export`` and continues it with
``icrp_export_status`` until it is ready (large images are prepared in
steps).  A restore may name a snapshot (``snapshot=``): a backup canister
keeps several.

Target (:class:`CanisterTarget`): ``prepare`` first looks whether the job is
already finished there (a resumed import that was committed; a backup
canister that already stores this very image), then opens the import with
``icrp_begin_import`` — which returns the same import id for the same image,
so a resumed job continues its import.  The spec carries the chunk digests
(when they fit in one message), so the target checks every chunk as it
completes.  ``held`` reads ``icrp_import_status``: the target's word on
which chunks it holds is what a resumed job reconciles its checkpoint with.

The direct path needs two grants (the source may push only to its peers,
and the target accepts writes only from controllers and peers): the
performer makes and revokes them (:mod:`replicator.flows.image.grants`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.icrp import IcrpClient, WriteArg
from canister_iface.icrp_types import ExportTicket, ImportSpec, ImportStatus, Info, ensure_version
from canister_iface.principal import Principal
from replicator.ahead import one_ahead
from replicator.calls import CallCost, CallRunner
from replicator.chunking import Path
from replicator.errors import AccessDeniedError, IntegrityError, JobFailed, UsageError
from replicator.flow import Calls
from replicator.flows.image.sides import Prepared
from replicator.integrity import ImageInfo, image_digest
from replicator.job import CanisterRef
from replicator.pump import PIECES_PER_RUN, Buffer, PieceReader, Run, Sizer, Step

log = logging.getLogger(__name__)
T = TypeVar("T")

# Chunk digests ride in the import spec while the spec fits one ingress
# message comfortably (36 bytes each with Candid framing): 40,000 chunks,
# i.e. 40 GiB at 1 MiB chunks.  Larger images are checked at commit only.
MAX_SPEC_DIGESTS = 40_000
_DIGESTS_PER_CALL = 50_000
_MAX_STEPS = 100_000


class _Canister:
    """Calls to one canister's ICRP methods, through the runner."""

    def __init__(self, ref: CanisterRef, ctx: Calls) -> None:
        self.endpoint = ref
        self.ctx = ctx
        self.agent = ctx.agent_for(ref.network)
        self.runner: CallRunner = ctx.runner_for(ref.network)
        self.client = IcrpClient(self.agent, ref.canister_id)
        self.principal = Principal.of(ref.canister_id)
        self._info: Info | None = None
        # Concurrent first callers (the job's own check, the grants named
        # meanwhile) share one icrp_info query.
        self._info_lock = asyncio.Lock()

    async def call(
        self,
        method: str,
        perform: Callable[[], Awaitable[T]],
        *,
        cost: CallCost = "update",
        nbytes: int = 0,
        urgent: bool = False,
        in_subnet: bool = False,
    ) -> T:
        return await self.runner.call(
            self.endpoint.canister_id,
            method,
            perform,
            cost=cost,
            nbytes=nbytes,
            what=f"{method} on {self.endpoint}",
            urgent=urgent,
            in_subnet=in_subnet,
        )

    async def info(self) -> Info:
        """``icrp_info``, checked: ICRP version 1 and our identity trusted."""
        async with self._info_lock:
            return await self._read_info()

    async def _read_info(self) -> Info:
        if self._info is None:
            info = await self.call("icrp_info", self.client.info, cost="query")
            ensure_version(info)
            if not info.trusted:
                me = self.agent.identity.principal
                raise AccessDeniedError(
                    f"{self.endpoint} does not trust {me}: the identity is neither a "
                    "controller nor a trusted peer of the canister. Use a controller's identity "
                    "(identity.pem in the config), or have a controller add it with icrp_set_peers"
                )
            self._info = info
        return self._info

    async def require(self, capability: str, why: str) -> Info:
        info = await self.info()
        if not info.can(capability):
            raise JobFailed(
                f"{self.endpoint} ({info.role}) cannot {why}: it lacks the ICRP capability "
                f"{capability!r} (it has: {', '.join(info.capabilities) or 'none'})"
            )
        return info

    def can(self, capability: str) -> bool:
        """The canister listed ``capability`` in the ``icrp_info`` already read."""
        return self._info is not None and self._info.can(capability)

    def sizer(self, path: Path) -> Sizer:
        limit = None if self._info is None else self._info.max_transfer_bytes
        return self.ctx.sizer_for(path, limit)

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------- source


class CanisterSource(_Canister):
    """A canister whose image a job copies (app, shard or backup canister)."""

    def __init__(self, ref: CanisterRef, ctx: Calls, *, snapshot: int | None = None) -> None:
        super().__init__(ref, ctx)
        self.snapshot = snapshot
        self.ticket: ExportTicket | None = None
        self._digests: tuple[int, list[bytes]] | None = None

    @property
    def origin(self) -> Principal:
        """Where the image was frozen: this canister, or for an image a backup canister
        received, the canister it came from (so a copy stays importable into that
        canister's backups)."""
        if self.ticket is not None and self.ticket.origin is not None:
            return self.ticket.origin.source
        return self.principal

    @property
    def journal_seq(self) -> int:
        return 0 if self.ticket is None else self.ticket.journal_seq

    async def prepare(self, resume: ImageInfo | None) -> ImageInfo:
        await self.require("image", "export an image")
        ticket = None
        if self.snapshot is not None:
            ticket = await self._named(self.snapshot)
        elif resume is not None:
            ticket = await self._still_offered(resume.snapshot_id)
        if ticket is None:
            ticket = self._fresh()
        ticket = await (self._export_now() if ticket is None else self._ready(ticket))
        self.ticket = ticket
        return ImageInfo(ticket.snapshot_id, ticket.size, ticket.chunk_size, ticket.digest)

    async def _export_now(self) -> ExportTicket:
        return await self._ready(await self.call("icrp_begin_export", self.client.begin_export))

    def _fresh(self) -> ExportTicket | None:
        """The image a backup's planner had this canister freeze moments ago, if any."""
        ticket = self.ctx.fresh_images.take(self.endpoint.network, self.endpoint.canister_id)
        if ticket is not None:
            self.ctx.note(f"{self.endpoint}: snapshot {ticket.snapshot_id}, frozen while planning")
        return ticket

    async def freeze(self) -> ExportTicket:
        """An image of now (never one kept earlier), ready, kept for the job that will
        copy it (:mod:`replicator.fresh`)."""
        await self.require("image", "export an image")
        ticket = self.ticket = await self._export_now()
        self.ctx.fresh_images.keep(self.endpoint.network, self.endpoint.canister_id, ticket)
        return ticket

    async def _named(self, snapshot_id: int) -> ExportTicket:
        try:
            return await self._status(snapshot_id)
        except ie.StaleSnapshot:
            images = await self.call("icrp_list_images", self.client.list_images, cost="query")
            held = ", ".join(str(t.snapshot_id) for t in images) or "none"
            raise UsageError(
                f"{self.endpoint} holds no snapshot {snapshot_id} (it holds: {held}); pick one "
                "of those or leave the snapshot out for the newest"
            ) from None

    async def _still_offered(self, snapshot_id: int) -> ExportTicket | None:
        try:
            return await self._status(snapshot_id)
        except ie.StaleSnapshot:
            return None

    async def _status(self, snapshot_id: int) -> ExportTicket:
        return await self.call("icrp_export_status", lambda: self.client.export_status(snapshot_id))

    async def _ready(self, ticket: ExportTicket) -> ExportTicket:
        """Steps the export until its image is ready, one status call ahead
        (:mod:`replicator.ahead`: the canister steps every round, not every other
        one; a 256 MiB image took ~6 s instead of ~9.7 s on the subnet model)."""
        if ticket.ready:
            return self._with_digest(ticket)
        self.ctx.note(f"{self.endpoint} is preparing snapshot {ticket.snapshot_id}")
        snapshot_id = ticket.snapshot_id
        async with contextlib.aclosing(one_ahead(lambda: self._status(snapshot_id))) as steps:
            count = 0
            async for ticket in steps:
                count += 1
                if ticket.ready:
                    break
                if count >= _MAX_STEPS:
                    raise JobFailed(
                        f"{self.endpoint} is still preparing snapshot {snapshot_id} after "
                        f"{count} steps ({ticket.done_bytes:,} bytes): it makes no progress"
                    )
        return self._with_digest(ticket)

    def _with_digest(self, ticket: ExportTicket) -> ExportTicket:
        if ticket.digest is None:
            raise ic.ProtocolError(
                f"{self.endpoint}: snapshot {ticket.snapshot_id} is ready but has no digest"
            )
        return ticket

    async def chunk_digests(self, image: ImageInfo) -> list[bytes]:
        if self._digests is not None and self._digests[0] == image.snapshot_id:
            return self._digests[1]
        digests: list[bytes] = []
        count = image.chunk_count
        while len(digests) < count:
            first, want = len(digests), min(_DIGESTS_PER_CALL, count - len(digests))
            got = await self._digest_batch(image.snapshot_id, first, want)
            if not got:
                raise ic.ProtocolError(
                    f"{self.endpoint} returned no chunk digests from chunk {first} of {count}"
                )
            digests.extend(got)
        digests = digests[:count]
        if image.digest is not None and image_digest(digests) != image.digest:
            raise IntegrityError(
                f"the chunk digests {self.endpoint} publishes for snapshot {image.snapshot_id} "
                f"do not hash to its image digest {image.digest.hex()}; the source is "
                "inconsistent, nothing was copied"
            )
        self._digests = (image.snapshot_id, digests)
        return digests

    async def _digest_batch(self, snapshot_id: int, first: int, count: int) -> list[bytes]:
        return await self.call(
            "icrp_chunk_digests",
            lambda: self.client.chunk_digests(snapshot_id, first, count),
            cost="query",
        )

    def reader(self, image: ImageInfo, *, charged: bool = True) -> CanisterReader:
        return CanisterReader(self, image.snapshot_id, self.sizer(Path.READ), charged=charged)

    def pusher(
        self, target: Principal, image: ImageInfo, import_id: int, *, in_subnet: bool
    ) -> CanisterPusher:
        return CanisterPusher(self, target, image.snapshot_id, import_id, in_subnet=in_subnet)

    async def release(self, image: ImageInfo) -> None:
        try:
            await self.call("icrp_end_export", lambda: self.client.end_export(image.snapshot_id))
        except ic.IcError as exc:
            log.warning("could not end the export of %s: %s", self.endpoint, exc)


class CanisterReader:
    """Relay reads: ``icrp_read`` queries in adaptive pieces.

    ``charged``: the bytes count against the bytes-per-second budget here;
    ``False`` when the writer counts the same bytes (a relay between two
    canisters moves each byte once, and pays for it once).
    """

    def __init__(
        self, source: _Canister, snapshot_id: int, sizer: Sizer, *, charged: bool = True
    ) -> None:
        self.source = source
        self.snapshot_id = snapshot_id
        self.sizer = sizer
        self.charged = charged
        self._forwards = True

    @property
    def run_bytes(self) -> int:
        return PIECES_PER_RUN * self.sizer.current

    async def read_run(self, run: Run) -> Buffer:
        parts: list[Buffer] = []

        async def read(offset: int, length: int) -> None:
            parts.append(await self.read_at(offset, length))

        await self.sizer.sized(run.offset, run.length, read)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_at(self, offset: int, length: int) -> Buffer:
        data = await self.source.call(
            "icrp_read",
            lambda: self.source.client.read_view(self.snapshot_id, offset, length),
            cost="query",
            nbytes=length if self.charged else 0,
        )
        if len(data) != length:
            raise ic.ProtocolError(
                f"{self.source.endpoint} returned {len(data):,} of {length:,} bytes at "
                f"offset {offset:,} of snapshot {self.snapshot_id}"
            )
        return data

    @property
    def forwards(self) -> bool:
        """The source answers reads as the target's write argument (``read_for_write``)."""
        return self._forwards and self.source.can("read_for_write")

    async def read_for_write(self, import_id: int, offset: int, length: int) -> WriteArg | None:
        """``icrp_read_for_write``; ``None`` when the source refused it (read with
        :meth:`read_at` then: ``icrp_read`` answers the same error typed)."""
        client = self.source.client
        try:
            arg = await self.source.call(
                "icrp_read_for_write",
                lambda: client.read_for_write(self.snapshot_id, import_id, offset, length),
                cost="query",
                nbytes=length if self.charged else 0,
            )
        except ic.MethodNotFound:
            self._forwards = False  # it lists the capability but lacks the method
            return None
        except ic.CanisterReject:
            return None
        return self._whole(arg, offset, length)

    async def read_again(self, import_id: int, offset: int, length: int) -> WriteArg:
        """``icrp_read_for_write`` without the runner: a forwarded write whose read was
        released once sent reads it again inside its own call's attempt (whose
        limits it already holds, and whose bytes the write charges)."""
        arg = await self.source.client.read_for_write(self.snapshot_id, import_id, offset, length)
        return self._whole(arg, offset, length)

    def _whole(self, arg: WriteArg, offset: int, length: int) -> WriteArg:
        if len(arg.data) != length:
            raise ic.ProtocolError(
                f"{self.source.endpoint} returned {len(arg.data):,} of {length:,} bytes at "
                f"offset {offset:,} of snapshot {self.snapshot_id}"
            )
        return arg


class CanisterPusher:
    """The direct path: ``icrp_push`` on the source, one piece per call.

    ``in_subnet``: source and target are on one subnet, so the pushed bytes
    cross no block (the limits meter them apart, see ``CallSpec.in_subnet``).
    """

    def __init__(
        self,
        source: _Canister,
        target: Principal,
        snapshot_id: int,
        import_id: int,
        *,
        in_subnet: bool = False,
    ) -> None:
        self.source = source
        self.target = target
        self.snapshot_id = snapshot_id
        self.import_id = import_id
        self.in_subnet = in_subnet

    async def push(self, offset: int, length: int) -> None:
        client = self.source.client
        ack = await self.source.call(
            "icrp_push",
            lambda: client.push(self.target, self.snapshot_id, self.import_id, offset, length),
            cost="push",
            nbytes=length,
            in_subnet=self.in_subnet,
        )
        if ack.bytes != length:
            raise ic.ProtocolError(
                f"{self.source.endpoint} pushed {ack.bytes:,} bytes for a push of {length:,} at "
                f"offset {offset:,}"
            )


# --------------------------------------------------------------------- target


class CanisterTarget(_Canister):
    """A canister receiving an image: a backup canister, or an app being restored."""

    def __init__(self, ref: CanisterRef, ctx: Calls) -> None:
        super().__init__(ref, ctx)
        self._journal_seq: int | None = None  # of the image being imported

    async def prepare(
        self,
        image: ImageInfo,
        origin: Principal,
        journal_seq: int,
        digests: Sequence[bytes],
        resume_import_id: int | None,
    ) -> Prepared:
        info = await self.require("import", "import an image")
        self._journal_seq = journal_seq
        if resume_import_id is not None:
            status = await self._import_status(resume_import_id)
            if status is not None and _same(status, image, origin):
                if status.state == "committed":
                    return Prepared(resume_import_id, committed=True)
                if status.state in ("receiving", "committing"):
                    return Prepared(resume_import_id)
        if info.role == "backup" and await self._stored(image) is not None:
            self.ctx.note(f"{self.endpoint} already holds this image (digest {_short(image)})")
            return Prepared(None, committed=True)
        spec = ImportSpec(
            source=origin,
            snapshot_id=image.snapshot_id,
            size=image.size,
            chunk_size=image.chunk_size,
            digest=_digest(image),
            journal_seq=journal_seq,
            chunk_digests=tuple(digests) if len(digests) <= MAX_SPEC_DIGESTS else None,
        )
        import_id = await self.call("icrp_begin_import", lambda: self.client.begin_import(spec))
        return Prepared(import_id)

    async def held(self, image: ImageInfo, import_id: int | None) -> set[int]:
        if import_id is None:
            return set()
        status = await self._import_status(import_id)
        if status is None or status.state not in ("receiving", "committing"):
            return set()
        if (status.size, status.chunk_size, status.digest) != (
            image.size,
            image.chunk_size,
            image.digest,
        ):
            return set()
        return {i for i, done in enumerate(status.chunks_done) if done}

    def writer(self, image: ImageInfo, import_id: int | None) -> CanisterWriter:
        if import_id is None:
            raise ValueError("a canister target needs an import id to write to")
        # The import was opened with the chunk digests (prepare), so the
        # canister checks every chunk it completes.
        verifies = image.chunk_count <= MAX_SPEC_DIGESTS
        return CanisterWriter(self, import_id, self.sizer(Path.WRITE), verifies_chunks=verifies)

    async def commit(self, image: ImageInfo, import_id: int | None) -> bytes | None:
        if import_id is None:
            return None  # the target already held the image
        for step in range(_MAX_STEPS):
            state = await self.call(
                "icrp_commit_import", lambda: self.client.commit_import(import_id)
            )
            if state.committed:
                # A backup canister names the digest of the image it now serves
                # (an update's certified answer, as icrp_export_status's would be).
                return state.digest
            if step == 0:
                self.ctx.note(f"{self.endpoint} is rebuilding its state from the image")
        raise JobFailed(f"{self.endpoint} is still committing import {import_id}: no progress")

    async def digest(self, image: ImageInfo, import_id: int | None) -> bytes:
        info = await self.info()
        if import_id is not None:
            return await self._committed_digest(info, import_id)
        if info.role == "backup":
            stored = await self._stored(image)
            if stored is not None:
                return stored
            return await self._newest_digest()
        return _ticket_digest(await self._current_ticket(), self.endpoint)

    async def _committed_digest(self, info: Info, import_id: int) -> bytes:
        status = await self._import_status(import_id)
        if status is None or status.state != "committed":
            state = "gone" if status is None else status.state
            raise JobFailed(
                f"{self.endpoint}: import {import_id} is {state}, not committed; re-run the job"
            )
        snapshot_id = status.committed_snapshot_id
        if info.role == "backup" and snapshot_id is not None:
            # What the backup canister stores and will serve back, hashed by it.
            ticket = await self.call(
                "icrp_export_status",
                lambda: self.client.export_status(snapshot_id),
            )
            return _ticket_digest(ticket, self.endpoint)
        return await self._restored_digest(status)

    async def _restored_digest(self, status: ImportStatus) -> bytes:
        """The digest an app exports after the commit: the end-to-end check of a restore.

        The rebuilt state must serialise to the very image that was imported,
        as long as nothing changed it since (its journal head is still the
        image's) and it cuts images into the same chunks; otherwise only the
        digest the target verified at commit is checked.
        """
        current = await self._current_ticket()
        if current.chunk_size != status.chunk_size:
            self.ctx.note(
                f"{self.endpoint} exports in chunks of {current.chunk_size:,} bytes, the image "
                f"had {status.chunk_size:,}: the digest it checked at commit stands"
            )
            return status.digest
        if self._journal_seq is not None and current.journal_seq == self._journal_seq:
            return _ticket_digest(current, self.endpoint)
        self.ctx.note(
            f"{self.endpoint} changed since the restore; the digest it checked at commit stands"
        )
        return status.digest

    async def _stored(self, image: ImageInfo) -> bytes | None:
        images = await self.call("icrp_list_images", self.client.list_images, cost="query")
        for ticket in images:
            if ticket.digest == image.digest and ticket.chunk_size == image.chunk_size:
                return ticket.digest
        return None

    async def _newest_digest(self) -> bytes:
        images = await self.call("icrp_list_images", self.client.list_images, cost="query")
        if not images:
            raise JobFailed(f"{self.endpoint} holds no image yet: run a backup first")
        return _ticket_digest(images[-1], self.endpoint)

    async def _current_ticket(self) -> ExportTicket:
        ticket = await self.call("icrp_begin_export", self.client.begin_export)
        for _ in range(_MAX_STEPS):
            if ticket.ready:
                break
            ticket = await self._export_status(ticket.snapshot_id)
        return ticket

    async def _export_status(self, snapshot_id: int) -> ExportTicket:
        return await self.call("icrp_export_status", lambda: self.client.export_status(snapshot_id))

    async def _import_status(self, import_id: int) -> ImportStatus | None:
        try:
            return await self.call(
                "icrp_import_status", lambda: self.client.import_status(import_id), cost="query"
            )
        except ie.NotFound:
            return None

    async def abort(self, import_id: int) -> None:
        try:
            await self.call("icrp_abort_import", lambda: self.client.abort_import(import_id))
        except ic.IcError as exc:
            log.warning("could not abort import %d on %s: %s", import_id, self.endpoint, exc)

    async def discard(self) -> None:
        return None


class CanisterWriter:
    """Relay writes: ``icrp_write`` updates in adaptive pieces (their bytes are charged
    to the bytes-per-second budget)."""

    charges_bytes = True

    def __init__(
        self, target: _Canister, import_id: int, sizer: Sizer, *, verifies_chunks: bool
    ) -> None:
        self.target = target
        self.import_id = import_id
        self.sizer = sizer
        self.verifies_chunks = verifies_chunks

    @property
    def run_bytes(self) -> int:
        return PIECES_PER_RUN * self.sizer.current

    async def write_run(self, run: Run, data: Buffer) -> None:
        await self.write_at(run.offset, data)

    async def write_at(self, offset: int, data: Buffer) -> None:
        view = memoryview(data)

        async def write(at: int, length: int) -> None:
            piece = view[at - offset : at - offset + length]
            await self._write(
                at, length, lambda: self.target.client.write(self.import_id, at, piece)
            )

        await self.sizer.sized(offset, len(view), write)

    def forwarder(self, reader: PieceReader) -> Step | None:
        """Pieces read with ``icrp_read_for_write`` and written as they came, where the
        source answers so; a piece the source refuses, or larger than this writer's
        transfer size, goes the plain way (read, then :meth:`write_at`)."""
        if not isinstance(reader, CanisterReader) or not reader.forwards:
            return None

        async def step(at: int, size: int) -> None:
            arg = None
            if size <= self.sizer.current and reader.forwards:
                arg = await reader.read_for_write(self.import_id, at, size)
            if arg is None:
                await self.write_at(at, await reader.read_at(at, size))
                return
            await self._write(at, size, self._forwarding(reader, arg, at, size))

        return step

    def _forwarding(
        self, reader: CanisterReader, arg: WriteArg, at: int, size: int
    ) -> Callable[[], Awaitable[int]]:
        """The write of a forwarded read, releasing the reply once the node has taken
        it: the relay's runs would otherwise hold every reply in flight until its
        write is certified (32 runs: 64 MiB, each page of it faulted in afresh by a
        process's first backup).  An attempt after one that sent it reads it again."""
        unsent = [arg]

        async def write() -> int:
            taken = unsent.pop() if unsent else await reader.read_again(self.import_id, at, size)
            try:
                return await self.target.client.write_arg(taken, release=True)
            except BaseException:
                if not taken.released:  # failed before the node took it: still usable
                    unsent.append(taken)
                raise

        return write

    async def _write(self, at: int, size: int, perform: Callable[[], Awaitable[int]]) -> None:
        try:
            await self.target.call("icrp_write", perform, nbytes=size)
        except ie.DigestMismatch as exc:
            raise _bad_chunk(self.target, exc) from exc

    async def flush(self) -> None:
        return None  # an acknowledged icrp_write is durable in the canister


# -------------------------------------------------------------------- helpers


def _bad_chunk(target: _Canister, exc: ie.DigestMismatch) -> IntegrityError:
    """The target refused a relayed chunk: what the source served is not what it published."""
    which = "a chunk" if exc.chunk is None else f"chunk {exc.chunk}"
    return IntegrityError(
        f"{which} read from the source hashes to {exc.actual.hex()}, but the source published "
        f"{exc.expected.hex()}: {target.endpoint} checked it and refused it, so nothing bad was "
        "kept. Re-run the job; if it happens again the source image is damaged"
    )


def _same(status: ImportStatus, image: ImageInfo, origin: Principal) -> bool:
    return (
        status.source == origin
        and status.snapshot_id == image.snapshot_id
        and status.size == image.size
        and status.chunk_size == image.chunk_size
        and status.digest == image.digest
    )


def _digest(image: ImageInfo) -> bytes:
    if image.digest is None:
        raise ValueError(f"snapshot {image.snapshot_id} has no digest yet")
    return image.digest


def _ticket_digest(ticket: ExportTicket, where: CanisterRef) -> bytes:
    if ticket.digest is None:
        raise ic.ProtocolError(f"{where}: snapshot {ticket.snapshot_id} has no digest")
    return ticket.digest


def _short(image: ImageInfo) -> str:
    return "unknown" if image.digest is None else image.digest.hex()[:16]
