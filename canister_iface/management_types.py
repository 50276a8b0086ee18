"""Types of the management canister (``aaaaa-aa``) as Python dataclasses.

The Candid types are those of ``ic_did/ic.did`` (interface spec 0.66, 2026),
which localnet's emulation reads too (:mod:`ic_did`).  Requests carry every
field the current spec knows; a replica that knows fewer skips the rest, as
Candid requires.  Replies are read through :mod:`canister_iface.candid_value`,
so fields added after the 2024 ``ic.did`` (``ready_for_migration``, the
visibilities, ``log_memory_limit``, ...) are ``None`` when an older replica
(a pinned PocketIC) does not send them.

Canister ids are :class:`~canister_iface.principal.Principal`; arguments
accept a principal, its text or its raw bytes (:data:`CanisterRef`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from canister_iface.candid_value import (
    Rec,
    as_float,
    as_int,
    as_nat,
    as_principal,
    as_rec,
    as_variant,
    as_vec,
)
from canister_iface.principal import Principal

CanisterRef = Principal | str | bytes

# Largest slice read_canister_snapshot_data returns / upload_canister_snapshot_data
# takes per call (interface spec: 2,000,000 bytes).
MAX_SNAPSHOT_SLICE = 2_000_000
# Wasm chunk store: every chunk is at most 1 MiB.
MAX_WASM_CHUNK = 1024 * 1024

# ------------------------------------------------------------------- settings

VisibilityKind = Literal["controllers", "public", "allowed_viewers"]
_VISIBILITY_KINDS: tuple[VisibilityKind, ...] = ("controllers", "public", "allowed_viewers")


@dataclass(frozen=True)
class Visibility:
    """Who may see a canister's logs, snapshots or status."""

    kind: VisibilityKind
    viewers: tuple[Principal, ...] = ()

    @classmethod
    def controllers(cls) -> Visibility:
        return cls("controllers")

    @classmethod
    def public(cls) -> Visibility:
        return cls("public")

    @classmethod
    def allowed_viewers(cls, viewers: Iterable[CanisterRef]) -> Visibility:
        return cls("allowed_viewers", tuple(Principal.of(v) for v in viewers))

    def to_candid(self) -> dict[str, Any]:
        if self.kind == "allowed_viewers":
            return {"allowed_viewers": [v.raw for v in self.viewers]}
        return {self.kind: None}

    @classmethod
    def from_candid(cls, value: object, what: str) -> Visibility:
        tag, payload = as_variant(value, _VISIBILITY_KINDS, what)
        if tag == "allowed_viewers":
            viewers = tuple(as_principal(v, what) for v in as_vec(payload, what))
            return cls("allowed_viewers", viewers)
        return cls("controllers" if tag == "controllers" else "public")


@dataclass(frozen=True)
class EnvironmentVariable:
    name: str
    value: str


@dataclass(frozen=True)
class CanisterSettings:
    """Settings to set; a field left ``None`` is left unchanged (or defaulted on creation).

    ``controllers`` replaces the whole controller list: the canister ends up
    with exactly the given set.
    """

    controllers: tuple[Principal, ...] | None = None
    compute_allocation: int | None = None
    memory_allocation: int | None = None
    freezing_threshold: int | None = None
    reserved_cycles_limit: int | None = None
    minimum_incoming_canister_call_cycles: int | None = None
    log_visibility: Visibility | None = None
    log_memory_limit: int | None = None
    snapshot_visibility: Visibility | None = None
    status_visibility: Visibility | None = None
    wasm_memory_limit: int | None = None
    wasm_memory_threshold: int | None = None
    environment_variables: tuple[EnvironmentVariable, ...] | None = None

    @classmethod
    def with_controllers(cls, controllers: Iterable[CanisterRef]) -> CanisterSettings:
        return cls(controllers=_unique_principals(controllers))

    def to_candid(self) -> dict[str, Any]:
        return {
            "controllers": _opt(
                None if self.controllers is None else [c.raw for c in self.controllers]
            ),
            "compute_allocation": _opt(self.compute_allocation),
            "memory_allocation": _opt(self.memory_allocation),
            "freezing_threshold": _opt(self.freezing_threshold),
            "reserved_cycles_limit": _opt(self.reserved_cycles_limit),
            "minimum_incoming_canister_call_cycles": _opt(
                self.minimum_incoming_canister_call_cycles
            ),
            "log_visibility": _opt_visibility(self.log_visibility),
            "log_memory_limit": _opt(self.log_memory_limit),
            "snapshot_visibility": _opt_visibility(self.snapshot_visibility),
            "status_visibility": _opt_visibility(self.status_visibility),
            "wasm_memory_limit": _opt(self.wasm_memory_limit),
            "wasm_memory_threshold": _opt(self.wasm_memory_threshold),
            "environment_variables": _opt(
                None
                if self.environment_variables is None
                else [{"name": e.name, "value": e.value} for e in self.environment_variables]
            ),
        }

    def set_fields(self) -> list[str]:
        """Names of the fields this value sets (not ``None``)."""
        return [name for name, value in vars(self).items() if value is not None]


