"""Failover: make a standby the primary (``replicator promote``).

Normal case, in this order (``icrp.did``, "Modes")::

    fence the primary        icrp_set_mode(read_only, redirect = the standby) → final sequence F
    drain                    icrp_changes → icrp_apply until the standby applied F
    compare                  icrp_begin_export_at(F) on both: the same image, or no switch
    switch                   icrp_set_mode(primary) on the standby

If anything before the switch fails (the digests differ, a call fails for
good), the primary is set back to ``primary`` (best effort) and the
promotion fails: writes go on where they went, and nothing was lost.

``force`` (the primary is unreachable or stopped): the standby is promoted
with what it applied.  The old primary is fenced if it still answers (one
attempt), so it cannot take writes that nobody follows; what may be lost is
stated: the standby's applied sequence against the last head known (the
primary's, if it answered), the number of changes between them and their
time window, or — if the primary does not answer — the time of the last
change the standby applied: writes after it may be lost.

Which canister is the primary: the one the standby's mode redirects writes
to (a standby job sets it), or the one given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.icrp_types import ChangeBatch, ExportTicket, Info
from replicator.errors import IntegrityError, JobFailed, ReplicatorError, UsageError
from replicator.flow import Calls
from replicator.flows.image.canister import CanisterSource
from replicator.flows.standby import images
from replicator.job import CanisterRef
from replicator.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

_ONE_TRY = RetryPolicy(max_attempts=1)
_REACH_SECONDS = 10.0  # how long a forced promotion waits for an old primary to answer
_MAX_BYTES = 1_800_000


@dataclass(frozen=True)
class Promotion:
    """What a promotion did, and with ``forced`` what may have been lost (the RPO)."""

    new_primary: CanisterRef
    old_primary: CanisterRef
    forced: bool
    fenced: bool  # the old primary refuses writes now
    applied_seq: int  # the new primary's journal sequence at the switch
    final_seq: int | None  # the fenced primary's last sequence (None: it did not answer)
    drained: int  # changes applied during the promotion
    digest: bytes | None  # the image both held at the final sequence (normal case)
    lost_changes: int | None  # changes the new primary lacks (None: unknown)
    lost_from_ns: int | None  # time of the first change it lacks
    lost_to_ns: int | None  # time of the last change known on the old primary
    last_applied_ns: int | None  # time of the last change the new primary applied
    seconds: float  # from the start of the promotion to the switch (the RTO's share of it)

    def to_json(self) -> dict[str, Any]:
        window = None
        if self.lost_from_ns is not None and self.lost_to_ns is not None:
            window = max(0.0, (self.lost_to_ns - self.lost_from_ns) / 1e9)
        return {
            "new_primary": str(self.new_primary),
            "old_primary": str(self.old_primary),
            "forced": self.forced,
            "old_primary_fenced": self.fenced,
            "applied_seq": self.applied_seq,
            "final_seq": self.final_seq,
            "drained_changes": self.drained,
            "digest": None if self.digest is None else self.digest.hex(),
            "rpo": {
                "lost_changes": self.lost_changes,
                "lost_from": _iso(self.lost_from_ns),
                "lost_to": _iso(self.lost_to_ns),
                "window_seconds": window,
                "last_applied_at": _iso(self.last_applied_ns),
            },
            "seconds": round(self.seconds, 3),
        }


async def promote(
    calls: Calls,
    standby: CanisterRef,
    *,
    primary: CanisterRef | None = None,
    force: bool = False,
) -> Promotion:
    """Make ``standby`` the primary (see the module docstring); ``calls.note`` hears each step."""
    started = time.monotonic()
    note = calls.note
    stb = CanisterSource(standby, calls)
    info = await _fresh_info(stb)
    old = _primary_of(standby, info, primary)
    prim = CanisterSource(old, calls)
    if force:
        return await _forced(stb, prim, info, started, note)
    return await _normal(stb, prim, started, note)


async def _normal(
    stb: CanisterSource, prim: CanisterSource, started: float, note: Callable[[str], None]
) -> Promotion:
    await prim.require("mode", "be fenced (icrp_set_mode)")
    fence = await prim.call(
        "icrp_set_mode", lambda: prim.client.set_mode("read_only", stb.principal)
    )
    final = fence.journal_seq
    note(f"{prim.endpoint} is fenced (read-only) at journal sequence {final}")
    try:
        applied, drained = await _drain(prim, stb, final)
        digest, (ours, theirs) = await _compare(prim, stb, final)
        # The switch, and the images released meanwhile (off the critical path).
        mode, _ = await asyncio.gather(
            stb.call("icrp_set_mode", lambda: stb.client.set_mode("primary", None)),
            _release(prim, ours, stb, theirs),
        )
    except BaseException as exc:
        await _unfence(prim, note, exc)
        raise
    if mode.mode != "primary":
        raise JobFailed(f"{stb.endpoint} did not become primary (it is {mode.mode})")
    note(f"{stb.endpoint} is the primary now (sequence {applied}); {prim.endpoint} stays fenced")
    return Promotion(
        new_primary=stb.endpoint,
        old_primary=prim.endpoint,
        forced=False,
        fenced=True,
        applied_seq=applied,
        final_seq=final,
        drained=drained,
        digest=digest,
        lost_changes=0,
        lost_from_ns=None,
        lost_to_ns=None,
        last_applied_ns=None,
        seconds=time.monotonic() - started,
    )


async def _forced(
    stb: CanisterSource,
    prim: CanisterSource,
    info: Info,
    started: float,
    note: Callable[[str], None],
) -> Promotion:
    applied = 0 if info.journal is None else info.journal.head_seq
    final, lost, lost_from, lost_to = None, None, None, None
    try:
        async with asyncio.timeout(_REACH_SECONDS):
            fence = await _once(
                prim, "icrp_set_mode", lambda: prim.client.set_mode("read_only", stb.principal)
            )
            final = fence.journal_seq
            note(f"{prim.endpoint} answered and is fenced at journal sequence {final}")
            backlog = await _once(prim, "icrp_backlog", lambda: prim.client.backlog(applied))
            lost, lost_from, lost_to = backlog.changes, backlog.oldest_time, backlog.head_time
    except (TimeoutError, ic.IcError, ReplicatorError) as exc:
        note(f"{prim.endpoint} does not answer ({exc}); promoting with what the standby applied")
    last_applied = await _last_applied_time(stb, applied)
    mode = await stb.call("icrp_set_mode", lambda: stb.client.set_mode("primary", None))
    if mode.mode != "primary":
        raise JobFailed(f"{stb.endpoint} did not become primary (it is {mode.mode})")
    if lost is None:
        note(
            f"{stb.endpoint} is the primary now at sequence {applied}; the old primary's head is "
            "unknown: writes to it after the last applied change may be lost"
        )
    else:
        note(f"{stb.endpoint} is the primary now at sequence {applied}; {lost} changes lost")
    return Promotion(
        new_primary=stb.endpoint,
        old_primary=prim.endpoint,
        forced=True,
        fenced=final is not None,
        applied_seq=applied,
        final_seq=final,
        drained=0,
        digest=None,
        lost_changes=lost,
        lost_from_ns=lost_from,
        lost_to_ns=lost_to,
        last_applied_ns=last_applied,
        seconds=time.monotonic() - started,
    )


# -------------------------------------------------------------------- steps


async def _once(side: CanisterSource, method: str, perform: Callable[[], Awaitable[T]]) -> T:
    """One attempt, through the limits: a forced promotion does not wait for a dead primary."""
    return await side.runner.call(
        side.endpoint.canister_id, method, perform, cost="update", policy=_ONE_TRY
    )


async def _fresh_info(side: CanisterSource) -> Info:
    info = await side.require("mode", "be promoted (icrp_set_mode)")
    if info.mode is None:
        raise JobFailed(f"{side.endpoint} reports no mode: it cannot be promoted")
    return info


def _primary_of(standby: CanisterRef, info: Info, given: CanisterRef | None) -> CanisterRef:
    mode = info.mode
    assert mode is not None  # checked by _fresh_info
    if mode.mode != "standby":
        raise UsageError(
            f"{standby} is {mode.mode.replace('_', '-')}, not a standby: there is nothing to "
            "promote" + (" (it is the primary already)" if mode.mode == "primary" else "")
        )
    if given is not None:
        return given
    if mode.redirect is None:
        raise UsageError(
            f"{standby} does not name its primary (no redirect in its mode): give it with --primary"
        )
    return CanisterRef(mode.redirect.to_text(), standby.network)


async def _drain(prim: CanisterSource, stb: CanisterSource, final: int) -> tuple[int, int]:
    """Apply the fenced primary's last changes; returns (applied sequence, changes applied)."""
    info = await stb.call("icrp_info", stb.client.info, cost="query")
    applied = 0 if info.journal is None else info.journal.head_seq
    drained = 0
    while applied < final:
        batch = await _changes(prim, applied)
        applied = await _apply(stb, batch)
        drained += len(batch.changes)
    if applied != final:
        raise IntegrityError(
            f"{stb.endpoint} is at sequence {applied}, beyond the fenced primary's final "
            f"{final}: it was changed by something else; not promoted"
        )
    return applied, drained


