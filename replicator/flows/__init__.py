"""The two ends of a job: where the image comes from and where it goes.

The engine drives the state machine of :mod:`replicator.jobs`; its effects
name endpoints (a canister or an archive file).  This package turns each
endpoint into a *side* that performs them:

- :class:`~replicator.flows.sides.SourceSide`: freeze or open the image
  (``PrepareSource``), publish its chunk digests, read it (relay), push it
  (direct), release it;
- :class:`~replicator.flows.sides.TargetSide`: open or resume an import
  (``PrepareTarget``), report what it already holds (resume), write
  (relay), commit, report the digest it holds (``VerifyTarget``), abort.

Canisters speak ICRP (:mod:`replicator.flows.canister`); archive files use
:mod:`replicator.archive` (:mod:`replicator.flows.archive`).  What differs
between job kinds *before* a job can run — finding or creating the backup
canister, picking the image to restore, creating a canister to restore
into — lives in one module per kind: :mod:`replicator.flows.backup`,
:mod:`replicator.flows.restore`, :mod:`replicator.flows.archive_jobs` and
:mod:`replicator.flows.verify`.
"""
