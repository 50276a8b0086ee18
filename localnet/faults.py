"""Fault injection: the failures the orchestrator must survive, on demand.

A :class:`Faults` object holds one :class:`FaultConfig` and answers the
questions the HTTP layer and the node ask on every request:

- HTTP layer: how long to delay this endpoint (:meth:`Faults.delay_s`), and
  whether to answer 429 / 503 instead (:meth:`Faults.http_fault`);
- node: whether to reject a call with ``SYS_TRANSIENT`` (reject code 2,
  ``IC0101``) (:meth:`Faults.transient_reject_for`), whether a canister is to be
  treated as stopped (reject code 5, ``IC0508``) (:meth:`Faults.stopped_reject_for`),
  and which message-size limits apply (:meth:`Faults.limits`).

Random decisions are deterministic for a seed: each decision family (latency
jitter and HTTP faults per endpoint kind, transient rejects) draws from its
own ``random.Random`` seeded from ``FaultConfig.seed``, so traffic on one
endpoint does not shift the outcomes on another.  Every change of the config
(:meth:`Faults.set`, :meth:`Faults.replace`, :meth:`Faults.reset`) re-seeds the
streams: "configure, then run" replays the same faults.

Thread-safe: the node reads it from its execution thread while the event loop
serves HTTP.  The JSON form (:meth:`FaultConfig.to_json`) is what the admin
endpoint ``/_/faults`` reads and writes.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from localnet import ids
from localnet.errors import ErrorCode, Reject, RejectCode
from localnet.limits import Limits

EndpointKind = Literal["status", "query", "call", "read_state"]
ENDPOINT_KINDS: tuple[EndpointKind, ...] = get_args(EndpointKind)

_PER_ENDPOINT = ("latency_s", "jitter_s", "http_429", "http_503")
_PROBABILITIES = ("http_429", "http_503")


@dataclass(frozen=True)
class FaultConfig:
    """What to inject. Empty / zero fields inject nothing.

    Per-endpoint fields map an :data:`EndpointKind` to a value; kinds not
    listed get nothing.  ``transient_canisters`` / ``transient_methods`` narrow
    ``transient_reject`` to those canisters / methods; empty means all.
    """

    seed: int = 0
    latency_s: Mapping[EndpointKind, float] = field(default_factory=dict)
    jitter_s: Mapping[EndpointKind, float] = field(default_factory=dict)
    http_429: Mapping[EndpointKind, float] = field(default_factory=dict)
    http_503: Mapping[EndpointKind, float] = field(default_factory=dict)
    retry_after_s: int | None = None
    transient_reject: float = 0.0
    transient_canisters: frozenset[bytes] = frozenset()
    transient_methods: frozenset[str] = frozenset()
    stopped_canisters: frozenset[bytes] = frozenset()
    payload_cap: int | None = None

    def __post_init__(self) -> None:
        for name in _PER_ENDPOINT:
            object.__setattr__(self, name, _endpoint_map(name, getattr(self, name)))
        for name in ("transient_canisters", "stopped_canisters"):
            object.__setattr__(self, name, _id_set(name, getattr(self, name)))
        object.__setattr__(self, "transient_methods", _method_set(self.transient_methods))
        self._validate()

    def _validate(self) -> None:
        for kind in ENDPOINT_KINDS:
            total = self.http_429.get(kind, 0.0) + self.http_503.get(kind, 0.0)
            if total > 1.0:
                raise ValueError(
                    f"http_429 + http_503 for {kind!r} is {total}: the two are exclusive "
                    "outcomes of one draw, so their sum must be at most 1"
                )
        _check_probability("transient_reject", self.transient_reject)
        retry = self.retry_after_s
        if retry is not None and (
            isinstance(retry, bool) or not isinstance(retry, int) or retry < 0
        ):
            raise ValueError(f"retry_after_s must be a whole number of seconds >= 0, got {retry!r}")
        cap = self.payload_cap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"payload_cap must be a positive byte count, got {cap!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; canister ids in their textual form."""
        return {
            "seed": self.seed,
            **{name: dict(getattr(self, name)) for name in _PER_ENDPOINT},
            "retry_after_s": self.retry_after_s,
            "transient_reject": self.transient_reject,
            "transient_canisters": sorted(ids.to_text(c) for c in self.transient_canisters),
            "transient_methods": sorted(self.transient_methods),
            "stopped_canisters": sorted(ids.to_text(c) for c in self.stopped_canisters),
            "payload_cap": self.payload_cap,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultConfig | None = None) -> FaultConfig:
        """Parse the :meth:`to_json` form; fields not given keep ``base``'s values.

        Raises ``ValueError`` naming the offending field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"fault config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault config field(s) {unknown}; known: {sorted(known)}")
        changes = {name: _from_json_value(name, value) for name, value in data.items()}
        return dataclasses.replace(base or cls(), **changes)


def _endpoint_map(name: str, value: Any) -> dict[EndpointKind, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map endpoint kinds {list(ENDPOINT_KINDS)} to numbers")
    result: dict[EndpointKind, float] = {}
    for kind, number in value.items():
        if kind not in ENDPOINT_KINDS:
            raise ValueError(f"{name}: unknown endpoint kind {kind!r}; use {list(ENDPOINT_KINDS)}")
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise ValueError(f"{name}[{kind!r}] must be a number >= 0, got {number!r}")
        if name in _PROBABILITIES:
            _check_probability(f"{name}[{kind!r}]", number)
        result[kind] = float(number)
    return result


def _check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability and must be in [0, 1], got {value!r}")


def _id_set(name: str, value: Iterable[bytes | str]) -> frozenset[bytes]:
    """Canister ids as raw bytes; textual ids are accepted for convenience."""
    if isinstance(value, str | bytes):
        raise ValueError(f"{name} must be a collection of canister ids, not a single id")
    result = set()
    for item in value:
        result.add(ids.from_text(item) if isinstance(item, str) else bytes(item))
    return frozenset(result)


def _method_set(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(m, str) for m in value):
        raise ValueError(f"transient_methods must be a collection of method names, got {value!r}")
    return frozenset(value)


def _from_json_value(name: str, value: Any) -> Any:
    if name in ("transient_canisters", "stopped_canisters", "transient_methods"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings, got {value!r}")
        return frozenset(value)
    return value


@dataclass(frozen=True)
class HttpFault:
    """An injected HTTP error response."""

    status: int
    message: str
    retry_after_s: int | None


_SEPARATE_STREAMS = [f"{part}/{kind}" for part in ("jitter", "http") for kind in ENDPOINT_KINDS]


class Faults:
    """The current fault config plus the random streams that realise it."""

    def __init__(self, config: FaultConfig | None = None, *, seed: int = 0) -> None:
        """Start from ``config``, or from no faults with random streams seeded by ``seed``."""
        self._lock = threading.Lock()
        self._config = config or FaultConfig(seed=seed)
        self._streams = self._seed_streams(self._config.seed)

    @staticmethod
    def _seed_streams(seed: int) -> dict[str, random.Random]:
        # String seeds are hashed with SHA-512 by `random`: stable across runs
        # and independent of PYTHONHASHSEED.
        names = [*_SEPARATE_STREAMS, "transient"]
        return {name: random.Random(f"localnet-faults/{seed}/{name}") for name in names}

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def replace(self, config: FaultConfig) -> None:
        """Install ``config`` and re-seed every random stream."""
        with self._lock:
            self._config = config
            self._streams = self._seed_streams(config.seed)

    def set(self, **changes: Any) -> FaultConfig:
        """Change some fields, e.g. ``set(latency_s={"call": 1.5}, http_429={"call": 0.2})``."""
        with self._lock:
            config = dataclasses.replace(self._config, **changes)
            self._config = config
            self._streams = self._seed_streams(config.seed)
            return config

    def reset(self) -> None:
        """No faults at all (and seed 0)."""
        self.replace(FaultConfig())

    def to_json(self) -> dict[str, Any]:
        return self.config.to_json()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        return cls(FaultConfig.from_json(data))

    # --- questions the HTTP layer asks ---

    def delay_s(self, kind: EndpointKind) -> float:
        """Latency to add before serving a ``kind`` request: fixed part + uniform jitter."""
        with self._lock:
            base = self._config.latency_s.get(kind, 0.0)
            jitter = self._config.jitter_s.get(kind, 0.0)
            if jitter:
                base += self._streams[f"jitter/{kind}"].uniform(0.0, jitter)
            return base

    def http_fault(self, kind: EndpointKind) -> HttpFault | None:
        """429 / 503 instead of serving this request, or None to serve it."""
        with self._lock:
            p429 = self._config.http_429.get(kind, 0.0)
            p503 = self._config.http_503.get(kind, 0.0)
            if not (p429 or p503):
                return None
            draw = self._streams[f"http/{kind}"].random()
            retry_after = self._config.retry_after_s
        if draw < p429:
            return HttpFault(
                429, "The service is overloaded. (localnet fault injection)", retry_after
            )
        if draw < p429 + p503:
            return HttpFault(
                503,
                "Service is overloaded, try again later. (localnet fault injection)",
                retry_after,
            )
        return None

    # --- questions the node asks ---

    def transient_reject_for(self, canister_id: bytes, method: str) -> Reject | None:
        """A SYS_TRANSIENT reject for this call, or None to execute it normally."""
        with self._lock:
            config = self._config
            if not config.transient_reject:
                return None
            if config.transient_canisters and canister_id not in config.transient_canisters:
                return None
            if config.transient_methods and method not in config.transient_methods:
                return None
            if self._streams["transient"].random() >= config.transient_reject:
                return None
        return Reject(
            RejectCode.SYS_TRANSIENT,
            f"Canister {ids.to_text(canister_id)} did not execute {method!r}: the subnet is "
            "oversubscribed (localnet fault injection). Retry later.",
            ErrorCode.SUBNET_OVERSUBSCRIBED,
        )

    def stopped_reject_for(self, canister_id: bytes) -> Reject | None:
        """The replica's reject for a message to a stopped canister, if faults say it is."""
        if not self.is_stopped(canister_id):
            return None
        return Reject(
            RejectCode.CANISTER_ERROR,
            f"Canister {ids.to_text(canister_id)} is stopped (localnet fault injection).",
            ErrorCode.CANISTER_STOPPED,
        )

    def is_stopped(self, canister_id: bytes) -> bool:
        """Whether the node must treat ``canister_id`` as stopped (reject 5, IC0508)."""
        return canister_id in self.config.stopped_canisters

    @property
    def stopped_canisters(self) -> frozenset[bytes]:
        return self.config.stopped_canisters

    def payload_cap(self) -> int | None:
        """The injected cap on message sizes in bytes, or None."""
        return self.config.payload_cap

    def limits(self, base: Limits) -> Limits:
        """``base`` with the injected payload cap applied, if any."""
        cap = self.config.payload_cap
        return base if cap is None else base.with_payload_cap(cap)
