"""The one error hierarchy of everything that talks to canisters.

Every failure of a call — an HTTP status, a reject from the IC or the
canister, a network error, a certificate that does not verify — is mapped
*once*, here, by :func:`classify`, into:

```
IcError                      .call (canister, method, kind), .error_code, ...
├── TransientError           retrying later may succeed; .retry_after (seconds) if the node said
│   ├── CallTimeout          no final status before the ingress expiry: outcome unknown
│   └── StaleCertificate     a certificate or query signature too far from the local clock
└── PermanentError           retrying the same request will fail the same way
    ├── CanisterReject       the IC or the canister rejected the call (reject codes 1, 3-5)
    │   ├── AccessDenied       not a controller / not authorized (IC0512, HTTP 401/403)
    │   ├── CanisterNotFound   no such canister on this network (IC0301)
    │   └── MethodNotFound     the canister exports no such method (IC0536)
    ├── PayloadTooLarge      a message of the call exceeds an IC size limit (HTTP 413,
    │                        IC0504 / IC0408 worded so): move less per call
    ├── CertificateError     an answer whose certificate or signature does not verify;
    │                        .reason says why (``CertificateReason``)
    ├── ProtocolError        the node's answer does not follow the interface spec
    └── IdentityError        a key file that cannot be used (permissions, format)
```

Classification reads structured fields: the HTTP status, the reject code and
the IC's error code (``IC0xxx``).  Where the IC's only signal is its wording
(a contract violation that is about size, a canister's own "not authorized",
a node's "canister not found" body), :func:`text_signal` reads it — the one
function here that looks at message text, with the exact codes it applies to.

Retry policies (tenacity in the orchestrator) look only at ``TransientError``
versus ``PermanentError``; the subclasses let callers react precisely (the
pump shrinks chunks on ``PayloadTooLarge`` and instruction-limit rejects).
Messages say what is wrong and what to do.  They never contain key material:
the only identity information an error carries is the sender's principal,
which is public.

Modelled on httpcore's ``_exceptions.py``: a flat mapping applied at the
boundary, so nothing above the agent ever sees an ``httpx`` or ``cbor2``
exception.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import httpx

CallKind = Literal["query", "update", "read_state", "status"]

# Reject codes (interface spec, "Reject codes").
SYS_FATAL = 1
SYS_TRANSIENT = 2
DESTINATION_INVALID = 3
CANISTER_REJECT = 4
CANISTER_ERROR = 5
SYS_UNKNOWN = 6

# Error codes with a meaning of their own (ic-error-types' ``ErrorCode``; the
# first digit is the reject code).  The replica renumbered "method not found"
# from IC0302 to IC0536; both are recognised.
CANISTER_NOT_FOUND = "IC0301"
CANISTER_REJECTED_MESSAGE = "IC0406"  # the canister called ic0.msg_reject
INVALID_MANAGEMENT_PAYLOAD = "IC0408"  # the management canister refused an argument
CANISTER_TRAPPED = "IC0502"  # a Wasm trap (out of bounds, unreachable, ...)
CANISTER_CALLED_TRAP = "IC0503"  # the canister called ic0.trap (a panic, an assertion)
CANISTER_CONTRACT_VIOLATION = "IC0504"  # the canister broke a system API rule
CANISTER_STOPPED = "IC0508"
CANISTER_STOPPING = "IC0509"
CANISTER_INVALID_CONTROLLER = "IC0512"
CANISTER_INSTRUCTION_LIMIT_EXCEEDED = "IC0522"
CANISTER_METHOD_NOT_FOUND = "IC0536"
LEGACY_CANISTER_METHOD_NOT_FOUND = "IC0302"
CANISTER_WASM_MODULE_NOT_FOUND = "IC0537"

# Stopped/stopping canisters come back after an upgrade; everything else of
# code 5 is the canister's own failure and repeats.
_TRANSIENT_ERROR_CODES = frozenset({CANISTER_STOPPED, CANISTER_STOPPING})
_BODY_EXCERPT = 300

# Why a certificate (or a query's node signatures) is not trusted.
CertificateReason = Literal[
    "malformed",  # not CBOR, or not the shape the spec gives
    "signature",  # a signature does not verify, or its signer is not who it must be
    "delegation",  # the subnet delegation does not cover the request (range, subnet, hops)
    "not_hosted",  # no subnet the certificate shows hosts the canister: a wrong id or network
    "incomplete",  # the certificate does not reveal what the answer needs
]
# What only the IC's wording tells (see text_signal).
TextSignal = Literal["too_large", "access_denied", "canister_not_found"]


@dataclass(frozen=True)
class CallInfo:
    """Which call failed: enough to find it in logs, never any key material."""

    canister_id: str  # textual principal ("" for /api/v2/status)
    method: str  # method name, or what a read_state asked for
    kind: CallKind
    sender: str | None = None  # textual principal of the caller, if known

    def __str__(self) -> str:
        target = f"{self.canister_id}.{self.method}" if self.canister_id else self.method
        sender = f" as {self.sender}" if self.sender else ""
        return f"{self.kind} {target}{sender}"


class IcError(Exception):
    """Base of every error the agent raises.

    ``call`` says which call failed; ``error_code`` is the IC's ``IC0xxx``
    code when the IC gave one; ``http_status``, ``reject_code`` and
    ``reject_message`` are set when the failure came from them.
    """

    def __init__(
        self,
        message: str,
        *,
        call: CallInfo | None = None,
        error_code: str | None = None,
        http_status: int | None = None,
        reject_code: int | None = None,
        reject_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.call = call
        self.error_code = error_code
        self.http_status = http_status
        self.reject_code = reject_code
        self.reject_message = reject_message

    def __str__(self) -> str:
        return f"{self.message} [{self.call}]" if self.call else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def with_call(self, call: CallInfo | None) -> IcError:
        """Attach ``call`` unless the error already names one; returns ``self``."""
        if self.call is None:
            self.call = call
        return self


class TransientError(IcError):
    """The same request may succeed later: retry with backoff.

    ``retry_after`` is the node's ``Retry-After`` in seconds, if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        call: CallInfo | None = None,
        error_code: str | None = None,
        http_status: int | None = None,
        reject_code: int | None = None,
        reject_message: str | None = None,
    ) -> None:
        super().__init__(
            message,
            call=call,
            error_code=error_code,
            http_status=http_status,
            reject_code=reject_code,
            reject_message=reject_message,
        )
        self.retry_after = retry_after


