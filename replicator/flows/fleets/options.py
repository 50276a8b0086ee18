"""A fleet job's options, checked once (the planner) and read by the performer.

==============  ===========================================================  ========
option          meaning                                                      default
==============  ===========================================================  ========
``name``        the fleet's name: its member table and the metrics' label    its job
``network``     the members' network (a canister index: the index's own)    —
``index``       ``icrp`` (``icrp_fleet_members``) or a plain method's name  ``icrp``
``members``     static ids (commas or spaces), added to the source's         —
``every``       how often each member is due (``1d``, ``6h``, seconds)       ``1d``
``due``         run only the members that are due                            see below
``concurrency`` members running at once                                      8
``keep``        images a newly created backup canister keeps                 —
``pool``        warm-pool backup canisters kept ready on the network         0
``controlled_by`` keep the listed canisters this principal (or ``me``)       —
                controls (certified controllers)
``action``      what each member's job does (:data:`ACTIONS`)               ``backup``
``repository``  ``snapshot-backup``: the snapshot repository directory the   —
                whole fleet shares (members' chunks dedupe across members)
``stop``        ``snapshot-backup``: stop each member for its snapshot       true
``wasm``        ``compact``: the module the members run (one build for all)  see below
``cycles_budget`` cycles the fleet's top-ups may spend per period            none
                (:mod:`.budget`)
``cycles_budget_period`` the budget's period (``1d``, ``1h``, seconds)       ``1d``
``top_up_members`` keep the members too above the ``[cycles]`` floor         false
==============  ===========================================================  ========

A configured fleet run by ``serve`` is named after its ``[jobs.NAME]`` and runs
only the due members (``due`` defaults to true there, to false elsewhere).

Actions: ``backup`` (each member's image into its own backup canister),
``snapshot-backup`` (a management-canister snapshot of each member into the
shared ``repository``), ``compact`` (each member compacted in place through
its backup canister; ``wasm`` defaults to the shipped demo app's, as for
``replicator compact``), ``verify`` (the newest image in each member's backup
canister read back chunk by chunk against its digests).  Each action keeps
its own rows in the member table (:attr:`FleetOptions.table`): a verify run
does not make a member's backup look recent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from replicator.errors import UsageError
from replicator.flows.fleets.timing import DEFAULT_EVERY
from replicator.job import CanisterRef, Job, JobRequest, Scalar
from replicator.pool import MAX_POOL
from replicator.schedule import parse_duration
from replicator.service import current_job

BACKUP = "backup"
ACTIONS = (BACKUP, "snapshot-backup", "compact", "verify")
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 1_000
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class FleetOptions:
    name: str
    network: str
    index: str
    every: float
    due_only: bool
    concurrency: int
    keep: int | None
    pool: int
    raw: Mapping[str, Scalar]
    action: str = BACKUP
    repository: str | None = None
    stop: bool = True
    wasm: str | None = None
    cycles_budget: int | None = None
    cycles_budget_period: float = DEFAULT_EVERY
    top_up_members: bool = False

    @property
    def table(self) -> str:
        """The member table's key of this fleet and action (``NAME``, or ``NAME@ACTION``).

        ``@`` is not allowed in names, so no fleet's name is another's key.
        """
        return table_key(self.name, self.action)

    @classmethod
    def of(cls, job: Job | JobRequest) -> FleetOptions:
        o = job.options
        network = job.source.network if isinstance(job.source, CanisterRef) else o.get("network")
        if not isinstance(network, str) or not network:
            raise UsageError(
                "a fleet read from a file needs its members' network (the network option, "
                "or --network)"
            )
        return cls(
            name=_name(o.get("name", current_job.get())),
            network=network,
            index=_text(o.get("index"), "index") or "icrp",
            every=_duration(o.get("every"), "every", "1d or 6h"),
            # Under `serve` a fleet job runs often and takes the due members only.
            due_only=_flag(o.get("due"), "due", default=current_job.get() is not None),
            concurrency=_count(o.get("concurrency"), "concurrency", DEFAULT_CONCURRENCY),
            keep=None if o.get("keep") is None else _count(o.get("keep"), "keep", 1),
            pool=_pool(o.get("pool")),
            raw=o,
            action=(action := _action(o.get("action"))),
            repository=_repository(o.get("repository"), action),
            stop=_flag(o.get("stop"), "stop", default=True),
            wasm=_text(o.get("wasm"), "wasm"),
            cycles_budget=_cycles(o.get("cycles_budget")),
            cycles_budget_period=_duration(
                o.get("cycles_budget_period"), "cycles_budget_period", "1d"
            ),
            top_up_members=_flag(o.get("top_up_members"), "top_up_members", default=False),
        )


def _cycles(value: Scalar) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(
            f"the fleet option cycles_budget must be a whole number of cycles (per "
            f"cycles_budget_period), got {value!r}"
        )
    return value


def table_key(name: str, action: str) -> str:
    """Where a fleet's rows for ``action`` live in the member table (see :class:`FleetOptions`)."""
    return name if action == BACKUP else f"{name}@{action}"


def _action(value: Scalar) -> str:
    if value is None:
        return BACKUP
    if value not in ACTIONS:
        raise UsageError(
            f"the fleet option action must be one of {', '.join(ACTIONS)}, got {value!r}"
        )
    return str(value)


def _repository(value: Scalar, action: str) -> str | None:
    if action != "snapshot-backup":
        return None  # a fleet's configured repository, when it is backed up otherwise
    if not isinstance(value, str) or not value:
        raise UsageError(
            "a fleet's snapshot-backup needs a repository directory shared by its members "
            "(the repository option, or --repository DIR)"
        )
    return value


def _name(value: Scalar) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise UsageError(
            f"a fleet needs a name of 1-64 letters, digits, '_', '-', '.' or ':' (got {value!r}); "
            "a configured fleet job is named after its [jobs.NAME]"
        )
    return value


def _text(value: Scalar, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"the fleet option {what} must be a non-empty string, got {value!r}")
    return value


def _duration(value: Scalar, what: str, example: str) -> float:
    """A period option: a duration of at least a minute, a day when unset."""
    if value is None:
        return DEFAULT_EVERY
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(
            f"the fleet option {what} must be a duration such as {example} ({exc})"
        ) from None
    if seconds < 60:
        raise UsageError(f"the fleet option {what} must be at least 1 minute, got {value!r}")
    return seconds


def _flag(value: Scalar, what: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UsageError(f"the fleet option {what} must be true or false, got {value!r}")
    return value


def _pool(value: Scalar) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POOL:
        raise UsageError(
            f"the fleet option pool must be a whole number from 0 to {MAX_POOL} (backup "
            f"canisters kept ready), got {value!r}"
        )
    return value


def _count(value: Scalar, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise UsageError(
            f"the fleet option {what} must be a whole number from 1 to {MAX_CONCURRENCY}, "
            f"got {value!r}"
        )
    return value
