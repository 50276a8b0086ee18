"""Performs the steps of the snapshot kinds (:mod:`replicator.flows.snapshot.machine`).

Every step may be taken again by a later run (the machine records a step
before it is taken), so each one first looks at what the IC and the
repository hold — they, not the checkpoint, are the truth:

- a snapshot an earlier run took is found by its id, or, if the run died
  inside ``take_canister_snapshot``, as the one snapshot that was not there
  before; one that is gone is taken again (and the progress made on it
  discarded);
- a canister the checkpoint says we stopped, and that is still stopped, is
  started again;
- chunks the checkpoint says are stored are touched in the repository (so a
  concurrent prune spares them); any that are missing are read again;
- a manifest of the same IC snapshot already in the repository is adopted,
  not written twice; an uploaded snapshot that is gone is uploaded again.

A run that ends without finishing (failed, cancelled) starts again every
canister it stopped and did not start (``close``); a run that died leaves
the record for the next one.  Who may do what is checked before anything
changes: a backup needs a controller (it stops, takes and deletes) or a
snapshot viewer (``snapshot_visibility``: it then stores an existing
snapshot as it is); a restore or copy needs a controller of the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from canister_iface import errors as ic
from canister_iface.management_types import (
    SNAPSHOT_MEMORIES,
    CanisterStatus,
    Snapshot,
    SnapshotMemory,
    SnapshotMetadata,
)
from replicator.chunkbook import ChunkBook
from replicator.chunking import Path as TransferPath
from replicator.errors import (
    AccessDeniedError,
    IntegrityError,
    JobFailed,
    NotIcrpError,
    UsageError,
)
from replicator.flow import RunContext, RunReport
from replicator.flows.snapshot.ic import (
    MAX_SNAPSHOTS,
    SnapshotCanister,
    hex_id,
    snapshot_gone,
)
from replicator.flows.snapshot.layout import Layout
from replicator.flows.snapshot.machine import (
    BACKUP,
    COPY,
    RESTORE,
    Done,
    Facts,
    Perform,
    facts_of,
    merged,
)
from replicator.flows.snapshot.metrics import SnapshotMetrics
from replicator.flows.snapshot.movers import (
    ROUTE,
    RepositoryReader,
    SliceReader,
    SliceWriter,
    StoreMover,
    StreamMover,
)
from replicator.job import ArchiveRef, CanisterRef, JobState
from replicator.pump import Mover, Pump, RelayMover
from replicator.repository import (
    ChunkRef,
    ManifestBuilder,
    Repository,
    RepositoryFull,
    RepositoryNotFound,
    StoredManifest,
)

log = logging.getLogger(__name__)

# Copies between canisters ack whole IC slices (no repository chunks to match).
COPY_CHUNK = 2_000_000
_IN_FLIGHT_NOTE = (
    "taken from the running canister (--no-stop): the snapshot holds its state between two "
    "messages, including calls it made and had no reply to yet; a canister restored from it "
    "waits for those replies for ever, or gets replies its restored state does not expect. "
    "Stop it first (the default) for a snapshot without calls in flight"
)


class SnapshotSlotsFull(JobFailed):
    """The canister already has the IC's maximum of snapshots, none of them ours."""