class CallTimeout(TransientError):
    """An update call got no final status before its ingress expiry.

    The call may or may not have executed: repeat it only if it is
    idempotent, or after checking the canister's state.
    """


class PermanentError(IcError):
    """Repeating the same request will fail the same way: fix the cause first."""


class CanisterReject(PermanentError):
    """The IC or the canister rejected the call (``reject_code`` and ``reject_message`` set)."""


class AccessDenied(CanisterReject):
    """The caller may not do this: use a controller's identity or grant access."""


class CanisterNotFound(CanisterReject):
    """No canister with this id on this network."""


class MethodNotFound(CanisterReject):
    """The canister has no such method (wrong name, or other Wasm installed)."""


class PayloadTooLarge(PermanentError):
    """A message of the call exceeds one of the IC's size limits: move less per call.

    The request itself (HTTP 413), or, with ``reject_code`` set, a reply, an
    inter-canister request or a snapshot slice the IC refused for its size.
    """


class CertificateError(PermanentError):
    """A certificate or query signature that does not verify: do not trust the answer.

    ``reason`` says why (a :data:`CertificateReason`), ``detail`` what exactly.
    A certificate that is merely too old or too new is not this error but a
    :class:`StaleCertificate`.
    """

    def __init__(
        self,
        detail: str,
        *,
        reason: CertificateReason = "signature",
        call: CallInfo | None = None,
    ) -> None:
        super().__init__(f"untrusted answer: {detail}", call=call)
        self.detail = detail
        self.reason: CertificateReason = reason


