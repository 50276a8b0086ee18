"""The agent's request ids agree with the spec and with localnet's independent implementation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canister_iface.rihash import hash_of_map, request_id, uleb128
from localnet import rihash as localnet_rihash

SPEC_CONTENT: dict[str, Any] = {
    "request_type": "call",
    "sender": b"\x04",
    "ingress_expiry": 1685570400000000000,
    "canister_id": bytes.fromhex("00000000000004D2"),
    "method_name": "hello",
    "arg": b"DIDL\x00\xfd*",
}


def test_spec_request_id_example() -> None:
    assert (
        request_id(SPEC_CONTENT).hex()
        == "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"
    )


def test_read_state_paths_and_optional_fields() -> None:
    content = {
        "request_type": "read_state",
        "sender": b"\x04",
        "ingress_expiry": 1,
        "paths": [[b"time"], [b"request_status", b"\x00" * 32]],
        "nonce": None,
    }
    assert request_id(content) == localnet_rihash.request_id(content)
    assert request_id(content) != request_id({**content, "nonce": b""})


def test_leb128_examples_from_the_spec() -> None:
    assert uleb128(0) == b"\x00"
    assert uleb128(624485) == bytes([0xE5, 0x8E, 0x26])
    with pytest.raises(ValueError, match="natural"):
        uleb128(-1)


@pytest.mark.parametrize("bad", [True, 1.0, None, {1: b""}])
def test_values_without_an_encoding_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        hash_of_map({"field": [bad]})


_scalars = st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(0, 2**70))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(content=st.dictionaries(st.text(max_size=12), _values, max_size=8))
def test_agent_and_localnet_agree(content: dict[str, Any]) -> None:
    assert request_id(content) == localnet_rihash.request_id(content)
