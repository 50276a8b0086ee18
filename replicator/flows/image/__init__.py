"""What the image kinds share: their state machine, sides and performer.

Backup, restore, archive export, archive import and verify all move (or
check) one *image* — a consistent, chunked, digested copy of a canister's
replicable state (ICRP) — from a source to a target; they differ only in
their endpoints and in what their planners do before a job exists.
"""
