"""The archive file format: round trips, torn-write resume, and refusing damaged files."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicator.archive import (
    CHUNK,
    MAGIC,
    TRAILER,
    ArchiveError,
    ArchiveHeader,
    ArchiveReader,
    ArchiveWriter,
    _encode_frame,
)
from replicator.errors import IntegrityError, UsageError
from replicator.integrity import chunk_digest, image_digest_of

CHUNK_SIZE = 1000


def _image(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _header(data: bytes, chunk_size: int = CHUNK_SIZE, snapshot_id: int = 4) -> ArchiveHeader:
    return ArchiveHeader(
        source="sppxf-mqaaa-fake2-aaaaa-cai",  # a made-up id
        snapshot_id=snapshot_id,
        size=len(data),
        chunk_size=chunk_size,
        digest=image_digest_of(data, chunk_size),
    )


def _chunk(data: bytes, index: int, chunk_size: int = CHUNK_SIZE) -> bytes:
    return data[index * chunk_size : (index + 1) * chunk_size]


def _write(
    path: Path, data: bytes, chunk_size: int = CHUNK_SIZE, order: list[int] | None = None
) -> ArchiveHeader:
    header = _header(data, chunk_size)
    with ArchiveWriter.open(path, header) as writer:
        for index in order if order is not None else range(header.chunk_count):
            writer.write_chunk(index, _chunk(data, index, chunk_size))
        writer.finish()
    return header


def _read_all(path: Path) -> bytes:
    with ArchiveReader(path) as reader:
        reader.verify()
        chunks = sorted(reader.chunks(), key=lambda c: c.index)
        assert [c.index for c in chunks] == list(range(reader.header.chunk_count))
        assert all(reader.read_chunk(c.index) == c for c in chunks)
        return b"".join(c.data for c in chunks)


# --------------------------------------------------------------- round trip


def test_round_trip_with_chunks_in_any_order(tmp_path: Path) -> None:
    data = _image(4321)
    path = tmp_path / "app.icra"
    header = _write(path, data, order=[3, 0, 4, 2, 1])
    assert path.read_bytes().startswith(MAGIC)
    with ArchiveReader(path) as reader:
        assert reader.verify() == header.digest
        assert reader.header.same_image(header)
        assert reader.header.created_at.endswith("Z")
        assert reader.header.tool.startswith("ic-replicator ")
    assert _read_all(path) == data


def test_empty_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.icra"
    header = _write(path, b"")
    assert header.chunk_count == 0
    assert _read_all(path) == b""


def test_read_chunk_needs_a_verified_file(tmp_path: Path) -> None:
    path = tmp_path / "a.icra"
    _write(path, _image(2500))
    with ArchiveReader(path) as reader:
        with pytest.raises(ValueError, match="verify"):
            reader.read_chunk(0)
        reader.verify()
        with pytest.raises(IndexError):
            reader.read_chunk(3)


# ------------------------------------------------------------------ writing


def test_writing_a_chunk_again_is_a_no_op_but_other_bytes_are_refused(tmp_path: Path) -> None:
    data = _image(2500)
    with ArchiveWriter.open(tmp_path / "a.icra", _header(data)) as writer:
        first = writer.write_chunk(1, _chunk(data, 1))
        assert writer.write_chunk(1, _chunk(data, 1)) == first
        with pytest.raises(IntegrityError, match="chunk 1"):
            writer.write_chunk(1, bytes(CHUNK_SIZE))
        with pytest.raises(ValueError, match="chunk 2 has 500 bytes"):
            writer.write_chunk(2, _chunk(data, 1))
        with pytest.raises(ValueError, match="2 chunks are not written"):
            writer.finish()
        assert writer.missing() == [0, 2]


def test_finish_refuses_chunks_that_do_not_hash_to_the_header_digest(tmp_path: Path) -> None:
    data = _image(2500)
    header = _header(_image(2500, seed=2))  # the digest of another image
    path = tmp_path / "a.icra"
    with ArchiveWriter.open(path, header) as writer:
        for i in range(3):
            writer.write_chunk(i, _chunk(data, i))
        with pytest.raises(IntegrityError, match="left unfinished"):
            writer.finish()
    with pytest.raises(ArchiveError, match="incomplete"), ArchiveReader(path) as reader:
        reader.verify()


# ------------------------------------------------------------------- resume


def _partial(path: Path, data: bytes, indices: list[int]) -> ArchiveHeader:
    header = _header(data)
    with ArchiveWriter.open(path, header) as writer:
        for i in indices:
            writer.write_chunk(i, _chunk(data, i))
        writer.sync()
    return header


def test_resume_truncates_a_torn_last_frame_and_continues(tmp_path: Path) -> None:
    data = _image(5500)
    path = tmp_path / "a.icra"
    header = _partial(path, data, [0, 2, 1])
    intact = path.stat().st_size
    torn = _encode_frame(CHUNK, {"index": 3, "offset": 3000, "sha256": b"", "data": b"x" * 900})
    with open(path, "ab") as f:
        f.write(torn[: len(torn) // 2])  # the crash happened in the middle of this write
    with ArchiveWriter.open(path, header) as writer:
        assert path.stat().st_size == intact
        assert sorted(writer.written) == [0, 1, 2]
        assert writer.written[2] == chunk_digest(_chunk(data, 2))
        assert writer.missing() == [3, 4, 5]
        for i in writer.missing():
            writer.write_chunk(i, _chunk(data, i))
        assert writer.finish() == header.digest
    assert _read_all(path) == data


def test_resume_drops_everything_from_a_damaged_frame_on(tmp_path: Path) -> None:
    data = _image(5500)
    path = tmp_path / "a.icra"
    header = _partial(path, data, [0, 1, 2, 3])
    raw = bytearray(path.read_bytes())
    # damage chunk 1's frame, the second chunk frame in the file
    offset = _frame_offsets(path)[2]  # preamble/header, chunk 0, chunk 1 ...
    raw[offset + 50] ^= 0xFF
    path.write_bytes(bytes(raw))
    with ArchiveWriter.open(path, header) as writer:
        assert sorted(writer.written) == [0]
        assert path.stat().st_size == offset
        for i in writer.missing():
            writer.write_chunk(i, _chunk(data, i))
        writer.finish()
    assert _read_all(path) == data


def test_resume_of_a_file_torn_while_it_was_created(tmp_path: Path) -> None:
    data = _image(1500)
    path = tmp_path / "a.icra"
    _partial(path, data, [])
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 3)  # inside the header frame
    with ArchiveWriter.open(path, _header(data)) as writer:
        assert writer.written == {}
    path.write_bytes(MAGIC[:4])  # inside the preamble
    _write(path, data)
    assert _read_all(path) == data


def test_resume_of_a_complete_file_changes_nothing(tmp_path: Path) -> None:
    data = _image(2500)
    path = tmp_path / "a.icra"
    header = _write(path, data)
    before = path.read_bytes()
    with ArchiveWriter.open(path, header) as writer:
        assert writer.complete
        assert writer.finish() == header.digest
        with pytest.raises(ValueError, match="complete"):
            writer.write_chunk(0, _chunk(data, 0))
    assert path.read_bytes() == before


def test_a_file_of_another_image_or_not_an_archive_is_never_touched(tmp_path: Path) -> None:
    data = _image(2500)
    path = tmp_path / "a.icra"
    _partial(path, data, [0])
    before = path.read_bytes()
    other = _header(data, snapshot_id=5)
    with pytest.raises(UsageError, match="holds snapshot 4"):
        ArchiveWriter.open(path, other)
    assert path.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes\n")
    with pytest.raises(ArchiveError, match="not a replicator archive"):
        ArchiveWriter.open(notes, other)
    assert notes.read_text() == "my precious notes\n"


# ------------------------------------------------------------------ reading


def _frame_offsets(path: Path) -> list[int]:
    """Offsets of every frame (header first)."""
    raw = path.read_bytes()
    offsets, offset = [], 10
    while offset < len(raw):
        offsets.append(offset)
        length = int.from_bytes(raw[offset + 1 : offset + 5], "big")
        offset += 5 + length + 4
    return offsets


def test_a_corrupted_chunk_is_refused_and_named(tmp_path: Path) -> None:
    data = _image(3500)
    path = tmp_path / "a.icra"
    _write(path, data)
    raw = bytearray(path.read_bytes())
    chunk2 = _frame_offsets(path)[3]
    raw[chunk2 + 500] ^= 0x01  # a bit flip inside chunk 2's data
    path.write_bytes(bytes(raw))
    with (
        ArchiveReader(path) as reader,
        pytest.raises(ArchiveError, match=r"chunk 2: frame checksum"),
    ):
        reader.verify()


def test_a_chunk_whose_data_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    # A frame with a valid CRC but a wrong SHA-256: the CRC is not what protects the data.
    data = _image(2500)
    header = _header(data)
    path = tmp_path / "a.icra"
    with ArchiveWriter.open(path, header) as writer:
        writer.write_chunk(0, _chunk(data, 0))
    forged = {"index": 1, "offset": 1000, "sha256": chunk_digest(b"x"), "data": _chunk(data, 1)}
    with open(path, "ab") as f:
        f.write(_encode_frame(CHUNK, forged))
    with ArchiveReader(path) as reader, pytest.raises(ArchiveError, match="chunk 1: its data"):
        reader.verify()


def test_chunks_that_do_not_hash_to_the_header_digest_are_refused(tmp_path: Path) -> None:
    data = _image(2500)
    lie = _header(_image(2500, seed=9))
    path = tmp_path / "a.icra"
    with ArchiveWriter.open(path, lie) as writer:
        for i in range(3):
            writer.write_chunk(i, _chunk(data, i))
    trailer = {"chunks": 3, "size": 2500, "digest": lie.digest}
    with open(path, "ab") as f:
        f.write(_encode_frame(TRAILER, trailer))
    with ArchiveReader(path) as reader, pytest.raises(ArchiveError, match="image digest"):
        reader.verify()


def test_missing_duplicate_and_trailing_data_are_refused(tmp_path: Path) -> None:
    data = _image(2500)
    header = _header(data)
    path = tmp_path / "a.icra"
    with ArchiveWriter.open(path, header) as writer:
        writer.write_chunk(0, _chunk(data, 0))
    trailer = _encode_frame(TRAILER, {"chunks": 3, "size": 2500, "digest": header.digest})
    with open(path, "ab") as f:
        f.write(trailer)
    with ArchiveReader(path) as reader, pytest.raises(ArchiveError, match="2 chunks are missing"):
        reader.verify()

    _write(path, data)
    with open(path, "ab") as f:
        f.write(b"junk")
    with ArchiveReader(path) as reader, pytest.raises(ArchiveError, match="after the trailer"):
        reader.verify()

    dup = tmp_path / "dup.icra"
    with ArchiveWriter.open(dup, header) as writer:
        writer.write_chunk(0, _chunk(data, 0))
    frame = _encode_frame(
        CHUNK,
        {"index": 0, "offset": 0, "sha256": chunk_digest(_chunk(data, 0)), "data": _chunk(data, 0)},
    )
    with open(dup, "ab") as f:
        f.write(frame)
    with ArchiveReader(dup) as reader, pytest.raises(ArchiveError, match="chunk 0 appears twice"):
        reader.verify()


def test_other_versions_and_other_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.icra"
    _write(path, _image(100))
    raw = bytearray(path.read_bytes())
    raw[9] = 2
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="format version 2"):
        ArchiveReader(path)
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ArchiveError, match="not a replicator archive"):
        ArchiveReader(path)
    with pytest.raises(UsageError, match="cannot open archive"):
        ArchiveReader(tmp_path / "missing.icra")


_archives = st.tuples(
    st.integers(min_value=0, max_value=3000), st.integers(min_value=1, max_value=700)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_archives, st.data())
def test_any_single_byte_change_or_truncation_is_detected(
    tmp_path: Path, geometry: tuple[int, int], data: st.DataObject
) -> None:
    size, chunk_size = geometry
    image = _image(size, seed=size)
    path = tmp_path / f"h-{os.getpid()}.icra"
    path.unlink(missing_ok=True)
    _write(path, image, chunk_size=chunk_size)
    raw = path.read_bytes()
    assert _read_all(path) == image
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="cut")
        damaged = raw[:cut]
    else:
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="at")
        flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
        damaged = raw[:at] + bytes([raw[at] ^ flip]) + raw[at + 1 :]
    path.write_bytes(damaged)
    with pytest.raises(ArchiveError), ArchiveReader(path) as reader:
        reader.verify()


def test_archives_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """An archive holds a canister's private state: 0600, even under umask 000."""
    old = os.umask(0)
    try:
        fresh = tmp_path / "fresh.icra"
        _write(fresh, _image(2500))
        loose = tmp_path / "loose.icra"
        loose.write_bytes(b"")
        loose.chmod(0o666)  # an empty file left behind is created anew, privately
        _write(loose, _image(2500))
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
