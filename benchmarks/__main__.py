"""Run the benchmarks: ``python -m benchmarks [--quick] [name ...] [-- options]``.

Options after the names (``python -m benchmarks backup_bench --mib 32``) go to
the benchmarks whose ``run`` takes an ``argv``.  ``--quick`` (``make
bench-quick``, a few minutes) runs :data:`QUICK` with each module's
``QUICK_ARGV`` (smaller images, fewer calls); without it (``make bench``)
every benchmark runs at full size.

A benchmark's ``run`` returns its :class:`~benchmarks.figures.Figure` list
(older ones return ``False`` for a missed target, or nothing).  At the end
every figure is printed in one table (figure, configuration, target,
measured, verdict); the exit status is 1 if any figure missed its target.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys

from benchmarks.figures import Figure, table

BENCHMARKS = [
    "localnet_bench",
    "backup_bench",
    "sha256_bench",
    "persist_bench",
    "icrp_bench",
    "repository_bench",
    "subnet_bench",
    "localnet_scale_bench",
    "fleet_bench",
]
QUICK = ["backup_bench", "sha256_bench", "repository_bench"]


def _run(name: str, options: list[str], quick: bool) -> list[Figure]:
    module = importlib.import_module(f"benchmarks.{name}")
    print(f"== {name}", flush=True)
    if inspect.signature(module.run).parameters:
        argv = options or (list(getattr(module, "QUICK_ARGV", [])) if quick else [])
        result = asyncio.run(module.run(argv))
    else:
        result = asyncio.run(module.run())
    if isinstance(result, list):
        return result
    if result is False:  # a benchmark that reports its own figures: one of them missed
        return [Figure(f"{name}: its own targets", "see its output", 0, "", target=1)]
    return []


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], [a for a in argv[split:] if a != "--"]
    figures: list[Figure] = []
    for name in names or (QUICK if quick else BENCHMARKS):
        figures += _run(name, options, quick)
    if figures:
        print(f"\n== figures ({'quick' if quick else 'full'} run)")
        table(figures)
    missed = [f.name for f in figures if f.missed]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
