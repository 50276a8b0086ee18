"""The relay's copy-free Candid paths agree with the general encoder and decoder."""

from __future__ import annotations

import pytest
from icp_candid import decode as icp_decode

from canister_iface.candid_value import (
    Blob,
    Bool,
    CandidType,
    Int,
    Int64,
    Nat,
    Nat8,
    Nat64,
    Null,
    Opt,
    PrincipalType,
    Record,
    Text,
    Tuple,
    Variant,
    Vec,
    as_variant,
    decode_ok,
    decode_single,
    decode_values,
    decode_write_arg,
    encode_value,
    encode_values,
    encode_with_blob,
)
from canister_iface.errors import ProtocolError
from canister_iface.principal import Principal

ERR = Record({"code": Nat, "message": Text})
BLOB_RESULT = Variant({"ok": Blob, "err": ERR})


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300_000])
def test_a_message_with_its_blob_in_parts_is_the_same_message(size: int) -> None:
    blob = bytes(i % 251 for i in range(size))
    types = [(Nat64, 3), (Nat64, 2**40), (Blob, blob)]
    parts = encode_with_blob(types)
    assert parts.joined() == encode_values(types)
    assert len(parts) == len(encode_values(types))
    assert parts.parts[-1].obj is blob  # the blob itself, not a copy


def test_encode_with_blob_needs_a_blob_last() -> None:
    with pytest.raises(ValueError, match="blob"):
        encode_with_blob([(Blob, b"x"), (Nat64, 1)])
    with pytest.raises(ValueError, match="blob"):
        encode_with_blob([(Vec(Nat64), [1])])
    with pytest.raises(ValueError, match="last argument"):
        encode_with_blob([])


def test_an_ok_blob_is_read_in_place() -> None:
    blob = b"\x00\xff" * 70_000
    reply = encode_value(BLOB_RESULT, {"ok": blob})
    data = decode_ok(reply)
    assert isinstance(data, memoryview)
    assert data.obj is reply
    assert bytes(data) == blob
    assert as_variant(decode_single(reply, "t"), ("ok", "err"), "t") == ("ok", blob)


@pytest.mark.parametrize(("kind", "value"), [(Nat, 0), (Nat, 2**70 + 5), (Nat64, 2**63 + 1)])
def test_an_ok_number_is_read(kind: object, value: int) -> None:
    reply = encode_value(Variant({"ok": kind, "err": ERR}), {"ok": value})  # type: ignore[dict-item]
    assert decode_ok(reply) == value


def test_other_shapes_are_left_to_the_general_decoder() -> None:
    err = encode_value(BLOB_RESULT, {"err": {"code": 1, "message": "no"}})
    assert decode_ok(err) is None
    assert decode_ok(encode_value(Blob, b"abc")) is None  # not a variant
    assert decode_ok(encode_value(Variant({"ok": Text}), {"ok": "x"})) is None
    assert decode_ok(encode_value(Variant({"ok": Vec(Nat64)}), {"ok": [1]})) is None
    assert decode_ok(b"DIDL\x00\x00") is None  # no value
    assert decode_ok(b"not candid") is None


def test_a_truncated_reply_is_not_read() -> None:
    reply = encode_value(BLOB_RESULT, {"ok": b"x" * 1000})
    for cut in (3, 8, 12, len(reply) - 1):
        assert decode_ok(reply[:cut]) is None


def test_a_type_table_seen_before_is_reused_and_only_for_the_same_table() -> None:
    first = encode_value(BLOB_RESULT, {"ok": b"a" * 10})
    second = encode_value(BLOB_RESULT, {"ok": b"b" * 300})
    other = encode_value(Variant({"ok": Blob, "err": Text}), {"ok": b"c"})
    for _ in range(2):
        assert bytes(decode_ok(first) or b"") == b"a" * 10  # type: ignore[arg-type]
        assert bytes(decode_ok(second) or b"") == b"b" * 300  # type: ignore[arg-type]
        assert bytes(decode_ok(other) or b"") == b"c"  # type: ignore[arg-type]
        assert decode_ok(encode_value(BLOB_RESULT, {"err": {"code": 2, "message": ""}})) is None


@pytest.mark.parametrize("size", [0, 1, 128, 300_000])
def test_a_write_argument_is_read_in_place(size: int) -> None:
    blob = bytes(i % 249 for i in range(size))
    message = encode_values([(Nat64, 5), (Nat64, 2**33 + 1), (Blob, blob)])
    decoded = decode_write_arg(message)
    assert decoded is not None
    import_id, offset, data = decoded
    assert (import_id, offset, bytes(data)) == (5, 2**33 + 1, blob)
    assert isinstance(data, memoryview)


