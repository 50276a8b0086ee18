"""The built-in job kinds: importing this module registers every one of them."""

from replicator.flows import archive, backup, fleet, restore, verify

BUILTIN = (backup, restore, archive, verify, fleet)
