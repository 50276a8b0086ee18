"""The replica: message routing, call contexts, ingress and timers.

One subnet, one execution thread. Every method here runs on that thread
(``localnet.net`` makes sure of it), so the replica needs no locks of its own.

Messages wait in one FIFO queue. A single queue is stricter than the IC (which
only orders messages per canister pair) and therefore preserves the pairwise
ordering the IC guarantees. Each execution goes through the sandbox and comes
back as an :class:`~localnet.execution.ExecResult`, whose effects are applied
here: responses, outgoing calls, cycles, timers, certified data.

Call contexts follow the interface spec: a context is opened when a canister
starts executing a call, answered exactly once (by a reply, a reject, a trap,
or "did not reply" when its last callback finished without answering), and
closed when answered with no callbacks outstanding. A canister is stopped once
it has no open call contexts.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from localnet import cycles, ids
from localnet.callcount import CallCount
from localnet.canisters import CanisterTable
from localnet.clock import Clock
from localnet.errors import ErrorCode, Reject, RejectCode
from localnet.execution import (
    EntryKind,
    ExecResult,
    MessageContext,
    OutgoingCall,
    RejectResponse,
    Reply,
    Response,
    SystemState,
)
from localnet.limits import Limits
from localnet.management import (
    check_ingress,
    effective_canister_id,
    handle_management_call,
    management_query,
    memory_usage,
)
from localnet.node_api import Request
from localnet.sandbox import WasmEngine
from localnet.state import CanisterState, CanisterStatus

log = logging.getLogger("localnet.replica")

_LOG_LINES_KEPT = 1000
_RANGE_SIZE = 1 << 20  # canister ids per subnet (localnet.subnets.RANGE_SIZE)


class Router(Protocol):
    """Where the messages a replica produces go (``localnet.fabric``).

    Without a router, every message stays in the replica's own queue and runs
    as soon as the queue gets to it: one subnet, no rounds, the fast default.
    """

    def send(self, source: Replica, destination: bytes, message: Message) -> None:
        """Deliver a request (``destination``: the callee, or the canister a
        management call is about) or a response (``destination``: the caller)."""
        ...

    def admit_ingress(self, replica: Replica, size: int) -> None:
        """Raise ``localnet.node_api.Overloaded`` while the ingress pool is full."""
        ...

    def accept_ingress(self, replica: Replica, message: CallMessage, size: int) -> None:
        """Hold an ingress message until a block carries it (or run it now, without rounds)."""
        ...

    def call_room(self, replica: Replica, caller: bytes, callee: bytes) -> int | None:
        """How many more requests ``caller`` may queue to ``callee`` (None: no bound)."""
        ...


class FaultSource(Protocol):
    """What the replica asks the fault injector (``localnet.faults.Faults``)."""

    def transient_reject_for(self, canister_id: bytes, method: str) -> Reject | None: ...

    def is_stopped(self, canister_id: bytes) -> bool: ...

    def limits(self, base: Limits) -> Limits: ...


# --- where a call came from -------------------------------------------------


@dataclass(frozen=True)
class IngressOrigin:
    request_id: bytes
    sender: bytes


@dataclass(frozen=True)
class CanisterOrigin:
    caller: bytes
    callback_id: int


@dataclass(frozen=True)
class SystemOrigin:
    """Timers and heartbeats: nobody waits for the answer."""


Origin = IngressOrigin | CanisterOrigin | SystemOrigin


@dataclass
class CallContext:
    id: int
    canister_id: bytes
    origin: Origin
    caller: bytes  # msg_caller for every execution of this context
    cycles_available: int
    responded: bool = False
    outstanding: int = 0  # callbacks waiting for responses
    deadline_ns: int = 0  # of a best-effort incoming call (ic0.msg_deadline)


@dataclass
class PendingCallback:
    id: int
    canister_id: bytes
    call_context_id: int
    call: OutgoingCall
    module_version: int  # callbacks of a canister reinstalled since are dropped
    deadline_ns: int = 0  # best-effort calls: when the caller stops waiting (0: never)


# --- queue items ----------------------------------------------------------------


@dataclass
class CallMessage:
    callee: bytes
    method: str
    arg: bytes
    cycles: int
    sender: bytes
    origin: Origin
    deadline_ns: int = 0  # best-effort calls (ic0.msg_deadline); 0 for guaranteed ones


@dataclass
class ResponseMessage:
    callback_id: int
    response: Response
    refund: int


@dataclass
class TimerMessage:
    canister_id: bytes


Message = CallMessage | ResponseMessage | TimerMessage


@dataclass
class RequestRecord:
    """An ingress message's status, as ``read_state`` certifies it."""

    request_id: bytes
    sender: bytes
    canister_id: bytes
    method: str
    status: str = "received"  # received | processing | replied | rejected | done
    reply: bytes | None = None
    reject: RejectResponse | None = None
    expiry_ns: int = 0

    def as_tree(self) -> dict[str, object]:
        """The ``request_status/<id>`` subtree the certification code encodes."""
        out: dict[str, object] = {"status": self.status}
        if self.reply is not None:
            out["reply"] = self.reply
        if self.reject is not None:
            out["reject_code"] = self.reject.code
            out["reject_message"] = self.reject.message
            out["error_code"] = self.reject.error_code
        return out