class StaleCertificate(TransientError):
    """A certificate or query signature whose time is too far from this machine's clock.

    The node may be behind (another attempt may reach one that is not) or
    the local clock is off (then it persists: fix the clock, e.g. NTP).  The
    answer is not used either way.  ``skew_seconds`` is the certificate's
    time minus the local time; ``reason`` is ``"stale"``.
    """

    reason = "stale"

    def __init__(self, message: str, *, skew_seconds: float, call: CallInfo | None = None):
        super().__init__(message, call=call)
        self.skew_seconds = skew_seconds


class ProtocolError(PermanentError):
    """The node answered something the interface spec does not allow."""


class IdentityError(PermanentError):
    """A key file that cannot be used; the message says how to fix it."""


# --------------------------------------------------------------------- failures


@dataclass(frozen=True)
class HttpFailure:
    """An HTTP answer that is not a success (the body is the node's text)."""

    status: int
    body: str = ""
    retry_after: str | None = None  # the raw ``Retry-After`` header


@dataclass(frozen=True)
class Rejection:
    """A reject: from a query, a certified request status or a non-replicated rejection."""

    reject_code: int
    reject_message: str
    error_code: str | None = None


Failure = HttpFailure | Rejection | Exception


def classify(failure: Failure, call: CallInfo | None = None) -> IcError:
    """The :class:`IcError` for ``failure``; the one place failures are mapped."""
    if isinstance(failure, IcError):
        return failure.with_call(call)
    if isinstance(failure, HttpFailure):
        return _classify_http(failure, call)
    if isinstance(failure, Rejection):
        return _classify_reject(failure, call)
    return _classify_exception(failure, call)


@contextmanager
def map_errors(call: CallInfo | None) -> Iterator[None]:
    """Turn any exception raised inside into the matching :class:`IcError`.

    Only ``Exception`` is caught: cancellation (``BaseException``) passes through.
    """
    try:
        yield
    except IcError as exc:
        exc.with_call(call)
        raise
    except Exception as exc:
        raise classify(exc, call) from exc


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


# ------------------------------------------------------------------------ HTTP


def _classify_http(failure: HttpFailure, call: CallInfo | None) -> IcError:
    status = failure.status
    said = _excerpt(failure.body)
    if status in (408, 429) or 500 <= status <= 599:
        retry_after = parse_retry_after(failure.retry_after)
        message = _transient_http_message(status, said, retry_after)
        return TransientError(message, retry_after=retry_after, call=call, http_status=status)
    cls: type[PermanentError] = PermanentError
    if status == 413:
        cls = PayloadTooLarge
        message = (
            f"the node refused the request as too large (HTTP 413{said}): send smaller "
            "chunks; an ingress message may be at most 2 MiB"
        )
    elif status in (401, 403):
        cls = AccessDenied
        message = (
            f"the node refused access (HTTP {status}{said}): use an identity that may read "
            "or call this, e.g. one of the canister's controllers"
        )
    elif text_signal(failure.body, http_status=status) == "canister_not_found":
        cls = CanisterNotFound
        message = (
            f"no such canister on this network (HTTP {status}{said}): check the canister id "
            "and that the agent points at the right network"
        )
    else:
        message = _permanent_http_message(status, said)
    return cls(message, call=call, http_status=status)


def _transient_http_message(status: int, said: str, retry_after: float | None) -> str:
    if status == 429:
        what = "the node is rate limiting this client"
    elif status == 503:
        what = "the node is overloaded or not ready"
    elif status == 408:
        what = "the node timed out reading the request"
    else:
        what = "the node failed internally"
    when = f"retry in {retry_after:g} s" if retry_after is not None else "retry with backoff"
    return f"{what} (HTTP {status}{said}): {when}"


