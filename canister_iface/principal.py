"""Principals: typed, hashable ids of canisters and users.

Kept here rather than taken from ``icp_principal`` because the agent needs a
small, typed value (mypy strict) it can hash, compare and use as a dict key;
``icp_principal.Principal`` is untyped.  The textual form is the interface
spec's: ``base32(crc32_be(raw) · raw)``, lowercase, in groups of five joined
by dashes.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from functools import lru_cache

MAX_PRINCIPAL_BYTES = 29
_SELF_AUTHENTICATING = b"\x02"
_ANONYMOUS = b"\x04"


@dataclass(frozen=True, slots=True)
class Principal:
    """A principal as its raw bytes (at most 29)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) > MAX_PRINCIPAL_BYTES:
            raise ValueError(
                f"a principal has at most {MAX_PRINCIPAL_BYTES} bytes, got {len(self.raw)}"
            )

    @classmethod
    def from_text(cls, text: str) -> Principal:
        """Parse ``xxxxx-xxxxx-…``; raises ``ValueError`` saying what is wrong."""
        compact = text.strip().replace("-", "").upper()
        try:
            data = base64.b32decode(compact + "=" * (-len(compact) % 8))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a principal: not base32 ({exc})") from exc
        if len(data) < 4:
            raise ValueError(f"{text!r} is not a principal: too short for its checksum")
        principal = cls(data[4:])
        if data[:4] != _crc32(principal.raw):
            raise ValueError(f"{text!r} is not a principal: wrong checksum (a typo?)")
        if principal.to_text() != text.strip().lower():
            raise ValueError(
                f"{text!r} is not a principal in canonical form; did you mean "
                f"{principal.to_text()!r}?"
            )
        return principal

    @classmethod
    def of(cls, value: Principal | str | bytes) -> Principal:
        """Accept a principal, its text or its raw bytes."""
        if isinstance(value, Principal):
            return value
        if isinstance(value, str):
            return cls.from_text(value)
        return cls(bytes(value))

    @classmethod
    def self_authenticating(cls, public_key_der: bytes) -> Principal:
        """The principal of a DER public key: ``sha224(der) · 0x02``."""
        return cls(hashlib.sha224(public_key_der).digest() + _SELF_AUTHENTICATING)

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(_ANONYMOUS)

    @classmethod
    def management_canister(cls) -> Principal:
        """``aaaaa-aa``, the management canister (empty bytes)."""
        return cls(b"")

    @property
    def is_anonymous(self) -> bool:
        return self.raw == _ANONYMOUS

    @property
    def is_management_canister(self) -> bool:
        return self.raw == b""

    def to_text(self) -> str:
        return _text(self.raw)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Principal({self.to_text()!r})"


# An agent names its canister and sender in every call (paths, errors, metrics
# labels): the few principals a process talks to are encoded once.
@lru_cache(maxsize=1024)
def _text(raw: bytes) -> str:
    encoded = base64.b32encode(_crc32(raw) + raw).decode("ascii")
    encoded = encoded.rstrip("=").lower()
    return "-".join(encoded[i : i + 5] for i in range(0, len(encoded), 5))


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")
