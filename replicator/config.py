"""The configuration file (TOML) and dfx's ``canister_ids.json``.

Everything has a default, so no file is needed to talk to ``local`` or
``ic``.  A complete file::

    network = "ic"                       # default network for names and jobs
    canister_ids = ["canister_ids.json"] # dfx files: {"name": {"ic": "<id>", "local": "<id>"}}
    checkpoints = "~/.local/state/replicator/checkpoints.sqlite3"   # created with mode 0600
    job_retention = "30d"    # finished jobs older than this are pruned; "forever" keeps them

    [networks.local]
    url = "http://127.0.0.1:4943"
    # "fetch": trust the key the node publishes; only for "local" at a loopback URL
    # (127.0.0.0/8, ::1, localhost). "fetch-insecure": the same for a "local" at
    # any URL, which anyone on the way can impersonate. "builtin" (ic only), or the
    # DER key in hex (133 bytes, as `replicator localnet start` prints it).
    root_key = "fetch"
    [networks.local.limits]  # per-network overrides of [limits]
    calls_per_second = 200

    [networks.ic]
    url = "https://icp-api.io"
    root_key = "builtin"

    [networks.staging]       # any other network needs its root key (hex), or a loopback URL
    url = "https://staging.example.org"
    root_key = "308182301d06…"

    [identity]
    pem = "~/.config/dfx/identity/default/identity.pem"

    [limits]
    calls_per_second = 20        # default 20 (a 1 MiB push is one call)
    bytes_per_second = "auto"    # default: 2 MiB/s for bytes a block carries (relay
                                 # writes, cross-subnet pushes, archive restores),
                                 # 16 MiB/s for pushes inside one subnet; a size
                                 # ("2 MiB", or bytes) is one budget for every route
    byte_burst = "2 MiB"
    in_flight = 128              # default 128
    in_flight_per_canister = 64  # default 64 (a push takes ~3 s on the subnet model)
    in_flight_reserved = 16      # of in_flight, kept for standbys' journal tails, whose
                                 # calls also go first through the rate limits (default:
                                 # an eighth of in_flight)
    subnet_calls_per_second = 5  # shared by the canisters of one subnet (off by default;
    subnet_bytes_per_second = "1 MiB"  # the subnet is read from certified state; with a
                                 # PostgreSQL store, by every worker too)
    global_calls_per_second = 20 # shared by every `serve` worker of a PostgreSQL store
    global_bytes_per_second = "4 MiB"  # (off by default; leased from the store; with
                                 # SQLite: this process's)
    windows = ["01:00-05:00"]    # UTC; calls start only inside a window
    cycles_budget = "5T"         # or a number of cycles; spent cycles are kept in the
                                 # checkpoint store, shared by every process using it
    cycles_budget_period = "1d"  # the budget renews every period: windows aligned to
                                 # the Unix epoch (1d: 00:00 UTC; 1h: on the hour)
    max_chunk_size = "1 MiB"     # caps the adaptive transfer size
    min_chunk_size = "4 KiB"

    [cycles]                     # keeping created backup canisters from freezing
    top_up = "auto"              # auto | provisional | ledger | off (auto: like creation)
    top_up_below_days = 30       # top up when fewer days of idle burn are left above the
                                 # freezing limit ...
    top_up_to_days = 90          # ... to this many
    reserve = "0.5T"             # plus cycles for its own work (at least the next copy's
                                 # cost); a top-up adds one more reserve

    [retry]
    max_attempts = 8
    max_seconds = 300
    initial_wait = 0.5
    max_wait = 30

    [store]                      # several orchestrators sharing one store (PostgreSQL)
    url = "postgresql://replicator@db.example.org/replicator"  # or checkpoints = "postgresql://…"
    takeover = "30s"             # `serve`: a dead worker's jobs run on another within this
    concurrency = 8              # `serve`: scheduled jobs one worker runs at once (it
                                 # takes a new one only below its fair share: one more
                                 # than the runs going / live workers)
                                 # [limits] global_* rates are leased from this store

    [metrics]
    port = 9464                  # omit: no /metrics endpoint
    addr = "127.0.0.1"

    [canisters]
    app = { ic = "sppxf-mqaaa-fake2-aaaaa-cai", local = "kipf3-nqaaa-fake3-aaaaa-cai" }
    shared = "plfju-2iaaa-fake4-aaaaa-cai"   # a string: the same id on every network

    [jobs.nightly]
    kind = "backup"          # backup | restore | archive-export | archive-import | verify
    source = "app"           # a canister name or id, or "file:<path>" for archives
    target = "app_backup"
    network = "ic"           # default: the top-level network
    options = { verify = true }
    schedule = "0 3 * * *"   # for `replicator serve`: 5-field cron (UTC) or "every 6h"
    jitter = "10m"           # spread jobs on the same schedule (a fixed offset per job)
    windows = ["01:00-05:00"]  # UTC; the job starts only inside a window

Relative paths are relative to the configuration file; ``~`` is expanded.
Entries of ``[canisters]`` win over ``canister_ids.json``.  Canister ids are
accepted in any case and kept in canonical lower case; the management
canister ``aaaaa-aa`` is never a source or target.  The file must be UTF-8.  Command-line flags
are applied as ``overrides`` (dotted keys such as ``"limits.in_flight"``)
before validation, so a bad flag is reported like a bad key.  Every problem
raises :class:`~replicator.errors.ConfigError` naming the file (or
``command line``), the key and what is expected.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import tomllib
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from canister_iface.certificate import BLS_KEY_DER_PREFIX
from canister_iface.principal import Principal
from replicator.errors import ConfigError
from replicator.job import ArchiveRef, CanisterRef, Endpoint, JobRequest, Scalar
from replicator.limits import AUTO, ByteBudget, LimitSettings, Window
from replicator.retry import RetryPolicy
from replicator.schedule import JobSchedule, parse_duration, parse_trigger
from replicator.topup import SOURCES, TopUpPolicy

log = logging.getLogger(__name__)

LOCAL, IC = "local", "ic"
DEFAULT_URLS = {LOCAL: "http://127.0.0.1:4943", IC: "https://icp-api.io"}
DEFAULT_CHECKPOINTS = "~/.local/state/replicator/checkpoints.sqlite3"
DEFAULT_JOB_RETENTION = 30 * 86400.0  # seconds a finished job stays in the checkpoint store
FOREVER = "forever"
FETCH, FETCH_INSECURE, BUILTIN = "fetch", "fetch-insecure", "builtin"
ROOT_KEY_SIZE = len(BLS_KEY_DER_PREFIX) + 96  # DER: the IC's BLS OIDs and a G2 point
MANAGEMENT_CANISTER = "aaaaa-aa"
COMMAND_LINE = "command line"
FILE_PREFIX = "file:"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_BYTE_BUDGET = '"auto" or a positive size: bytes, or a string like "2 MiB"'
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_CYCLES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kMBT])?\s*$")
_CYCLE_UNITS = {"": 1, "k": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

_TOP_KEYS = {
    "network",
    "canister_ids",
    "checkpoints",
    "job_retention",
    "networks",
    "identity",
    "limits",
    "retry",
    "metrics",
    "canisters",
    "jobs",
    "cycles",
    "store",
}
_STORE_KEYS = {"url", "takeover", "concurrency"}
DEFAULT_TAKEOVER = 30.0  # seconds: a dead worker's jobs run elsewhere within this bound
DEFAULT_WORKER_CONCURRENCY = 8  # scheduled jobs one `serve` worker runs at once
_CYCLES_KEYS = {"top_up", "top_up_below_days", "top_up_to_days", "reserve"}
_LIMIT_KEYS = {
    "calls_per_second",
    "bytes_per_second",
    "subnet_calls_per_second",
    "subnet_bytes_per_second",
    "global_calls_per_second",
    "global_bytes_per_second",
    "byte_burst",
    "in_flight",
    "in_flight_per_canister",
    "in_flight_reserved",
    "windows",
    "cycles_budget",
    "cycles_budget_period",
    "max_chunk_size",
    "min_chunk_size",
}
_JOB_KEYS = {"kind", "source", "target", "network", "options", "schedule", "jitter", "windows"}


@dataclass(frozen=True)
class Network:
    """Where a network's API is and how its root key is trusted."""

    name: str
    url: str
    root_key: bytes | None = None  # explicit key (DER); None: built in or fetched
    fetch_root_key: bool = False  # only ever for "local": at a loopback URL, or insecurely
    limits: LimitSettings = field(default_factory=LimitSettings)


