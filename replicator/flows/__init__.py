"""The job kinds, one flow module each; :mod:`replicator.flows.builtin` registers them all.

=====================  ======================================================
module                 kinds
=====================  ======================================================
:mod:`.backup`         ``backup`` — a canister's image into its backup canister
:mod:`.restore`        ``restore`` — an image from a backup canister into a canister
:mod:`.archive`        ``archive-export``, ``archive-import`` — images as files
:mod:`.verify`         ``verify`` — an image checked chunk by chunk
:mod:`.fleet`          ``fleet`` — a backup of every member of a fleet (parts in :mod:`.fleets`)
:mod:`.split`          ``split`` — a canister into shards by key range
:mod:`.compact`        ``compact`` — a canister into a fresh instance of itself
=====================  ======================================================

The image kinds share :mod:`replicator.flows.image` (machine, sides,
performer).  ``docs/architecture.md`` says how a kind is added.

This package's ``__init__`` imports nothing, so that importing a pure part
(a state machine) does not pull in the performers and their I/O.
"""
