"""The state machine of the image kinds: backup, restore, archive export/import, verify.

Pure: :func:`advance` maps a state and an event to the new state and the
effects to perform (:mod:`replicator.machine` explains the contract).  The
machine keeps the image being copied and the target's import id in the
job's ``detail`` (:class:`ImageDetail`).

Phases of the copy kinds::

    pending ─Start→ preparing ─SourceReady→ preparing ─TargetReady→ copying
      copying ─ChunksDone→ committing ─Committed→ verifying ─Verified→ done
    (TargetReady(committed=True) skips straight to verifying; a Committed
    that names the target's digest, as a backup canister's commit answer
    does, is checked at once: no VerifyTarget)

A verify job (``verify=True``) reads every chunk of its source and checks it
against the image digest (``CheckChunks``); with a target it then also
checks that the target holds the same image::

    pending ─Start→ preparing ─SourceReady→ verifying ─ChunksDone→ [─Verified→] done

A backup (``advance_overlapped``) takes the same phases with four round
trips fewer: it names the peer grants while the source prepares, records
them before the target's preparation makes them, and revokes them and ends
the source's export while the target commits; a backup canister's commit
answer names the digest it now serves, so nothing is left to ask.

Any unfinished phase accepts ``Fail`` (→ failed) and ``Cancel`` (→ cancelled).
``Start`` resumes a failed, cancelled or interrupted job from ``preparing``
with everything it knew (image, import id): the performer then reconciles
with what the source and target report.  Two rules keep images from being
mixed (the seed thread's fear): if the source now offers another snapshot,
or the target another import, the progress made so far is discarded
(``DiscardProgress``) and the copy starts over; and a snapshot id that comes
back with a different size or digest fails the job as an integrity error.
``done`` is final.

Peer grants (the direct path, :mod:`replicator.flows.image.grants`): the
copy may need canisters to trust each other.  The performer names the
grants it must make before making them (``GrantsNeeded``); the machine
records them in ``detail`` and asks for the copy again, so a run that dies
leaves the record behind and a later run revokes them.  Once the copy no
longer needs them (every chunk acknowledged, or the target already held the
image) the machine asks to release them (``ReleaseGrants``) before it goes
on; ``GrantsReleased`` forgets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from replicator.errors import EXIT_INTEGRITY, InvalidTransition
from replicator.integrity import ImageInfo
from replicator.job import CanisterRef, Endpoint, JobState, Phase
from replicator.machine import Cancel, Fail, Start, Step, expect, failed, started, stopped

# ------------------------------------------------------------------- detail


@dataclass(frozen=True, order=True)
class Grant:
    """``canister`` trusts ``peer`` (ids on ``network``) because a job needs it."""

    network: str
    canister: str
    peer: str

    def to_payload(self) -> list[str]:
        return [self.network, self.canister, self.peer]

    @classmethod
    def from_payload(cls, data: Sequence[Any]) -> Grant:
        network, canister, peer = data
        return cls(str(network), str(canister), str(peer))

    def __str__(self) -> str:
        return f"{self.canister}@{self.network} trusts {self.peer}"


# Where a job's detail records its grants; any kind that grants peers keeps them
# there, so a job holding a grant is found without knowing its kind.
GRANTS_KEY = "grants"


def grants_of(detail: Mapping[str, Any]) -> tuple[Grant, ...]:
    """The grants a job's ``detail`` records."""
    return tuple(Grant.from_payload(g) for g in detail.get(GRANTS_KEY) or ())


@dataclass(frozen=True)
class ImageDetail:
    """What the machine remembers between runs (``JobState.detail``)."""

    image: ImageInfo | None = None
    import_id: int | None = None
    grants: tuple[Grant, ...] = ()  # peer grants made (or about to be made) for the copy

    @classmethod
    def of(cls, state: JobState) -> ImageDetail:
        return cls.from_payload(state.detail)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ImageDetail:
        image = data.get("image")
        import_id = data.get("import_id")
        return cls(
            image=None if image is None else ImageInfo.from_payload(image),
            import_id=None if import_id is None else int(import_id),
            grants=grants_of(data),
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "image": None if self.image is None else self.image.to_payload(),
            "import_id": self.import_id,
            # read by `replicator jobs` without knowing this kind (see checkpoints)
            "chunks_total": None if self.image is None else self.image.chunk_count,
            GRANTS_KEY: [g.to_payload() for g in self.grants],
        }