@dataclass(frozen=True)
class ChunkSettings:
    max_size: int | None = None  # None: as large as the message limits allow
    min_size: int = 4 * 1024


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: a shared PostgreSQL store, and how ``serve`` workers share its jobs."""

    url: str | None = None  # postgresql://…; None: the SQLite file of ``checkpoints``
    takeover: float = DEFAULT_TAKEOVER
    concurrency: int = DEFAULT_WORKER_CONCURRENCY


@dataclass(frozen=True)
class MetricsSettings:
    port: int | None = None
    addr: str = "127.0.0.1"


@dataclass(frozen=True)
class JobTemplate:
    """A named job from ``[jobs.<name>]``, endpoints still as written."""

    name: str
    kind: str
    source: str
    target: str | None
    network: str | None
    options: Mapping[str, Scalar]
    schedule: JobSchedule | None = None  # None: run on demand only, never by `serve`


@dataclass(frozen=True)
class Config:
    """A validated configuration."""

    source: str  # the file, or "defaults"
    network: str
    networks: Mapping[str, Network]
    identity_pem: Path | None
    chunks: ChunkSettings
    retry: RetryPolicy
    metrics: MetricsSettings
    checkpoints: Path
    canisters: Mapping[str, Mapping[str, str]]  # name → network → id ("*": every network)
    jobs: Mapping[str, JobTemplate]
    top_up: TopUpPolicy = field(default_factory=TopUpPolicy)  # [cycles]
    job_retention: float | None = DEFAULT_JOB_RETENTION  # seconds; None: keep forever
    store: StoreSettings = field(default_factory=StoreSettings)  # [store]

    @property
    def state(self) -> Path | str:
        """Where checkpoints live: the PostgreSQL URL of ``[store]``, else the SQLite file."""
        return self.store.url if self.store.url is not None else self.checkpoints

    def network_named(self, name: str | None = None) -> Network:
        wanted = name or self.network
        if wanted not in self.networks:
            known = ", ".join(sorted(self.networks))
            raise ConfigError(
                COMMAND_LINE, "network", f"one of the configured networks ({known})", wanted
            )
        return self.networks[wanted]

    def limits_for(self, network: str | None = None) -> LimitSettings:
        return self.network_named(network).limits

    def canister(
        self,
        name_or_id: str,
        network: str | None = None,
        *,
        where: tuple[str, str] = (COMMAND_LINE, "canister"),
    ) -> CanisterRef:
        """Resolve a canister name (``[canisters]``, ``canister_ids.json``) or id.

        ``where`` is the ``(source, key)`` an error names: the command line by default.
        """
        net = self.network_named(network).name
        ids = self.canisters.get(name_or_id)
        if ids is not None:
            found = ids.get(net, ids.get("*"))
            if found is None:
                raise ConfigError(
                    self.source,
                    f"canisters.{name_or_id}",
                    f"an id for network {net!r} (it has: {', '.join(sorted(ids))})",
                )
            return CanisterRef(found, net)
        canonical = canonical_principal(name_or_id)
        if canonical == MANAGEMENT_CANISTER:
            raise ConfigError(*where, _NOT_MANAGEMENT, name_or_id)
        if canonical is not None:
            return CanisterRef(canonical, net)
        known = ", ".join(sorted(self.canisters)) or "none configured"
        raise ConfigError(
            *where,
            f"a canister id or a name from [canisters] or canister_ids.json (known: {known})",
            name_or_id,
        )

    def endpoint(
        self,
        text: str,
        network: str | None = None,
        *,
        where: tuple[str, str] = (COMMAND_LINE, "canister"),
    ) -> Endpoint:
        """``file:<path>`` → an archive; anything else → a canister."""
        if text.startswith(FILE_PREFIX):
            return ArchiveRef(text[len(FILE_PREFIX) :])
        return self.canister(text, network, where=where)

    def request(self, name: str) -> JobRequest:
        """What ``[jobs.<name>]`` asks for, its canisters resolved (a fresh job id each time)."""
        template = self.jobs.get(name)
        key = f"jobs.{name}"
        if template is None:
            known = ", ".join(sorted(self.jobs)) or "none configured"
            raise ConfigError(self.source, key, f"a configured job (known: {known})")
        net = template.network
        source = self.endpoint(template.source, net, where=(self.source, f"{key}.source"))
        target = None
        if template.target is not None:
            target = self.endpoint(template.target, net, where=(self.source, f"{key}.target"))
        return JobRequest(template.kind, source, target, options=dict(template.options))


def default_config() -> Config:
    """The configuration without a file."""
    return load_config(None)


def load_config(
    path: str | Path | None,
    *,
    overrides: Mapping[str, object] | None = None,
    canister_ids: list[str | Path] | None = None,
    kinds: Collection[str] | None = None,
) -> Config:
    """Read and validate ``path`` (``None``: defaults only), then apply ``overrides``.

    ``canister_ids`` adds dfx files given on the command line; ``kinds`` are
    the job kinds a ``[jobs.<name>]`` may name (``None``: not checked here;
    running the job checks it).
    """
    raw: dict[str, Any] = {}
    origin = "defaults"
    base = Path.cwd()
    if path is not None:
        file = Path(path).expanduser()
        origin, base = str(file), file.parent
        raw = _read_toml(file)
    touched = set()
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
        touched.add(key)
    parser = _Parser(origin, base, touched, kinds)
    config = parser.config(raw)
    extra = [Path(p).expanduser() for p in (canister_ids or [])]
    if extra:
        merged = _merge_ids(_read_canister_ids(p) for p in extra)
        config = replace(config, canisters={**merged, **config.canisters})
    return config


def read_canister_ids(path: str | Path) -> dict[str, dict[str, str]]:
    """dfx's ``canister_ids.json``: ``{"name": {"<network>": "<id>"}}``, validated."""
    return _read_canister_ids(Path(path).expanduser())


