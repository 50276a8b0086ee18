"""The snapshot kinds' own metrics (``Metrics.extension(SnapshotMetrics)``).

What the engine counts already covers runs, calls, retries and the bytes
moved (``replicator_copied_bytes_total{kind, route="snapshot"}``).  These
add what only snapshots have.  No canister id is a label.

=====================================================  =========  ===============
metric                                                 type       labels
=====================================================  =========  ===============
``replicator_snapshot_downtime_seconds``               histogram  kind
``replicator_snapshot_canisters_stopped``              gauge      —
``replicator_snapshot_read_bytes_total``               counter    kind
``replicator_snapshot_stored_bytes_total``             counter    outcome
``replicator_snapshot_verified_bytes_total``           counter    kind
``replicator_snapshot_on_chain_total``                 counter    action
``replicator_snapshot_refusals_total``                 counter    reason
=====================================================  =========  ===============

- ``downtime_seconds``: how long a job kept a canister stopped (stop →
  snapshot → start for the source; stop → load → start for a target).
- ``canisters_stopped``: canisters this process stopped and has not started
  again yet; anything above 0 for longer than a snapshot takes is an
  outage (``deploy/alerts/snapshot.yml``).
- ``stored_bytes_total{outcome}``: plain bytes of the chunks a backup stored:
  ``new`` (written), ``dedup`` (already held: hash and touch only);
  ``written`` counts the bytes those new chunks take on disk (after zstd).
- ``on_chain_total{action}``: IC snapshots ``taken``, ``replaced`` (the
  oldest of ours, the slots being full), ``deleted``, ``kept``.
- ``refusals_total{reason}``: jobs that stopped before changing anything:
  ``slots_full`` (ten snapshots, none ours), ``repository_full`` (no space:
  stopped at a checkpoint), ``access_denied``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from replicator.flows.snapshot.machine import KINDS

DOWNTIME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
STORED_OUTCOMES = ("new", "dedup", "written")
ON_CHAIN_ACTIONS = ("taken", "replaced", "deleted", "kept")
REFUSALS = ("slots_full", "repository_full", "access_denied")


class SnapshotMetrics:
    """Made once per registry by the engine (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._stopped = 0
        self.downtime = Histogram(
            "replicator_snapshot_downtime_seconds",
            "How long a snapshot job kept a canister stopped (stop, snapshot or load, start).",
            ["kind"],
            registry=r,
            buckets=DOWNTIME_BUCKETS,
        )
        Gauge(
            "replicator_snapshot_canisters_stopped",
            "Canisters this process stopped for a snapshot and has not started again yet.",
            registry=r,
        ).set_function(lambda: self._stopped)
        self.read = Counter(
            "replicator_snapshot_read_bytes",
            "Snapshot bytes read from the IC (read_canister_snapshot_data).",
            ["kind"],
            registry=r,
        )
        self.stored = Counter(
            "replicator_snapshot_stored_bytes",
            "Plain bytes of the chunks backups stored: new, dedup (already held); written: "
            "bytes the new chunks take on disk.",
            ["outcome"],
            registry=r,
        )
        self.verified = Counter(
            "replicator_snapshot_verified_bytes",
            "Bytes re-read and checked against their digests after an upload.",
            ["kind"],
            registry=r,
        )
        self.on_chain = Counter(
            "replicator_snapshot_on_chain",
            "IC snapshots taken, replaced (oldest of ours, slots full), deleted or kept.",
            ["action"],
            registry=r,
        )
        self.refusals = Counter(
            "replicator_snapshot_refusals",
            "Snapshot jobs that stopped before changing anything, by reason.",
            ["reason"],
            registry=r,
        )
        for kind in KINDS:
            self.downtime.labels(kind)
            self.read.labels(kind)
            self.verified.labels(kind)
        for outcome in STORED_OUTCOMES:
            self.stored.labels(outcome)
        for action in ON_CHAIN_ACTIONS:
            self.on_chain.labels(action)
        for reason in REFUSALS:
            self.refusals.labels(reason)

    def stopped(self) -> None:
        self._stopped += 1

    def started(self, kind: str, downtime: float | None) -> None:
        self._stopped = max(0, self._stopped - 1)
        if downtime is not None:
            self.downtime.labels(kind).observe(max(0.0, downtime))
