"""The standby kind's Prometheus series (``Metrics.extension(StandbyMetrics)``).

The label is the job's name (``name``: the ``[jobs.NAME]`` of the config, or
the job id on the command line), never a canister id: the names are bounded
by the config.

===============================================================  =======  ==============
metric                                                           type     labels
===============================================================  =======  ==============
``replicator_standby_lag_seconds``                               gauge    name
``replicator_standby_lag_changes``                               gauge    name
``replicator_standby_applied_seq``                               gauge    name
``replicator_standby_last_apply_timestamp_seconds``              gauge    name
``replicator_standby_applied_changes_total``                     counter  name
``replicator_standby_applied_bytes_total``                       counter  name
``replicator_standby_resyncs_total``                             counter  name, reason
``replicator_standby_consistency_checks_total``                  counter  name, outcome
``replicator_standby_apply_delay_seconds``                       histogram name
===============================================================  =======  ==============

Lag in seconds is the age of the oldest change the standby has not applied
(from the journal's change times; 0 when it is at the head); lag in changes
is the source's head minus the standby's applied sequence.  Time since the
last apply is ``time() - replicator_standby_last_apply_timestamp_seconds``.
Consistency check outcomes: ``match``, ``mismatch`` (an alert: the job
stops), ``skipped`` (no common image could be frozen this time).  The apply delay is, per change,
the time from the change on the primary to the end of the ``icrp_apply``
that brought it to the standby (its distribution is the lag a failover
would have seen).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from replicator.flows.standby.machine import RESYNC_REASONS

CHECK_OUTCOMES = ("match", "mismatch", "skipped")
# Seconds; fine around the target (2 calls of 1.5 s + a poll ceiling of 1 s = 4 s).
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 7.5, 10, 15, 30, 60, 120, 300, 600)


class StandbyMetrics:
    """The series of every standby job of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.lag_seconds = Gauge(
            "replicator_standby_lag_seconds",
            "Age of the oldest change the standby has not applied yet (0: at the head).",
            ["name"],
            registry=r,
        )
        self.lag_changes = Gauge(
            "replicator_standby_lag_changes",
            "Journal sequence numbers the standby is behind its source's head.",
            ["name"],
            registry=r,
        )
        self.applied_seq = Gauge(
            "replicator_standby_applied_seq",
            "The standby's applied journal sequence number.",
            ["name"],
            registry=r,
        )
        self.last_apply = Gauge(
            "replicator_standby_last_apply_timestamp_seconds",
            "Unix time of the standby's last successful icrp_apply.",
            ["name"],
            registry=r,
        )
        self.changes = Counter(
            "replicator_standby_applied_changes",
            "Changes applied to the standby.",
            ["name"],
            registry=r,
        )
        self.bytes = Counter(
            "replicator_standby_applied_bytes",
            "Approximate bytes of the changes applied to the standby (48 bytes a change "
            "plus its key and value).",
            ["name"],
            registry=r,
        )
        self.resyncs = Counter(
            "replicator_standby_resyncs",
            "Times a standby was seeded again from a fresh image, by reason.",
            ["name", "reason"],
            registry=r,
        )
        self.checks = Counter(
            "replicator_standby_consistency_checks",
            "Consistency checks (images of source and standby at one journal sequence), by "
            "outcome: match, mismatch, skipped.",
            ["name", "outcome"],
            registry=r,
        )

        self.delay = Histogram(
            "replicator_standby_apply_delay_seconds",
            "Per change: seconds from the change on the primary to the end of the icrp_apply "
            "that brought it to the standby.",
            ["name"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )

    def start(self, name: str) -> None:
        """Start ``name``'s series at 0, so rate() and alerts work from the first scrape."""
        for gauge in (self.lag_seconds, self.lag_changes, self.applied_seq):
            gauge.labels(name)
        self.changes.labels(name)
        self.bytes.labels(name)
        self.delay.labels(name)
        for reason in RESYNC_REASONS:
            self.resyncs.labels(name, reason)
        for outcome in CHECK_OUTCOMES:
            self.checks.labels(name, outcome)

    def lag(self, name: str, *, seconds: float, changes: int) -> None:
        self.lag_seconds.labels(name).set(seconds)
        self.lag_changes.labels(name).set(changes)

    def applied(self, name: str, *, seq: int, changes: int, nbytes: int, at: float) -> None:
        self.applied_seq.labels(name).set(seq)
        self.last_apply.labels(name).set(at)
        self.changes.labels(name).inc(changes)
        self.bytes.labels(name).inc(nbytes)

    def delayed(self, name: str, at: float, times_ns: list[int]) -> None:
        """The changes made at ``times_ns`` (the primary's clock) were applied at ``at``."""
        delay = self.delay.labels(name)
        for t in times_ns:
            delay.observe(max(0.0, at - t / 1e9))

    def resynced(self, name: str, reason: str) -> None:
        self.resyncs.labels(name, reason).inc()

    def checked(self, name: str, outcome: str) -> None:
        self.checks.labels(name, outcome).inc()
