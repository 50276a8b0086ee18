"""canister_iface.candid_value (typed side): typed round trips, mismatches, and 2 MiB blob speed."""

from __future__ import annotations

import os
import time

import pytest
from icp_candid import Types, encode

from canister_iface import candid_value as candid
from canister_iface.errors import ProtocolError
from canister_iface.principal import Principal

TWO_MIB = 2 * 1024 * 1024


def test_scalar_round_trips() -> None:
    assert candid.decode_nat(candid.encode_nat(10**30)) == 10**30
    assert candid.decode_text(candid.encode_text("héllo")) == "héllo"
    assert candid.decode_blob(candid.encode_blob(b"\x00\xff")) == b"\x00\xff"
    canister = Principal.from_text("rrkah-fqaaa-aaaaa-aaaaq-cai")
    assert candid.decode_principal(candid.encode_principal(canister)) == canister
    assert candid.encode() == candid.EMPTY_ARGS


def test_records_variants_and_nested_principals() -> None:
    info = candid.Record(
        {
            "controllers": candid.Vec(candid.PrincipalType),
            "size": candid.Opt(candid.Nat64),
            "state": candid.Variant({"ready": candid.Null, "failed": candid.Text}),
        }
    )
    me = Principal.self_authenticating(b"key")
    value = {"controllers": [me, Principal.anonymous()], "size": [7], "state": {"failed": "x"}}
    decoded = candid.decode_one(candid.encode((info, value)), info)
    assert decoded == value


def test_matches_icp_candid_encoding() -> None:
    ours = candid.encode((candid.Nat, 5), (candid.Text, "a"))
    assert ours == encode([{"type": Types.Nat, "value": 5}, {"type": Types.Text, "value": "a"}])


def test_wrong_reply_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="expected interface"):
        candid.decode_nat(candid.encode_text("not a nat"))
    with pytest.raises(ProtocolError):
        candid.decode_blob(b"garbage")
    with pytest.raises(ValueError, match="cannot encode"):
        candid.encode((candid.Nat, -1))


def test_two_mib_blobs_are_fast(capsys: pytest.CaptureFixture[str]) -> None:
    """The relay path moves 2 MiB chunks: encoding and decoding must be cheap."""
    blob = os.urandom(TWO_MIB)
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        encoded = candid.encode_blob(blob)
    encode_s = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        decoded = candid.decode_blob(encoded)
    decode_s = (time.perf_counter() - started) / rounds
    assert decoded == blob
    chunk = candid.Record({"offset": candid.Nat64, "data": candid.Blob})
    started = time.perf_counter()
    record = candid.decode_one(candid.encode((chunk, {"offset": 1, "data": blob})), chunk)
    record_s = time.perf_counter() - started
    assert record == {"offset": 1, "data": blob}
    with capsys.disabled():
        print(
            f"\n2 MiB blob: encode {encode_s * 1e3:.2f} ms ({2 / encode_s:.0f} MiB/s), "
            f"decode {decode_s * 1e3:.2f} ms ({2 / decode_s:.0f} MiB/s), "
            f"record{{nat64, blob}} encode+decode {record_s * 1e3:.2f} ms"
        )
    # Generous bounds (shared CI cores) that still catch a per-byte slow path (~1 s).
    assert encode_s < 0.05
    assert decode_s < 0.05
