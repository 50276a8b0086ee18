"""Module rewriting that upgrades with a kept heap need (enhanced orthogonal persistence).

On an upgrade with ``wasm_memory_persistence = opt keep`` the IC

1. writes the new module's active data segments over the old heap
   (``OrthogonalPersistence::upgrade_memory``), and
2. runs the new module's Wasm ``start`` function *on that kept heap*, before
   ``canister_post_upgrade`` (the IC's instrumentation turns the start section
   into an exported function and calls it as stage 3 of an upgrade).

The sandbox instantiates modules the usual way: the start function runs
during instantiation, on fresh memory, before a given heap is copied in.
Motoko's runtime initialises its persistent metadata in ``start``, so that
order breaks a kept heap. :func:`start_in_post_upgrade` moves the start call
to the beginning of ``canister_post_upgrade`` instead: the same effect, in
the IC's order. Only section framing, the type, import, function, export,
start and code sections are touched; function indices do not change.
"""

from __future__ import annotations

from localnet.wasm_module import InvalidModule

_TYPE, _IMPORT, _FUNCTION, _EXPORT, _START, _CODE, _DATA = 1, 2, 3, 7, 8, 10, 11
_KIND_FUNC = 0
_WASM_PAGE = 65536
_POST_UPGRADE = "canister_post_upgrade"


