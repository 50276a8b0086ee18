"""How bytes travel from a source to a target: the one definition of routes.

- ``direct``: the source canister pushes to the target (``icrp_push``); the
  bytes never leave the IC;
- ``relay``: the orchestrator reads from the source and writes to the target;
- ``snapshot``: the management canister's snapshot data API (any canister).

``--via`` picks between the two routes of the ICRP kinds (:data:`VIA`).
The metrics' ``route`` label takes the values of :class:`Route`.
"""

from __future__ import annotations

import enum

from replicator.errors import UsageError


class Route(enum.StrEnum):
    DIRECT = "direct"
    RELAY = "relay"
    SNAPSHOT = "snapshot"


VIA: tuple[str, ...] = (Route.DIRECT, Route.RELAY)  # what --via / options.via accept


def check_via(value: object, what: str = "via") -> str:
    """``value`` if it is a route ``--via`` accepts, else a usage error naming ``what``."""
    if value not in VIA:
        raise UsageError(f"{what} must be one of {', '.join(VIA)}, got {value!r}")
    return str(value)