def image_of(state: JobState) -> ImageInfo | None:
    """The image ``state``'s job is copying or checking, once known."""
    return ImageDetail.of(state).image


def _with(state: JobState, detail: ImageDetail, **changes: Any) -> JobState:
    return replace(state, detail=detail.to_payload(), **changes)


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class SourceReady:
    """The source offers ``image`` (export ready, or archive header verified).

    ``grants``: the peer grants a direct copy will need (``PrepareSource.name_grants``).
    """

    image: ImageInfo
    grants: tuple[Grant, ...] = ()


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
    """The target made the image current (canister) or the file is complete.

    ``released``: the grants revoked while committing (``Commit.grants``).
    ``digest``: of the image the target now holds, when its commit answer
    names it (a backup canister's): then no ``VerifyTarget`` is needed.
    ``source_released``: the source's export was ended meanwhile
    (``Commit.release``).
    """

    released: tuple[Grant, ...] = ()
    digest: bytes | None = None
    source_released: bool = False


@dataclass(frozen=True)
class Verified:
    """The digest of the image the target now holds.

    ``source_released``: the source's export was ended meanwhile
    (``VerifyTarget.release``).
    """

    digest: bytes
    source_released: bool = False


@dataclass(frozen=True)
class GrantsNeeded:
    """The copy needs peer grants not recorded yet: record them, then copy again."""

    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class GrantsReleased:
    """These grants were revoked (or are still needed by other jobs): forget them."""

    grants: tuple[Grant, ...]


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
    name_grants: bool = False  # also name the grants a direct copy needs (SourceReady.grants)


@dataclass(frozen=True)
class PrepareTarget:
    """Open the import of ``image`` on ``target`` → ``TargetReady``.

    Canister: ``icrp_begin_import`` (continuing ``resume_import_id`` when the
    target still has it).  Archive: create the file or resume a partly written one.
    ``grants``: recorded grants to make meanwhile (best effort: the copy makes
    any that are missing, or takes the relay).
    """

    target: Endpoint
    image: ImageInfo
    resume_import_id: int | None
    grants: tuple[Grant, ...] = ()


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
    """Pump every chunk not yet acknowledged from source to target → ``ChunksDone``.

    ``grants``: the peer grants recorded for this copy, which it may make;
    one it needs but that is not recorded → ``GrantsNeeded`` (nothing copied).
    """

    source: Endpoint
    target: Endpoint
    image: ImageInfo
    import_id: int | None
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class ReleaseGrants:
    """Revoke ``grants`` unless another unfinished job holds them too → ``GrantsReleased``."""

    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class CheckChunks:
    """Read every chunk of ``source`` and check its digest → ``ChunksDone``."""

    source: Endpoint
    image: ImageInfo


@dataclass(frozen=True)
class Commit:
    """Canister: ``icrp_commit_import``; archive: write the trailer and fsync → ``Committed``.

    ``grants``: revoke these meanwhile (as ``ReleaseGrants`` would), one
    round trip instead of two; ``Committed.released`` names them.
    ``release``: end this source's export meanwhile (as ``ReleaseSource``
    would, best effort): every chunk is acknowledged, so the copy no longer
    needs it (a commit that fails sends the job back to a fresh image).
    """

    target: Endpoint
    image: ImageInfo
    import_id: int | None
    grants: tuple[Grant, ...] = ()
    release: CanisterRef | None = None


@dataclass(frozen=True)
class VerifyTarget:
    """Ask ``target`` for the digest of the image it holds → ``Verified``.

    ``release``: end this source's export meanwhile (as ``ReleaseSource``
    would, best effort): the check compares the target's digest with the
    one the job recorded, so it no longer needs the source's snapshot.
    """

    target: Endpoint
    image: ImageInfo
    import_id: int | None
    release: CanisterRef | None = None
    source_released: bool = False  # ended already, while committing


@dataclass(frozen=True)
class ReleaseSource:
    """``icrp_end_export``: the source may drop the snapshot (best effort)."""

    source: CanisterRef
    image: ImageInfo


# --------------------------------------------------------------- transitions


def advance_copy(state: JobState, event: object) -> Step:
    """The machine of restore, archive export/import (and a standby's seed)."""
    return advance(state, event, verify=False)


