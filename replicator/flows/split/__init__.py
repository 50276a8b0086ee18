"""Splitting a canister into shards by key range (``kind = "split"``).

- :mod:`.ranges`: key ranges and choosing boundaries (pure);
- :mod:`.machine`: the state machine (pure);
- :mod:`.performer`: its effects against the canisters;
- :mod:`.metrics`: the kind's own metrics;
- :mod:`.kind`: request, planner, registration.
"""