class SnapshotPerformer:
    """One run of a snapshot job (see the module docstring)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.job = ctx.job
        self.kind = ctx.job.kind
        self.metrics = ctx.metrics.extension(SnapshotMetrics)
        self.source = _side(ctx, ctx.job.source)
        self.target = _side(ctx, ctx.job.target)
        self.repo_path = _repo_path(ctx)
        self._repo: Repository | None = None
        self._stored: StoredManifest | None = None
        self._builder: ManifestBuilder | None = None
        # canisters this run stopped and has not started: id → (side, wall time of the stop)
        self._stopped: dict[str, tuple[SnapshotCanister, float]] = {}
        self.bytes_copied = 0
        self.chunks_copied = 0
        self.chunks_skipped = 0
        self.moved = False
        # The new snapshot's metadata, read while the source is being started again.
        self._metadata: dict[bytes, asyncio.Task[SnapshotMetadata]] = {}

    # ------------------------------------------------------------ dispatch

    async def perform(self, effect: object) -> object | None:
        if not isinstance(effect, Perform):
            raise TypeError(f"not an effect of the snapshot kinds: {effect!r}")
        steps: dict[str, Callable[[Perform], Awaitable[dict[str, Any]]]] = {
            "inspect": self._inspect,
            "stop_source": self._stop_source,
            "take": self._take,
            "start_source": self._start_source,
            "store": self._store,
            "manifest": self._manifest,
            "open_upload": self._open_upload,
            "upload": self._upload,
            "verify_upload": self._verify_upload,
            "stop_target": self._stop_target,
            "load": self._load,
            "start_target": self._start_target,
            "verify_target": self._verify_target,
            "settle": self._settle,
            "cleanup": self._cleanup,
        }
        try:
            learnt = await steps[effect.step](effect)
        except RepositoryFull:
            self.metrics.refusals.labels("repository_full").inc()
            raise
        return Done(effect.step, learnt)

    def note(self, text: str) -> None:
        self.ctx.note(text)

    # -------------------------------------------------------------- inspect

    async def _inspect(self, effect: Perform) -> dict[str, Any]:
        facts, resumed = dict(effect.facts), effect.resumed_from
        learnt: dict[str, Any] = {}
        if self.kind == RESTORE:
            learnt |= await self._inspect_restore(facts)
        else:
            learnt |= await self._inspect_source(facts, resumed)
        if self.kind in (RESTORE, COPY):
            learnt |= await self._inspect_target(merged(facts, learnt), resumed)
        return learnt

    async def _inspect_source(self, facts: Facts, resumed: str | None) -> dict[str, Any]:
        side = _need(self.source)
        # Three calls at once: under mainnet latency each costs a second or two.
        controllers, on_chain, status = await _together(
            side.controllers(), self._snapshots_or_refuse(side), _status_or_none(side)
        )
        controller = side.me in controllers
        ids = {hex_id(s.id): s for s in on_chain}
        learnt = self._earlier_snapshot(facts, ids, resumed)
        facts = merged(facts, learnt)
        learnt |= self._asked_snapshot(facts, ids)
        facts = merged(facts, learnt)
        if not controller:
            return learnt | self._as_viewer(side, facts, on_chain)
        if facts.get("ic_snapshot") is None or facts.get("source_stopped"):
            learnt |= self._source_status(side, _status(side, status), facts, resumed)
        if facts.get("ic_snapshot") is None:
            learnt |= self._slot(side, on_chain, facts)
        return learnt

    async def _snapshots_or_refuse(self, side: SnapshotCanister) -> list[Snapshot]:
        try:
            return await side.snapshots()
        except ic.AccessDenied as exc:
            self.metrics.refusals.labels("access_denied").inc()
            raise AccessDeniedError(
                f"{side.me} neither controls {side} nor may read its snapshots ({exc.message}); "
                "use a controller identity, or have a controller add this one to the canister's "
                "snapshot_visibility (allowed_viewers) for backups; nothing was taken"
            ) from exc

    def _earlier_snapshot(
        self, facts: Facts, ids: Mapping[str, Snapshot], resumed: str | None
    ) -> dict[str, Any]:
        """What became of the snapshot an earlier run took or was taking."""
        current = facts.get("ic_snapshot")
        if current is not None and current not in ids:
            if facts.get("manifest") or facts.get("loaded"):
                return {"ic_snapshot_gone": True}  # no longer needed: nothing to clean up
            self.note(f"the IC snapshot {current} an earlier run took is gone: taking a new one")
            return _forget_snapshot()
        before = facts.get("before")
        if current is None and resumed == "take" and before is not None:
            new = [sid for sid in ids if sid not in before]
            if len(new) == 1:
                self.note(f"adopting snapshot {new[0]}, which the interrupted run took")
                return {
                    "ic_snapshot": new[0],
                    "ic_snapshot_ours": True,
                    "taken_at": ids[new[0]].taken_at_timestamp,
                }
        return {}

    def _asked_snapshot(self, facts: Facts, ids: Mapping[str, Snapshot]) -> dict[str, Any]:
        asked = self.job.options.get("ic_snapshot")
        if asked is None or facts.get("ic_snapshot") == asked:
            return {}
        if not isinstance(asked, str) or asked.lower() not in ids:
            held = ", ".join(ids) or "none"
            raise UsageError(
                f"{self.job.source} has no snapshot {asked!r} (it has: {held}); list them with "
                "`icp canister snapshot list`, or leave the option out to take a new one"
            )
        return {"ic_snapshot": asked.lower(), "ic_snapshot_ours": False}

    def _as_viewer(
        self, side: SnapshotCanister, facts: Facts, on_chain: Sequence[Snapshot]
    ) -> dict[str, Any]:
        if self.kind == COPY:
            self.metrics.refusals.labels("access_denied").inc()
            raise AccessDeniedError(
                f"copying {side} needs a controller of it (this identity, {side.me}, may only "
                "read its snapshots); use a controller identity; nothing was taken"
            )
        if facts.get("ic_snapshot") is not None:
            return {"viewer": True}
        if not on_chain:
            self.metrics.refusals.labels("access_denied").inc()
            raise AccessDeniedError(
                f"{side.me} may read the snapshots of {side} but not take one (it is a snapshot "
                f"viewer, not a controller), and {side} has none: a controller must take one "
                "first, or run the backup with a controller identity; nothing was taken"
            )
        newest = on_chain[-1]
        self.note(
            f"{side.me} is a snapshot viewer of {side}, not a controller: storing its newest "
            f"snapshot {hex_id(newest.id)} (taken at {_when(newest.taken_at_timestamp)}) "
            "as it is, without stopping the canister or deleting the snapshot"
        )
        return {
            "viewer": True,
            "ic_snapshot": hex_id(newest.id),
            "ic_snapshot_ours": False,
            "taken_at": newest.taken_at_timestamp,
        }

    def _source_status(
        self, side: SnapshotCanister, status: CanisterStatus, facts: Facts, resumed: str | None
    ) -> dict[str, Any]:
        stopped = status.status == "stopped"
        learnt: dict[str, Any] = {}
        # We stopped it if a run recorded so (or was stopping it) and it still is.
        ours = bool(facts.get("source_stopped")) or (
            bool(facts.get("source_running")) and resumed in ("stop_source", "take")
        )
        if stopped and ours:
            self.note(f"{side} is still stopped by an earlier run of this job: it is started again")
            learnt["source_stopped"] = True
            self._stopped[side.ref.canister_id] = (side, float(facts.get("stopped_at") or 0))
            self.metrics.stopped()
        elif facts.get("source_stopped"):
            learnt["source_stopped"] = None  # someone (our failed run's close) started it
        if facts.get("ic_snapshot") is None:
            if status.module_hash is None:
                raise NotIcrpError(
                    f"{side} has no code installed: there is nothing to snapshot; check the "
                    "canister id; nothing was taken"
                )
            if not (stopped and ours):
                learnt["source_running"] = not stopped
        return learnt

    def _slot(
        self, side: SnapshotCanister, on_chain: Sequence[Snapshot], facts: Facts
    ) -> dict[str, Any]:
        """Room for the new snapshot: a free slot, or the oldest of ours to replace."""
        learnt: dict[str, Any] = {}
        if facts.get("before") is None:
            learnt["before"] = sorted(hex_id(s.id) for s in on_chain)
        if len(on_chain) < MAX_SNAPSHOTS:
            return learnt | {"replace": None}
        ours = self._ours(side, on_chain)
        if not ours:
            self.metrics.refusals.labels("slots_full").inc()
            raise SnapshotSlotsFull(
                f"{side} already has {len(on_chain)} snapshots, the most the IC keeps, and none "
                "of them was taken by ic-replicator into this repository, so none is replaced: "
                "delete one you no longer need (`icp canister snapshot delete`), then re-run; "
                "nothing was stopped, taken or deleted"
            )
        oldest = ours[0]
        self.note(
            f"{side} has {len(on_chain)} snapshots, the most the IC keeps: replacing the oldest "
            f"one ic-replicator took, {hex_id(oldest.id)} (taken at "
            f"{_when(oldest.taken_at_timestamp)}, stored in {self.repo_path})"
        )
        return learnt | {"replace": hex_id(oldest.id)}

    def _ours(self, side: SnapshotCanister, on_chain: Sequence[Snapshot]) -> list[Snapshot]:
        """Snapshots this repository holds a manifest of, oldest first (none without one)."""
        if self.repo_path is None or not (Path(self.repo_path) / "config.json").exists():
            return []
        repo = self.repo
        stored = {
            s.manifest.ic_snapshot_id
            for s in repo.manifests(
                side.ref.canister_id, network=side.ref.network, skip_unreadable=True
            )
        }
        return [s for s in on_chain if s.id in stored]

    async def _inspect_restore(self, facts: Facts) -> dict[str, Any]:
        stored = await self._load_stored()
        learnt: dict[str, Any] = {}
        if facts.get("restoring") not in (None, stored.id):
            self.note(
                f"the unfinished restore was of snapshot {str(facts['restoring'])[:12]}, this one "
                f"is of {stored.short_id}: starting over"
            )
            await self.ctx.reset_chunks()
            learnt |= _forget_upload() | {"restoring": None}
        learnt["restoring"] = stored.id
        if not (facts.get("uploaded") or facts.get("loaded")):
            await asyncio.to_thread(self.repo.ensure_restorable, stored)
        m = stored.manifest
        learnt["chunk_size"] = m.chunk_size
        learnt["chunks_total"] = Layout.of(m.metadata, m.chunk_size).total_chunks
        return learnt

    async def _inspect_target(self, facts: Facts, resumed: str | None) -> dict[str, Any]:
        side = _need(self.target)
        if side.me not in await side.controllers():
            self.metrics.refusals.labels("access_denied").inc()
            raise AccessDeniedError(
                f"{'restoring' if self.kind == RESTORE else 'copying'} into {side} needs a "
                f"controller of it, and this identity ({side.me}) is not one (a snapshot viewer "
                "may back snapshots up, but only a controller can load one); use a controller "
                "identity; nothing was changed"
            )
        status = await side.status()
        learnt: dict[str, Any] = {}
        if not facts.get("loaded"):
            learnt["target_running"] = status.status != "stopped"
            if self._stored is not None:
                _check_fits(side, status, self._stored.manifest.metadata)
        on_chain = await side.snapshots()
        learnt |= self._earlier_upload(facts, {hex_id(s.id): s for s in on_chain}, resumed)
        facts = merged(facts, learnt)
        if facts.get("target_before") is None:
            learnt["target_before"] = sorted(hex_id(s.id) for s in on_chain)
        uploads = self.kind == RESTORE or not facts.get("same_subnet")
        if uploads and not facts.get("upload_snapshot") and len(on_chain) >= MAX_SNAPSHOTS:
            self.metrics.refusals.labels("slots_full").inc()
            raise SnapshotSlotsFull(
                f"{side} already has {len(on_chain)} snapshots, the most the IC keeps, so none "
                "can be uploaded to it: delete one you no longer need, then re-run; nothing "
                "was changed"
            )
        if self.kind == COPY and "same_subnet" not in facts:
            learnt["same_subnet"] = await self._same_subnet()
        return learnt

    def _earlier_upload(
        self, facts: Facts, ids: Mapping[str, Snapshot], resumed: str | None
    ) -> dict[str, Any]:
        current = facts.get("upload_snapshot")
        if facts.get("loaded"):
            return {"upload_gone": True} if current is not None and current not in ids else {}
        if current is not None and current not in ids:
            self.note(f"the snapshot uploaded to {self.job.target} is gone: uploading again")
            return _forget_upload()
        before = facts.get("target_before")
        if current is None and resumed == "open_upload" and before is not None:
            new = [sid for sid in ids if sid not in before]
            if len(new) == 1:
                self.note(f"adopting snapshot {new[0]}, which the interrupted run uploaded")
                return {"upload_snapshot": new[0]}
        return {}

    async def _same_subnet(self) -> bool:
        source, target = _need(self.source), _need(self.target)
        via = self.job.options.get("via")
        if via == "relay":
            return False
        same = await source.subnet() == await target.subnet()
        if via == "direct" and not same:
            raise UsageError(
                f"--via direct loads the snapshot of {source} straight into {target}, which "
                "the IC allows only on one subnet, and they are on two: leave --via out "
                "(the copy then streams through this machine); nothing was changed"
            )
        return same

    # ------------------------------------------------------------ the source

    async def _stop_source(self, effect: Perform) -> dict[str, Any]:
        side = _need(self.source)
        at = await self._stop(side)
        self.note(f"stopped {side} for the snapshot")
        return {"source_stopped": True, "stopped_at": at}

    async def _take(self, effect: Perform) -> dict[str, Any]:
        side = _need(self.source)
        replace = effect.facts.get("replace")
        try:
            snap = await side.take(None if replace is None else bytes.fromhex(replace))
        except ic.CanisterReject as exc:
            if "maximum number of snapshots" not in exc.message:
                raise
            self.metrics.refusals.labels("slots_full").inc()
            raise SnapshotSlotsFull(
                f"{side} refused a new snapshot: {exc.message}; delete one you no longer need, "
                "then re-run"
            ) from exc
        self._prefetch(side, snap.id)
        self.metrics.on_chain.labels("taken").inc()
        if replace is not None:
            self.metrics.on_chain.labels("replaced").inc()
        if not effect.facts.get("source_running") or effect.facts.get("source_stopped"):
            self.note(f"took snapshot {hex_id(snap.id)} of {side}")
        else:
            self.note(f"took snapshot {hex_id(snap.id)} of {side}, {_IN_FLIGHT_NOTE}")
        return {
            "ic_snapshot": hex_id(snap.id),
            "ic_snapshot_ours": True,
            "taken_at": snap.taken_at_timestamp,
            "replaced": replace,
            "replace": None,
            "no_stop": bool(effect.facts.get("source_running"))
            and not effect.facts.get("source_stopped"),
        }

    async def _start_source(self, effect: Perform) -> dict[str, Any]:
        side = _need(self.source)
        downtime = await self._start(side, effect.facts.get("stopped_at"))
        if downtime is not None:
            self.note(f"started {side} again: it was stopped for {downtime:.2f} s")
        return {"source_stopped": None, "downtime": downtime}

    def _prefetch(self, side: SnapshotCanister, snapshot_id: bytes) -> None:
        if snapshot_id not in self._metadata:
            self._metadata[snapshot_id] = asyncio.create_task(side.metadata(snapshot_id))

    async def _snapshot_metadata(
        self, side: SnapshotCanister, snapshot_id: bytes
    ) -> SnapshotMetadata:
        self._prefetch(side, snapshot_id)
        return await self._metadata[snapshot_id]

    async def _stop(self, side: SnapshotCanister) -> float:
        at = time.time()
        self._stopped[side.ref.canister_id] = (side, at)
        self.metrics.stopped()
        await side.stop()
        return at

    async def _start(self, side: SnapshotCanister, stopped_at: float | None) -> float | None:
        await side.start()
        self._stopped.pop(side.ref.canister_id, None)
        downtime = None if not stopped_at else time.time() - stopped_at
        self.metrics.started(self.kind, downtime)
        return downtime

    # ---------------------------------------------------------- the backup

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = _open_repository(
                self.repo_path, create=self.kind == BACKUP, note=self.note
            )
        return self._repo

    async def _store(self, effect: Perform) -> dict[str, Any]:
        builder = await self._build(effect.facts)
        summary = _counts(builder)
        self.metrics.stored.labels("new").inc(summary["bytes_new"])
        self.metrics.stored.labels("written").inc(summary["stored_new"])
        return {"stored": True, "chunk_size": builder.chunk_size} | summary

    async def _build(self, facts: Facts) -> ManifestBuilder:
        """Every chunk of the snapshot in the repository; the builder of its manifest."""
        if self._builder is not None:
            return self._builder
        repo = self.repo
        side = _need(self.source)
        sid = bytes.fromhex(facts["ic_snapshot"])
        metadata = await self._snapshot_metadata(side, sid)
        chunk_size = repo.chunk_size
        if facts.get("chunk_size") not in (None, chunk_size):
            await self.ctx.reset_chunks()  # another chunk size: the acks do not fit
        layout = Layout.of(metadata, chunk_size)
        tags = _tags(self.job.options.get("tags"))
        builder = ManifestBuilder(
            canister=side.ref.canister_id,
            network=side.ref.network,
            metadata=metadata,
            chunk_size=chunk_size,
            ic_snapshot_id=sid,
            tags=tags,
        )
        acked = await self._still_stored(layout)
        self.ctx.total(layout.memory_bytes, _acked_bytes(layout, acked))
        # The memories at once: no worker idles while the last runs of one finish.
        await _together(
            *(
                self._store_memory(side, sid, memory, layout, builder, acked)
                for memory in SNAPSHOT_MEMORIES
            )
        )
        for chunk_hash in metadata.wasm_chunk_store:
            data = await side.read_wasm_chunk(sid, chunk_hash)
            builder.add_wasm_chunk(await asyncio.to_thread(repo.put_chunk, data))
        self._builder = builder
        return builder

    async def _still_stored(self, layout: Layout) -> dict[int, bytes]:
        """The acknowledged chunks the repository still holds (touched: prune spares them)."""
        acked = {i: d for i, d in self.ctx.acked.items() if i < layout.wasm_base}
        missing = set(await asyncio.to_thread(self.repo.keep, set(acked.values())))
        if missing:
            self.note(
                f"{len(missing)} chunks stored by an earlier run are gone: reading them again"
            )
        return {i: d for i, d in acked.items() if d not in missing}

    async def _store_memory(
        self,
        side: SnapshotCanister,
        sid: bytes,
        memory: SnapshotMemory,
        layout: Layout,
        builder: ManifestBuilder,
        acked: Mapping[int, bytes],
    ) -> None:
        local = layout.local(acked, memory)
        image = layout.image(memory)
        for index, digest in local.items():
            length = _span(image.size, layout.chunk_size, index)
            builder.add(memory, index, ChunkRef(digest, length, 0, new=False))
        self.chunks_skipped += len(local)
        sizer = self.ctx.calls.sizer_for(TransferPath.SNAPSHOT, None)
        reader = SliceReader(side, sid, memory, sizer, on_read=self._read_counter())

        def stored(index: int, ref: ChunkRef) -> None:
            builder.add(memory, index, ref)
            if not ref.new:
                self.metrics.stored.labels("dedup").inc(ref.size)

        mover = StoreMover(reader, self.repo, layout.chunk_size, stored)
        await self._pump(layout, memory, local, mover)

    async def _manifest(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.source)
        repo = self.repo
        sid = bytes.fromhex(facts["ic_snapshot"])
        found = await asyncio.to_thread(
            repo.find,
            canister=side.ref.canister_id,
            network=side.ref.network,
            ic_snapshot_id=sid,
        )
        if found is None:
            builder = await self._build(facts)
            found = await asyncio.to_thread(repo.write_manifest, builder.build())
            self.note(f"stored snapshot {found.short_id} of {side} in {repo.location}")
        else:
            self.note(f"the repository already holds this snapshot as {found.short_id}")
        return {"manifest": found.id}

    # ---------------------------------------------------------- the upload

    async def _load_stored(self) -> StoredManifest:
        if self._stored is None:
            snapshot = self.job.options.get("snapshot")
            if not isinstance(snapshot, str):
                raise UsageError("a snapshot restore needs the snapshot's id (option snapshot)")
            self._stored = await asyncio.to_thread(self.repo.load_manifest, snapshot)
        return self._stored

    async def _source_metadata(self, facts: Facts) -> SnapshotMetadata:
        side = _need(self.source)
        return await self._snapshot_metadata(side, bytes.fromhex(facts["ic_snapshot"]))

    async def _open_upload(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.target)
        if self.kind == RESTORE:
            metadata = (await self._load_stored()).manifest.metadata
        else:
            metadata = await self._source_metadata(facts)
            _check_fits(side, await side.status(), metadata)
        new = await side.upload_metadata(metadata.for_upload(), None)
        self.note(f"uploading into snapshot {hex_id(new)} of {side}")
        return {"upload_snapshot": hex_id(new)}

    async def _upload(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.target)
        usid = bytes.fromhex(facts["upload_snapshot"])
        if self.kind == RESTORE:
            stored = await self._load_stored()
            metadata, chunk_size = stored.manifest.metadata, stored.manifest.chunk_size
        else:
            metadata, chunk_size = await self._source_metadata(facts), COPY_CHUNK
        layout = Layout.of(metadata, chunk_size)
        acked = {i: d for i, d in self.ctx.acked.items() if i < layout.wasm_base}
        self.ctx.total(layout.memory_bytes, _acked_bytes(layout, acked))
        uploads = []
        for memory in SNAPSHOT_MEMORIES:
            local = layout.local(acked, memory)
            self.chunks_skipped += len(local)
            writer = SliceWriter(side, usid, memory, self._sizer())
            mover = StreamMover(self._reader(facts, memory, layout), writer, chunk_size)
            uploads.append(self._pump(layout, memory, local, mover))
        await _together(*uploads)
        for data in await self._wasm_chunks(facts, metadata):
            await side.upload_wasm_chunk(usid, data)
        return {"uploaded": True, "chunk_size": chunk_size, "chunks_total": layout.total_chunks}

    def _reader(self, facts: Facts, memory: SnapshotMemory, layout: Layout) -> Any:
        if self.kind == RESTORE:
            assert self._stored is not None
            return RepositoryReader(self.repo, self._stored.manifest, memory, layout.chunk_size)
        sid = bytes.fromhex(facts["ic_snapshot"])
        return SliceReader(_need(self.source), sid, memory, self._sizer(), self._read_counter())

    async def _wasm_chunks(self, facts: Facts, metadata: SnapshotMetadata) -> list[bytes]:
        if self.kind == RESTORE:
            assert self._stored is not None
            m = self._stored.manifest
            return [
                d for _, d in await asyncio.to_thread(lambda: list(self.repo.iter_wasm_chunks(m)))
            ]
        side = _need(self.source)
        sid = bytes.fromhex(facts["ic_snapshot"])
        return [await side.read_wasm_chunk(sid, h) for h in metadata.wasm_chunk_store]

    async def _verify_upload(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.target)
        usid = bytes.fromhex(facts["upload_snapshot"])
        if self.kind == RESTORE:
            stored = await self._load_stored()
            expected_meta, chunk_size = stored.manifest.metadata, stored.manifest.chunk_size
        else:
            expected_meta, chunk_size = await self._source_metadata(facts), COPY_CHUNK
        layout = Layout.of(expected_meta, chunk_size)
        got = await side.metadata(usid)
        _same_metadata(side, expected_meta, got)
        for memory in SNAPSHOT_MEMORIES:
            expected = self._expected(memory, layout)
            image = layout.image(memory)
            reader = SliceReader(side, usid, memory, self._sizer())
            mover = RelayMover(
                reader, None, image, expected, describe=f"the snapshot uploaded to {side}"
            )
            book = ChunkBook.for_image(image)

            async def no_ack(acks: Sequence[tuple[int, bytes]]) -> None:
                del acks

            def checked(nbytes: int, nchunks: int) -> None:
                del nchunks
                self.metrics.verified.labels(self.kind).inc(nbytes)

            await Pump(
                image,
                book,
                mover,
                ack=no_ack,
                advanced=checked,
                concurrency=self.ctx.settings.concurrency,
            ).run()
        self.note(f"re-read the snapshot uploaded to {side}: every chunk matches")
        return {"upload_verified": True}

    def _expected(self, memory: SnapshotMemory, layout: Layout) -> Sequence[bytes]:
        if self.kind == RESTORE:
            assert self._stored is not None
            return self._stored.manifest.memory(memory).chunks
        local = layout.local(self.ctx.acked, memory)
        if len(local) != layout.count(memory):
            raise IntegrityError(
                f"the checkpoint lacks digests of {layout.count(memory) - len(local)} chunks of "
                f"{memory} copied to {self.job.target}: start a new copy"
            )
        return [local[i] for i in range(layout.count(memory))]

    # ----------------------------------------------------------- the target

    async def _stop_target(self, effect: Perform) -> dict[str, Any]:
        side = _need(self.target)
        if self.kind == COPY and effect.facts.get("same_subnet"):
            _check_fits(side, await side.status(), await self._source_metadata(effect.facts))
        at = await self._stop(side)
        self.note(f"stopped {side} to load the snapshot")
        return {"target_stopped_at": at, "target_running": None}

    async def _load(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.target)
        if self.kind == COPY and facts.get("same_subnet"):
            sid = bytes.fromhex(facts["ic_snapshot"])
            self.note(
                f"{self.job.source} and {side} share a subnet: loading the snapshot straight "
                "into it (no bytes leave the IC)"
            )
        else:
            sid = bytes.fromhex(facts["upload_snapshot"])
        await side.load(sid)
        self.moved = True
        return {"loaded": True}

    async def _start_target(self, effect: Perform) -> dict[str, Any]:
        side = _need(self.target)
        downtime = await self._start(side, effect.facts.get("target_stopped_at"))
        if downtime is not None:
            self.note(f"started {side}: it was stopped for {downtime:.2f} s")
        return {"target_started": True, "target_downtime": downtime}

    async def _verify_target(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        side = _need(self.target)
        if self.kind == RESTORE:
            metadata = (await self._load_stored()).manifest.metadata
            module = await asyncio.to_thread(self._stored_module)
        else:
            metadata = await self._source_metadata(facts)
            src = _need(self.source)
            sid = bytes.fromhex(facts["ic_snapshot"])
            module = await src.mgmt.read_snapshot_memory(
                src.principal, sid, "wasm_module", size=metadata.wasm_module_size
            )
        expected = hashlib.sha256(module).digest()
        certified = await side.module_hash()
        if certified != expected:
            shown = "none" if certified is None else certified.hex()
            raise IntegrityError(
                f"{side} runs module {shown} after the load, but the snapshot's module hashes to "
                f"{expected.hex()} (certified read_state); the load did not take"
            )
        _check_sizes(side, await side.status(), metadata)
        self.note(f"{side} runs the snapshot's module {expected.hex()} (certified)")
        return {"verified": True, "module_hash": expected.hex()}

    def _stored_module(self) -> bytes:
        assert self._stored is not None
        return b"".join(d for _, d in self.repo.iter_part(self._stored.manifest, "wasm_module"))

    async def _settle(self, effect: Perform) -> dict[str, Any]:
        del effect
        side = _need(self.target)
        provisioner = self.ctx.provisioner_for(side.ref.network)
        await provisioner.settle(
            side.principal, str(self.repo_path), _created_key(self.job.options)
        )
        return {"settled": True}

    # -------------------------------------------------------------- cleanup

    async def _cleanup(self, effect: Perform) -> dict[str, Any]:
        facts = effect.facts
        keep = bool(self.job.options.get("keep_on_chain"))
        if self.kind == BACKUP or self.kind == COPY:
            await self._cleanup_source(facts, keep)
        if self.kind in (RESTORE, COPY) and facts.get("upload_snapshot"):
            await self._cleanup_upload(facts, keep)
        return {"cleaned": True}

    async def _cleanup_source(self, facts: Facts, keep: bool) -> None:
        sid = facts.get("ic_snapshot")
        if sid is None or not facts.get("ic_snapshot_ours") or facts.get("ic_snapshot_gone"):
            return
        side = _need(self.source)
        if keep:
            self.metrics.on_chain.labels("kept").inc()
            self.note(f"kept snapshot {sid} on {side} (--keep-on-chain)")
            return
        await _delete(side, bytes.fromhex(sid))
        self.metrics.on_chain.labels("deleted").inc()
        self.note(f"deleted snapshot {sid} from {side}: the repository holds it")

    async def _cleanup_upload(self, facts: Facts, keep: bool) -> None:
        side = _need(self.target)
        sid = facts["upload_snapshot"]
        if keep or facts.get("upload_gone"):
            return
        await _delete(side, bytes.fromhex(sid))
        self.metrics.on_chain.labels("deleted").inc()

    # ----------------------------------------------------------------- pump

    def _sizer(self) -> Any:
        return self.ctx.calls.sizer_for(TransferPath.SNAPSHOT, None)

    def _read_counter(self) -> Callable[[int], None]:
        counter = self.metrics.read.labels(self.kind)
        return lambda n: counter.inc(n)

    async def _pump(
        self, layout: Layout, memory: SnapshotMemory, local: Mapping[int, bytes], mover: Mover
    ) -> None:
        image = layout.image(memory)
        book = ChunkBook.for_image(image, local)
        base = layout.base(memory)

        async def ack(acks: Sequence[tuple[int, bytes]]) -> None:
            await self.ctx.ack([(base + i, d) for i, d in acks])

        def advanced(nbytes: int, nchunks: int) -> None:
            self.moved = True
            self.bytes_copied += nbytes
            self.chunks_copied += nchunks
            self.ctx.metrics.record_copied(self.kind, ROUTE, nbytes, nchunks)
            self.ctx.advanced(nbytes)

        pump = Pump(
            image,
            book,
            mover,
            ack=ack,
            advanced=advanced,
            concurrency=self.ctx.settings.concurrency,
        )
        await pump.run()

    # ------------------------------------------------------------- the end

    def report(self, state: JobState) -> RunReport:
        facts = facts_of(state)
        manifest = facts.get("manifest") or facts.get("restoring")
        details: dict[str, Any] = {
            "snapshot": manifest,
            "ic_snapshot_id": facts.get("ic_snapshot") or facts.get("upload_snapshot"),
            "repository": None if self.repo_path is None else str(self.repo_path),
            "downtime_seconds": _rounded(facts.get("downtime")),
            "target_downtime_seconds": _rounded(facts.get("target_downtime")),
            "stopped": facts.get("downtime") is not None,
            "viewer": bool(facts.get("viewer")),
            "replaced": facts.get("replaced"),
            "same_subnet": facts.get("same_subnet"),
            "module_hash": facts.get("module_hash"),
        }
        for key in ("chunks_new", "bytes_new", "stored_new", "chunks_total"):
            if key in facts:
                details[key] = facts[key]
        return RunReport(
            route=ROUTE if self.moved else None,
            bytes_copied=self.bytes_copied,
            chunks_copied=self.chunks_copied,
            chunks_skipped=self.chunks_skipped,
            digest=bytes.fromhex(manifest) if isinstance(manifest, str) else None,
            details=details,
        )

    async def close(self) -> None:
        """Start every canister this run stopped and did not start (failed, cancelled)."""
        for task in self._metadata.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for side, at in list(self._stopped.values()):
            try:
                await asyncio.shield(self._start(side, at or None))
            except (ic.IcError, JobFailed, asyncio.CancelledError) as exc:
                log.error("could not start %s again: %s", side, exc)
                self.note(
                    f"could not start {side} again ({exc}): it is STILL STOPPED; start it now "
                    f"(`icp canister start {side.ref.canister_id}`) or re-run this job"
                )
            else:
                self.note(f"started {side} again: the job stopped it and did not finish")


# ------------------------------------------------------------------ helpers


async def _together(*work: Awaitable[Any]) -> list[Any]:
    """Await every one at once; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run(w)) for w in work]
    except BaseExceptionGroup as failed:
        raise _first(failed) from None
    return [t.result() for t in tasks]