def advance_overlapped(state: JobState, event: object) -> Step:
    """The machine of backup: the copy's, with round trips overlapped.

    The peer grants are named while the source prepares
    (``PrepareSource.name_grants``), recorded, and made while the target
    prepares (``PrepareTarget.grants``); they are revoked and the source's
    export is ended while the target commits (``Commit.grants``,
    ``Commit.release``), and the commit's answer names the target's digest
    (a target that does not: ``VerifyTarget``): the same calls, fewer round
    trips. Every
    effect still comes after the state that asks for it is saved, so a run
    killed meanwhile leaves grants recorded (the next run revokes them) or an
    ended export (the next run freezes a fresh image, which a backup
    canister that already stores it takes without a copy).
    """
    return advance(state, event, verify=False, overlap=True)


def advance_verify(state: JobState, event: object) -> Step:
    """The machine of verify: check chunks, then (with a target) the target's digest."""
    return advance(state, event, verify=True)


def advance(state: JobState, event: object, *, verify: bool, overlap: bool = False) -> Step:
    """``state`` + ``event`` → new state + effects.

    Raises :class:`~replicator.errors.InvalidTransition` for an event the
    current phase does not accept.
    """
    match event:
        case Start():
            detail = ImageDetail.of(state)
            prepare = PrepareSource(state.job.source, resume=detail.image, name_grants=overlap)
            return Step(started(state, Phase.PREPARING), (prepare,))
        case SourceReady():
            return _source_ready(state, event, verify)
        case TargetReady():
            return _target_ready(state, event)
        case ChunksDone():
            return _chunks_done(state, event, verify, overlap)
        case Committed():
            return _committed(state, event, overlap)
        case Verified():
            return _verified(state, event)
        case GrantsNeeded():
            return _grants_needed(state, event)
        case GrantsReleased():
            return _grants_released(state, event)
        case Fail() | Cancel():
            return stopped(state, event)
    raise TypeError(f"not an event of the image kinds: {event!r}")


def _source_ready(state: JobState, event: SourceReady, verify: bool) -> Step:
    expect(state, event, {Phase.PREPARING})
    detail = ImageDetail.of(state)
    old, new = detail.image, event.image
    if old is not None and old.snapshot_id == new.snapshot_id and _conflicts(old, new):
        return failed(
            state,
            f"snapshot {new.snapshot_id} of {state.job.source} changed: it was "
            f"{_describe(old)} and is now {_describe(new)}; the source is not exporting a "
            "consistent image. Start a new job once the source is fixed",
            EXIT_INTEGRITY,
        )
    effects: list[object] = []
    import_id = detail.import_id
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
    nxt = _with(state, replace(detail, image=new, import_id=import_id))
    if verify:
        return Step(
            replace(nxt, phase=Phase.VERIFYING), (*effects, CheckChunks(state.job.source, new))
        )
    target = _target(state)
    if event.grants:  # recorded here, so that the target's preparation may make them
        grants = tuple(sorted({*detail.grants, *event.grants}))
        nxt = _with(state, replace(detail, image=new, import_id=import_id, grants=grants))
        prepare = PrepareTarget(target, new, resume_import_id=import_id, grants=grants)
        return Step(nxt, (*effects, prepare))
    return Step(nxt, (*effects, PrepareTarget(target, new, resume_import_id=import_id)))


def _target_ready(state: JobState, event: TargetReady) -> Step:
    expect(state, event, {Phase.PREPARING})
    detail = ImageDetail.of(state)
    image = _image(state, detail, event)
    effects: list[object] = []
    if detail.import_id is not None and event.import_id != detail.import_id:
        effects.append(
            DiscardProgress(f"the target started import {event.import_id}, not {detail.import_id}")
        )
    target = _target(state)
    detail = replace(detail, image=image, import_id=event.import_id)
    if event.committed:
        nxt = _with(state, detail, phase=Phase.VERIFYING)
        verify = VerifyTarget(target, image, event.import_id)
        return Step(nxt, (*effects, *_release_grants(detail), verify))
    nxt = _with(state, detail, phase=Phase.COPYING)
    copy = CopyChunks(state.job.source, target, image, event.import_id, detail.grants)
    return Step(nxt, (*effects, copy))


def _grants_needed(state: JobState, event: GrantsNeeded) -> Step:
    expect(state, event, {Phase.COPYING})
    detail = ImageDetail.of(state)
    image = _image(state, detail, event)
    detail = replace(detail, grants=tuple(sorted({*detail.grants, *event.grants})))
    copy = CopyChunks(state.job.source, _target(state), image, detail.import_id, detail.grants)
    return Step(_with(state, detail), (copy,))


