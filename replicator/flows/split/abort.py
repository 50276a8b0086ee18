"""``replicator split --abort``: give up a split before any range was cut over.

A split that failed or was interrupted before its first cut-over leaves the
source owning every key; its shards hold copies nobody routes to.  Aborting
removes the fences of ranges not cut over (a cut-over that was interrupted
may have fenced one), stops and deletes the shards the orchestrator created
for this source (the creation registry names them, also when planning was
interrupted before the job was saved), and forgets the job, so that the
next ``replicator split`` plans afresh.  Once a range belongs to its shard
(cut over), aborting would lose the writes the shard took: it is refused,
and the split should be finished instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import Fence
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from replicator.checkpoints import Store
from replicator.errors import UsageError
from replicator.flow import Action, Calls, Consent, Verb
from replicator.flows.split.machine import DONE, FREE, detail_of
from replicator.job import CanisterRef, JobRequest

SHARD_ROLE_PREFIX = "split-shard-"


@dataclass(frozen=True)
class Aborted:
    """What an abort did."""

    job_id: str | None
    shards_deleted: tuple[str, ...]
    fences_removed: int

    def to_json(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "shards_deleted": list(self.shards_deleted),
            "fences_removed": self.fences_removed,
        }


async def abort_split(
    store: Store, calls: Calls, request: JobRequest, consent: Consent, *, dry_run: bool = False
) -> Aborted:
    source = request.source
    if not isinstance(source, CanisterRef):
        raise UsageError(f"a split reads from a canister, not {source}")
    job_id = await store.find_resumable(request.job().fingerprint)
    if job_id is not None:
        state = (await store.load(job_id)).state
        if state.detail.get("ranges"):
            cut = [r for r in detail_of(state).ranges if r.step in (FREE, DONE)]
            if cut:
                raise UsageError(
                    f"split {job_id} already cut {len(cut)} range(s) over to their shards, which "
                    "take writes now: aborting would lose them. Finish it instead: run the same "
                    "`replicator split` again"
                )
    registry = store.registry
    entries = [
        e
        for e in await registry.entries()
        if e.network == source.network
        and e.source == source.canister_id
        and e.role.startswith(SHARD_ROLE_PREFIX)
    ]
    shards = tuple(e.canister for e in entries if e.canister is not None)
    if dry_run:
        return Aborted(job_id, shards, 0)
    await consent([Action(Verb.DELETE, f"shard {s} (a copy nobody routes to)") for s in shards])
    # Fences without an unfinished job belong to a finished split: they stay.
    removed = 0 if job_id is None else await _unfence(calls, source)
    mgmt = ManagementClient(calls.agent_for(source.network))
    runner = calls.runner_for(source.network)
    for shard in shards:
        principal = Principal.from_text(shard)
        await runner.call(shard, "stop_canister", lambda p=principal: mgmt.stop_canister(p))  # type: ignore[misc]
        await runner.call(shard, "delete_canister", lambda p=principal: mgmt.delete_canister(p))  # type: ignore[misc]
    for entry in entries:
        await registry.forget(entry.network, entry.source, entry.role)
    if job_id is not None:
        await store.delete_job(job_id)
    return Aborted(job_id, shards, removed)


async def _unfence(calls: Calls, source: CanisterRef) -> int:
    """Remove every fence of the source (no range was cut over); how many there were."""
    icrp = IcrpClient(calls.agent_for(source.network), Principal.from_text(source.canister_id))
    runner = calls.runner_for(source.network)
    config = await runner.call(source.canister_id, "icrp_config", icrp.config, cost="query")
    if not config.fences:
        return 0
    none: list[Fence] = []
    await runner.call(
        source.canister_id, "icrp_set_fences", lambda: icrp.set_fences(none), cost="update"
    )
    return len(config.fences)
