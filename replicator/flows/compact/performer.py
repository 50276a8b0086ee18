"""Performs the steps of the compact machine (:mod:`replicator.flows.compact.machine`).

Every call goes through the engine's call runner (limits, retries,
metrics); images move on the relay path in pieces of at most
``PIECE_BYTES``, and an import that already holds some chunks (a resumed
step) gets only the missing ones (``icrp_import_status``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import (
    Config,
    ExportTicket,
    Fence,
    ImportSpec,
    KeyRange,
    RangeDigest,
    Route,
    Routing,
)
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator.calls import CallCost
from replicator.errors import EXIT_INTEGRITY, JobFailed
from replicator.flow import RunContext, RunReport
from replicator.flows.compact.machine import FENCED_STEPS, DigestDiffers, Perform, StepDone
from replicator.flows.compact.metrics import CompactMetrics
from replicator.flows.modules import module_of
from replicator.job import CanisterRef, JobState, Phase
from replicator.service import current_job

T = TypeVar("T")
PIECE_BYTES = 1_000_000  # fits an ingress message with room for the envelope
DELETE_RECORDS = 10_000  # records per icrp_delete_range call (stays within the instruction limit)
NEW_KEY = "compact-new"  # the registry's name of the new canister (under the old one)


class CompactPerformer:
    """One run of a compact job."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        job = ctx.job
        if not isinstance(job.source, CanisterRef) or not isinstance(job.target, CanisterRef):
            raise JobFailed(f"a compact job needs a canister and a backup canister, not {job}")
        # The target: the backup canister (in place) or the new canister (--new-canister).
        self.canister, self.backup = job.source, job.target
        self.new_canister = bool(job.options.get("new_canister"))
        self.agent = ctx.calls.agent_for(self.canister.network)
        self.runner = ctx.calls.runner_for(self.canister.network)
        self.mgmt = ManagementClient(self.agent)
        self.bytes_copied = 0
        self.metrics = ctx.metrics.extension(CompactMetrics)
        # The metrics label: the config's job name under `serve`, else a fixed one
        # (a job id per command would make a series per run).
        self.name = str(job.options.get("name") or current_job.get() or "command-line")
        self.metrics.started(self.name)
        self._ended = False

    async def perform(self, effect: object) -> object | None:
        if not isinstance(effect, Perform):
            raise TypeError(f"not an effect of a compact job: {effect!r}")
        if effect.step in FENCED_STEPS and effect.step != "fence":
            # Fenced by this run or an earlier one (a resume in a new process).
            self.metrics.fenced(self.name, self.canister.canister_id)
        step = getattr(self, "_" + effect.step)
        result: object = await step(effect.detail)
        return result

    def report(self, state: JobState) -> RunReport:
        self._count(state)
        d = state.detail
        image = d.get("image") or {}
        digest = image.get("digest")
        details: dict[str, Any] = {
            "memory_before": d.get("memory_before"),
            "memory_after": d.get("memory_after"),
            "image_bytes": image.get("size"),
        }
        if self.new_canister:
            details["new_canister"] = str(self.backup)
            details["old_canister"] = str(self.canister)
            details["old_memory_after"] = d.get("old_memory_after")
            details["old_records_deleted"] = d.get("old_records_deleted")
        else:
            details["backup"] = str(self.backup)
        return RunReport(
            route="relay",
            bytes_copied=self.bytes_copied,
            digest=None if digest is None else bytes.fromhex(digest),
            details=details,
        )

    async def close(self) -> None:
        return None

    def _count(self, state: JobState) -> None:
        # report() is asked once per run, with the state the run ended in.
        if self._ended:
            return
        outcome: dict[str, str] = {
            Phase.DONE: "done",
            Phase.FAILED: "failed",
            Phase.CANCELLED: "cancelled",
        }
        if state.phase not in outcome:
            return
        self._ended = True
        ended = outcome[state.phase]
        if state.phase == Phase.FAILED and state.exit_code == EXIT_INTEGRITY:
            ended = "mismatch"
        self.metrics.ended(self.name, ended)

    # ------------------------------------------------------------------ steps

    async def _measure(self, detail: Mapping[str, Any]) -> StepDone:
        return StepDone("measure", {"memory_before": await self._memory()})

    async def _fence(self, detail: Mapping[str, Any]) -> StepDone:
        mode = await self._call(
            self.canister, "icrp_set_mode", lambda: self._mine.set_mode("read_only")
        )
        self.ctx.note(f"{self.canister} refuses writes until it is restored")
        self.metrics.fenced(self.name, self.canister.canister_id)
        found: dict[str, Any] = {"fenced_at": mode.journal_seq, "fenced_wall": time.time()}
        if not self.new_canister:
            # An image holds the app's records, not the node's settings: a reinstall
            # forgets them, the unfence gives them back.
            found["settings"] = await self._settings(self.canister)
        return StepDone("fence", found)

    async def _image(self, detail: Mapping[str, Any]) -> StepDone:
        ticket = await self._ready(self._mine, self.canister)
        image = {
            "snapshot_id": ticket.snapshot_id,
            "size": ticket.size,
            "chunk_size": ticket.chunk_size,
            "digest": (ticket.digest or b"").hex(),
            "journal_seq": ticket.journal_seq,
            # Records, bytes and their digest: what must come back, whatever the
            # chunk size of the fresh instance (its settings are the defaults).
            "records": await self._records(),
        }
        self.ctx.total(2 * ticket.size, 0)
        return StepDone("image", {"image": image})

    async def _backup(self, detail: Mapping[str, Any]) -> StepDone | DigestDiffers:
        image = detail["image"]
        ticket = await self._ready(self._mine, self.canister)  # unchanged: the canister is fenced
        if ticket.digest != bytes.fromhex(image["digest"]):
            return DigestDiffers("backup", "the canister's image changed although it is fenced")
        spec = ImportSpec.for_ticket(self._principal(self.canister), ticket)
        committed = await self._import(self._mine, self.canister, self._theirs, self.backup, spec)
        stored = await self._call(
            self.backup, "icrp_list_images", self._theirs.list_images, "query"
        )
        match = [t for t in stored if t.snapshot_id == committed and t.digest == ticket.digest]
        if not match:
            return DigestDiffers("backup", f"{self.backup} does not hold the image after commit")
        self.ctx.note(f"the image ({ticket.size:,} bytes) is verified in {self.backup}")
        return StepDone("backup", {"backup_snapshot": committed})

    async def _reinstall(self, detail: Mapping[str, Any]) -> StepDone:
        wasm = await module_of(self.ctx.calls, self.canister, self.ctx.job.options.get("wasm"))
        canister = self._principal(self.canister)
        await self._call(
            self.canister, "install_code", lambda: self.mgmt.reinstall_code(canister, wasm)
        )
        # At once: only the restore may write into the fresh instance.
        await self._call(self.canister, "icrp_set_mode", lambda: self._mine.set_mode("standby"))
        return StepDone("reinstall")

    async def _restore(self, detail: Mapping[str, Any]) -> StepDone:
        image = detail["image"]
        digest = bytes.fromhex(image["digest"])
        if await self._records() != image["records"]:  # a committed restore is not repeated
            spec = ImportSpec(
                source=self._principal(self.backup),
                snapshot_id=int(detail["backup_snapshot"]),
                size=int(image["size"]),
                chunk_size=int(image["chunk_size"]),
                digest=digest,
                journal_seq=int(image["journal_seq"]),
            )
            await self._import(self._theirs, self.backup, self._mine, self.canister, spec)
        return StepDone("restore")

    async def _check(self, detail: Mapping[str, Any]) -> StepDone | DigestDiffers:
        checked = self.backup if self.new_canister else self.canister
        wanted, restored = detail["image"]["records"], await self._records(checked)
        if restored != wanted:
            safe = (
                f"{self.canister} keeps its data and stays fenced"
                if self.new_canister
                else f"the image is safe in {self.backup}"
            )
            return DigestDiffers(
                "check",
                f"{checked} holds {restored[0]:,} records / {restored[1]:,} bytes "
                f"(digest {restored[2][:16]}…), the image {wanted[0]:,} / {wanted[1]:,} "
                f"({wanted[2][:16]}…); {safe}",
            )
        return StepDone("check")

    async def _unfence(self, detail: Mapping[str, Any]) -> StepDone:
        if "settings" in detail:  # (a job fenced by an older version did not note them)
            await self._settle(self.canister, detail["settings"], routing=True)
        await self._call(self.canister, "icrp_set_mode", lambda: self._mine.set_mode("primary"))
        self._unfenced(detail)
        return StepDone("unfence")

    async def _remeasure(self, detail: Mapping[str, Any]) -> StepDone:
        before = int(detail.get("memory_before") or 0)
        if not self.new_canister:
            after = await self._memory()
            self.ctx.note(f"memory_size {before:,} → {after:,} bytes")
            self.metrics.measured(self.name, before, after)
            return StepDone("remeasure", {"memory_after": after})
        old, new = await self._memory(), await self._memory(self.backup)
        self.ctx.note(
            f"memory_size: {self.canister} {before:,} bytes (now {old:,}), "
            f"the new canister {self.backup} {new:,} bytes"
        )
        self.metrics.measured(self.name, before, new)
        return StepDone("remeasure", {"memory_after": new, "old_memory_after": old})

    # ------------------------------------------------- into a new canister

    async def _prepare(self, detail: Mapping[str, Any]) -> StepDone:
        """The new canister in standby; the old one's settings noted for the switch."""
        fresh = self._theirs
        await self._call(self.backup, "icrp_set_mode", lambda: fresh.set_mode("standby"))
        return StepDone("prepare", {"settings": await self._settings(self.canister)})

    async def _copy(self, detail: Mapping[str, Any]) -> StepDone | DigestDiffers:
        """The old canister's image into the new canister (not repeated once committed)."""
        image = detail["image"]
        if await self._records(self.backup) == image["records"]:
            return StepDone("copy")
        ticket = await self._ready(self._mine, self.canister)  # unchanged: it is fenced
        if ticket.digest != bytes.fromhex(image["digest"]):
            return DigestDiffers("copy", "the canister's image changed although it is fenced")
        spec = ImportSpec.for_ticket(self._principal(self.canister), ticket)
        await self._import(self._mine, self.canister, self._theirs, self.backup, spec)
        self.ctx.note(f"the image ({ticket.size:,} bytes) is in {self.backup}")
        return StepDone("copy")

    async def _switch(self, detail: Mapping[str, Any]) -> StepDone:
        """The new canister takes writes; the old one routes its whole range to it."""
        old, fresh, new = self._mine, self._theirs, self._principal(self.backup)
        settings = detail["settings"]
        keys = _range_of(settings["key_range"]) or KeyRange()
        # Its key range, peers, and ranges a split moved away before (still fenced).
        await self._settle(self.backup, settings, routing=False)
        current = await self._call(self.canister, "icrp_routing", old.routing, "query")
        me = self._principal(self.canister)
        routes = tuple(Route(r.range, new) if r.canister == me else r for r in current.routes)
        if not any(r.canister == new for r in routes):
            routes = (*routes, Route(keys, new))
        table = current
        if tuple(current.routes) != routes:
            table = Routing(current.version + 1, routes)
            await self._call(self.canister, "icrp_set_routing", lambda: old.set_routing(table))
        theirs = await self._call(self.backup, "icrp_routing", fresh.routing, "query")
        if theirs != table:
            await self._call(self.backup, "icrp_set_routing", lambda: fresh.set_routing(table))
        await self._call(self.backup, "icrp_set_mode", lambda: fresh.set_mode("primary"))
        self._unfenced(detail)
        # Fenced first, primary second: the old canister never takes a write again,
        # and answers OutOfRange naming the new canister, which clients follow.
        fence = Fence(keys, new)
        await self._call(self.canister, "icrp_set_fences", lambda: old.set_fences([fence]))
        await self._call(self.canister, "icrp_set_mode", lambda: old.set_mode("primary"))
        self.ctx.note(
            f"{self.backup} takes writes; {self.canister} answers OutOfRange naming it "
            f"(routing table version {table.version})"
        )
        return StepDone("switch")

    async def _settings(self, ref: CanisterRef) -> dict[str, Any]:
        """A canister's node settings as plain values: key range, fences, peers, routing."""
        config = await self._config(ref)
        icrp = IcrpClient(self.agent, self._principal(ref))
        routing = await self._call(ref, "icrp_routing", icrp.routing, "query")
        return {
            "key_range": _range_value(config.key_range),
            "fences": [[_range_value(f.range), _text(f.owner)] for f in config.fences],
            "peers": [p.to_text() for p in config.peers],
            "routing": [
                routing.version,
                [[_range_value(r.range), r.canister.to_text()] for r in routing.routes],
            ],
        }

    async def _settle(self, ref: CanisterRef, settings: Mapping[str, Any], routing: bool) -> None:
        """``ref`` gets the ``settings`` it lacks (each compared first: resumable)."""
        icrp, config = IcrpClient(self.agent, self._principal(ref)), await self._config(ref)
        key_range = _range_of(settings["key_range"])
        if config.key_range != key_range:
            await self._call(ref, "icrp_set_key_range", lambda: icrp.set_key_range(key_range))
        fences = [_fence_of(f) for f in settings["fences"]]
        if list(config.fences) != fences:
            await self._call(ref, "icrp_set_fences", lambda: icrp.set_fences(fences))
        peers = [*config.peers]
        peers += [p for p in map(Principal.from_text, settings["peers"]) if p not in peers]
        if peers != list(config.peers):
            await self._call(ref, "icrp_set_peers", lambda: icrp.set_peers(peers))
        if routing:
            version, routes = settings["routing"]
            table = Routing(
                int(version),
                tuple(Route(_range_of(r) or KeyRange(), Principal.from_text(c)) for r, c in routes),
            )
            if await self._call(ref, "icrp_routing", icrp.routing, "query") != table:
                await self._call(ref, "icrp_set_routing", lambda: icrp.set_routing(table))

    async def _release(self, detail: Mapping[str, Any]) -> StepDone:
        deleted = 0
        if self.ctx.job.options.get("free_old"):
            deleted = await self._delete_all(self.canister)
            self.ctx.note(f"{deleted:,} records deleted from {self.canister}")
        registry = self.ctx.store.registry
        await registry.forget(self.canister.network, self.canister.canister_id, NEW_KEY)
        self.ctx.note(
            f"{self.canister} is left in place for you to delete (icp canister stop, then "
            f"delete); until then it routes every key to {self.backup}"
        )
        return StepDone("release", {"old_records_deleted": deleted})

    # ------------------------------------------------------------------ helpers

    def _unfenced(self, detail: Mapping[str, Any]) -> None:
        fenced = detail.get("fenced_wall")
        frozen = None if fenced is None else time.time() - float(fenced)
        self.metrics.unfenced(self.name, self.canister.canister_id, frozen)
        if frozen is not None:
            self.ctx.note(f"{self.canister} refused writes for {frozen:.1f} s")

    @property
    def _mine(self) -> IcrpClient:
        return IcrpClient(self.agent, self._principal(self.canister))

    @property
    def _theirs(self) -> IcrpClient:
        return IcrpClient(self.agent, self._principal(self.backup))

    @staticmethod
    def _principal(ref: CanisterRef) -> Principal:
        return Principal.from_text(ref.canister_id)

    async def _call(
        self,
        ref: CanisterRef,
        method: str,
        perform: Callable[[], Awaitable[T]],
        cost: CallCost = "update",
        nbytes: int = 0,
    ) -> T:
        return await self.runner.call(ref.canister_id, method, perform, cost=cost, nbytes=nbytes)

    async def _memory(self, ref: CanisterRef | None = None) -> int:
        ref = ref or self.canister
        canister = self._principal(ref)
        status = await self._call(
            ref, "canister_status", lambda: self.mgmt.canister_status(canister)
        )
        return status.memory_size

    async def _config(self, ref: CanisterRef) -> Config:
        icrp = IcrpClient(self.agent, self._principal(ref))
        return await self._call(ref, "icrp_config", icrp.config, "query")

    async def _delete_all(self, ref: CanisterRef) -> int:
        icrp, deleted, cursor = IcrpClient(self.agent, self._principal(ref)), 0, None
        while True:
            step = await self._call(
                ref,
                "icrp_delete_range",
                lambda c=cursor: icrp.delete_range(KeyRange(), c, DELETE_RECORDS),  # type: ignore[misc]
            )
            deleted += step.deleted
            if step.next_cursor is None:
                return deleted
            cursor = step.next_cursor

    async def _records(self, ref: CanisterRef | None = None) -> list[Any]:
        """[records, bytes, digest hex] of every key a canister holds (range digests)."""
        ref = ref or self.canister
        mine, total, cursor = IcrpClient(self.agent, self._principal(ref)), RangeDigest(), None
        while True:
            page = await self._call(ref, "icrp_range_digest", _digest_page(mine, cursor), "query")
            total += page
            if page.next_cursor is None:
                return [total.records, total.bytes, total.digest.hex()]
            cursor = page.next_cursor

    async def _ready(self, icrp: IcrpClient, ref: CanisterRef) -> ExportTicket:
        ticket = await self._call(ref, "icrp_begin_export", icrp.begin_export)
        while not ticket.ready:
            ticket = await self._call(ref, "icrp_export_status", _status(icrp, ticket.snapshot_id))
        return ticket

    async def _import(
        self,
        src: IcrpClient,
        src_ref: CanisterRef,
        dst: IcrpClient,
        dst_ref: CanisterRef,
        spec: ImportSpec,
    ) -> int | None:
        """Copy the image ``spec`` names from ``src`` into ``dst`` and commit it there."""
        import_id = await self._call(dst_ref, "icrp_begin_import", lambda: dst.begin_import(spec))
        status = await self._call(
            dst_ref, "icrp_import_status", lambda: dst.import_status(import_id), "query"
        )
        if status.state != "committed":
            await self._copy_chunks(src, src_ref, dst, dst_ref, spec, import_id, status.chunks_done)
        while True:
            state = await self._call(
                dst_ref, "icrp_commit_import", lambda: dst.commit_import(import_id)
            )
            if state.committed:
                return state.snapshot_id

    async def _copy_chunks(
        self,
        src: IcrpClient,
        src_ref: CanisterRef,
        dst: IcrpClient,
        dst_ref: CanisterRef,
        spec: ImportSpec,
        import_id: int,
        chunks_done: tuple[bool, ...],
    ) -> None:
        for index in range(len(chunks_done)):
            if chunks_done[index]:
                continue
            start = index * spec.chunk_size
            end = min(spec.size, start + spec.chunk_size)
            for offset in range(start, end, PIECE_BYTES):
                length = min(PIECE_BYTES, end - offset)
                data = await self._call(
                    src_ref,
                    "icrp_read",
                    lambda o=offset, n=length: src.read(spec.snapshot_id, o, n),  # type: ignore[misc]
                    "query",
                    length,
                )
                await self._call(
                    dst_ref,
                    "icrp_write",
                    lambda o=offset, d=data: dst.write(import_id, o, d),  # type: ignore[misc]
                    nbytes=len(data),
                )
                self.bytes_copied += len(data)
                self.ctx.advanced(len(data))
                self.metrics.moved(self.name, len(data))


def _range_value(keys: KeyRange | None) -> list[str | None] | None:
    """A key range as plain values (job detail): [lower hex, upper hex or None]."""
    if keys is None:
        return None
    return [keys.lower.hex(), None if keys.upper is None else keys.upper.hex()]


def _range_of(value: Any) -> KeyRange | None:
    if value is None:
        return None
    lower, upper = value
    return KeyRange(bytes.fromhex(lower), None if upper is None else bytes.fromhex(upper))


def _text(owner: Principal | None) -> str | None:
    return None if owner is None else owner.to_text()


def _fence_of(value: Any) -> Fence:
    keys, owner = value
    return Fence(
        _range_of(keys) or KeyRange(), None if owner is None else Principal.from_text(owner)
    )


def _status(icrp: IcrpClient, snapshot_id: int) -> Callable[[], Awaitable[ExportTicket]]:
    return lambda: icrp.export_status(snapshot_id)


def _digest_page(icrp: IcrpClient, cursor: bytes | None) -> Callable[[], Awaitable[RangeDigest]]:
    return lambda: icrp.range_digest(KeyRange(), cursor)
