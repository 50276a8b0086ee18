"""Typed reading of decoded Candid replies, tolerant of interface versions.

Replies are decoded *without* an expected type and then read field by field
through :class:`Rec`.  Why not decode against the expected type: Candid's
subtyping lets a newer replica add fields and an older one (e.g. a pinned
PocketIC) omit fields a newer ``ic.did`` declares.  A typed decode with
``icp_candid`` fails on a missing non-``opt`` field; reading fields by name
lets a client require what it needs and treat newer fields as optional.

``icp_candid`` represents an untyped decode as: records -> ``dict`` keyed by
``str(field hash)`` (or a ``list`` for tuple records), variants -> a
one-entry ``dict`` keyed by ``str(tag hash)``, ``opt`` -> ``[]`` / ``[x]``,
``blob`` -> ``bytes``, principals -> objects with a ``bytes`` attribute.
Every accessor checks the shape and raises :class:`ProtocolError` naming the
method and field, so nothing above this module sees an ``Any``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from icp_candid import decode, encode
from icp_candid.candid import idl_hash

from canister_iface.errors import ProtocolError
from canister_iface.principal import Principal

EMPTY_ARGS = encode([])


def candid_hash(name: str) -> str:
    """The key under which an untyped decode stores field or tag ``name``."""
    return str(idl_hash(name))


def decode_values(data: bytes, what: str) -> list[object]:
    """All values of a Candid message, untyped; ``what`` names it in errors."""
    try:
        decoded: Any = decode(data)
    except Exception as exc:  # icp_candid raises assorted types for malformed input
        raise ProtocolError(f"{what}: the reply is not valid Candid ({exc})") from exc
    return [item["value"] for item in decoded]


def decode_single(data: bytes, what: str) -> object:
    """The first value of a Candid message (extra values are ignored, as Candid allows)."""
    values = decode_values(data, what)
    if not values:
        raise ProtocolError(f"{what}: expected a value in the reply, got none")
    return values[0]


def encode_value(candid_type: Any, value: object) -> bytes:
    """One value of ``candid_type`` as a Candid message."""
    return bytes(encode([{"type": candid_type, "value": value}]))


def encode_values(types_and_values: Sequence[tuple[Any, object]]) -> bytes:
    """Several arguments as one Candid message."""
    return bytes(encode([{"type": t, "value": v} for t, v in types_and_values]))


# ------------------------------------------------------------------ scalars


def as_nat(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{what}: expected a natural number, got {_show(value)}")
    return value


def as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{what}: expected an integer, got {_show(value)}")
    return value


def as_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise ProtocolError(f"{what}: expected a float, got {_show(value)}")
    return float(value)


def as_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{what}: expected a bool, got {_show(value)}")
    return value


def as_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: expected text, got {_show(value)}")
    return value


def as_blob(value: object, what: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise ProtocolError(f"{what}: expected a blob, got {_show(value)}")


def as_principal(value: object, what: str) -> Principal:
    raw = getattr(value, "bytes", None)
    if isinstance(raw, bytes | bytearray):
        return Principal(bytes(raw))
    raise ProtocolError(f"{what}: expected a principal, got {_show(value)}")


# --------------------------------------------------------------- composites


def as_opt(value: object, what: str) -> object | None:
    """The content of an ``opt`` (``None`` when absent)."""
    if not isinstance(value, list) or len(value) > 1:
        raise ProtocolError(f"{what}: expected an opt value, got {_show(value)}")
    return value[0] if value else None


def as_vec(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ProtocolError(f"{what}: expected a vector, got {_show(value)}")
    return list(value)


def as_variant(value: object, tags: Iterable[str], what: str) -> tuple[str, object]:
    """``(tag, payload)`` of a variant whose tag must be one of ``tags``."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ProtocolError(f"{what}: expected a variant, got {_show(value)}")
    ((key, payload),) = value.items()
    known = {candid_hash(tag): tag for tag in tags}
    tag = known.get(str(key))
    if tag is None:
        raise ProtocolError(
            f"{what}: unknown variant case (field hash {key}); this client knows "
            f"{sorted(known.values())}: the canister may speak a newer interface"
        )
    return tag, payload


def as_rec(value: object, what: str) -> Rec:
    return Rec(value, what)


def as_tuple(value: object, size: int, what: str) -> list[object]:
    """A tuple record (``record { a; b }``) as its ``size`` elements."""
    if isinstance(value, list) and len(value) >= size:
        return list(value[:size])
    raise ProtocolError(f"{what}: expected a tuple of {size}, got {_show(value)}")


class Rec:
    """A decoded record, read by field name with shape checks."""

    __slots__ = ("_fields", "what")

    def __init__(self, value: object, what: str) -> None:
        if not isinstance(value, dict):
            raise ProtocolError(f"{what}: expected a record, got {_show(value)}")
        self._fields: dict[str, object] = {str(k): v for k, v in value.items()}
        self.what = what

    def has(self, name: str) -> bool:
        return candid_hash(name) in self._fields

    def get(self, name: str) -> object:
        """A required field; its absence is the peer's protocol error."""
        key = candid_hash(name)
        if key not in self._fields:
            raise ProtocolError(f"{self.what}: field {name!r} is missing from the reply")
        return self._fields[key]

    def _at(self, name: str) -> str:
        return f"{self.what}.{name}"

    def nat(self, name: str) -> int:
        return as_nat(self.get(name), self._at(name))

    def integer(self, name: str) -> int:
        return as_int(self.get(name), self._at(name))

    def boolean(self, name: str) -> bool:
        return as_bool(self.get(name), self._at(name))

    def text(self, name: str) -> str:
        return as_text(self.get(name), self._at(name))

    def blob(self, name: str) -> bytes:
        return as_blob(self.get(name), self._at(name))

    def principal(self, name: str) -> Principal:
        return as_principal(self.get(name), self._at(name))

    def principals(self, name: str) -> tuple[Principal, ...]:
        at = self._at(name)
        return tuple(as_principal(v, at) for v in as_vec(self.get(name), at))

    def rec(self, name: str) -> Rec:
        return Rec(self.get(name), self._at(name))

    def vec(self, name: str) -> list[object]:
        return as_vec(self.get(name), self._at(name))

    def opt(self, name: str) -> object | None:
        """An ``opt`` field; an absent field reads as ``None`` (Candid's opt rule)."""
        if not self.has(name):
            return None
        return as_opt(self.get(name), self._at(name))

    def opt_nat(self, name: str) -> int | None:
        value = self.opt(name)
        return None if value is None else as_nat(value, self._at(name))

    def opt_blob(self, name: str) -> bytes | None:
        value = self.opt(name)
        return None if value is None else as_blob(value, self._at(name))

    def opt_text(self, name: str) -> str | None:
        value = self.opt(name)
        return None if value is None else as_text(value, self._at(name))

    def opt_principal(self, name: str) -> Principal | None:
        value = self.opt(name)
        return None if value is None else as_principal(value, self._at(name))

    def opt_rec(self, name: str) -> Rec | None:
        value = self.opt(name)
        return None if value is None else Rec(value, self._at(name))

    def variant(self, name: str, tags: Iterable[str]) -> tuple[str, object]:
        return as_variant(self.get(name), tags, self._at(name))

    def newer_nat(self, name: str) -> int | None:
        """A non-``opt`` field that older interface versions do not send."""
        return self.nat(name) if self.has(name) else None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
