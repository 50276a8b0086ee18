"""Jobs as plain data: what to do (:class:`Job`), how far it got (:class:`JobState`),
and how a run ended (:class:`JobOutcome`).

Nothing here performs I/O or knows a job kind by name.  A kind is a string
(``"backup"``, ``"standby"``, …) that a flow registers in
:mod:`replicator.kinds`; the kind's state machine keeps what it needs between
runs in :attr:`JobState.detail`, a map of plain (msgpack-able) values that
only that machine interprets.

Phases: every kind starts ``pending`` and ends ``done``, ``failed`` or
``cancelled`` (:data:`TERMINAL_PHASES`); what lies between is the kind's own
vocabulary (:class:`Phase` lists the ones the copy kinds use, which most
kinds share).  ``failed`` and ``cancelled`` jobs can be resumed by a later
run; ``done`` is final.

Job ids come from the caller (:func:`new_job_id` makes a readable random
one), so that the state machines stay deterministic.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from replicator import codec
from replicator.errors import EXIT_OK, UsageError
from replicator.integrity import chunk_count

Scalar = str | int | float | bool | None


class Phase(enum.StrEnum):
    """The phases most kinds share; a kind may add its own (plain strings)."""

    PENDING = "pending"
    PREPARING = "preparing"
    COPYING = "copying"
    COMMITTING = "committing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run ends in one of these; ``failed`` and ``cancelled`` jobs can be resumed by a later run.
TERMINAL_PHASES: frozenset[str] = frozenset({Phase.DONE, Phase.FAILED, Phase.CANCELLED})


def resumable(phase: str) -> bool:
    """Can a later run continue a job in ``phase``?"""
    return phase != Phase.DONE


# ----------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class CanisterRef:
    """A canister on a named network (ids are resolved by the config, not here)."""

    canister_id: str
    network: str

    def __str__(self) -> str:
        return f"{self.canister_id}@{self.network}"


@dataclass(frozen=True)
class ArchiveRef:
    """An archive file."""

    path: str

    def __str__(self) -> str:
        return f"file:{self.path}"


Endpoint = CanisterRef | ArchiveRef


def endpoint_payload(endpoint: Endpoint) -> dict[str, str]:
    if isinstance(endpoint, CanisterRef):
        return {"canister": endpoint.canister_id, "network": endpoint.network}
    return {"archive": endpoint.path}


def endpoint_from_payload(data: Mapping[str, Any]) -> Endpoint:
    if "archive" in data:
        return ArchiveRef(str(data["archive"]))
    return CanisterRef(str(data["canister"]), str(data["network"]))


# ----------------------------------------------------------------------- job


def new_job_id(kind: str) -> str:
    """A fresh, readable job id such as ``backup-3f9a1c2b7d4e``."""
    return f"{kind}-{secrets.token_hex(6)}"


@dataclass(frozen=True, eq=True)
class Job:
    """What to do.  Immutable; ``options`` are plain values (msgpack-able).

    Which endpoints a kind accepts is the kind's business
    (:meth:`replicator.kinds.Kind.check`); here only what holds for every job.
    """

    kind: str
    source: Endpoint
    target: Endpoint | None
    options: Mapping[str, Scalar] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a job needs an id (replicator.job.new_job_id makes one)")
        if self.source == self.target:
            raise UsageError(f"source and target are the same ({self.source}): pick another")

    @property
    def fingerprint(self) -> str:
        """Identifies "the same command": kind, source and target (not options).

        Re-running a command finds its unfinished job by this value.
        """
        target = None if self.target is None else endpoint_payload(self.target)
        key = codec.pack([self.kind, endpoint_payload(self.source), target])
        return hashlib.sha256(key).hexdigest()[:32]

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "source": endpoint_payload(self.source),
            "target": None if self.target is None else endpoint_payload(self.target),
            "options": dict(self.options),
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Job:
        target = data["target"]
        return cls(
            kind=str(data["kind"]),
            source=endpoint_from_payload(data["source"]),
            target=None if target is None else endpoint_from_payload(target),
            options=dict(data["options"]),
            id=str(data["id"]),
        )


@dataclass(frozen=True)
class JobRequest:
    """What a caller asks for; the kind's planner makes it a :class:`Job`.

    Options whose value is ``None`` mean "not given".
    """

    kind: str
    source: Endpoint
    target: Endpoint | None = None
    options: Mapping[str, Scalar] = field(default_factory=dict)
    id: str = ""  # the job id to use (empty: a new one)

    def job(self, target: Endpoint | None = None, **options: Scalar) -> Job:
        """The job this request asks for, with ``target`` and ``options`` filled in."""
        merged = {**self.options, **options}
        return Job(
            self.kind,
            self.source,
            target if target is not None else self.target,
            options={k: v for k, v in merged.items() if v is not None},
            id=self.id or new_job_id(self.kind),
        )


# --------------------------------------------------------------------- state


@dataclass(frozen=True)
class JobState:
    """How far a job got: what a checkpoint records (besides chunk acknowledgements).

    ``detail`` belongs to the kind's state machine (plain values only).
    """

    job: Job
    phase: str = Phase.PENDING
    error: str | None = None
    exit_code: int | None = None
    starts: int = 0  # how often the job was started or resumed
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.phase == Phase.DONE

    def to_payload(self) -> dict[str, Any]:
        return {
            "job": self.job.to_payload(),
            "phase": str(self.phase),
            "error": self.error,
            "exit_code": self.exit_code,
            "starts": self.starts,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> JobState:
        detail = dict(data["detail"]) if "detail" in data else _schema_1_detail(data)
        return cls(
            job=Job.from_payload(data["job"]),
            phase=str(data["phase"]),
            error=data["error"],
            exit_code=data["exit_code"],
            starts=int(data["starts"]),
            detail=detail,
        )


def _schema_1_detail(data: Mapping[str, Any]) -> dict[str, Any]:
    """Checkpoint schema 1 kept the image kinds' fields at the top of the state."""
    image = data.get("image")
    total = None if image is None else chunk_count(int(image["size"]), int(image["chunk_size"]))
    return {"image": image, "import_id": data.get("import_id"), "chunks_total": total}


