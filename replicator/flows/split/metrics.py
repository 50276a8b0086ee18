"""The split kind's own metrics (made once per registry with ``Metrics.extension``).

No canister id is a label: ``name`` is the job's name from the config (the
job id for a command-line split), of which there are few.

==============================================================  =========  =================
metric                                                          type       labels
==============================================================  =========  =================
``replicator_split_records_copied_total``                       counter    name
``replicator_split_bytes_copied_total``                         counter    name
``replicator_split_changes_applied_total``                      counter    name
``replicator_split_cutovers_total``                             counter    name, outcome
``replicator_split_write_freeze_seconds``                       histogram  name
``replicator_split_bytes_freed_total``                          counter    name
==============================================================  =========  =================

``cutovers`` outcome: ``ok`` (the range belongs to its shard now) or
``mismatch`` (the shard's copy differed; the source kept the range).
``write_freeze_seconds``: how long the source refused writes to a range
before its shard took them (fence → shard primary).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("ok", "mismatch")
FREEZE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SplitMetrics:
    """Counters of the split jobs of one process, by job name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "replicator_split_records_copied_total",
            "Records copied from a source into its shards.",
            ["name"],
            registry=registry,
        )
        self.bytes = Counter(
            "replicator_split_bytes_copied_total",
            "Key and value bytes copied from a source into its shards.",
            ["name"],
            registry=registry,
        )
        self.changes = Counter(
            "replicator_split_changes_applied_total",
            "Journal changes of moved ranges applied to the shards (catch-up).",
            ["name"],
            registry=registry,
        )
        self.cutovers = Counter(
            "replicator_split_cutovers_total",
            "Ranges cut over to their shard, by outcome.",
            ["name", "outcome"],
            registry=registry,
        )
        self.freeze = Histogram(
            "replicator_split_write_freeze_seconds",
            "How long the source refused writes to a range before its shard took them.",
            ["name"],
            buckets=FREEZE_BUCKETS,
            registry=registry,
        )
        self.freed_bytes = Counter(
            "replicator_split_bytes_freed_total",
            "Key and value bytes deleted from a source after cut-over.",
            ["name"],
            registry=registry,
        )

    def started(self, name: str) -> None:
        """Make the job's series exist (at 0) from its first run."""
        for metric in (self.records, self.bytes, self.changes, self.freed_bytes):
            metric.labels(name)
        for outcome in OUTCOMES:
            self.cutovers.labels(name, outcome)
        self.freeze.labels(name)

    def copied(self, name: str, records: int, nbytes: int) -> None:
        self.records.labels(name).inc(records)
        self.bytes.labels(name).inc(nbytes)

    def changes_applied(self, name: str, changes: int) -> None:
        self.changes.labels(name).inc(changes)

    def cutover(self, name: str, outcome: str, freeze_seconds: float | None = None) -> None:
        self.cutovers.labels(name, outcome).inc()
        if freeze_seconds is not None:
            self.freeze.labels(name).observe(freeze_seconds)

    def freed(self, name: str, nbytes: int) -> None:
        self.freed_bytes.labels(name).inc(nbytes)
