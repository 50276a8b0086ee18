"""Principals as raw bytes, the way the replica handles them.

localnet keeps ids as ``bytes`` internally (cheap to hash and compare) and
converts to the textual form only for messages and the CLI.
"""

from __future__ import annotations

from icp_principal import Principal

MANAGEMENT_CANISTER = b""
ANONYMOUS = b"\x04"


def canister_id(index: int) -> bytes:
    """The IC's canister id for the ``index``-th canister of a subnet range.

    Mainnet ids are an 8-byte big-endian counter followed by ``0x01 0x01``
    (opaque id class), which is what makes ``rrkah-fqaaa-aaaaa-aaaaq-cai``.
    """
    return index.to_bytes(8, "big") + b"\x01\x01"


def canister_index(raw: bytes) -> int | None:
    """Inverse of :func:`canister_id`, ``None`` for anything that is not one."""
    if len(raw) != 10 or raw[8:] != b"\x01\x01":
        return None
    return int.from_bytes(raw[:8], "big")


def to_text(raw: bytes) -> str:
    return str(Principal(raw).to_str())


def from_text(text: str) -> bytes:
    """Parse a textual principal; raises ``ValueError`` with the reason."""
    try:
        return bytes(Principal.from_str(text).bytes)
    except Exception as exc:  # icp-py-core raises assorted types for bad checksums
        raise ValueError(f"{text!r} is not a valid principal: {exc}") from exc
