"""The fleet's own metrics (the engine counts every member's job as usual).

Made once per registry (``Metrics.extension(FleetMetrics)``).  The only
label besides a fixed vocabulary is ``name``, the fleet's job name from the
configuration: bounded by the configuration, never a canister id.

==========================================================  =======  ==============
metric                                                      type     labels
==========================================================  =======  ==============
``replicator_fleet_members``                                gauge    name, action, state
``replicator_fleet_members_running``                        gauge    name, action
``replicator_fleet_member_runs_total``                      counter  name, action, outcome
``replicator_fleet_member_failures_total``                  counter  name, action, class
``replicator_fleet_oldest_backup_age_seconds``              gauge    name, action
``replicator_fleet_listing_timestamp_seconds``              gauge    name, action
``replicator_fleet_pool_size``                              gauge    name
``replicator_fleet_pool_target``                            gauge    name
``replicator_fleet_pool_created_total``                     counter  name
``replicator_fleet_cycles_budget``                          gauge    name
``replicator_fleet_cycles_budget_remaining``                gauge    name
``replicator_fleet_topups_total``                           counter  name, of, outcome
``replicator_fleet_cycles_spent_total``                     counter  name
==========================================================  =======  ==============

The cycles gauges (:mod:`.budget`): the fleet's ``cycles_budget`` per period
(0: none) and what is left of it in the current period; ``topups``: top-ups
of the fleet's canisters (``of``: ``backup`` canisters, ``member``s) by
``outcome`` (``ok``, ``refused`` by the budget, ``failed``); ``cycles_spent``:
the cycles those top-ups sent.

``action`` is the fleet run's action (:data:`~.options.ACTIONS`: four
values): a fleet verified nightly and backed up hourly has a row per
action and member in the member table, and series per action here.

The pool gauges: ready warm-pool backup canisters on the fleet's network,
and the size the fleet keeps (0: no pool); ``pool_created``: pool canisters
the fleet's runs made ready.

``state``: ``ok``, ``overdue`` (last success older than 1.5 intervals),
``failing`` (last run failed), ``never`` (no success yet), ``gone`` (no
longer listed).  ``outcome``: ``ok``, ``failed``.  ``class``: the failure's
class from its exit code (:data:`FAILURE_CLASSES`).  The oldest backup's age
is that of the listed member whose last success is the oldest (members
never backed up count in ``state="never"``, not here); it is projected to
the time of the scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from replicator.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_NOT_ICRP,
    EXIT_TEMPORARY,
    EXIT_USAGE,
)
from replicator.fleetstore import MemberRow
from replicator.flows.fleets.timing import STATES, member_state

FAILURE_CLASSES = {
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage",
    EXIT_NOT_ICRP: "not_icrp",
    EXIT_ACCESS_DENIED: "access_denied",
    EXIT_INTEGRITY: "integrity",
    EXIT_BUDGET: "budget",
    EXIT_TEMPORARY: "temporary",
    EXIT_INTERRUPTED: "interrupted",
}
OUTCOMES = ("ok", "failed")
TOPPED_UP = ("backup", "member")
TOP_UP_OUTCOMES = ("ok", "refused", "failed")


def failure_class(exit_code: int | None) -> str:
    """The class a member's failure is counted under."""
    return FAILURE_CLASSES.get(exit_code or EXIT_FAILED, "failed")


