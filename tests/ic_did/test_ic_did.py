"""ic_did: .did files as the one source of Candid types for client and emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from icp_candid import DIDLoader, Types, decode, encode
from icp_candid.candid import (
    FuncClass,
    OptClass,
    PrimitiveType,
    RecClass,
    RecordClass,
    VariantClass,
    VecClass,
)

from ic_did import MANAGEMENT_DID, DidError, complete, load_did, management, parse_did

ICRP_DID = Path(__file__).parents[2] / "canister_iface/icrp.did"


def _shape(t: Any, seen: frozenset[int] = frozenset()) -> object:
    """A comparable picture of an icp_candid type (recursion shown as ``"rec"``)."""
    while isinstance(t, RecClass):
        if id(t) in seen:
            return "rec"
        seen, t = seen | {id(t)}, t._type
    if isinstance(t, PrimitiveType):
        return t.name
    if isinstance(t, VecClass | OptClass):
        return (type(t).__name__, _shape(t._type, seen))
    if isinstance(t, RecordClass | VariantClass):
        fields = sorted(t._field_map.values(), key=lambda item: str(item[0]))
        return (type(t).__name__, tuple((str(n), _shape(f, seen)) for n, f in fields))
    if isinstance(t, FuncClass):
        return ("func", tuple(_shape(a, seen) for a in t.args), tuple(t.modes))
    return type(t).__name__


@pytest.mark.parametrize("path", [MANAGEMENT_DID, ICRP_DID], ids=["ic.did", "icrp.did"])
def test_types_match_icp_candids_own_loader(path: Path) -> None:
    ours = load_did(path).methods
    theirs = DIDLoader().load_did_source(path.read_text())["methods"]
    assert set(ours) == set(theirs)
    for name, method in ours.items():
        other = theirs[name]
        assert [_shape(t) for t in method.args] == [_shape(t) for t in other.argTypes], name
        assert [_shape(t) for t in method.results] == [_shape(t) for t in other.retTypes], name
        assert method.is_query == ("query" in other.annotations), name


def test_the_management_did_declares_what_client_and_localnet_use() -> None:
    from canister_iface.management import ManagementClient
    from localnet.management import _HANDLERS

    ic = management()
    assert set(_HANDLERS) <= set(ic.methods)
    client = {n for n in dir(ManagementClient) if not n.startswith("_")}
    assert {n for n in client if n in ic.methods} >= {
        "provisional_create_canister_with_cycles",
        "install_code",
        "install_chunked_code",
        "canister_status",
        "take_canister_snapshot",
        "read_canister_snapshot_data",
        "upload_canister_snapshot_data",
    }
    assert all(len(m.args) <= 1 and len(m.results) <= 1 for m in ic.methods.values())
    assert management() is ic  # parsed once


def test_aliases_are_inlined_and_only_cycles_are_recursion_nodes() -> None:
    did = parse_did(
        """
        type id = nat64;
        type pair = record { 0 : id; 1 : text };
        type tree = variant { leaf : id; node : vec tree };
        service : { f : (id, pair) -> (tree) query; g : () -> () composite_query }
        """
    )
    f = did.method("f")
    assert f.args[0] is Types.Nat64
    assert isinstance(f.args[1], RecordClass)
    assert isinstance(f.results[0], RecClass)
    assert f.is_query
    assert did.method("g").is_query
    tree = {"node": [{"leaf": 1}, {"node": [{"leaf": 2}]}]}
    data = encode([{"type": f.results[0], "value": tree}])
    assert decode(data, [f.results[0]])[0]["value"] == tree
    pair = encode([{"type": f.args[1], "value": [7, "x"]}])
    assert decode(pair, [f.args[1]])[0]["value"] == [7, "x"]


def test_bad_did_files_say_what_is_wrong() -> None:
    with pytest.raises(DidError, match=r"my\.did: type 'nope' is used but not defined"):
        parse_did("service : { f : (nope) -> () }", "my.did")
    with pytest.raises(DidError, match=r"my\.did: .*Syntax"):
        parse_did("service : { f : (nat) -> (", "my.did")
    with pytest.raises(KeyError, match="declares no method 'nope'"):
        management().method("nope")


def test_complete_spells_out_absent_opt_fields() -> None:
    (arg,) = management().method("provisional_create_canister_with_cycles").args
    given = {"amount": [5], "settings": [{"controllers": [[b"\x04"]]}]}
    full = complete(arg, given)
    assert full["specified_id"] == []
    assert full["sender_canister_version"] == []
    settings = full["settings"][0]
    assert settings["controllers"] == [[b"\x04"]]
    assert settings["freezing_threshold"] == []
    assert settings["environment_variables"] == []
    assert given == {"amount": [5], "settings": [{"controllers": [[b"\x04"]]}]}  # not changed
    decoded = decode(encode([{"type": arg, "value": full}]), [arg])[0]["value"]
    assert decoded["amount"] == [5]
