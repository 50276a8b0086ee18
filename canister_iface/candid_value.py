"""Candid for ``canister_iface``: the one place ``icp_candid``'s values cross into typed code.

``icp_candid`` (icp-py-core's encoder/decoder) is untyped.  This module gives
it types, in two ways of reading a reply:

- **Typed decoding** against the expected Candid type (:func:`decode`,
  :func:`decode_one` and the ``decode_nat`` / ``decode_blob`` / ... shortcuts)
  for replies whose shape never changes (a ``nat``, a ``blob``).  Principals
  come back as our :class:`Principal`.
- **Untyped decoding, read field by field** (:func:`decode_values`,
  :func:`decode_single`, :class:`Rec` and the ``as_*`` accessors) for records
  that interface versions extend.  Candid's subtyping lets a newer replica
  add fields and an older one (e.g. a pinned PocketIC) omit fields a newer
  ``.did`` declares; a typed decode fails on a missing non-``opt`` field,
  while reading by name lets a client require what it needs and treat newer
  fields as optional.

Either way a reply that does not have the expected shape raises
:class:`~canister_iface.errors.ProtocolError` naming the method and field:
the canister speaks another interface than the caller expects, which
retrying cannot fix.  Nothing above this module sees an ``Any``.

Values use icp_candid's conventions: records are dicts, tuples are lists,
``opt`` is ``[]`` or ``[x]``, variants are one-key dicts, ``blob`` is
``bytes``.  An untyped decode keys records by ``str(field hash)`` (a ``list``
for tuple records) and variants by ``str(tag hash)``; principals are objects
with a ``bytes`` attribute.  Arguments may hold our :class:`Principal`
anywhere; it is encoded as a principal.

Candid types (:class:`CandidType`) are opaque values: the constructors below
(``Nat``, ``Record({...})``, ...) or the types of a ``.did`` file
(:mod:`ic_did`).

``blob`` values must be passed as ``bytes``: that takes icp_candid's fast
path (no per-byte work, but several copies: about 0.4 ms to encode and 0.9 ms
to decode 2 MiB here).  A ``list`` of ints goes byte by byte, about 400 times
slower.  ``tests/canister_iface/test_agent_candid.py`` measures both.

The relay moves every byte of an image through one reply and one argument,
so those two have paths that never copy the blob:
:func:`encode_with_blob` returns the message as :class:`ArgParts` (the blob
stays where it is: the agent hashes and sends the parts), and
:func:`decode_ok` reads a ``variant { ok : blob }`` (or ``ok : nat``) reply
in place, as a ``memoryview`` of the reply.  Any other shape makes
:func:`decode_ok` return ``None`` and the caller uses the general decoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from icp_candid import Types as _Types
from icp_candid import decode as _decode
from icp_candid import encode as _encode
from icp_candid.candid import Pipe as _Pipe
from icp_candid.candid import idl_hash

from canister_iface.errors import ProtocolError
from canister_iface.principal import Principal
from ic_did import CandidType

__all__ = ["EMPTY_ARGS", "ArgParts", "CandidType", "Rec"]

EMPTY_ARGS = b"DIDL\x00\x00"
_T = TypeVar("_T")
Buffer = bytes | bytearray | memoryview


def _t(value: Any) -> CandidType:
    return cast(CandidType, value)


# ------------------------------------------------------------------- types

Null = _t(_Types.Null)
Bool = _t(_Types.Bool)
Nat = _t(_Types.Nat)
Int = _t(_Types.Int)
Nat8 = _t(_Types.Nat8)
Nat16 = _t(_Types.Nat16)
Nat32 = _t(_Types.Nat32)
Nat64 = _t(_Types.Nat64)
Int64 = _t(_Types.Int64)
Text = _t(_Types.Text)
PrincipalType = _t(_Types.Principal)
Reserved = _t(_Types.Reserved)
Blob = _t(_Types.Vec(_Types.Nat8))


# Constructors carry Candid's own type names, as icp_candid's ``Types`` does.
def Vec(element: CandidType) -> CandidType:
    return _t(_Types.Vec(element))


def Opt(element: CandidType) -> CandidType:
    return _t(_Types.Opt(element))


def Record(fields: Mapping[str, CandidType]) -> CandidType:
    return _t(_Types.Record(dict(fields)))


def Variant(alternatives: Mapping[str, CandidType]) -> CandidType:
    return _t(_Types.Variant(dict(alternatives)))


def Tuple(*elements: CandidType) -> CandidType:
    return _t(_Types.Tuple(*elements))


# ---------------------------------------------------------------- encoding


def encode_values(types_and_values: Sequence[tuple[CandidType, object]]) -> bytes:
    """Several arguments as one Candid message; ``[]`` is ``()``."""
    fast = _nat64_message(types_and_values)
    if fast is not None:
        return fast
    try:
        args = [{"type": kind, "value": _to_icp(value)} for kind, value in types_and_values]
        return bytes(_encode(args))
    except Exception as exc:  # icp_candid raises assorted types for mismatches
        shown = ", ".join(kind.name for kind, _ in types_and_values)
        raise ValueError(f"cannot encode arguments as ({shown}): {exc}") from exc


def _nat64_message(types_and_values: Sequence[tuple[CandidType, object]]) -> bytes | None:
    """The message of 1..127 ``nat64`` arguments, written directly (the relay's reads:
    icp_candid builds a type table and checks each value, ~30 function calls per
    argument); ``None`` for any other arguments."""
    count = len(types_and_values)
    if not 0 < count < 128:
        return None
    values = []
    for kind, value in types_and_values:
        if kind is not Nat64 or type(value) is not int or not 0 <= value < _NAT64_END:
            return None
        values.append(value.to_bytes(8, "little"))
    return b"DIDL\x00" + bytes([count]) + b"\x78" * count + b"".join(values)


_NAT64_END = 1 << 64


def encode(*args: tuple[CandidType, object]) -> bytes:
    """Candid bytes of ``(type, value)`` arguments; ``encode()`` is ``()``."""
    return encode_values(args)


def encode_value(candid_type: CandidType, value: object) -> bytes:
    """One value of ``candid_type`` as a Candid message."""
    return encode_values([(candid_type, value)])


def encode_nat(value: int) -> bytes:
    return encode((Nat, value))


def encode_blob(value: bytes) -> bytes:
    return encode((Blob, value))


def encode_text(value: str) -> bytes:
    return encode((Text, value))


def encode_principal(value: Principal) -> bytes:
    return encode((PrincipalType, value))


@dataclass(frozen=True)
class ArgParts:
    """A Candid message as consecutive parts, so a large blob in it is never copied.

    ``digest``: the SHA-256 of the whole message where it is already known (a
    verified query reply sent on as an argument: the agent hashed it checking
    the reply's signature), so the request id does not hash it again.  A wrong
    digest cannot slip anything through: the IC computes the request id from
    the bytes it receives, and the sender's signature would not match.
    """

    parts: tuple[Buffer, ...]
    digest: bytes | None = None

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def joined(self) -> bytes:
        """The message as one ``bytes`` (a copy), for callers that need one."""
        return b"".join(self.parts)

    def release(self) -> None:
        """Release the parts that are views (:meth:`memoryview.release`): the message
        cannot be used afterwards, and a buffer no other view refers to is freed
        (a relay's forwarded reply, once the write has sent it)."""
        for part in self.parts:
            if isinstance(part, memoryview):
                with contextlib.suppress(BufferError):  # exported: freed once unused
                    part.release()


def encode_with_blob(types_and_values: Sequence[tuple[CandidType, object]]) -> ArgParts:
    """:func:`encode_values` whose last argument is a ``blob`` left where it is.

    A blob's value is its LEB128 length followed by its bytes, and the last
    argument's value ends the message: so the message is the encoding with an
    empty blob, its final length byte replaced by the real length, followed
    by the blob itself.
    """
    if not types_and_values:
        raise ValueError("encode_with_blob needs a last argument of type blob")
    *head, (kind, blob) = types_and_values
    if not _is_blob_type(kind) or not isinstance(blob, bytes | bytearray | memoryview):
        raise ValueError(f"the last argument must be a blob given as bytes, got {kind.name}")
    prefix = encode_values([*head, (kind, b"")])
    return ArgParts((prefix[:-1] + _uleb128(len(blob)), memoryview(blob)))


def _is_blob_type(kind: CandidType) -> bool:
    inner = getattr(kind, "_type", None)
    return (
        isinstance(kind, type(Blob))
        and getattr(inner, "_bits", None) == 8
        and (type(inner) is type(Nat8))
    )


def _uleb128(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


# ----------------------------------------------------------- typed decoding


def decode(data: bytes, *types: CandidType) -> list[object]:
    """The values of a Candid reply, read as ``types`` (extra reply values are ignored)."""
    try:
        decoded = _decode(bytes(data), list(types) if types else None)
    except Exception as exc:
        shown = ", ".join(kind.name for kind in types) or "any"
        raise ProtocolError(
            f"the reply is not Candid of type ({shown}): {type(exc).__name__}: {exc}; "
            "does the canister implement the expected interface?"
        ) from exc
    return [_from_icp(item["value"]) for item in decoded]


def decode_one(data: bytes, kind: CandidType) -> object:
    values = decode(data, kind)
    if not values:
        raise ProtocolError(f"the reply has no values; expected ({kind.name})")
    return values[0]


def decode_nat(data: bytes) -> int:
    return _checked(decode_one(data, Nat), int, "nat")


def decode_blob(data: bytes) -> bytes:
    return _checked(decode_one(data, Blob), bytes, "blob")


def decode_text(data: bytes) -> str:
    return _checked(decode_one(data, Text), str, "text")


def decode_principal(data: bytes) -> Principal:
    return _checked(decode_one(data, PrincipalType), Principal, "principal")


def _checked(value: object, kind: type[_T], name: str) -> _T:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"the reply holds a {type(value).__name__}, expected {name}")
    return value


def _to_icp(value: object) -> object:
    """Our :class:`Principal` as the raw bytes icp_candid encodes; recursively."""
    if isinstance(value, Principal):
        return value.raw
    if isinstance(value, dict):
        return {key: _to_icp(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_icp(item) for item in value]
    return value


def _from_icp(value: object) -> object:
    """icp_candid's principal objects as our :class:`Principal`; recursively."""
    raw = getattr(value, "bytes", None)
    if isinstance(raw, bytes) and type(value).__name__ == "Principal":
        return Principal(raw)
    if isinstance(value, dict):
        return {key: _from_icp(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_icp(item) for item in value]
    return value


# ------------------------------------------------------- in-place decoding

_OK_HASH = 24860  # idl_hash("ok")
# Candid type codes (SLEB128 in a type table)
_NAT, _NAT8, _NAT64 = -3, -5, -8
_OPT, _VEC, _RECORD, _VARIANT, _FUNC, _SERVICE = -18, -19, -20, -21, -22, -23


def decode_ok(data: Buffer) -> memoryview | int | None:
    """The ``ok`` payload of a ``(variant { ok : blob; ... })`` reply (or ``nat``, ``nat64``).

    A blob comes back as a ``memoryview`` of ``data`` (not copied).  ``None``
    means the reply has another shape, an ``err`` case included, or is not
    well-formed: decode it with :func:`decode_single` then, which reports
    what is wrong.
    """
    try:
        return _decode_ok(_Cursor(memoryview(data)))
    except (IndexError, ValueError):
        return None


class _Cursor:
    __slots__ = ("pos", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def byte(self) -> int:
        value = self.view[self.pos]
        self.pos += 1
        return int(value)

    def uleb(self) -> int:
        number, shift = 0, 0
        while True:
            byte = self.byte()
            number |= (byte & 0x7F) << shift
            if byte < 0x80:
                return number
            shift += 7

    def sleb(self) -> int:
        number, shift = 0, 0
        while True:
            byte = self.byte()
            number |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return number - (1 << shift) if byte & 0x40 else number


def _decode_ok(cursor: _Cursor) -> memoryview | int | None:
    if bytes(cursor.view[:4]) != b"DIDL":
        return None
    table = _type_table(cursor)
    count = cursor.uleb()
    if count < 1:
        return None
    entry = _entry(table, cursor.sleb())
    for _ in range(count - 1):  # only the first argument is read
        cursor.sleb()
    if entry is None or entry[0] != _VARIANT:
        return None
    fields = entry[1]
    assert isinstance(fields, list)
    case = cursor.uleb()
    if case >= len(fields) or fields[case][0] != _OK_HASH:
        return None
    kind = fields[case][1]
    if kind == _NAT:
        return cursor.uleb()
    if kind == _NAT64:
        cursor.pos += 8
        return int.from_bytes(cursor.view[cursor.pos - 8 : cursor.pos], "little")
    vec = _entry(table, kind)
    if vec is None or vec != (_VEC, _NAT8):
        return None
    length = cursor.uleb()
    end = cursor.pos + length
    if end > len(cursor.view):
        return None
    return cursor.view[cursor.pos : end]


def decode_write_arg(data: Buffer) -> tuple[int, int, memoryview] | None:
    """``(import_id, offset, data)`` of a ``(nat64, nat64, blob)`` message (the reply of
    ``icrp_read_for_write``, sent on as ``icrp_write``'s argument), the blob as a view
    of ``data``.  ``None``: another shape, or not well-formed (extra values included)."""
    try:
        return _decode_write_arg(_Cursor(memoryview(data)))
    except (IndexError, ValueError):
        return None


def _decode_write_arg(cursor: _Cursor) -> tuple[int, int, memoryview] | None:
    if bytes(cursor.view[:4]) != b"DIDL":
        return None
    table = _type_table(cursor)
    if cursor.uleb() != 3 or cursor.sleb() != _NAT64 or cursor.sleb() != _NAT64:
        return None
    if _entry(table, cursor.sleb()) != (_VEC, _NAT8):
        return None
    view = cursor.view
    start = cursor.pos
    import_id = int.from_bytes(view[start : start + 8], "little")
    offset = int.from_bytes(view[start + 8 : start + 16], "little")
    cursor.pos = start + 16
    length = cursor.uleb()
    end = cursor.pos + length
    if end != len(view):  # short, or bytes after the blob
        return None
    return import_id, offset, view[cursor.pos : end]


Entry = tuple[int, object]
# Type tables seen before, as their bytes: a method's replies all start with
# the same table (icrp_read's: 19 entries, most of them its error type), and
# comparing those bytes costs far less than parsing them again.
_TABLES: list[tuple[bytes, list[Entry | None]]] = []
_MAX_TABLES = 16


def _type_table(cursor: _Cursor) -> list[Entry | None]:
    view = cursor.view
    for raw, table in _TABLES:
        end = 4 + len(raw)
        if view[4:end] == raw:
            cursor.pos = end
            return table
    cursor.pos = 4
    table = [_type_entry(cursor) for _ in range(cursor.uleb())]
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.pop(0)
    _TABLES.append((bytes(view[4 : cursor.pos]), table))
    return table


def _entry(table: list[Entry | None], index: int) -> Entry | None:
    return table[index] if 0 <= index < len(table) else None


def _type_entry(cursor: _Cursor) -> Entry | None:
    """One type table entry: vectors and variants kept, other kinds skipped."""
    code = cursor.sleb()
    if code in (_OPT, _VEC):
        inner = cursor.sleb()
        return (code, inner) if code == _VEC else None
    if code in (_RECORD, _VARIANT):
        fields = [(cursor.uleb(), cursor.sleb()) for _ in range(cursor.uleb())]
        return (code, fields) if code == _VARIANT else None
    if code == _FUNC:
        for _ in range(2):
            for _ in range(cursor.uleb()):
                cursor.sleb()
        cursor.pos += cursor.uleb()  # annotations, one byte each
        return None
    if code == _SERVICE:
        for _ in range(cursor.uleb()):
            cursor.pos += cursor.uleb()
            cursor.sleb()
        return None
    raise ValueError(f"type code {code} in a type table")


# --------------------------------------------------------- untyped decoding


def candid_hash(name: str) -> str:
    """The key under which an untyped decode stores field or tag ``name``."""
    return str(idl_hash(name))


def decode_values(data: bytes, what: str) -> list[object]:
    """All values of a Candid message, untyped; ``what`` names it in errors."""
    try:
        types, start = _wire_types(memoryview(data))
        if types is None:  # a function or service type in the table: icp_candid reads it
            return [item["value"] for item in _decode(data)]
        pipe = _Pipe(memoryview(data)[start:])
        return [kind.decodeValue(pipe, kind) for kind in types]
    except Exception as exc:  # icp_candid raises assorted types for malformed input
        raise ProtocolError(f"{what}: the reply is not valid Candid ({exc})") from exc


# The header (type table and argument types) of a reply, as icp_candid's type
# objects, by its bytes.  An ICRP result's table is dozens of entries (its
# error variant), the same in every reply of a method: icp_candid parsing it
# again took ~0.3 ms a reply, most of the cost of decoding it.  The objects
# are only read while decoding, so one set serves every reply with that header.
_HEADERS: list[tuple[bytes, list[Any] | None]] = []
_MAX_HEADERS = 64
_PRIMITIVES: dict[int, Any] = {
    -1: _Types.Null,
    -2: _Types.Bool,
    -3: _Types.Nat,
    -4: _Types.Int,
    -5: _Types.Nat8,
    -6: _Types.Nat16,
    -7: _Types.Nat32,
    -8: _Types.Nat64,
    -9: _Types.Int8,
    -10: _Types.Int16,
    -11: _Types.Int32,
    -12: _Types.Int64,
    -13: _Types.Float32,
    -14: _Types.Float64,
    -15: _Types.Text,
    -16: _Types.Reserved,
    -17: _Types.Empty,
    -24: _Types.Principal,
}


def _wire_types(view: memoryview) -> tuple[list[Any] | None, int]:
    """The argument types of a message and where its values start; ``None`` for a
    header holding a function or service type (left to icp_candid)."""
    if bytes(view[:4]) != b"DIDL":
        raise ValueError("not a Candid message (no DIDL prefix)")
    for raw, types in _HEADERS:
        end = 4 + len(raw)
        if view[4:end] == raw:
            return types, end
    cursor = _Cursor(view)
    cursor.pos = 4
    types = _read_header(cursor)
    if len(_HEADERS) >= _MAX_HEADERS:
        _HEADERS.pop(0)
    _HEADERS.append((bytes(view[4 : cursor.pos]), types))
    return types, cursor.pos


def _read_header(cursor: _Cursor) -> list[Any] | None:
    """icp_candid's reading of a type table and argument types (``decode``), built with
    its public ``Types``; ``None`` (the cursor past nothing useful) for func/service."""
    table = [_Types.Rec() for _ in range(cursor.uleb())]

    def ref(index: int) -> Any:
        return table[index] if index >= 0 else _PRIMITIVES[index]

    for slot in table:
        code = cursor.sleb()
        if code == _OPT:
            kind = _Types.Opt(ref(cursor.sleb()))
        elif code == _VEC:
            kind = _Types.Vec(ref(cursor.sleb()))
        elif code == _RECORD:
            kind = _Types.Record({cursor.uleb(): ref(cursor.sleb()) for _ in range(cursor.uleb())})
        elif code == _VARIANT:
            fields = {str(cursor.uleb()): ref(cursor.sleb()) for _ in range(cursor.uleb())}
            kind = _Types.Variant(fields)
        elif code in (_FUNC, _SERVICE):
            return None
        else:
            raise ValueError(f"type code {code} in a type table")
        slot.fill(kind)
    return [ref(cursor.sleb()) for _ in range(cursor.uleb())]


def decode_single(data: bytes, what: str) -> object:
    """The first value of a Candid message (extra values are ignored, as Candid allows)."""
    values = decode_values(data, what)
    if not values:
        raise ProtocolError(f"{what}: expected a value in the reply, got none")
    return values[0]


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