class FleetMetrics:
    """See the module docstring."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._oldest: dict[tuple[str, str], float | None] = {}  # (name, action) → oldest
        r = registry
        self.members = Gauge(
            "replicator_fleet_members",
            "Members of a fleet by state (ok, overdue, failing, never, gone).",
            ["name", "action", "state"],
            registry=r,
        )
        self.running = Gauge(
            "replicator_fleet_members_running",
            "Members of a fleet whose job is running now.",
            ["name", "action"],
            registry=r,
        )
        self.runs = Counter(
            "replicator_fleet_member_runs",
            "Runs of fleet members by outcome.",
            ["name", "action", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "replicator_fleet_member_failures",
            "Failed runs of fleet members by class.",
            ["name", "action", "class"],
            registry=r,
        )
        self._age = Gauge(
            "replicator_fleet_oldest_backup_age_seconds",
            "Age of the oldest last successful run among the listed members of a fleet.",
            ["name", "action"],
            registry=r,
        )
        self.listing = Gauge(
            "replicator_fleet_listing_timestamp_seconds",
            "When the membership of a fleet was last listed (Unix seconds).",
            ["name", "action"],
            registry=r,
        )

        self.pool_size = Gauge(
            "replicator_fleet_pool_size",
            "Ready warm-pool backup canisters on the network of a fleet.",
            ["name"],
            registry=r,
        )
        self.pool_target = Gauge(
            "replicator_fleet_pool_target",
            "Warm-pool backup canisters a fleet keeps ready (0: no pool).",
            ["name"],
            registry=r,
        )
        self.pool_created = Counter(
            "replicator_fleet_pool_created",
            "Warm-pool backup canisters the runs of a fleet made ready.",
            ["name"],
            registry=r,
        )

        self.budget = Gauge(
            "replicator_fleet_cycles_budget",
            "Cycles the top-ups of a fleet may spend per period (0: no fleet budget).",
            ["name"],
            registry=r,
        )
        self.budget_remaining = Gauge(
            "replicator_fleet_cycles_budget_remaining",
            "Cycles left in the current period of a fleet's cycles budget.",
            ["name"],
            registry=r,
        )
        self.topups = Counter(
            "replicator_fleet_topups",
            "Top-ups of a fleet's backup canisters and members by outcome.",
            ["name", "of", "outcome"],
            registry=r,
        )
        self.cycles_spent = Counter(
            "replicator_fleet_cycles_spent",
            "Cycles the top-ups of a fleet's canisters sent.",
            ["name"],
            registry=r,
        )

    def add_budget(self, name: str, budget: int | None, remaining: Callable[[], float]) -> None:
        """Start a fleet's cycles series; the remaining budget is read at each scrape."""
        self.budget.labels(name).set(budget or 0)
        if budget is None:
            self.budget_remaining.labels(name).set(0)
        else:
            self.budget_remaining.labels(name).set_function(remaining)
        for of in TOPPED_UP:
            for outcome in TOP_UP_OUTCOMES:
                self.topups.labels(name, of, outcome)
        self.cycles_spent.labels(name)

    def topped_up(self, name: str, of: str, outcome: str, cycles: int = 0) -> None:
        self.topups.labels(name, of, outcome).inc()
        if cycles:
            self.cycles_spent.labels(name).inc(cycles)

    def add_fleet(self, name: str, action: str) -> None:
        """Start a fleet's series (of one action) at 0."""
        self.pool_size.labels(name)
        self.pool_target.labels(name)
        self.pool_created.labels(name)
        for state in STATES:
            self.members.labels(name, action, state)
        for outcome in OUTCOMES:
            self.runs.labels(name, action, outcome)
        for cls in sorted(set(FAILURE_CLASSES.values())):
            self.failures.labels(name, action, cls)
        self.running.labels(name, action)
        key = (name, action)
        if key not in self._oldest:
            self._oldest[key] = None
            self._age.labels(name, action).set_function(lambda: self._age_of(key))

    def counted(self, name: str, action: str, rows: Iterable[MemberRow], every: float) -> None:
        """Set the members-by-state gauges from the member table."""
        self.add_fleet(name, action)
        now = self._clock()
        counts = dict.fromkeys(STATES, 0)
        oldest: float | None = None
        for row in rows:
            state = member_state(
                state=row.state, gone=row.gone, last_ok_at=row.last_ok_at, every=every, now=now
            )
            counts[state] += 1
            if not row.gone and row.last_ok_at is not None:
                oldest = row.last_ok_at if oldest is None else min(oldest, row.last_ok_at)
        for state, n in counts.items():
            self.members.labels(name, action, state).set(n)
        self._oldest[(name, action)] = oldest

    def ran(self, name: str, action: str, ok: bool, exit_code: int | None) -> None:
        self.runs.labels(name, action, "ok" if ok else "failed").inc()
        if not ok:
            self.failures.labels(name, action, failure_class(exit_code)).inc()

    def _age_of(self, key: tuple[str, str]) -> float:
        oldest = self._oldest.get(key)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)
