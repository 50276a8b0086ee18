"""Compacting a canister whose memory cannot shrink (``kind = "compact"``).

- :mod:`.machine`: the state machine (pure);
- :mod:`.performer`: its effects;
- :mod:`.kind`: request, planner, registration.
"""
