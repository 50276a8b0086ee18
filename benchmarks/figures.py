"""Figures a benchmark reports: what was measured, under which configuration, against what.

A benchmark's ``run`` returns a list of :class:`Figure`; ``python -m benchmarks``
prints them all as one table (figure, configuration, target, measured,
verdict) and exits 1 if any figure with a target missed it.  A figure
without a target is information (verdict ``info``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    config: str  # the configuration it was measured with, in words
    measured: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        if math.isnan(self.measured):
            return "MISSED"
        ok = self.measured >= self.target if self.higher_is_better else self.measured <= self.target
        return "met" if ok else "MISSED"

    @property
    def missed(self) -> bool:
        return self.verdict == "MISSED"

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {_number(self.target)} {self.unit}".rstrip()

    def measured_text(self) -> str:
        return f"{_number(self.measured)} {self.unit}".rstrip()


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def table(figures: Sequence[Figure], write: Callable[[str], None] = print) -> None:
    """The figures as a plain-text table, then each configuration named once."""
    configs: list[str] = []
    for figure in figures:
        if figure.config not in configs:
            configs.append(figure.config)
    rows = [("figure", "config", "target", "measured", "verdict")]
    rows += [
        (
            f.name,
            f"[{configs.index(f.config) + 1}]",
            f.target_text(),
            f.measured_text(),
            f.verdict,
        )
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for n, row in enumerate(rows):
        write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            write("  ".join("-" * width for width in widths))
    for n, config in enumerate(configs, 1):
        write(f"[{n}] {config}")
