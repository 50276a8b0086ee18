"""The contract between the replica (scheduling, routing) and the sandbox (Wasm).

The replica decides *what* runs: which entry point, with which argument,
caller, cycles and time. The sandbox (``localnet.sandbox``) runs it inside the
canister's Wasm instance, with the ``ic0`` System API, and reports *what
happened* as an :class:`ExecResult`. The sandbox never touches other canisters
or the network; the replica never touches Wasm memory. Keeping this boundary
plain data is what lets the replica be tested without Wasm and the sandbox
without a replica.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class EntryKind(Enum):
    """Which kind of execution this is; the System API availability depends on it."""

    INIT = "canister_init"
    PRE_UPGRADE = "canister_pre_upgrade"
    POST_UPGRADE = "canister_post_upgrade"
    UPDATE = "canister_update"
    QUERY = "canister_query"  # non-replicated query: nothing persists
    REPLICATED_QUERY = "replicated_query"  # a query method called as an update
    COMPOSITE_QUERY = "canister_composite_query"
    REPLY_CALLBACK = "reply_callback"
    REJECT_CALLBACK = "reject_callback"
    CLEANUP = "cleanup_callback"
    GLOBAL_TIMER = "canister_global_timer"
    HEARTBEAT = "canister_heartbeat"
    INSPECT_MESSAGE = "canister_inspect_message"


@dataclass(frozen=True)
class Callback:
    """A (function table index, environment) pair registered with ``call_new``."""

    fun: int
    env: int


@dataclass
class OutgoingCall:
    """A call a canister made with ``call_new`` ... ``call_perform``."""

    callee: bytes
    method: str
    arg: bytes
    cycles: int
    on_reply: Callback
    on_reject: Callback
    on_cleanup: Callback | None = None
    timeout_seconds: int | None = None  # best-effort response, if requested


@dataclass(frozen=True)
class Reply:
    data: bytes


@dataclass(frozen=True)
class RejectResponse:
    code: int
    message: str
    error_code: str = ""  # the replica's IC0xxx code for system rejects; "" for canister rejects


Response = Reply | RejectResponse


@dataclass
class MessageContext:
    """Everything the System API may read about the message being executed."""

    kind: EntryKind
    method: str = ""  # the exported name after the "canister_update " prefix
    arg: bytes = b""
    caller: bytes = b""
    cycles_available: int = 0  # attached to the incoming call, still unaccepted
    cycles_refunded: int = 0  # for reply/reject callbacks
    reject_code: int = 0  # for reject callbacks
    reject_message: str = ""
    callback: Callback | None = None  # which callback to run for *_CALLBACK kinds
    # Whether the call context of this execution already has a response (a
    # callback after the canister replied may not reply again).
    already_responded: bool = False
    deadline_ns: int = 0  # best-effort deadline of the incoming call (0: none)
    # Callbacks (and cleanup) of a composite query call run non-replicated on
    # the state the composite query left behind: set this flag and pass the
    # previous execution's ExecResult.query_state back in.
    in_composite_query: bool = False
    query_state: object | None = None


@dataclass
class SystemState:
    """The canister's system state that ``ic0`` exposes; the replica owns it."""

    canister_id: bytes
    controllers: list[bytes]
    cycles_balance: int
    status: int  # 1 running, 2 stopping, 3 stopped (ic0.canister_status)
    time_ns: int
    canister_version: int
    certified_data: bytes = b""
    # Certificate for certified_data, only for non-replicated queries. Signing
    # one costs about a millisecond, so the replica may pass ``certify`` instead
    # and the certificate is made only if the canister asks for it.
    data_certificate: bytes | None = None
    certify: Callable[[], bytes] | None = None
    freezing_limit_cycles: int = 0  # cycles that must stay on the balance
    subnet_size: int = 13
    # Called for ic0.debug_print / traps so the replica can log them.
    log: Callable[[str], None] | None = None
    # Cycles used for ic0.cost_* and the call fee (see localnet.cycles).
    cost_per_call: int = 260_000
    cost_per_byte: int = 1_000
    global_timer: int = 0  # current value, for ic0.global_timer_set's return
    subnet_id: bytes = b""  # for ic0.subnet_self_*
    # Message size limits the System API enforces (a reply or call payload
    # beyond them traps, as on the IC); see localnet.limits.
    max_response_bytes: int = 2 * 1024 * 1024
    max_call_payload_bytes: int = 2 * 1024 * 1024
    # settings.wasm_memory_limit (0: none): an update, init or post_upgrade
    # that grows the Wasm memory beyond it traps (IC0539), as on the IC.
    wasm_memory_limit: int = 0
    # With the subnet model (localnet.fabric): how many more requests the
    # canister may queue to a callee; ic0.call_perform fails (SYS_TRANSIENT)
    # once the queue is full, as on the IC. None: unbounded.
    call_queue_room: Callable[[bytes], int] | None = None

    def certificate(self) -> bytes | None:
        """The data certificate, made on first use."""
        if self.data_certificate is None and self.certify is not None:
            self.data_certificate = self.certify()
        return self.data_certificate


@dataclass
class ExecResult:
    """What happened during one execution.

    ``trapped`` executions leave no trace in the canister: heap, stable memory
    and globals are rolled back, and ``calls``, ``response`` and the state
    changes below are empty. Non-replicated queries never persist anything,
    but report their response.
    """

    trapped: bool = False
    trap_message: str = ""
    error_code: str = ""  # IC05xx for traps, set by the sandbox
    response: Response | None = None
    calls: list[OutgoingCall] = field(default_factory=list)
    instructions: int = 0
    cycles_accepted: int = 0
    cycles_sent: int = 0  # attached to calls (already taken off the balance view)
    global_timer: int | None = None  # new value if set during the execution
    certified_data: bytes | None = None  # new value if set during the execution
    logs: list[str] = field(default_factory=list)
    cycles_burned: int = 0  # by ic0.cycles_burn128
    message_accepted: bool = False  # canister_inspect_message called ic0.accept_message
    # Composite query executions: the (never persisted) state changes, to be
    # passed to the next callback of the same query call via MessageContext.
    query_state: object | None = None
