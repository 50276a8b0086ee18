"""Canister settings: validating a ``canister_settings`` record and applying it.

Validation follows the replica's ``validate_canister_settings``: ranges, at
most 10 controllers (and allowed viewers), environment variable limits, and
enough cycles to stay above the freezing limit when an allocation grows. A
setting left out (``null``) keeps its value; the defaults of
:class:`~localnet.state.Settings` only matter at creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localnet import cycles, rihash
from localnet.errors import ErrorCode, Reject
from localnet.mgmt_base import fail, help_line, memory_usage
from localnet.mgmt_types import opt, principal_bytes, variant
from localnet.state import CanisterState, Settings

MAX_CONTROLLERS = 10
MAX_ALLOWED_VIEWERS = 10
MAX_ENVIRONMENT_VARIABLES = 20
MAX_ENVIRONMENT_NAME_BYTES = 128
MAX_ENVIRONMENT_VALUE_BYTES = 128
_U64 = 2**64 - 1
_U128 = 2**128 - 1
_MAX_WASM_MEMORY_LIMIT = 2**48

# field -> (largest allowed value, its name in the IC's message)
_RANGES = {
    "compute_allocation": (100, "ComputeAllocation"),
    "memory_allocation": (_U64, "MemoryAllocation"),
    "freezing_threshold": (_U64, "Freezing threshold"),
    "reserved_cycles_limit": (_U128, "Reserved cycles limit"),
    "minimum_incoming_canister_call_cycles": (_U128, "Minimum incoming canister call cycles"),
    "log_memory_limit": (_U64, "Log memory limit"),
    "wasm_memory_limit": (_MAX_WASM_MEMORY_LIMIT, "Wasm memory limit"),
    "wasm_memory_threshold": (_U64, "Wasm memory threshold"),
}
_VISIBILITIES = {
    "log_visibility": ("log_visibility", "log_viewers"),
    "snapshot_visibility": ("snapshot_visibility", "snapshot_viewers"),
    "status_visibility": ("status_visibility", "status_viewers"),
}


@dataclass
class SettingsUpdate:
    """A validated ``canister_settings`` record: only the fields that were given."""

    values: dict[str, Any]

    @property
    def controllers(self) -> list[bytes] | None:
        value = self.values.get("controllers")
        return None if value is None else list(value)

    @property
    def environment_variables(self) -> list[tuple[str, str]] | None:
        value = self.values.get("environment_variables")
        return None if value is None else list(value)


def _invalid(message: str) -> Reject:
    return fail(
        ErrorCode.CANISTER_CONTRACT_VIOLATION,
        f"Could not validate the settings: {message} "
        + help_line("Apply the described changes to make the settings valid.", "invalid-settings"),
    )


def parse(record: dict[str, Any] | None) -> SettingsUpdate:
    """Check ranges and list lengths of a decoded ``canister_settings`` record."""
    values: dict[str, Any] = {}
    if not record:
        return SettingsUpdate(values)
    for name, (largest, label) in _RANGES.items():
        value = opt(record.get(name, []))
        if value is None:
            continue
        if value > largest:
            raise _invalid(f"{label} expected to be in the range [0..{largest}], got {value}.")
        values[name] = value
    controllers = opt(record.get("controllers", []))
    if controllers is not None:
        values["controllers"] = _controllers(controllers)
    for name, (vis_field, viewers_field) in _VISIBILITIES.items():
        visibility = opt(record.get(name, []))
        if visibility is not None:
            values[vis_field], values[viewers_field] = _visibility(name, visibility)
    env = opt(record.get("environment_variables", []))
    if env is not None:
        values["environment_variables"] = _environment(env)
    return SettingsUpdate(values)


def _controllers(raw: list[Any]) -> list[bytes]:
    if len(raw) > MAX_CONTROLLERS:
        raise _invalid(
            f"Invalid settings: 'controllers' length exceeds maximum size allowed of "
            f"{MAX_CONTROLLERS}."
        )
    # The IC keeps controllers as a set ordered by their bytes.
    return sorted({principal_bytes(p) for p in raw})


def _visibility(name: str, value: dict[str, Any]) -> tuple[str, list[bytes]]:
    tag, payload = variant(value)
    if tag != "allowed_viewers":
        return tag, []
    if len(payload) > MAX_ALLOWED_VIEWERS:
        raise _invalid(
            f"Invalid settings: '{name}' allowed viewers length exceeds maximum size "
            f"allowed of {MAX_ALLOWED_VIEWERS}."
        )
    return tag, sorted({principal_bytes(p) for p in payload})


def _environment(raw: list[dict[str, str]]) -> list[tuple[str, str]]:
    if len(raw) > MAX_ENVIRONMENT_VARIABLES:
        raise fail(
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
            f"Too many environment variables: {len(raw)} (max: {MAX_ENVIRONMENT_VARIABLES})",
        )
    pairs: dict[str, str] = {}
    for entry in raw:
        name, value = entry["name"], entry["value"]
        if len(name.encode()) > MAX_ENVIRONMENT_NAME_BYTES:
            raise fail(
                ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                f'Environment variable name "{name}" exceeds the maximum allowed length of '
                f"{MAX_ENVIRONMENT_NAME_BYTES}.",
            )
        if len(value.encode()) > MAX_ENVIRONMENT_VALUE_BYTES:
            raise fail(
                ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                f'Environment variable value "{value}" exceeds the maximum allowed length of '
                f"{MAX_ENVIRONMENT_VALUE_BYTES}.",
            )
        if name in pairs:
            raise fail(
                ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                f'Duplicate environment variable name "{name}": names must be unique.',
            )
        pairs[name] = value
    return sorted(pairs.items())


def check_affordable(
    update: SettingsUpdate, current: Settings, balance: int, memory_bytes: int
) -> None:
    """Growing an allocation must leave the balance above the new freezing limit."""
    new = merged(current, update)
    limit = cycles.freezing_limit(new, memory_bytes)
    if balance >= limit:
        return
    if new.compute_allocation > current.compute_allocation:
        raise fail(
            ErrorCode.INSUFFICIENT_CYCLES_IN_COMPUTE_ALLOCATION,
            f"Cannot increase compute allocation to {new.compute_allocation}% due to "
            f"insufficient cycles. At least {limit - balance} additional cycles are required."
            + help_line(
                "Top up the canister with more cycles.", "insufficient-cycles-in-compute-allocation"
            ),
        )
    if new.memory_allocation > current.memory_allocation:
        raise fail(
            ErrorCode.INSUFFICIENT_CYCLES_IN_MEMORY_ALLOCATION,
            f"Cannot increase memory allocation to {new.memory_allocation} bytes due to "
            f"insufficient cycles. At least {limit - balance} additional cycles are required."
            + help_line(
                "Top up the canister with more cycles.", "insufficient-cycles-in-memory-allocation"
            ),
        )
    # Raising only the freezing threshold may freeze a canister: the IC allows that.


def merged(current: Settings, update: SettingsUpdate) -> Settings:
    """``current`` with the given fields of ``update`` applied (a new object)."""
    fields = dict(current.__dict__)
    fields.update(update.values)
    return Settings(**fields)


def apply(canister: CanisterState, update: SettingsUpdate) -> None:
    canister.settings = merged(canister.settings, update)


def environment_hash(pairs: list[tuple[str, str]]) -> bytes:
    """The spec's hash of the environment variables map (canister history)."""
    return rihash.hash_of_map(dict(pairs))


def validate_for(canister: CanisterState, update: SettingsUpdate) -> None:
    """All checks ``update_settings`` makes against an existing canister."""
    check_affordable(update, canister.settings, canister.cycles, memory_usage(canister))
