"""What one pass of a function's loop costs, read from the Wasm binary.

localnet counts instructions as wasmtime fuel: 1 per operator, with ``nop``,
``drop``, ``block``, ``loop``, ``else`` and ``end`` free. The IC weighs
operators by ``instruction_to_cost`` (dfinity/ic
``rs/embedders/src/wasm_utils/instrumentation.rs``): for a Wasm64 module such
as Motoko's with enhanced orthogonal persistence, loads and stores cost 2,
``if``/``br``/``br_if``/``br_table`` 2, ``global.get``/``set`` 2, ``call`` 5,
``call_indirect`` 10, integer division and remainder 10, ``drop`` 1,
``block``/``loop``/``else``/``end`` 0, everything else here 1.

:func:`loop_cost` walks the first ``loop`` of a function (found by its name
in the ``name`` section, which moc emits) once, taking every ``if``'s then-arm
and skipping its else-arm: in moc's straight-line code every ``if`` inside a
hot loop is a check whose else-arm traps or takes a bignum path. That is the
path a loop over valid input executes, so the fuel figure can be checked
against the performance counter (``sha256_bench`` does). Calls are counted
at the call site only; what the callee runs is not included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_BLOCK, _LOOP, _IF, _ELSE, _END = 0x02, 0x03, 0x04, 0x05, 0x0B
_BR, _BR_IF, _BR_TABLE = 0x0C, 0x0D, 0x0E
_CALL, _CALL_INDIRECT = 0x10, 0x11
_NOP, _DROP = 0x01, 0x1A
_LOADS_STORES = range(0x28, 0x3F)
_DIV_REM = {0x6D, 0x6E, 0x6F, 0x70, 0x7F, 0x80, 0x81, 0x82}
_FUEL_FREE = {_NOP, _DROP, _BLOCK, _LOOP, _ELSE, _END}


class WasmCostError(ValueError):
    """The module cannot be analysed (not Wasm, no such function, no loop)."""


@dataclass(frozen=True)
class LoopCost:
    fuel: int  # wasmtime fuel (localnet's instruction count) for one pass
    ic: int  # the IC's instruction_to_cost sum for one pass (Wasm64)
    calls: int  # call sites executed in one pass (callees not counted)


def ic_cost(op: int) -> int:
    """The IC's cost of operator ``op`` in a Wasm64 module."""
    if op in (_BLOCK, _LOOP, _ELSE, _END):
        return 0
    if op in _LOADS_STORES or op in (0x23, 0x24):  # memory, global.get/set
        return 2
    if op in (_IF, _BR, _BR_IF, _BR_TABLE):
        return 2
    if op == _CALL:
        return 5
    if op == _CALL_INDIRECT:
        return 10
    if op in _DIV_REM:
        return 10
    return 1


def loop_cost(wasm: bytes, function: str) -> LoopCost:
    """The cost of one pass of the first loop of ``function`` in ``wasm``."""
    if wasm[:4] != b"\0asm":
        raise WasmCostError("not a Wasm module (no \\0asm header)")
    index = _function_names(wasm).get(function)
    if index is None:
        raise WasmCostError(f"no function named {function!r} in the name section")
    operators = list(_operators(_body(wasm, index - _imported_functions(wasm))))
    try:
        start = operators.index(_LOOP)
    except ValueError:
        raise WasmCostError(f"function {function!r} has no loop") from None
    return _one_pass(operators[start + 1 :])


def _one_pass(operators: list[int]) -> LoopCost:
    fuel = ic = calls = 0
    open_blocks = 0
    skipping = -1  # nesting depth inside a skipped else-arm, or -1
    for op in operators:
        if skipping >= 0:
            if op in (_BLOCK, _LOOP, _IF):
                skipping += 1
            elif op == _END:
                skipping -= 1
                if skipping < 0:
                    open_blocks -= 1  # the skipped arm's end closes its if
            continue
        if op == _ELSE:
            skipping = 0
            continue
        if op in (_BLOCK, _LOOP, _IF):
            open_blocks += 1
        elif op == _END:
            if open_blocks == 0:
                break  # the loop's own end
            open_blocks -= 1
        fuel += op not in _FUEL_FREE
        ic += ic_cost(op)
        calls += op in (_CALL, _CALL_INDIRECT)
    return LoopCost(fuel, ic, calls)


def _leb(data: bytes, i: int, signed: bool = False) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if signed and byte & 0x40:
        result -= 1 << shift
    return result, i


