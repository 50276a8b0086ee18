"""The built-in job kinds: importing this module registers every one of them."""

from replicator.flows import archive, backup, fleet, restore, verify
from replicator.flows.compact import kind as compact
from replicator.flows.snapshot import jobs as snapshot
from replicator.flows.split import kind as split
from replicator.flows.standby import kind as standby

BUILTIN = (backup, restore, archive, verify, fleet, snapshot, standby, split, compact)
