"""Run every benchmark: ``python -m benchmarks [name ...] [-- options]``.

Options after the names (``python -m benchmarks backup_bench --mib 32``) go to
the benchmarks whose ``run`` takes an ``argv``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys

BENCHMARKS = ["localnet_bench", "backup_bench"]


def main(argv: list[str]) -> int:
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], argv[split:]
    for name in names or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        if inspect.signature(module.run).parameters:
            asyncio.run(module.run(options))
        else:
            asyncio.run(module.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