def _uleb(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw):
            raise InvalidModule("unexpected end of the module")
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _sleb(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                value -= 1 << shift
            return value, pos


def uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sections(raw: bytes) -> list[tuple[int, bytes]]:
    """``(id, body)`` of every section of a raw module, in order."""
    if raw[:4] != b"\x00asm":
        raise InvalidModule("not a Wasm module")
    out, pos = [], 8
    while pos < len(raw):
        section_id = raw[pos]
        size, pos = _uleb(raw, pos + 1)
        out.append((section_id, raw[pos : pos + size]))
        pos += size
    return out


def _assemble(header: bytes, parts: list[tuple[int, bytes]]) -> bytes:
    return header + b"".join(bytes([sid]) + uleb128(len(body)) + body for sid, body in parts)


# --- data segments ---------------------------------------------------------------------


def active_data_segments(raw: bytes) -> list[tuple[int, bytes]]:
    """``(offset, bytes)`` of every active data segment of memory 0."""
    for section_id, body in sections(raw):
        if section_id == _DATA:
            return _data_segments(body)
    return []


def _data_segments(body: bytes) -> list[tuple[int, bytes]]:
    count, pos = _uleb(body, 0)
    out = []
    for _ in range(count):
        flags, pos = _uleb(body, pos)
        if flags == 1:  # passive
            size, pos = _uleb(body, pos)
            pos += size
            continue
        memory = 0
        if flags == 2:
            memory, pos = _uleb(body, pos)
        offset, pos = _const_offset(body, pos)
        size, pos = _uleb(body, pos)
        if memory == 0:
            out.append((offset, body[pos : pos + size]))
        pos += size
    return out


def _const_offset(body: bytes, pos: int) -> tuple[int, int]:
    opcode = body[pos]
    if opcode not in (0x41, 0x42):  # i32.const, i64.const
        raise InvalidModule(f"data segment offset expression 0x{opcode:02x} is not a constant")
    value, pos = _sleb(body, pos + 1)
    if body[pos] != 0x0B:
        raise InvalidModule("data segment offset expression is not a single constant")
    bits = 32 if opcode == 0x41 else 64
    return value & ((1 << bits) - 1), pos + 1


def with_data_segments(heap: bytes, raw_module: bytes) -> bytes:
    """``heap`` with the module's active data segments written over it (grown if needed)."""
    segments = active_data_segments(raw_module)
    if not segments:
        return heap
    out = bytearray(heap)
    for offset, data in segments:
        end = offset + len(data)
        if end > len(out):
            out.extend(bytes(-(-end // _WASM_PAGE) * _WASM_PAGE - len(out)))
        out[offset:end] = data
    return bytes(out)


# --- moving the start call -------------------------------------------------------------


def start_in_post_upgrade(raw: bytes) -> bytes:
    """``raw`` with its start function called first thing in ``canister_post_upgrade``.

    Modules without a start section are returned unchanged.
    """
    parts = sections(raw)
    start = next((body for sid, body in parts if sid == _START), None)
    if start is None:
        return raw
    start_index, _ = _uleb(start, 0)
    imported = _imported_functions(parts)
    defined = _count(_body_of(parts, _FUNCTION))
    exports = _exports(_body_of(parts, _EXPORT))
    post = next((i for n, kind, i in exports if n == _POST_UPGRADE and kind == _KIND_FUNC), None)
    wrapper = imported + defined
    types, void_type = _with_void_type(_body_of(parts, _TYPE))
    calls = [start_index] + ([post] if post is not None else [])
    body = b"\x00" + b"".join(b"\x10" + uleb128(i) for i in calls) + b"\x0b"
    new_exports = [(n, k, i) for n, k, i in exports if n != _POST_UPGRADE]
    new_exports.append((_POST_UPGRADE, _KIND_FUNC, wrapper))
    replaced = {
        _TYPE: types,
        _FUNCTION: _append_entry(_body_of(parts, _FUNCTION), uleb128(void_type)),
        _EXPORT: _encode_exports(new_exports),
        _CODE: _append_entry(_body_of(parts, _CODE), uleb128(len(body)) + body),
    }
    rebuilt = [(sid, replaced.get(sid, body)) for sid, body in parts if sid != _START]
    return _assemble(raw[:8], _with_missing(rebuilt, replaced))


def _body_of(parts: list[tuple[int, bytes]], section_id: int) -> bytes:
    return next((body for sid, body in parts if sid == section_id), b"\x00")


def _with_missing(
    parts: list[tuple[int, bytes]], replaced: dict[int, bytes]
) -> list[tuple[int, bytes]]:
    """Insert the sections ``replaced`` has but ``parts`` lacks, in canonical order."""
    present = {sid for sid, _ in parts}
    order = [_TYPE, _IMPORT, _FUNCTION, 4, 5, 13, 6, _EXPORT, _START, 9, 12, _CODE, _DATA]
    out = list(parts)
    for sid in (s for s in replaced if s not in present):
        rank = order.index(sid)
        at = next(
            (k for k, (other, _) in enumerate(out) if other and order.index(other) > rank),
            len(out),
        )
        out.insert(at, (sid, replaced[sid]))
    return out


def _count(body: bytes) -> int:
    return _uleb(body, 0)[0]


def _append_entry(body: bytes, entry: bytes) -> bytes:
    count, pos = _uleb(body, 0)
    return uleb128(count + 1) + body[pos:] + entry


def _imported_functions(parts: list[tuple[int, bytes]]) -> int:
    body = _body_of(parts, _IMPORT)
    count, pos = _uleb(body, 0)
    functions = 0
    for _ in range(count):
        for _name in range(2):
            size, pos = _uleb(body, pos)
            pos += size
        kind = body[pos]
        pos += 1
        pos = _skip_import_desc(body, pos, kind)
        functions += kind == _KIND_FUNC
    return functions


def _skip_import_desc(body: bytes, pos: int, kind: int) -> int:
    if kind == 0:  # function: type index
        return _uleb(body, pos)[1]
    if kind == 1:  # table: reftype + limits
        return _skip_limits(body, pos + 1)
    if kind == 2:  # memory: limits
        return _skip_limits(body, pos)
    if kind == 3:  # global: valtype + mutability
        return pos + 2
    if kind == 4:  # tag: attribute + type index
        return _uleb(body, pos + 1)[1]
    raise InvalidModule(f"unknown import kind {kind}")


def _skip_limits(body: bytes, pos: int) -> int:
    flags = body[pos]
    pos = _uleb(body, pos + 1)[1]
    if flags & 0x01:
        pos = _uleb(body, pos)[1]
    return pos


def _exports(body: bytes) -> list[tuple[str, int, int]]:
    count, pos = _uleb(body, 0)
    out = []
    for _ in range(count):
        size, pos = _uleb(body, pos)
        name = body[pos : pos + size].decode()
        pos += size
        kind = body[pos]
        index, pos = _uleb(body, pos + 1)
        out.append((name, kind, index))
    return out


def _encode_exports(exports: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(uleb128(len(exports)))
    for name, kind, index in exports:
        encoded = name.encode()
        out += uleb128(len(encoded)) + encoded + bytes([kind]) + uleb128(index)
    return bytes(out)


def _with_void_type(body: bytes) -> tuple[bytes, int]:
    """The type section with a ``[] -> []`` function type, and that type's index."""
    count, pos = _uleb(body, 0)
    for index in range(count):
        if body[pos] != 0x60:
            raise InvalidModule(f"unsupported type form 0x{body[pos]:02x}")
        params, after = _uleb(body, pos + 1)
        after += params
        results, after2 = _uleb(body, after)
        if params == 0 and results == 0:
            return body, index
        pos = after2 + results
    return _append_entry(body, b"\x60\x00\x00"), count
