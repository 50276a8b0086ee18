"""decode_cbor_map(views=True): the small decoder agrees with cbor2, hands large blobs
over as views of the response, and leaves whatever it does not read to cbor2."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from canister_iface.errors import ProtocolError
from canister_iface.rihash import hash_value
from canister_iface.transport import VIEW_FROM, decode_cbor_map

BIG = bytes(range(256)) * (VIEW_FROM // 256 + 1)
RESPONSE = {
    "status": "replied",
    "reply": {"arg": BIG},
    "signatures": [{"timestamp": 2**63 + 5, "signature": b"\x01" * 64, "identity": b"\x02" * 29}],
    "n": -(2**40),
    "small": b"",
    "text": "caf\u00e9",
}


def _plain(value: Any) -> Any:
    """Views as bytes, to compare with what cbor2 decodes."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("tagged", [False, True])
def test_the_small_decoder_agrees_with_cbor2_and_views_large_blobs(tagged: bool) -> None:
    data = bytearray(cbor2.dumps(cbor2.CBORTag(55799, RESPONSE) if tagged else RESPONSE))
    decoded = decode_cbor_map(data, None, "query response", views=True)
    assert _plain(decoded) == RESPONSE
    arg = decoded["reply"]["arg"]
    assert isinstance(arg, memoryview)
    assert arg.obj is data  # not a copy
    assert isinstance(decoded["signatures"][0]["signature"], bytes)  # small blobs: bytes
    # A view hashes as the blob it shows (the query signature covers it).
    assert hash_value(decoded["reply"]) == hash_value(RESPONSE["reply"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"f": 1.5, "b": BIG}, id="float"),
        pytest.param({"t": cbor2.CBORTag(24, b"x"), "b": BIG}, id="inner tag"),
        pytest.param({"n": None, "ok": True}, id="simple values"),
    ],
)
def test_what_the_small_decoder_does_not_read_is_left_to_cbor2(value: Any) -> None:
    data = cbor2.dumps(value)
    assert _plain(decode_cbor_map(data, None, "x", views=True)) == cbor2.loads(data)


def test_indefinite_lengths_are_left_to_cbor2() -> None:
    data = b"\xbf\x61a\x01\xff"  # {_ "a": 1}
    assert decode_cbor_map(data, None, "x", views=True) == {"a": 1}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(cbor2.dumps(RESPONSE)[:-10], id="truncated"),
        pytest.param(b"\xa1\x61a\x5b" + b"\xff" * 8, id="absurd length"),
    ],
)
def test_malformed_input_is_a_protocol_error_either_way(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="not valid CBOR"):
        decode_cbor_map(data, None, "query response", views=True)
    with pytest.raises(ProtocolError, match="not valid CBOR"):
        decode_cbor_map(data, None, "query response")


def test_a_top_level_array_is_refused_as_before() -> None:
    with pytest.raises(ProtocolError, match="not a map"):
        decode_cbor_map(cbor2.dumps([1, 2]), None, "query response", views=True)
