"""The ICRP ``Error`` variant as exceptions.

Every case of ``Error`` in ``icrp.did`` is an :class:`IcrpError` subclass of
the same name, and also a :class:`~canister_iface.errors.TransientError` or
:class:`~canister_iface.errors.PermanentError`, so retry policies need not
know ICRP: ``NotReady`` and ``Busy`` pass with time, a push that failed with
a transient reject may be repeated, everything else needs a different
request (``NotWritable``: a controller changed the canister's mode;
``OutOfRange``: another canister owns the key, ``owner`` says which).  ``NotAuthorized`` is also an
:class:`~canister_iface.errors.AccessDenied`, like a reject of the IC for a
non-controller.
"""

from __future__ import annotations

from canister_iface.candid_value import Rec, as_rec, as_text, as_variant
from canister_iface.errors import (
    SYS_TRANSIENT,
    SYS_UNKNOWN,
    AccessDenied,
    CallInfo,
    IcError,
    PayloadTooLarge,
    PermanentError,
    TransientError,
    text_signal,
)
from canister_iface.principal import Principal

ERROR_CASES = (
    "NotAuthorized",
    "StaleSnapshot",
    "NotReady",
    "NotFound",
    "Conflict",
    "DigestMismatch",
    "Incomplete",
    "TooOld",
    "Gap",
    "OutOfRange",
    "ImageFormat",
    "Busy",
    "OutOfMemory",
    "InvalidArgument",
    "Unsupported",
    "Target",
    "CallFailed",
    "NotWritable",
)


class IcrpError(IcError):
    """A canister answered an ICRP call with its ``Error`` variant."""

    case = ""

    def __init__(self, message: str, *, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)


class NotAuthorized(IcrpError, AccessDenied):
    case = "NotAuthorized"

    def __init__(self, message: str, *, caller: Principal, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)
        self.caller = caller


class StaleSnapshot(IcrpError, PermanentError):
    case = "StaleSnapshot"

    def __init__(
        self, message: str, *, requested: int, current: int | None, call: CallInfo | None = None
    ) -> None:
        super().__init__(message, call=call)
        self.requested = requested
        self.current = current


class NotReady(IcrpError, TransientError):
    case = "NotReady"

    def __init__(
        self, message: str, *, snapshot_id: int, done_bytes: int, call: CallInfo | None = None
    ) -> None:
        super().__init__(message, call=call)
        self.snapshot_id = snapshot_id
        self.done_bytes = done_bytes


class NotFound(IcrpError, PermanentError):
    case = "NotFound"


class Conflict(IcrpError, PermanentError):
    case = "Conflict"

    def __init__(self, message: str, *, offset: int, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)
        self.offset = offset


class DigestMismatch(IcrpError, PermanentError):
    case = "DigestMismatch"

    def __init__(
        self,
        message: str,
        *,
        chunk: int | None,
        expected: bytes,
        actual: bytes,
        call: CallInfo | None = None,
    ) -> None:
        super().__init__(message, call=call)
        self.chunk = chunk
        self.expected = expected
        self.actual = actual


class Incomplete(IcrpError, PermanentError):
    case = "Incomplete"

    def __init__(
        self, message: str, *, missing_chunks: int, first_missing: int, call: CallInfo | None = None
    ) -> None:
        super().__init__(message, call=call)
        self.missing_chunks = missing_chunks
        self.first_missing = first_missing


class TooOld(IcrpError, PermanentError):
    case = "TooOld"

    def __init__(self, message: str, *, oldest_seq: int, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)
        self.oldest_seq = oldest_seq


class Gap(IcrpError, PermanentError):
    case = "Gap"

    def __init__(
        self, message: str, *, applied_seq: int, from_seq: int, call: CallInfo | None = None
    ) -> None:
        super().__init__(message, call=call)
        self.applied_seq = applied_seq
        self.from_seq = from_seq


class OutOfRange(IcrpError, PermanentError):
    case = "OutOfRange"

    def __init__(
        self,
        message: str,
        *,
        key: bytes,
        owner: Principal | None = None,
        call: CallInfo | None = None,
    ) -> None:
        super().__init__(message, call=call)
        self.key = key
        self.owner = owner  # the canister that owns the key, if the refusing one knows


