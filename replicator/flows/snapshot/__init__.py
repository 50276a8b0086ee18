"""The snapshot kinds: any canister backed up, restored and copied through the
management canister's snapshots, no cooperation from the canister needed.

=====================  ===========================================================
module                 what
=====================  ===========================================================
:mod:`.machine`        the pure state machine the three kinds share (a list of steps)
:mod:`.ic`             the management-canister calls, through the limits and retries
:mod:`.movers`         the pump's movers: IC → repository, repository → IC, IC → IC
:mod:`.performer`      performs the steps; reconciles with what the IC and the
                       repository hold when a run resumes
:mod:`.metrics`        the kinds' own metrics (downtime, dedup, canisters left stopped)
:mod:`.jobs`           requests, planners and the registration of ``snapshot-backup``,
                       ``snapshot-restore`` and ``snapshot-copy``
=====================  ===========================================================

Snapshots are stored in a repository (:mod:`replicator.repository`).  This
package's ``__init__`` imports nothing, so that importing the machine does
not pull in the performers and their I/O.
"""
