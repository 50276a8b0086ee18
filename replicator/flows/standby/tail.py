"""The tail of a standby: the source's journal applied to the standby, for as long as it runs.

    applied = the standby's journal head            (the truth on every start)
    read (applied, max_bytes]   ─ icrp_changes (query) on the source
    apply it                    ─ icrp_apply (update) on the standby
      behind the head (a backlog): the next batch is read while this one
      applies (pipelined, for throughput); at the head: the next read is made
      once the apply returned, so it holds every change made meanwhile (a
      read made at the start of a 1.5 s apply would miss them: for latency)
    nothing new: sleep, doubling the interval up to ``poll_max`` (adaptive);
    changes again: poll at once

Only one ``icrp_apply`` is in flight: update calls may be executed in any
order, and the standby refuses a batch that starts beyond its sequence
(``Gap``).  ``icrp_apply`` is idempotent by sequence number, so a batch
applied twice after a crash is harmless; nothing is skipped because each
read starts where the previous batch ended.

How it ends (the machine's events): ``TooOld`` from the source → ``Resync``
(the standby is seeded again); ``Gap`` from the standby → ``GapFound`` (a
bug or a second writer: stop rather than guess); a consistency check that
finds different images at one sequence → ``Diverged``; with ``once``, the
standby at the source's head → ``CaughtUp``.  Otherwise it runs until
cancelled.

Consistency check (every ``check_interval`` seconds): with the tail paused,
the source freezes an image (``icrp_begin_export``: its head S, which the
standby has not passed) and the standby registers an image at S
(``icrp_begin_export_at``); the tail goes on, and once the standby applied
S both images are compared.  The check shares the source's one export
image with backups of the same source: a backup in between makes the check
``skipped`` this time (and the backup may restart once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from canister_iface import icrp_errors as ie
from canister_iface.icrp_types import ChangeBatch, ExportTicket
from replicator.errors import UsageError
from replicator.flows.image.canister import CanisterSource
from replicator.flows.standby import images
from replicator.flows.standby.machine import (
    RESYNC_TOO_OLD,
    CaughtUp,
    Diverged,
    GapFound,
    Resync,
)
from replicator.flows.standby.metrics import StandbyMetrics
from replicator.job import Job, Scalar

DEFAULT_POLL_MIN = 0.05  # seconds: the first idle sleep
DEFAULT_POLL_MAX = 1.0  # seconds: the idle ceiling (option poll_max)
DEFAULT_CHECK_INTERVAL = 3600.0  # seconds between consistency checks (0: never)
# A batch must fit one ingress message with its Candid envelope (2 MiB).
DEFAULT_MAX_BYTES = 1_800_000


@dataclass(frozen=True)
class TailOptions:
    """How a standby follows its source (the job's options)."""

    poll_min: float = DEFAULT_POLL_MIN
    poll_max: float = DEFAULT_POLL_MAX
    check_interval: float = DEFAULT_CHECK_INTERVAL
    max_bytes: int = DEFAULT_MAX_BYTES
    once: bool = False  # stop once the standby is at the source's head

    @classmethod
    def of(cls, job: Job) -> TailOptions:
        o = job.options
        options = cls(
            poll_min=_number(o, "poll_min", DEFAULT_POLL_MIN),
            poll_max=_number(o, "poll_max", DEFAULT_POLL_MAX),
            check_interval=_number(o, "check_interval", DEFAULT_CHECK_INTERVAL),
            max_bytes=int(_number(o, "max_bytes", DEFAULT_MAX_BYTES)),
            once=bool(o.get("once", False)),
        )
        if options.poll_max <= 0 or options.poll_min <= 0:
            raise UsageError("poll_min and poll_max must be positive seconds")
        if options.max_bytes < 1024:
            raise UsageError(f"max_bytes must be at least 1024, got {options.max_bytes}")
        if options.check_interval < 0:
            raise UsageError("check_interval must be 0 (never) or positive seconds")
        if options.poll_min > options.poll_max:  # the first idle sleep stays under the ceiling
            options = replace(options, poll_min=options.poll_max)
        return options


def _number(options: Mapping[str, Scalar], name: str, default: float) -> float:
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"option {name} must be a number, got {value!r}")
    return float(value)