class NotWritable(IcrpError, PermanentError):
    """The canister's mode refuses the change: a standby, or fenced (read_only)."""

    case = "NotWritable"

    def __init__(
        self,
        message: str,
        *,
        mode: str,
        redirect: Principal | None,
        call: CallInfo | None = None,
    ) -> None:
        super().__init__(message, call=call)
        self.mode = mode
        self.redirect = redirect


class ImageFormat(IcrpError, PermanentError):
    case = "ImageFormat"


class Busy(IcrpError, TransientError):
    case = "Busy"


class OutOfMemory(IcrpError, PermanentError):
    case = "OutOfMemory"

    def __init__(self, message: str, *, requested_bytes: int, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)
        self.requested_bytes = requested_bytes


class InvalidArgument(IcrpError, PermanentError):
    case = "InvalidArgument"


class Unsupported(IcrpError, PermanentError):
    case = "Unsupported"


class TargetError(IcrpError):
    """``icrp_push``: the target answered with an error (``inner``)."""

    case = "Target"

    def __init__(self, message: str, *, inner: IcrpError, call: CallInfo | None = None) -> None:
        super().__init__(message, call=call)
        self.inner = inner


class TargetErrorTransient(TargetError, TransientError):
    case = "Target"


class TargetErrorPermanent(TargetError, PermanentError):
    case = "Target"


class CallFailed(IcrpError):
    """``icrp_push``: the inter-canister call to the target failed with ``code``."""

    case = "CallFailed"

    def __init__(self, message: str, *, code: int, reason: str, call: CallInfo | None = None):
        super().__init__(message, call=call)
        self.code = code
        self.reason = reason


class CallFailedTransient(CallFailed, TransientError):
    case = "CallFailed"


class CallFailedPermanent(CallFailed, PermanentError):
    case = "CallFailed"


class CallFailedTooLarge(CallFailedPermanent, PayloadTooLarge):
    """The push's call failed for the size of what it carried: push less per call."""

    case = "CallFailed"


def error_from_candid(value: object, call: CallInfo | None = None) -> IcrpError:
    """The exception for a decoded ``Error`` value."""
    case, payload = as_variant(value, ERROR_CASES, "Error")
    where = f"Error.{case}"
    if isinstance(payload, str):
        return _text_error(case, as_text(payload, where), call)
    if case == "Target":
        inner = error_from_candid(payload, call)
        cls = TargetErrorTransient if isinstance(inner, TransientError) else TargetErrorPermanent
        return cls(f"the push target refused the write: {inner.message}", inner=inner, call=call)
    return _record_error(case, as_rec(payload, where), call)


def _text_error(case: str, text: str, call: CallInfo | None) -> IcrpError:
    if case == "NotFound":
        return NotFound(
            f"not found: {text} (no such import, or no image yet: begin an export or import)",
            call=call,
        )
    if case == "ImageFormat":
        return ImageFormat(
            f"the image passed its digest but the canister cannot decode it: {text}; the "
            "import was aborted (source and target run incompatible versions?)",
            call=call,
        )
    if case == "Busy":
        return Busy(f"the canister is busy: {text}; retry later", call=call)
    if case == "InvalidArgument":
        return InvalidArgument(f"invalid argument: {text}", call=call)
    return Unsupported(
        f"the canister does not support this: {text} (see icrp_info().capabilities)", call=call
    )


