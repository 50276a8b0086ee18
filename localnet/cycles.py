"""What things cost in cycles on localnet's one 13-node application subnet.

The fees are the IC's (``CyclesAccountManagerConfig`` of an application
subnet, interface spec 0.66 and the replica's configuration in 2026) for a
subnet of 13 nodes; other sizes scale linearly, as on the IC.

This is an *approximate* model, good enough for the orchestrator to see the
right orders of magnitude and the right failures:

* instruction counts come from wasmtime fuel (one unit per Wasm operator), so
  execution fees are close to, not equal to, the IC's;
* memory is charged when a canister's balance is checked (freezing limit),
  not every round: localnet does not burn idle cycles in the background;
* storage reservation (``reserved_cycles``) and subnet memory saturation are
  not modelled: ``reserved_cycles`` stays 0.

A canister whose balance would drop below its *freezing limit* (the cycles
it needs to keep paying for its memory and compute allocation for
``freezing_threshold`` seconds) refuses work, with the IC's message (see
:func:`out_of_cycles`).
"""

from __future__ import annotations

from localnet.errors import ErrorCode, Reject, RejectCode
from localnet.state import Settings

REFERENCE_SUBNET_SIZE = 13
SUBNET_SIZE = 13

GiB = 1024**3
SECONDS_PER_DAY = 86_400

# --- the fee table (13-node application subnet) ----------------------------------

CANISTER_CREATION_FEE = 500_000_000_000
COMPUTE_PERCENT_ALLOCATED_PER_SECOND_FEE = 10_000_000
UPDATE_MESSAGE_EXECUTION_FEE = 5_000_000
# Per ten instructions; Wasm64 modules (e.g. Motoko with enhanced orthogonal
# persistence) pay WASM64_INSTRUCTION_COST_OVERHEAD times as much.
TEN_UPDATE_INSTRUCTIONS_EXECUTION_FEE = 10
WASM64_INSTRUCTION_COST_OVERHEAD = 2
XNET_CALL_FEE = 260_000
XNET_BYTE_FEE = 1_000
INGRESS_MESSAGE_RECEPTION_FEE = 1_200_000
INGRESS_BYTE_RECEPTION_FEE = 2_000
GIB_STORAGE_PER_SECOND_FEE = 127_000

# What provisional_create_canister_with_cycles gives without an ``amount``
# (the replica's ``default_provisional_cycles_balance``).
DEFAULT_PROVISIONAL_CYCLES = 100_000_000_000_000

# Instructions the IC charges for management operations that run no Wasm
# (``CanisterMgrConfig``): they are paid like executed instructions.
UPLOAD_CHUNK_INSTRUCTIONS = 1_000_000_000
SNAPSHOT_BASELINE_INSTRUCTIONS = 2_000_000_000
SNAPSHOT_DATA_BASELINE_INSTRUCTIONS = 200_000_000


def scaled(fee: int, subnet_size: int = SUBNET_SIZE) -> int:
    """``fee`` (given for a 13-node subnet) on a subnet of ``subnet_size`` nodes."""
    return fee * subnet_size // REFERENCE_SUBNET_SIZE


# --- message and execution fees --------------------------------------------------


def ingress_fee(nbytes: int, subnet_size: int = SUBNET_SIZE) -> int:
    """Inducting one ingress message of ``nbytes`` (method name + argument)."""
    return scaled(INGRESS_MESSAGE_RECEPTION_FEE + INGRESS_BYTE_RECEPTION_FEE * nbytes, subnet_size)


def xnet_fee(nbytes: int, subnet_size: int = SUBNET_SIZE) -> int:
    """Sending one inter-canister call (or response) of ``nbytes``."""
    return scaled(XNET_CALL_FEE + XNET_BYTE_FEE * nbytes, subnet_size)


def _instructions_cost(instructions: int, wasm64: bool) -> int:
    per_ten = TEN_UPDATE_INSTRUCTIONS_EXECUTION_FEE
    if wasm64:
        per_ten *= WASM64_INSTRUCTION_COST_OVERHEAD
    return per_ten * instructions // 10


