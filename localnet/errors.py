"""Reject codes and error codes as the IC reports them.

Everything in localnet that refuses a message raises :class:`Reject` with the
IC's reject code, its textual ``error_code`` (``IC0503`` ...) and a message
worded like the replica's, so that the orchestrator's error classification is
exercised against realistic input.
"""

from __future__ import annotations

from enum import IntEnum


class RejectCode(IntEnum):
    SYS_FATAL = 1
    SYS_TRANSIENT = 2
    DESTINATION_INVALID = 3
    CANISTER_REJECT = 4
    CANISTER_ERROR = 5
    SYS_UNKNOWN = 6


# The replica's error codes (ic-error-types), the subset localnet produces.
class ErrorCode:
    SUBNET_OVERSUBSCRIBED = "IC0101"
    MAX_NUMBER_OF_CANISTERS_REACHED = "IC0102"
    CANISTER_QUEUE_FULL = "IC0201"
    INGRESS_MESSAGE_TIMEOUT = "IC0204"
    CANISTER_QUEUE_NOT_EMPTY = "IC0205"
    INGRESS_HISTORY_FULL = "IC0206"
    CANISTER_NOT_FOUND = "IC0301"
    CANISTER_METHOD_NOT_FOUND = "IC0302"
    CANISTER_ALREADY_INSTALLED = "IC0303"
    CANISTER_WASM_MODULE_NOT_FOUND = "IC0304"
    INSUFFICIENT_MEMORY_ALLOCATION = "IC0402"
    INSUFFICIENT_CYCLES_FOR_CREATE_CANISTER = "IC0403"
    SUBNET_NOT_FOUND = "IC0404"
    CANISTER_NOT_HOSTED_BY_SUBNET = "IC0405"
    CANISTER_REJECTED_MESSAGE = "IC0406"
    UNKNOWN_MANAGEMENT_MESSAGE = "IC0407"
    INVALID_MANAGEMENT_PAYLOAD = "IC0408"
    CANISTER_SNAPSHOT_NOT_FOUND = "IC0411"
    CANISTER_SNAPSHOT_LIMIT_EXCEEDED = "IC0413"
    CANISTER_TRAPPED = "IC0502"
    CANISTER_CALLED_TRAP = "IC0503"
    CANISTER_CONTRACT_VIOLATION = "IC0504"
    CANISTER_INVALID_WASM = "IC0505"
    CANISTER_DID_NOT_REPLY = "IC0506"
    CANISTER_OUT_OF_MEMORY = "IC0507"
    CANISTER_STOPPED = "IC0508"
    CANISTER_STOPPING = "IC0509"
    CANISTER_NOT_STOPPED = "IC0510"
    CANISTER_STOPPING_CANCELLED = "IC0511"
    CANISTER_INVALID_CONTROLLER = "IC0512"
    CANISTER_FUNCTION_NOT_FOUND = "IC0513"
    CANISTER_NON_EMPTY = "IC0514"
    QUERY_CALL_GRAPH_LOOP_DETECTED = "IC0517"
    INSUFFICIENT_CYCLES_IN_CALL = "IC0520"
    CANISTER_WASM_ENGINE_ERROR = "IC0521"
    CANISTER_INSTRUCTION_LIMIT_EXCEEDED = "IC0522"
    CANISTER_MEMORY_ACCESS_LIMIT_EXCEEDED = "IC0525"
    DEADLINE_EXPIRED = "IC0528"
    RESERVED_CYCLES_LIMIT_EXCEEDED = "IC0529"
    CANISTER_OUT_OF_CYCLES = "IC0207"
    INSUFFICIENT_CYCLES_IN_MEMORY_GROW = "IC0532"
    CANISTER_METHOD_NOT_ALLOWED = "IC0536"


class Reject(Exception):
    """A message was rejected: by the system (codes 1-3, 5) or the canister (4)."""

    def __init__(self, code: RejectCode, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.code = RejectCode(code)
        self.message = message
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"Reject({self.code.name}, {self.error_code}, {self.message!r})"
