"""Job-level errors map to the documented exit codes."""

from __future__ import annotations

import asyncio

import pytest

from canister_iface import errors as ic
from replicator import errors
from replicator.classify import exit_code_for, job_error, job_level_error
from replicator.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_NOT_ICRP,
    EXIT_TEMPORARY,
    EXIT_USAGE,
)


def _reject(code: int, message: str, error_code: str | None, method: str) -> ic.IcError:
    call = ic.CallInfo("bkyz2-fmaaa-aaaaa-qaaaq-cai", method, "update")
    return ic.classify(ic.Rejection(code, message, error_code), call)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (asyncio.CancelledError(), EXIT_INTERRUPTED),
        (errors.ConfigError("f.toml", "limits.x", "a number"), EXIT_USAGE),
        (errors.UsageError("bad"), EXIT_USAGE),
        (errors.IntegrityError("digest"), EXIT_INTEGRITY),
        (errors.BudgetExceeded("cycles"), EXIT_BUDGET),
        (errors.RetriesExhausted("gave up", attempts=3, elapsed=1.0), EXIT_TEMPORARY),
        (errors.CheckpointError("db"), EXIT_FAILED),
        (ic.TransientError("503"), EXIT_TEMPORARY),
        (_reject(5, "x", "IC0512", "icrp_write"), EXIT_ACCESS_DENIED),
        (_reject(4, "only controllers", None, "icrp_read"), EXIT_ACCESS_DENIED),
        (_reject(3, "no method", "IC0302", "icrp_info"), EXIT_NOT_ICRP),
        (_reject(3, "no method", "IC0302", "greet"), EXIT_FAILED),
        (ic.CertificateError("bad signature"), EXIT_INTEGRITY),
        (ic.StaleCertificate("certificate 400 s old", skew_seconds=-400.0), EXIT_TEMPORARY),
        (_reject(5, "trapped", "IC0502", "icrp_write"), EXIT_FAILED),
        (RuntimeError("bug"), EXIT_FAILED),
    ],
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_job_errors_keep_the_message_and_say_what_to_do() -> None:
    not_icrp = job_error(_reject(3, "no method", "IC0302", "icrp_begin_export"))
    assert isinstance(not_icrp, errors.NotIcrpError)
    assert "does not implement the replication protocol" in str(not_icrp)
    denied = job_error(_reject(5, "not a controller", "IC0512", "icrp_write"))
    assert isinstance(denied, errors.AccessDeniedError)
    assert "controller" in str(denied)


def test_certificates_fail_jobs_by_their_reason_not_their_wording() -> None:
    not_hosted = ic.CertificateError("no subnet in the certificate hosts it", reason="not_hosted")
    wrong_id = job_level_error(not_hosted)
    assert type(wrong_id) is errors.JobFailed
    assert "check the canister id" in str(wrong_id)
    forged = job_level_error(ic.CertificateError("hosts canister x?", reason="signature"))
    assert forged.exit_code == EXIT_INTEGRITY
    stale = job_level_error(ic.StaleCertificate("certificate 400 s old", skew_seconds=-400.0))
    assert stale.exit_code != EXIT_INTEGRITY


def test_config_error_message_names_source_key_and_expectation() -> None:
    error = errors.ConfigError("/etc/replicator.toml", "limits.in_flight", "an integer", "x")
    assert str(error) == "/etc/replicator.toml: limits.in_flight: expected an integer, got 'x'"
    assert (error.source, error.key, error.expected) == (
        "/etc/replicator.toml",
        "limits.in_flight",
        "an integer",
    )
