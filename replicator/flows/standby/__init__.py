"""The standby kind: a hot standby that follows its primary's journal.

- :mod:`.machine` — the pure state machine (seed with an image, then tail);
- :mod:`.tail` — the tail loop: ``icrp_changes`` → ``icrp_apply``, pipelined,
  with an adaptive poll interval and periodic consistency checks;
- :mod:`.performer` — performs the machine's effects (the seed through the
  image kinds' performer);
- :mod:`.metrics` — the kind's Prometheus series;
- :mod:`.kind` — the request helper, the planner and the registration;
- :mod:`.promote` — failover: fence the primary, drain, compare, switch.

Like :mod:`replicator.flows`, this ``__init__`` imports nothing, so that
importing the machine does not pull in the performer's I/O.
"""