def _permanent_http_message(status: int, said: str) -> str:
    if status == 400:
        advice = (
            "the request is malformed or expired; check the system clock (ingress expiry "
            "is checked against the IC's time) and the arguments; retrying will not help"
        )
    elif status == 404:
        advice = "check the node URL, the canister id and the API version the node speaks"
    else:
        advice = "the node will not accept this request; retrying will not help"
    return f"the node refused the request (HTTP {status}{said}): {advice}"


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    if not text:
        return ""
    if len(text) > _BODY_EXCERPT:
        text = text[:_BODY_EXCERPT] + "…"
    return f": {text}"


# ---------------------------------------------------------------------- rejects


def _classify_reject(reject: Rejection, call: CallInfo | None) -> IcError:
    code, error_code = reject.reject_code, reject.error_code
    tag = f"reject code {code}" + (f", {error_code}" if error_code else "")
    said = f"{reject.reject_message!r} ({tag})"
    text = reject.reject_message
    if code in (SYS_TRANSIENT, SYS_UNKNOWN) or error_code in _TRANSIENT_ERROR_CODES:
        message = _transient_reject_message(code, error_code, said)
        return TransientError(
            message, call=call, reject_code=code, reject_message=text, error_code=error_code
        )
    said_by_text = text_signal(text, error_code=error_code, reject_code=code)
    if said_by_text == "too_large":
        return PayloadTooLarge(
            f"the IC refused a message of this call for its size: {said}; move less per call "
            "(smaller chunks or slices)",
            call=call,
            reject_code=code,
            reject_message=text,
            error_code=error_code,
        )
    cls: type[CanisterReject] = CanisterReject
    if error_code == CANISTER_NOT_FOUND:
        cls = CanisterNotFound
        message = (
            f"no such canister on this network: {said}; check the canister id and that the "
            "agent points at the right network"
        )
    elif error_code in (CANISTER_METHOD_NOT_FOUND, LEGACY_CANISTER_METHOD_NOT_FOUND):
        cls = MethodNotFound
        message = (
            f"the canister has no such method: {said}; check the method name and the installed Wasm"
        )
    elif error_code == CANISTER_INVALID_CONTROLLER or said_by_text == "access_denied":
        cls = AccessDenied
        message = (
            f"access denied: {said}; call with a controller's identity or add this "
            "principal as a controller / trusted peer"
        )
    else:
        message = _permanent_reject_message(code, error_code, said)
    return cls(message, call=call, reject_code=code, reject_message=text, error_code=error_code)


def _transient_reject_message(code: int, error_code: str | None, said: str) -> str:
    if error_code == CANISTER_STOPPING:
        return f"the canister is stopping: {said}; retry once it runs again"
    if error_code == CANISTER_STOPPED:
        return (
            f"the canister is stopped: {said}; retry once it is started again "
            "(start_canister), e.g. after its upgrade"
        )
    if code == SYS_UNKNOWN:
        return f"the outcome of the call is unknown: {said}; retry only if it is idempotent"
    return f"the IC could not process the call now: {said}; retry with backoff"


def _permanent_reject_message(code: int, error_code: str | None, said: str) -> str:
    if error_code == CANISTER_INSTRUCTION_LIMIT_EXCEEDED:
        return f"the call exceeded the instruction limit: {said}; do less work per call"
    if error_code == CANISTER_WASM_MODULE_NOT_FOUND:
        return f"the canister is empty: {said}; install its Wasm module first"
    if code == CANISTER_REJECT:
        return f"the canister rejected the call: {said}"
    if code == CANISTER_ERROR:
        return f"the canister failed: {said}; retrying will fail the same way"
    if code == DESTINATION_INVALID:
        return f"the call's destination is invalid: {said}; check canister id and method"
    return f"the IC rejected the call: {said}"


# ---------------------------------------------------------------------- wording
#
# The IC's exact wordings, each with the error code it comes with (ic's
# system API and canister manager; see tests/canister_iface/test_errors.py).

