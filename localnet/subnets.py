"""The subnets of a localnet: ids, keys, canister ranges and certification.

On the IC a subnet's id is the self-authenticating principal of its threshold
public key, and the agents rely on that: without a delegation, agent-js
(``fetchNodeKeys``, 3.4.3) and agent-rs (``fetch_subnet_by_canister``, 0.49)
take ``Principal.selfAuthenticating(root_key)`` as the subnet that signed. So
localnet derives every subnet id from the subnet's key.

Subnet 0 is the root subnet: its key is the network's root key
(``/api/v2/status``) and its certificates carry no delegation. Every other
subnet has its own key, and its certificates carry a delegation from the root
subnet, as application subnets' do on mainnet: a root-signed certificate of
``/subnet/<id>/public_key``, ``/subnet/<id>/canister_ranges`` and the sharded
``/canister_ranges/<id>/<lower bound>``. Each subnet hosts one range of
2^20 canister ids (subnet ``i``: indices ``i·2^20 … (i+1)·2^20 - 1``), the
size of a mainnet subnet's first range.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from localnet import ids
from localnet.certification import (
    Certifier,
    NodeSigner,
    RootKey,
    SubnetInfo,
    self_authenticating_id,
)
from localnet.replica import Replica

RANGE_BITS = 20
RANGE_SIZE = 1 << RANGE_BITS
MAX_SUBNETS = 8
# A delegation carries /time; agents refuse old ones (agent-js: 30 days), and
# a frozen or advanced test clock must not make it look stale or from the future.
_DELEGATION_REFRESH_NS = 10 * 60 * 1_000_000_000


def canister_range(index: int) -> tuple[bytes, bytes]:
    """Subnet ``index``'s canister id range (a closed interval)."""
    first = index * RANGE_SIZE
    return ids.canister_id(first), ids.canister_id(first + RANGE_SIZE - 1)


def range_index(canister_id: bytes) -> int | None:
    """The subnet index whose range holds ``canister_id``, None for other principals."""
    index = ids.canister_index(canister_id)
    return None if index is None else index >> RANGE_BITS


class Subnet:
    """One subnet: its replica, its key, its one node and its certifier."""

    def __init__(
        self,
        index: int,
        replica: Replica,
        key: RootKey,
        signer: NodeSigner,
        root: Subnet | None = None,
    ) -> None:
        if (index == 0) != (root is None):
            raise ValueError("subnet 0 is the root subnet; every other subnet needs the root")
        self.index = index
        self.replica = replica
        self.key = key
        self.signer = signer
        self.subnet_id = self_authenticating_id(key.public_key_der)
        self.canister_ranges = [canister_range(index)]
        self._root = root
        self._certifier = Certifier(key) if root is None else None
        self._delegated_at = 0
        replica.subnet_id = self.subnet_id
        replica.first_canister_index = index * RANGE_SIZE
        replica.next_canister_index = max(replica.next_canister_index, index * RANGE_SIZE)

    @property
    def is_root(self) -> bool:
        return self._root is None

    def hosts(self, canister_id: bytes) -> bool:
        return any(lo <= canister_id <= hi for lo, hi in self.canister_ranges)

    def info(self) -> SubnetInfo:
        return SubnetInfo(self.subnet_id, self.key.public_key_der, self.canister_ranges)

    def certifier(self) -> Certifier:
        """The root key itself, or a fresh enough delegation from the root subnet."""
        if self._root is None:
            assert self._certifier is not None
            return self._certifier
        now = self.replica.clock.peek_ns()
        age = now - self._delegated_at
        if self._certifier is None or not 0 <= age < _DELEGATION_REFRESH_NS:
            self._certifier = self._root.certifier().delegate(
                self.key, self.subnet_id, self.canister_ranges, now
            )
            self._delegated_at = now
        return self._certifier


class Topology:
    """Which subnet hosts which canister: the routing table, as the registry holds it."""

    def __init__(self, subnets: Sequence[Subnet]) -> None:
        if not subnets:
            raise ValueError("a localnet needs at least one subnet")
        self.subnets = list(subnets)

    @property
    def root(self) -> Subnet:
        return self.subnets[0]

    def __len__(self) -> int:
        return len(self.subnets)

    def hosting(self, canister_id: bytes) -> Subnet | None:
        """The subnet whose range holds ``canister_id``, if any."""
        index = range_index(canister_id)
        if index is None or index >= len(self.subnets):
            return None
        return self.subnets[index]

    def by_id(self, subnet_id: bytes) -> Subnet | None:
        return next((s for s in self.subnets if s.subnet_id == subnet_id), None)

    def for_effective_id(self, effective_id: bytes) -> Subnet:
        """The subnet a request for ``effective_id`` (canister or subnet id) goes to.

        Ids no subnet hosts (``aaaaa-aa``, a user principal) go to the root
        subnet, as a one-subnet localnet always did.
        """
        return self.by_id(effective_id) or self.hosting(effective_id) or self.root

    def others(self, subnet: Subnet) -> list[SubnetInfo]:
        return [s.info() for s in self.subnets if s is not subnet]

    def __iter__(self) -> Iterator[Subnet]:
        return iter(self.subnets)


def check_subnet_count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SUBNETS:
        raise ValueError(f"subnets must be a whole number from 1 to {MAX_SUBNETS}, got {count!r}")
    return count
