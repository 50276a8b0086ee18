"""Job-level errors and the documented exit codes of ``replicator``.

Errors from calls are classified once, at the agent boundary
(:mod:`canister_iface.errors`).  This module is one level up: what a *job*
reports when it stops, and which exit code the command line returns for it.
Every message says what is wrong and what to do next.

Exit codes (stable; scripts and systemd units may depend on them):

====  ==========================  ==============================================================
code  constant                    meaning
====  ==========================  ==============================================================
0     ``EXIT_OK``                 the job finished (or there was nothing to do)
1     ``EXIT_FAILED``             the job failed permanently for a reason not listed below
2     ``EXIT_USAGE``              bad command line or configuration file; nothing was changed
3     ``EXIT_NOT_ICRP``           a canister does not implement the replication protocol (ICRP)
4     ``EXIT_ACCESS_DENIED``      the identity may not read or write a canister: use a controller
5     ``EXIT_INTEGRITY``          a digest did not match (canister image or archive file)
6     ``EXIT_BUDGET``             the next call would exceed the configured cycles budget
75    ``EXIT_TEMPORARY``          transient errors persisted beyond the retry limits; re-run
                                  the same command later to resume from the last checkpoint
130   ``EXIT_INTERRUPTED``        interrupted (Ctrl-C / SIGINT); stopped at a checkpoint,
                                  re-run the same command to resume
====  ==========================  ==============================================================

75 is ``EX_TEMPFAIL`` from ``sysexits.h`` (systemd and cron wrappers treat it
as "try again later"); 130 is the shell's 128 + SIGINT.

Hierarchy::

    ReplicatorError                 .exit_code, .message
    ├── UsageError         (2)      a job or command that cannot be run as asked
    │   └── ConfigError    (2)      .source, .key, .expected
    ├── JobFailed          (1)      permanent failure of a call or a step
    │   ├── NotIcrpError   (3)
    │   └── AccessDeniedError (4)
    ├── IntegrityError     (5)      digest mismatch, corrupt or foreign archive
    ├── BudgetExceeded     (6)
    ├── RetriesExhausted   (75)     .attempts, .elapsed
    ├── InvalidTransition  (1)      an event the job's current phase does not accept
    └── CheckpointError    (1)      the checkpoint store cannot be used

This module imports nothing that does I/O, so the pure job state machines can
use it.  How a call error (``canister_iface``) or any other exception becomes
one of these is decided once, at the boundary: :mod:`replicator.classify`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_ICRP = 3
EXIT_ACCESS_DENIED = 4
EXIT_INTEGRITY = 5
EXIT_BUDGET = 6
EXIT_TEMPORARY = 75
EXIT_INTERRUPTED = 130


class ReplicatorError(Exception):
    """Base of every error a job or the command line reports to the user."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReplicatorError):
    """The job or command cannot be run as asked; nothing was changed."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file, ``canister_ids.json`` or flag that cannot be used.

    ``source`` is the file (or ``"command line"``), ``key`` the dotted key,
    ``expected`` what a valid value looks like.
    """

    def __init__(self, source: str, key: str, expected: str, got: object = None) -> None:
        where = f"{source}: {key}" if key else source
        said = f", got {got!r}" if got is not None else ""
        super().__init__(f"{where}: expected {expected}{said}")
        self.source = source
        self.key = key
        self.expected = expected


class JobFailed(ReplicatorError):
    """The job cannot continue; the message says why and what to change."""


class NotIcrpError(JobFailed):
    """A canister has no replication-protocol (``icrp_*``) methods."""

    exit_code = EXIT_NOT_ICRP


class AccessDeniedError(JobFailed):
    """The identity is not allowed to read or write a canister."""

    exit_code = EXIT_ACCESS_DENIED


class IntegrityError(ReplicatorError):
    """Data whose digest does not match what it claims to be; never used as-is."""

    exit_code = EXIT_INTEGRITY


class BudgetExceeded(ReplicatorError):
    """The next call would spend more cycles than the configured budget allows."""

    exit_code = EXIT_BUDGET


class RetriesExhausted(ReplicatorError):
    """Transient errors persisted through every allowed retry.

    The job's progress is checkpointed: re-running the same command resumes.
    """

    exit_code = EXIT_TEMPORARY

    def __init__(self, message: str, *, attempts: int, elapsed: float) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed = elapsed


class InvalidTransition(ReplicatorError):
    """An event that the job's current phase does not accept (a bug in the caller)."""


class CheckpointError(ReplicatorError):
    """The checkpoint store is unusable (newer schema, corrupt, missing job)."""
