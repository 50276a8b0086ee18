"""localnet.rihash against the interface spec's worked examples."""

from __future__ import annotations

import hashlib

import pytest

from localnet.rihash import hash_of_map, hash_value, leb128, request_id

# The spec's "Request ids" example (nonce omitted).
SPEC_CONTENT = {
    "request_type": "call",
    "sender": b"\x04",
    "ingress_expiry": 1685570400000000000,
    "canister_id": bytes.fromhex("00000000000004D2"),
    "method_name": "hello",
    "arg": b"DIDL\x00\xfd*",
}
SPEC_REQUEST_ID = "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_spec_request_id_example() -> None:
    assert request_id(SPEC_CONTENT).hex() == SPEC_REQUEST_ID


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1685570400000000000, "db8e57abc8cda1525d45fdd2637af091bc1f28b35819a40df71517d1501f2c76"),
        (b"\x04", "e52d9c508c502347344d8c07ad91cbd6068afc75ff6292f062a09ca381c89e71"),
        ("hello", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        ("call", "7edb360f06acaef2cc80dba16cf563f199d347db4443da04da0c8173e3f9e4ed"),
    ],
)
def test_spec_field_hashes(value: object, expected: str) -> None:
    assert hash_value(value).hex() == expected


@pytest.mark.parametrize(
    ("number", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (624485, b"\xe5\x8e\x26")],
)
def test_leb128_shortest_form(number: int, encoded: bytes) -> None:
    assert leb128(number) == encoded


def test_nested_map_matches_spec_formula() -> None:
    inner = _h(b"".join(sorted([_h(b"arg") + _h(b"DIDL\x00\x00")])))
    expected = _h(_h(b"reply") + inner)
    assert hash_of_map({"reply": {"arg": b"DIDL\x00\x00"}}) == expected


def test_array_hashes_concatenated_element_hashes() -> None:
    paths = [[b"time"], [b"request_status", b"\x01" * 32]]
    path_hashes = [_h(b"".join(_h(label) for label in path)) for path in paths]
    assert hash_value(paths) == _h(b"".join(path_hashes))


def test_none_is_an_omitted_field() -> None:
    assert request_id({**SPEC_CONTENT, "nonce": None}).hex() == SPEC_REQUEST_ID
    assert request_id({**SPEC_CONTENT, "nonce": b"\x01"}).hex() != SPEC_REQUEST_ID


def test_field_order_does_not_matter() -> None:
    reordered = dict(reversed(list(SPEC_CONTENT.items())))
    assert request_id(reordered).hex() == SPEC_REQUEST_ID


@pytest.mark.parametrize("bad", [True, -1, 1.5, object()])
def test_values_without_an_encoding_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        hash_value(bad)
