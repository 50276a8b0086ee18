"""Which subnet hosts a canister: learned from certified state, then cached.

The per-subnet limits (:class:`replicator.limits.SubnetRates`) ask
:meth:`SubnetMap.subnet_of` before every call.  The answer comes, cheapest
first, from

1. the canisters already known (learned, or loaded from a cache such as a
   fleet's member table with :meth:`SubnetMap.learn`);
2. the certified canister ranges of the subnets already read: one read of a
   subnet answers for every canister in its ranges, so a fleet of 10,000
   members on three subnets costs three reads;
3. a verified ``read_state`` of ``/subnet`` with the canister as effective
   canister id (:func:`certified_reader`): the subnet that answers, its id
   from the delegation (or the root subnet's), its ranges certified.

A read that fails (network, a canister that does not exist) is not repeated
for ``retry_after`` seconds; meanwhile the canister has no known subnet and
only the global limits apply to its calls — a limit must not turn a failed
look-up into a failed backup.  The management canister has no subnet of its
own (its calls go to the subnet of their effective canister, which the
limits do not see): ``None``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from canister_iface import errors as ic
from canister_iface import query_signatures as qs
from canister_iface.agent import Agent
from canister_iface.principal import Principal

log = logging.getLogger(__name__)

MANAGEMENT = "aaaaa-aa"
# A canister whose subnet could not be read is asked again after this long.
RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class SubnetInfo:
    """A subnet's id (text) and certified canister ranges (inclusive, raw ids)."""

    subnet_id: str
    ranges: tuple[tuple[bytes, bytes], ...]

    def hosts(self, canister: bytes) -> bool:
        return any(lo <= canister <= hi for lo, hi in self.ranges)


SubnetReader = Callable[[Principal], Awaitable[SubnetInfo]]


def certified_reader(agent: Agent) -> SubnetReader:
    """Reads a canister's subnet from a verified ``read_state`` of ``/subnet``."""

    async def read(canister: Principal) -> SubnetInfo:
        cert = await agent.read_state(canister, [[b"subnet"]])
        subnet = qs.subnet_from_certificate(cert, canister.raw, await agent.root_key())
        return SubnetInfo(Principal(subnet.subnet_id).to_text(), tuple(subnet.ranges))

    return read


class SubnetMap:
    """See the module docstring."""

    def __init__(
        self,
        read: SubnetReader,
        *,
        retry_after: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._retry_after = retry_after
        self._clock = clock
        self._known: dict[str, str] = {}  # canister id → subnet id
        self._subnets: dict[str, SubnetInfo] = {}  # by subnet id
        self._failed: dict[str, float] = {}  # canister id → when its read failed
        self._lock = asyncio.Lock()
        self.reads = 0  # read_state calls made (for tests and the benchmark)

    def learn(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Take ``(canister, subnet)`` pairs known from a cache."""
        self._known.update(pairs)

    def known(self, canister_id: str) -> str | None:
        """The subnet of ``canister_id`` if known without a read."""
        subnet = self._known.get(canister_id)
        if subnet is not None or not self._subnets:
            return subnet
        try:
            raw = Principal.from_text(canister_id).raw
        except ValueError:
            return None
        for info in self._subnets.values():
            if info.hosts(raw):
                self._known[canister_id] = info.subnet_id
                return info.subnet_id
        return None

    async def subnet_of(self, canister_id: str) -> str | None:
        """The subnet hosting ``canister_id``; ``None`` when it cannot be told (see module)."""
        if canister_id == MANAGEMENT:
            return None
        if (subnet := self.known(canister_id)) is not None:
            return subnet
        failed = self._failed.get(canister_id)
        if failed is not None and self._clock() - failed < self._retry_after:
            return None
        # One read at a time: the canisters waiting here are most likely on the
        # subnet being read, and its ranges then answer for them.
        async with self._lock:
            if (subnet := self.known(canister_id)) is not None:
                return subnet
            return await self._learn(canister_id)

    async def _learn(self, canister_id: str) -> str | None:
        self.reads += 1
        try:
            info = await self._read(Principal.from_text(canister_id))
        except (ic.IcError, ValueError) as exc:
            self._failed[canister_id] = self._clock()
            log.warning(
                "the subnet of canister %s could not be read (%s); its calls are held to the "
                "global limits only, and its subnet is read again in %.0f s",
                canister_id,
                exc,
                self._retry_after,
            )
            return None
        self._failed.pop(canister_id, None)
        self._subnets[info.subnet_id] = info
        self._known[canister_id] = info.subnet_id
        log.debug("canister %s is on subnet %s", canister_id, info.subnet_id)
        return info.subnet_id
