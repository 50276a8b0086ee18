"""Reading and minimally rewriting canister Wasm binaries.

The sandbox needs three things wasmtime-py does not give it:

* the custom sections (``icp:public candid:service``, ...), which wasmtime
  drops;
* the module's globals, imports and exports with their indices, to validate
  the module the way the IC does before instantiating it;
* access to *every* mutable global, the memory and the function table from
  the host. wasmtime-py can only reach exported items, so
  :func:`instrument` appends export entries (``__localnet_g<i>``,
  ``__localnet_memory``, ``__localnet_table``) to the export section and
  leaves every other byte of the module as it was. The IC's own
  instrumentation does the same for the globals it persists.

Only the section framing, the import, global and export sections are parsed;
code is never decoded. Any malformed framing raises :class:`InvalidModule`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field

WASM_MAGIC = b"\x00asm"
GZIP_MAGIC = b"\x1f\x8b"
# Decompressed canister modules are at most this big on the IC (100 MiB of
# chunks, compressed); refusing bigger input protects against gzip bombs.
MAX_DECOMPRESSED_BYTES = 200 * 1024 * 1024

SECTION_CUSTOM = 0
SECTION_IMPORT = 2
SECTION_GLOBAL = 6
SECTION_EXPORT = 7
SECTION_START = 8
# Sections that must come after the export section in a module.
_SECTIONS_AFTER_EXPORT = {8, 9, 10, 11, 12}

KIND_FUNC = 0
KIND_TABLE = 1
KIND_MEMORY = 2
KIND_GLOBAL = 3
KIND_TAG = 4

GLOBAL_EXPORT_PREFIX = "__localnet_g"
MEMORY_EXPORT = "__localnet_memory"
TABLE_EXPORT = "__localnet_table"
START_EXPORT = "__localnet_start"

_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
_REFTYPES = {0x70: "funcref", 0x6F: "externref"}


class InvalidModule(Exception):
    """The Wasm module cannot run as a canister; the message says why."""


@dataclass(frozen=True)
class Import:
    module: str
    name: str
    kind: int


@dataclass(frozen=True)
class Export:
    name: str
    kind: int
    index: int


@dataclass(frozen=True)
class GlobalInfo:
    index: int  # in the global index space (imported globals first)
    valtype: str  # "i32", "i64", "f32", "f64", "v128", "funcref", ...
    mutable: bool


@dataclass
class ModuleInfo:
    """What :func:`parse` learned about a module."""

    imports: list[Import] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    globals: list[GlobalInfo] = field(default_factory=list)
    custom_sections: dict[str, bytes] = field(default_factory=dict)
    memories: int = 0  # imported + defined
    tables: int = 0  # imported + defined
    memory64: bool = False  # whether memory 0 is a 64-bit memory
    memory_min_pages: int = 0  # memory 0's initial size, in Wasm pages
    start: int | None = None  # the start function's index
    # (offset, bytes) of the active data segments of memory 0: an upgrade that
    # keeps the heap writes them over it before the start function runs.
    data_segments: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def mutable_globals(self) -> list[GlobalInfo]:
        return [g for g in self.globals if g.mutable]

    def export_names(self) -> set[str]:
        return {e.name for e in self.exports}


def decompress(wasm: bytes) -> bytes:
    """The raw module: gzip-compressed modules are accepted as on the IC."""
    if wasm[:2] != GZIP_MAGIC:
        return wasm
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(wasm)) as f:
            raw: bytes = f.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidModule(f"the gzip-compressed Wasm module is corrupt: {exc}") from exc
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise InvalidModule(f"the decompressed Wasm module exceeds {MAX_DECOMPRESSED_BYTES} bytes")
    return raw


class _Reader:
    """A cursor over a byte string with the Wasm binary format's primitives."""

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise InvalidModule(f"unexpected end of the Wasm module at byte {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise InvalidModule(f"LEB128 number too long at byte {self.pos}")

    def skip_sleb(self) -> None:
        while self.byte() & 0x80:
            pass

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise InvalidModule(f"unexpected end of the Wasm module at byte {self.pos}")
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def name(self) -> str:
        raw = self.take(self.uleb())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidModule(f"a name in the Wasm module is not UTF-8: {raw!r}") from exc


def uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass(frozen=True)
class _Section:
    id: int
    start: int  # offset of the section id byte
    body: int  # offset of the first content byte
    end: int  # offset after the content


def _sections(wasm: bytes) -> list[_Section]:
    if wasm[:4] != WASM_MAGIC:
        raise InvalidModule("not a Wasm module: it does not start with \\0asm (or gzip magic)")
    if wasm[4:8] != b"\x01\x00\x00\x00":
        raise InvalidModule(f"unsupported Wasm binary version {wasm[4:8].hex()}")
    r = _Reader(wasm, 8)
    out = []
    while not r.at_end():
        start = r.pos
        sid = r.byte()
        size = r.uleb()
        body = r.pos
        if body + size > len(wasm):
            raise InvalidModule(f"section {sid} at byte {start} runs past the end of the module")
        out.append(_Section(sid, start, body, body + size))
        r.pos = body + size
    return out


def _valtype(r: _Reader) -> str:
    b = r.byte()
    if b in _VALTYPES:
        return _VALTYPES[b]
    if b in _REFTYPES:
        return _REFTYPES[b]
    if b in (0x63, 0x64):  # (ref null ht) / (ref ht) of the GC proposal
        r.skip_sleb()
        return "ref"
    raise InvalidModule(f"unsupported value type 0x{b:02x} at byte {r.pos - 1}")


def _limits(r: _Reader) -> tuple[int, int]:
    """Read a limits record: its flags (bit 2: 64-bit) and its minimum."""
    flags = r.byte()
    minimum = r.uleb()
    if flags & 0x01:
        r.uleb()
    if flags & 0x08:  # custom page size
        r.uleb()
    return flags, minimum


def _skip_const_expr(r: _Reader) -> None:
    """Skip a constant expression up to and including its ``end``."""
    while True:
        op = r.byte()
        if op == 0x0B:
            return
        if op in (0x41, 0x42):  # i32.const, i64.const
            r.skip_sleb()
        elif op == 0x43:
            r.take(4)
        elif op == 0x44:
            r.take(8)
        elif op in (0x23, 0xD2):  # global.get, ref.func
            r.uleb()
        elif op == 0xD0:  # ref.null
            r.skip_sleb()
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            continue
        elif op == 0xFD and r.uleb() == 12:  # v128.const
            r.take(16)
        else:
            raise InvalidModule(
                f"unsupported instruction 0x{op:02x} in a constant expression at byte {r.pos - 1}"
            )


def _parse_imports(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.uleb()):
        module, name = r.name(), r.name()
        kind = r.byte()
        if kind == KIND_FUNC:
            r.uleb()
        elif kind == KIND_TABLE:
            _valtype(r)
            _limits(r)
            info.tables += 1
        elif kind == KIND_MEMORY:
            flags, minimum = _limits(r)
            if info.memories == 0:
                info.memory64 = bool(flags & 0x04)
                info.memory_min_pages = minimum
            info.memories += 1
        elif kind == KIND_GLOBAL:
            info.globals.append(GlobalInfo(len(info.globals), _valtype(r), r.byte() == 1))
        elif kind == KIND_TAG:
            r.byte()
            r.uleb()
        else:
            raise InvalidModule(f"unknown import kind {kind} for {module}.{name}")
        info.imports.append(Import(module, name, kind))


def _parse_globals(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.uleb()):
        valtype = _valtype(r)
        mutable = r.byte() == 1
        _skip_const_expr(r)
        info.globals.append(GlobalInfo(len(info.globals), valtype, mutable))


def _parse_exports(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.uleb()):
        name = r.name()
        kind = r.byte()
        info.exports.append(Export(name, kind, r.uleb()))


def _parse_memory_section(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.uleb()):
        flags, minimum = _limits(r)
        if info.memories == 0:
            info.memory64 = bool(flags & 0x04)
            info.memory_min_pages = minimum
        info.memories += 1


def _parse_custom(wasm: bytes, sec: _Section, info: ModuleInfo) -> None:
    r = _Reader(wasm, sec.body, sec.end)
    name = r.name()
    if name in info.custom_sections and name.startswith("icp:"):
        raise InvalidModule(f"the custom section {name!r} appears more than once")
    info.custom_sections.setdefault(name, bytes(wasm[r.pos : sec.end]))


def parse(wasm: bytes) -> ModuleInfo:
    """Parse the parts of a raw (decompressed) module the sandbox needs."""
    info = ModuleInfo()
    for sec in _sections(wasm):
        r = _Reader(wasm, sec.body, sec.end)
        if sec.id == SECTION_CUSTOM:
            _parse_custom(wasm, sec, info)
        elif sec.id == SECTION_IMPORT:
            _parse_imports(r, info)
        elif sec.id == 4:  # table section
            info.tables += r.uleb()
        elif sec.id == 5:
            _parse_memory_section(r, info)
        elif sec.id == SECTION_GLOBAL:
            _parse_globals(r, info)
        elif sec.id == SECTION_EXPORT:
            _parse_exports(r, info)
        elif sec.id == SECTION_START:
            info.start = r.uleb()
        elif sec.id == _SECTION_DATA:
            info.data_segments = _parse_data(r)
    return info


_SECTION_DATA = 11


def _parse_data(r: _Reader) -> list[tuple[int, bytes]]:
    segments = []
    for _ in range(r.uleb()):
        flags = r.uleb()
        if flags == 1:  # passive: only memory.init copies it
            r.take(r.uleb())
            continue
        memory = r.uleb() if flags == 2 else 0
        offset = _const_offset(r)
        data = r.take(r.uleb())
        if memory == 0:
            segments.append((offset, data))
    return segments


def _const_offset(r: _Reader) -> int:
    opcode = r.byte()
    if opcode not in (0x41, 0x42):  # i32.const, i64.const
        raise InvalidModule(f"data segment offset expression 0x{opcode:02x} is not a constant")
    value = shift = 0
    while True:  # signed LEB128
        b = r.byte()
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b & 0x40:
                value -= 1 << shift
            break
    if r.byte() != 0x0B:
        raise InvalidModule("data segment offset expression is not a single constant")
    return value & ((1 << (32 if opcode == 0x41 else 64)) - 1)


def _extra_exports(info: ModuleInfo) -> list[Export]:
    extra = [
        Export(f"{GLOBAL_EXPORT_PREFIX}{g.index}", KIND_GLOBAL, g.index)
        for g in info.mutable_globals
    ]
    if info.memories:
        extra.append(Export(MEMORY_EXPORT, KIND_MEMORY, 0))
    if info.tables:
        extra.append(Export(TABLE_EXPORT, KIND_TABLE, 0))
    if info.start is not None:
        extra.append(Export(START_EXPORT, KIND_FUNC, info.start))
    clash = info.export_names() & {e.name for e in extra}
    if clash:
        raise InvalidModule(f"the module already exports reserved name(s) {sorted(clash)}")
    return extra


def _encode_entries(exports: list[Export]) -> bytes:
    out = bytearray()
    for e in exports:
        raw = e.name.encode()
        out += uleb128(len(raw)) + raw + bytes([e.kind]) + uleb128(e.index)
    return bytes(out)


def instrument(wasm: bytes, info: ModuleInfo) -> bytes:
    """``wasm`` rewritten so the host can reach what it must save and restore.

    Every mutable global, memory 0 and table 0 are exported. The start
    function is exported too and its start section removed: the sandbox runs
    it itself, after putting a kept heap in place (an upgrade that keeps the
    Wasm memory runs the new module's start function on the old memory, as
    on the IC). The export section's count grows and the new entries follow
    the original ones, which keep their exact bytes (or the section is
    created in its canonical place). Everything else is verbatim.
    """
    extra = _extra_exports(info)
    if not extra:
        return wasm
    sections = [s for s in _sections(wasm) if s.id != SECTION_START]
    out = bytearray(wasm[:8])
    added = False
    for sec in sections:
        if not added and (sec.id == SECTION_EXPORT or sec.id in _SECTIONS_AFTER_EXPORT):
            out += _export_section(wasm, sec if sec.id == SECTION_EXPORT else None, extra)
            added = True
            if sec.id == SECTION_EXPORT:
                continue
        out += wasm[sec.start : sec.end]
    if not added:
        out += _export_section(wasm, None, extra)
    return bytes(out)


def _export_section(wasm: bytes, original: _Section | None, extra: list[Export]) -> bytes:
    if original is not None:
        r = _Reader(wasm, original.body, original.end)
        count = r.uleb()
        content = uleb128(count + len(extra)) + wasm[r.pos : original.end]
    else:
        content = uleb128(len(extra))
    content += _encode_entries(extra)
    return bytes([SECTION_EXPORT]) + uleb128(len(content)) + content
