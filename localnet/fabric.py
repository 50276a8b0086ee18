"""Message routing between subnets and the opt-in subnet model (rounds and blocks).

Without a model and with one subnet, localnet needs none of this: the replica
keeps every message in its own FIFO queue and runs it at once (the fast
default). :class:`Fabric` takes over when there are several subnets or a
:class:`SubnetModel`:

- **Routing.** A request goes to the subnet whose canister range holds the
  callee (a management call: the canister it is about), a response to the
  caller's subnet. A cross-subnet message above 2 MiB is not sent: the caller
  gets the reject the IC's stream builder makes ("Canister … violated
  contract: attempted to send a message of size … exceeding the limit …",
  reject code 5).
- **Rounds** (with a model). Each subnet executes in rounds. At the start of a
  round, a block is made: ingress messages in arrival order, at most
  ``block_ingress_messages`` of them, and, sharing ``block_bytes`` with the
  ingress, the stream slices from other subnets that are due. Then the
  inducted messages run. Same-subnet requests and responses reach their
  canister ``local_delay_rounds`` later (0: within the round, as the IC's
  inner rounds usually manage), cross-subnet ones ``xnet_delay_rounds`` later.
- **Queue bounds** (with a model), as the IC's canister queues: a request
  reserves a slot for its response in the caller's input queue from the
  callee, held until the response reaches the caller; with ``queue_capacity``
  (500, the IC's ``DEFAULT_QUEUE_CAPACITY``) slots of a (caller, callee) pair
  taken, ``ic0.call_perform`` fails with SYS_TRANSIENT (2) and the call is not
  made. The IC bounds no canister's ingress queue; it bounds the ingress pool,
  and so does the model: an ingress message beyond ``ingress_pool_messages``
  or ``ingress_pool_bytes`` waiting for a block is refused with HTTP 503
  "Service is overloaded, try again later.", as the replica's call endpoint does.

Everything here runs on the execution thread (``localnet.executor``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from localnet import ids
from localnet.errors import RejectCode
from localnet.execution import RejectResponse, Reply
from localnet.node_api import Overloaded
from localnet.replica import (
    CallMessage,
    CanisterOrigin,
    IngressOrigin,
    Message,
    Replica,
    ResponseMessage,
)
from localnet.subnet_model import MAX_XNET_PAYLOAD, SubnetModel
from localnet.subnets import Subnet, Topology

__all__ = ["Fabric", "RoundStats", "SubnetModel"]


@dataclass
class RoundStats:
    """What the rounds did, for benchmarks and ``GET /_/subnets``."""

    rounds: int = 0
    ingress_messages: int = 0
    ingress_bytes: int = 0
    xnet_messages: int = 0
    xnet_bytes: int = 0
    ingress_expired: int = 0
    ingress_refused: int = 0  # HTTP 503: the ingress pool was full
    full_blocks: int = 0  # rounds that left ingress waiting for the next block
    busy_seconds: float = 0.0  # time spent executing rounds
    started_at: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        return {
            "rounds": self.rounds,
            "rounds_per_second": self.rounds / elapsed,
            "ingress_messages": self.ingress_messages,
            "ingress_bytes": self.ingress_bytes,
            "xnet_messages": self.xnet_messages,
            "xnet_bytes": self.xnet_bytes,
            "ingress_expired": self.ingress_expired,
            "ingress_refused": self.ingress_refused,
            "full_blocks": self.full_blocks,
            "busy_seconds": self.busy_seconds,
        }


@dataclass(order=True)
class _InFlight:
    due_round: int
    seq: int
    message: Message = field(compare=False)
    size: int = field(compare=False)
    xnet: bool = field(compare=False)
    # A response frees its call's queue slot when it reaches the caller.
    slot: tuple[bytes, int] | None = field(compare=False)


@dataclass
class _Ingress:
    message: CallMessage
    size: int


class Fabric:
    """Routes messages between the subnets of a localnet and runs their rounds."""

    def __init__(self, topology: Topology, model: SubnetModel | None = None) -> None:
        self.topology = topology
        self.model = model
        self.round = 0
        self.stats = RoundStats()
        self._by_replica = {id(s.replica): s for s in topology}
        self._in_flight: dict[int, list[_InFlight]] = {s.index: [] for s in topology}
        self._ingress: dict[int, deque[_Ingress]] = {s.index: deque() for s in topology}
        self._ingress_bytes: Counter[int] = Counter()
        # Queue slots: requests per (caller, callee) whose response has not reached
        # the caller yet, and which pair each (caller, callback id) holds.
        self._pairs: Counter[tuple[bytes, bytes]] = Counter()
        self._slots: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}
        self._seq = itertools.count()
        if model is not None or len(topology) > 1:
            for subnet in topology:
                subnet.replica.router = self

    @property
    def replicas(self) -> list[Replica]:
        return [s.replica for s in self.topology]

    # --- Router (called by the replicas) -----------------------------------------------

    def send(self, source: Replica, destination: bytes, message: Message) -> None:
        origin = self._by_replica[id(source)]
        target = self.topology.hosting(destination) or origin
        xnet = target is not origin
        size = _payload_size(message)
        if self.model is not None:
            self._take_slot(message)
        if xnet and size > self._max_xnet_payload and isinstance(message, CallMessage):
            self._bounce(origin, message, size)
            return
        slot = None
        if isinstance(message, ResponseMessage):
            slot = (destination, message.callback_id)
        delay = 0
        if self.model is not None:
            delay = self.model.xnet_delay_rounds if xnet else self.model.local_delay_rounds
        if delay == 0:  # no model, or an inner round: it runs in this round
            self._deliver(target, message, slot)
            return
        entry = _InFlight(self.round + delay, next(self._seq), message, size, xnet, slot)
        heapq.heappush(self._in_flight[target.index], entry)

    def admit_ingress(self, replica: Replica, size: int) -> None:
        """Refuse an ingress message while the subnet's ingress pool is full (HTTP 503)."""
        if self.model is None:
            return
        index = self._by_replica[id(replica)].index
        waiting = len(self._ingress[index])
        if (
            waiting >= self.model.ingress_pool_messages
            or self._ingress_bytes[index] + size > self.model.ingress_pool_bytes
        ):
            self.stats.ingress_refused += 1
            raise Overloaded("Service is overloaded, try again later.")

    def accept_ingress(self, replica: Replica, message: CallMessage, size: int) -> None:
        if self.model is None:
            replica.enqueue(message)
            return
        index = self._by_replica[id(replica)].index
        self._ingress[index].append(_Ingress(message, size))
        self._ingress_bytes[index] += size

    def call_room(self, replica: Replica, caller: bytes, callee: bytes) -> int | None:
        if self.model is None:
            return None
        return max(0, self.model.queue_capacity - self._pairs[(caller, callee)])

    def _take_slot(self, message: Message) -> None:
        """A request from a canister reserves a slot for its response (DEFAULT_QUEUE_CAPACITY)."""
        if isinstance(message, CallMessage) and isinstance(message.origin, CanisterOrigin):
            pair = (message.sender, message.callee)
            self._pairs[pair] += 1
            self._slots[(message.sender, message.origin.callback_id)] = pair

    def _deliver(self, target: Subnet, message: Message, slot: tuple[bytes, int] | None) -> None:
        if slot is not None and (pair := self._slots.pop(slot, None)) is not None:
            self._pairs[pair] -= 1
            if not self._pairs[pair]:
                del self._pairs[pair]
        target.replica.enqueue(message)

    @property
    def _max_xnet_payload(self) -> int:
        return self.model.max_xnet_payload if self.model else MAX_XNET_PAYLOAD

    def _bounce(self, origin: Subnet, message: CallMessage, size: int) -> None:
        """The stream builder's reject for a request too large to leave the subnet."""
        assert isinstance(message.origin, CanisterOrigin)
        reject = RejectResponse(
            RejectCode.CANISTER_ERROR,
            f"Canister {ids.to_text(message.sender)} violated contract: attempted to send a "
            f"message of size {size} exceeding the limit {self._max_xnet_payload}",
            "",
        )
        response = ResponseMessage(message.origin.callback_id, reject, message.cycles)
        self.send(origin.replica, message.sender, response)

    # --- driving (the execution thread) ------------------------------------------------

    def drain(self) -> int:
        """Without a model: fire due timers once, then run every subnet until all are idle.

        Timers fire once per drain, not per pass: a canister that re-arms its
        timer for "now" (work in steps) gets one step per drain, and the
        execution thread stays free for the HTTP side in between.
        """
        if self.model is not None:
            return 0
        for replica in self.replicas:
            replica.fire_due_timers()
            replica.expire_deadlines()
        total = 0
        while ran := sum(replica.run_until_idle() for replica in self.replicas):
            total += ran
        return total

    def next_deadline_ns(self) -> int | None:
        """When ``drain`` has timer work next (None with a model: rounds fire timers)."""
        if self.model is not None:
            return None
        deadlines = [d for r in self.replicas if (d := r.next_timer_ns()) is not None]
        return min(deadlines) if deadlines else None

    def run_round(self) -> None:
        """One round on every subnet: make a block, induct it, execute."""
        if self.model is None:
            raise RuntimeError("rounds need a SubnetModel: LocalNet(subnet_model=SubnetModel())")
        started = time.perf_counter()
        self.round += 1
        for subnet in self.topology:
            replica = subnet.replica
            replica.fire_due_timers()
            replica.expire_deadlines()
            budget = self.model.block_bytes
            if self.round % 2:
                budget = self._induct_ingress(subnet, budget)
                self._induct_streams(subnet, budget)
            else:
                budget = self._induct_streams(subnet, budget)
                self._induct_ingress(subnet, budget)
            replica.run_until_idle()
        self.stats.rounds += 1
        self.stats.busy_seconds += time.perf_counter() - started

    def _induct_streams(self, subnet: Subnet, budget: int) -> int:
        """Due messages into ``subnet``; XNet ones only while the block has room."""
        heap = self._in_flight[subnet.index]
        held: list[_InFlight] = []
        while heap and heap[0].due_round <= self.round:
            entry = heapq.heappop(heap)
            if entry.xnet:
                if held or entry.size > budget:
                    held.append(entry)  # the rest of the stream waits for the next block
                    continue
                budget -= entry.size
                self.stats.xnet_messages += 1
                self.stats.xnet_bytes += entry.size
            self._deliver(subnet, entry.message, entry.slot)
        for entry in held:
            heapq.heappush(heap, entry)
        return budget

    def _induct_ingress(self, subnet: Subnet, budget: int) -> int:
        assert self.model is not None
        pool = self._ingress[subnet.index]
        replica = subnet.replica
        now = replica.clock.peek_ns()
        taken = 0
        while pool and taken < self.model.block_ingress_messages:
            item = pool[0]
            origin = item.message.origin
            assert isinstance(origin, IngressOrigin)
            record = replica.requests.get(origin.request_id)
            if record is not None and record.expiry_ns < now:
                pool.popleft()
                self._ingress_bytes[subnet.index] -= item.size
                replica.forget_request(origin.request_id)
                self.stats.ingress_expired += 1
                continue
            if item.size > budget:
                break
            pool.popleft()
            self._ingress_bytes[subnet.index] -= item.size
            budget -= item.size
            taken += 1
            self.stats.ingress_messages += 1
            self.stats.ingress_bytes += item.size
            replica.enqueue(item.message)
        if pool:
            self.stats.full_blocks += 1
        return budget

    # --- inspection -----------------------------------------------------------------

    def pending(self, subnet: int) -> list[Message]:
        """Messages on their way to subnet ``subnet``, in delivery order."""
        return [entry.message for entry in sorted(self._in_flight[subnet])]

    def in_flight(self) -> int:
        """Messages sent but not yet inducted (all subnets)."""
        return sum(len(heap) for heap in self._in_flight.values())

    def waiting_ingress(self) -> int:
        return sum(len(pool) for pool in self._ingress.values())

    def idle(self) -> bool:
        """Nothing waits for a block, travels between canisters or sits in a queue."""
        return (
            not self.in_flight()
            and not self.waiting_ingress()
            and not any(r.has_work() for r in self.replicas)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "subnets": [
                {
                    "index": s.index,
                    "subnet_id": ids.to_text(s.subnet_id),
                    "canister_ranges": [
                        [ids.to_text(lo), ids.to_text(hi)] for lo, hi in s.canister_ranges
                    ],
                    "canisters": len(s.replica.canisters),
                }
                for s in self.topology
            ],
            "model": self.model.to_json() if self.model else None,
            "round": self.round,
            "stats": self.stats.to_json(),
        }


def _payload_size(message: Message) -> int:
    """Bytes a message counts for (the IC's ``payload_size_bytes``)."""
    if isinstance(message, CallMessage):
        return len(message.arg) + len(message.method)
    if isinstance(message, ResponseMessage):
        response = message.response
        return len(response.data) if isinstance(response, Reply) else len(response.message)
    return 0
