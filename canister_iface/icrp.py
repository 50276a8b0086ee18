"""Typed async client of the ICRP (``canister_iface/icrp.did``) and its digests.

    icrp = IcrpClient(agent, canister_id)
    ticket = await icrp.wait_ready(await icrp.begin_export())
    data = await icrp.read(ticket.snapshot_id, 0, ticket.chunk_size)
    assert chunk_digest(data) == (await icrp.chunk_digests(ticket.snapshot_id, 0, 1))[0]

One method per method of the service, named without the ``icrp_`` prefix.
The ``err`` side of every result raises the matching
:class:`~canister_iface.icrp_errors.IcrpError`; queries are sent as queries
and updates as update calls, as the ``.did`` declares them.

Integrity (``icrp.did``, "Integrity"): an image is cut into ``chunk_size``
chunks; ``chunk digest = SHA-256(chunk)``, ``image digest = SHA-256(chunk
digest 0 ‖ chunk digest 1 ‖ …)``; an empty image has no chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from canister_iface.agent import Agent
from canister_iface.caller import Caller, ViewCaller
from canister_iface.candid_value import (
    ArgParts,
    Rec,
    as_blob,
    as_nat,
    as_rec,
    as_variant,
    as_vec,
    decode_ok,
    decode_single,
    decode_write_arg,
    encode_values,
    encode_with_blob,
)
from canister_iface.errors import CallInfo, ProtocolError
from canister_iface.icrp_errors import IcrpError, error_from_candid
from canister_iface.icrp_types import (
    METHODS,
    Backlog,
    ChangeBatch,
    CommitState,
    Config,
    DeleteProgress,
    ExportTicket,
    Fence,
    FleetMember,
    FleetPage,
    ImportSpec,
    ImportStatus,
    Info,
    KeyDistribution,
    KeyRange,
    Mode,
    ModeInfo,
    Peers,
    PeersUpdate,
    PushAck,
    PushChangesAck,
    RangeDigest,
    Record,
    RecordBatch,
    Routing,
    blobs,
    mode_to_candid,
)
from canister_iface.management_types import CanisterRef
from canister_iface.principal import Principal

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "IcrpClient",
    "IcrpError",
    "chunk_count",
    "chunk_digest",
    "image_chunk_digests",
    "image_digest",
]

DEFAULT_CHUNK_SIZE = 1024 * 1024
# icrp_chunk_digests answers at most this many digests per call.
MAX_DIGESTS_PER_CALL = 50_000
# icrp_fleet_members answers at most this many members per call.
MAX_FLEET_PAGE = 5_000


# ------------------------------------------------------------------- digests


def chunk_digest(chunk: bytes) -> bytes:
    """SHA-256 of one chunk."""
    return hashlib.sha256(chunk).digest()


def image_digest(chunk_digests: Iterable[bytes]) -> bytes:
    """SHA-256 over the ordered chunk digests (of an empty image: SHA-256 of nothing)."""
    hasher = hashlib.sha256()
    for digest in chunk_digests:
        if len(digest) != 32:
            raise ValueError(f"a chunk digest has 32 bytes, got {len(digest)}")
        hasher.update(digest)
    return hasher.digest()


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks an image of ``size`` bytes has (the last may be shorter)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return -(-size // chunk_size)


def image_chunk_digests(image: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[bytes]:
    """The chunk digests of a whole image held in memory."""
    chunk_count(len(image), chunk_size)  # validates chunk_size
    return [chunk_digest(image[i : i + chunk_size]) for i in range(0, len(image), chunk_size)]


# -------------------------------------------------------------------- client


@dataclass(frozen=True)
class WriteArg:
    """A verified ``icrp_read_for_write`` reply: ``message`` is ``icrp_write``'s argument
    (a view of the reply, with its SHA-256), ``data`` the bytes in it."""

    message: ArgParts
    data: memoryview

    @property
    def released(self) -> bool:
        try:
            _ = self.data.nbytes  # a released view refuses every operation
        except ValueError:
            return True
        return False

    def release(self) -> None:
        """Release the views of the reply (:meth:`ArgParts.release`): once no view
        of it is left, the reply's buffer is freed."""
        self.message.release()
        with contextlib.suppress(BufferError):
            self.data.release()