async def _run(work: Awaitable[Any]) -> Any:
    return await work


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        inner = _first(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if not isinstance(inner, asyncio.CancelledError):
            return inner
    return group.exceptions[0]


async def _status_or_none(side: SnapshotCanister) -> CanisterStatus | None:
    try:
        return await side.status()
    except ic.AccessDenied:
        return None  # not a controller: the snapshots tell what it may do


def _status(side: SnapshotCanister, status: CanisterStatus | None) -> CanisterStatus:
    if status is None:
        raise AccessDeniedError(f"{side.me} may not read the status of {side}")
    return status


def _side(ctx: RunContext, endpoint: CanisterRef | ArchiveRef | None) -> SnapshotCanister | None:
    return SnapshotCanister(endpoint, ctx.calls) if isinstance(endpoint, CanisterRef) else None


def _need(side: SnapshotCanister | None) -> SnapshotCanister:
    if side is None:
        raise UsageError("this snapshot job has no canister on that side")
    return side


def _repo_path(ctx: RunContext) -> str | None:
    for endpoint in (ctx.job.target, ctx.job.source):
        if isinstance(endpoint, ArchiveRef):
            return endpoint.path
    return None


def _open_repository(path: str | None, *, create: bool, note: Callable[[str], None]) -> Repository:
    if path is None:
        raise UsageError("this snapshot job has no repository")
    root = Path(path).expanduser()
    try:
        return Repository.open(root)
    except RepositoryNotFound:
        if not create or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
            raise
    repo = Repository.init(root)
    note(f"created a snapshot repository in {root}")
    return repo


def _forget_snapshot() -> dict[str, Any]:
    return {
        "ic_snapshot": None,
        "ic_snapshot_ours": None,
        "taken_at": None,
        "stored": None,
        "chunk_size": None,
        "uploaded": None,
        "upload_verified": None,
    }


def _forget_upload() -> dict[str, Any]:
    return {"upload_snapshot": None, "uploaded": None, "upload_verified": None}


def _tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, str):
        raise UsageError(f"option tags must be a comma-separated string, got {value!r}")
    return tuple(t.strip() for t in value.split(",") if t.strip())


