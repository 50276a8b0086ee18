"""The compact kind's own metrics (made once per registry with ``Metrics.extension``).

No canister id is a label: ``name`` is the job's name from the config (a
fixed ``command-line`` for ``replicator compact``), of which there are few.
The phase of a running compact is the engine's
``replicator_jobs{kind="compact", phase}``.

==============================================================  =========  =================
metric                                                          type       labels
==============================================================  =========  =================
``replicator_compact_runs_total``                               counter    name, outcome
``replicator_compact_canisters_fenced``                         gauge      name
``replicator_compact_write_freeze_seconds``                     histogram  name
``replicator_compact_memory_before_bytes``                      gauge      name
``replicator_compact_memory_after_bytes``                       gauge      name
``replicator_compact_memory_freed_bytes_total``                 counter    name
``replicator_compact_image_bytes_total``                        counter    name
==============================================================  =========  =================

- ``runs_total{outcome}``: runs that ended ``done`` (a canister compacted),
  ``mismatch`` (a digest comparison failed: the image is safe in the
  backup canister, the canister stays fenced), ``failed`` or
  ``cancelled`` (a resume continues them);
- ``canisters_fenced``: canisters this process fenced (writes refused) and
  has not given writes back yet — a failed or cancelled run leaves them
  fenced until it is resumed;
- ``write_freeze_seconds``: fence → writes taken again (in place: unfence;
  with a new canister: the new canister primary and routed to), across
  resumes;
- ``memory_*``: ``memory_size`` of the last canister compacted before and
  after (the new canister's with ``--new-canister``), and what all runs freed;
- ``image_bytes_total``: bytes of the images moved (backup and restore, or
  into the new canister).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("done", "mismatch", "failed", "cancelled")
FREEZE_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class CompactMetrics:
    """Counters and gauges of the compact jobs of one process, by job name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # canister ids per name: a resumed run in the same process counts its
        # canister once.
        self._fenced: dict[str, set[str]] = {}
        self.runs = Counter(
            "replicator_compact_runs_total",
            "Runs of compact jobs, by how they ended.",
            ["name", "outcome"],
            registry=r,
        )
        self.fenced_gauge = Gauge(
            "replicator_compact_canisters_fenced",
            "Canisters a compact job fenced (writes refused) and has not given writes back.",
            ["name"],
            registry=r,
        )
        self.freeze = Histogram(
            "replicator_compact_write_freeze_seconds",
            "How long a compacted canister refused writes (fence until writes are taken again).",
            ["name"],
            buckets=FREEZE_BUCKETS,
            registry=r,
        )
        self.before = Gauge(
            "replicator_compact_memory_before_bytes",
            "memory_size of the last compacted canister before compacting.",
            ["name"],
            registry=r,
        )
        self.after = Gauge(
            "replicator_compact_memory_after_bytes",
            "memory_size of the last compacted canister after compacting.",
            ["name"],
            registry=r,
        )
        self.freed = Counter(
            "replicator_compact_memory_freed_bytes_total",
            "memory_size given back by compacting (before minus after, when smaller).",
            ["name"],
            registry=r,
        )
        self.image_bytes = Counter(
            "replicator_compact_image_bytes_total",
            "Image bytes compact jobs moved between canisters.",
            ["name"],
            registry=r,
        )

    def started(self, name: str) -> None:
        """Make the job's series exist (at 0) from its first run."""
        for outcome in OUTCOMES:
            self.runs.labels(name, outcome)
        for metric in (self.freed, self.image_bytes, self.freeze):
            metric.labels(name)
        self._set_fenced(name)

    def fenced(self, name: str, canister: str) -> None:
        self._fenced.setdefault(name, set()).add(canister)
        self._set_fenced(name)

    def unfenced(self, name: str, canister: str, freeze_seconds: float | None) -> None:
        self._fenced.setdefault(name, set()).discard(canister)
        self._set_fenced(name)
        if freeze_seconds is not None:
            self.freeze.labels(name).observe(max(0.0, freeze_seconds))

    def measured(self, name: str, before: int, after: int) -> None:
        self.before.labels(name).set(before)
        self.after.labels(name).set(after)
        self.freed.labels(name).inc(max(0, before - after))

    def moved(self, name: str, nbytes: int) -> None:
        self.image_bytes.labels(name).inc(nbytes)

    def ended(self, name: str, outcome: str) -> None:
        self.runs.labels(name, outcome).inc()

    def _set_fenced(self, name: str) -> None:
        self.fenced_gauge.labels(name).set(len(self._fenced.get(name, ())))
