"""ic-replicator: the orchestrator."""

__version__ = "0.1.0"