def _created_key(options: Mapping[str, Any]) -> str:
    return str(options.get("created") or "")


def _counts(builder: ManifestBuilder) -> dict[str, int]:
    chunks, plain, stored = builder.new_counts
    return {"chunks_new": chunks, "bytes_new": plain, "stored_new": stored}


def _span(size: int, chunk_size: int, index: int) -> int:
    offset = index * chunk_size
    return min(chunk_size, size - offset)


def _acked_bytes(layout: Layout, acked: Mapping[int, bytes]) -> int:
    total = 0
    for memory in SNAPSHOT_MEMORIES:
        size = layout.sizes[memory]
        for index in layout.local(acked, memory):
            total += _span(size, layout.chunk_size, index)
    return total


async def _delete(side: SnapshotCanister, snapshot_id: bytes) -> None:
    try:
        await side.delete(snapshot_id)
    except ic.IcError as exc:
        if not snapshot_gone(exc):
            raise


def _check_fits(side: SnapshotCanister, status: CanisterStatus, metadata: SnapshotMetadata) -> None:
    """The target can hold the snapshot's Wasm memory (its wasm_memory_limit allows it)."""
    limit = status.settings.wasm_memory_limit
    if limit and metadata.wasm_memory_size > limit:
        raise UsageError(
            f"{side}'s Wasm memory limit is {limit:,} bytes, but the snapshot's Wasm memory "
            f"has {metadata.wasm_memory_size:,}: the canister could not run it. Raise the limit "
            "(update_settings wasm_memory_limit, e.g. `icp canister settings update "
            f"{side.ref.canister_id} --wasm-memory-limit ...`) or restore into another "
            "canister; nothing was changed"
        )


