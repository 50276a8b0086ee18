"""The classification table: every failure lands in the right class, once."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from canister_iface.errors import (
    AccessDenied,
    CallInfo,
    CanisterNotFound,
    CanisterReject,
    CertificateError,
    Failure,
    HttpFailure,
    IcError,
    MethodNotFound,
    PayloadTooLarge,
    PermanentError,
    ProtocolError,
    Rejection,
    StaleCertificate,
    TextSignal,
    TransientError,
    classify,
    map_errors,
    parse_retry_after,
    text_signal,
)

CALL = CallInfo("rrkah-fqaaa-aaaaa-aaaaq-cai", "icrp_write", "update", "2vxsx-fae")

# The replica's wording (ic's system API, canister manager and execution errors).
FROM = "Error from Canister rrkah-fqaaa-aaaaa-aaaaq-cai:"
REPLY_TOO_LARGE = (
    "ic0.msg_reply_data_append: application payload size (3200000) cannot be larger than 3145728."
)
REQUEST_TOO_LARGE = (
    "RequestInPrep: size of message 2097300 destined to another subnet cannot exceed 2097152"
)
REPLIED_TWICE = "ic0.msg_reply: the call is already replied"
INSTRUCTION_LIMIT = (
    "Canister exceeded the limit of 40000000000 instructions for single message execution."
)


def trap(message: str) -> str:
    return f"Canister called `ic0.trap` with message: '{message}'"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # HTTP statuses
        (HttpFailure(429, "rate limited"), TransientError),
        (HttpFailure(503, "overloaded"), TransientError),
        (HttpFailure(500, "boom"), TransientError),
        (HttpFailure(502, ""), TransientError),
        (HttpFailure(504, ""), TransientError),
        (HttpFailure(408, ""), TransientError),
        (HttpFailure(400, "Failed to deserialize cbor request"), PermanentError),
        (HttpFailure(404, "Endpoint not found"), PermanentError),
        (HttpFailure(400, "error: canister_not_found"), CanisterNotFound),
        (HttpFailure(403, "Forbidden"), AccessDenied),
        (HttpFailure(401, ""), AccessDenied),
        (HttpFailure(413, "Payload too large"), PayloadTooLarge),
        (HttpFailure(405, ""), PermanentError),
        (HttpFailure(302, ""), PermanentError),
        # reject codes
        (Rejection(1, "fatal"), CanisterReject),
        (Rejection(2, "queue full", "IC0201"), TransientError),
        (Rejection(2, "out of cycles", "IC0207"), TransientError),
        (Rejection(3, "Canister xyz not found", "IC0301"), CanisterNotFound),
        (Rejection(3, "destination invalid"), CanisterReject),
        (Rejection(4, "refused on purpose"), CanisterReject),
        (Rejection(4, "caller is not a controller"), AccessDenied),
        (Rejection(4, "Unauthorized: only trusted peers may write"), AccessDenied),
        (Rejection(5, "Canister called ic0.trap", "IC0503"), CanisterReject),
        (Rejection(5, "Only controllers of canister x can call", "IC0512"), AccessDenied),
        (Rejection(5, "has no update method 'x'", "IC0536"), MethodNotFound),
        (Rejection(3, "has no update method 'x'", "IC0302"), MethodNotFound),
        (Rejection(5, "instruction limit", "IC0522"), CanisterReject),
        (Rejection(5, "Canister x is stopping", "IC0509"), TransientError),
        (Rejection(5, "Canister x is stopped", "IC0508"), TransientError),
        (Rejection(6, "deadline expired", "IC0601"), TransientError),
        # the IC's error codes whose wording decides (text_signal), in the IC's words
        (
            Rejection(5, f"{FROM} Canister violated contract: {REPLY_TOO_LARGE}", "IC0504"),
            PayloadTooLarge,
        ),
        (
            Rejection(5, f"{FROM} Canister violated contract: {REQUEST_TOO_LARGE}", "IC0504"),
            PayloadTooLarge,
        ),
        (
            Rejection(5, f"{FROM} Canister violated contract: {REPLIED_TWICE}", "IC0504"),
            CanisterReject,
        ),
        (
            Rejection(5, f"{FROM} Canister violated contract: not a controller", "IC0504"),
            CanisterReject,
        ),
        (Rejection(4, "Requested slice too large: 3000000 > 2000000", "IC0408"), PayloadTooLarge),
        (Rejection(4, "Error decoding candid: too large a nat", "IC0408"), CanisterReject),
        (Rejection(5, f"{FROM} {INSTRUCTION_LIMIT}", "IC0522"), CanisterReject),
        (
            Rejection(5, f"{FROM} {trap('Unauthorized: caller is not a controller')}", "IC0503"),
            AccessDenied,
        ),
        (Rejection(5, f"{FROM} {trap('value too large')}", "IC0503"), CanisterReject),
        (Rejection(4, "not authorized: only the owner may write", "IC0406"), AccessDenied),
        (Rejection(5, f"{FROM} Canister trapped: heap out of bounds", "IC0502"), CanisterReject),
        (Rejection(5, "the payload is too large"), PayloadTooLarge),  # relayed: no error code
        (HttpFailure(404, "Canister rrkah-fqaaa-aaaaa-aaaaq-cai not found"), CanisterNotFound),
        # exceptions
        (httpx.ConnectError("refused"), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
        (httpx.PoolTimeout("busy"), TransientError),
        (httpx.RemoteProtocolError("Server disconnected"), TransientError),
        (httpx.UnsupportedProtocol("ftp://"), PermanentError),
        (ConnectionResetError("reset"), TransientError),
        (ValueError("garbage"), ProtocolError),
        (CertificateError("bad signature"), CertificateError),
        (StaleCertificate("too old", skew_seconds=-400.0), StaleCertificate),
    ],
)
def test_classification_table(failure: Failure, expected: type[IcError]) -> None:
    error = classify(failure, CALL)
    assert type(error) is expected
    assert error.call == CALL
    assert str(CALL) in str(error)
    transient = isinstance(error, TransientError)
    assert transient != isinstance(error, PermanentError)


@pytest.mark.parametrize(
    ("text", "codes", "signal"),
    [
        (REPLY_TOO_LARGE, {"error_code": "IC0504", "reject_code": 5}, "too_large"),
        (REQUEST_TOO_LARGE, {"error_code": "IC0504", "reject_code": 5}, "too_large"),
        (
            "RequestInPrep: current_size 10485800 exceeded the allowed limit local-subnet "
            "10485760 remote-subnet 2097152",
            {"error_code": "IC0504", "reject_code": 5},
            "too_large",
        ),
        (REPLIED_TWICE, {"error_code": "IC0504", "reject_code": 5}, None),
        ("Requested slice too large: 3000000 > 2000000", {"error_code": "IC0408"}, "too_large"),
        ("Requested slice too large: 3000000 > 2000000", {"error_code": "IC0503"}, None),
        (INSTRUCTION_LIMIT, {"error_code": "IC0522", "reject_code": 5}, None),  # a code of its own
        ("argument exceeds the maximum of 2097152 bytes", {"reject_code": 5}, "too_large"),
        (trap("not authorized"), {"error_code": "IC0503", "reject_code": 5}, "access_denied"),
        (
            "Only the controllers may call this",
            {"error_code": "IC0406", "reject_code": 4},
            "access_denied",
        ),
        ("caller is not a controller", {"reject_code": 4}, "access_denied"),
        ("caller is not a controller", {"error_code": "IC0504", "reject_code": 5}, None),
        ("caller is not a controller", {"error_code": "IC0201", "reject_code": 2}, None),
        ("Unauthorized", {"error_code": "IC0502", "reject_code": 5}, None),
        ("error: canister_not_found", {"http_status": 400}, "canister_not_found"),
        (
            "Canister rrkah-fqaaa-aaaaa-aaaaq-cai not found",
            {"http_status": 404},
            "canister_not_found",
        ),
        ("Endpoint not found", {"http_status": 404}, None),
        ("canister not found", {"http_status": 503}, None),
    ],
)
def test_the_ics_wording_is_read_only_where_its_codes_say_too_little(
    text: str, codes: dict[str, object], signal: TextSignal | None
) -> None:
    assert text_signal(text, **codes) == signal  # type: ignore[arg-type]


def test_size_rejects_keep_their_codes_and_say_what_to_do() -> None:
    error = classify(Rejection(5, REPLY_TOO_LARGE, "IC0504"), CALL)
    assert isinstance(error, PayloadTooLarge)
    assert (error.reject_code, error.error_code) == (5, "IC0504")
    assert "move less per call" in str(error)


def test_certificate_errors_carry_a_reason_and_stale_ones_are_transient() -> None:
    error = CertificateError("no subnet hosts it", reason="not_hosted")
    assert (error.reason, error.detail) == ("not_hosted", "no subnet hosts it")
    assert str(error) == "untrusted answer: no subnet hosts it"
    assert CertificateError("bad").reason == "signature"
    stale = StaleCertificate("certificate 400 s old", skew_seconds=-400.0)
    assert isinstance(stale, TransientError)
    assert not isinstance(stale, PermanentError | CertificateError)
    assert (stale.reason, stale.skew_seconds) == ("stale", -400.0)


def test_reject_fields_are_kept() -> None:
    error = classify(Rejection(5, "Canister called ic0.trap: boom", "IC0503"), CALL)
    assert isinstance(error, CanisterReject)
    assert (error.reject_code, error.reject_message, error.error_code) == (
        5,
        "Canister called ic0.trap: boom",
        "IC0503",
    )
    transient = classify(Rejection(2, "queue full", "IC0201"), CALL)
    assert transient.reject_code == 2
    assert transient.error_code == "IC0201"


def test_retry_after_seconds_and_date() -> None:
    error = classify(HttpFailure(429, "slow down", retry_after="7"), CALL)
    assert isinstance(error, TransientError)
    assert error.retry_after == 7.0
    assert error.http_status == 429
    assert "retry in 7 s" in str(error)
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    dated = classify(HttpFailure(503, "", retry_after=date), CALL)
    assert isinstance(dated, TransientError)
    assert dated.retry_after is not None
    assert 25 <= dated.retry_after <= 31
    assert classify(HttpFailure(503, ""), CALL).retry_after is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_messages_say_what_to_do() -> None:
    assert "chmod" not in str(classify(HttpFailure(413, ""), CALL))
    assert "smaller" in str(classify(HttpFailure(413, ""), CALL))
    assert "controller" in str(classify(Rejection(5, "x", "IC0512"), CALL))
    assert "check the canister id" in str(classify(Rejection(3, "x", "IC0301"), CALL))
    assert "clock" in str(classify(HttpFailure(400, "expired"), CALL))
    assert "may or may not have executed" in str(classify(httpx.ReadTimeout("t"), CALL))


def test_long_bodies_are_cut() -> None:
    error = classify(HttpFailure(500, "x" * 10_000), CALL)
    assert len(str(error)) < 600


def test_existing_error_keeps_its_call() -> None:
    other = CallInfo("aaaaa-aa", "m", "query")
    error = CertificateError("stale", call=other)
    assert classify(error, CALL).call == other
    assert classify(CertificateError("stale"), CALL).call == CALL


def test_map_errors_maps_and_never_swallows_cancellation() -> None:
    with pytest.raises(TransientError) as caught, map_errors(CALL):
        raise httpx.ConnectError("refused")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    with pytest.raises(KeyboardInterrupt), map_errors(CALL):
        raise KeyboardInterrupt
    with pytest.raises(asyncio.CancelledError), map_errors(CALL):
        raise asyncio.CancelledError
