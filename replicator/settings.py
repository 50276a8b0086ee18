"""How the engine runs jobs: :class:`EngineSettings`, filled from a configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from replicator.config import Config
from replicator.errors import UsageError
from replicator.limits import LimitSettings
from replicator.retry import RetryPolicy
from replicator.routes import Route, check_via
from replicator.topup import TopUpPolicy

T = 10**12
# Runs in flight per job: as many as a canister's in-flight slots, so that
# same-subnet pushes (~3 s a round trip on the subnet model, 1 MiB each) reach
# the 16 MiB/s budget inside a subnet; the byte budget bounds the routes
# through a block.
RUNS_PER_JOB = 64


@dataclass(frozen=True)
class Transfer:
    """Bounds of the adaptive transfer size (``[chunks] max_size/min_size``)."""

    max_size: int | None = None
    min_size: int = 4 * 1024


CREATE_METHODS = ("auto", "provisional", "ledger")


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs jobs; :meth:`from_config` fills it from a configuration."""

    limits: LimitSettings = field(default_factory=LimitSettings)
    network_limits: Mapping[str, LimitSettings] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transfer: Transfer = field(default_factory=Transfer)
    concurrency: int = RUNS_PER_JOB  # runs in flight per job
    via: str = Route.DIRECT  # default path between two canisters
    controllers: tuple[str, ...] = ()  # of created canisters; () = the identity alone
    initial_cycles: int = 2 * T  # cycles a created canister starts with
    create_with: str = "auto"  # "provisional" (local), "ledger" (mainnet), "auto": by network
    cycles_ledger: str | None = None  # the cycles ledger's id (None: mainnet's)
    backup_keep: int | None = None  # images a created backup canister keeps (None: its default)
    max_restarts: int = 2  # fresh starts after a Restart (e.g. StaleSnapshot) within one run
    top_up: TopUpPolicy = field(default_factory=TopUpPolicy)  # keeps created backups alive

    def __post_init__(self) -> None:
        check_via(self.via)
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.create_with not in CREATE_METHODS:
            raise UsageError(
                f"create_with must be auto, provisional or ledger, got {self.create_with!r}"
            )

    def limits_for(self, network: str) -> LimitSettings:
        return self.network_limits.get(network, self.limits)

    def create_method(self, network: str) -> str:
        """``provisional`` or ``ledger`` for ``network`` (``auto``: provisional on local)."""
        if self.create_with != "auto":
            return self.create_with
        return "provisional" if network == "local" else "ledger"

    @classmethod
    def from_config(cls, config: Config, **changes: object) -> EngineSettings:
        settings = cls(
            limits=config.limits_for(None),
            network_limits={name: n.limits for name, n in config.networks.items()},
            retry=config.retry,
            transfer=Transfer(config.chunks.max_size, config.chunks.min_size),
            top_up=config.top_up,
        )
        return replace(settings, **changes)  # type: ignore[arg-type]
