"""Jobs: plain data, an explicit state machine without I/O, and chunk bookkeeping.

A :class:`Job` says *what* to do (kind, source, target, options, id).  A
:class:`JobState` says *how far* it got.  :func:`advance` is the whole state
machine: a pure function from a state and an :class:`Event` (what the runner
observed) to a :class:`Step` — the new state and the :class:`Effect` s the
runner must perform next.  The runner (the pump) persists every new state
*before* performing its effects, performs them, and feeds the outcome back as
the next event.  Nothing here sleeps, calls or writes.

Phases of the copy kinds (backup, restore, archive export, archive import)::

    pending ─Start→ preparing ─SourceReady→ preparing ─TargetReady→ copying
      copying ─ChunksDone→ committing ─Committed→ verifying ─Verified→ done
    (TargetReady(committed=True) skips straight to verifying)

A verify job reads every chunk of its source and checks it against the image
digest (``CheckChunks``); with a target it then also checks that the target
holds the same image::

    pending ─Start→ preparing ─SourceReady→ verifying ─ChunksDone→ [─Verified→] done

Any unfinished phase accepts ``Fail`` (→ failed) and ``Cancel`` (→ cancelled).
``Start`` resumes a failed, cancelled or interrupted job from ``preparing``
with everything it knew (image, import id): the runner then reconciles with
what the source and target report.  Two rules keep images from being mixed
(the seed thread's fear): if the source now offers another snapshot, or the
target another import, the progress made so far is discarded
(``DiscardProgress``) and the copy starts over; and a snapshot id that comes
back with a different size or digest fails the job as an integrity error.
``done`` is final.

:class:`ChunkBook` tracks which chunks are planned, in flight or acknowledged
(with their digests).  A chunk counts as done only once the target
acknowledged it; the pump then records it with ``store.ack_chunks``.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from replicator import codec
from replicator.errors import (
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    IntegrityError,
    InvalidTransition,
    UsageError,
    exit_code_for,
)
from replicator.integrity import DIGEST_SIZE, chunk_count, chunk_span, image_digest

Scalar = str | int | float | bool | None


class JobKind(enum.StrEnum):
    BACKUP = "backup"  # canister → backup canister
    RESTORE = "restore"  # backup canister → canister
    ARCHIVE_EXPORT = "archive-export"  # canister → archive file
    ARCHIVE_IMPORT = "archive-import"  # archive file → canister
    VERIFY = "verify"  # check an image chunk by chunk (and a target against it)


class Phase(enum.StrEnum):
    PENDING = "pending"
    PREPARING = "preparing"
    COPYING = "copying"
    COMMITTING = "committing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_PHASES = frozenset({Phase.PREPARING, Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING})
RESUMABLE_PHASES = frozenset({Phase.PENDING, Phase.FAILED, Phase.CANCELLED} | ACTIVE_PHASES)
# A run ends in one of these; ``failed`` and ``cancelled`` jobs can be resumed by a later run.
TERMINAL_PHASES = frozenset({Phase.DONE, Phase.FAILED, Phase.CANCELLED})


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

# kind → (source types, target types); ``None`` in targets: no target needed.
_SHAPES: dict[JobKind, tuple[tuple[type, ...], tuple[type | None, ...]]] = {
    JobKind.BACKUP: ((CanisterRef,), (CanisterRef,)),
    JobKind.RESTORE: ((CanisterRef,), (CanisterRef,)),
    JobKind.ARCHIVE_EXPORT: ((CanisterRef,), (ArchiveRef,)),
    JobKind.ARCHIVE_IMPORT: ((ArchiveRef,), (CanisterRef,)),
    JobKind.VERIFY: ((CanisterRef, ArchiveRef), (CanisterRef, ArchiveRef, None)),
}


def new_job_id(kind: JobKind) -> str:
    """A fresh, readable job id such as ``backup-3f9a1c2b7d4e``."""
    return f"{kind.value}-{secrets.token_hex(6)}"


@dataclass(frozen=True, eq=True)
class Job:
    """What to do.  Immutable; ``options`` are plain values (msgpack-able)."""

    kind: JobKind
    source: Endpoint
    target: Endpoint | None
    options: Mapping[str, Scalar] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", new_job_id(self.kind))
        sources, targets = _SHAPES[self.kind]
        if not isinstance(self.source, sources):
            raise UsageError(f"a {self.kind} job cannot read from {self.source}: {_want(sources)}")
        if not _fits(self.target, targets):
            raise UsageError(f"a {self.kind} job cannot write to {self.target}: {_want(targets)}")
        if self.source == self.target:
            raise UsageError(f"source and target are the same ({self.source}): pick another")

    @property
    def fingerprint(self) -> str:
        """Identifies "the same command": kind, source and target (not options).

        Re-running a command finds its unfinished job by this value.
        """
        key = codec.pack([self.kind.value, _endpoint_payload(self.source), _target_payload(self)])
        return hashlib.sha256(key).hexdigest()[:32]

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "source": _endpoint_payload(self.source),
            "target": _target_payload(self),
            "options": dict(self.options),
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Job:
        target = data["target"]
        return cls(
            kind=JobKind(data["kind"]),
            source=_endpoint_from_payload(data["source"]),
            target=None if target is None else _endpoint_from_payload(target),
            options=dict(data["options"]),
            id=str(data["id"]),
        )


def _fits(endpoint: Endpoint | None, allowed: tuple[type | None, ...]) -> bool:
    if endpoint is None:
        return None in allowed
    return isinstance(endpoint, tuple(t for t in allowed if t is not None))


def _want(allowed: tuple[type | None, ...]) -> str:
    names = [
        "a canister" if t is CanisterRef else "an archive file" if t else "nothing" for t in allowed
    ]
    return "needs " + " or ".join(names)


def _endpoint_payload(endpoint: Endpoint) -> dict[str, str]:
    if isinstance(endpoint, CanisterRef):
        return {"canister": endpoint.canister_id, "network": endpoint.network}
    return {"archive": endpoint.path}


def _target_payload(job: Job) -> dict[str, str] | None:
    return None if job.target is None else _endpoint_payload(job.target)


def _endpoint_from_payload(data: Mapping[str, Any]) -> Endpoint:
    if "archive" in data:
        return ArchiveRef(str(data["archive"]))
    return CanisterRef(str(data["canister"]), str(data["network"]))


# --------------------------------------------------------------------- state


@dataclass(frozen=True)
class ImageInfo:
    """One consistent image of a source: what ``icrp_begin_export`` returns."""

    snapshot_id: int
    size: int
    chunk_size: int
    digest: bytes | None = None  # known once the export is ready

    def __post_init__(self) -> None:
        chunk_count(self.size, self.chunk_size)  # validates the geometry
        if self.digest is not None and len(self.digest) != DIGEST_SIZE:
            raise ValueError(f"an image digest is {DIGEST_SIZE} bytes, got {len(self.digest)}")

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def same_geometry(self, other: ImageInfo) -> bool:
        return (self.size, self.chunk_size) == (other.size, other.chunk_size)

    def to_payload(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "digest": self.digest,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ImageInfo:
        digest = data["digest"]
        return cls(
            snapshot_id=int(data["snapshot_id"]),
            size=int(data["size"]),
            chunk_size=int(data["chunk_size"]),
            digest=None if digest is None else bytes(digest),
        )


@dataclass(frozen=True)
class JobState:
    """How far a job got; everything a checkpoint records except chunk acks."""

    job: Job
    phase: Phase = Phase.PENDING
    image: ImageInfo | None = None
    import_id: int | None = None
    error: str | None = None
    exit_code: int | None = None
    starts: int = 0  # how often the job was started or resumed

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    def to_payload(self) -> dict[str, Any]:
        return {
            "job": self.job.to_payload(),
            "phase": self.phase.value,
            "image": None if self.image is None else self.image.to_payload(),
            "import_id": self.import_id,
            "error": self.error,
            "exit_code": self.exit_code,
            "starts": self.starts,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> JobState:
        image = data["image"]
        return cls(
            job=Job.from_payload(data["job"]),
            phase=Phase(data["phase"]),
            image=None if image is None else ImageInfo.from_payload(image),
            import_id=data["import_id"],
            error=data["error"],
            exit_code=data["exit_code"],
            starts=int(data["starts"]),
        )


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """Start a pending job, or resume a failed, cancelled or interrupted one."""


@dataclass(frozen=True)
class SourceReady:
    """The source offers ``image`` (export ready, or archive header verified)."""

    image: ImageInfo


@dataclass(frozen=True)
class TargetReady:
    """The target accepts the image: ``import_id`` (``None`` for archive files).

    ``committed``: the target already holds this image as its current one
    (e.g. a job interrupted after its commit).
    """

    import_id: int | None
    committed: bool = False


@dataclass(frozen=True)
class ChunksDone:
    """Every chunk was acknowledged (copy) or checked (verify)."""

    image_digest: bytes


@dataclass(frozen=True)
class Committed:
    """The target made the image current (canister) or the file is complete."""


@dataclass(frozen=True)
class Verified:
    """The digest of the image the target now holds."""

    digest: bytes


@dataclass(frozen=True)
class Fail:
    """The job cannot continue; ``exit_code`` is from :mod:`replicator.errors`."""

    error: str
    exit_code: int

    @classmethod
    def of(cls, exc: BaseException) -> Fail:
        return cls(str(exc) or type(exc).__name__, exit_code_for(exc))


@dataclass(frozen=True)
class Cancel:
    """Stop at the current checkpoint (Ctrl-C, shutdown); resumable."""

    reason: str = "interrupted"


Event = Start | SourceReady | TargetReady | ChunksDone | Committed | Verified | Fail | Cancel


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class PrepareSource:
    """Get a ready image from ``source`` → ``SourceReady``.

    Canister: reuse ``resume`` if it is still the current export, else
    ``icrp_begin_export`` until ready.  Archive: verify the whole file and
    report its header (an archive with a bad digest never reaches a target).
    """

    source: Endpoint
    resume: ImageInfo | None


@dataclass(frozen=True)
class PrepareTarget:
    """Open the import of ``image`` on ``target`` → ``TargetReady``.

    Canister: ``icrp_begin_import`` (continuing ``resume_import_id`` when the
    target still has it).  Archive: create the file or resume a partly written one.
    """

    target: Endpoint
    image: ImageInfo
    resume_import_id: int | None


@dataclass(frozen=True)
class DiscardProgress:
    """Forget every chunk acknowledged so far (store and book): it belongs to another image."""

    reason: str


@dataclass(frozen=True)
class AbortImport:
    """Tell ``target`` to drop an import that will not be finished (best effort)."""

    target: CanisterRef
    import_id: int


@dataclass(frozen=True)
class CopyChunks:
    """Pump every chunk not yet acknowledged from source to target → ``ChunksDone``."""

    source: Endpoint
    target: Endpoint
    image: ImageInfo
    import_id: int | None


@dataclass(frozen=True)
class CheckChunks:
    """Read every chunk of ``source`` and check its digest → ``ChunksDone``."""

    source: Endpoint
    image: ImageInfo


@dataclass(frozen=True)
class Commit:
    """Canister: ``icrp_commit_import``; archive: write the trailer and fsync → ``Committed``."""

    target: Endpoint
    import_id: int | None


@dataclass(frozen=True)
class VerifyTarget:
    """Ask ``target`` for the digest of the image it holds → ``Verified``."""

    target: Endpoint
    image: ImageInfo


@dataclass(frozen=True)
class ReleaseSource:
    """``icrp_end_export``: the source may drop the snapshot (best effort)."""

    source: CanisterRef
    snapshot_id: int


Effect = (
    PrepareSource
    | PrepareTarget
    | DiscardProgress
    | AbortImport
    | CopyChunks
    | CheckChunks
    | Commit
    | VerifyTarget
    | ReleaseSource
)


@dataclass(frozen=True)
class Step:
    """The outcome of one transition."""

    state: JobState
    effects: tuple[Effect, ...] = ()


# --------------------------------------------------------------- transitions


def new_state(job: Job) -> JobState:
    """The state of a job that has not started."""
    return JobState(job=job)


def advance(state: JobState, event: Event) -> Step:
    """The one transition function: ``state`` + ``event`` → new state + effects.

    Raises :class:`~replicator.errors.InvalidTransition` for an event the
    current phase does not accept.
    """
    match event:
        case Start():
            return _start(state)
        case SourceReady():
            return _source_ready(state, event)
        case TargetReady():
            return _target_ready(state, event)
        case ChunksDone():
            return _chunks_done(state, event)
        case Committed():
            return _committed(state)
        case Verified():
            return _verified(state, event)
        case Fail() | Cancel():
            return _stop(state, event)
    raise TypeError(f"not a job event: {event!r}")


def _start(state: JobState) -> Step:
    _expect(state, Start(), RESUMABLE_PHASES)
    nxt = replace(state, phase=Phase.PREPARING, error=None, exit_code=None, starts=state.starts + 1)
    return Step(nxt, (PrepareSource(state.job.source, resume=state.image),))


def _source_ready(state: JobState, event: SourceReady) -> Step:
    _expect(state, event, {Phase.PREPARING})
    old, new = state.image, event.image
    if old is not None and old.snapshot_id == new.snapshot_id and _conflicts(old, new):
        return _integrity_failure(
            state,
            f"snapshot {new.snapshot_id} of {state.job.source} changed: it was "
            f"{_describe(old)} and is now {_describe(new)}; the source is not exporting a "
            "consistent image. Start a new job once the source is fixed",
        )
    effects: list[Effect] = []
    import_id = state.import_id
    if old is not None and old.snapshot_id != new.snapshot_id:
        effects.append(
            DiscardProgress(
                f"the source now exports snapshot {new.snapshot_id}, not {old.snapshot_id}"
            )
        )
        if import_id is not None and isinstance(state.job.target, CanisterRef):
            effects.append(AbortImport(state.job.target, import_id))
        import_id = None
    elif old is not None and old.digest is not None:
        new = replace(new, digest=old.digest) if new.digest is None else new
    nxt = replace(state, image=new, import_id=import_id)
    if state.job.kind is JobKind.VERIFY:
        return Step(
            replace(nxt, phase=Phase.VERIFYING), (*effects, CheckChunks(state.job.source, new))
        )
    target = _target(state)
    return Step(nxt, (*effects, PrepareTarget(target, new, resume_import_id=import_id)))


def _target_ready(state: JobState, event: TargetReady) -> Step:
    _expect(state, event, {Phase.PREPARING})
    image = _image(state, event)
    effects: list[Effect] = []
    if state.import_id is not None and event.import_id != state.import_id:
        effects.append(
            DiscardProgress(f"the target started import {event.import_id}, not {state.import_id}")
        )
    nxt = replace(state, import_id=event.import_id)
    target = _target(state)
    if event.committed:
        return Step(replace(nxt, phase=Phase.VERIFYING), (*effects, VerifyTarget(target, image)))
    copy = CopyChunks(state.job.source, target, image, event.import_id)
    return Step(replace(nxt, phase=Phase.COPYING), (*effects, copy))


def _chunks_done(state: JobState, event: ChunksDone) -> Step:
    verify = state.job.kind is JobKind.VERIFY
    _expect(state, event, {Phase.VERIFYING} if verify else {Phase.COPYING})
    image = _image(state, event)
    if image.digest is not None and image.digest != event.image_digest:
        what = "read back" if verify else "copied"
        return _integrity_failure(
            state,
            f"the chunks {what} from {state.job.source} hash to {event.image_digest.hex()}, "
            f"but snapshot {image.snapshot_id} has digest {image.digest.hex()}; nothing was "
            "committed. Re-run the job: it re-reads the image",
        )
    image = replace(image, digest=event.image_digest)
    nxt = replace(state, image=image)
    if verify and state.job.target is None:
        return Step(replace(nxt, phase=Phase.DONE), _release(state, image))
    if verify:
        return Step(nxt, (VerifyTarget(_target(state), image),))
    return Step(replace(nxt, phase=Phase.COMMITTING), (Commit(_target(state), state.import_id),))


def _committed(state: JobState) -> Step:
    _expect(state, Committed(), {Phase.COMMITTING})
    image = _image(state, Committed())
    return Step(replace(state, phase=Phase.VERIFYING), (VerifyTarget(_target(state), image),))


def _verified(state: JobState, event: Verified) -> Step:
    _expect(state, event, {Phase.VERIFYING})
    image = _image(state, event)
    if event.digest != image.digest:
        expected = "unknown" if image.digest is None else image.digest.hex()
        return _integrity_failure(
            state,
            f"{state.job.target} holds an image with digest {event.digest.hex()}, expected "
            f"{expected} (snapshot {image.snapshot_id} of {state.job.source}); re-run the job "
            "to copy it again",
        )
    return Step(replace(state, phase=Phase.DONE), _release(state, image))


def _stop(state: JobState, event: Fail | Cancel) -> Step:
    _expect(state, event, RESUMABLE_PHASES - {Phase.FAILED, Phase.CANCELLED})
    if isinstance(event, Cancel):
        return Step(
            replace(state, phase=Phase.CANCELLED, error=event.reason, exit_code=EXIT_INTERRUPTED)
        )
    return Step(replace(state, phase=Phase.FAILED, error=event.error, exit_code=event.exit_code))


def _integrity_failure(state: JobState, message: str) -> Step:
    return Step(replace(state, phase=Phase.FAILED, error=message, exit_code=EXIT_INTEGRITY))


def _release(state: JobState, image: ImageInfo) -> tuple[Effect, ...]:
    source = state.job.source
    if isinstance(source, CanisterRef):
        return (ReleaseSource(source, image.snapshot_id),)
    return ()


def _conflicts(old: ImageInfo, new: ImageInfo) -> bool:
    if not old.same_geometry(new):
        return True
    return old.digest is not None and new.digest is not None and old.digest != new.digest


def _describe(image: ImageInfo) -> str:
    digest = "digest unknown" if image.digest is None else f"digest {image.digest.hex()[:16]}…"
    return f"{image.size} bytes in chunks of {image.chunk_size}, {digest}"


def _expect(state: JobState, event: Event, phases: Iterable[Phase]) -> None:
    allowed = frozenset(phases)
    if state.phase in allowed:
        return
    if state.phase is Phase.DONE:
        raise InvalidTransition(
            f"job {state.job.id} is done; start a new job to copy the source again"
        )
    raise InvalidTransition(
        f"job {state.job.id} is {state.phase}: cannot accept {type(event).__name__} "
        f"(only in {', '.join(sorted(allowed))})"
    )


def _image(state: JobState, event: Event) -> ImageInfo:
    if state.image is None:
        raise InvalidTransition(f"job {state.job.id}: {type(event).__name__} before any image")
    return state.image


def _target(state: JobState) -> Endpoint:
    if state.job.target is None:
        raise InvalidTransition(f"job {state.job.id} has no target")
    return state.job.target


# --------------------------------------------------------------- chunk book

_PLANNED, _IN_FLIGHT, _ACKED = 0, 1, 2


class ChunkBook:
    """Which chunks of one image are planned, in flight or acknowledged.

    ``take`` hands out contiguous runs of planned chunks, lowest index first;
    ``ack`` records a chunk the target acknowledged, with its digest;
    ``release`` returns chunks whose transfer failed to the plan.  Acking a
    chunk twice with the same digest is harmless (resumes, idempotent
    writes); with different digests it is an :class:`IntegrityError`.
    Mutable and I/O-free; one instance per running job, one asyncio thread.
    """

    def __init__(self, count: int, acked: Mapping[int, bytes] | None = None) -> None:
        if count < 0:
            raise ValueError(f"chunk count must not be negative, got {count}")
        self.count = count
        self._state = bytearray(count)
        self._digests: dict[int, bytes] = {}
        self._in_flight = 0
        for index, digest in (acked or {}).items():
            self.ack(index, digest)
        self._heap = [i for i in range(count) if self._state[i] == _PLANNED]  # sorted: a heap

    @classmethod
    def for_image(cls, image: ImageInfo, acked: Mapping[int, bytes] | None = None) -> ChunkBook:
        return cls(image.chunk_count, acked)

    # -- queries

    @property
    def acked_count(self) -> int:
        return len(self._digests)

    @property
    def in_flight_count(self) -> int:
        return self._in_flight

    @property
    def planned_count(self) -> int:
        return self.count - self.acked_count - self._in_flight

    @property
    def done(self) -> bool:
        return self.acked_count == self.count

    def is_acked(self, index: int) -> bool:
        return self._state[self._checked(index)] == _ACKED

    def is_in_flight(self, index: int) -> bool:
        return self._state[self._checked(index)] == _IN_FLIGHT

    def digest(self, index: int) -> bytes | None:
        return self._digests.get(self._checked(index))

    def acked(self) -> dict[int, bytes]:
        """Acknowledged chunks and their digests."""
        return dict(self._digests)

    def acked_bytes(self, size: int, chunk_size: int) -> int:
        """Bytes covered by acknowledged chunks of an image of ``size`` bytes."""
        return sum(chunk_span(i, size, chunk_size)[1] for i in self._digests)

    def image_digest(self) -> bytes:
        """The image digest over every chunk's digest; all must be acknowledged."""
        if not self.done:
            raise ValueError(f"{self.count - self.acked_count} chunks are not acknowledged yet")
        return image_digest(self._digests[i] for i in range(self.count))

    # -- changes

    def take(self, max_chunks: int) -> range:
        """Mark up to ``max_chunks`` planned chunks in flight: a contiguous run, lowest first.

        An empty range when nothing is planned.
        """
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        start = last = -1
        heap = self._heap
        while heap and (start < 0 or last - start + 1 < max_chunks):
            index = heap[0]
            if self._state[index] != _PLANNED:
                heapq.heappop(heap)  # acked while planned: a stale entry
                continue
            if start >= 0 and index != last + 1:
                break
            heapq.heappop(heap)
            self._state[index] = _IN_FLIGHT
            self._in_flight += 1
            start = index if start < 0 else start
            last = index
        return range(start, last + 1) if start >= 0 else range(0)

    def ack(self, index: int, digest: bytes) -> None:
        """The target acknowledged chunk ``index`` with ``digest``."""
        self._checked(index)
        if len(digest) != DIGEST_SIZE:
            raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes, got {len(digest)}")
        known = self._digests.get(index)
        if known is not None:
            if known != digest:
                raise IntegrityError(
                    f"chunk {index} was acknowledged with digest {known.hex()} and now with "
                    f"{digest.hex()}: the same chunk of one image changed; restart the job"
                )
            return
        if self._state[index] == _IN_FLIGHT:
            self._in_flight -= 1
        self._state[index] = _ACKED
        self._digests[index] = bytes(digest)

    def release(self, indices: Iterable[int]) -> None:
        """Chunks whose transfer failed go back to the plan (taken again first)."""
        for index in indices:
            if self._state[self._checked(index)] != _IN_FLIGHT:
                continue  # acknowledged meanwhile (or never taken): nothing to return
            self._state[index] = _PLANNED
            self._in_flight -= 1
            heapq.heappush(self._heap, index)

    def _checked(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is outside an image of {self.count} chunks")
        return index