def _record_error(case: str, rec: Rec, call: CallInfo | None) -> IcrpError:
    if case == "NotAuthorized":
        caller = rec.principal("caller")
        return NotAuthorized(
            f"{caller} is neither a controller nor a trusted peer of the canister: call with a "
            "controller's identity or add it with icrp_set_peers",
            caller=caller,
            call=call,
        )
    if case == "StaleSnapshot":
        requested, current = rec.nat("requested"), rec.opt_nat("current")
        return StaleSnapshot(
            f"snapshot {requested} is no longer readable (current: {current}); start again "
            "from icrp_begin_export",
            requested=requested,
            current=current,
            call=call,
        )
    if case == "NotReady":
        snapshot_id, done = rec.nat("snapshot_id"), rec.nat("done_bytes")
        return NotReady(
            f"snapshot {snapshot_id} is still being prepared ({done:,} bytes so far); call "
            "icrp_export_status until it is ready",
            snapshot_id=snapshot_id,
            done_bytes=done,
            call=call,
        )
    if case == "Conflict":
        offset = rec.nat("offset")
        return Conflict(
            f"different bytes were already written at offset {offset:,} of this import: the "
            "source image changed; abort the import and start from a new export",
            offset=offset,
            call=call,
        )
    if case == "DigestMismatch":
        return _digest_mismatch(rec, call)
    if case == "Incomplete":
        missing, first = rec.nat("missing_chunks"), rec.nat("first_missing")
        return Incomplete(
            f"{missing} chunk(s) are missing, the first is chunk {first}: write them before "
            "committing",
            missing_chunks=missing,
            first_missing=first,
            call=call,
        )
    if case == "TooOld":
        oldest = rec.nat("oldest_seq")
        return TooOld(
            f"the journal no longer reaches back that far (oldest_seq {oldest}): transfer a "
            "full image, then continue from its journal_seq",
            oldest_seq=oldest,
            call=call,
        )
    if case == "Gap":
        applied, from_seq = rec.nat("applied_seq"), rec.nat("from_seq")
        return Gap(
            f"the batch starts at {from_seq} but the target has applied up to {applied}: "
            f"fetch the changes since {applied} first",
            applied_seq=applied,
            from_seq=from_seq,
            call=call,
        )
    if case == "OutOfRange":
        key, owner = rec.blob("key"), rec.opt_principal("owner")
        where = f": send it to {owner}" if owner is not None else ""
        return OutOfRange(
            f"key {key.hex()} is not this canister's (outside its key range, or moved away "
            f"at a split){where}",
            key=key,
            owner=owner,
            call=call,
        )
    if case == "NotWritable":
        return _not_writable(rec, call)
    if case == "OutOfMemory":
        requested = rec.nat("requested_bytes")
        return OutOfMemory(
            f"the canister could not grow its memory by {requested:,} bytes: free memory or "
            "raise its memory limits",
            requested_bytes=requested,
            call=call,
        )
    return _call_failed(rec, call)


_MODE_MEANING = {
    "primary": "a primary",
    "standby": "a standby: it takes changes only from replication",
    "read_only": "read-only (fenced by a controller): it takes no change at all",
}


def _not_writable(rec: Rec, call: CallInfo | None) -> NotWritable:
    mode, _ = rec.variant("mode", tuple(_MODE_MEANING))
    redirect = rec.opt_principal("redirect")
    then = f"send writes to {redirect}" if redirect is not None else "retry once it is a primary"
    return NotWritable(
        f"the canister is {_MODE_MEANING[mode]}; {then}",
        mode=mode,
        redirect=redirect,
        call=call,
    )


def _digest_mismatch(rec: Rec, call: CallInfo | None) -> DigestMismatch:
    chunk, expected, actual = rec.opt_nat("chunk"), rec.blob("expected"), rec.blob("actual")
    what = "the image" if chunk is None else f"chunk {chunk}"
    then = "the import was aborted" if chunk is None else "write the chunk again"
    return DigestMismatch(
        f"{what} does not match its digest (expected {expected.hex()}, got {actual.hex()}): {then}",
        chunk=chunk,
        expected=expected,
        actual=actual,
        call=call,
    )


def _call_failed(rec: Rec, call: CallInfo | None) -> CallFailed:
    code, reason = rec.nat("code"), rec.text("message")
    # The canister relays the IC's reject code and message, not its error code.
    too_large = text_signal(reason, reject_code=code) == "too_large"
    transient = code in (SYS_TRANSIENT, SYS_UNKNOWN)
    cls: type[CallFailed] = CallFailedTransient if transient else CallFailedPermanent
    advice = "retry the push" if transient else "check that the target runs ICRP and trusts us"
    if too_large and not transient:
        cls, advice = CallFailedTooLarge, "push fewer bytes per call"
    return cls(
        f"the push's call to the target failed (reject code {code}: {reason}): {advice}",
        code=code,
        reason=reason,
        call=call,
    )