async def _changes(side: CanisterSource, since: int) -> ChangeBatch:
    return await side.call(
        "icrp_changes", lambda: side.client.changes(since, _MAX_BYTES), cost="query"
    )


async def _apply(side: CanisterSource, batch: ChangeBatch) -> int:
    return await side.call("icrp_apply", lambda: side.client.apply(batch))


async def _compare(
    prim: CanisterSource, stb: CanisterSource, seq: int
) -> tuple[bytes, tuple[ExportTicket, ExportTicket]]:
    """The digest of the image both hold at ``seq`` (frozen on both at once), and the
    two images (to release)."""
    ours, theirs = await asyncio.gather(images.image_at(prim, seq), images.image_at(stb, seq))
    try:
        if not await images.same_image(prim, ours, stb, theirs):
            raise IntegrityError(
                f"at journal sequence {seq} {prim.endpoint} has image digest "
                f"{_hex(ours.digest)} and {stb.endpoint} {_hex(theirs.digest)}: the standby "
                "is not a faithful copy; not promoted (the primary takes writes again)"
            )
    except BaseException:
        await _release(prim, ours, stb, theirs)
        raise
    assert ours.digest is not None
    return ours.digest, (ours, theirs)


async def _release(
    prim: CanisterSource, ours: ExportTicket, stb: CanisterSource, theirs: ExportTicket
) -> None:
    await asyncio.gather(images.release(prim, ours), images.release(stb, theirs))


async def _unfence(prim: CanisterSource, note: Callable[[str], None], why: BaseException) -> None:
    try:
        await prim.call("icrp_set_mode", lambda: prim.client.set_mode("primary", None))
    except (ic.IcError, ReplicatorError) as exc:
        log.error("could not lift the fence of %s: %s", prim.endpoint, exc)
        note(
            f"the promotion failed ({why}) and {prim.endpoint} could not be set back to "
            f"primary ({exc}): it still refuses writes; set its mode by hand"
        )
        return
    note(f"the promotion failed ({why}); {prim.endpoint} takes writes again")


async def _last_applied_time(stb: CanisterSource, applied: int) -> int | None:
    """The time of the last change the standby applied (its own journal), if it still holds it."""
    if applied == 0:
        return None
    with contextlib.suppress(ie.IcrpError):
        batch = await stb.call(
            "icrp_changes", lambda: stb.client.changes(applied - 1, 4096), cost="query"
        )
        if batch.changes:
            return batch.changes[-1].time
    return None


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    millis = (ns // 10**6) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{millis:03d}Z"


def _hex(digest: bytes | None) -> str:
    return "none" if digest is None else digest.hex()