def new_state(job: Job) -> JobState:
    """The state of a job that has not started."""
    return JobState(job=job)


# ------------------------------------------------------------------ outcome


@dataclass(frozen=True)
class JobOutcome:
    """How a run of a job ended.

    The counters and digests are what most kinds report; ``details`` holds a
    kind's own summary fields (plain values, merged into :meth:`to_json`).
    """

    job: Job
    state: JobState
    resumed: bool = False
    route: str | None = None  # "direct" / "relay" / "snapshot" when bytes were moved
    bytes_copied: int = 0  # in this run, acknowledged by the target
    chunks_copied: int = 0
    chunks_skipped: int = 0  # acknowledged before this run (resume) or already held
    elapsed: float = 0.0
    digest: bytes | None = None  # of what the job copied or checked
    source_digest: bytes | None = None
    target_digest: bytes | None = None
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        return self.state.phase

    @property
    def ok(self) -> bool:
        return self.state.phase == Phase.DONE

    @property
    def exit_code(self) -> int:
        if self.ok:
            return EXIT_OK
        return self.state.exit_code if self.state.exit_code is not None else 1

    @property
    def error(self) -> str | None:
        return self.state.error

    def to_json(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "job_id": self.job.id,
            "kind": self.job.kind,
            "source": str(self.job.source),
            "target": None if self.job.target is None else str(self.job.target),
            "phase": str(self.phase),
            "exit_code": self.exit_code,
            "error": self.error,
            "resumed": self.resumed,
            "route": self.route,
        }
        fields.update(self.details)
        fields.update(
            {
                "digest": _hex(self.digest),
                "source_digest": _hex(self.source_digest),
                "target_digest": _hex(self.target_digest),
                "bytes_copied": self.bytes_copied,
                "chunks_copied": self.chunks_copied,
                "chunks_skipped": self.chunks_skipped,
                "elapsed_seconds": round(self.elapsed, 3),
                "notes": list(self.notes),
            }
        )
        return fields


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