@dataclass(frozen=True)
class DefiniteCanisterSettings:
    """The settings a canister has; ``None`` where the replica predates the field."""

    controllers: tuple[Principal, ...]
    compute_allocation: int
    memory_allocation: int
    freezing_threshold: int
    reserved_cycles_limit: int
    log_visibility: Visibility
    wasm_memory_limit: int | None = None
    wasm_memory_threshold: int | None = None
    environment_variables: tuple[EnvironmentVariable, ...] | None = None
    log_memory_limit: int | None = None
    snapshot_visibility: Visibility | None = None
    status_visibility: Visibility | None = None
    minimum_incoming_canister_call_cycles: int | None = None

    @classmethod
    def from_candid(cls, rec: Rec) -> DefiniteCanisterSettings:
        return cls(
            controllers=rec.principals("controllers"),
            compute_allocation=rec.nat("compute_allocation"),
            memory_allocation=rec.nat("memory_allocation"),
            freezing_threshold=rec.nat("freezing_threshold"),
            reserved_cycles_limit=rec.nat("reserved_cycles_limit"),
            log_visibility=Visibility.from_candid(
                rec.get("log_visibility"), f"{rec.what}.log_visibility"
            ),
            wasm_memory_limit=rec.newer_nat("wasm_memory_limit"),
            wasm_memory_threshold=rec.newer_nat("wasm_memory_threshold"),
            environment_variables=_env_vars(rec),
            log_memory_limit=rec.newer_nat("log_memory_limit"),
            snapshot_visibility=_newer_visibility(rec, "snapshot_visibility"),
            status_visibility=_newer_visibility(rec, "status_visibility"),
            minimum_incoming_canister_call_cycles=rec.newer_nat(
                "minimum_incoming_canister_call_cycles"
            ),
        )


def _opt(value: object | None) -> list[object]:
    return [] if value is None else [value]


def _opt_visibility(value: Visibility | None) -> list[object]:
    return [] if value is None else [value.to_candid()]


def _newer_visibility(rec: Rec, name: str) -> Visibility | None:
    if not rec.has(name):
        return None
    return Visibility.from_candid(rec.get(name), f"{rec.what}.{name}")


def _env_vars(rec: Rec) -> tuple[EnvironmentVariable, ...] | None:
    if not rec.has("environment_variables"):
        return None
    at = f"{rec.what}.environment_variables"
    items = [as_rec(v, at) for v in rec.vec("environment_variables")]
    return tuple(EnvironmentVariable(i.text("name"), i.text("value")) for i in items)


def _unique_principals(values: Iterable[CanisterRef]) -> tuple[Principal, ...]:
    """Principals in the given order without repeats (the IC rejects duplicates)."""
    seen: dict[Principal, None] = {}
    for value in values:
        seen.setdefault(Principal.of(value), None)
    return tuple(seen)


# --------------------------------------------------------------------- status

CanisterRunStatus = Literal["running", "stopping", "stopped"]
_RUN_STATUSES: tuple[CanisterRunStatus, ...] = ("running", "stopping", "stopped")