def test_other_shapes_are_not_write_arguments() -> None:
    blob = b"abc"
    for message in (
        encode_values([(Nat64, 5), (Nat, 7), (Blob, blob)]),  # nat, not nat64
        encode_values([(Nat64, 5), (Nat64, 7)]),  # no blob
        encode_values([(Nat64, 5), (Nat64, 7), (Blob, blob), (Nat64, 1)]),  # a value more
        encode_values([(Nat64, 5), (Nat64, 7), (Blob, blob)]) + b"x",  # bytes after it
        encode_values([(Nat64, 5), (Nat64, 7), (Blob, blob)])[:-1],  # cut short
        encode_value(BLOB_RESULT, {"ok": blob}),  # icrp_read's reply
        b"DIDM",
    ):
        assert decode_write_arg(message) is None, message


@pytest.mark.parametrize(
    "values", [[0], [5, 2**64 - 1], [1, 2, 3, 4], list(range(127)), [2**40] * 3]
)
def test_nat64_arguments_are_written_as_icp_candid_writes_them(values: list[int]) -> None:
    from icp_candid import encode as icp_encode

    expected = bytes(icp_encode([{"type": Nat64, "value": v} for v in values]))
    assert encode_values([(Nat64, v) for v in values]) == expected


def test_other_nat64_arguments_take_the_general_encoder() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode_values([(Nat64, 2**64)])
    with pytest.raises(ValueError, match="cannot encode"):
        encode_values([(Nat64, -1)])
    assert encode_values([(Nat64, True)]) == encode_values([(Nat64, 1)])  # as icp_candid does
    assert len(encode_values([(Nat64, 1)] * 128)) == 4 + 1 + 2 + 128 + 128 * 8


# decode_values reads a header once per distinct header bytes; its values must be
# icp_candid's own, cached header or not.
_RESULT = Variant(
    {
        "ok": Record(
            {
                "size": Nat64,
                "name": Text,
                "tags": Vec(Text),
                "owner": Opt(PrincipalType),
                "pair": Tuple(Int, Bool),
                "nothing": Null,
                "f": Int64,
            }
        ),
        "err": Variant({"Busy": Null, "Other": Record({"code": Nat, "message": Text})}),
    }
)
_VALUES: list[tuple[CandidType, object]] = [
    (
        _RESULT,
        {
            "ok": {
                "size": 7,
                "name": "a",
                "tags": ["x", "y"],
                "owner": [Principal.anonymous()],
                "pair": [-3, True],
                "nothing": None,
                "f": -(2**63),
            }
        },
    ),
    (
        _RESULT,
        {
            "ok": {
                "size": 2**63,
                "name": "",
                "tags": [],
                "owner": [],
                "pair": [0, False],
                "nothing": None,
                "f": 2**63 - 1,
            }
        },
    ),
    (_RESULT, {"err": {"Other": {"code": 5, "message": "no"}}}),
    (_RESULT, {"err": {"Busy": None}}),
    (Vec(Opt(Vec(Nat8))), [[b"ab"], [], [b""]]),
]


def test_decode_values_agrees_with_icp_candid_on_first_and_repeated_headers() -> None:
    for _ in range(2):  # the second round finds every header cached
        for kind, value in _VALUES:
            message = encode_values([(kind, value), (Nat, 3)])
            expected = [item["value"] for item in icp_decode(message)]
            assert decode_values(message, "test") == expected
            assert decode_values(bytearray(message), "test") == expected


def test_decode_values_of_recursive_and_function_types() -> None:
    # type List = opt record { head : nat; tail : List }: a table entry that names itself
    recursive = bytes.fromhex("4449444c026e016c02a0d2aca8047c90eddae70400010001010200")
    assert decode_values(recursive, "test") == [item["value"] for item in icp_decode(recursive)]
    # a table holding a func type: left to icp_candid
    func = bytes.fromhex("4449444c016a0171017f01010000010103616263")
    assert decode_values(func, "test") == [item["value"] for item in icp_decode(func)]


@pytest.mark.parametrize(
    "message",
    [b"", b"DIDX\x00\x00", b"DIDL\x01\x6c", b"DIDL\x00\x01\x7d", b"DIDL\x01\x4c\x00\x01\x00"],
)
def test_decode_values_refuses_malformed_messages(message: bytes) -> None:
    with pytest.raises(ProtocolError, match="not valid Candid"):
        decode_values(message, "test")
