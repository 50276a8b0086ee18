"""How many bytes to move per call: the adaptive transfer size.

The seed thread's advice — "start at a higher number, and if the call fails
retry with a lower page size" — made precise.  A :class:`TransferSize`
starts at the largest size the IC's message limits allow for its path and

- **shrinks** multiplicatively (``shrink_factor``) when a call fails because
  it was too large (HTTP 413, a reply or argument over the limit) or ran out
  of instructions (``IC0522``), never below ``floor``; a failure *at* the
  floor means no size works and the job must stop;
- **grows** multiplicatively (``grow_factor``) after ``grow_after``
  consecutive successes, up to the ceiling — but not back to a size that
  failed until ``probe_after`` successes have passed since the failure, so a
  deterministic limit costs one failed call per ``probe_after`` calls
  instead of one per ``grow_after``.

Sizes are multiples of ``granularity`` (4 KiB by default).  The controller is
pure: no clock, no I/O, no locks (asyncio runs it on one thread).

The ceilings per path (``ceiling_for``) leave room for what wraps the bytes:

=============  =======================================  ===================
path           limit (interface spec)                   reserved overhead
=============  =======================================  ===================
``read``       3 MiB query reply (``icrp_read``)        16 KiB (Candid)
``write``      2 MiB ingress message (``icrp_write``)   64 KiB (envelope,
                                                        delegations, Candid)
``push``       2 MiB cross-subnet inter-canister call   16 KiB (Candid)
``snapshot``   2,000,000 B per snapshot data read       none (a data limit)
=============  =======================================  ===================

:func:`split_evenly` cuts a byte range into near-equal pieces no larger than
the current size, so a 2 MiB run with a 1.94 MiB limit becomes two 1 MiB
calls rather than 1.94 MiB + 64 KiB.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from canister_iface import errors as ic

KiB = 1024
MiB = 1024 * KiB

INGRESS_LIMIT = 2 * MiB
QUERY_REPLY_LIMIT = 3 * MiB
INTER_CANISTER_LIMIT = 2 * MiB  # cross-subnet; same-subnet allows 10 MiB
SNAPSHOT_DATA_LIMIT = 2_000_000

INGRESS_OVERHEAD = 64 * KiB
REPLY_OVERHEAD = 16 * KiB
DEFAULT_FLOOR = 4 * KiB
DEFAULT_GRANULARITY = 4 * KiB

ShrinkReason = Literal["too_large", "instruction_limit"]


class Path(enum.StrEnum):
    """Where the bytes of one call go; each path has its own size limit."""

    READ = "read"  # query reply from the source (relay)
    WRITE = "write"  # ingress update to the target (relay)
    PUSH = "push"  # inter-canister call from source to target (direct)
    SNAPSHOT = "snapshot"  # management canister snapshot data


_CEILINGS: dict[Path, int] = {
    Path.READ: QUERY_REPLY_LIMIT - REPLY_OVERHEAD,
    Path.WRITE: INGRESS_LIMIT - INGRESS_OVERHEAD,
    Path.PUSH: INTER_CANISTER_LIMIT - REPLY_OVERHEAD,
    Path.SNAPSHOT: SNAPSHOT_DATA_LIMIT,
}


def ceiling_for(path: Path) -> int:
    """The largest number of payload bytes one call on ``path`` may carry."""
    return _CEILINGS[path]


def shrink_reason(exc: BaseException) -> ShrinkReason | None:
    """Why ``exc`` means "send less per call", or ``None`` if it does not.

    The instruction limit (``IC0522``), or a message over a size limit, which
    the agent classified as :class:`~canister_iface.errors.PayloadTooLarge`:
    HTTP 413, an oversized reply or inter-canister request (``IC0504``), a
    snapshot slice over the limit (``IC0408``), an ICRP push whose call
    failed for its size.
    """
    if isinstance(exc, ic.PayloadTooLarge):
        return "too_large"
    if isinstance(exc, ic.IcError) and exc.error_code == ic.CANISTER_INSTRUCTION_LIMIT_EXCEEDED:
        return "instruction_limit"
    return None


@dataclass(frozen=True)
class SizePolicy:
    """The tuning of a :class:`TransferSize` (validated on construction)."""

    ceiling: int
    floor: int = DEFAULT_FLOOR
    granularity: int = DEFAULT_GRANULARITY
    shrink_factor: float = 0.5
    grow_factor: float = 1.5
    grow_after: int = 4
    probe_after: int = 64

    def __post_init__(self) -> None:
        if self.granularity <= 0:
            raise ValueError(f"granularity must be positive, got {self.granularity}")
        if not 0 < self.floor <= self.ceiling:
            raise ValueError(
                f"need 0 < floor <= ceiling, got floor {self.floor}, ceiling {self.ceiling}"
            )
        if not 0.0 < self.shrink_factor < 1.0:
            raise ValueError(f"shrink_factor must be in (0, 1), got {self.shrink_factor}")
        if self.grow_factor <= 1.0:
            raise ValueError(f"grow_factor must be > 1, got {self.grow_factor}")
        if self.grow_after < 1 or self.probe_after < self.grow_after:
            raise ValueError("need 1 <= grow_after <= probe_after")


class TransferSize:
    """The adaptive number of bytes per call on one path (see the module docstring)."""

    def __init__(self, policy: SizePolicy, start: int | None = None) -> None:
        self.policy = policy
        self._size = self._fit(policy.ceiling if start is None else start)
        self._streak = 0  # consecutive successes since the last change
        self._bad: int | None = None  # smallest size that failed, while remembered
        self._since_failure = 0

    @classmethod
    def for_path(
        cls, path: Path, *, limit: int | None = None, floor: int = DEFAULT_FLOOR
    ) -> TransferSize:
        """A controller starting at the ceiling of ``path``.

        ``limit`` lowers the ceiling further, e.g. to the canister's
        ``icrp_info().max_transfer_bytes`` or a configured maximum.
        """
        ceiling = ceiling_for(path) if limit is None else min(limit, ceiling_for(path))
        return cls(SizePolicy(ceiling=ceiling, floor=min(floor, ceiling)))

    @property
    def size(self) -> int:
        """Bytes to send (or ask for) in the next call."""
        return self._size

    @property
    def at_floor(self) -> bool:
        return self._size <= self.policy.floor

    def on_success(self) -> None:
        """A call of the current size succeeded."""
        self._streak += 1
        self._since_failure += 1
        if self._bad is not None and self._since_failure >= self.policy.probe_after:
            self._bad = None  # probe the failed size again: limits can be transient
        if self._streak >= self.policy.grow_after:
            self._streak = 0
            self._size = self._grown()

    def on_too_large(self, failed_size: int | None = None) -> bool:
        """A call failed for its size; shrink.  ``False``: nothing smaller to try, give up.

        ``failed_size`` is the size of the call that failed (default: the
        current size); with concurrent calls, a late failure of a large call
        must not shrink an already smaller size again.
        """
        failed = self._size if failed_size is None else failed_size
        self._streak = 0
        self._since_failure = 0
        self._bad = failed if self._bad is None else min(self._bad, failed)
        if self._size < failed:
            return True  # already below the size that failed
        if failed <= self.policy.floor:
            self._size = self.policy.floor
            return False
        self._size = self._fit(int(failed * self.policy.shrink_factor))
        return True

    def _grown(self) -> int:
        target = int(self._size * self.policy.grow_factor)
        if self._bad is not None:
            target = min(target, self._bad - self.policy.granularity)
        return max(self._size, self._fit(target))

    def _fit(self, size: int) -> int:
        p = self.policy
        if size >= p.ceiling:
            return p.ceiling
        return max(p.floor, size - size % p.granularity)


def split_evenly(offset: int, length: int, max_piece: int) -> list[tuple[int, int]]:
    """Cut ``[offset, offset + length)`` into near-equal ``(offset, length)`` pieces.

    Every piece is at most ``max_piece`` bytes and there are as few pieces as
    that allows; pieces differ in length by at most one byte.
    """
    if max_piece <= 0:
        raise ValueError(f"max_piece must be positive, got {max_piece}")
    if length <= 0:
        return []
    count = -(-length // max_piece)
    base, extra = divmod(length, count)
    pieces = []
    position = offset
    for i in range(count):
        piece = base + (1 if i < extra else 0)
        pieces.append((position, piece))
        position += piece
    return pieces