@dataclass(frozen=True)
class MemoryMetrics:
    wasm_memory_size: int
    stable_memory_size: int
    global_memory_size: int
    wasm_binary_size: int
    custom_sections_size: int
    canister_history_size: int
    wasm_chunk_store_size: int
    snapshots_size: int
    log_memory_store_size: int | None = None

    @classmethod
    def from_candid(cls, rec: Rec) -> MemoryMetrics:
        return cls(
            wasm_memory_size=rec.nat("wasm_memory_size"),
            stable_memory_size=rec.nat("stable_memory_size"),
            global_memory_size=rec.nat("global_memory_size"),
            wasm_binary_size=rec.nat("wasm_binary_size"),
            custom_sections_size=rec.nat("custom_sections_size"),
            canister_history_size=rec.nat("canister_history_size"),
            wasm_chunk_store_size=rec.nat("wasm_chunk_store_size"),
            snapshots_size=rec.nat("snapshots_size"),
            log_memory_store_size=rec.newer_nat("log_memory_store_size"),
        )


@dataclass(frozen=True)
class QueryStats:
    num_calls_total: int
    num_instructions_total: int
    request_payload_bytes_total: int
    response_payload_bytes_total: int

    @classmethod
    def from_candid(cls, rec: Rec) -> QueryStats:
        return cls(
            num_calls_total=rec.nat("num_calls_total"),
            num_instructions_total=rec.nat("num_instructions_total"),
            request_payload_bytes_total=rec.nat("request_payload_bytes_total"),
            response_payload_bytes_total=rec.nat("response_payload_bytes_total"),
        )


@dataclass(frozen=True)
class CanisterStatus:
    status: CanisterRunStatus
    settings: DefiniteCanisterSettings
    module_hash: bytes | None
    memory_size: int
    cycles: int
    idle_cycles_burned_per_day: int
    reserved_cycles: int | None = None
    version: int | None = None
    ready_for_migration: bool | None = None
    memory_metrics: MemoryMetrics | None = None
    query_stats: QueryStats | None = None

    @classmethod
    def from_candid(cls, rec: Rec) -> CanisterStatus:
        status, _ = rec.variant("status", _RUN_STATUSES)
        return cls(
            status=_run_status(status),
            settings=DefiniteCanisterSettings.from_candid(rec.rec("settings")),
            module_hash=rec.opt_blob("module_hash"),
            memory_size=rec.nat("memory_size"),
            cycles=rec.nat("cycles"),
            idle_cycles_burned_per_day=rec.nat("idle_cycles_burned_per_day"),
            reserved_cycles=rec.newer_nat("reserved_cycles"),
            version=rec.newer_nat("version"),
            ready_for_migration=rec.boolean("ready_for_migration")
            if rec.has("ready_for_migration")
            else None,
            memory_metrics=MemoryMetrics.from_candid(rec.rec("memory_metrics"))
            if rec.has("memory_metrics")
            else None,
            query_stats=QueryStats.from_candid(rec.rec("query_stats"))
            if rec.has("query_stats")
            else None,
        )


def _run_status(tag: str) -> CanisterRunStatus:
    for status in _RUN_STATUSES:
        if status == tag:
            return status
    raise AssertionError(tag)  # as_variant admits only _RUN_STATUSES


# ------------------------------------------------------------------- install


@dataclass(frozen=True)
class InstallMode:
    """``install``, ``reinstall`` or ``upgrade`` (with its options).

    ``wasm_memory_persistence="keep"`` is what Motoko's enhanced orthogonal
    persistence requires on upgrade; ``"replace"`` discards the heap.
    """

    kind: Literal["install", "reinstall", "upgrade"]
    skip_pre_upgrade: bool | None = None
    wasm_memory_persistence: Literal["keep", "replace"] | None = None

    @classmethod
    def install(cls) -> InstallMode:
        return cls("install")

    @classmethod
    def reinstall(cls) -> InstallMode:
        return cls("reinstall")

    @classmethod
    def upgrade(
        cls,
        *,
        skip_pre_upgrade: bool | None = None,
        wasm_memory_persistence: Literal["keep", "replace"] | None = None,
    ) -> InstallMode:
        return cls("upgrade", skip_pre_upgrade, wasm_memory_persistence)

    def __post_init__(self) -> None:
        has_options = self.skip_pre_upgrade is not None or self.wasm_memory_persistence is not None
        if self.kind != "upgrade" and has_options:
            raise ValueError(
                f"skip_pre_upgrade and wasm_memory_persistence apply to upgrades only, not to "
                f"{self.kind!r}"
            )

    def to_candid(self) -> dict[str, Any]:
        if self.kind != "upgrade":
            return {self.kind: None}
        if self.skip_pre_upgrade is None and self.wasm_memory_persistence is None:
            return {"upgrade": []}
        persistence = self.wasm_memory_persistence
        options = {
            "skip_pre_upgrade": _opt(self.skip_pre_upgrade),
            "wasm_memory_persistence": [] if persistence is None else [{persistence: None}],
        }
        return {"upgrade": [options]}


