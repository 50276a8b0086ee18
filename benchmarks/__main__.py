"""Run every benchmark: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import asyncio
import importlib
import sys

BENCHMARKS = ["localnet_bench"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        asyncio.run(module.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
