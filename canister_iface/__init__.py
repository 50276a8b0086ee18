"""Everything the orchestrator knows about canisters."""