# ------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class Snapshot:
    id: bytes
    taken_at_timestamp: int  # nanoseconds since the epoch
    total_size: int  # bytes

    @classmethod
    def from_candid(cls, rec: Rec) -> Snapshot:
        return cls(
            id=rec.blob("id"),
            taken_at_timestamp=rec.nat("taken_at_timestamp"),
            total_size=rec.nat("total_size"),
        )


GlobalKind = Literal["i32", "i64", "f32", "f64", "v128"]
_GLOBAL_KINDS: tuple[GlobalKind, ...] = ("i32", "i64", "f32", "f64", "v128")


@dataclass(frozen=True)
class Global:
    """One exported Wasm global of a snapshot (v128 as a natural number)."""

    kind: GlobalKind
    value: int | float

    def to_candid(self) -> dict[str, Any]:
        return {self.kind: self.value}

    @classmethod
    def from_candid(cls, value: object, what: str) -> Global:
        tag, payload = as_variant(value, _GLOBAL_KINDS, what)
        for kind in _GLOBAL_KINDS:
            if kind == tag:
                if kind in ("f32", "f64"):
                    return cls(kind, as_float(payload, what))
                if kind == "v128":
                    return cls(kind, as_nat(payload, what))
                return cls(kind, as_int(payload, what))
        raise AssertionError(tag)


HookStatus = Literal["condition_not_satisfied", "ready", "executed"]
_HOOK_STATUSES: tuple[HookStatus, ...] = ("condition_not_satisfied", "ready", "executed")
SnapshotSource = Literal["taken_from_canister", "metadata_upload"]
_SNAPSHOT_SOURCES: tuple[SnapshotSource, ...] = ("taken_from_canister", "metadata_upload")


@dataclass(frozen=True)
class GlobalTimer:
    """The canister's global timer: ``at_ns`` when active, ``None`` when inactive."""

    at_ns: int | None

    def to_candid(self) -> dict[str, Any]:
        return {"inactive": None} if self.at_ns is None else {"active": self.at_ns}

    @classmethod
    def from_candid(cls, value: object, what: str) -> GlobalTimer:
        tag, payload = as_variant(value, ("inactive", "active"), what)
        return cls(None if tag == "inactive" else as_nat(payload, what))


@dataclass(frozen=True)
class SnapshotMetadataUpload:
    """What ``upload_canister_snapshot_metadata`` takes; the data follows separately."""

    wasm_module_size: int
    wasm_memory_size: int
    stable_memory_size: int
    globals: tuple[Global, ...] = ()
    certified_data: bytes = b""
    global_timer: GlobalTimer | None = None
    on_low_wasm_memory_hook_status: HookStatus | None = None

    def to_candid(self) -> dict[str, Any]:
        hook = self.on_low_wasm_memory_hook_status
        return {
            "wasm_module_size": self.wasm_module_size,
            "globals": [g.to_candid() for g in self.globals],
            "wasm_memory_size": self.wasm_memory_size,
            "stable_memory_size": self.stable_memory_size,
            "certified_data": self.certified_data,
            "global_timer": [] if self.global_timer is None else [self.global_timer.to_candid()],
            "on_low_wasm_memory_hook_status": [] if hook is None else [{hook: None}],
        }