# ------------------------------------------------------------------- parsing


class _Parser:
    """Validates the raw TOML tables; knows where each key came from."""

    def __init__(
        self, origin: str, base: Path, overridden: set[str], kinds: Collection[str] | None
    ) -> None:
        self.origin = origin
        self.base = base
        self.overridden = overridden
        self.kinds = kinds

    def error(self, key: str, expected: str, got: object = None) -> ConfigError:
        from_flag = any(key == o or key.startswith(o + ".") for o in self.overridden)
        return ConfigError(COMMAND_LINE if from_flag else self.origin, key, expected, got)

    def config(self, raw: Mapping[str, Any]) -> Config:
        self.known_keys(raw, "", _TOP_KEYS)
        limits = self.limits(self.table(raw, "limits"), "limits", LimitSettings())
        networks = self.networks(self.table(raw, "networks"), limits)
        network = self.string(raw, "network", "network", default=IC)
        if network not in networks:
            raise self.error(
                "network", f"one of the networks ({', '.join(sorted(networks))})", network
            )
        canisters = self.canister_table(self.table(raw, "canisters"), networks)
        ids_files = self.paths(raw.get("canister_ids", []), "canister_ids")
        from_files = _merge_ids(_read_canister_ids(p) for p in ids_files)
        return Config(
            source=self.origin,
            network=network,
            networks=networks,
            identity_pem=self.identity(self.table(raw, "identity")),
            chunks=self.chunks(self.table(raw, "limits")),
            retry=self.retry(self.table(raw, "retry")),
            metrics=self.metrics(self.table(raw, "metrics")),
            checkpoints=self.checkpoints(raw.get("checkpoints", DEFAULT_CHECKPOINTS)),
            canisters={**from_files, **canisters},
            jobs=self.jobs(self.table(raw, "jobs"), networks),
            top_up=self.top_up(self.table(raw, "cycles")),
            job_retention=self.retention(raw.get("job_retention"), "job_retention"),
            store=self.store(raw.get("checkpoints"), self.table(raw, "store")),
        )

    # -- sections

    def networks(self, raw: Mapping[str, Any], limits: LimitSettings) -> dict[str, Network]:
        names = {LOCAL, IC} | set(raw)
        return {
            n: self.network(n, self.table(raw, n, f"networks.{n}"), limits) for n in sorted(names)
        }

    def network(self, name: str, raw: Mapping[str, Any], limits: LimitSettings) -> Network:
        key = f"networks.{name}"
        self.known_keys(raw, key, {"url", "root_key", "limits"})
        url = self.string(raw, "url", f"{key}.url", default=DEFAULT_URLS.get(name))
        if url is None or not re.match(r"^https?://[^/\s]+", url):
            raise self.error(f"{key}.url", "an http:// or https:// URL", url)
        if name == IC and not url.startswith("https://"):
            raise self.error(f"{key}.url", "an https:// URL for mainnet", url)
        policy = self.string(raw, "root_key", f"{key}.root_key", default=_default_root_key(name))
        root_key, fetch = self.root_key(name, url, policy, f"{key}.root_key")
        own_limits = self.limits(
            self.table(raw, "limits", f"{key}.limits"), f"{key}.limits", limits
        )
        return Network(name, url.rstrip("/"), root_key, fetch, own_limits)

    def root_key(
        self, network: str, url: str, policy: str | None, key: str
    ) -> tuple[bytes | None, bool]:
        """``(pinned key, fetch it)``; fetching is only for a local replica on this machine."""
        if policy in (FETCH, FETCH_INSECURE):
            if network != LOCAL:
                raise self.error(
                    key,
                    f"{policy!r} only for the network 'local' (a key fetched from the network "
                    "it should authenticate proves nothing); give the DER root key in hex",
                    policy,
                )
            if policy == FETCH and not is_loopback_url(url):
                raise self.error(
                    key,
                    f"'fetch' only for a replica on this machine (a loopback URL such as "
                    f"http://127.0.0.1:4943), not {url}: anyone between here and there could "
                    "hand out their own key and forge every answer. Give the DER root key in "
                    "hex (`replicator localnet start` and `dfx ping` print it), or "
                    "'fetch-insecure' if you accept that risk",
                    policy,
                )
            if policy == FETCH_INSECURE:
                log.warning(
                    "INSECURE: %s = 'fetch-insecure': trusting whatever root key %s publishes; "
                    "anyone between here and there can forge its answers",
                    key,
                    url,
                )
            return None, True
        if policy == BUILTIN:
            if network != IC:
                raise self.error(key, "'builtin' only for 'ic'; use 'fetch' (local) or hex", policy)
            return None, False
        if policy is None:
            raise self.error(
                key,
                "the network's DER root key in hex (133 bytes, as `replicator localnet start` "
                "prints it): only 'ic' has a built-in key and only 'local' may fetch one",
            )
        return self.der_root_key(policy, key), False

    def der_root_key(self, text: str, key: str) -> bytes:
        expected = (
            f"'fetch', 'builtin' or the DER root key in hex: {ROOT_KEY_SIZE} bytes starting "
            f"with {BLS_KEY_DER_PREFIX[:8].hex()}… (as `replicator localnet start` prints it)"
        )
        try:
            der = bytes.fromhex(text)
        except ValueError:
            raise self.error(key, expected, text) from None
        if len(der) != ROOT_KEY_SIZE:
            raise self.error(key, f"{expected}; this one has {len(der)} bytes")
        if not der.startswith(BLS_KEY_DER_PREFIX):
            raise self.error(
                key, f"{expected}; this one starts with {der[:8].hex()}…, not an IC BLS key"
            )
        return der

    def limits(self, raw: Mapping[str, Any], key: str, base: LimitSettings) -> LimitSettings:
        self.known_keys(raw, key, _LIMIT_KEYS)
        changes: dict[str, Any] = {}
        for name in ("calls_per_second", "subnet_calls_per_second", "global_calls_per_second"):
            if name in raw:
                changes[name] = self.positive_float(raw[name], f"{key}.{name}")
        changes.update(self.limit_sizes(raw, key))
        for name in ("in_flight", "in_flight_per_canister"):
            if name in raw:
                changes[name] = self.integer(raw[name], f"{key}.{name}", minimum=1)
        if "in_flight_reserved" in raw:
            reserved = self.integer(
                raw["in_flight_reserved"], f"{key}.in_flight_reserved", minimum=0
            )
            in_flight = changes.get("in_flight", base.in_flight)
            if not 0 <= reserved < in_flight:
                raise self.error(
                    f"{key}.in_flight_reserved",
                    f"0 to in_flight - 1 ({in_flight - 1}): slots kept for standbys",
                    reserved,
                )
            changes["in_flight_reserved"] = reserved
        if "windows" in raw:
            changes["windows"] = self.windows(raw["windows"], f"{key}.windows")
        if "cycles_budget" in raw:
            changes["cycles_budget"] = self.cycles(raw["cycles_budget"], f"{key}.cycles_budget")
        if "cycles_budget_period" in raw:
            changes["cycles_budget_period"] = self.period(
                raw["cycles_budget_period"], f"{key}.cycles_budget_period"
            )
        return replace(base, **changes)

    def chunks(self, raw: Mapping[str, Any]) -> ChunkSettings:
        settings = ChunkSettings()
        if "max_chunk_size" in raw:
            settings = replace(
                settings, max_size=self.size(raw["max_chunk_size"], "limits.max_chunk_size")
            )
        if "min_chunk_size" in raw:
            settings = replace(
                settings, min_size=self.size(raw["min_chunk_size"], "limits.min_chunk_size")
            )
        if settings.max_size is not None and settings.max_size < settings.min_size:
            raise self.error(
                "limits.max_chunk_size", "at least limits.min_chunk_size", settings.max_size
            )
        return settings

    def retry(self, raw: Mapping[str, Any]) -> RetryPolicy:
        fields = {"max_attempts", "max_seconds", "initial_wait", "max_wait"}
        self.known_keys(raw, "retry", fields)
        changes: dict[str, Any] = {}
        if "max_attempts" in raw:
            changes["max_attempts"] = self.integer(
                raw["max_attempts"], "retry.max_attempts", minimum=1
            )
        for name in ("max_seconds", "initial_wait", "max_wait"):
            if name in raw:
                changes[name] = self.positive_float(raw[name], f"retry.{name}")
        return replace(RetryPolicy(), **changes)

    def metrics(self, raw: Mapping[str, Any]) -> MetricsSettings:
        self.known_keys(raw, "metrics", {"port", "addr"})
        port = None
        if "port" in raw:
            port = self.integer(raw["port"], "metrics.port", minimum=0, maximum=65535)
        addr = self.string(raw, "addr", "metrics.addr", default="127.0.0.1")
        return MetricsSettings(port, addr or "127.0.0.1")

    def checkpoints(self, value: object) -> Path:
        if _is_store_url(value):  # a PostgreSQL store (see store()): no file
            return Path(DEFAULT_CHECKPOINTS).expanduser()
        return self.path(value, "checkpoints")

    def store(self, checkpoints: object, raw: Mapping[str, Any]) -> StoreSettings:
        self.known_keys(raw, "store", _STORE_KEYS)
        url = self.string(raw, "url", "store.url")
        if url is not None and not _is_store_url(url):
            raise self.error("store.url", "a postgresql://user@host:port/database URL", url)
        from_flag = "checkpoints" in self.overridden  # --state wins over the file
        if _is_store_url(checkpoints):
            if url is not None and url != checkpoints and not from_flag:
                raise self.error(
                    "store.url",
                    "one store: checkpoints names another PostgreSQL URL; keep one of them",
                    url,
                )
            url = str(checkpoints)
        elif from_flag:
            url = None  # --state FILE: the SQLite file, whatever [store] url says
        takeover = DEFAULT_TAKEOVER
        if "takeover" in raw:
            takeover = self.duration_value(raw["takeover"], "store.takeover")
            if takeover < 3:
                raise self.error("store.takeover", "a duration of at least 3s", raw["takeover"])
        concurrency = DEFAULT_WORKER_CONCURRENCY
        if "concurrency" in raw:
            concurrency = self.integer(
                raw["concurrency"], "store.concurrency", minimum=1, maximum=1024
            )
        return StoreSettings(url, takeover, concurrency)

    def duration_value(self, value: object, key: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, f"a duration like '30s' ({exc})", value) from None

    def top_up(self, raw: Mapping[str, Any]) -> TopUpPolicy:
        self.known_keys(raw, "cycles", _CYCLES_KEYS)
        policy = TopUpPolicy()
        source = self.string(raw, "top_up", "cycles.top_up", default=policy.source)
        if source not in SOURCES:
            raise self.error("cycles.top_up", f"one of {', '.join(SOURCES)}", source)
        below, to = policy.below_days, policy.to_days
        if "top_up_below_days" in raw:
            below = self.days(raw["top_up_below_days"], "cycles.top_up_below_days")
        if "top_up_to_days" in raw:
            to = self.days(raw["top_up_to_days"], "cycles.top_up_to_days")
        if to < below:
            raise self.error(
                "cycles.top_up_to_days", f"at least cycles.top_up_below_days ({below})", to
            )
        reserve = policy.reserve
        if "reserve" in raw:
            reserve = self.cycles(raw["reserve"], "cycles.reserve")
        return TopUpPolicy(source or "auto", below, to, reserve)

    def days(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "a number of days (0 or more)", value)
        if not (value >= 0 and math.isfinite(value)):
            raise self.error(key, "a number of days (0 or more)", value)
        return float(value)

    def identity(self, raw: Mapping[str, Any]) -> Path | None:
        self.known_keys(raw, "identity", {"pem"})
        return None if "pem" not in raw else self.path(raw["pem"], "identity.pem")

    def canister_table(
        self, raw: Mapping[str, Any], networks: Mapping[str, Network]
    ) -> dict[str, dict[str, str]]:
        result: dict[str, dict[str, str]] = {}
        for name, value in raw.items():
            key = f"canisters.{name}"
            if isinstance(value, str):
                result[name] = {"*": self.principal(value, key)}
                continue
            if not isinstance(value, Mapping) or not value:
                raise self.error(key, 'a canister id, or a table like { ic = "<id>" }', value)
            for net, cid in value.items():
                if net not in networks:
                    raise self.error(
                        f"{key}.{net}", f"a configured network ({', '.join(sorted(networks))})"
                    )
                result.setdefault(name, {})[net] = self.principal(cid, f"{key}.{net}")
        return result

    def jobs(
        self, raw: Mapping[str, Any], networks: Mapping[str, Network]
    ) -> dict[str, JobTemplate]:
        return {
            name: self.job(name, self.table(raw, name, f"jobs.{name}"), networks) for name in raw
        }

    def job(
        self, name: str, raw: Mapping[str, Any], networks: Mapping[str, Network]
    ) -> JobTemplate:
        key = f"jobs.{name}"
        self.known_keys(raw, key, _JOB_KEYS)
        kind = self.string(raw, "kind", f"{key}.kind")
        if kind is None or (self.kinds is not None and kind not in self.kinds):
            known = ", ".join(sorted(self.kinds or ())) or "a job kind"
            raise self.error(f"{key}.kind", f"one of {known}", kind)
        source = self.string(raw, "source", f"{key}.source")
        if source is None:
            raise self.error(f"{key}.source", "a canister name or id, or file:<path>")
        network = self.string(raw, "network", f"{key}.network")
        if network is not None and network not in networks:
            raise self.error(
                f"{key}.network", f"a configured network ({', '.join(sorted(networks))})", network
            )
        options = self.table(raw, "options", f"{key}.options")
        for opt, value in options.items():
            if not isinstance(value, str | int | float | bool):
                raise self.error(f"{key}.options.{opt}", "a string, number or boolean", value)
        return JobTemplate(
            name=name,
            kind=kind,
            source=self.archive_path(source) or source,
            target=self.archive_path(self.string(raw, "target", f"{key}.target")),
            network=network,
            options=dict(options),
            schedule=self.schedule(raw, key),
        )

    def schedule(self, raw: Mapping[str, Any], key: str) -> JobSchedule | None:
        text = self.string(raw, "schedule", f"{key}.schedule")
        if text is None:
            for name in ("jitter", "windows"):
                if name in raw:
                    raise self.error(f"{key}.{name}", f"{key}.schedule to be set as well")
            return None
        try:
            trigger = parse_trigger(text)
        except ValueError as exc:
            raise self.error(
                f"{key}.schedule", f"a 5-field cron expression (UTC) or 'every <duration>' ({exc})"
            ) from None
        jitter = 0.0
        if "jitter" in raw:
            try:
                jitter = parse_duration(raw["jitter"])
            except ValueError as exc:
                raise self.error(f"{key}.jitter", f"a duration like '10m' ({exc})") from None
        windows = self.windows(raw.get("windows", []), f"{key}.windows")
        return JobSchedule(trigger, jitter, windows)

    # -- values

    def known_keys(self, raw: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for name in raw:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.error(where, f"one of the keys {', '.join(sorted(allowed))} (a typo?)")

    def table(self, raw: Mapping[str, Any], name: str, key: str | None = None) -> Mapping[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, Mapping):
            raise self.error(key or name, "a table", value)
        return value

    def string(
        self, raw: Mapping[str, Any], name: str, key: str, *, default: str | None = None
    ) -> str | None:
        value = raw.get(name, default)
        if value is not None and not isinstance(value, str):
            raise self.error(key, "a string", value)
        return value

    def integer(self, value: object, key: str, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "an integer", value)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and at most {maximum}" if maximum is not None else ""
            raise self.error(key, f"an integer of at least {minimum}{bound}", value)
        return value

    def positive_float(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "a positive number", value)
        if not (value > 0 and math.isfinite(value)):
            raise self.error(key, "a positive number", value)
        return float(value)

    def size(self, value: object, key: str) -> int:
        expected = 'a positive size: bytes, or a string like "2 MiB" or "512KiB"'
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                raise self.error(key, expected, value)
            return value
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.error(key, expected, value)
        result = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
        if result <= 0:
            raise self.error(key, expected, value)
        return result

    def limit_sizes(self, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
        names = ("byte_burst", "subnet_bytes_per_second", "global_bytes_per_second")
        sizes: dict[str, Any] = {
            name: self.size(raw[name], f"{key}.{name}") for name in names if name in raw
        }
        if "bytes_per_second" in raw:
            sizes["bytes_per_second"] = self.byte_budget(
                raw["bytes_per_second"], f"{key}.bytes_per_second"
            )
        return sizes

    def byte_budget(self, value: object, key: str) -> ByteBudget:
        """``"auto"`` (a rate per way bytes travel, see :class:`LimitSettings`) or a size."""
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        try:
            return self.size(value, key)
        except ConfigError:
            raise self.error(key, _BYTE_BUDGET, value) from None

    def cycles(self, value: object, key: str) -> int:
        expected = 'a number of cycles, or a string like "5T" (T = 10^12, B = 10^9, M, k)'
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise self.error(key, expected, value)
            return value
        match = _CYCLES.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.error(key, expected, value)
        return int(float(match.group(1)) * _CYCLE_UNITS[match.group(2) or ""])

    def period(self, value: object, key: str) -> float:
        expected = "a duration of at least a minute, like '1d', '12h' or '7d'"
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, f"{expected} ({exc})") from None
        if seconds < 60:
            raise self.error(key, expected, value)
        return seconds

    def retention(self, value: object, key: str) -> float | None:
        if value is None:
            return DEFAULT_JOB_RETENTION
        if value == FOREVER:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, f"a duration like '30d', or 'forever' ({exc})") from None

    def windows(self, value: object, key: str) -> tuple[Window, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(key, 'a list of UTC windows like ["01:00-05:00"]', value)
        result = []
        for i, item in enumerate(value):
            try:
                result.append(Window.parse(str(item)))
            except ValueError as exc:
                raise self.error(
                    f"{key}[{i}]", f"a UTC window like '01:00-05:00' ({exc})"
                ) from None
        return tuple(result)

    def principal(self, value: object, key: str) -> str:
        canonical = canonical_principal(value) if isinstance(value, str) else None
        if canonical is None:
            raise self.error(key, f"a canister id like {EXAMPLE_ID!r}", value)
        if canonical == MANAGEMENT_CANISTER:
            raise self.error(key, _NOT_MANAGEMENT, value)
        return canonical

    def path(self, value: object, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(key, "a file path", value)
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def paths(self, value: object, key: str) -> list[Path]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.error(key, "a file path or a list of them", value)
        return [self.path(v, f"{key}[{i}]") for i, v in enumerate(items)]

    def archive_path(self, text: str | None) -> str | None:
        # file: paths in the config are relative to the config file, like every path.
        if text is None or not text.startswith(FILE_PREFIX):
            return text
        return FILE_PREFIX + str(self.path(text[len(FILE_PREFIX) :], "file"))


def _is_store_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def _default_root_key(network: str) -> str | None:
    return {LOCAL: "fetch", IC: "builtin"}.get(network)


EXAMPLE_ID = "sppxf-mqaaa-fake2-aaaaa-cai"  # an obviously made-up canister id
_NOT_MANAGEMENT = (
    "the id of a canister holding state: aaaaa-aa is the management canister (the IC's "
    "own interface), which is never a source or target"
)


def canonical_principal(text: str) -> str | None:
    """``text`` as a principal in canonical form (any case accepted), or ``None``."""
    try:
        return Principal.from_text(text.strip().lower()).to_text()
    except ValueError:
        return None


def is_loopback_url(url: str) -> bool:
    """Does ``url`` name this machine (127.0.0.0/8, ::1, ``localhost``)?"""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            "",
            f"a UTF-8 text file (byte {exc.start} is 0x{exc.object[exc.start]:02x}, which is "
            "not UTF-8): save it as UTF-8",
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            str(path), "", "an existing configuration file (it does not exist)"
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"a readable file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"valid TOML ({exc})") from None


def _read_canister_ids(path: Path) -> dict[str, dict[str, str]]:
    expected = 'a dfx canister_ids.json: {"<name>": {"<network>": "<canister id>"}}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            str(path), "", "an existing canister_ids.json (deploy with dfx first, or remove it)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), "", f"{expected} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", expected, type(data).__name__)
    result: dict[str, dict[str, str]] = {}
    for name, ids in data.items():
        if not isinstance(ids, dict) or not ids:
            raise ConfigError(str(path), name, '{"<network>": "<canister id>"}', ids)
        result[name] = {}
        for network, cid in ids.items():
            canonical = canonical_principal(cid) if isinstance(cid, str) else None
            if canonical is None:
                raise ConfigError(str(path), f"{name}.{network}", "a canister id", cid)
            if canonical == MANAGEMENT_CANISTER:
                raise ConfigError(str(path), f"{name}.{network}", _NOT_MANAGEMENT, cid)
            result[name][network] = canonical
    return result


def _merge_ids(tables: Iterable[Mapping[str, Mapping[str, str]]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for table in tables:
        for name, ids in table.items():
            merged.setdefault(name, {}).update(ids)
    return merged


def _set_dotted(raw: dict[str, Any], key: str, value: object) -> None:
    parts = key.split(".")
    table = raw
    for part in parts[:-1]:
        nxt = table.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(COMMAND_LINE, key, f"{part!r} to be a table")
        table = nxt
    table[parts[-1]] = value