@dataclass
class _Counters:
    executions: int = 0
    instructions: int = 0
    traps: int = 0


@dataclass
class Replica:
    engine: WasmEngine
    limits: Limits = field(default_factory=Limits)
    clock: Clock = field(default_factory=Clock)
    faults: FaultSource | None = None
    rollback: str = "auto"
    subnet_id: bytes = b""
    canisters: CanisterTable = field(default_factory=CanisterTable)
    next_canister_index: int = 0
    first_canister_index: int = 0  # this subnet's canister id range starts here
    router: Router | None = None
    # Called with a request id when an ingress message is answered (any thread-safe hook).
    on_request_done: Callable[[bytes], None] | None = None
    # Certificate for a canister's certified data, for non-replicated queries.
    data_certificate: Callable[[bytes], bytes] | None = None
    requests: dict[bytes, RequestRecord] = field(default_factory=dict)
    counters: _Counters = field(default_factory=_Counters)
    # Executions of the methods tests watch (``GET /_/calls``); shared by all subnets.
    call_count: CallCount | None = None
    _queue: deque[Message] = field(default_factory=deque)
    _contexts: dict[int, CallContext] = field(default_factory=dict)
    _callbacks: dict[int, PendingCallback] = field(default_factory=dict)
    _stop_waiters: dict[bytes, list[Callable[[], None]]] = field(default_factory=dict)
    _logs: dict[bytes, deque[str]] = field(default_factory=dict)
    _next_id: int = 1
    # (deadline ns, callback id) of best-effort calls; stale entries (answered
    # or expired callbacks) are dropped when they reach the top.
    _deadlines: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.canisters, CanisterTable):
            self.canisters = CanisterTable(self.canisters)

    # --- ManagementHost ---------------------------------------------------------

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def allocate_canister_id(self) -> bytes:
        while True:
            candidate = ids.canister_id(self.next_canister_index)
            self.next_canister_index += 1
            if candidate not in self.canisters:
                return candidate

    def hosts_canister_id(self, canister_id: bytes) -> bool:
        """Whether ``canister_id`` lies in this subnet's range (for ``specified_id``)."""
        index = ids.canister_index(canister_id)
        if index is None:
            return False
        if self.router is None:
            return True  # one subnet: every canister id is ours
        return self.first_canister_index <= index < self.first_canister_index + _RANGE_SIZE

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, canister_id: bytes, line: str) -> None:
        buf = self._logs.setdefault(canister_id, deque(maxlen=_LOG_LINES_KEPT))
        buf.append(line)
        log.debug("[%s] %s", ids.to_text(canister_id), line)

    def canister_logs(self, canister_id: bytes) -> list[str]:
        return list(self._logs.get(canister_id, ()))

    def system_state(self, canister: CanisterState, *, query: bool = False) -> SystemState:
        memory = memory_usage(canister)
        limits = self.effective_limits()
        return SystemState(
            canister_id=canister.canister_id,
            controllers=list(canister.controllers),
            cycles_balance=canister.cycles,
            status=int(canister.status),
            time_ns=self.now_ns(),
            canister_version=canister.canister_version,
            certified_data=canister.certified_data,
            certify=self._certifier_for(canister) if query else None,
            freezing_limit_cycles=cycles.freezing_limit(canister.settings, memory),
            log=lambda line: self.log(canister.canister_id, line),
            cost_per_call=cycles.XNET_CALL_FEE,
            cost_per_byte=cycles.XNET_BYTE_FEE,
            max_response_bytes=(
                limits.max_query_response_bytes if query else limits.max_response_bytes
            ),
            max_call_payload_bytes=limits.max_inter_canister_payload,
            global_timer=canister.global_timer,
            subnet_id=self.subnet_id,
            wasm_memory_limit=canister.settings.wasm_memory_limit,
            call_queue_room=self._queue_room(canister) if not query else None,
        )

    def _queue_room(self, canister: CanisterState) -> Callable[[bytes], int] | None:
        router = self.router
        if router is None:
            return None

        def room(callee: bytes) -> int:
            left = router.call_room(self, canister.canister_id, callee)
            return 1 << 62 if left is None else left

        return room

    def apply_effects(self, canister: CanisterState, result: ExecResult) -> None:
        """State changes of a successful execution other than responses and calls."""
        canister.cycles -= min(canister.cycles, cycles.execution_fee(result.instructions))
        if result.trapped:
            return
        if result.global_timer is not None:
            canister.global_timer = result.global_timer
        if result.certified_data is not None:
            canister.certified_data = result.certified_data
        canister.cycles += result.cycles_accepted
        canister.cycles -= min(canister.cycles, result.cycles_sent)

    def when_stopped(self, canister: CanisterState, callback: Callable[[], None]) -> None:
        if canister.open_call_contexts == 0:
            canister.status = CanisterStatus.STOPPED
            callback()
        else:
            self._stop_waiters.setdefault(canister.canister_id, []).append(callback)

    def take_stop_waiters(self, canister: CanisterState) -> list[Callable[[], None]]:
        return self._stop_waiters.pop(canister.canister_id, [])

    def reject_open_calls(self, canister: CanisterState, reason: str) -> None:
        """Answer every open call context of ``canister`` (uninstall / reinstall)."""
        for context in [
            c for c in self._contexts.values() if c.canister_id == canister.canister_id
        ]:
            if not context.responded:
                self._respond(
                    context.origin,
                    RejectResponse(RejectCode.CANISTER_REJECT, reason, ""),
                    context.cycles_available,
                )
            del self._contexts[context.id]
        for cb in [c for c in self._callbacks.values() if c.canister_id == canister.canister_id]:
            del self._callbacks[cb.id]
        canister.open_call_contexts = 0
        self._maybe_stopped(canister)

    # --- ingress ----------------------------------------------------------------

    def submit_ingress(self, request: Request) -> None:
        """Induct an update call, or raise :class:`Reject` if the replica refuses it."""
        if request.request_id in self.requests:
            return  # duplicate submission: the first one counts
        size = len(request.arg) + len(request.method_name)
        if self.router is not None:
            self.router.admit_ingress(self, size)
        self._check_ingress(request)
        self.requests[request.request_id] = RequestRecord(
            request_id=request.request_id,
            sender=request.sender,
            canister_id=request.canister_id,
            method=request.method_name,
            expiry_ns=request.ingress_expiry,
        )
        message = CallMessage(
            callee=request.canister_id,
            method=request.method_name,
            arg=request.arg,
            cycles=0,
            sender=request.sender,
            origin=IngressOrigin(request.request_id, request.sender),
        )
        if self.router is None:
            self._queue.append(message)
        else:
            self.router.accept_ingress(self, message, size)

    def forget_request(self, request_id: bytes) -> None:
        """Drop an ingress message that expired before a block carried it."""
        self.requests.pop(request_id, None)

    def enqueue(self, message: Message) -> None:
        """Put a message into this replica's input: it runs in this round (``localnet.fabric``)."""
        self._queue.append(message)

    def _check_ingress(self, request: Request) -> None:
        self._check_injected_faults(request.canister_id, request.method_name)
        limit = self.effective_limits().max_ingress_bytes
        if len(request.arg) > limit:
            raise Reject(
                RejectCode.CANISTER_REJECT,
                f"Request payload of {len(request.arg)} bytes exceeds the ingress limit of "
                f"{limit} bytes.",
                ErrorCode.CANISTER_REJECTED_MESSAGE,
            )
        if request.canister_id == ids.MANAGEMENT_CANISTER:
            self._check_management_ingress(request)
            return
        canister = self._callable_canister(request.canister_id)
        self._method_kind(canister, request.method_name, replicated=True)  # refuses unknown ones
        fee = cycles.ingress_fee(len(request.arg) + len(request.method_name))
        if canister.cycles < fee + self._freezing_limit(canister):
            raise Reject(
                RejectCode.SYS_TRANSIENT,
                f"Canister {ids.to_text(canister.canister_id)} is out of cycles: please top it up.",
                ErrorCode.CANISTER_OUT_OF_CYCLES,
            )
        canister.cycles -= fee

    def _check_management_ingress(self, request: Request) -> None:
        check_ingress(self, sender=request.sender, method=request.method_name, arg=request.arg)
        if request.method_name == "provisional_create_canister_with_cycles":
            return  # any effective canister id will do, as on the IC
        target = effective_canister_id(request.method_name, request.arg)
        if target is not None and target != request.effective_canister_id:
            raise Reject(
                RejectCode.CANISTER_REJECT,
                f"Specified CanisterId {ids.to_text(target)} does not match effective canister "
                f"id in URL {ids.to_text(request.effective_canister_id)}",
                ErrorCode.CANISTER_REJECTED_MESSAGE,
            )

    def effective_limits(self) -> Limits:
        """The configured limits, lowered by an injected payload cap."""
        return self.faults.limits(self.limits) if self.faults else self.limits

    def _check_injected_faults(self, canister_id: bytes, method: str) -> None:
        if self.faults is None:
            return
        reject = self.faults.transient_reject_for(canister_id, method)
        if reject is not None:
            raise reject
        if self.faults.is_stopped(canister_id):
            raise Reject(
                RejectCode.CANISTER_ERROR,
                f"Canister {ids.to_text(canister_id)} is stopped and therefore does not have a "
                "CallContextManager",
                ErrorCode.CANISTER_STOPPED,
            )

    # --- queries ------------------------------------------------------------------

    def query(self, request: Request) -> Response:
        """Execute a non-replicated query; nothing it does persists.

        A composite query's calls to other canisters' queries run here too,
        depth first, each callback on the state the previous step left.
        """
        if request.canister_id == ids.MANAGEMENT_CANISTER:
            return management_query(
                self, caller=request.sender, method=request.method_name, arg=request.arg
            )
        return self._query(
            request.canister_id, request.method_name, request.arg, request.sender, stack=()
        )

    def _query(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        caller: bytes,
        *,
        stack: tuple[bytes, ...],
    ) -> Response:
        try:
            if canister_id in stack:
                raise Reject(
                    RejectCode.CANISTER_ERROR,
                    f"Loop detected: composite query calls reach canister "
                    f"{ids.to_text(canister_id)} again",
                    ErrorCode.QUERY_CALL_GRAPH_LOOP_DETECTED,
                )
            self._check_injected_faults(canister_id, method)
            canister = self._callable_canister(canister_id)
            kind = self._method_kind(canister, method, replicated=False)
        except Reject as reject:
            return RejectResponse(reject.code, reject.message, reject.error_code or "")
        ctx = MessageContext(kind=kind, method=method, arg=arg, caller=caller)
        result = self._run_query(canister, ctx)
        if result.trapped:
            return self._trap_reject(canister, result)
        if result.calls:
            return self._composite(canister, caller, result, (*stack, canister_id))
        return result.response or self._no_reply(canister)

    def _composite(
        self, canister: CanisterState, caller: bytes, result: ExecResult, stack: tuple[bytes, ...]
    ) -> Response:
        """Answer a composite query's calls, then run its callbacks in order."""
        response, state = result.response, result.query_state
        pending = deque(result.calls)
        while pending:
            call = pending.popleft()
            answer = self._query(
                call.callee, call.method, call.arg, canister.canister_id, stack=stack
            )
            ctx = _callback_context(call, answer, caller, responded=response is not None)
            ctx.in_composite_query, ctx.query_state = True, state
            step = self._run_query(canister, ctx)
            if step.trapped:
                if call.on_cleanup is not None:
                    self._run_query(
                        canister,
                        MessageContext(
                            kind=EntryKind.CLEANUP,
                            caller=caller,
                            callback=call.on_cleanup,
                            in_composite_query=True,
                            query_state=state,
                        ),
                    )
                if response is None:
                    return self._trap_reject(canister, step)
                continue
            state = step.query_state
            pending.extend(step.calls)
            response = response or step.response
        return response or self._no_reply(canister)

    def _run_query(self, canister: CanisterState, ctx: MessageContext) -> ExecResult:
        assert canister.sandbox is not None
        result = canister.sandbox.execute(
            ctx, self.system_state(canister, query=True), self.limits.query_instructions
        )
        self._count(result)
        for line in result.logs:
            self.log(canister.canister_id, line)
        return result

    @staticmethod
    def _no_reply(canister: CanisterState) -> RejectResponse:
        return RejectResponse(
            RejectCode.CANISTER_ERROR,
            f"Canister {ids.to_text(canister.canister_id)} did not reply to the call",
            ErrorCode.CANISTER_DID_NOT_REPLY,
        )

    # --- the execution loop ---------------------------------------------------------

    def has_work(self) -> bool:
        return bool(self._queue)

    def run_until_idle(self, max_messages: int = 1_000_000) -> int:
        """Execute queued messages until none is left; returns how many ran."""
        done = 0
        while self._queue and done < max_messages:
            self._execute(self._queue.popleft())
            done += 1
        return done

    def fire_due_timers(self) -> int:
        """Queue the global timer of every canister whose deadline has passed."""
        fired = 0
        for canister in self.canisters.due_timers(self.clock.peek_ns()):
            if self._can_run_timer(canister):
                canister.global_timer = 0  # the IC deactivates the timer before it runs
                self._queue.append(TimerMessage(canister.canister_id))
                fired += 1
        return fired

    def expire_deadlines(self) -> int:
        """Answer best-effort calls whose deadline passed with reject code 6.

        The callee may still answer later; its response then finds no callback
        and is dropped, as on the IC.
        """
        now = self.clock.peek_ns()
        expired = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, callback_id = heapq.heappop(self._deadlines)
            callback = self._callbacks.get(callback_id)
            if callback is None or callback.deadline_ns != deadline:
                continue  # answered meanwhile
            callback.deadline_ns = 0  # expire once
            timeout = RejectResponse(RejectCode.SYS_UNKNOWN, "Timeout expired", "")
            self._queue.append(ResponseMessage(callback.id, timeout, 0))
            expired += 1
        return expired

    def next_timer_ns(self) -> int | None:
        """The earliest canister timer or best-effort call deadline, if any."""
        while self._deadlines:
            deadline, callback_id = self._deadlines[0]
            callback = self._callbacks.get(callback_id)
            if callback is not None and callback.deadline_ns == deadline:
                break
            heapq.heappop(self._deadlines)
        deadlines = [d[0] for d in self._deadlines[:1]]
        timer = self.canisters.next_timer_ns()
        if timer is not None:
            deadlines.append(timer)
        return min(deadlines) if deadlines else None

    def _can_run_timer(self, canister: CanisterState) -> bool:
        return (
            canister.status == CanisterStatus.RUNNING
            and canister.sandbox is not None
            and canister.sandbox.has_export("canister_global_timer")
        )

    def _execute(self, message: Message) -> None:
        if isinstance(message, CallMessage):
            self._execute_call(message)
        elif isinstance(message, ResponseMessage):
            self._execute_response(message)
        else:
            self._execute_timer(message)

    def _execute_call(self, msg: CallMessage) -> None:
        if isinstance(msg.origin, IngressOrigin):
            self.requests[msg.origin.request_id].status = "processing"
        if msg.callee == ids.MANAGEMENT_CANISTER:
            self._call_management(msg)
            return
        try:
            if not isinstance(msg.origin, IngressOrigin):
                self._check_injected_faults(msg.callee, msg.method)
            canister = self._callable_canister(msg.callee)
            kind = self._method_kind(canister, msg.method, replicated=True)
        except Reject as reject:
            self._respond(
                msg.origin,
                RejectResponse(reject.code, reject.message, reject.error_code or ""),
                msg.cycles,
            )
            return
        if self.call_count is not None:
            self.call_count.saw(msg.callee, msg.method, msg.arg)
        context = self._open_context(canister, msg.origin, msg.sender, msg.cycles)
        context.deadline_ns = msg.deadline_ns
        ctx = MessageContext(
            kind=kind,
            method=msg.method,
            arg=msg.arg,
            caller=msg.sender,
            cycles_available=msg.cycles,
        )
        self._run(canister, context, ctx, self.limits.update_instructions)

    def _call_management(self, msg: CallMessage) -> None:
        origin = msg.origin

        def respond(response: Response, refund: int) -> None:
            self._respond(origin, response, refund)

        handle_management_call(
            self,
            caller=msg.sender,
            method=msg.method,
            arg=msg.arg,
            cycles=msg.cycles,
            via_ingress=isinstance(origin, IngressOrigin),
            respond=respond,
        )

    def _execute_response(self, msg: ResponseMessage) -> None:
        callback = self._callbacks.pop(msg.callback_id, None)
        if callback is None:
            return  # the caller was uninstalled meanwhile: the IC drops the response
        canister = self.canisters.get(callback.canister_id)
        context = self._contexts.get(callback.call_context_id)
        if canister is None or canister.sandbox is None or context is None:
            return
        context.outstanding -= 1
        canister.cycles += msg.refund
        ctx = _callback_context(
            callback.call, msg.response, context.caller, responded=context.responded
        )
        ctx.cycles_refunded = msg.refund
        result = self._run(canister, context, ctx, self.limits.update_instructions)
        if result.trapped and callback.call.on_cleanup is not None:
            cleanup = MessageContext(
                kind=EntryKind.CLEANUP,
                caller=context.caller,
                callback=callback.call.on_cleanup,
                already_responded=context.responded,
            )
            self._run(canister, context, cleanup, self.limits.update_instructions)

    def _execute_timer(self, msg: TimerMessage) -> None:
        canister = self.canisters.get(msg.canister_id)
        if canister is None or not self._can_run_timer(canister):
            return
        context = self._open_context(canister, SystemOrigin(), canister.canister_id, 0)
        ctx = MessageContext(kind=EntryKind.GLOBAL_TIMER, caller=canister.canister_id)
        self._run(canister, context, ctx, self.limits.update_instructions)

    # --- applying an execution ------------------------------------------------------

    def _run(
        self, canister: CanisterState, context: CallContext, ctx: MessageContext, limit: int
    ) -> ExecResult:
        assert canister.sandbox is not None
        ctx.cycles_available = context.cycles_available
        ctx.deadline_ns = context.deadline_ns
        result = canister.sandbox.execute(ctx, self.system_state(canister), limit)
        self._count(result)
        for line in result.logs:
            self.log(canister.canister_id, line)
        self.apply_effects(canister, result)
        if not result.trapped:
            context.cycles_available -= min(context.cycles_available, result.cycles_accepted)
            for call in result.calls:
                self._send(canister, context, call)
            if result.response is not None and not context.responded:
                self._answer(context, result.response)
        self._settle(canister, context, result)
        return result

    def _send(self, canister: CanisterState, context: CallContext, call: OutgoingCall) -> None:
        callback = PendingCallback(
            id=self._new_id(),
            canister_id=canister.canister_id,
            call_context_id=context.id,
            call=call,
            module_version=canister.canister_version,
        )
        if call.timeout_seconds is not None:
            callback.deadline_ns = self.clock.peek_ns() + call.timeout_seconds * 1_000_000_000
            heapq.heappush(self._deadlines, (callback.deadline_ns, callback.id))
        self._callbacks[callback.id] = callback
        context.outstanding += 1
        fee = cycles.xnet_fee(len(call.arg) + len(call.method))
        canister.cycles -= min(canister.cycles, fee)
        message = CallMessage(
            callee=call.callee,
            method=call.method,
            arg=call.arg,
            cycles=call.cycles,
            sender=canister.canister_id,
            origin=CanisterOrigin(canister.canister_id, callback.id),
            deadline_ns=callback.deadline_ns,
        )
        if self.router is None:
            self._queue.append(message)
        else:
            self.router.send(self, _destination(message), message)

    def _answer(self, context: CallContext, response: Response) -> None:
        context.responded = True
        refund = context.cycles_available
        context.cycles_available = 0
        self._respond(context.origin, response, refund)

    def _settle(self, canister: CanisterState, context: CallContext, result: ExecResult) -> None:
        """Answer and close ``context`` once no callback can answer it any more."""
        if context.outstanding > 0:
            return
        if not context.responded:
            if result.trapped:
                self._answer(context, self._trap_reject(canister, result))
            else:
                self._answer(context, self._no_reply(canister))
        if self._contexts.pop(context.id, None) is not None:
            canister.open_call_contexts -= 1
            self._maybe_stopped(canister)

    def _open_context(
        self, canister: CanisterState, origin: Origin, caller: bytes, cycles_attached: int
    ) -> CallContext:
        context = CallContext(
            id=self._new_id(),
            canister_id=canister.canister_id,
            origin=origin,
            caller=caller,
            cycles_available=cycles_attached,
        )
        self._contexts[context.id] = context
        canister.open_call_contexts += 1
        return context

    def _respond(self, origin: Origin, response: Response, refund: int) -> None:
        if isinstance(origin, CanisterOrigin):
            message = ResponseMessage(origin.callback_id, response, refund)
            if self.router is None:
                self._queue.append(message)
            else:
                self.router.send(self, origin.caller, message)
        elif isinstance(origin, IngressOrigin):
            record = self.requests[origin.request_id]
            if isinstance(response, Reply):
                record.status, record.reply = "replied", response.data
            else:
                record.status, record.reject = "rejected", response
            if self.on_request_done is not None:
                self.on_request_done(origin.request_id)

    def _maybe_stopped(self, canister: CanisterState) -> None:
        if canister.status != CanisterStatus.STOPPING or canister.open_call_contexts:
            return
        canister.status = CanisterStatus.STOPPED
        for waiter in self._stop_waiters.pop(canister.canister_id, []):
            waiter()

    # --- helpers ----------------------------------------------------------------------

    def _callable_canister(self, canister_id: bytes) -> CanisterState:
        canister = self.canisters.get(canister_id)
        text = ids.to_text(canister_id)
        if canister is None:
            raise Reject(
                RejectCode.DESTINATION_INVALID,
                f"Canister {text} not found",
                ErrorCode.CANISTER_NOT_FOUND,
            )
        if canister.status == CanisterStatus.STOPPED:
            raise Reject(
                RejectCode.CANISTER_ERROR, f"Canister {text} is stopped", ErrorCode.CANISTER_STOPPED
            )
        if canister.status == CanisterStatus.STOPPING:
            raise Reject(
                RejectCode.CANISTER_ERROR,
                f"Canister {text} is stopping",
                ErrorCode.CANISTER_STOPPING,
            )
        if canister.sandbox is None:
            raise Reject(
                RejectCode.CANISTER_ERROR,
                f"Canister {text} is empty: no Wasm module is installed. Install one with "
                "install_code.",
                ErrorCode.CANISTER_WASM_MODULE_NOT_FOUND,
            )
        return canister

    @staticmethod
    def _method_kind(canister: CanisterState, method: str, *, replicated: bool) -> EntryKind:
        assert canister.sandbox is not None
        kind = canister.sandbox.methods().get(method)
        text = ids.to_text(canister.canister_id)
        if replicated:
            if kind == EntryKind.UPDATE:
                return kind
            if kind == EntryKind.QUERY:
                return EntryKind.REPLICATED_QUERY
            if kind == EntryKind.COMPOSITE_QUERY:
                raise Reject(
                    RejectCode.CANISTER_ERROR,
                    "Composite query cannot be called in replicated mode",
                    ErrorCode.COMPOSITE_QUERY_CALLED_IN_REPLICATED_MODE,
                )
            raise Reject(
                RejectCode.CANISTER_ERROR,
                f"Canister {text} has no update method '{method}'",
                ErrorCode.CANISTER_METHOD_NOT_FOUND,
            )
        if kind in (EntryKind.QUERY, EntryKind.COMPOSITE_QUERY):
            return kind
        raise Reject(
            RejectCode.DESTINATION_INVALID,
            f"Canister {text} has no query method '{method}'",
            ErrorCode.CANISTER_METHOD_NOT_FOUND,
        )

    def _trap_reject(self, canister: CanisterState, result: ExecResult) -> RejectResponse:
        return RejectResponse(
            RejectCode.CANISTER_ERROR,
            f"Error from Canister {ids.to_text(canister.canister_id)}: {result.trap_message}",
            result.error_code or ErrorCode.CANISTER_TRAPPED,
        )

    def _certifier_for(self, canister: CanisterState) -> Callable[[], bytes] | None:
        if self.data_certificate is None:
            return None
        make, canister_id = self.data_certificate, canister.canister_id
        return lambda: make(canister_id)

    def _freezing_limit(self, canister: CanisterState) -> int:
        return cycles.freezing_limit(canister.settings, memory_usage(canister))

    def _count(self, result: ExecResult) -> None:
        self.counters.executions += 1
        self.counters.instructions += result.instructions
        self.counters.traps += int(result.trapped)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def _destination(message: CallMessage) -> bytes:
    """The canister whose subnet executes ``message``.

    A call to ``aaaaa-aa`` about a canister goes to that canister's subnet, as
    on the IC; one about no canister (``raw_rand``, creation) stays local.
    """
    if message.callee != ids.MANAGEMENT_CANISTER:
        return message.callee
    return effective_canister_id(message.method, message.arg) or message.sender


def _callback_context(
    call: OutgoingCall, response: Response, caller: bytes, *, responded: bool
) -> MessageContext:
    """The reply or reject callback ``call`` registered, for ``response``."""
    if isinstance(response, Reply):
        return MessageContext(
            kind=EntryKind.REPLY_CALLBACK,
            arg=response.data,
            caller=caller,
            callback=call.on_reply,
            already_responded=responded,
        )
    return MessageContext(
        kind=EntryKind.REJECT_CALLBACK,
        caller=caller,
        callback=call.on_reject,
        reject_code=response.code,
        reject_message=response.message,
        already_responded=responded,
    )
