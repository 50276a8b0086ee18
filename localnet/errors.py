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


# The replica's error codes (ic-error-types, as of 2026), the subset localnet
# produces. The first digit is the reject code the IC reports with them.
class ErrorCode:
    SUBNET_OVERSUBSCRIBED = "IC0101"
    MAX_NUMBER_OF_CANISTERS_REACHED = "IC0102"
    CANISTER_QUEUE_FULL = "IC0201"
    INGRESS_MESSAGE_TIMEOUT = "IC0202"
    CANISTER_QUEUE_NOT_EMPTY = "IC0203"
    INGRESS_HISTORY_FULL = "IC0204"
    CANISTER_ID_ALREADY_EXISTS = "IC0205"
    STOP_CANISTER_REQUEST_TIMEOUT = "IC0206"
    CANISTER_OUT_OF_CYCLES = "IC0207"
    CANISTER_INSTALL_CODE_RATE_LIMITED = "IC0209"
    CANISTER_HEAP_DELTA_RATE_LIMITED = "IC0210"
    CANISTER_NOT_FOUND = "IC0301"
    CANISTER_SNAPSHOT_NOT_FOUND = "IC0305"
    INSUFFICIENT_MEMORY_ALLOCATION = "IC0402"
    INSUFFICIENT_CYCLES_FOR_CREATE_CANISTER = "IC0403"
    SUBNET_NOT_FOUND = "IC0404"
    CANISTER_NOT_HOSTED_BY_SUBNET = "IC0405"
    CANISTER_REJECTED_MESSAGE = "IC0406"
    UNKNOWN_MANAGEMENT_MESSAGE = "IC0407"
    INVALID_MANAGEMENT_PAYLOAD = "IC0408"
    CANISTER_SNAPSHOT_IMMUTABLE = "IC0409"
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
    CANISTER_MEMORY_ACCESS_LIMIT_EXCEEDED = "IC0524"
    INSUFFICIENT_CYCLES_IN_COMPUTE_ALLOCATION = "IC0530"
    INSUFFICIENT_CYCLES_IN_MEMORY_ALLOCATION = "IC0531"
    INSUFFICIENT_CYCLES_IN_MEMORY_GROW = "IC0532"
    RESERVED_CYCLES_LIMIT_EXCEEDED_IN_MEMORY_ALLOCATION = "IC0533"
    RESERVED_CYCLES_LIMIT_EXCEEDED = "IC0534"  # ...in memory grow
    COMPOSITE_QUERY_CALLED_IN_REPLICATED_MODE = "IC0527"
    CANISTER_METHOD_NOT_FOUND = "IC0536"  # reject code 5 since the 2024 renumbering
    CANISTER_WASM_MODULE_NOT_FOUND = "IC0537"  # reject code 5
    CANISTER_ALREADY_INSTALLED = "IC0538"  # reject code 5
    CANISTER_WASM_MEMORY_LIMIT_EXCEEDED = "IC0539"
    RESERVED_CYCLES_LIMIT_IS_TOO_LOW = "IC0540"
    DEADLINE_EXPIRED = "IC0601"
    RESPONSE_DROPPED = "IC0602"


def reject_code_of(error_code: str) -> RejectCode:
    """The reject code the IC reports with ``error_code`` (its first digit)."""
    return RejectCode(int(error_code[3]))


class Reject(Exception):
    """A message was rejected: by the system (codes 1-3, 5) or the canister (4)."""

    def __init__(self, code: RejectCode, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.code = RejectCode(code)
        self.message = message
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"Reject({self.code.name}, {self.error_code}, {self.message!r})"