@dataclass
class _Check:
    """A consistency check waiting for the standby to reach ``seq``."""

    seq: int
    source: ExportTicket
    standby: ExportTicket


Event = Resync | GapFound | Diverged | CaughtUp


class Tail:
    """One tail run of one standby job."""

    def __init__(
        self,
        source: CanisterSource,
        standby: CanisterSource,
        options: TailOptions,
        metrics: StandbyMetrics,
        name: str,
        note: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.standby = standby
        self.options = options
        self.metrics = metrics
        self.name = name
        self.note = note
        self.clock = clock
        self.applied = 0
        self.changes_applied = 0
        self.bytes_applied = 0
        self.checks: dict[str, int] = {}
        self._next_check = clock() + options.check_interval
        self._check: _Check | None = None

    async def run(self) -> Event:
        self.applied = await self.standby_head()
        self.metrics.start(self.name)
        self.note(f"following {self.source.endpoint} from journal sequence {self.applied}")
        cursor = self.applied
        interval = self.options.poll_min
        reading: asyncio.Task[ChangeBatch] | None = None
        try:
            while True:
                reading = reading or asyncio.ensure_future(self._read(cursor))
                try:
                    batch = await reading
                except ie.TooOld as exc:
                    return self._too_old(exc)
                reading = None
                self._observe_lag(batch)
                if batch.to_seq <= cursor:  # nothing new
                    if self.options.once and self.applied >= batch.head_seq:
                        return CaughtUp(self.applied)
                    ended = await self._maybe_check()
                    if ended is not None:
                        return ended
                    await asyncio.sleep(interval)
                    interval = min(interval * 2, self.options.poll_max)
                    continue
                interval = self.options.poll_min
                cursor = batch.to_seq
                if batch.to_seq < batch.head_seq:  # more waiting: read it while this applies
                    reading = asyncio.ensure_future(self._read(cursor))
                try:
                    await self._apply(batch)
                except ie.Gap as exc:
                    return self._gap(exc)
                if self.applied != cursor:  # the standby says where it is: follow its word
                    if reading is not None:
                        reading.cancel()
                    reading, cursor = None, self.applied
                ended = await self._maybe_check()
                if ended is not None:
                    return ended
        finally:
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(BaseException):
                    await reading

    # -- the journal

    async def standby_head(self) -> int:
        info = await self.standby.call("icrp_info", self.standby.client.info, cost="query")
        if info.journal is None:
            raise UsageError(f"{self.standby.endpoint} reports no journal: it cannot be a standby")
        return info.journal.head_seq

    async def _read(self, since: int) -> ChangeBatch:
        max_bytes = self.options.max_bytes
        return await self.source.call(
            "icrp_changes",
            lambda: self.source.client.changes(since, max_bytes),
            cost="query",
            nbytes=max_bytes,
            urgent=True,  # the tail's lag is the product: it goes before bulk copies
        )

    async def _apply(self, batch: ChangeBatch) -> None:
        nbytes = sum(c.size for c in batch.changes)
        self.applied = await self.standby.call(
            "icrp_apply", lambda: self.standby.client.apply(batch), nbytes=nbytes, urgent=True
        )
        self.changes_applied += len(batch.changes)
        self.bytes_applied += nbytes
        now = self.clock()
        self.metrics.applied(
            self.name, seq=self.applied, changes=len(batch.changes), nbytes=nbytes, at=now
        )
        self.metrics.delayed(self.name, now, [c.time for c in batch.changes])
        self.metrics.lag(
            self.name,
            seconds=0.0 if self.applied >= batch.head_seq else self._lag_after(batch),
            changes=max(0, batch.head_seq - self.applied),
        )

    def _lag_after(self, batch: ChangeBatch) -> float:
        # The next batch's first change is not known yet; the last one applied is
        # at most as old, so the lag is at least its age.
        if not batch.changes:
            return 0.0
        return max(0.0, self.clock() - batch.changes[-1].time / 1e9)

    def _observe_lag(self, batch: ChangeBatch) -> None:
        """Everything up to the cursor is applied: the batch's first change is the oldest
        change the standby lacks."""
        behind = max(0, batch.head_seq - self.applied)
        seconds = 0.0
        if behind and batch.changes:
            seconds = max(0.0, self.clock() - batch.changes[0].time / 1e9)
        self.metrics.lag(self.name, seconds=seconds, changes=behind)

    def _too_old(self, exc: ie.TooOld) -> Resync:
        message = (
            f"the journal of {self.source.endpoint} no longer reaches back to sequence "
            f"{self.applied} (it starts after {exc.oldest_seq}): seeding the standby again "
            "from a fresh image"
        )
        self.note(message)
        self.metrics.resynced(self.name, RESYNC_TOO_OLD)
        return Resync(RESYNC_TOO_OLD, message)

    def _gap(self, exc: ie.Gap) -> GapFound:
        return GapFound(
            f"{self.standby.endpoint} is at sequence {exc.applied_seq} but was sent changes "
            f"from {exc.from_seq}: something else changes the standby (a second writer, or "
            "a bug). The standby stopped following; check who writes to it, then re-run the "
            "job (it seeds the standby again if its journal no longer fits)"
        )

    # -- consistency checks

    async def _maybe_check(self) -> Diverged | None:
        if self._check is not None:
            return await self._finish_check(self._check)
        interval = self.options.check_interval
        if interval <= 0 or self.clock() < self._next_check:
            return None
        self._next_check = self.clock() + interval
        await self._start_check()
        return None

    async def _start_check(self) -> None:
        try:
            source = await self.source.call("icrp_begin_export", self.source.client.begin_export)
            seq = source.journal_seq
            standby = await self.standby.call(
                "icrp_begin_export_at", lambda: self.standby.client.begin_export_at(seq)
            )
        except (ie.TooOld, ie.StaleSnapshot, ie.NotReady) as exc:
            self._checked("skipped", f"no common image this time ({exc})")
            return
        self._check = _Check(seq, source, standby)

    async def _finish_check(self, check: _Check) -> Diverged | None:
        if self.applied < check.seq:
            return None
        self._check = None
        try:
            source = await images.ready(self.source, check.source)
            standby = await images.ready(self.standby, check.standby)
        except (ie.TooOld, ie.StaleSnapshot) as exc:
            self._checked("skipped", f"an image was replaced before the comparison ({exc})")
            return None
        try:
            return await self._compare(check, source, standby)
        except ie.StaleSnapshot as exc:
            self._checked("skipped", f"an image was replaced during the comparison ({exc})")
            return None
        finally:
            await images.release(self.source, source)
            await images.release(self.standby, standby)

    async def _compare(
        self, check: _Check, source: ExportTicket, standby: ExportTicket
    ) -> Diverged | None:
        if standby.journal_seq != check.seq or source.journal_seq != check.seq:
            self._checked("skipped", "the images are not at the same sequence")
            return None
        if await images.same_image(self.source, source, self.standby, standby):
            self._checked("match", "")
            return None
        self._checked("mismatch", "")
        return Diverged(
            f"consistency check failed: at journal sequence {check.seq} {self.source.endpoint} "
            f"has image digest {_hex(source.digest)} and the standby {self.standby.endpoint} "
            f"{_hex(standby.digest)}. The standby is not a faithful copy: do not promote it. "
            "Find out what changed it, then re-seed it (a new standby job)"
        )

    def _checked(self, outcome: str, why: str) -> None:
        self.checks[outcome] = self.checks.get(outcome, 0) + 1
        self.metrics.checked(self.name, outcome)
        if why:
            self.note(f"consistency check {outcome}: {why}")


def _hex(digest: bytes | None) -> str:
    return "none" if digest is None else digest.hex()