def _grants_released(state: JobState, event: GrantsReleased) -> Step:
    expect(state, event, {Phase.COPYING, Phase.COMMITTING, Phase.VERIFYING})
    detail = ImageDetail.of(state)
    kept = tuple(g for g in detail.grants if g not in event.grants)
    return Step(_with(state, replace(detail, grants=kept)))


def _release_grants(detail: ImageDetail) -> tuple[object, ...]:
    return (ReleaseGrants(detail.grants),) if detail.grants else ()


def _chunks_done(state: JobState, event: ChunksDone, verify: bool, overlap: bool) -> Step:
    expect(state, event, {Phase.VERIFYING} if verify else {Phase.COPYING})
    detail = ImageDetail.of(state)
    image = _image(state, detail, event)
    if image.digest is not None and image.digest != event.image_digest:
        what = "read back" if verify else "copied"
        return failed(
            state,
            f"the chunks {what} from {state.job.source} hash to {event.image_digest.hex()}, "
            f"but snapshot {image.snapshot_id} has digest {image.digest.hex()}; nothing was "
            "committed. Re-run the job: it re-reads the image",
            EXIT_INTEGRITY,
        )
    image = replace(image, digest=event.image_digest)
    nxt = _with(state, replace(detail, image=image))
    if verify and state.job.target is None:
        return Step(replace(nxt, phase=Phase.DONE), _release(state, image))
    if verify:
        return Step(nxt, (VerifyTarget(_target(state), image, detail.import_id),))
    if overlap:
        source = state.job.source
        release = source if isinstance(source, CanisterRef) else None
        commit = Commit(
            _target(state), image, detail.import_id, grants=detail.grants, release=release
        )
        return Step(replace(nxt, phase=Phase.COMMITTING), (commit,))
    commit = Commit(_target(state), image, detail.import_id)
    return Step(replace(nxt, phase=Phase.COMMITTING), (*_release_grants(detail), commit))


def _committed(state: JobState, event: Committed, overlap: bool) -> Step:
    expect(state, event, {Phase.COMMITTING})
    detail = ImageDetail.of(state)
    image = _image(state, detail, event)
    if event.released:
        detail = replace(detail, grants=tuple(g for g in detail.grants if g not in event.released))
        state = _with(state, detail)
    verifying = replace(state, phase=Phase.VERIFYING)
    if event.digest is not None:
        # The commit's certified answer named what the target now serves.
        return _verified(verifying, Verified(event.digest, event.source_released))
    source = state.job.source
    release = None
    if overlap and isinstance(source, CanisterRef) and not event.source_released:
        release = source
    verify = VerifyTarget(
        _target(state),
        image,
        detail.import_id,
        release=release,
        source_released=event.source_released,
    )
    return Step(verifying, (verify,))


def _verified(state: JobState, event: Verified) -> Step:
    expect(state, event, {Phase.VERIFYING})
    image = _image(state, ImageDetail.of(state), event)
    if event.digest != image.digest:
        expected = "unknown" if image.digest is None else image.digest.hex()
        return failed(
            state,
            f"{state.job.target} holds an image with digest {event.digest.hex()}, expected "
            f"{expected} (snapshot {image.snapshot_id} of {state.job.source}); re-run the job "
            "to copy it again",
            EXIT_INTEGRITY,
        )
    done = replace(state, phase=Phase.DONE)
    return Step(done, () if event.source_released else _release(state, image))


def _release(state: JobState, image: ImageInfo) -> tuple[object, ...]:
    source = state.job.source
    if isinstance(source, CanisterRef):
        return (ReleaseSource(source, image),)
    return ()


def _conflicts(old: ImageInfo, new: ImageInfo) -> bool:
    if not old.same_geometry(new):
        return True
    return old.digest is not None and new.digest is not None and old.digest != new.digest


def _describe(image: ImageInfo) -> str:
    digest = "digest unknown" if image.digest is None else f"digest {image.digest.hex()[:16]}…"
    return f"{image.size} bytes in chunks of {image.chunk_size}, {digest}"


def _image(state: JobState, detail: ImageDetail, event: object) -> ImageInfo:
    if detail.image is None:
        raise InvalidTransition(f"job {state.job.id}: {type(event).__name__} before any image")
    return detail.image


def _target(state: JobState) -> Endpoint:
    if state.job.target is None:
        raise InvalidTransition(f"job {state.job.id} has no target")
    return state.job.target
