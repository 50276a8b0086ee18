"""The two ends of an image job: where the image comes from and where it goes.

The machine's effects name endpoints (a canister or an archive file); the
performer turns each endpoint into a *side* that performs them:

- :class:`SourceSide`: freeze or open the image (``PrepareSource``),
  publish its chunk digests, read it (relay), push it (direct), release it;
- :class:`TargetSide`: open or resume an import (``PrepareTarget``), report
  what it already holds (resume), write (relay), commit, report the digest
  it holds (``VerifyTarget``), abort.

Canisters speak ICRP (:mod:`replicator.flows.image.canister`); archive files
use :mod:`replicator.archive` (:mod:`replicator.flows.image.archive`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from canister_iface.principal import Principal
from replicator.integrity import ImageInfo
from replicator.job import Endpoint
from replicator.pump import ChunkReader, ChunkWriter


@dataclass(frozen=True)
class Prepared:
    """What a target said to ``prepare``: the import to use, or that it holds the image."""

    import_id: int | None
    committed: bool = False


class SourceSide(Protocol):
    @property
    def endpoint(self) -> Endpoint: ...

    async def prepare(self, resume: ImageInfo | None) -> ImageInfo:
        """A ready image; ``resume`` is reused if the source still offers it."""
        ...

    async def chunk_digests(self, image: ImageInfo) -> list[bytes]:
        """Every chunk digest of ``image`` (checked against its image digest)."""
        ...

    @property
    def origin(self) -> Principal:
        """The principal an import names as the image's source."""
        ...

    @property
    def journal_seq(self) -> int:
        """The journal head the prepared image corresponds to (0 when unknown)."""
        ...

    def reader(self, image: ImageInfo, *, charged: bool = True) -> ChunkReader:
        """``charged``: whether its reads count against the bytes-per-second budget
        (``False`` when the writer counts the same bytes)."""
        ...

    async def release(self, image: ImageInfo) -> None:
        """The job no longer needs the image (best effort)."""
        ...

    async def close(self) -> None: ...


class TargetSide(Protocol):
    @property
    def endpoint(self) -> Endpoint: ...

    async def prepare(
        self,
        image: ImageInfo,
        origin: Principal,
        journal_seq: int,
        digests: Sequence[bytes],
        resume_import_id: int | None,
    ) -> Prepared:
        """Open the import of ``image`` (or resume one, or find the image already held)."""
        ...

    async def held(self, image: ImageInfo, import_id: int | None) -> set[int]:
        """Chunks of ``image`` the target already holds, verified (resume)."""
        ...

    def writer(self, image: ImageInfo, import_id: int | None) -> ChunkWriter: ...

    async def commit(self, image: ImageInfo, import_id: int | None) -> bytes | None:
        """Make the image current; returns the digest of what the target now holds
        when its commit answer says it (a backup canister's certified answer), else
        None and ``digest`` is asked."""
        ...

    async def digest(self, image: ImageInfo, import_id: int | None) -> bytes:
        """The digest of the image the target now holds (``VerifyTarget``)."""
        ...

    async def abort(self, import_id: int) -> None:
        """Drop an import that will not be finished (best effort)."""
        ...

    async def discard(self) -> None:
        """Forget partial work for another image (archive: remove the partial file)."""
        ...

    async def close(self) -> None: ...
