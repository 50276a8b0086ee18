"""Run every benchmark: ``python -m benchmarks [name ...] [-- options]``.

Options after the names (``python -m benchmarks backup_bench --mib 32``) go to
the benchmarks whose ``run`` takes an ``argv``. A benchmark whose ``run``
returns False missed a target: the exit status is then 1 (after all ran).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys

BENCHMARKS = [
    "localnet_bench",
    "backup_bench",
    "sha256_bench",
    "persist_bench",
    "icrp_bench",
    "subnet_bench",
    "localnet_scale_bench",
    "split_bench",
]


def main(argv: list[str]) -> int:
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], argv[split:]
    missed = []
    for name in names or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        if inspect.signature(module.run).parameters:
            result = asyncio.run(module.run(options))
        else:
            result = asyncio.run(module.run())
        if result is False:
            missed.append(name)
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
