"""Candid interfaces read from ``.did`` files: one description for every side.

    from ic_did import management
    install = management().method("install_code")
    install.args        # the Candid argument types, as icp_candid types
    install.is_query    # False

A ``.did`` file is the authority for an interface; this package turns it
into the ``icp_candid`` types both ``canister_iface`` (the client) and
``localnet`` (the emulator) encode and decode with, so neither keeps a
hand-written copy.  It ships the management canister's interface
(``ic.did``, :func:`management`); ``canister_iface`` loads the ICRP's
(``canister_iface/icrp.did``) with :func:`load_did`.  A method or field added
to a ``.did`` file is known to both sides without further code.

Parsing uses ``icp_candid``'s Candid parser (a Rust extension); this module
resolves the type names: aliases and non-recursive types are inlined, only
recursive types become ``icp_candid`` recursion nodes, and a name that is not
defined is an error (icp_candid's own ``DIDLoader`` silently turns it into an
empty type).

The files are loaded at import rather than generated into Python: ``ic.did``
takes about 1.5 ms and ``icrp.did`` 1 ms, so a generated module would save
little start-up time and add a generation step (and a staleness check) to
every change of a ``.did`` file.

It depends on ``icp_candid`` only, so that ``localnet`` can use it without
depending on ``canister_iface``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from icp_candid import Types
from icp_candid.candid import OptClass, RecClass, RecordClass, VariantClass, VecClass
from icp_candid.did_loader import ic_candid_parser

__all__ = [
    "MANAGEMENT_DID",
    "CandidType",
    "DidError",
    "Interface",
    "Method",
    "complete",
    "load_did",
    "management",
    "parse_did",
]

MANAGEMENT_DID = Path(__file__).with_name("ic.did")

# Primitive type names of the Candid spec (``blob`` is parsed as ``vec nat8``).
_PRIMITIVES: dict[str, Any] = {
    "null": Types.Null,
    "bool": Types.Bool,
    "nat": Types.Nat,
    "int": Types.Int,
    "nat8": Types.Nat8,
    "nat16": Types.Nat16,
    "nat32": Types.Nat32,
    "nat64": Types.Nat64,
    "int8": Types.Int8,
    "int16": Types.Int16,
    "int32": Types.Int32,
    "int64": Types.Int64,
    "float32": Types.Float32,
    "float64": Types.Float64,
    "text": Types.Text,
    "principal": Types.Principal,
    "reserved": Types.Reserved,
    "empty": Types.Empty,
}
# Older parser builds spell some modes differently.
_MODES = {"compositequery": "composite_query"}


class CandidType(Protocol):
    """An ``icp_candid`` type (opaque: pass it to icp_candid's encode/decode)."""

    @property
    def name(self) -> str: ...


class DidError(ValueError):
    """A ``.did`` file that cannot be read as Candid."""


@dataclass(frozen=True)
class Method:
    """One method of a service: its argument and result types and its modes."""

    name: str
    args: tuple[CandidType, ...]
    results: tuple[CandidType, ...]
    modes: tuple[str, ...] = ()

    @property
    def is_query(self) -> bool:
        """Whether the method is a query (``query`` or ``composite_query``)."""
        return "query" in self.modes or "composite_query" in self.modes


@dataclass(frozen=True)
class Interface:
    """The named types and the service methods of one ``.did`` file."""

    source: str  # the file it came from, for messages
    types: Mapping[str, CandidType] = field(repr=False)
    methods: Mapping[str, Method] = field(repr=False)

    def method(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            raise KeyError(f"{self.source} declares no method {name!r}") from None

    def type(self, name: str) -> CandidType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(f"{self.source} declares no type {name!r}") from None


def parse_did(text: str, source: str = "<did>") -> Interface:
    """The interface a ``.did`` text describes; ``source`` names it in errors."""
    if ic_candid_parser is None:  # icp-py-core installed without its parser
        raise DidError(f"{source}: icp_candid's Candid parser is not installed")
    try:
        ast = json.loads(ic_candid_parser.parse_did(text))
    except ValueError as exc:
        raise DidError(f"{source}: {exc}") from exc
    names = _Names(source, {entry["name"]: entry["datatype"] for entry in ast.get("env") or []})
    types = {name: names.resolve(name) for name in names.env}
    actor = ast.get("actor") or {}
    methods = {m["name"]: names.method(m) for m in actor.get("methods") or []}
    return Interface(source, types, methods)


def load_did(path: Path | str) -> Interface:
    """The interface of the ``.did`` file at ``path``."""
    path = Path(path)
    return parse_did(path.read_text(encoding="utf-8"), path.name)


@cache
def management() -> Interface:
    """The management canister's interface (``ic_did/ic.did``), parsed once."""
    return load_did(MANAGEMENT_DID)


def complete(candid_type: CandidType, value: Any) -> Any:
    """``value`` with every absent ``opt`` record field spelled out as ``[]``, recursively.

    Candid reads an absent ``opt`` field as null; icp_candid's encoder wants
    every field present.  A caller can so pass only the fields it sets.
    """
    kind = _resolved(candid_type)
    if isinstance(kind, RecordClass) and isinstance(value, dict):
        done = dict(value)
        for name, field_type in kind._field_map.values():
            if name in done:
                done[name] = complete(field_type, done[name])
            elif isinstance(_resolved(field_type), OptClass):
                done[name] = []
        return done
    if isinstance(kind, OptClass | VecClass) and isinstance(value, list):
        return [complete(kind._type, item) for item in value]
    if isinstance(kind, VariantClass) and isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        case = next((t for name, t in kind._field_map.values() if name == tag), None)
        return value if case is None else {tag: complete(case, payload)}
    return value


def _resolved(candid_type: Any) -> Any:
    return candid_type.get_type() if isinstance(candid_type, RecClass) else candid_type


class _Names:
    """Turns the parser's type trees into icp_candid types, resolving names."""

    def __init__(self, source: str, env: dict[str, Any]) -> None:
        self.source = source
        self.env = env
        self._done: dict[str, Any] = {}
        self._open: dict[str, Any] = {}  # name -> recursion node, or None while unused

    def resolve(self, name: str) -> Any:
        if name in self._done:
            return self._done[name]
        if name not in self.env:
            raise DidError(f"{self.source}: type {name!r} is used but not defined")
        if name in self._open:  # a cycle: refer to a recursion node, filled below
            node = self._open[name] or Types.Rec()
            self._open[name] = node
            return node
        self._open[name] = None
        built = self.build(self.env[name])
        node = self._open.pop(name)
        if node is not None:
            node.fill(built)
            built = node
        self._done[name] = built
        return built

    def build(self, node: Any) -> Any:
        kind, value = node.get("type"), node.get("value")
        if kind == "Prim":
            if value not in _PRIMITIVES:
                raise DidError(f"{self.source}: unknown primitive type {value!r}")
            return _PRIMITIVES[value]
        if kind == "Principal":
            return Types.Principal
        if kind == "Id":
            return self.resolve(value)
        if kind == "Opt":
            return Types.Opt(self.build(value))
        if kind == "Vec":
            return Types.Vec(self.build(value))
        if kind == "Record":
            return Types.Record({_label(k): self.build(t) for k, t in value})
        if kind == "Variant":
            return Types.Variant({_label(k): self.build(t) for k, t in value})
        if kind == "Func":
            return Types.Func(*self._signature(value))
        if kind == "Service":
            return Types.Service({m["name"]: Types.Func(*self._signature(m)) for m in value or []})
        raise DidError(f"{self.source}: unsupported Candid type {kind!r}")

    def method(self, raw: Mapping[str, Any]) -> Method:
        args, results, modes = self._signature(raw)
        return Method(raw["name"], tuple(args), tuple(results), tuple(modes))

    def _signature(self, raw: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[str]]:
        args = [self.build(t) for t in raw.get("args") or []]
        results = [self.build(t) for t in raw.get("rets") or []]
        modes = [_MODES.get(m, m) for m in raw.get("modes") or []]
        return args, results, modes


def _label(key: str) -> str | int:
    """Record and variant labels; numbers (tuple fields, ``0 : nat``) stay numbers."""
    return int(key) if key.isdigit() else key
