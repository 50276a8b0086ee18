"""Every test sees the built-in job kinds registered, as the command line and service do."""

from replicator.flows.builtin import BUILTIN

BUILTIN_KINDS = BUILTIN
