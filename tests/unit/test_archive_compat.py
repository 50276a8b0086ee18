"""Archive files written by an earlier release stay readable, byte for byte the same format.

``tests/vectors/archive-v1.icra`` was written by ic-replicator 0.1.0 (format
version 1, msgpack frames through ``replicator.codec``): a 2,500-byte image
(``random.Random(2026).randbytes(2500)``) of snapshot 7 in 1,000-byte chunks,
written in the order 2, 0, 1, as a concurrent export does.  The file is never
regenerated: a reader that cannot read it breaks every archive users already keep.
"""

from __future__ import annotations

import random
from pathlib import Path

from replicator.archive import ArchiveHeader, ArchiveReader, ArchiveWriter
from replicator.integrity import image_digest_of

VECTOR = Path(__file__).parents[1] / "vectors" / "archive-v1.icra"
IMAGE = random.Random(2026).randbytes(2500)
CHUNK_SIZE = 1000
DIGEST = bytes.fromhex("89453c9c6467cf489653be4069b6808671c3af69fb17816d991298d8efdb7dad")
HEADER = ArchiveHeader(
    source="bkyz2-fmaaa-aaaaa-qaaaq-cai",
    snapshot_id=7,
    size=len(IMAGE),
    chunk_size=CHUNK_SIZE,
    digest=DIGEST,
    created_at="2026-01-02T03:04:05Z",
    tool="ic-replicator 0.1.0",
)


def test_a_version_1_archive_still_reads_and_verifies() -> None:
    assert image_digest_of(IMAGE, CHUNK_SIZE) == DIGEST
    with ArchiveReader(VECTOR) as reader:
        assert reader.verify() == DIGEST
        assert reader.header == HEADER
        chunks = sorted(reader.chunks(), key=lambda c: c.index)
        assert b"".join(c.data for c in chunks) == IMAGE
        assert reader.read_chunk(2).data == IMAGE[2000:]


def test_the_writer_still_writes_version_1_byte_for_byte(tmp_path: Path) -> None:
    # Changing the encoding (codec options, frame layout) would fail here first:
    # a new format needs a new version number and a reader for both.
    path = tmp_path / "again.icra"
    with ArchiveWriter.open(path, HEADER) as writer:
        for index in (2, 0, 1):
            writer.write_chunk(index, IMAGE[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE])
        assert writer.finish() == DIGEST
    assert path.read_bytes() == VECTOR.read_bytes()
