"""Key ranges of a split and how to choose them: pure, no I/O.

Keys compare as byte strings (``icrp.did``, "Key ranges").  A split of a
canister into ``n`` parts is ``n - 1`` strictly increasing, non-empty
boundaries ``b1 < b2 < …``: part 0 is ``[b"", b1)``, part ``i`` is
``[b_i, b_{i+1})``, the last one is unbounded.  Part 0 stays in the source;
every other part moves to a shard of its own.

Boundaries are chosen on bucket boundaries of ``icrp_key_distribution`` so
that every part holds about the same number of *bytes* (keys of skewed
sizes make record counts a poor measure).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from replicator.errors import UsageError


@dataclass(frozen=True, order=True)
class Span:
    """Keys ``k`` with ``lower <= k < upper``; ``upper=None``: unbounded."""

    lower: bytes = b""
    upper: bytes | None = None

    def to_payload(self) -> list[str | None]:
        return [self.lower.hex(), None if self.upper is None else self.upper.hex()]

    @classmethod
    def from_payload(cls, data: Sequence[str | None]) -> Span:
        lower, upper = data
        return cls(bytes.fromhex(lower or ""), None if upper is None else bytes.fromhex(upper))

    def __str__(self) -> str:
        upper = "∞" if self.upper is None else _show(self.upper)
        return f"[{_show(self.lower)}, {upper})"


@dataclass(frozen=True)
class Bucket:
    """One bucket of a key distribution: ``first_key`` and what it holds."""

    first_key: bytes
    records: int
    nbytes: int


@dataclass(frozen=True)
class Part:
    """One part of a plan: its keys and the records and bytes estimated in it."""

    span: Span
    records: int
    nbytes: int


def spans(boundaries: Sequence[bytes]) -> tuple[Span, ...]:
    """The parts ``boundaries`` cut the key space into (checked: increasing, non-empty)."""
    check_boundaries(boundaries)
    edges: list[bytes | None] = [b"", *boundaries, None]
    return tuple(Span(lower or b"", upper) for lower, upper in itertools.pairwise(edges))


def check_boundaries(boundaries: Sequence[bytes]) -> None:
    if not boundaries:
        raise UsageError("a split needs at least one boundary (two parts)")
    if boundaries[0] == b"":
        raise UsageError("a boundary cannot be the empty key: the first part would be empty")
    for before, after in itertools.pairwise(boundaries):
        if not before < after:
            raise UsageError(
                f"boundaries must increase: {_show(before)} is not below {_show(after)}"
            )


def parse_boundaries(text: str) -> tuple[bytes, ...]:
    """``--boundaries``: comma-separated keys, each hex (``0x…``) or UTF-8 text."""
    keys = tuple(_parse_key(item.strip()) for item in text.split(",") if item.strip())
    check_boundaries(keys)
    return keys


def boundaries_text(boundaries: Sequence[bytes]) -> str:
    """The form :func:`parse_boundaries` reads back (hex, so any key survives)."""
    return ",".join("0x" + b.hex() for b in boundaries)


def _parse_key(item: str) -> bytes:
    if item.startswith("0x"):
        try:
            return bytes.fromhex(item[2:])
        except ValueError:
            raise UsageError(f"boundary {item!r} is not valid hex after 0x") from None
    return item.encode()


def shard_count(total_bytes: int, max_shard_bytes: int) -> int:
    """How many parts keep each at or under ``max_shard_bytes`` (at least 2)."""
    if max_shard_bytes <= 0:
        raise UsageError(f"--max-shard-bytes must be positive, got {max_shard_bytes}")
    return max(2, -(-total_bytes // max_shard_bytes))


def balanced_boundaries(buckets: Sequence[Bucket], parts: int) -> tuple[bytes, ...]:
    """``parts - 1`` bucket boundaries that balance bytes between the parts.

    Boundary ``i`` is the first key of the bucket where the running total of
    bytes first reaches ``i / parts`` of the whole (or comes closest to it).
    Fewer distinct buckets than parts cannot be split that finely: an error.
    """
    if parts < 2:
        raise UsageError(f"a split needs at least 2 parts, got {parts}")
    usable = [b for b in buckets if b.first_key != b""] if buckets else []
    if len(usable) < parts - 1:
        raise UsageError(
            f"the source's keys fall into {len(buckets)} buckets: too few to split into "
            f"{parts} parts; give fewer shards or --boundaries"
        )
    total = sum(b.nbytes for b in buckets)
    chosen: list[bytes] = []
    running = 0
    target_index = 1
    for position, bucket in enumerate(buckets):
        target = total * target_index / parts
        left = len(buckets) - position  # buckets from here on, this one included
        needed = parts - 1 - len(chosen)
        must = left <= needed  # take every remaining bucket to have enough boundaries
        if position > 0 and (running >= target or must):
            chosen.append(bucket.first_key)
            target_index += 1
            if len(chosen) == parts - 1:
                break
        running += bucket.nbytes
    return tuple(chosen)


def estimate(buckets: Sequence[Bucket], boundaries: Sequence[bytes]) -> tuple[Part, ...]:
    """The records and bytes of each part, from the buckets (a bucket counts where it starts)."""
    parts = spans(boundaries)
    records = [0] * len(parts)
    nbytes = [0] * len(parts)
    index = 0
    for bucket in buckets:
        while parts[index].upper is not None and bucket.first_key >= parts[index].upper:  # type: ignore[operator]
            index += 1
        records[index] += bucket.records
        nbytes[index] += bucket.nbytes
    return tuple(Part(s, r, b) for s, r, b in zip(parts, records, nbytes, strict=True))


def _show(key: bytes) -> str:
    if key and all(32 < c < 127 and c not in b",[]()" for c in key):
        return key.decode()
    return "0x" + key.hex()


_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
}


def parse_size(value: object, what: str) -> int:
    """Bytes from ``123``, ``"123"`` or ``"64 MiB"`` (KiB, MiB, GiB; kB, MB, GB)."""
    number: float
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("kmgib")
        try:
            number, unit = float(digits), text[len(digits) :]
        except ValueError:
            number, unit = -1, ""
    else:
        number, unit = -1, ""
    if unit not in _UNITS or number <= 0:
        raise UsageError(
            f'{what} must be a positive size such as 268435456 or "256 MiB", got {value!r}'
        )
    return int(number * _UNITS[unit])