class IcrpClient:
    """The ICRP methods of one canister, as typed coroutines."""

    def __init__(self, agent: Caller, canister_id: CanisterRef) -> None:
        self.agent = agent
        self.canister_id = Principal.of(canister_id)
        # read_view's replies come uncopied from an agent that can hand them over so
        self._viewer = agent if isinstance(agent, ViewCaller) else None

    def __repr__(self) -> str:
        return f"IcrpClient({self.canister_id.to_text()!r})"

    # ------------------------------------------------------------------ plumbing

    async def _call(self, method: str, *args: object) -> object:
        return decode_single(await self._reply(method, *args), method)

    async def _reply(self, method: str, *args: object) -> bytes:
        kind, arg = self._arg(method, args)
        if kind == "query":
            return await self.agent.query(self.canister_id.raw, method, arg)
        return await self.agent.update(self.canister_id.raw, method, arg)

    async def _query_view(self, method: str, *args: object) -> bytes | memoryview:
        """A query's reply, uncopied where the agent can hand it over as a view."""
        _, arg = self._arg(method, args)
        if self._viewer is not None:
            return await self._viewer.query_view(self.canister_id.raw, method, arg)
        return await self.agent.query(self.canister_id.raw, method, arg)

    def _arg(self, method: str, args: tuple[object, ...]) -> tuple[str, bytes]:
        kind, types = METHODS[method]
        if len(types) != len(args):
            raise TypeError(f"{method} takes {len(types)} arguments, got {len(args)}")
        return kind, encode_values(list(zip(types, args, strict=True)))

    async def _result(self, method: str, *args: object) -> object:
        """The ``ok`` payload of a result, or the ``err`` case raised."""
        return self._ok(method, await self._call(method, *args))

    def _ok(self, method: str, value: object) -> object:
        tag, payload = as_variant(value, ("ok", "err"), method)
        if tag == "err":
            call = CallInfo(self.canister_id.to_text(), method, METHODS[method][0])
            raise error_from_candid(payload, call)
        return payload

    async def _rec(self, method: str, *args: object) -> Rec:
        return as_rec(await self._result(method, *args), f"{method}.ok")

    async def _nat(self, method: str, *args: object) -> int:
        return as_nat(await self._result(method, *args), f"{method}.ok")

    # ------------------------------------------------------------------ discovery

    async def info(self) -> Info:
        return Info.from_rec(as_rec(await self._call("icrp_info"), "icrp_info"))

    # --------------------------------------------------------------------- export

    async def begin_export(self) -> ExportTicket:
        return ExportTicket.from_rec(await self._rec("icrp_begin_export"))

    async def begin_export_at(self, journal_seq: int) -> ExportTicket:
        """An image at exactly ``journal_seq``; ``preparing`` until the head reaches it.

        ``TooOld`` (``oldest_seq`` = the head) when the canister is past it.
        """
        return ExportTicket.from_rec(await self._rec("icrp_begin_export_at", journal_seq))

    async def export_status(self, snapshot_id: int) -> ExportTicket:
        return ExportTicket.from_rec(await self._rec("icrp_export_status", snapshot_id))

    async def wait_ready(self, ticket: ExportTicket, *, max_steps: int = 100_000) -> ExportTicket:
        """Continue a preparing export (one bounded step per call) until it is ready."""
        steps = 0
        while not ticket.ready:
            if steps >= max_steps:
                raise ProtocolError(
                    f"icrp_export_status: snapshot {ticket.snapshot_id} is not ready after "
                    f"{max_steps} steps ({ticket.done_bytes:,} bytes): the canister makes no "
                    "progress"
                )
            ticket = await self.export_status(ticket.snapshot_id)
            steps += 1
        return ticket

    async def list_images(self) -> list[ExportTicket]:
        items = as_vec(await self._result("icrp_list_images"), "icrp_list_images.ok")
        return [ExportTicket.from_rec(as_rec(i, "icrp_list_images.ok")) for i in items]

    async def read(self, snapshot_id: int, offset: int, length: int) -> bytes:
        """``length`` bytes of the image at ``offset`` (fewer only at the image's end)."""
        return bytes(await self.read_view(snapshot_id, offset, length))

    async def read_view(self, snapshot_id: int, offset: int, length: int) -> memoryview:
        """:meth:`read`, as a view of the reply (the relay's path: the bytes are not copied)."""
        reply = await self._query_view("icrp_read", snapshot_id, offset, length)
        data = decode_ok(reply)
        if not isinstance(data, memoryview):  # an error, or a shape the fast path does not read
            value = self._ok("icrp_read", decode_single(bytes(reply), "icrp_read"))
            data = memoryview(as_blob(value, "icrp_read.ok"))
        if len(data) > length:
            raise ProtocolError(
                f"icrp_read: asked for {length} bytes at {offset} of snapshot {snapshot_id}, "
                f"got {len(data)}"
            )
        return data

    async def read_for_write(
        self, snapshot_id: int, import_id: int, offset: int, length: int
    ) -> WriteArg:
        """:meth:`read` answered as the argument of ``icrp_write(import_id, offset, data)``
        (capability ``read_for_write``): the relay sends it on with :meth:`write_arg`,
        unchanged, and each byte is hashed once.  The echoed ``import_id`` and
        ``offset`` and the length are checked here; an ICRP error comes as a
        :class:`~canister_iface.errors.CanisterReject` (:meth:`read` answers it typed).
        """
        method = "icrp_read_for_write"
        _, arg = self._arg(method, (snapshot_id, import_id, offset, length))
        if isinstance(self.agent, Agent):
            message = await self.agent.query_arg(self.canister_id.raw, method, arg)
        else:
            message = ArgParts(
                (memoryview(await self.agent.query(self.canister_id.raw, method, arg)),)
            )
        decoded = decode_write_arg(message.parts[0])
        if decoded is None:
            raise ProtocolError(
                f"{method}: the reply is not the (nat64, nat64, blob) icrp.did declares"
            )
        got_import, got_offset, data = decoded
        if got_import != import_id or got_offset != offset or len(data) > length:
            raise ProtocolError(
                f"{method}: asked for {length} bytes at {offset} of snapshot {snapshot_id} for "
                f"import {import_id}, got {len(data)} bytes at {got_offset} for import "
                f"{got_import}; nothing was written"
            )
        return WriteArg(message, data)

    async def chunk_digests(self, snapshot_id: int, first: int, count: int) -> list[bytes]:
        """Chunk digests ``first .. first + count - 1`` (the canister may answer fewer)."""
        value = await self._result("icrp_chunk_digests", snapshot_id, first, count)
        return blobs(value, "icrp_chunk_digests.ok")

    async def all_chunk_digests(self, ticket: ExportTicket) -> list[bytes]:
        """Every chunk digest of a ready image, in as many calls as needed."""
        digests: list[bytes] = []
        while len(digests) < ticket.chunk_count:
            want = min(MAX_DIGESTS_PER_CALL, ticket.chunk_count - len(digests))
            got = await self.chunk_digests(ticket.snapshot_id, len(digests), want)
            if not got:
                raise ProtocolError(
                    f"icrp_chunk_digests: no digests from chunk {len(digests)} of "
                    f"{ticket.chunk_count} (snapshot {ticket.snapshot_id})"
                )
            digests.extend(got)
        return digests

    async def push(
        self, target: CanisterRef, snapshot_id: int, import_id: int, offset: int, length: int
    ) -> PushAck:
        rec = await self._rec(
            "icrp_push", Principal.of(target).raw, snapshot_id, import_id, offset, length
        )
        return PushAck.from_rec(rec)

    async def end_export(self, snapshot_id: int) -> None:
        await self._result("icrp_end_export", snapshot_id)

    # --------------------------------------------------------------------- import

    async def begin_import(self, spec: ImportSpec) -> int:
        return await self._nat("icrp_begin_import", spec.to_candid())

    async def write(self, import_id: int, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset``; returns the distinct bytes the import holds.

        With our :class:`Agent` the blob is hashed and sent where it lies, never copied.
        """
        types = METHODS["icrp_write"][1]
        parts = encode_with_blob(list(zip(types, (import_id, offset, data), strict=True)))
        target = self.canister_id.raw
        if isinstance(self.agent, Agent):
            reply = await self.agent.update(target, "icrp_write", parts)
        else:
            reply = await self.agent.update(target, "icrp_write", parts.joined())
        return self._written(reply)

    async def write_arg(self, arg: WriteArg, *, release: bool = False) -> int:
        """:meth:`write` of what :meth:`read_for_write` answered, sent as it came.

        ``release``: release ``arg`` (:meth:`WriteArg.release`) as soon as the
        node has taken the write, not once it is certified: a relay's writes in
        flight then hold no replies.  A failed write must be read again (with
        our :class:`Agent`; other callers' arguments are copied and kept).
        """
        target = self.canister_id.raw
        if isinstance(self.agent, Agent):
            sent = arg.release if release else None
            reply = await self.agent.update(target, "icrp_write", arg.message, sent=sent)
        else:
            reply = await self.agent.update(target, "icrp_write", arg.message.joined())
        return self._written(reply)

    def _written(self, reply: bytes) -> int:
        written = decode_ok(reply)
        if isinstance(written, int):
            return written
        value = self._ok("icrp_write", decode_single(reply, "icrp_write"))
        return as_nat(value, "icrp_write.ok")

    async def import_status(self, import_id: int) -> ImportStatus:
        return ImportStatus.from_rec(await self._rec("icrp_import_status", import_id))

    async def commit_import(self, import_id: int) -> CommitState:
        """One commit step: ``committed``, or ``restoring`` (commit again)."""
        value = await self._result("icrp_commit_import", import_id)
        return CommitState.from_candid(value, "icrp_commit_import.ok")

    async def commit(self, import_id: int, *, max_steps: int = 100_000) -> CommitState:
        """Commit and repeat while the target is restoring its state from the image."""
        for _ in range(max_steps):
            state = await self.commit_import(import_id)
            if state.committed:
                return state
        raise ProtocolError(
            f"icrp_commit_import: import {import_id} still restoring after {max_steps} steps"
        )

    async def abort_import(self, import_id: int) -> None:
        await self._result("icrp_abort_import", import_id)

    # -------------------------------------------------------------- incremental

    async def changes(
        self, since_seq: int, max_bytes: int, key_range: KeyRange | None = None
    ) -> ChangeBatch:
        """Changes after ``since_seq``; with ``key_range`` only those of its keys."""
        rec = await self._rec("icrp_changes", since_seq, max_bytes, _range(key_range))
        return ChangeBatch.from_rec(rec)

    async def apply(self, batch: ChangeBatch) -> int:
        """Apply a batch; returns the target's sequence number afterwards."""
        return await self._nat("icrp_apply", batch.to_candid())

    async def push_changes(
        self,
        target: CanisterRef,
        since_seq: int,
        max_bytes: int,
        key_range: KeyRange | None = None,
    ) -> PushChangesAck:
        """The source reads its changes after ``since_seq`` and has ``target`` apply them."""
        args = (Principal.of(target).raw, since_seq, max_bytes, _range(key_range))
        return PushChangesAck.from_rec(await self._rec("icrp_push_changes", *args))

    async def backlog(self, since_seq: int) -> Backlog:
        """How far a replica that applied up to ``since_seq`` is behind this canister."""
        return Backlog.from_rec(await self._rec("icrp_backlog", since_seq))

    # --------------------------------------------------------------- key ranges

    async def export_range(
        self, key_range: KeyRange, cursor: bytes | None, max_bytes: int
    ) -> RecordBatch:
        rec = await self._rec("icrp_export_range", key_range.to_candid(), _opt(cursor), max_bytes)
        return RecordBatch.from_rec(rec)

    async def import_records(self, records: Sequence[Record]) -> int:
        return await self._nat("icrp_import_records", [r.to_candid() for r in records])

    async def delete_range(
        self, key_range: KeyRange, cursor: bytes | None, max_records: int
    ) -> DeleteProgress:
        rec = await self._rec("icrp_delete_range", key_range.to_candid(), _opt(cursor), max_records)
        return DeleteProgress.from_rec(rec)

    async def key_distribution(
        self, key_range: KeyRange, cursor: bytes | None, bucket_bytes: int
    ) -> KeyDistribution:
        """One page of buckets of about ``bucket_bytes`` each, in key order."""
        args = (key_range.to_candid(), _opt(cursor), bucket_bytes)
        return KeyDistribution.from_rec(await self._rec("icrp_key_distribution", *args))

    async def range_digest(self, key_range: KeyRange, cursor: bytes | None) -> RangeDigest:
        """One page of the range's count, bytes and digest (add pages with ``+``)."""
        args = (key_range.to_candid(), _opt(cursor))
        return RangeDigest.from_rec(await self._rec("icrp_range_digest", *args))

    async def whole_range_digest(
        self, key_range: KeyRange, *, max_pages: int = 100_000
    ) -> RangeDigest:
        """Every page of ``range_digest`` added up (``journal_seq`` of the last page)."""
        total, cursor = RangeDigest(), None
        for _ in range(max_pages):
            page = await self.range_digest(key_range, cursor)
            total += page
            if page.next_cursor is None:
                return total
            if cursor is not None and page.next_cursor <= cursor:
                raise ProtocolError(
                    f"icrp_range_digest: next_cursor {page.next_cursor.hex()} does not move past "
                    f"{cursor.hex()}"
                )
            cursor = page.next_cursor
        raise ProtocolError(f"icrp_range_digest: not done after {max_pages} pages")

    # ------------------------------------------------------------------ fleets

    async def fleet_members(self, cursor: CanisterRef | None, limit: int) -> FleetPage:
        """One page of the canisters this canister created or knows, in principal order."""
        start = [] if cursor is None else [Principal.of(cursor).raw]
        return FleetPage.from_rec(await self._rec("icrp_fleet_members", start, limit))

    async def all_fleet_members(self, *, page_size: int = MAX_FLEET_PAGE) -> list[FleetMember]:
        """Every member, in as many pages as needed."""
        members: list[FleetMember] = []
        cursor: Principal | None = None
        while True:
            page = await self.fleet_members(cursor, page_size)
            members.extend(page.members)
            if page.next_cursor is None:
                return members
            if cursor is not None and page.next_cursor.raw <= cursor.raw:
                raise ProtocolError(
                    f"icrp_fleet_members: next_cursor {page.next_cursor} does not move past "
                    f"{cursor}"
                )
            cursor = page.next_cursor

    # ----------------------------------------------------------------- routing

    async def routing(self) -> Routing:
        """The routing table (public: any identity may read it)."""
        return Routing.from_rec(await self._rec("icrp_routing"))

    # ------------------------------------------------------------ configuration

    async def set_peers(self, peers: Iterable[CanisterRef]) -> None:
        await self._result("icrp_set_peers", [Principal.of(p).raw for p in peers])

    async def set_key_range(self, key_range: KeyRange | None) -> None:
        await self._result("icrp_set_key_range", _opt(key_range and key_range.to_candid()))

    async def reset_journal(self, journal_seq: int) -> None:
        """Restart the journal at ``journal_seq`` of the source a shard was copied from."""
        await self._result("icrp_reset_journal", journal_seq)

    async def set_mode(self, mode: Mode, redirect: CanisterRef | None = None) -> ModeInfo:
        """Make the canister primary, standby or read_only (fenced); returns the mode now."""
        target = [] if redirect is None else [Principal.of(redirect).raw]
        return ModeInfo.from_rec(await self._rec("icrp_set_mode", mode_to_candid(mode), target))

    async def set_fences(self, fences: Sequence[Fence]) -> int:
        """Replace the fenced ranges; returns the journal head when they took effect."""
        return await self._nat("icrp_set_fences", [f.to_candid() for f in fences])

    async def set_routing(self, routing: Routing) -> None:
        await self._result("icrp_set_routing", routing.to_candid())

    async def config(self) -> Config:
        return Config.from_rec(await self._rec("icrp_config"))

    async def peers(self) -> Peers:
        """The trusted peers and the version of that set."""
        return Peers.from_rec(await self._rec("icrp_peers"))

    async def update_peers(
        self,
        add: Iterable[CanisterRef] = (),
        remove: Iterable[CanisterRef] = (),
        expected_version: int | None = None,
    ) -> PeersUpdate:
        """Remove ``remove``, then add ``add`` — only if the version is still
        ``expected_version`` when it is given (``updated`` says whether it was)."""
        value = await self._result(
            "icrp_update_peers",
            [Principal.of(p).raw for p in add],
            [Principal.of(p).raw for p in remove],
            _opt(expected_version),
        )
        return PeersUpdate.from_candid(value, "icrp_update_peers.ok")


def _opt(value: Any) -> list[Any]:
    return [] if value is None else [value]


def _range(key_range: KeyRange | None) -> list[Any]:
    return [] if key_range is None else [key_range.to_candid()]
