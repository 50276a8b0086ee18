"""Every test sees the built-in job kinds registered, as the command line and service do."""

import replicator.flows

BUILTIN_KINDS = replicator.flows.BUILTIN
