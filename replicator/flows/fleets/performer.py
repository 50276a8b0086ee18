"""Performs a fleet run: lists the members, then runs each due member's job.

Members run through the same engine as any job (``RunContext.submit``), so
they share its limits (calls/s, bytes/s, calls in flight, windows, the
cycles budget) with each other and with every other job of the process.
At most ``concurrency`` members run at once, taken fairest first (never
backed up, then the longest since a success).

A member's failure is classified (:func:`failure_class`), counted and
recorded in the member table with a backoff; it never stops the others.
Only cancellation stops the run: finished members keep their record, the
interrupted ones are resumed from their own checkpoints by the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from canister_iface import errors as ic
from replicator.classify import job_level_error
from replicator.errors import CheckpointError, ReplicatorError, UsageError
from replicator.fleetstore import FleetTable, MemberResult, MemberRow, fleet_table
from replicator.flow import RunContext, RunReport
from replicator.flows import backup, verify
from replicator.flows.compact import kind as compact
from replicator.flows.fleets.budget import FleetFunding, keep_member_alive
from replicator.flows.fleets.machine import Discover, Discovered, MembersRan, RunMembers
from replicator.flows.fleets.members import discover
from replicator.flows.fleets.metrics import FleetMetrics, failure_class
from replicator.flows.fleets.options import BACKUP, FleetOptions
from replicator.flows.fleets.timing import next_slot, retry_at
from replicator.flows.image.cycles import top_up_funding
from replicator.flows.snapshot import jobs as snapshot
from replicator.job import CanisterRef, JobOutcome, JobRequest, JobState
from replicator.pool import WarmPool

log = logging.getLogger(__name__)

# Member failures shown as notes of the fleet run (the rest: log and status).
NOTED_FAILURES = 10


class FleetPerformer:
    """See the module docstring."""

    def __init__(self, ctx: RunContext, *, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.options = FleetOptions.of(ctx.job)
        self.table: FleetTable = fleet_table(ctx.store)
        self.metrics = ctx.metrics.extension(FleetMetrics)
        self.metrics.add_fleet(self.options.name, self.options.action)
        self._clock = clock
        self._ran: Counter[str] = Counter()
        self._noted = 0
        if ctx.submit is None:
            raise UsageError("a fleet run needs an engine that runs its members' jobs")
        self._submit = ctx.submit
        # The per-subnet limits' map (None: none configured); the member table caches it.
        self._subnets = ctx.calls.subnets_for(self.options.network)
        self.funding = FleetFunding(
            self.options.name,
            budget=self.options.cycles_budget,
            period=self.options.cycles_budget_period,
            spending=ctx.store.spending,
            metrics=self.metrics,
            wall=clock,
        )

    async def perform(self, effect: object) -> object | None:
        match effect:
            case Discover():
                return await self._discover()
            case RunMembers(round_id=round_id):
                return await self._run_members(round_id)
        raise TypeError(f"a fleet run cannot perform {effect!r}")

    def report(self, state: JobState) -> RunReport:
        d = state.detail
        details = {
            "fleet": self.options.name,
            "action": self.options.action,
            "members_listed": d.get("listed"),
            "members_added": d.get("added"),
            "members_gone": d.get("gone"),
            "members_ok": d.get("ok"),
            "members_failed": d.get("failed"),
            "member_failures": dict(d.get("failures") or {}),
            "members_run_now": sum(self._ran.values()),
        }
        return RunReport(details=details)

    async def close(self) -> None:
        return None

    # -- discovery

    async def _discover(self) -> Discovered:
        o = self.options
        ids = await discover(self.ctx.calls, self.ctx.job.source, o.network, o.raw)
        now = self._clock()
        change = await self.table.sync(o.table, o.network, ids, now)
        self.metrics.listing.labels(o.name, o.action).set(now)
        self.ctx.note(
            f"fleet {o.name}: {change.total} members listed, {change.added} new, "
            f"{change.returned} back, {change.gone} gone"
        )
        await self._count()
        await self.funding.refresh()
        return Discovered(change.total, change.added + change.returned, change.gone)

    # -- the members

    async def _run_members(self, round_id: str) -> MembersRan:
        o = self.options
        now = self._clock()
        rows = await self.table.due(o.table, o.network, round_id, now if o.due_only else None)
        if self._subnets is not None:
            self._subnets.learn((r.member, r.subnet) for r in rows if r.subnet is not None)
        if rows:
            self.ctx.note(
                f"fleet {o.name}: running {len(rows)} members, at most {o.concurrency} at once"
            )
        await self.funding.refresh()
        queue: asyncio.Queue[MemberRow] = asyncio.Queue()
        for row in rows:
            queue.put_nowait(row)
        async with asyncio.TaskGroup() as group:
            if o.pool:
                group.create_task(self._refill())
            for _ in range(min(o.concurrency, len(rows))):
                group.create_task(self._worker(queue, round_id))
        if o.pool:
            await self._refill()  # members may have taken the last ones
        return await self._totals(round_id)

    async def _refill(self) -> None:
        """Keep the warm pool full beside the members; a failure stops the refill only."""
        o = self.options
        pool = WarmPool(
            self.ctx.provisioner_for(o.network),
            o.pool,
            on_count=lambda count: self.metrics.pool_size.labels(o.name).set(count.ready),
        )
        self.metrics.pool_target.labels(o.name).set(o.pool)
        try:
            made = await pool.refill()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the pool is an optimisation: members go on without it
            made = pool.created
            self.ctx.note(f"fleet {o.name}: the warm pool was not refilled: {job_level_error(exc)}")
            log.warning("fleet %s: warm pool refill failed", o.name, exc_info=exc)
        self.metrics.pool_created.labels(o.name).inc(made)
        if made:
            self.ctx.note(f"fleet {o.name}: {made} warm-pool backup canisters made ready")

    async def _worker(self, queue: asyncio.Queue[MemberRow], round_id: str) -> None:
        while not queue.empty():
            row = queue.get_nowait()
            result = await self._member(row, round_id)
            await self.table.finish(self.options.table, self.options.network, round_id, result)
            self._ran["ok" if result.ok else "failed"] += 1

    async def _member(self, row: MemberRow, round_id: str) -> MemberResult:
        o = self.options
        gauge = self.metrics.running.labels(o.name, o.action)
        gauge.inc()
        try:
            request = await self._request(CanisterRef(row.member, o.network), round_id)
            done = await self._finished_before(request.id) or await self._funded(
                request, row.member
            )
            outcome: JobOutcome | None = done
            ok, code, error = done.ok, done.exit_code, done.error
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one member's failure never stops the fleet
            outcome = None
            failure = job_level_error(exc)
            if not isinstance(exc, ReplicatorError | ic.IcError):
                log.error(
                    "fleet %s: member %s failed unexpectedly", o.name, row.member, exc_info=exc
                )
            ok, code, error = False, failure.exit_code, str(failure) or type(failure).__name__
        finally:
            gauge.dec()
        self.metrics.ran(o.name, o.action, ok, code)
        now = self._clock()
        if not ok:
            self._note_failure(row.member, error)
        # The backup canister a member's backup (or compact) went through.
        target = None if outcome is None or o.action == "verify" else outcome.job.target
        return MemberResult(
            member=row.member,
            ok=ok,
            at=now,
            next_due=(
                next_slot(row.member, o.every, now)
                if ok
                else retry_at(row.failures + 1, o.every, now)
            ),
            error=None if ok else error,
            error_class=None if ok else failure_class(code),
            backup=target.canister_id if isinstance(target, CanisterRef) else None,
            subnet=None if self._subnets is None else self._subnets.known(row.member),
        )

    async def _request(self, member: CanisterRef, round_id: str) -> JobRequest:
        """The member's job of this round, of the kind the fleet's action names."""
        # One job id per member and round: a run killed after the member's job
        # ended, but before the member table recorded it, finds it done.
        o = self.options
        key = hashlib.sha256(f"{round_id}\0{member.canister_id}".encode()).hexdigest()[:12]
        job_id = f"{o.action}-{key}"
        match o.action:
            case "snapshot-backup":
                assert o.repository is not None  # checked by FleetOptions
                return snapshot.backup_request(member, o.repository, stop=o.stop, job_id=job_id)
            case "compact":
                return compact.request(member, wasm=o.wasm, job_id=job_id)
            case "verify":
                return verify.request(await self._backup_of(member), job_id=job_id)
        assert o.action == BACKUP
        return backup.request(member, keep=o.keep, job_id=job_id)

    async def _backup_of(self, member: CanisterRef) -> CanisterRef:
        """The member's backup canister (what ``verify`` reads), from the registry."""
        canister = await self.ctx.provisioner_for(member.network).existing(member.canister_id)
        if canister is None:
            raise UsageError(
                f"{member} has no backup canister to verify yet; run `replicator fleet backup "
                f"{self.options.name}` first"
            )
        return CanisterRef(canister.to_text(), member.network)

    async def _funded(self, request: JobRequest, member: str) -> JobOutcome:
        """The member's job, its top-ups (and the member's, if asked) drawn from the fleet's."""
        o = self.options
        token = top_up_funding.set(self.funding)
        try:
            if o.top_up_members:
                policy = self.ctx.settings.top_up
                await keep_member_alive(self.ctx, member, o.network, self.funding, policy)
            return await self._submit(request)
        finally:
            top_up_funding.reset(token)

    async def _finished_before(self, job_id: str) -> JobOutcome | None:
        """The outcome of the member's job of this round if it is done already."""
        try:
            checkpoint = await self.ctx.store.load(job_id)
        except CheckpointError:  # no such job yet: the usual case
            return None
        state = checkpoint.state
        return JobOutcome(state.job, state, resumed=True) if state.finished else None

    def _note_failure(self, member: str, error: str | None) -> None:
        log.warning("fleet %s: member %s failed: %s", self.options.name, member, error)
        self._noted += 1
        if self._noted <= NOTED_FAILURES:
            self.ctx.note(f"member {member} failed: {error}")
        elif self._noted == NOTED_FAILURES + 1:
            self.ctx.note("more members failed; `replicator fleet status` lists them all")

    async def _totals(self, round_id: str) -> MembersRan:
        rows = await self._count()
        mine = [r for r in rows if r.round == round_id]
        ok = sum(1 for r in mine if r.state == "ok")
        failures = Counter(r.error_class or "failed" for r in mine if r.state == "failing")
        return MembersRan(ok=ok, failed=sum(failures.values()), failures=dict(failures))

    async def _count(self) -> list[MemberRow]:
        o = self.options
        rows = await self.table.members(o.table, o.network)
        self.metrics.counted(o.name, o.action, rows, o.every)
        return rows
