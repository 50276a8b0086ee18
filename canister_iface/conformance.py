"""ICRP conformance: run every requirement of ``icrp.did`` against a live canister.

    report = await check_canister(agent, canister_id, identity_other=stranger_agent)
    print(report.render())          # or report.to_json()
    sys.exit(0 if report.conformant else 1)

Each requirement is one check that ends ``passed``, ``failed`` (with what
was observed), ``not_run`` (it applies but could not be checked here, with
why: a missing second identity or push target, a check that would change
state without ``allow_commit``, a transient error that outlasted the
retries) or ``skipped`` (it does not apply: a capability the canister does
not claim, another role).  Only a canister with no failure and nothing left
not run is conformant; a check that met a transient error is run again
before it is given up.

``agent`` must be a controller (or trusted peer) of the canister;
``identity_other`` is an agent of an identity that is neither, for the
access checks.  The suite is meant for a quiet canister: it ends the
current export (``icrp_end_export``) and replaces an unfinished import with
its own test imports, which it aborts.  It fences, for a moment, a key
range no application uses (``icrp_set_fences``) and puts the fences back.
It never makes a test image current and never deletes data.
``allow_commit=True`` (for test canisters) adds the checks that change the
canister for a moment or for good: a round trip that exports the image and
commits it back (state unchanged by construction), the modes (the canister
is fenced, then made a standby, then set back), an image asked for one
sequence ahead (the journal head moves by one empty step), a routing
table republished under the next version, and journal resets (the journal
is emptied; the head moves by one more empty step).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from canister_iface import icrp_errors as errs
from canister_iface.caller import Caller
from canister_iface.errors import AccessDenied, CanisterReject, IcError, TransientError
from canister_iface.icrp import IcrpClient, chunk_count, image_chunk_digests, image_digest
from canister_iface.icrp_types import (
    CAPABILITIES,
    PROTOCOL_VERSION,
    ROLES,
    ChangeBatch,
    ExportTicket,
    Fence,
    ImportSpec,
    Info,
    JournalInfo,
    KeyBucket,
    KeyRange,
    ModeInfo,
    RangeDigest,
    Record,
    Route,
    Routing,
)
from canister_iface.management_types import CanisterRef
from canister_iface.principal import Principal

# "skipped": the requirement does not apply to this canister (a capability it
# does not claim, another role); "not_run": it applies but could not be checked
# here (no push target, no allow_commit, a check it depends on failed, the
# canister was not quiet, a transient error outlasted the retries). Only a
# canister with neither failures nor checks left not run is conformant.
Status = Literal["passed", "failed", "not_run", "skipped"]
# Pauses before re-running a check that met a transient error (a busy or
# restarting replica must not read as a protocol violation).
_TRANSIENT_RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0)
IC_MESSAGE_LIMIT = 2 * 1024 * 1024
# Chunk sizes tried for test imports, smallest first (the reference accepts >= 4 KiB).
_TEST_CHUNK_SIZES = (4096, 65536, 1024 * 1024)
_WRONG_DIGEST = hashlib.sha256(b"icrp conformance: not the digest of this image").digest()
# Appended to a key to make a key range no application uses: the fence check
# fences it for a moment (inside a shard's own range).
_TEST_SUFFIX = b"\xff" * 32 + b"icrp-conformance"
# Trusted for a moment by peers.compare_and_set; an opaque id nobody holds a key for.
_PROBE = Principal(hashlib.sha224(b"icrp conformance: peer probe").digest() + b"\x01")


@dataclass(frozen=True)
class CheckResult:
    id: str
    requirement: str
    status: Status
    detail: str
    seconds: float


@dataclass
class Report:
    canister_id: str
    role: str | None = None
    capabilities: tuple[str, ...] = ()
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (checks not run or not applicable are no failures)."""
        return not any(r.status == "failed" for r in self.results)

    @property
    def conformant(self) -> bool:
        """Every applicable requirement was checked and met.

        A check left not run proves nothing: calling the canister conformant
        then would be a claim the suite did not test.
        """
        return self.ok and self.count("not_run") == 0

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "NOT conformant"
        not_run = self.count("not_run")
        if not_run:
            checks = "check" if not_run == 1 else "checks"
            return f"not conformant: {not_run} {checks} not run (see why above)"
        return "conformant"

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    def result(self, check_id: str) -> CheckResult:
        for r in self.results:
            if r.id == check_id:
                return r
        raise KeyError(check_id)

    def render(self) -> str:
        caps = ", ".join(self.capabilities) or "none"
        lines = [
            f"ICRP conformance of {self.canister_id} (role {self.role or 'unknown'}; "
            f"capabilities: {caps})"
        ]
        width = max((len(r.id) for r in self.results), default=0)
        for r in self.results:
            mark = {"passed": "PASS", "failed": "FAIL", "not_run": "NRUN", "skipped": "N/A "}[
                r.status
            ]
            lines.append(f"  {mark}  {r.id:<{width}}  {r.requirement}")
            if r.detail:
                lines.append(f"        {'':<{width}}  -> {r.detail}")
        lines.append(
            f"{self.count('passed')} passed, {self.count('failed')} failed, "
            f"{self.count('not_run')} not run, {self.count('skipped')} not applicable: "
            + self.verdict
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "canister_id": self.canister_id,
            "role": self.role,
            "capabilities": list(self.capabilities),
            "conformant": self.conformant,
            "verdict": self.verdict,
            "counts": {s: self.count(s) for s in ("passed", "failed", "not_run", "skipped")},
            "checks": [asdict(r) for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


class Fail(Exception):
    """The canister does not meet the requirement (the message says how)."""


class Skip(Exception):
    """The requirement applies but cannot be checked here (the message says why)."""


class NotApplicable(Skip):
    """The requirement does not apply to this canister (the message says why)."""


async def check_canister(
    agent: Caller,
    canister_id: CanisterRef,
    *,
    identity_other: Caller | None = None,
    allow_commit: bool = False,
    max_verify_bytes: int = 64 * 1024 * 1024,
    push_target: CanisterRef | None = None,
    import_source: CanisterRef | None = None,
    retry_delays: tuple[float, ...] = _TRANSIENT_RETRY_DELAYS,
) -> Report:
    """Check ``canister_id`` against every ICRP requirement; see the module docstring.

    ``max_verify_bytes``: images up to this size are read completely to verify
    every chunk; larger ones are verified on their first, middle and last chunk.
    ``push_target``: another ICRP canister, controlled by ``agent``, that trusts
    the checked canister as a peer and that the checked canister trusts; with
    it ``icrp_push`` is checked too.
    ``import_source``: the source the test imports name (a backup canister
    accepts images from its configured source only); by default the source
    of the canister's newest image, else the canister itself.
    """
    suite = _Suite(agent, Principal.of(canister_id), identity_other, allow_commit)
    suite.max_verify_bytes = max_verify_bytes
    suite.retry_delays = retry_delays
    suite.push_target = None if push_target is None else Principal.of(push_target)
    suite.import_source = None if import_source is None else Principal.of(import_source)
    return await suite.run()


Check = Callable[[], Awaitable[str]]


class _Suite:
    def __init__(
        self, agent: Caller, canister: Principal, other: Caller | None, allow_commit: bool
    ) -> None:
        self.canister = canister
        self.icrp = IcrpClient(agent, canister)
        self.agent = agent
        self.other = None if other is None else IcrpClient(other, canister)
        self.allow_commit = allow_commit
        self.max_verify_bytes = 0
        self.retry_delays = _TRANSIENT_RETRY_DELAYS
        self.push_target: Principal | None = None
        self.import_source: Principal | None = None
        self.info: Info | None = None
        self.ticket: ExportTicket | None = None
        self.digests: list[bytes] | None = None
        self.ended_id: int | None = None
        self.import_id: int | None = None
        self.test_image = b""
        self.test_chunk_size = 4096
        self.test_spec: ImportSpec | None = None
        self.records: list[Record] | None = None  # the first records of the key range, in order
        self.records_range: KeyRange | None = None  # the range they are all of
        self.report = Report(canister.to_text())

    def checks(self) -> list[tuple[str, str, Check]]:
        return [
            ("info.well_formed", _REQ["info.well_formed"], self.info_well_formed),
            ("info.hides_state", _REQ["info.hides_state"], self.info_hides_state),
            ("export.ready", _REQ["export.ready"], self.export_ready),
            ("export.read_exact", _REQ["export.read_exact"], self.read_exact),
            ("export.image_digest", _REQ["export.image_digest"], self.image_digest),
            ("export.chunk_digests", _REQ["export.chunk_digests"], self.chunk_digests),
            ("export.read_for_write", _REQ["export.read_for_write"], self.read_for_write),
            ("access.reads_refused", _REQ["access.reads_refused"], self.reads_refused),
            ("export.ids_increase", _REQ["export.ids_increase"], self.ids_increase),
            ("export.stale_snapshot", _REQ["export.stale_snapshot"], self.stale_snapshot),
            ("import.idempotent_write", _REQ["import.idempotent_write"], self.idempotent_write),
            ("import.conflict", _REQ["import.conflict"], self.conflict),
            ("access.writes_refused", _REQ["access.writes_refused"], self.writes_refused),
            ("import.incomplete", _REQ["import.incomplete"], self.incomplete),
            ("import.digest_mismatch", _REQ["import.digest_mismatch"], self.digest_mismatch),
            ("import.chunk_digest", _REQ["import.chunk_digest"], self.chunk_digest_checked),
            ("import.abort", _REQ["import.abort"], self.abort),
            ("journal.changes", _REQ["journal.changes"], self.journal_changes),
            ("journal.too_old", _REQ["journal.too_old"], self.journal_too_old),
            ("apply.gap", _REQ["apply.gap"], self.apply_gap),
            ("key_range.export", _REQ["key_range.export"], self.key_range_export),
            ("key_range.out_of_range", _REQ["key_range.out_of_range"], self.out_of_range),
            ("push.write", _REQ["push.write"], self.push),
            ("peers.compare_and_set", _REQ["peers.compare_and_set"], self.peers_cas),
            *self.later_checks(),
            # Last: committing an image restarts the journal the checks above read.
            ("import.commit_roundtrip", _REQ["import.commit_roundtrip"], self.commit_roundtrip),
        ]

    def later_checks(self) -> list[tuple[str, str, Check]]:
        """The parts added to version 1 for standbys, splits and fleets."""
        return [
            ("journal.backlog", _REQ["journal.backlog"], self.backlog),
            ("journal.range_filter", _REQ["journal.range_filter"], self.range_filter),
            ("journal.push_changes", _REQ["journal.push_changes"], self.push_changes),
            ("export.at_seq", _REQ["export.at_seq"], self.export_at_seq),
            ("mode.fence", _REQ["mode.fence"], self.mode_fence),
            ("mode.standby", _REQ["mode.standby"], self.mode_standby),
            ("key_range.distribution", _REQ["key_range.distribution"], self.distribution),
            ("key_range.digest", _REQ["key_range.digest"], self.range_digest),
            ("key_range.fences", _REQ["key_range.fences"], self.fences),
            ("routing.public", _REQ["routing.public"], self.routing),
            ("fleet.members", _REQ["fleet.members"], self.fleet_members),
            # Last of these: it empties the journal the checks above read.
            ("journal.reset", _REQ["journal.reset"], self.journal_reset),
        ]

    async def run(self) -> Report:
        for check_id, requirement, check in self.checks():
            started = time.monotonic()
            status, detail = await _outcome(check, self.retry_delays)
            seconds = round(time.monotonic() - started, 3)
            self.report.results.append(CheckResult(check_id, requirement, status, detail, seconds))
        if self.info is not None:
            self.report.role = self.info.role
            self.report.capabilities = self.info.capabilities
        return self.report

    # ------------------------------------------------------------------ helpers

    def need_info(self) -> Info:
        if self.info is None:
            raise Skip("needs icrp_info from a trusted caller (info.well_formed did not pass)")
        return self.info

    def need(self, capability: str) -> Info:
        info = self.need_info()
        if not info.can(capability):
            raise NotApplicable(
                f"not applicable: the canister does not claim the {capability!r} capability"
            )
        return info

    def need_commit(self, what: str) -> None:
        if not self.allow_commit:
            raise Skip(f"{what}; pass allow_commit=True (test canisters only)")

    def need_records(self) -> tuple[list[Record], KeyRange]:
        if self.records is None or self.records_range is None:
            raise Skip("needs records of the key range (key_range.export did not pass)")
        return self.records, self.records_range

    def need_other(self) -> IcrpClient:
        if self.other is None:
            raise Skip("needs a second identity (identity_other) that is not trusted")
        return self.other

    def need_ticket(self) -> ExportTicket:
        if self.ticket is None:
            raise Skip("needs a ready export image (export.ready did not pass)")
        return self.ticket

    def need_import(self) -> int:
        if self.import_id is None:
            raise Skip("needs the test import (import.idempotent_write did not open it)")
        return self.import_id

    async def fingerprint(self) -> tuple[int | None, bytes | None]:
        """Journal head and current image digest: what a failed import must not change."""
        info = await self.icrp.info()
        head = None if info.journal is None else info.journal.head_seq
        if info.role == "backup":
            images = await self.icrp.list_images()
            return head, images[-1].digest if images else None
        ticket = await self.icrp.wait_ready(await self.icrp.begin_export())
        return head, ticket.digest

    # -------------------------------------------------------------------- info

    async def info_well_formed(self) -> str:
        info = await self.icrp.info()
        problems = _info_problems(info)
        if problems:
            raise Fail("; ".join(problems))
        if not info.trusted:
            raise Fail(
                "icrp_info says the checking identity is not trusted: run the check with a "
                "controller's identity (every further check needs it)"
            )
        if info.can("mode") and info.mode is None:
            raise Fail("the canister claims 'mode' but icrp_info shows no mode")
        self.info = info
        unknown = sorted(set(info.capabilities) - set(CAPABILITIES))
        extra = f"; capabilities unknown to this suite: {', '.join(unknown)}" if unknown else ""
        return f"version {info.protocol_version}, role {info.role}{extra}"

    async def info_hides_state(self) -> str:
        self.need_info()
        other = self.need_other()
        info = await other.info()
        if info.trusted:
            raise Fail("icrp_info says the other identity is trusted: use an untrusted identity")
        shown = [
            name
            for name, value in (
                ("image", info.image),
                ("journal", info.journal),
                ("key_range", info.key_range),
            )
            if value is not None
        ]
        if shown:
            raise Fail(f"icrp_info reveals {', '.join(shown)} to an untrusted caller")
        return "trusted=false and no image, journal or key range"

    # ------------------------------------------------------------------ export

    async def export_ready(self) -> str:
        info = self.need("image")
        try:
            first = await self.icrp.begin_export()
        except errs.NotFound as exc:
            if info.role == "backup":
                raise Skip(f"the backup canister holds no image yet ({exc.message})") from exc
            raise
        ticket = await self.icrp.wait_ready(first)
        problems = _ticket_problems(ticket)
        if problems:
            raise Fail("; ".join(problems))
        self.ticket = ticket
        steps = "" if first.ready else " after preparing"
        size = f"{ticket.size:,} bytes in {ticket.chunk_count} chunks"
        return f"snapshot {ticket.snapshot_id}: {size}{steps}"

    async def read_exact(self) -> str:
        ticket, info = self.need_ticket(), self.need_info()
        want = min(ticket.size, info.max_transfer_bytes, ticket.chunk_size + 17)
        data = await self.icrp.read(ticket.snapshot_id, 0, want)
        if len(data) != want:
            raise Fail(f"asked for {want} bytes at 0, got {len(data)}")
        tail = min(ticket.size, 10)
        end = await self.icrp.read(ticket.snapshot_id, ticket.size - tail, tail + 100)
        if len(end) != tail:
            raise Fail(f"asked for {tail + 100} bytes {tail} before the end, got {len(end)}")
        if tail and ticket.size <= want and end != data[-tail:]:
            raise Fail("two reads of the same bytes returned different data")
        await self._oversized_read(ticket, info)
        return f"{want} bytes at 0 and the last {tail} bytes as asked"

    async def _oversized_read(self, ticket: ExportTicket, info: Info) -> None:
        try:
            data = await self.icrp.read(ticket.snapshot_id, 0, info.max_transfer_bytes + 1)
        except IcError:
            return  # refused: as it should be
        if len(data) > info.max_transfer_bytes:
            raise Fail(
                f"a read of max_transfer_bytes + 1 returned {len(data):,} bytes, more than the "
                f"advertised {info.max_transfer_bytes:,}"
            )

    async def image_digest(self) -> str:
        ticket = self.need_ticket()
        digests = await self.icrp.all_chunk_digests(ticket)
        if len(digests) != ticket.chunk_count:
            raise Fail(f"icrp_chunk_digests gave {len(digests)} digests for {ticket.chunk_count}")
        actual = image_digest(digests)
        if actual != ticket.digest:
            raise Fail(
                f"SHA-256 over the chunk digests is {actual.hex()}, the ticket says "
                f"{(ticket.digest or b'').hex()}"
            )
        self.digests = digests
        return f"{len(digests)} chunk digests hash to the image digest"

    async def chunk_digests(self) -> str:
        ticket = self.need_ticket()
        if self.digests is None:
            raise Skip("needs the chunk digests (export.image_digest did not pass)")
        indices = _chunks_to_verify(ticket, self.max_verify_bytes)
        for index in indices:
            chunk = await self._read_chunk(ticket, index)
            expected_len = min(ticket.chunk_size, ticket.size - index * ticket.chunk_size)
            if len(chunk) != expected_len:
                raise Fail(f"chunk {index} has {len(chunk)} bytes, expected {expected_len}")
            if hashlib.sha256(chunk).digest() != self.digests[index]:
                raise Fail(f"chunk {index} does not hash to its icrp_chunk_digests entry")
        every = "every chunk" if len(indices) == ticket.chunk_count else f"chunks {indices}"
        return f"{every} read back and matched its digest"

    async def _read_chunk(self, ticket: ExportTicket, index: int) -> bytes:
        step = min(self.need_info().max_transfer_bytes, ticket.chunk_size)
        start = index * ticket.chunk_size
        end = min(ticket.size, start + ticket.chunk_size)
        parts = []
        for offset in range(start, end, step):
            parts.append(await self.icrp.read(ticket.snapshot_id, offset, min(step, end - offset)))
        return b"".join(parts)

    async def read_for_write(self) -> str:
        info, ticket = self.need("read_for_write"), self.need_ticket()
        want = min(ticket.size, info.max_transfer_bytes, ticket.chunk_size + 17)
        import_id, at = 4_294_967_301, ticket.size - want  # echoed as given, checked here
        arg = await self.icrp.read_for_write(ticket.snapshot_id, import_id, at, want)
        if bytes(arg.data) != await self.icrp.read(ticket.snapshot_id, at, want):
            raise Fail("icrp_read_for_write and icrp_read returned different bytes")
        refused = []
        for who, client, snapshot in (
            ("a stale snapshot", self.icrp, ticket.snapshot_id + 1_000_000),
            ("an untrusted caller", self.other, ticket.snapshot_id),
        ):
            if client is None:
                continue
            try:
                await client.read_for_write(snapshot, import_id, 0, 1)
            except CanisterReject:
                refused.append(who)
                continue
            raise Fail(f"icrp_read_for_write answered {who}")
        return f"{want} bytes at {at} as icrp_write's argument; refused: {', '.join(refused)}"

    async def ids_increase(self) -> str:
        info, ticket = self.need_info(), self.need_ticket()
        if info.role == "backup":
            ids = [t.snapshot_id for t in await self.icrp.list_images()]
            if ids != sorted(set(ids)):
                raise Fail(f"icrp_list_images ids are not strictly increasing: {ids}")
            return f"stored images {ids} in increasing order"
        await self.icrp.end_export(ticket.snapshot_id)
        self.ended_id = ticket.snapshot_id
        self.ticket = None
        fresh = await self.icrp.wait_ready(await self.icrp.begin_export())
        self.ticket = fresh
        if fresh.snapshot_id <= ticket.snapshot_id:
            raise Fail(
                f"after ending snapshot {ticket.snapshot_id}, icrp_begin_export gave "
                f"{fresh.snapshot_id}: ids must increase"
            )
        return f"snapshot {ticket.snapshot_id} ended, the next is {fresh.snapshot_id}"

    async def stale_snapshot(self) -> str:
        stale = self.ended_id
        if stale is None:
            images = await self.icrp.list_images() if self.info else []
            if not images or images[0].snapshot_id <= 1:
                raise Skip("no snapshot id known to be no longer readable")
            stale = images[0].snapshot_id - 1
        try:
            await self.icrp.read(stale, 0, 1)
        except errs.StaleSnapshot as exc:
            if exc.requested != stale:
                raise Fail(f"StaleSnapshot names snapshot {exc.requested}, not {stale}") from exc
            return f"a read of snapshot {stale} is refused (current: {exc.current})"
        raise Fail(f"snapshot {stale} is no longer current but icrp_read still answered")

    # ------------------------------------------------------------------ access

    async def reads_refused(self) -> str:
        self.need_info()
        other = self.need_other()
        # Without an image the stranger asks for snapshot 1: access is checked first.
        snapshot_id = 1 if self.ticket is None else self.ticket.snapshot_id
        attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("icrp_begin_export", other.begin_export),
            ("icrp_read", lambda: other.read(snapshot_id, 0, 1)),
            ("icrp_chunk_digests", lambda: other.chunk_digests(snapshot_id, 0, 1)),
            ("icrp_export_status", lambda: other.export_status(snapshot_id)),
            ("icrp_list_images", other.list_images),
            ("icrp_changes", lambda: other.changes(0, 1024)),
            ("icrp_export_range", lambda: other.export_range(KeyRange(), None, 1024)),
            ("icrp_config", other.config),
            *self._later_reads(other),
            ("icrp_peers", other.peers),
        ]
        return await _all_refused(attempts)

    def _later_reads(self, other: IcrpClient) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        """Reads of the later capabilities the canister claims."""
        info = self.need_info()
        reads: list[tuple[str, str, Callable[[], Awaitable[object]]]] = [
            ("backlog", "icrp_backlog", lambda: other.backlog(0)),
            ("export_at", "icrp_begin_export_at", lambda: other.begin_export_at(0)),
            (
                "key_distribution",
                "icrp_key_distribution",
                lambda: other.key_distribution(KeyRange(), None, 4096),
            ),
            ("range_digest", "icrp_range_digest", lambda: other.range_digest(KeyRange(), None)),
            ("fleet", "icrp_fleet_members", lambda: other.fleet_members(None, 10)),
        ]
        return [(method, call) for cap, method, call in reads if info.can(cap)]

    async def writes_refused(self) -> str:
        other, import_id = self.need_other(), self.need_import()
        config = await self.icrp.config()
        spec = self._test_spec(
            self.test_image, len(self.test_image), self.test_chunk_size, snapshot_id=2**40
        )
        harmless = ChangeBatch(2**62, 2**62 + 1, 2**62 + 1)
        attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("icrp_write", lambda: other.write(import_id, 0, self.test_image[:1])),
            ("icrp_commit_import", lambda: other.commit_import(import_id)),
            ("icrp_abort_import", lambda: other.abort_import(import_id)),
            ("icrp_begin_import", lambda: other.begin_import(spec)),
            ("icrp_apply", lambda: other.apply(harmless)),
            ("icrp_import_records", lambda: other.import_records([])),
            ("icrp_end_export", lambda: other.end_export(2**63)),
            ("icrp_set_peers", lambda: other.set_peers(config.peers)),
            ("icrp_set_key_range", lambda: other.set_key_range(config.key_range)),
            *await self._later_writes(other),
            # Compares only: harmless even if it were accepted.
            ("icrp_update_peers", lambda: other.update_peers(expected_version=0)),
        ]
        try:
            return await _all_refused(attempts)
        finally:
            await self._restore_test_import(import_id)

    async def _later_writes(
        self, other: IcrpClient
    ) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        """Configuration of the later capabilities, each as it is now: harmless if accepted."""
        info, config = self.need_info(), await self.icrp.config()
        writes: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if info.can("mode") and config.mode is not None:
            mode = config.mode
            writes.append(("icrp_set_mode", lambda: other.set_mode(mode.mode, mode.redirect)))
        if info.can("fences"):
            writes.append(("icrp_set_fences", lambda: other.set_fences(config.fences)))
        if info.can("routing"):
            routing = await self.icrp.routing()
            writes.append(("icrp_set_routing", lambda: other.set_routing(routing)))
        if info.can("push_changes") or info.can("journal_reset"):
            head = (await self._journal()).head_seq
        if info.can("push_changes"):
            writes.append(
                ("icrp_push_changes", lambda: other.push_changes(self.canister, head, 1024))
            )
        if info.can("journal_reset") and self.allow_commit:
            # Not harmless if accepted (the journal is emptied): test canisters only.
            writes.append(("icrp_reset_journal", lambda: other.reset_journal(head)))
        return writes

    async def _restore_test_import(self, import_id: int) -> None:
        """Reopen the test import if a stranger's accepted call disturbed it.

        Without this, one missing access check would fail every later import
        check as well and hide what the canister gets right.
        """
        try:
            if (await self.icrp.import_status(import_id)).state == "receiving":
                return
        except errs.NotFound:
            pass
        if self.test_spec is None:
            return
        self.import_id = await self.icrp.begin_import(self.test_spec)
        await self.icrp.write(self.import_id, 0, self.test_image[: self.test_chunk_size])

    # ------------------------------------------------------------------ import

    def _test_spec(
        self,
        image: bytes,
        size: int,
        chunk_size: int,
        *,
        snapshot_id: int,
        digest: bytes = _WRONG_DIGEST,
        chunk_digests: list[bytes] | None = None,
    ) -> ImportSpec:
        return ImportSpec(
            source=self._import_source(),
            snapshot_id=snapshot_id,
            size=size,
            chunk_size=chunk_size,
            digest=digest,
            journal_seq=0,
            chunk_digests=None if chunk_digests is None else tuple(chunk_digests),
        )

    def _import_source(self) -> Principal:
        if self.import_source is not None:
            return self.import_source
        ticket = self.ticket
        if ticket is not None and ticket.origin is not None:
            return ticket.origin.source  # a backup accepts its configured source only
        return self.canister

    async def _open_test_import(self) -> tuple[int, int]:
        """Open an import of a 2.5-chunk test image; returns (import id, chunk size)."""
        refusals = []
        for chunk_size in _TEST_CHUNK_SIZES:
            size = chunk_size * 2 + chunk_size // 2
            image = _test_bytes(size)
            spec = self._test_spec(image, size, chunk_size, snapshot_id=2**40 + chunk_size)
            try:
                import_id = await self.icrp.begin_import(spec)
            except errs.InvalidArgument as exc:
                refusals.append(f"chunk size {chunk_size}: {exc.message}")
                continue
            again = await self.icrp.begin_import(spec)
            if again != import_id:
                raise Fail(f"icrp_begin_import of the same spec gave {import_id}, then {again}")
            self.test_image, self.test_chunk_size, self.test_spec = image, chunk_size, spec
            return import_id, chunk_size
        raise Skip(
            "icrp_begin_import refused every test spec (a backup canister needs "
            "import_source=its source): " + "; ".join(refusals)
        )

    async def idempotent_write(self) -> str:
        self.need("import")
        import_id, chunk_size = await self._open_test_import()
        self.import_id = import_id
        first = self.test_image[:chunk_size]
        held = await self.icrp.write(import_id, 0, first)
        again = await self.icrp.write(import_id, 0, first)
        if held != len(first) or again != held:
            raise Fail(
                f"writing {len(first)} bytes twice at offset 0 reported {held}, then {again} "
                f"bytes held (expected {len(first)} both times)"
            )
        return f"import {import_id}: {len(first)} bytes written twice, held once"

    async def conflict(self) -> str:
        import_id = self.need_import()
        changed = bytes([self.test_image[10] ^ 0xFF])
        try:
            await self.icrp.write(import_id, 10, changed)
        except errs.Conflict as exc:
            if exc.offset != 10:
                raise Fail(f"Conflict names offset {exc.offset}, the write was at 10") from exc
            return "a different byte at offset 10 was refused with Conflict"
        raise Fail("different bytes at an offset already written were accepted")

    async def incomplete(self) -> str:
        import_id = self.need_import()
        try:
            await self.icrp.commit_import(import_id)
        except errs.Incomplete as exc:
            return f"{exc.missing_chunks} chunk(s) missing, first {exc.first_missing}"
        except errs.DigestMismatch as exc:
            raise Fail("the commit checked the digest before noticing missing chunks") from exc
        raise Fail("a commit with chunks missing succeeded")

    async def digest_mismatch(self) -> str:
        import_id = self.need_import()
        before = await self.fingerprint()
        image = self.test_image
        held = await self.icrp.write(import_id, 0, image)
        status = await self.icrp.import_status(import_id)
        if held != len(image) or not all(status.chunks_done):
            raise Fail(f"after writing all {len(image)} bytes the import holds {held}")
        try:
            await self.icrp.commit_import(import_id)
        except errs.DigestMismatch as exc:
            if exc.chunk is not None:
                raise Fail(f"DigestMismatch names chunk {exc.chunk}, not the image") from exc
        else:
            raise Fail("an image whose digest does not match its spec was committed")
        state = (await self.icrp.import_status(import_id)).state
        after = await self.fingerprint()
        if state != "aborted":
            raise Fail(f"after the digest mismatch the import is {state}, not aborted")
        if after[0] != before[0]:
            raise Skip(
                f"the journal head moved from {before[0]} to {after[0]} during the check: "
                "the canister is not quiet, so an unchanged state cannot be told"
            )
        if after != before:
            raise Fail("the failed commit changed the canister's image")
        return "DigestMismatch, import aborted, state unchanged"

    async def chunk_digest_checked(self) -> str:
        self.need_import()  # the canister accepted a test spec like this one
        chunk_size = self.test_chunk_size
        image = _test_bytes(chunk_size * 2)
        digests = image_chunk_digests(image, chunk_size)
        spec = self._test_spec(
            image,
            len(image),
            chunk_size,
            snapshot_id=2**41,
            digest=image_digest(digests),
            chunk_digests=digests,
        )
        import_id = await self.icrp.begin_import(spec)
        self.import_id = import_id
        wrong = bytes(b ^ 0x5A for b in image[:chunk_size])
        try:
            await self.icrp.write(import_id, 0, wrong)
        except errs.DigestMismatch as exc:
            if exc.chunk != 0:
                raise Fail(f"DigestMismatch names chunk {exc.chunk}, not 0") from exc
        else:
            raise Fail("a chunk that does not match its given digest was accepted")
        held = await self.icrp.write(import_id, 0, image[:chunk_size])
        if held != chunk_size:
            raise Fail(f"the refused chunk could not be written again correctly (held {held})")
        return "a wrong chunk 0 was refused at once, the right one accepted after"

    async def abort(self) -> str:
        import_id = self.need_import()
        await self.icrp.abort_import(import_id)
        status = await self.icrp.import_status(import_id)
        if status.state != "aborted":
            raise Fail(f"after icrp_abort_import the import is {status.state}")
        try:
            await self.icrp.write(import_id, 0, self.test_image[:1])
        except errs.IcrpError:
            return f"import {import_id} aborted; a later write was refused"
        raise Fail("a write to an aborted import was accepted")

    # ----------------------------------------------------------------- journal

    async def journal_changes(self) -> str:
        info = self.need("journal")
        journal = await self._journal()
        batch = await self.icrp.changes(journal.oldest_seq, info.max_transfer_bytes)
        seqs = [c.seq for c in batch.changes]
        if batch.from_seq != journal.oldest_seq:
            raise Fail(f"asked since {journal.oldest_seq}, the batch starts at {batch.from_seq}")
        if seqs != sorted(set(seqs)) or any(not batch.from_seq < s <= batch.to_seq for s in seqs):
            raise Fail(f"sequence numbers {seqs[:10]}... not increasing within (from, to]")
        if batch.to_seq > batch.head_seq:
            raise Fail(f"to_seq {batch.to_seq} is beyond head_seq {batch.head_seq}")
        return f"{len(seqs)} change(s) in ({batch.from_seq}, {batch.to_seq}]"

    async def _journal(self) -> JournalInfo:
        journal = (await self.icrp.info()).journal
        if journal is None:
            raise Fail("the canister claims 'journal' but icrp_info shows no journal")
        return journal

    async def journal_too_old(self) -> str:
        self.need("journal")
        journal = await self._journal()
        if journal.oldest_seq == 0:
            raise NotApplicable("the journal still reaches back to the first change (oldest_seq 0)")
        try:
            await self.icrp.changes(journal.oldest_seq - 1, 1024)
        except errs.TooOld as exc:
            return f"since {journal.oldest_seq - 1} refused, oldest_seq {exc.oldest_seq}"
        raise Fail(f"icrp_changes since {journal.oldest_seq - 1} (< oldest_seq) was served")

    async def apply_gap(self) -> str:
        self.need("apply")
        before = (await self.icrp.info()).journal
        start = (before.head_seq if before else 0) + 1_000_000
        try:
            await self.icrp.apply(ChangeBatch(start, start + 1, start + 1))
        except errs.Gap as exc:
            after = (await self.icrp.info()).journal
            if before and after and after.head_seq != before.head_seq:
                raise Fail("the refused batch moved the journal head") from exc
            return f"a batch from {start} was refused (applied up to {exc.applied_seq})"
        raise Fail(f"a batch starting at {start}, beyond the canister's sequence, was applied")

    # -------------------------------------------------------------- key ranges

    async def key_range_export(self) -> str:
        info = self.need("key_range")
        key_range = info.key_range or KeyRange()
        records: list[Record] = []
        cursor: bytes | None = None
        for _ in range(50):
            batch = await self.icrp.export_range(key_range, cursor, 4096)
            records.extend(batch.records)
            _check_cursor(batch.next_cursor, [r.key for r in records])
            cursor = batch.next_cursor
            if cursor is None:
                break
        keys = [r.key for r in records]
        if keys != sorted(set(keys)):
            raise Fail("records are not in strictly increasing key order")
        outside = [k for k in keys if not key_range.contains(k)]
        if outside:
            raise Fail(f"records outside the range: {outside[0].hex()}")
        # The records seen are exactly those of [lower, cursor): later checks use them.
        self.records = records
        self.records_range = KeyRange(
            key_range.lower, key_range.upper if cursor is None else cursor
        )
        more = "" if cursor is None else " (stopped after 50 pages)"
        return f"{len(keys)} record(s) in key order{more}"

    async def out_of_range(self) -> str:
        info = self.need("key_range")
        if info.key_range is None:
            raise NotApplicable("the canister owns no key range (not a shard)")
        key = _key_outside(info.key_range)
        if key is None:
            raise NotApplicable("the shard owns every key")
        try:
            await self.icrp.import_records([Record(key, b"icrp conformance")])
        except errs.OutOfRange as exc:
            return f"key {exc.key.hex()} refused"
        raise Fail(f"a record with key {key.hex()} outside the shard's range was stored")

    # -------------------------------------------------------------------- push

    async def push(self) -> str:
        self.need("push")
        ticket = self.need_ticket()
        if self.push_target is None:
            raise Skip("needs push_target, a second ICRP canister that trusts this one")
        target = IcrpClient(self.agent, self.push_target)
        spec = ImportSpec.for_ticket(self.canister, ticket)
        import_id = await target.begin_import(spec)
        length = min(ticket.size, ticket.chunk_size, self.need_info().max_transfer_bytes)
        try:
            ack = await self.icrp.push(self.push_target, ticket.snapshot_id, import_id, 0, length)
        finally:
            await target.abort_import(import_id)
        if ack.bytes != length or ack.committed_bytes < length:
            raise Fail(
                f"pushed {length} bytes, the ack says {ack.bytes} sent, {ack.committed_bytes} held"
            )
        return f"{length} bytes pushed into {self.push_target}"

    # ------------------------------------------------------------------- peers

    async def peers_cas(self) -> str:
        self.need_info()
        before = await self.icrp.peers()
        try:
            stale = await self.icrp.update_peers([_PROBE], (), before.version + 1)
        except AccessDenied as exc:
            raise Skip(f"changing peers needs a controller ({exc})") from None
        if stale.updated or _PROBE in stale.peers or set(stale.peers.peers) != set(before.peers):
            raise Fail(
                f"icrp_update_peers with version {before.version + 1} (current: "
                f"{before.version}) was applied; it must answer conflict and change nothing"
            )
        added = await self.icrp.update_peers([_PROBE], (), before.version)
        try:
            if not added.updated or _PROBE not in added.peers:
                raise Fail("icrp_update_peers with the current version did not add the peer")
            if added.peers.version <= before.version:
                raise Fail(f"the version stayed at {before.version} after a change of the peers")
            again = await self.icrp.update_peers([_PROBE], ())
            if again.peers.version <= added.peers.version:
                raise Fail("re-granting a present peer did not increase the version")
        finally:
            removed = await self.icrp.update_peers((), [_PROBE])
        if set(removed.peers.peers) != set(before.peers):
            raise Fail("adding and removing a peer did not restore the peer set")
        return (
            f"a stale version is refused; versions {before.version} → {added.peers.version} → "
            f"{removed.peers.version}; the peer set is as before"
        )

    async def commit_roundtrip(self) -> str:
        info = self.need("import")
        if not self.allow_commit:
            raise Skip("commits change state; pass allow_commit=True (test canisters only)")
        if info.role == "backup":
            raise NotApplicable("a backup canister's images come from its source, not from itself")
        ticket = await self.icrp.wait_ready(await self.icrp.begin_export())
        spec = ImportSpec.for_ticket(self.canister, ticket)
        import_id = await self.icrp.begin_import(spec)
        step = min(info.max_transfer_bytes, 1024 * 1024)
        for offset in range(0, ticket.size, step):
            data = await self.icrp.read(ticket.snapshot_id, offset, step)
            await self.icrp.write(import_id, offset, data)
        await self.icrp.commit(import_id)
        after = await self.icrp.wait_ready(await self.icrp.begin_export())
        if after.digest != ticket.digest:
            raise Fail("committing the canister's own image changed its state")
        return f"{ticket.size:,} bytes exported, imported and committed; digest unchanged"

    # ------------------------------------------------- standby, split and fleets

    async def backlog(self) -> str:
        self.need("backlog")
        journal = await self._journal()
        oldest = await self.icrp.backlog(journal.oldest_seq)
        if oldest.head_seq != journal.head_seq:
            raise Skip("the journal head moved during the check: the canister is not quiet")
        if oldest.changes != journal.entries:
            raise Fail(
                f"the backlog from oldest_seq counts {oldest.changes} changes, the journal "
                f"holds {journal.entries}"
            )
        times = (oldest.oldest_time, oldest.head_time)
        if journal.entries and (None in times or (times[0] or 0) > (times[1] or 0)):
            raise Fail(f"change times {times} are missing or not in order")
        at_head = await self.icrp.backlog(journal.head_seq)
        if (at_head.changes, at_head.bytes, at_head.oldest_time) != (0, 0, None):
            raise Fail(f"a replica at the head has a backlog: {at_head}")
        try:
            await self.icrp.backlog(journal.head_seq + 1)
        except errs.InvalidArgument:
            pass
        else:
            raise Fail("a backlog from beyond the head was answered")
        if journal.oldest_seq > 0:
            try:
                await self.icrp.backlog(journal.oldest_seq - 1)
            except errs.TooOld:
                pass
            else:
                raise Fail("a backlog from before oldest_seq was answered, not TooOld")
        return f"{oldest.changes} change(s), {oldest.bytes:,} bytes behind from oldest_seq"

    async def range_filter(self) -> str:
        info = self.need("range_changes")
        journal = await self._journal()
        whole = await self.icrp.changes(journal.oldest_seq, info.max_transfer_bytes)
        keyed = [c for c in whole.changes if c.op.kind != "app"]
        if not keyed:
            raise Skip("the journal holds no put or delete to filter")
        key = keyed[0].op.key
        only = KeyRange(key, key + b"\x00")
        batch = await self.icrp.changes(journal.oldest_seq, info.max_transfer_bytes, only)
        wrong = [c.seq for c in batch.changes if c.op.kind != "app" and c.op.key != key]
        if wrong:
            raise Fail(f"changes {wrong[:5]} of other keys came through the filter")
        if batch.from_seq != journal.oldest_seq or batch.to_seq > batch.head_seq:
            raise Fail(f"the filtered batch covers ({batch.from_seq}, {batch.to_seq}]")
        expected = [c.seq for c in keyed if c.op.key == key and c.seq <= batch.to_seq]
        got = [c.seq for c in batch.changes if c.op.kind != "app"]
        if got != expected:
            raise Fail(f"the filtered batch holds changes {got[:10]}, expected {expected[:10]}")
        return f"{len(got)} change(s) of key {key.hex()[:32]} in ({batch.from_seq}, {batch.to_seq}]"

    async def push_changes(self) -> str:
        self.need("push_changes")
        if self.push_target is None:
            raise Skip("needs push_target, a second ICRP canister that trusts this one")
        head = (await self._journal()).head_seq
        try:
            ack = await self.icrp.push_changes(self.push_target, head, 1024)
        except errs.TargetError as exc:
            if isinstance(exc.inner, errs.Gap):
                return f"an empty batch from {head} reached the target, which is behind (Gap)"
            raise Fail(f"the target refused the empty batch: {exc.inner.message}") from exc
        if ack.changes != 0 or ack.to_seq != head:
            raise Fail(f"pushing from the head sent {ack.changes} change(s) up to {ack.to_seq}")
        return f"an empty batch from {head} was applied by the target (at {ack.applied_seq})"

    async def export_at_seq(self) -> str:
        self.need("export_at")
        head = (await self._journal()).head_seq
        ticket = await self.icrp.wait_ready(await self.icrp.begin_export_at(head))
        if ticket.journal_seq != head:
            raise Fail(f"an image asked for at {head} shows journal_seq {ticket.journal_seq}")
        if head > 0:
            try:
                await self.icrp.begin_export_at(head - 1)
            except errs.TooOld as exc:
                if exc.oldest_seq < head:
                    raise Fail(f"TooOld names {exc.oldest_seq}, below the head {head}") from exc
            else:
                raise Fail(f"an image at {head - 1}, behind the head, was offered")
        detail = f"image {ticket.snapshot_id} at {head}"
        if self.allow_commit and self.need_info().can("apply"):
            detail += await self._export_ahead(ticket)
        await self.icrp.end_export(self.ticket.snapshot_id if self.ticket else ticket.snapshot_id)
        return detail

    async def _export_ahead(self, at_head: ExportTicket) -> str:
        """An image one step ahead waits for it; an empty step freezes the same state."""
        head = at_head.journal_seq
        waiting = await self.icrp.begin_export_at(head + 1)
        if waiting.ready or waiting.journal_seq != head + 1 or waiting.done_bytes != 0:
            raise Fail(f"an image ahead of the head is not waiting for it: {waiting}")
        await self.icrp.apply(ChangeBatch(head, head + 1, head + 1))
        ready = await self.icrp.wait_ready(await self.icrp.export_status(waiting.snapshot_id))
        if ready.journal_seq != head + 1 or ready.digest != at_head.digest:
            raise Fail("the image frozen one empty step later differs from the one at the head")
        self.ticket = ready
        return f"; image {ready.snapshot_id} waited for {head + 1} and shows the same state"

    async def mode_fence(self) -> str:
        self.need("mode")
        self.need_commit("fencing refuses the canister's writes for a moment")
        before = await self._mode()
        head = (await self._journal()).head_seq
        try:
            fenced = await self.icrp.set_mode("read_only", self.canister)
            if fenced.mode != "read_only" or fenced.redirect != self.canister:
                raise Fail(f"icrp_set_mode(read_only) answered {fenced}")
            if fenced.journal_seq < head:
                raise Fail(f"the fence names journal_seq {fenced.journal_seq}, below {head}")
            if await self.icrp.set_mode("read_only", self.canister) != fenced:
                raise Fail("setting the same mode again changed the answer")
            refused = await self._refused_while("read_only", head)
        finally:
            await self.icrp.set_mode(before.mode, before.redirect)
        if (await self._mode()).mode != before.mode:
            raise Fail("the mode could not be set back")
        return f"fenced at {fenced.journal_seq}: {', '.join(refused)} refused; set back"

    async def _refused_while(self, mode: str, head: int) -> list[str]:
        """The state changes refused with NotWritable naming ``mode``."""
        info = self.need_info()
        attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if mode == "read_only" and info.can("apply"):
            attempts.append(("icrp_apply", lambda: self.icrp.apply(ChangeBatch(head, head, head))))
        if mode == "read_only" and info.can("key_range"):
            attempts.append(("icrp_import_records", lambda: self.icrp.import_records([])))
        if mode == "read_only" and info.can("journal_reset"):
            attempts.append(("icrp_reset_journal", lambda: self.icrp.reset_journal(head)))
        if info.can("key_range") and await self._test_range_empty():
            test = self._test_range()
            attempts.append(("icrp_delete_range", lambda: self.icrp.delete_range(test, None, 1)))
        refused = []
        for method, attempt in attempts:
            try:
                await attempt()
            except errs.NotWritable as exc:
                if exc.mode != mode:
                    raise Fail(f"{method} was refused naming mode {exc.mode}, not {mode}") from exc
                refused.append(method)
                continue
            raise Fail(f"{method} was accepted while the canister is {mode}")
        return refused

    async def _mode(self) -> ModeInfo:
        mode = (await self.icrp.config()).mode
        if mode is None:
            raise Fail("the canister claims 'mode' but icrp_config shows no mode")
        return mode

    def _test_range(self) -> KeyRange:
        """A small key range of this canister's (a shard's own) that no application uses."""
        key_range = self.need_info().key_range or KeyRange()
        test = KeyRange(key_range.lower + _TEST_SUFFIX, key_range.lower + _TEST_SUFFIX + b"\xff")
        if not key_range.contains(test.lower) or (
            key_range.upper is not None and test.upper is not None and test.upper > key_range.upper
        ):
            raise Skip("the canister's key range is too narrow for the suite's test range")
        return test

    async def _test_range_empty(self) -> bool:
        return not (await self.icrp.export_range(self._test_range(), None, 1024)).records

    async def mode_standby(self) -> str:
        info = self.need("mode")
        self.need_commit("a standby refuses the canister's writes for a moment")
        before = await self._mode()
        head = (await self._journal()).head_seq
        try:
            standby = await self.icrp.set_mode("standby")
            if standby.mode != "standby":
                raise Fail(f"icrp_set_mode(standby) answered {standby}")
            accepted = []
            if info.can("apply"):
                await self.icrp.apply(ChangeBatch(head, head, head))
                accepted.append("icrp_apply")
            if info.can("key_range"):
                await self.icrp.import_records([])
                accepted.append("icrp_import_records")
            refused = await self._refused_while("standby", head)
        finally:
            await self.icrp.set_mode(before.mode, before.redirect)
        took = ", ".join(accepted) or "nothing to try"
        return f"a standby takes {took}; refuses {', '.join(refused) or 'nothing tried'}"

    async def distribution(self) -> str:
        self.need("key_distribution")
        records, key_range = self.need_records()
        bucket_bytes = max(1, sum(len(r.key) + len(r.value) for r in records) // 8)
        buckets: list[KeyBucket] = []
        cursor: bytes | None = None
        for _ in range(1000):
            page = await self.icrp.key_distribution(key_range, cursor, bucket_bytes)
            buckets.extend(page.buckets)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        keys = [r.key for r in records]
        firsts = [b.first_key for b in buckets]
        if firsts != sorted(set(firsts)) or not set(firsts) <= set(keys):
            raise Fail("bucket first keys are not record keys in increasing order")
        if records and firsts[:1] != keys[:1]:
            raise Fail("the first bucket does not start at the range's first record")
        counted = (sum(b.records for b in buckets), sum(b.bytes for b in buckets))
        expected = (len(records), sum(len(r.key) + len(r.value) for r in records))
        if counted != expected:
            raise Fail(f"buckets hold {counted} (records, bytes), the range holds {expected}")
        return f"{len(buckets)} bucket(s) of about {bucket_bytes:,} bytes cover {len(records)}"

    async def range_digest(self) -> str:
        self.need("range_digest")
        records, key_range = self.need_records()
        before = (await self._journal()).head_seq if self.need_info().can("journal") else None
        got = await self.icrp.whole_range_digest(key_range)
        if before is not None and got.journal_seq != before:
            raise Skip("the journal head moved during the check: the canister is not quiet")
        expected = RangeDigest.of_records(records)
        if not got.same_records(expected):
            raise Fail(
                f"the range digest says {got.records} records, {got.bytes} bytes, "
                f"{got.digest.hex()}; the records exported give {expected.records}, "
                f"{expected.bytes}, {expected.digest.hex()}"
            )
        return f"{got.records} record(s): the digest matches the exported records"

    async def fences(self) -> str:
        info = self.need("fences")
        if not info.can("key_range"):
            raise NotApplicable(
                "not applicable: fences are checked through icrp_import_records ('key_range')"
            )
        if not await self._test_range_empty():
            raise Skip("the canister holds records in the suite's test range")
        before = (await self.icrp.config()).fences
        owner, test = Principal.of("aaaaa-aa"), self._test_range()
        try:
            await self.icrp.set_fences([*before, Fence(test, owner)])
        except errs.InvalidArgument as exc:
            raise Skip(f"an existing fence overlaps the suite's test range: {exc}") from exc
        try:
            return await self._fenced_write_refused(test, owner, before)
        finally:
            await self.icrp.set_fences(before)

    async def _fenced_write_refused(
        self, test: KeyRange, owner: Principal, before: tuple[Fence, ...]
    ) -> str:
        key = test.lower + b"-key"
        try:
            await self.icrp.import_records([Record(key, b"icrp conformance")])
        except errs.OutOfRange as exc:
            if exc.owner != owner:
                raise Fail(f"OutOfRange names owner {exc.owner}, the fence says {owner}") from exc
        else:
            await self.icrp.delete_range(KeyRange(key, key + b"\x00"), None, 1)
            raise Fail("a record in a fenced range was stored")
        try:
            await self.icrp.set_fences([*before, Fence(test), Fence(test)])
        except errs.InvalidArgument:
            return "a fenced key is refused with OutOfRange naming the owner; overlaps refused"
        raise Fail("overlapping fences were accepted")

    async def routing(self) -> str:
        self.need("routing")
        current = await self.icrp.routing()
        if self.other is not None and await self.other.routing() != current:
            raise Fail("an untrusted caller reads a different routing table")
        overlap = Route(KeyRange(b"a", b"c"), self.canister), Route(KeyRange(b"b"), self.canister)
        try:
            await self.icrp.set_routing(Routing(current.version + 1, overlap))
        except errs.InvalidArgument:
            pass
        else:
            raise Fail("a routing table with overlapping routes was accepted")
        await self.icrp.set_routing(current)  # the same table again: accepted, no change
        if await self.icrp.routing() != current:
            raise Fail("setting the current table again changed it")
        if current.version > 0:
            try:
                # A table that differs from the current one (an empty one may be current).
                other = () if current.routes else (Route(KeyRange(b""), self.canister),)
                await self.icrp.set_routing(Routing(current.version, other))
            except errs.InvalidArgument:
                pass
            else:
                raise Fail("another table under the current version was accepted")
        public = "readable by anyone" if self.other is not None else "readable"
        if not self.allow_commit:
            return f"version {current.version}, {public}; invalid tables refused"
        newer = Routing(current.version + 1, current.routes)
        await self.icrp.set_routing(newer)
        if await self.icrp.routing() != newer:
            raise Fail("the published table is not the one served")
        return f"version {current.version} republished as {newer.version}, {public}"

    async def journal_reset(self) -> str:
        self.need("journal_reset")
        self.need_commit("icrp_reset_journal empties the journal (replicas need a new image)")
        head = (await self._journal()).head_seq
        await self.icrp.reset_journal(head)
        after = await self._journal()
        if (after.head_seq, after.oldest_seq, after.entries) != (head, head, 0):
            raise Fail(
                f"after icrp_reset_journal({head}) the journal is at {after.head_seq}, "
                f"oldest {after.oldest_seq}, {after.entries} entries"
            )
        if head > 0:
            try:
                await self.icrp.changes(head - 1, 1024)
            except errs.TooOld:
                pass
            else:
                raise Fail("changes from before the reset are still served")
        detail = f"the journal restarted at {head}"
        if self.need_info().can("apply"):
            # A shard continues a source's numbering: the next batch starts at the reset.
            ahead = head + 1
            await self.icrp.reset_journal(ahead)
            applied = await self.icrp.apply(ChangeBatch(ahead, ahead + 1, ahead + 1))
            if applied != ahead + 1:
                raise Fail(f"after a reset to {ahead} icrp_apply answered {applied}")
            detail += f"; reset to {ahead}, icrp_apply continued from there"
        return detail

    async def fleet_members(self) -> str:
        self.need("fleet")
        members: list[bytes] = []
        cursor: Principal | None = None
        pages = 0
        while pages < 200:
            page = await self.icrp.fleet_members(cursor, 100)
            pages += 1
            if page.members and cursor is not None and page.members[0].canister != cursor:
                raise Fail(f"a page does not start at its cursor {cursor}")
            members.extend(m.canister.raw for m in page.members)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if members != sorted(set(members)):
            raise Fail("members are not in strictly increasing principal order")
        more = "" if cursor is None or pages < 200 else " (stopped after 200 pages)"
        return f"{len(members)} member(s) in {pages} page(s){more}"


# ------------------------------------------------------------------- outcome


async def _outcome(check: Check, retry_delays: tuple[float, ...]) -> tuple[Status, str]:
    for delay in (*retry_delays, None):
        try:
            return "passed", await check()
        except NotApplicable as skip:
            return "skipped", str(skip)
        except Skip as skip:
            return "not_run", str(skip)
        except Fail as fail:
            return "failed", str(fail)
        except TransientError as exc:
            if delay is None:
                attempts = len(retry_delays) + 1
                return "not_run", f"could not complete in {attempts} attempts: {exc}"
            await asyncio.sleep(delay)
        except IcError as exc:
            return "failed", f"unexpected error: {exc}"
    raise AssertionError("unreachable: the last attempt returns")


async def _all_refused(attempts: list[tuple[str, Callable[[], Awaitable[object]]]]) -> str:
    accepted, odd = [], []
    for method, attempt in attempts:
        try:
            await attempt()
        except AccessDenied:
            continue
        except IcError as exc:
            odd.append(f"{method} ({type(exc).__name__})")
            continue
        accepted.append(method)
    if accepted:
        raise Fail(f"an untrusted caller was served by {', '.join(accepted)}")
    if odd:
        raise Fail(f"refused, but not as NotAuthorized: {', '.join(odd)}")
    return f"all {len(attempts)} methods refused with NotAuthorized"


def _info_problems(info: Info) -> list[str]:
    problems = []
    if info.protocol_version != PROTOCOL_VERSION:
        problems.append(f"protocol_version {info.protocol_version}, expected {PROTOCOL_VERSION}")
    if info.role not in ROLES:
        problems.append(f"unknown role {info.role}")
    if not 0 < info.max_transfer_bytes <= IC_MESSAGE_LIMIT:
        problems.append(f"max_transfer_bytes {info.max_transfer_bytes:,} is not in 1..2 MiB")
    if info.image is not None and info.image.chunk_size <= 0:
        problems.append("the image's chunk_size is 0")
    if info.image is not None and info.image.digest is not None and len(info.image.digest) != 32:
        problems.append("the image digest is not 32 bytes")
    if info.journal is not None and info.journal.oldest_seq > info.journal.head_seq:
        problems.append("the journal's oldest_seq is beyond its head_seq")
    if (
        info.trusted
        and info.role != "backup"
        and (info.role == "shard") != (info.key_range is not None)
    ):
        problems.append(f"role {info.role} with key_range {info.key_range}")
    return problems


def _ticket_problems(ticket: ExportTicket) -> list[str]:
    problems = []
    if ticket.chunk_size <= 0:
        return ["chunk_size is 0"]
    if ticket.chunk_count != chunk_count(ticket.size, ticket.chunk_size):
        problems.append(
            f"chunk_count {ticket.chunk_count} for {ticket.size} bytes in chunks of "
            f"{ticket.chunk_size}"
        )
    if ticket.digest is None or len(ticket.digest) != 32:
        problems.append("a ready ticket needs a 32-byte digest")
    return problems


def _chunks_to_verify(ticket: ExportTicket, max_verify_bytes: int) -> list[int]:
    if ticket.chunk_count == 0:
        return []
    if ticket.size <= max_verify_bytes:
        return list(range(ticket.chunk_count))
    return sorted({0, ticket.chunk_count // 2, ticket.chunk_count - 1})


def _check_cursor(cursor: bytes | None, keys: list[bytes]) -> None:
    if cursor is not None and keys and cursor <= keys[-1]:
        raise Fail(f"next_cursor {cursor.hex()} does not come after the last key {keys[-1].hex()}")


def _key_outside(key_range: KeyRange) -> bytes | None:
    if key_range.lower > b"":
        return b""
    return key_range.upper


def _test_bytes(size: int) -> bytes:
    """Deterministic bytes that no canister would take for a valid image."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"icrp conformance %d" % counter).digest()
        counter += 1
    return bytes(out[:size])


_REQ = {
    "info.well_formed": "icrp_info: version 1, a known role, trusted for a controller, "
    "max_transfer_bytes within 2 MiB, consistent image/journal/key range",
    "info.hides_state": "icrp_info reveals no image, journal or key range to an untrusted caller",
    "export.ready": "icrp_begin_export gives a ticket that becomes ready, with chunk_count = "
    "ceil(size / chunk_size) and a 32-byte digest",
    "export.read_exact": "icrp_read returns exactly the bytes asked for (fewer only at the end), "
    "never more than max_transfer_bytes",
    "export.image_digest": "the image digest is SHA-256 over the ordered chunk digests",
    "export.chunk_digests": "every chunk read back hashes to its icrp_chunk_digests entry",
    "export.read_for_write": "icrp_read_for_write answers icrp_read's bytes as (import_id, "
    "offset, blob), echoing both, and rejects a stale snapshot and an untrusted caller",
    "access.reads_refused": "an untrusted caller cannot export, read or list anything "
    "(NotAuthorized)",
    "export.ids_increase": "after icrp_end_export the next image gets a larger snapshot id",
    "export.stale_snapshot": "a read of a snapshot that is no longer readable fails with "
    "StaleSnapshot",
    "import.idempotent_write": "icrp_begin_import is resumable; the same bytes written twice "
    "at the same offset are accepted and held once",
    "import.conflict": "different bytes at an offset already written fail with Conflict",
    "access.writes_refused": "an untrusted caller cannot import, apply, configure or end "
    "exports (NotAuthorized), and its calls change nothing",
    "import.incomplete": "a commit before every chunk is written fails with Incomplete",
    "import.digest_mismatch": "a commit of an image that does not match its digest fails with "
    "DigestMismatch, aborts the import and leaves the state as it was",
    "import.chunk_digest": "with chunk digests in the spec a wrong chunk is refused at once "
    "(DigestMismatch) and can be written again",
    "import.abort": "icrp_abort_import discards the import; later writes are refused",
    "journal.changes": "icrp_changes from oldest_seq returns increasing sequence numbers "
    "within (from_seq, to_seq]",
    "journal.too_old": "icrp_changes with since_seq older than the journal fails with TooOld",
    "apply.gap": "icrp_apply of a batch beyond the canister's sequence number fails with Gap "
    "and changes nothing",
    "key_range.export": "icrp_export_range pages through the range in key order via next_cursor",
    "key_range.out_of_range": "a shard refuses records outside its key range with OutOfRange",
    "push.write": "icrp_push writes the byte range into the target's import",
    "peers.compare_and_set": "icrp_update_peers refuses a stale expected_version and changes "
    "nothing; an applied change or a re-grant increases the version (controllers only)",
    "import.commit_roundtrip": "the canister's own image, imported and committed, leaves its "
    "state unchanged",
    "journal.backlog": "icrp_backlog counts the changes a replica lacks and the time of the "
    "oldest; TooOld below oldest_seq, InvalidArgument beyond the head",
    "journal.range_filter": "icrp_changes with a range returns only changes of keys in it, "
    "and covers the interval it scanned",
    "journal.push_changes": "icrp_push_changes has the target apply the source's changes",
    "export.at_seq": "icrp_begin_export_at gives an image at exactly that sequence, TooOld "
    "behind the head, and waits for a sequence ahead of it",
    "mode.fence": "read_only refuses every change with NotWritable naming the mode, answers "
    "the final sequence, and is reversible",
    "mode.standby": "a standby takes replication (icrp_apply, icrp_import_records) and "
    "refuses icrp_delete_range with NotWritable",
    "key_range.distribution": "icrp_key_distribution buckets cover the range's records and "
    "bytes in key order",
    "key_range.digest": "icrp_range_digest pages add up to the digest of the records "
    "icrp_export_range returns",
    "key_range.fences": "a fenced range refuses writes with OutOfRange naming the owner; "
    "overlapping fences are refused",
    "routing.public": "icrp_routing is readable by anyone; tables must grow in version and "
    "not overlap",
    "fleet.members": "icrp_fleet_members pages through the members in principal order",
    "journal.reset": "icrp_reset_journal empties the journal and numbers the next change "
    "after the sequence given, so icrp_apply continues from there",
}
