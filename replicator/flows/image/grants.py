"""Peer grants of the direct path: recorded before they are made, revoked when the copy ends.

The direct path needs canisters to trust each other: the source pushes only
to its peers, and the target accepts writes only from its controllers and
peers.  Such a grant must not outlive the job that needed it (a restore
must not leave the app trusting its backup canister forever), nor be lost
to another job granting at the same time.  The rules:

- **Recorded first.**  A grant is recorded in the job's checkpoint
  (``detail["grants"]``, :data:`~replicator.flows.image.machine.GRANTS_KEY`)
  before it is made, so a run that dies leaves the record and a later run of
  the job revokes the grant.
- **Jobs revoke only what jobs granted.**  A peer the canister trusted
  before, and that no other unfinished job holds, is neither recorded nor
  ever revoked.  A peer another unfinished job holds is recorded too (a
  co-holder), so the first of the two to finish leaves it to the other.
- **No lost updates.**  Granting adds the peer with ``icrp_update_peers``
  (a change, not a replacement of the set), so two jobs granting different
  peers of one canister keep both.  Each grant also increases the peer
  set's version, even when the peer was there already.
- **Revoking is a compare-and-set.**  Read the peers and their version,
  check that no other unfinished job holds the grant, then remove the peer
  *if the version is still the one read*.  A job that re-granted the peer
  in between changed the version: the removal is refused and the check
  runs again on the fresh set.  A job records its grant before making it,
  so whichever of "re-grant" and "remove" comes second sees the other.

"Other unfinished jobs" are those of the same checkpoint store (every
orchestrator process sharing the store sees them).  A job that died holds
its grants until its next run: that run revokes them at the end of its copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from canister_iface import errors as ic
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import Peers, PeersUpdate
from canister_iface.principal import Principal
from replicator.calls import CallCost
from replicator.checkpoints import Store
from replicator.errors import AccessDeniedError, JobFailed, ReplicatorError
from replicator.flow import Calls
from replicator.flows.image.machine import Grant, grants_of
from replicator.joblock import JobLocked

log = logging.getLogger(__name__)
T = TypeVar("T")

# Compare-and-set rounds before giving up: each lost round means another job
# changed the same canister's peers in the meantime.
_MAX_ROUNDS = 20


class Grants:
    """Grants and revocations of peer trust for one job."""

    def __init__(self, calls: Calls, store: Store, job_id: str) -> None:
        self.calls = calls
        self.store = store
        self.job_id = job_id

    # ------------------------------------------------------------ granting

    async def to_record(self, needed: Iterable[Grant], recorded: Sequence[Grant]) -> list[Grant]:
        """Of ``needed``, the grants this job must record before it makes them.

        Already recorded ones are the job's own; a peer the canister already
        trusts that no other job holds was trusted before any job (it stays
        out of the record, and is never revoked).
        """
        missing = []
        for grant in needed:
            if grant not in recorded and not await self._trusted_before(grant):
                missing.append(grant)
        return missing

    async def grant(self, grants: Iterable[Grant]) -> None:
        """Make recorded ``grants`` (each a change of the set that increases its version)."""
        for grant in grants:
            try:
                await self._side(grant).update([grant.peer], (), None)
            except ic.AccessDenied as exc:
                raise AccessDeniedError(
                    f"{grant.canister} must trust {grant.peer} for the direct path, and only a "
                    f"controller can grant that: {exc}. Run as a controller, have one add the "
                    "peer (icrp_update_peers), or use the relay path (--via relay)"
                ) from exc
            self.calls.note(f"{grant.canister} trusts {grant.peer} while the copy runs")

    async def _trusted_before(self, grant: Grant) -> bool:
        """Does ``grant.canister`` trust the peer without any job having granted it?"""
        side = self._side(grant)
        peers = await side.peers()
        for _ in range(_MAX_ROUNDS):
            if _peer(grant) not in peers or await self._held_elsewhere(grant):
                return False
            # Confirm that nothing changed since the read: a job that granted the
            # peer and revoked it meanwhile would have changed the version.
            try:
                confirmed = await side.update((), (), peers.version)
            except ic.AccessDenied:
                return True  # cannot be confirmed, and a non-controller changes nothing
            if confirmed.updated:
                return True
            peers = confirmed.peers
        raise _busy(grant)

    # ------------------------------------------------------------ revoking

    async def revoke(self, grants: Iterable[Grant]) -> None:
        """Remove each peer unless another unfinished job holds the same grant."""
        for grant in grants:
            await self._revoke(grant)

    async def revoke_quietly(self, grants: Sequence[Grant]) -> None:
        """Best effort after a failed or cancelled copy; what stays is revoked by the next run.

        Not when another run has taken the job over (this process was thought
        dead, a worker of ``serve`` suspended past its lease): the grants are
        that run's now, and it is copying through them.
        """
        try:
            if not await self._still_ours():
                log.warning(
                    "job %s: another run holds the job now; its peer grants stay with it",
                    self.job_id,
                )
                return
            await asyncio.shield(self.revoke(grants))
        except (ic.IcError, ReplicatorError) as exc:
            log.warning(
                "job %s: could not revoke its peer grants (%s); its next run revokes them",
                self.job_id,
                exc,
            )

    async def _revoke(self, grant: Grant) -> None:
        side = self._side(grant)
        peers = await side.peers()
        for _ in range(_MAX_ROUNDS):
            if _peer(grant) not in peers:
                return
            if await self._held_elsewhere(grant):
                self.calls.note(f"{grant} stays: another unfinished job needs it")
                return
            try:
                done = await side.update((), [grant.peer], peers.version)
            except ic.AccessDenied as exc:
                raise AccessDeniedError(
                    f"{grant.canister} still trusts {grant.peer}, granted for the direct path, "
                    f"and this identity may no longer revoke it: {exc}. Have a controller "
                    "remove the peer (icrp_update_peers)"
                ) from exc
            if done.updated:
                self.calls.note(f"{grant.canister} no longer trusts {grant.peer}")
                return
            peers = done.peers
        raise _busy(grant)

    # ------------------------------------------------------------ helpers

    async def _still_ours(self) -> bool:
        # Acknowledging no chunk is the store's fenced no-op: it refuses a run
        # whose job's lock another run holds.
        try:
            await self.store.ack_chunks(self.job_id, ())
        except JobLocked:
            return False
        return True

    async def _held_elsewhere(self, grant: Grant) -> bool:
        """Does another unfinished job of the store record ``grant``?"""
        # Only unfinished jobs are decoded: a fleet's members each ask this once,
        # among thousands of done jobs.
        for summary in await self.store.list_jobs(unfinished=True):
            if summary.id == self.job_id:
                continue
            state = (await self.store.load(summary.id)).state
            if grant in grants_of(state.detail):
                return True
        return False

    def _side(self, grant: Grant) -> _PeersOf:
        return _PeersOf(grant, self.calls)


class _PeersOf:
    """The peer calls on one canister, through the network's runner."""

    def __init__(self, grant: Grant, calls: Calls) -> None:
        self.canister = grant.canister
        self.runner = calls.runner_for(grant.network)
        self.client = IcrpClient(calls.agent_for(grant.network), grant.canister)

    async def call(
        self, method: str, perform: Callable[[], Awaitable[T]], *, cost: CallCost = "update"
    ) -> T:
        what = f"{method} on {self.canister}"
        return await self.runner.call(self.canister, method, perform, cost=cost, what=what)

    async def peers(self) -> Peers:
        return await self.call("icrp_peers", self.client.peers, cost="query")

    async def update(
        self, add: Sequence[str], remove: Sequence[str], expected_version: int | None
    ) -> PeersUpdate:
        return await self.call(
            "icrp_update_peers", lambda: self.client.update_peers(add, remove, expected_version)
        )


def _peer(grant: Grant) -> Principal:
    return Principal.from_text(grant.peer)


def _busy(grant: Grant) -> JobFailed:
    return JobFailed(
        f"the peers of {grant.canister} kept changing while this job tried to settle whether "
        f"it trusts {grant.peer} ({_MAX_ROUNDS} attempts); re-run the job"
    )


__all__ = ["Grants"]
