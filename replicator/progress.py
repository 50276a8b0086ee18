"""What a running job tells its audience: the :class:`Progress` protocol.

The engine reports to one ``Progress`` object; the command line renders it
as progress bars or JSON lines, the service logs it, tests record it.  The
protocol is I/O-free: the engine calls these methods synchronously from the
event loop, so an implementation must return quickly and never block (queue
work for a renderer if drawing is slow).

Order of calls for one job run::

    started → phase* → total → (advanced | retried | phase | note)* → finished

- ``started(job, resumed)``: the job begins (``resumed``: it continues a
  checkpoint of an earlier run with the same fingerprint).
- ``phase(job, phase)``: the job entered a phase (``preparing``, ``copying``,
  ``committing``, ``verifying``, and finally ``done``/``failed``/``cancelled``).
- ``total(job, total_bytes, done_bytes)``: the image size is known; the
  bytes already acknowledged (a resumed job) count as done.
- ``advanced(job, nbytes)``: ``nbytes`` more bytes were acknowledged by the
  target (checkpointed).
- ``retried(job, reason, wait_seconds)``: a transient error will be retried
  (``reason`` is one of :data:`replicator.retry.REASONS`).
- ``note(job, text)``: something worth a line of output ("creating a backup
  canister", "the target already holds this image").
- ``finished(job, outcome)``: the run ended (done, failed or cancelled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from replicator.job import Job, JobOutcome


class Progress(Protocol):
    """The events a job run reports (see the module docstring)."""

    def started(self, job: Job, resumed: bool) -> None: ...

    def phase(self, job: Job, phase: str) -> None: ...

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None: ...

    def advanced(self, job: Job, nbytes: int) -> None: ...

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None: ...

    def note(self, job: Job, text: str) -> None: ...

    def finished(self, job: Job, outcome: JobOutcome) -> None: ...


class NullProgress:
    """Reports nowhere (the default)."""

    def started(self, job: Job, resumed: bool) -> None:
        del job, resumed

    def phase(self, job: Job, phase: str) -> None:
        del job, phase

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        del job, total_bytes, done_bytes

    def advanced(self, job: Job, nbytes: int) -> None:
        del job, nbytes

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        del job, reason, wait_seconds

    def note(self, job: Job, text: str) -> None:
        del job, text

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        del job, outcome


@dataclass(frozen=True)
class ProgressEvent:
    """One recorded call: its name and arguments after the job."""

    name: str
    job_id: str
    args: tuple[object, ...] = ()


@dataclass
class RecordingProgress:
    """Keeps every event in order (tests; a JSON renderer can replay them)."""

    events: list[ProgressEvent] = field(default_factory=list)

    def started(self, job: Job, resumed: bool) -> None:
        self._add("started", job, resumed)

    def phase(self, job: Job, phase: str) -> None:
        self._add("phase", job, phase)

    def total(self, job: Job, total_bytes: int, done_bytes: int) -> None:
        self._add("total", job, total_bytes, done_bytes)

    def advanced(self, job: Job, nbytes: int) -> None:
        self._add("advanced", job, nbytes)

    def retried(self, job: Job, reason: str, wait_seconds: float) -> None:
        self._add("retried", job, reason, wait_seconds)

    def note(self, job: Job, text: str) -> None:
        self._add("note", job, text)

    def finished(self, job: Job, outcome: JobOutcome) -> None:
        self._add("finished", job, outcome)

    def named(self, name: str) -> list[ProgressEvent]:
        return [e for e in self.events if e.name == name]

    def phases(self) -> Sequence[str]:
        return [p for e in self.named("phase") for p in e.args if isinstance(p, str)]

    def bytes_advanced(self) -> int:
        return sum(int(e.args[0]) for e in self.named("advanced") if isinstance(e.args[0], int))

    def _add(self, name: str, job: Job, *args: object) -> None:
        self.events.append(ProgressEvent(name, job.id, args))
