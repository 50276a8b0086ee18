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
==============  ===========================================================  ========

A configured fleet run by ``serve`` is named after its ``[jobs.NAME]`` and runs
only the due members (``due`` defaults to true there, to false elsewhere).
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
            every=_every(o.get("every")),
            # Under `serve` a fleet job runs often and takes the due members only.
            due_only=_flag(o.get("due"), "due", default=current_job.get() is not None),
            concurrency=_count(o.get("concurrency"), "concurrency", DEFAULT_CONCURRENCY),
            keep=None if o.get("keep") is None else _count(o.get("keep"), "keep", 1),
            pool=_pool(o.get("pool")),
            raw=o,
        )


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


def _every(value: Scalar) -> float:
    if value is None:
        return DEFAULT_EVERY
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(
            f"the fleet option every must be a duration such as 1d or 6h ({exc})"
        ) from None
    if seconds < 60:
        raise UsageError(f"the fleet option every must be at least 1 minute, got {value!r}")
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
