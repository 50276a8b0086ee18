"""The boundary: any exception → the job-level error and exit code the user sees.

Call errors are classified once, at the agent boundary
(:mod:`canister_iface.errors`: transient or permanent, with the IC's codes).
This module is the one place where those, and everything else a run can
raise, become a :class:`~replicator.errors.ReplicatorError` with its
documented exit code (:mod:`replicator.errors`).  The engine uses
:func:`job_level_error` when a job fails; the command line uses
:func:`exit_code_for` for errors raised before a job exists.
"""

from __future__ import annotations

import asyncio

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from replicator.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TEMPORARY,
    AccessDeniedError,
    IntegrityError,
    JobFailed,
    NotIcrpError,
    ReplicatorError,
)

# The replication protocol's method prefix: a missing ``icrp_*`` method means
# the canister does not speak ICRP, not that the job asked for a typo.
ICRP_METHOD_PREFIX = "icrp_"


def job_error(exc: ic.IcError) -> ReplicatorError:
    """The job-level error for a call error that ends a job.

    Transient errors only end a job once retries gave up, which the retry
    policy reports itself (:class:`RetriesExhausted`); here they become a plain
    :class:`JobFailed` so that nothing is lost if a caller passes one anyway.
    """
    text = str(exc)
    if isinstance(exc, ic.AccessDenied):
        return AccessDeniedError(text)
    if exc.error_code == ic.CANISTER_WASM_MODULE_NOT_FOUND:
        canister = exc.call.canister_id if exc.call is not None else "the canister"
        return NotIcrpError(
            f"{canister} has no code installed (no Wasm module), so it cannot take part in "
            "replication: install the app's ICRP canister (or the backup canister) into it, "
            f"or check the canister id; {text}"
        )
    if isinstance(exc, ic.MethodNotFound) and _is_icrp_call(exc):
        return NotIcrpError(
            f"{text}; the canister does not implement the replication protocol: install a "
            "canister built with the ICRP library, or use a snapshot-based job instead"
        )
    if isinstance(exc, ic.CertificateError):
        return IntegrityError(text)
    return JobFailed(text)


def job_level_error(exc: BaseException) -> ReplicatorError:
    """The job-level error a failure ends a job with (message + exit code)."""
    if isinstance(exc, ReplicatorError):
        return exc
    inner = exc.inner if isinstance(exc, ie.TargetError) else exc
    if isinstance(inner, ie.DigestMismatch | ie.Conflict):
        return IntegrityError(f"{exc}; nothing was committed")
    if isinstance(exc, ic.CanisterNotFound) or _outside_every_subnet(exc):
        return JobFailed(f"{exc}; check the canister id and the network (--network)")
    if isinstance(exc, ic.IcError):
        return job_error(exc)
    if isinstance(exc, OSError):
        return JobFailed(f"{exc}; check the path and its permissions")
    return JobFailed(f"unexpected error: {exc!r}; this is a bug, please report it")


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for ``exc`` (see :mod:`replicator.errors`)."""
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return EXIT_INTERRUPTED
    if isinstance(exc, ReplicatorError):
        return exc.exit_code
    if isinstance(exc, ic.TransientError):
        return EXIT_TEMPORARY
    if isinstance(exc, ic.IcError):
        return job_error(exc).exit_code
    return EXIT_FAILED


def _is_icrp_call(exc: ic.IcError) -> bool:
    return exc.call is not None and exc.call.method.startswith(ICRP_METHOD_PREFIX)


def _outside_every_subnet(exc: BaseException) -> bool:
    # A canister id no subnet's range contains cannot be verified; for the
    # user that is a wrong id (or network), not an integrity problem.
    return isinstance(exc, ic.CertificateError) and exc.reason == "not_hosted"