def instructions_fee(
    instructions: int, *, wasm64: bool = False, subnet_size: int = SUBNET_SIZE
) -> int:
    """The per-instruction part of an execution's cost."""
    return scaled(_instructions_cost(instructions, wasm64), subnet_size)


def execution_fee(
    instructions: int, *, wasm64: bool = False, subnet_size: int = SUBNET_SIZE
) -> int:
    """One replicated execution: the message base fee plus its instructions."""
    return scaled(
        UPDATE_MESSAGE_EXECUTION_FEE + _instructions_cost(instructions, wasm64), subnet_size
    )


def creation_fee(subnet_size: int = SUBNET_SIZE) -> int:
    return scaled(CANISTER_CREATION_FEE, subnet_size)


# --- memory and compute ------------------------------------------------------------


def storage_fee(nbytes: int, seconds: int, subnet_size: int = SUBNET_SIZE) -> int:
    """Keeping ``nbytes`` of canister memory for ``seconds``."""
    return scaled(GIB_STORAGE_PER_SECOND_FEE * nbytes * seconds // GiB, subnet_size)


def compute_allocation_fee(percent: int, seconds: int, subnet_size: int = SUBNET_SIZE) -> int:
    """Holding a compute allocation of ``percent`` for ``seconds``."""
    return scaled(COMPUTE_PERCENT_ALLOCATED_PER_SECOND_FEE * percent * seconds, subnet_size)


def idle_cycles_burned_per_day(
    settings: Settings, memory_bytes: int, subnet_size: int = SUBNET_SIZE
) -> int:
    """What a canister burns per day doing nothing (``canister_status``'s field).

    Memory is charged for the larger of the memory allocation and the actual
    usage, as on the IC.
    """
    charged_bytes = max(settings.memory_allocation, memory_bytes)
    return storage_fee(charged_bytes, SECONDS_PER_DAY, subnet_size) + compute_allocation_fee(
        settings.compute_allocation, SECONDS_PER_DAY, subnet_size
    )


def freezing_limit(
    settings: Settings, memory_bytes: int, reserved_cycles: int = 0, subnet_size: int = SUBNET_SIZE
) -> int:
    """Cycles that must stay on the balance: ``freezing_threshold`` seconds of idle burn.

    Reserved cycles count towards it (they would pay for the memory first).
    """
    per_day = idle_cycles_burned_per_day(settings, memory_bytes, subnet_size)
    limit = per_day * settings.freezing_threshold // SECONDS_PER_DAY
    return max(0, limit - reserved_cycles)


# --- refusing work ---------------------------------------------------------------------


def out_of_cycles_message(
    canister_text: str, *, available: int, requested: int, threshold: int, reveal_top_up: bool
) -> str:
    """The IC's ``CanisterOutOfCyclesError`` text.

    Only controllers are told how many cycles are missing (``reveal_top_up``).
    """
    if not reveal_top_up:
        return f"Canister {canister_text} is out of cycles"
    missing = threshold + requested - available
    return (
        f"Canister {canister_text} is out of cycles: please top up the canister with at "
        f"least {missing} additional cycles"
    )


def can_withdraw(balance: int, amount: int, limit: int) -> bool:
    """Whether ``amount`` can leave a balance without crossing the freezing ``limit``."""
    return balance - amount >= limit


def check_withdraw(
    canister_text: str, *, balance: int, amount: int, limit: int, reveal_top_up: bool
) -> None:
    """Raise the IC's out-of-cycles reject (IC0207, reject code 2) unless the
    canister can pay ``amount`` and stay above its freezing ``limit``.

    Calls to a frozen canister are rejected with ``SYS_TRANSIENT``: topping the
    canister up makes the same request succeed.
    """
    if can_withdraw(balance, amount, limit):
        return
    raise Reject(
        RejectCode.SYS_TRANSIENT,
        out_of_cycles_message(
            canister_text,
            available=balance,
            requested=amount,
            threshold=limit,
            reveal_top_up=reveal_top_up,
        ),
        ErrorCode.CANISTER_OUT_OF_CYCLES,
    )
