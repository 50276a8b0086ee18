"""The management canister's (``aaaaa-aa``) Candid, from ``ic_did/ic.did``.

The argument and result types of every method come from the ``.did`` file
the orchestrator's client encodes with too (:mod:`ic_did`), so both sides
speak one description.  Arguments are decoded against these types: records
come back keyed by field name, ``opt`` values as ``[]`` or ``[value]``,
variants as one-entry dicts and principals as ``icp_principal.Principal``
(use :func:`principal_bytes`). Fields a client leaves out of an ``opt`` are
``[]``; fields a client adds are skipped, so clients built against older or
newer ``ic.did`` versions both work.
"""

from __future__ import annotations

from typing import Any

from icp_candid import decode, encode

from ic_did import complete, management
from localnet.errors import ErrorCode, Reject, RejectCode

# method -> (argument type or None for `()`, result type or None for `()`)
SIGNATURES: dict[str, tuple[Any, Any]] = {
    name: (method.args[0] if method.args else None, method.results[0] if method.results else None)
    for name, method in management().methods.items()
}

EMPTY_REPLY: bytes = encode([])


def decode_args(method: str, data: bytes) -> dict[str, Any]:
    """Decode the argument of ``method``; raises the IC's invalid-payload reject.

    Methods that take ``()`` return ``{}`` (any well-formed Candid is accepted).
    """
    arg_type = SIGNATURES[method][0]
    try:
        if arg_type is None:
            decode(data)
            return {}
        value = decode(data, [arg_type])[0]["value"]
    except Exception as exc:  # icp_candid raises assorted types for malformed input
        raise Reject(
            RejectCode.CANISTER_REJECT,
            f"Error decoding candid: {exc}",
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        ) from exc
    if not isinstance(value, dict):
        raise Reject(
            RejectCode.CANISTER_REJECT,
            f"Error decoding candid: the argument of {method} must be a record",
            ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
        )
    return value


def encode_args(method: str, value: Any) -> bytes:
    """Encode the argument of ``method`` (for callers inside localnet, e.g. ``LocalNet``).

    ``opt`` fields left out of ``value`` are sent as null.
    """
    arg_type = SIGNATURES[method][0]
    return bytes(encode([{"type": arg_type, "value": complete(arg_type, value)}]))


def decode_result(method: str, data: bytes) -> Any:
    """Decode the reply of ``method`` (for callers inside localnet)."""
    return decode(data, [SIGNATURES[method][1]])[0]["value"]


def encode_result(method: str, value: Any) -> bytes:
    """Encode the reply of ``method`` (``value`` is ignored for ``()`` results)."""
    result_type = SIGNATURES[method][1]
    if result_type is None:
        return EMPTY_REPLY
    data: bytes = encode([{"type": result_type, "value": value}])
    return data


def principal_bytes(value: Any) -> bytes:
    """Raw bytes of a decoded principal (``Principal`` object, bytes or text)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raw = getattr(value, "bytes", None)
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    raise TypeError(f"not a principal: {value!r}")


def opt(value: list[Any]) -> Any | None:
    """The content of a decoded ``opt`` (``[]`` -> None, ``[x]`` -> x)."""
    return value[0] if value else None


def variant(value: dict[str, Any]) -> tuple[str, Any]:
    """``(tag, payload)`` of a decoded variant."""
    ((tag, payload),) = value.items()
    return tag, payload
