"""The warm pool: backup canisters created and installed before a source needs one.

A fleet's new member would otherwise wait for its backup canister to be
created (on mainnet a cycles-ledger call, then an install and a controller
change).  With a pool of ``size`` the orchestrator keeps that many ready,
empty backup canisters of no source yet on a network; a new member claims
one (:meth:`replicator.registry.Registry.claim`, atomic) and the provisioner
only reinstalls it for its source.

Every pool canister has its own registry row (role ``pool``) from before it
is created (``requested``) until it is claimed, so a crash at any point
leaves nothing unrecorded: :meth:`WarmPool.refill` first finishes the rows
a killed process left behind, then creates new ones until ``size`` are
ready.  Creation goes through the provisioner and so through the limits and
the cycles budget (``BudgetExceeded`` stops the refill, not the fleet run);
a planner announces what a refill will spend (:func:`pool_shortfall`).

One pool per network, not per subnet: a pool canister is made before its
member is known, so it is not placed near one (backup canisters created
for a member are: :meth:`Provisioner.backup_canister_for`).  Pools per
subnet would keep ``size`` idle, paid-for canisters on every subnet a fleet
spans to spare members' first backups a creation; the README says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from replicator.provision import Provisioner
from replicator.registry import POOL_ROLE, Registry

log = logging.getLogger(__name__)

MAX_POOL = 1_000


@dataclass(frozen=True)
class PoolCount:
    """A network's pool: canisters ready to claim, and rows still being made."""

    ready: int
    pending: int


async def pool_count(registry: Registry, network: str) -> PoolCount:
    """Counted by the registry's index on (network, role, state): no scan of its rows."""
    counts = await registry.counts(network, POOL_ROLE)
    ready = counts.get("ready", 0)
    return PoolCount(ready, sum(counts.values()) - ready)


async def pool_shortfall(registry: Registry, network: str, size: int) -> int:
    """Pool canisters a refill to ``size`` would create now."""
    count = await pool_count(registry, network)
    return max(0, size - count.ready - count.pending)


class WarmPool:
    """Keeps ``size`` ready pool canisters on the provisioner's network."""

    def __init__(
        self,
        provisioner: Provisioner,
        size: int,
        *,
        on_count: Callable[[PoolCount], None] | None = None,
    ) -> None:
        self.provisioner = provisioner
        self.size = size
        self._on_count = on_count or (lambda count: None)
        self.created = 0  # pool canisters this object made ready

    @property
    def network(self) -> str:
        return self.provisioner.network

    async def count(self) -> PoolCount:
        count = await pool_count(self.provisioner.registry, self.network)
        self._on_count(count)
        return count

    async def refill(self) -> int:
        """Finish interrupted pool rows, then create until ``size`` are ready; returns made."""
        made = 0
        registry = self.provisioner.registry
        for entry in await registry.in_role(self.network, POOL_ROLE):
            if entry.state != "ready":  # left by a process that was killed
                log.info("finishing pool canister %s left %s", entry.source, entry.state)
                await self.provisioner.pooled_canister(entry.source)
                made += 1
                self.created += 1
                await self.count()
        while (count := await self.count()).ready + count.pending < self.size:
            await self.provisioner.pooled_canister(f"pool-{time.time_ns()}")
            made += 1
            self.created += 1
        return made