def _sections(wasm: bytes) -> Iterator[tuple[int, bytes]]:
    i = 8
    while i < len(wasm):
        size, start = _leb(wasm, i + 1)
        yield wasm[i], wasm[start : start + size]
        i = start + size


def _function_names(wasm: bytes) -> dict[str, int]:
    for section, body in _sections(wasm):
        size, i = _leb(body, 0)
        if section != 0 or body[i : i + size] != b"name":
            continue
        i += size
        while i < len(body):
            kind = body[i]
            size, i = _leb(body, i + 1)
            if kind == 1:  # function names
                return _name_map(body, i)
            i += size
    return {}


def _name_map(body: bytes, i: int) -> dict[str, int]:
    names = {}
    count, i = _leb(body, i)
    for _ in range(count):
        index, i = _leb(body, i)
        size, i = _leb(body, i)
        names[body[i : i + size].decode()] = index
        i += size
    return names


def _imported_functions(wasm: bytes) -> int:
    for section, body in _sections(wasm):
        if section != 2:
            continue
        count, i = _leb(body, 0)
        functions = 0
        for _ in range(count):
            for _ in range(2):  # module and field names
                size, i = _leb(body, i)
                i += size
            kind = body[i]
            i += 1
            if kind == 0:
                functions += 1
                _, i = _leb(body, i)
            elif kind in (1, 2):  # table (reftype first) or memory: limits
                i += kind == 1
                flags = body[i]
                _, i = _leb(body, i + 1)
                if flags & 1:
                    _, i = _leb(body, i)
            elif kind == 3:
                i += 2
            else:
                raise WasmCostError(f"unknown import kind {kind}")
        return functions
    return 0


def _body(wasm: bytes, index: int) -> bytes:
    for section, body in _sections(wasm):
        if section != 10:
            continue
        count, i = _leb(body, 0)
        for k in range(count):
            size, i = _leb(body, i)
            if k == index:
                return body[i : i + size]
            i += size
    raise WasmCostError(f"no code for function {index}")


def _operators(code: bytes) -> Iterator[int]:
    """The opcodes of a function body, immediates skipped."""
    groups, i = _leb(code, 0)
    for _ in range(groups):  # local declarations: count and type
        _, i = _leb(code, i)
        i += 1
    while i < len(code):
        op = code[i]
        yield op
        i = _skip_immediates(code, op, i + 1)


# Operators whose immediate is one LEB128 number (skipping ignores its sign):
# br, br_if, call, local.get/set/tee, global.get/set, i32.const, i64.const.
_ONE_LEB = {_BR, _BR_IF, _CALL, 0x20, 0x21, 0x22, 0x23, 0x24, 0x41, 0x42}
# Fixed-size immediates: memory.size/grow (memory index), f32.const, f64.const.
_FIXED = {0x3F: 1, 0x40: 1, 0x43: 4, 0x44: 8}


def _skip_immediates(code: bytes, op: int, i: int) -> int:
    if op in _ONE_LEB:
        return _leb(code, i)[1]
    if op in _FIXED:
        return i + _FIXED[op]
    if op in (_BLOCK, _LOOP, _IF):  # block type: empty, a value type, or a type index
        return i + 1 if code[i] == 0x40 or code[i] >= 0x6F else _leb(code, i, True)[1]
    if op in _LOADS_STORES:  # memarg: alignment (bit 6: a memory index follows), offset
        align, i = _leb(code, i)
        if align & 0x40:
            _, i = _leb(code, i)
        return _leb(code, i)[1]
    if op == _CALL_INDIRECT:  # type and table
        return _leb(code, _leb(code, i)[1])[1]
    if op == _BR_TABLE:
        count, i = _leb(code, i)
        for _ in range(count + 1):
            _, i = _leb(code, i)
        return i
    if op == 0x1C:  # typed select
        count, i = _leb(code, i)
        return i + count
    return _skip_fc(code, i) if op == 0xFC else i


def _skip_fc(code: bytes, i: int) -> int:
    sub, i = _leb(code, i)
    if sub == 8:  # memory.init: data index, memory
        return _leb(code, i)[1] + 1
    if sub == 10:  # memory.copy: two memories
        return i + 2
    if sub == 11:  # memory.fill
        return i + 1
    if sub in (9, 13, 15, 16, 17):  # data.drop, elem.drop, table.grow/size/fill
        return _leb(code, i)[1]
    if sub in (12, 14):  # table.init, table.copy
        return _leb(code, _leb(code, i)[1])[1]
    return i  # saturating truncations: no immediates