@dataclass(frozen=True)
class SnapshotMetadata:
    source: SnapshotSource
    taken_at_timestamp: int
    wasm_module_size: int
    globals: tuple[Global, ...]
    wasm_memory_size: int
    stable_memory_size: int
    wasm_chunk_store: tuple[bytes, ...]  # hashes of the chunks in the snapshot's chunk store
    canister_version: int
    certified_data: bytes
    global_timer: GlobalTimer | None = None
    on_low_wasm_memory_hook_status: HookStatus | None = None

    def for_upload(self) -> SnapshotMetadataUpload:
        """The metadata to upload to recreate this snapshot elsewhere."""
        return SnapshotMetadataUpload(
            wasm_module_size=self.wasm_module_size,
            wasm_memory_size=self.wasm_memory_size,
            stable_memory_size=self.stable_memory_size,
            globals=self.globals,
            certified_data=self.certified_data,
            global_timer=self.global_timer,
            on_low_wasm_memory_hook_status=self.on_low_wasm_memory_hook_status,
        )

    def size_of(self, memory: SnapshotMemory) -> int:
        """Bytes in ``memory`` of this snapshot."""
        if memory == "wasm_module":
            return self.wasm_module_size
        if memory == "wasm_memory":
            return self.wasm_memory_size
        return self.stable_memory_size

    @classmethod
    def from_candid(cls, rec: Rec) -> SnapshotMetadata:
        source, _ = rec.variant("source", _SNAPSHOT_SOURCES)
        timer = rec.opt("global_timer")
        hook = rec.opt("on_low_wasm_memory_hook_status")
        at = rec.what
        return cls(
            source="metadata_upload" if source == "metadata_upload" else "taken_from_canister",
            taken_at_timestamp=rec.nat("taken_at_timestamp"),
            wasm_module_size=rec.nat("wasm_module_size"),
            globals=tuple(Global.from_candid(g, f"{at}.globals") for g in rec.vec("globals")),
            wasm_memory_size=rec.nat("wasm_memory_size"),
            stable_memory_size=rec.nat("stable_memory_size"),
            wasm_chunk_store=tuple(
                as_rec(c, f"{at}.wasm_chunk_store").blob("hash")
                for c in rec.vec("wasm_chunk_store")
            ),
            canister_version=rec.nat("canister_version"),
            certified_data=rec.blob("certified_data"),
            global_timer=None
            if timer is None
            else GlobalTimer.from_candid(timer, f"{at}.global_timer"),
            on_low_wasm_memory_hook_status=None if hook is None else _hook_status(hook, at),
        )


def _hook_status(value: object, at: str) -> HookStatus:
    tag, _ = as_variant(value, _HOOK_STATUSES, f"{at}.on_low_wasm_memory_hook_status")
    for status in _HOOK_STATUSES:
        if status == tag:
            return status
    raise AssertionError(tag)


SnapshotMemory = Literal["wasm_module", "wasm_memory", "stable_memory"]
SNAPSHOT_MEMORIES: tuple[SnapshotMemory, ...] = ("wasm_module", "wasm_memory", "stable_memory")


@dataclass(frozen=True)
class SnapshotSlice:
    """``size`` bytes at ``offset`` of one of a snapshot's memories."""

    memory: SnapshotMemory
    offset: int
    size: int

    def __post_init__(self) -> None:
        if self.offset < 0 or not 0 <= self.size <= MAX_SNAPSHOT_SLICE:
            raise ValueError(
                f"a snapshot slice needs offset >= 0 and 0 <= size <= {MAX_SNAPSHOT_SLICE:,} "
                f"bytes (the IC's limit per call), got offset={self.offset} size={self.size}"
            )

    def to_candid(self) -> dict[str, Any]:
        return {self.memory: {"offset": self.offset, "size": self.size}}


@dataclass(frozen=True)
class SnapshotWasmChunk:
    """A chunk of the snapshot's Wasm chunk store, by its hash."""

    hash: bytes

    def to_candid(self) -> dict[str, Any]:
        return {"wasm_chunk": {"hash": self.hash}}


SnapshotData = SnapshotSlice | SnapshotWasmChunk


@dataclass(frozen=True)
class UploadTarget:
    """Where uploaded snapshot data goes: an offset of a memory, or the chunk store."""

    memory: SnapshotMemory | Literal["wasm_chunk"]
    offset: int = 0

    def to_candid(self) -> dict[str, Any]:
        if self.memory == "wasm_chunk":
            return {"wasm_chunk": None}
        return {self.memory: {"offset": self.offset}}