# IC0504: a reply over the limit ("ic0.msg_reply_data_append: application
# payload size (3200000) cannot be larger than 3145728.") or an inter-canister
# request over it ("RequestInPrep: size of message 2100000 destined to another
# subnet cannot exceed 2097152", "... exceeded the allowed remote-subnet limit").
_CONTRACT_SIZE_WORDING = re.compile(
    r"application payload size \(\d+\) cannot be larger than \d+|"
    r"RequestInPrep: .*(?:exceeded the allowed|cannot exceed)",
)
# IC0408: a snapshot slice over 2,000,000 bytes ("Requested slice too large: 3000000 > 2000000").
_MANAGEMENT_SIZE_WORDING = re.compile(r"Requested slice too large: \d+ > \d+")
# A reject a canister relays without an IC error code (an ICRP push's
# CallFailed carries only the reject code and message): the wordings above,
# or a size limit worded otherwise.
_RELAYED_SIZE_WORDING = re.compile(r"cannot be larger than|too large|exceeds the maximum", re.I)
# A canister's own refusal (IC0406 msg_reject, IC0503 trap, or relayed):
# canisters say so in words; the IC's own refusal is IC0512.
_ACCESS_DENIED_WORDING = re.compile(
    r"not (?:a |the |an? authori[sz]ed )?controller|only (?:the )?controllers|"
    r"unauthori[sz]ed|not authori[sz]ed|access denied|permission denied",
    re.IGNORECASE,
)
_CANISTER_OWN_WORDS = frozenset({None, CANISTER_REJECTED_MESSAGE, CANISTER_CALLED_TRAP})


def text_signal(
    text: str,
    *,
    error_code: str | None = None,
    reject_code: int | None = None,
    http_status: int | None = None,
) -> TextSignal | None:
    """What the IC's wording says where its codes do not; the one place text is read.

    - ``"too_large"``: an IC0504 contract violation about a reply's or an
      inter-canister request's size, an IC0408 snapshot slice over the limit,
      or a size limit in a reject relayed without error code (reject code 4/5);
    - ``"access_denied"``: a canister refusing the caller in its own words —
      reject code 4 (IC0406) or IC0503, or relayed without error code;
    - ``"canister_not_found"``: an HTTP 400/404 whose body names a missing
      canister (no reject, so no code, exists yet).

    ``None`` otherwise: the codes say all there is.
    """
    if http_status is not None:
        body = text.lower()
        named = "canister_not_found" in body or ("canister" in body and "not found" in body)
        return "canister_not_found" if http_status in (400, 404) and named else None
    if _says_too_large(text, error_code):
        return "too_large"
    if (
        reject_code in (CANISTER_REJECT, CANISTER_ERROR)
        and error_code in _CANISTER_OWN_WORDS
        and _ACCESS_DENIED_WORDING.search(text)
    ):
        return "access_denied"
    return None


def _says_too_large(text: str, error_code: str | None) -> bool:
    if error_code == CANISTER_CONTRACT_VIOLATION:
        return bool(_CONTRACT_SIZE_WORDING.search(text))
    if error_code == INVALID_MANAGEMENT_PAYLOAD:
        return bool(_MANAGEMENT_SIZE_WORDING.search(text))
    if error_code is None:
        return bool(_RELAYED_SIZE_WORDING.search(text))
    return False


# ------------------------------------------------------------------- exceptions


def _classify_exception(exc: Exception, call: CallInfo | None) -> IcError:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(
            f"no answer from the node in time ({what}); retry, and if it persists check the "
            "network and the node's health. An update call may or may not have executed",
            call=call,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return PermanentError(
            f"the request cannot be sent ({what}): check the node URL (http:// or https://)",
            call=call,
        )
    if isinstance(exc, httpx.TransportError | OSError):
        return TransientError(
            f"could not talk to the node ({what}); retry, and check that the URL is right "
            "and the node is up",
            call=call,
        )
    return ProtocolError(f"unexpected answer from the node ({what})", call=call)
