"""Request ids: the interface spec's representation-independent hash, agent side.

This is deliberately a separate implementation from ``localnet.rihash``: the
agent and the local IC must agree because both follow the spec (the tests
check them against the spec's example and against each other), not because
they share code that could be wrong in the same way.

Encoding (spec, "Representation-independent hashing of structured data"):
blob -> itself, text -> UTF-8, nat -> shortest unsigned LEB128, array ->
concatenated element hashes, map -> sorted ``H(key) · H(value)`` pairs.
A value of ``None`` is an omitted optional field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256


@dataclass(frozen=True)
class Hashed:
    """A blob of which only the hash is needed, hashed already (a large query
    reply: its signature check and the call it is sent on in share one SHA-256)."""

    digest: bytes


# What callers may put into a content map (recursively).
Value = bytes | memoryview | str | int | Hashed | Sequence["Value"] | Mapping[str, "Value | None"]


def uleb128(number: int) -> bytes:
    """Shortest unsigned LEB128 of a natural number."""
    if number < 0:
        raise ValueError(f"only natural numbers have an unsigned LEB128 encoding, got {number}")
    groups = []
    while number >= 0x80:
        groups.append((number & 0x7F) | 0x80)
        number >>= 7
    groups.append(number)
    return bytes(groups)


def _encode(value: Value) -> bytes | memoryview:
    """The bytes whose SHA-256 is the value's hash (maps and arrays excepted)."""
    if isinstance(value, bytes | memoryview):  # a view: a blob not copied out of its reply
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError("the representation-independent hash defines no booleans")
    if isinstance(value, int):
        return uleb128(value)
    raise TypeError(f"cannot hash a {type(value).__name__} representation-independently")


def hash_value(value: Value) -> bytes:
    if isinstance(value, bytes | str | int | memoryview):  # concrete classes: no ABC check
        return sha256(_encode(value)).digest()
    if isinstance(value, Hashed):
        return value.digest
    if isinstance(value, Mapping):
        return hash_of_map(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | str | memoryview):
        return sha256(b"".join(hash_value(item) for item in value)).digest()
    return sha256(_encode(value)).digest()


def hash_of_map(fields: Mapping[str, Value | None]) -> bytes:
    """The representation-independent hash of a map; ``None`` fields are left out."""
    pairs = sorted(
        _hash_name(name) + hash_value(value) for name, value in fields.items() if value is not None
    )
    return sha256(b"".join(pairs)).digest()


def _hash_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"map field names must be text, got {type(name).__name__}: {name!r}")
    return sha256(name.encode("utf-8")).digest()


def request_id(content: Mapping[str, Value | None]) -> bytes:
    """The 32-byte id of a request: the hash of its envelope's ``content`` map."""
    return hash_of_map(content)
