"""The interface spec's representation-independent hash (request ids and friends).

A request id is the representation-independent hash of an envelope's
``content`` map; the same hash (under other domain separators) is what
delegations and query-response signatures cover.  The rules (spec section
"Representation-independent hashing of structured data"):

- blobs hash as-is, strings as UTF-8, natural numbers as shortest unsigned
  LEB128;
- an array hashes the concatenation of its elements' hashes;
- a map hashes the sorted concatenations ``H(key) · H(value)`` of its fields.

Python ``int`` is always treated as a ``nat``: every number in requests and
responses is one.  A negative number is refused rather than silently encoded
as a signed ``int``, because the two encodings of a non-negative value differ
and the caller would have to say which one it means.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any


def leb128(value: int) -> bytes:
    """Shortest unsigned LEB128 encoding of a natural number."""
    if value < 0:
        raise ValueError(f"LEB128 nat encoding needs a natural number, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_value(value: Any) -> bytes:
    """The spec's hash of one field value (blob, text, nat, array or map)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _sha256(bytes(value))
    if isinstance(value, str):
        return _sha256(value.encode("utf-8"))
    if isinstance(value, bool):
        # bool is an int subclass; the spec has no booleans, so True must not become 1.
        raise TypeError("representation-independent hash has no encoding for bool")
    if isinstance(value, int):
        return _sha256(leb128(value))
    if isinstance(value, Mapping):
        return hash_of_map(value)
    if isinstance(value, Sequence):
        return _sha256(b"".join(hash_value(item) for item in value))
    raise TypeError(
        f"representation-independent hash has no encoding for {type(value).__name__}: "
        "use bytes, str, non-negative int, list or dict"
    )


def hash_of_map(fields: Mapping[str, Any]) -> bytes:
    """Representation-independent hash of a map; ``None`` values count as absent.

    Treating ``None`` as an omitted optional field lets callers build content
    maps with ``"nonce": nonce`` without branching, and matches the spec's
    "omitted optional fields are indeed omitted".
    """
    pairs = []
    for key, value in fields.items():
        if value is None:
            continue
        if not isinstance(key, str):
            raise TypeError(f"map keys must be str, got {type(key).__name__}: {key!r}")
        pairs.append(_sha256(key.encode("utf-8")) + hash_value(value))
    pairs.sort()
    return _sha256(b"".join(pairs))


def request_id(content: Mapping[str, Any]) -> bytes:
    """The 32-byte request id of an envelope's ``content`` map."""
    return hash_of_map(content)
