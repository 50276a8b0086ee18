"""The member table of fleets: which canisters belong to a fleet and how their runs went.

A fleet (:mod:`replicator.flows.fleet`) is a named set of canisters — the
user canisters a platform canister indexes, say — whose jobs the
orchestrator runs one member at a time.  Each member has a row here, kept
in the checkpoint store beside the jobs, so that a fleet run that crashes
resumes without redoing finished members and ``replicator fleet status``
can tell what is ok, overdue, failing or never backed up.

Rows are keyed by ``(fleet, network, member)``; a fleet's name is its job
name from the configuration (or what ``--name`` gave).  Canisters that
left the membership are marked ``gone_at``, never deleted: their backups
still exist.

Schema (part of the checkpoint store's schema 5; 4 had no ``subnet``)::

    fleet_members(fleet, network, member, state, added_at REAL, seen_at REAL,
                  gone_at REAL NULL, next_due REAL, last_run_at REAL NULL,
                  last_ok_at REAL NULL, failures INTEGER, runs INTEGER,
                  last_error TEXT NULL, error_class TEXT NULL,
                  round TEXT NULL /* the fleet job that last finished it */,
                  backup TEXT NULL,
                  subnet TEXT NULL /* its subnet, read from certified state */,
                  PK (fleet, network, member))
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from replicator.errors import UsageError

FLEET_TABLE = """
CREATE TABLE IF NOT EXISTS fleet_members (
    fleet       TEXT NOT NULL,
    network     TEXT NOT NULL,
    member      TEXT NOT NULL,
    state       TEXT NOT NULL,
    added_at    REAL NOT NULL,
    seen_at     REAL NOT NULL,
    gone_at     REAL,
    next_due    REAL NOT NULL,
    last_run_at REAL,
    last_ok_at  REAL,
    failures    INTEGER NOT NULL DEFAULT 0,
    runs        INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    error_class TEXT,
    round       TEXT,
    backup      TEXT,
    subnet      TEXT,
    PRIMARY KEY (fleet, network, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_members_due ON fleet_members (fleet, network, next_due);
"""
# Schema 5 caches each member's subnet (the per-subnet limits' look-up).
FLEET_SUBNET_COLUMN = "ALTER TABLE fleet_members ADD COLUMN subnet TEXT;"


class MemberState(enum.StrEnum):
    """What the last run of a member says (``overdue`` is derived from ``next_due``)."""

    NEVER = "never"  # no successful run yet
    OK = "ok"  # the last run succeeded
    FAILING = "failing"  # the last run failed (retried later with backoff)


@dataclass(frozen=True)
class MemberRow:
    """One member of a fleet."""

    fleet: str
    network: str
    member: str  # canister id (text)
    state: str
    added_at: float
    seen_at: float
    gone_at: float | None
    next_due: float
    last_run_at: float | None
    last_ok_at: float | None
    failures: int  # consecutive failed runs
    runs: int
    last_error: str | None
    error_class: str | None
    round: str | None  # the id of the fleet job that last finished this member
    backup: str | None  # its backup canister, once known
    subnet: str | None = None  # its subnet, once read from certified state

    @property
    def gone(self) -> bool:
        return self.gone_at is not None


@dataclass(frozen=True)
class MemberResult:
    """How one member's run ended."""

    member: str
    ok: bool
    at: float
    next_due: float
    error: str | None = None
    error_class: str | None = None
    backup: str | None = None
    subnet: str | None = None


@dataclass(frozen=True)
class Membership:
    """What re-reading the membership changed."""

    added: int
    returned: int  # members that had gone and are listed again
    gone: int  # members no longer listed (newly)
    total: int  # members listed now


class FleetTable(Protocol):
    """The member table in a store (see the module docstring)."""

    async def sync(
        self, fleet: str, network: str, members: Sequence[str], now: float
    ) -> Membership:
        """Record the complete membership listed now: add new, mark the unlisted gone."""
        ...

    async def due(
        self, fleet: str, network: str, round_id: str, now: float | None
    ) -> list[MemberRow]:
        """Listed members not finished in ``round_id`` and due by ``now`` (None: all).

        Fairest first: never backed up, then the longest since a success.
        """
        ...

    async def finish(self, fleet: str, network: str, round_id: str, result: MemberResult) -> None:
        """Record how a member's run in ``round_id`` ended."""
        ...

    async def members(self, fleet: str, network: str | None = None) -> list[MemberRow]:
        """Every member of ``fleet`` (gone ones too), in id order."""
        ...

    async def fleets(self) -> list[str]:
        """The names of the fleets with members."""
        ...


def fleet_table(store: object) -> FleetTable:
    """The member table of ``store``; a usage error for a store that keeps none."""
    table = getattr(store, "fleets", None)
    if table is None:
        raise UsageError(
            f"the checkpoint store {getattr(store, 'path', store)} does not keep fleet "
            "members; use the SQLite store (--state PATH) for fleets"
        )
    return table  # type: ignore[no-any-return]


FLEET_COLUMNS = (
    "fleet, network, member, state, added_at, seen_at, gone_at, next_due, last_run_at,"
    " last_ok_at, failures, runs, last_error, error_class, round, backup, subnet"
)


class SqliteFleetTable:
    """The member table's statements (the store runs them on its thread, in a transaction)."""

    @staticmethod
    def sync(
        db: sqlite3.Connection, fleet: str, network: str, members: Iterable[str], now: float
    ) -> Membership:
        listed = set(members)
        known = {
            str(r[0]): r[1]
            for r in db.execute(
                "SELECT member, gone_at FROM fleet_members WHERE fleet = ? AND network = ?",
                (fleet, network),
            )
        }
        added = [m for m in listed if m not in known]
        returned = [m for m in listed if m in known and known[m] is not None]
        gone = [m for m, g in known.items() if m not in listed and g is None]
        db.executemany(
            f"INSERT INTO fleet_members ({FLEET_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL)",
            [(fleet, network, m, MemberState.NEVER.value, now, now, now) for m in sorted(added)],
        )
        db.executemany(
            "UPDATE fleet_members SET seen_at = ?, gone_at = NULL"
            " WHERE fleet = ? AND network = ? AND member = ?",
            [(now, fleet, network, m) for m in listed if m in known],
        )
        db.executemany(
            "UPDATE fleet_members SET gone_at = ? WHERE fleet = ? AND network = ? AND member = ?",
            [(now, fleet, network, m) for m in gone],
        )
        return Membership(len(added), len(returned), len(gone), len(listed))

    @staticmethod
    def due(
        db: sqlite3.Connection, fleet: str, network: str, round_id: str, now: float | None
    ) -> list[MemberRow]:
        rows = db.execute(
            f"SELECT {FLEET_COLUMNS} FROM fleet_members WHERE fleet = ? AND network = ?"
            " AND gone_at IS NULL AND (round IS NULL OR round != ?) AND next_due <= ?"
            " ORDER BY last_ok_at IS NOT NULL, last_ok_at, next_due, member",
            (fleet, network, round_id, float("inf") if now is None else now),
        ).fetchall()
        return [member_row(r) for r in rows]

    @staticmethod
    def finish(
        db: sqlite3.Connection, fleet: str, network: str, round_id: str, result: MemberResult
    ) -> None:
        if result.ok:
            db.execute(
                "UPDATE fleet_members SET state = ?, last_run_at = ?, last_ok_at = ?,"
                " failures = 0, runs = runs + 1, last_error = NULL, error_class = NULL,"
                " round = ?, next_due = ?, backup = COALESCE(?, backup),"
                " subnet = COALESCE(?, subnet) WHERE fleet = ? AND network = ? AND member = ?",
                (
                    MemberState.OK.value,
                    result.at,
                    result.at,
                    round_id,
                    result.next_due,
                    result.backup,
                    result.subnet,
                    fleet,
                    network,
                    result.member,
                ),
            )
            return
        db.execute(
            "UPDATE fleet_members SET state = ?, last_run_at = ?, failures = failures + 1,"
            " runs = runs + 1, last_error = ?, error_class = ?, round = ?, next_due = ?,"
            " backup = COALESCE(?, backup), subnet = COALESCE(?, subnet)"
            " WHERE fleet = ? AND network = ? AND member = ?",
            (
                MemberState.FAILING.value,
                result.at,
                result.error,
                result.error_class,
                round_id,
                result.next_due,
                result.backup,
                result.subnet,
                fleet,
                network,
                result.member,
            ),
        )

    @staticmethod
    def members(db: sqlite3.Connection, fleet: str, network: str | None) -> list[MemberRow]:
        if network is None:
            rows = db.execute(
                f"SELECT {FLEET_COLUMNS} FROM fleet_members WHERE fleet = ?"
                " ORDER BY network, member",
                (fleet,),
            ).fetchall()
        else:
            rows = db.execute(
                f"SELECT {FLEET_COLUMNS} FROM fleet_members WHERE fleet = ? AND network = ?"
                " ORDER BY member",
                (fleet, network),
            ).fetchall()
        return [member_row(r) for r in rows]

    @staticmethod
    def fleets(db: sqlite3.Connection) -> list[str]:
        return [
            str(r[0]) for r in db.execute("SELECT DISTINCT fleet FROM fleet_members ORDER BY fleet")
        ]


def member_row(r: Sequence[object]) -> MemberRow:
    """A row of the member table (columns in :data:`FLEET_COLUMNS` order)."""

    def opt_float(v: object) -> float | None:
        return None if v is None else float(v)  # type: ignore[arg-type]

    def opt_str(v: object) -> str | None:
        return None if v is None else str(v)

    return MemberRow(
        fleet=str(r[0]),
        network=str(r[1]),
        member=str(r[2]),
        state=str(r[3]),
        added_at=float(r[4]),  # type: ignore[arg-type]
        seen_at=float(r[5]),  # type: ignore[arg-type]
        gone_at=opt_float(r[6]),
        next_due=float(r[7]),  # type: ignore[arg-type]
        last_run_at=opt_float(r[8]),
        last_ok_at=opt_float(r[9]),
        failures=int(r[10]),  # type: ignore[call-overload]
        runs=int(r[11]),  # type: ignore[call-overload]
        last_error=opt_str(r[12]),
        error_class=opt_str(r[13]),
        round=opt_str(r[14]),
        backup=opt_str(r[15]),
        subnet=opt_str(r[16]),
    )
