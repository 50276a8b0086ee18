"""icp-cli's snapshot directory: import into the repository, export out of it.

``icp canister snapshot download`` writes, and ``icp canister snapshot
upload`` reads, a directory (icp-cli 1.3.0, ``crates/icp-cli/src/operations/
snapshot_transfer.rs``; metadata types from ``ic-management-canister-types``
0.8.0)::

    metadata.json           ReadCanisterSnapshotMetadataResult, serde_json pretty-printed
    wasm_module.bin         the memories, raw (icp-cli leaves a 0-byte one out)
    wasm_memory.bin
    stable_memory.bin
    wasm_chunk_store/<hex of the chunk's hash>.bin
    .download_progress.json present only while a download is unfinished
    .lock                   icp-cli's directory lock (ignored)

``metadata.json`` is serde's JSON of that Rust struct, so: byte strings
(``certified_data``, each ``wasm_chunk_store[].hash``) are arrays of numbers;
enums with data are ``{"variant": value}`` (``source`` is
``{"taken_from_canister": null}``, a global ``{"i64": -1}``, an active timer
``{"active": ns}``); enums without data are strings (``"inactive"``,
``"ready"``); ``None`` is ``null``; a ``v128`` global is a candid ``Nat``,
i.e. an array of its base-2³² digits, least significant first.  serde_json
writes NaN and infinities as ``null``, which icp-cli cannot read back, so a
snapshot with a non-finite float global is refused on export.  icp-cli does
not record which canister the directory came from: an import names it.

The directory carries no checksum of the memories; an import checks each
file's size against ``metadata.json`` and each chunk-store file against its
hash, and the repository then holds SHA-256s of everything.  An export
writes into a temporary sibling and renames it into place when whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from canister_iface.management_types import (
    SNAPSHOT_MEMORIES,
    Global,
    GlobalKind,
    GlobalTimer,
    HookStatus,
    SnapshotMemory,
    SnapshotMetadata,
    SnapshotSource,
)
from replicator.errors import IntegrityError, UsageError
from replicator.repository.manifest import ManifestBuilder, StoredManifest
from replicator.repository.repo import Repository
from replicator.repository.store import classify_os_error

ICP_CLI_VERSION = "icp-cli 1.3.0"
METADATA = "metadata.json"
CHUNK_STORE = "wasm_chunk_store"
DOWNLOAD_PROGRESS = ".download_progress.json"
FILES: dict[SnapshotMemory, str] = {
    "wasm_module": "wasm_module.bin",
    "wasm_memory": "wasm_memory.bin",
    "stable_memory": "stable_memory.bin",
}
_U64 = 2**64 - 1
_SOURCES: tuple[SnapshotSource, ...] = ("taken_from_canister", "metadata_upload")
_HOOKS: tuple[HookStatus, ...] = ("condition_not_satisfied", "ready", "executed")
_INT_RANGES = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1)}
_GLOBAL_KINDS: tuple[GlobalKind, ...] = ("i32", "i64", "f32", "f64", "v128")


# -------------------------------------------------------------------- import


def import_icp_cli_dir(
    repo: Repository,
    directory: str | os.PathLike[str],
    *,
    canister: str,
    network: str,
    tags: Sequence[str] = (),
) -> StoredManifest:
    """Store the snapshot in ``directory`` as a repository snapshot of ``canister``.

    Raises :class:`UsageError` for a directory that is not a finished icp-cli
    download and :class:`IntegrityError` when a file disagrees with
    ``metadata.json``; nothing is referenced until every chunk is stored.
    """
    root = Path(directory)
    if not (root / METADATA).is_file():
        raise UsageError(f"{root} is not an icp-cli snapshot directory (no {METADATA})")
    if (root / DOWNLOAD_PROGRESS).exists():
        raise UsageError(
            f"{root} holds an unfinished icp-cli download ({DOWNLOAD_PROGRESS}): finish it "
            "with `icp canister snapshot download … --resume` first"
        )
    with _os_errors("read", root):
        metadata = parse_metadata((root / METADATA).read_bytes(), str(root / METADATA))
    builder = ManifestBuilder(
        canister=canister,
        network=network,
        metadata=metadata,
        chunk_size=repo.chunk_size,
        tags=tags,
    )
    for memory in SNAPSHOT_MEMORIES:
        for index, data in _read_memory(root / FILES[memory], metadata.size_of(memory), builder):
            builder.add(memory, index, repo.put_chunk(data))
    for hash_ in metadata.wasm_chunk_store:
        builder.add_wasm_chunk(repo.put_chunk(_read_wasm_chunk(root, hash_)))
    return repo.write_manifest(builder.build())


def _read_memory(path: Path, size: int, builder: ManifestBuilder) -> Iterator[tuple[int, bytes]]:
    if not path.exists() and size == 0:
        return  # icp-cli writes no file for an empty module or memory
    with _os_errors("read", path):
        actual = path.stat().st_size if path.exists() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual:,} bytes"
            raise IntegrityError(f"{path} is {found}; {METADATA} says {size:,} bytes")
        with path.open("rb") as f:
            index = 0
            while data := f.read(builder.chunk_size):
                yield index, data
                index += 1


def _read_wasm_chunk(root: Path, hash_: bytes) -> bytes:
    path = root / CHUNK_STORE / f"{hash_.hex()}.bin"
    if not path.is_file():
        raise IntegrityError(f"{path} is missing; {METADATA} lists that Wasm chunk")
    with _os_errors("read", path):
        data = path.read_bytes()
    if hashlib.sha256(data).digest() != hash_:
        raise IntegrityError(f"{path} does not hash to its name: the file is damaged")
    return data


# -------------------------------------------------------------------- export


def export_icp_cli_dir(
    repo: Repository, stored: StoredManifest, directory: str | os.PathLike[str]
) -> Path:
    """Write the snapshot as an icp-cli snapshot directory at ``directory`` (new or empty).

    Every chunk is verified as it is read; on any error nothing is left at
    ``directory``.
    """
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} exists and is not an empty directory: choose a new one")
    manifest = stored.manifest
    document = metadata_json(manifest.metadata)  # refuses what icp-cli cannot read first
    repo.ensure_restorable(stored, read_data=False)
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    try:
        with _os_errors("write", partial):
            (partial / CHUNK_STORE).mkdir(parents=True)
            _write(partial / METADATA, [document])
            for memory in SNAPSHOT_MEMORIES:
                pieces = (data for _, data in repo.iter_part(manifest, memory))
                _write(partial / FILES[memory], pieces)
            for hash_, data in repo.iter_wasm_chunks(manifest):
                _write(partial / CHUNK_STORE / f"{hash_.hex()}.bin", [data])
            _fsync_dir(partial / CHUNK_STORE)
            _fsync_dir(partial)
            if target.exists():
                target.rmdir()
            os.rename(partial, target)
            _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _write(path: Path, pieces: Iterator[bytes] | list[bytes]) -> None:
    with path.open("wb") as f:
        for piece in pieces:
            f.write(piece)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _os_errors(action: str, path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise classify_os_error(exc, action, path, path.parent) from exc


# ----------------------------------------------------------- metadata.json


def metadata_json(metadata: SnapshotMetadata) -> bytes:
    """``metadata.json`` as icp-cli writes it (serde_json, pretty, field order of the struct)."""
    doc = {
        "source": {metadata.source: None},
        "taken_at_timestamp": metadata.taken_at_timestamp,
        "wasm_module_size": metadata.wasm_module_size,
        "globals": [_global_to_json(i, g) for i, g in enumerate(metadata.globals)],
        "wasm_memory_size": metadata.wasm_memory_size,
        "stable_memory_size": metadata.stable_memory_size,
        "wasm_chunk_store": [{"hash": list(h)} for h in metadata.wasm_chunk_store],
        "canister_version": metadata.canister_version,
        "certified_data": list(metadata.certified_data),
        "global_timer": _timer_to_json(metadata.global_timer),
        "on_low_wasm_memory_hook_status": metadata.on_low_wasm_memory_hook_status,
    }
    return json.dumps(doc, indent=2, allow_nan=False).encode()


def _global_to_json(index: int, g: Global) -> dict[str, Any]:
    if g.kind == "v128":
        value = int(g.value)
        digits = []
        while value:
            digits.append(value & 0xFFFFFFFF)
            value >>= 32
        return {"v128": digits}
    if isinstance(g.value, float) and not math.isfinite(g.value):
        raise UsageError(
            f"global {index} is {g.value} ({g.kind}); icp-cli's metadata.json cannot hold NaN "
            "or infinities (serde_json writes null), so this snapshot cannot be exported to it"
        )
    return {g.kind: g.value}


def _timer_to_json(timer: GlobalTimer | None) -> object:
    if timer is None:
        return None
    return "inactive" if timer.at_ns is None else {"active": timer.at_ns}


def parse_metadata(data: bytes, where: str = METADATA) -> SnapshotMetadata:
    """Read icp-cli's ``metadata.json``; :class:`UsageError` naming the field if it is wrong."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{where}: not JSON ({exc})") from None
    at = _At(where)
    if not isinstance(doc, dict):
        at.fail("", "expected an object")
    return SnapshotMetadata(
        source=_source(doc.get("source"), at),
        taken_at_timestamp=_u64(doc, "taken_at_timestamp", at),
        wasm_module_size=_u64(doc, "wasm_module_size", at),
        globals=tuple(_global(g, i, at) for i, g in enumerate(_list(doc, "globals", at))),
        wasm_memory_size=_u64(doc, "wasm_memory_size", at),
        stable_memory_size=_u64(doc, "stable_memory_size", at),
        wasm_chunk_store=tuple(
            _chunk_hash(c, i, at) for i, c in enumerate(_list(doc, "wasm_chunk_store", at))
        ),
        canister_version=_u64(doc, "canister_version", at),
        certified_data=_bytes(doc.get("certified_data"), "certified_data", at),
        global_timer=_timer(doc.get("global_timer"), at),
        on_low_wasm_memory_hook_status=_hook(doc.get("on_low_wasm_memory_hook_status"), at),
    )