def _same_metadata(
    side: SnapshotCanister, expected: SnapshotMetadata, got: SnapshotMetadata
) -> None:
    fields = (
        "wasm_module_size",
        "wasm_memory_size",
        "stable_memory_size",
        "globals",
        "certified_data",
    )
    differ = [f for f in fields if getattr(expected, f) != getattr(got, f)]
    if set(expected.wasm_chunk_store) != set(got.wasm_chunk_store):
        differ.append("wasm_chunk_store")
    if differ:
        raise IntegrityError(
            f"the snapshot uploaded to {side} differs from the one restored in "
            f"{', '.join(differ)}; it was not loaded. Re-run the job"
        )


def _check_sizes(
    side: SnapshotCanister, status: CanisterStatus, metadata: SnapshotMetadata
) -> None:
    mm = status.memory_metrics
    if mm is None:
        return  # an older replica: the module hash was checked
    if mm.wasm_memory_size < metadata.wasm_memory_size or (
        mm.stable_memory_size < metadata.stable_memory_size
    ):
        raise IntegrityError(
            f"{side} has {mm.wasm_memory_size:,} bytes of Wasm memory and "
            f"{mm.stable_memory_size:,} of stable memory after the load, less than the "
            f"snapshot's {metadata.wasm_memory_size:,} and {metadata.stable_memory_size:,}"
        )


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def _rounded(value: object) -> float | None:
    return round(float(value), 3) if isinstance(value, int | float) else None
