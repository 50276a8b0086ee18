"""The opt-in subnet model's parameters (``LocalNet(subnet_model=...)``, ``--subnet-model``).

Plain data, standard library only: the CLI parses ``--subnet-model`` before
anything loads wasmtime. :mod:`localnet.fabric` executes the model.

Sources for the defaults (an IC application subnet, 2026):

- interface spec 0.66 and the IC's "Resource limits" page: a block carries
  at most 4 MiB and 1000 ingress messages; 2 MiB per cross-subnet message;
- the replica: ``DEFAULT_QUEUE_CAPACITY`` = 500 (``rs/replicated_state``,
  canister queues: slots per (caller, callee) pair, reserved for the response
  by ``ic0.call_perform``); the production node config caps the ingress pool
  at 10,000 messages and 100,000,000 bytes (``ingress_pool_max_count`` /
  ``ingress_pool_max_bytes``), beyond which the HTTP endpoint answers 503
  "Service is overloaded, try again later." (``rs/http_endpoints/public/src/call.rs``);
- block rate: about one per second on application subnets (public dashboard);
  a cross-subnet message is certified at the end of the round that sent it
  and inducted by the other subnet one or two blocks later.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

MiB = 1024 * 1024
MAX_XNET_PAYLOAD = 2 * MiB  # the IC's MAX_INTER_CANISTER_PAYLOAD_IN_BYTES across subnets


@dataclass(frozen=True)
class SubnetModel:
    """How a modelled subnet executes (see the module doc for the sources)."""

    rounds_per_second: float = 1.0  # 0: rounds run only when asked (LocalNet.run_rounds)
    block_bytes: int = 4 * MiB  # ingress and XNet payload of one block
    block_ingress_messages: int = 1000
    local_delay_rounds: int = 1  # same-subnet request/response: next round
    xnet_delay_rounds: int = 2  # certified in round r, inducted by the other subnet at r + 2
    max_xnet_payload: int = MAX_XNET_PAYLOAD
    queue_capacity: int = 500  # outstanding requests per (caller, callee) pair
    ingress_pool_messages: int = 10_000  # per subnet; beyond it HTTP 503
    ingress_pool_bytes: int = 100_000_000

    def __post_init__(self) -> None:
        rate = self.rounds_per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1000:
            raise ValueError(
                f"rounds_per_second must be a number from 0 (manual rounds) to 1000, got {rate!r}"
            )
        for name, low in (
            ("block_bytes", 1),
            ("block_ingress_messages", 1),
            ("local_delay_rounds", 0),
            ("xnet_delay_rounds", 1),
            ("max_xnet_payload", 1),
            ("queue_capacity", 1),
            ("ingress_pool_messages", 1),
            ("ingress_pool_bytes", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")

    @property
    def round_seconds(self) -> float:
        return 1.0 / self.rounds_per_second if self.rounds_per_second else 0.0

    @classmethod
    def parse(cls, text: str) -> SubnetModel:
        """``"rounds_per_second=20,xnet_delay_rounds=3"`` (the CLI's ``--subnet-model``)."""
        changes: dict[str, Any] = {}
        known = [f.name for f in fields(cls)]
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ValueError(
                    f"--subnet-model takes NAME=VALUE pairs separated by commas; {item!r} is "
                    f"not one (names: {', '.join(known)})"
                )
            try:
                changes[name] = float(raw) if name == "rounds_per_second" else int(raw)
            except ValueError as exc:
                raise ValueError(f"--subnet-model {name}: {raw!r} is not a number") from exc
        return replace(cls(), **changes)

    def to_arg(self) -> str:
        """The ``--subnet-model`` text that :meth:`parse` turns back into this model."""
        return ",".join(f"{name}={value}" for name, value in self.to_json().items())

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
