"""Images frozen moments ago, handed from a backup's planner to its job.

A backup's planner has the source freeze its image while the backup
canister is created (the freeze and the creation overlap); the job's first
step would then ask the source for an image again (``icrp_begin_export``,
an update: a round trip on the IC), only to be handed the same ready image.
:class:`FreshImages` keeps the certified ticket the freeze ended with, per
canister, for :data:`FRESH_SECONDS`, and gives it to the next job that asks
instead.  An older ticket is not handed out: the job asks the source, as
without it, so a job never copies an image older than that from before it
ran (a job waiting in a queue, a ticket kept by another job's plan).  A
source keeps one export at a time: if another freeze replaced it, reading
the ticket's snapshot fails with ``StaleSnapshot`` and the job starts over
from a fresh image, as it would have anyway.  In memory, per engine: a
job run by another worker process asks the source.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from canister_iface.icrp_types import ExportTicket

# Age of a ticket after which a job asks the source again.
FRESH_SECONDS = 30.0


class FreshImages:
    """Ready export tickets by (network, canister), each taken once while fresh."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tickets: dict[tuple[str, str], tuple[float, ExportTicket]] = {}

    def keep(self, network: str, canister: str, ticket: ExportTicket) -> None:
        """``canister`` just froze ``ticket`` (ready, from a certified answer)."""
        if ticket.ready:
            self._tickets[network, canister] = (self._clock(), ticket)
        self._forget_stale()

    def take(self, network: str, canister: str) -> ExportTicket | None:
        """The ticket ``canister`` froze less than :data:`FRESH_SECONDS` ago, once."""
        kept = self._tickets.pop((network, canister), None)
        if kept is None or self._clock() - kept[0] > FRESH_SECONDS:
            return None
        return kept[1]

    def _forget_stale(self) -> None:
        # Tickets no job took (a dry run, a plan that failed later) do not pile up.
        now = self._clock()
        for key in [k for k, (at, _) in self._tickets.items() if now - at > FRESH_SECONDS]:
            del self._tickets[key]