class _At:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, expected: str) -> NoReturn:
        raise UsageError(f"{self.where}: {key or 'the document'}: {expected}")


def _u64(doc: dict[str, Any], key: str, at: _At) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
        at.fail(key, "expected an unsigned 64-bit integer")
    return value


def _list(doc: dict[str, Any], key: str, at: _At) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        at.fail(key, "expected a list")
    return value


def _bytes(value: object, key: str, at: _At) -> bytes:
    if not isinstance(value, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        at.fail(key, "expected a list of byte values (0-255)")
    return bytes(value)


def _source(value: object, at: _At) -> SnapshotSource:
    if value is None:
        # Option<SnapshotSource>: only a replica that predates the field
        # leaves it out; the source is informational (upload does not take it).
        return "taken_from_canister"
    if isinstance(value, dict) and len(value) == 1:
        (tag,) = value
        for source in _SOURCES:
            if tag == source:
                return source
    return at.fail("source", 'expected {"taken_from_canister": null} or {"metadata_upload": null}')


def _global(value: object, index: int, at: _At) -> Global:
    key = f"globals[{index}]"
    if value is None:
        at.fail(key, "null: a global of a type icp-cli does not know; it cannot be uploaded")
    if not isinstance(value, dict) or len(value) != 1:
        at.fail(key, "expected one of {i32|i64|f32|f64|v128: value}")
    ((tag, raw),) = value.items()
    kind = next((k for k in _GLOBAL_KINDS if k == tag), None)
    if kind is None:
        at.fail(key, f"unknown global type {tag!r}")
    if kind == "v128":
        return Global(kind, _nat(raw, key, at))
    if kind in ("f32", "f64"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            at.fail(key, f"expected a number for {kind} (serde_json writes NaN as null)")
        return Global(kind, float(raw))
    low, high = _INT_RANGES[kind]
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        at.fail(key, f"expected an {kind} integer")
    return Global(kind, raw)


def _nat(raw: object, key: str, at: _At) -> int:
    # candid's Nat deserialises from its u32 digits (what it serialises to),
    # an unsigned integer or a decimal string; accept the same.
    if isinstance(raw, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**32 for d in raw
    ):
        value: int = sum(int(d) << (32 * i) for i, d in enumerate(raw))
    elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        value = raw
    elif isinstance(raw, str) and raw.isdigit():
        value = int(raw)
    else:
        at.fail(key, "expected a v128 as a list of u32 digits, an integer or a decimal string")
    if value >= 2**128:
        at.fail(key, "a v128 global does not fit in 128 bits")
    return value


def _chunk_hash(value: object, index: int, at: _At) -> bytes:
    key = f"wasm_chunk_store[{index}]"
    if not isinstance(value, dict):
        at.fail(key, 'expected {"hash": [bytes]}')
    digest = _bytes(value.get("hash"), f"{key}.hash", at)
    if len(digest) != 32:
        at.fail(f"{key}.hash", f"expected 32 bytes (SHA-256), got {len(digest)}")
    return digest


def _timer(value: object, at: _At) -> GlobalTimer | None:
    if value is None:
        return None
    if value == "inactive":
        return GlobalTimer(None)
    if isinstance(value, dict) and set(value) == {"active"}:
        active = value["active"]
        if isinstance(active, int) and not isinstance(active, bool) and 0 <= active <= _U64:
            return GlobalTimer(active)
    return at.fail("global_timer", 'expected null, "inactive" or {"active": nanoseconds}')


def _hook(value: object, at: _At) -> HookStatus | None:
    if value is None:
        return None
    for hook in _HOOKS:
        if value == hook:
            return hook
    return at.fail("on_low_wasm_memory_hook_status", f"expected null or one of {_HOOKS}")
