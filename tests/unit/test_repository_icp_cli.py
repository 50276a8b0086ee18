"""icp-cli's snapshot directory: metadata.json as serde writes it, import and export."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import pytest

from canister_iface.management_types import Global, GlobalTimer, SnapshotMetadata
from replicator.errors import IntegrityError, UsageError
from replicator.repository import DEFAULT_CHUNK_SIZE, ChunkDamaged, LocalBackend, Repository
from replicator.repository.icp_cli_dir import (
    export_icp_cli_dir,
    import_icp_cli_dir,
    metadata_json,
    parse_metadata,
)
from replicator.repository.store import FileType, Handle

CANISTER = "kipf3-nqaaa-fake3-aaaaa-cai"
CHUNK_A = b"first wasm chunk"
CHUNK_B = b"second wasm chunk"
HASH_A = hashlib.sha256(CHUNK_A).digest()
HASH_B = hashlib.sha256(CHUNK_B).digest()


def _serde_bytes(data: bytes, indent: str) -> str:
    # serde_json's pretty printer: one array element per line.
    if not data:
        return "[]"
    inner = ",\n".join(f"{indent}  {b}" for b in data)
    return f"[\n{inner}\n{indent}]"


# What `icp canister snapshot download` writes for ReadCanisterSnapshotMetadataResult
# (serde_json::to_string_pretty, no trailing newline), written out by hand from
# the struct's serde attributes.
METADATA_JSON = f"""{{
  "source": {{
    "taken_from_canister": null
  }},
  "taken_at_timestamp": 1750000000123456789,
  "wasm_module_size": 3000,
  "globals": [
    {{
      "i32": -7
    }},
    {{
      "i64": 9007199254740993
    }},
    {{
      "f64": 1.5
    }},
    {{
      "v128": [
        3,
        0,
        0,
        2147483648
      ]
    }}
  ],
  "wasm_memory_size": 5000000,
  "stable_memory_size": 0,
  "wasm_chunk_store": [
    {{
      "hash": {_serde_bytes(HASH_A, "      ")}
    }},
    {{
      "hash": {_serde_bytes(HASH_B, "      ")}
    }}
  ],
  "canister_version": 17,
  "certified_data": {_serde_bytes(b"ok", "  ")},
  "global_timer": {{
    "active": 1750000100000000000
  }},
  "on_low_wasm_memory_hook_status": "condition_not_satisfied"
}}"""

EXPECTED = SnapshotMetadata(
    source="taken_from_canister",
    taken_at_timestamp=1_750_000_000_123_456_789,
    wasm_module_size=3000,
    globals=(
        Global("i32", -7),
        Global("i64", 2**53 + 1),
        Global("f64", 1.5),
        Global("v128", 2**127 + 3),
    ),
    wasm_memory_size=5_000_000,
    stable_memory_size=0,
    wasm_chunk_store=(HASH_A, HASH_B),
    canister_version=17,
    certified_data=b"ok",
    global_timer=GlobalTimer(1_750_000_100_000_000_000),
    on_low_wasm_memory_hook_status="condition_not_satisfied",
)


def test_parses_what_icp_cli_writes() -> None:
    assert parse_metadata(METADATA_JSON.encode()) == EXPECTED


def test_writes_what_icp_cli_writes_byte_for_byte() -> None:
    assert metadata_json(EXPECTED) == METADATA_JSON.encode()


def test_optional_fields_and_unit_variants() -> None:
    doc = json.loads(METADATA_JSON)
    doc.update(
        source={"metadata_upload": None},
        global_timer="inactive",
        on_low_wasm_memory_hook_status=None,
    )
    doc["globals"] = [{"v128": []}, {"v128": "12345678901234567890"}, {"v128": 7}]
    parsed = parse_metadata(json.dumps(doc).encode())
    assert parsed.source == "metadata_upload"
    assert parsed.global_timer == GlobalTimer(None)
    assert parsed.on_low_wasm_memory_hook_status is None
    assert [g.value for g in parsed.globals] == [0, 12345678901234567890, 7]
    doc.update(source=None, global_timer=None)
    parsed = parse_metadata(json.dumps(doc).encode())
    assert parsed.source == "taken_from_canister"
    assert parsed.global_timer is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["globals"].append(None), r"globals\[4\]: null"),
        (lambda d: d["globals"].append({"f32": None}), r"globals\[4\]: expected a number for f32"),
        (lambda d: d["globals"].append({"i32": 2**31}), r"globals\[4\]: expected an i32"),
        (
            lambda d: d["wasm_chunk_store"][0].update(hash=[1, 2]),
            r"wasm_chunk_store\[0\]\.hash: expected 32 bytes",
        ),
        (lambda d: d.update(certified_data="ok"), "certified_data: expected a list of byte values"),
        (lambda d: d.update(wasm_memory_size=-1), "wasm_memory_size: expected an unsigned 64-bit"),
        (lambda d: d.update(source={"stolen": None}), "source: expected"),
        (lambda d: d.update(global_timer={"active": "soon"}), "global_timer: expected"),
    ],
)
def test_bad_metadata_names_the_field(change: object, message: str) -> None:
    doc = json.loads(METADATA_JSON)
    change(doc)  # type: ignore[operator]
    with pytest.raises(UsageError, match=message):
        parse_metadata(json.dumps(doc).encode(), "snap/metadata.json")


def _download(
    directory: Path, *, module: bytes | None = None, memory: bytes | None = None
) -> dict[str, bytes]:
    """An icp-cli snapshot directory as `icp canister snapshot download` leaves it."""
    rng = random.Random(4)
    files = {
        "metadata.json": METADATA_JSON.encode(),
        "wasm_module.bin": module if module is not None else rng.randbytes(3000),
        "wasm_memory.bin": memory
        if memory is not None
        else rng.randbytes(2_500_000) + bytes(2_500_000),
        "stable_memory.bin": b"",
        f"wasm_chunk_store/{HASH_A.hex()}.bin": CHUNK_A,
        f"wasm_chunk_store/{HASH_B.hex()}.bin": CHUNK_B,
        ".lock": b"",
    }
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return files


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalBackend(tmp_path / "repo", durable=False))


def test_import_then_export_gives_the_same_directory(tmp_path: Path, repo: Repository) -> None:
    files = _download(tmp_path / "snap")
    stored = import_icp_cli_dir(
        repo, tmp_path / "snap", canister=CANISTER, network="ic", tags=["icp-cli"]
    )
    m = stored.manifest
    assert m.metadata == EXPECTED
    assert m.canister == CANISTER
    assert m.tags == ("icp-cli",)
    assert len(m.wasm_memory.chunks) == -(-5_000_000 // DEFAULT_CHUNK_SIZE)  # 62,500-byte chunks
    assert repo.verify(stored.id).ok
    out = export_icp_cli_dir(repo, stored, tmp_path / "out")
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    del files[".lock"]
    assert written == files
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial left


def test_import_accepts_the_files_icp_cli_leaves_out_when_empty(
    tmp_path: Path, repo: Repository
) -> None:
    doc = json.loads(METADATA_JSON)
    doc.update(wasm_module_size=0, wasm_memory_size=0, wasm_chunk_store=[])
    _download(tmp_path / "snap")
    (tmp_path / "snap" / "metadata.json").write_text(json.dumps(doc, indent=2))
    (tmp_path / "snap" / "wasm_module.bin").unlink()
    (tmp_path / "snap" / "wasm_memory.bin").unlink()
    stored = import_icp_cli_dir(repo, tmp_path / "snap", canister=CANISTER, network="ic")
    assert stored.manifest.size == 0
    out = export_icp_cli_dir(repo, stored, tmp_path / "out")
    assert (out / "wasm_module.bin").read_bytes() == b""
    assert (out / "wasm_chunk_store").is_dir()


def test_import_refuses_an_unfinished_download(tmp_path: Path, repo: Repository) -> None:
    _download(tmp_path / "snap")
    (tmp_path / "snap" / ".download_progress.json").write_text("{}")
    with pytest.raises(UsageError, match="unfinished icp-cli download"):
        import_icp_cli_dir(repo, tmp_path / "snap", canister=CANISTER, network="ic")
    with pytest.raises(UsageError, match="not an icp-cli snapshot directory"):
        import_icp_cli_dir(repo, tmp_path, canister=CANISTER, network="ic")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "wasm_memory.bin").write_bytes(b"short"),
            "wasm_memory.bin is 5 bytes; metadata.json says",
        ),
        (lambda d: (d / "wasm_module.bin").unlink(), "wasm_module.bin is missing"),
        (
            lambda d: (d / f"wasm_chunk_store/{HASH_B.hex()}.bin").write_bytes(b"other"),
            "does not hash to its name",
        ),
        (
            lambda d: (d / f"wasm_chunk_store/{HASH_A.hex()}.bin").unlink(),
            "is missing; metadata.json lists",
        ),
    ],
)
def test_import_refuses_files_that_disagree_with_the_metadata(
    tmp_path: Path, repo: Repository, damage: object, message: str
) -> None:
    _download(tmp_path / "snap")
    damage(tmp_path / "snap")  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=message):
        import_icp_cli_dir(repo, tmp_path / "snap", canister=CANISTER, network="ic")
    assert repo.snapshot_ids() == []


def test_export_refuses_a_used_directory_and_non_finite_floats(
    tmp_path: Path, repo: Repository
) -> None:
    _download(tmp_path / "snap")
    stored = import_icp_cli_dir(repo, tmp_path / "snap", canister=CANISTER, network="ic")
    with pytest.raises(UsageError, match="not an empty directory"):
        export_icp_cli_dir(repo, stored, tmp_path / "snap")
    with pytest.raises(UsageError, match="cannot hold NaN"):
        metadata_json(
            EXPECTED.__class__(**{**EXPECTED.__dict__, "globals": (Global("f32", math.nan),)})
        )


def test_export_of_a_damaged_snapshot_leaves_nothing(tmp_path: Path, repo: Repository) -> None:
    _download(tmp_path / "snap")
    stored = import_icp_cli_dir(repo, tmp_path / "snap", canister=CANISTER, network="ic")
    assert isinstance(repo.backend, LocalBackend)
    path = repo.backend.path(Handle(FileType.CHUNK, stored.manifest.wasm_memory.chunks[1].hex()))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(ChunkDamaged):
        export_icp_cli_dir(repo, stored, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
