"""Sandbox measurements (not a test): ``.venv/bin/python tests/localnet/bench_sandbox.py``.

Prints the time per small update and query through ``CanisterSandbox.execute``,
the throughput of 2 MiB query replies from a canister with a ~100 MiB heap,
the cost of rolling back a trap on that heap, and the RSS of idle sandboxes,
for both rollback strategies.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from icp_candid.candid import Types
from sandbox_util import candid, load_installed, run

from localnet.execution import EntryKind
from localnet.sandbox import CanisterSandbox, WasmEngine

MiB = 1024 * 1024
HoldType = Types.Variant({"hold": Types.Record({"size": Types.Nat, "fill": Types.Nat8})})
EndType = Types.Variant({"commit": Types.Null, "trap": Types.Null, "spin": Types.Null})
PutType = Types.Variant(
    {"put": Types.Record({"key": Types.Nat, "size": Types.Nat, "fill": Types.Nat8})}
)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def small_messages(engine: WasmEngine, mode: str) -> None:
    sb = load_installed(engine, "sysapi", rollback=mode)
    arg = candid((Types.Nat, 1))
    empty = candid()
    up = per_call(lambda: run(sb, EntryKind.UPDATE, "inc", arg), 500)
    q = per_call(lambda: run(sb, EntryKind.QUERY, "get", empty), 500)
    print(f"[{mode}] small update {up * 1e6:.0f} us, small query {q * 1e6:.0f} us "
          f"(heap {sb.heap_size / MiB:.1f} MiB)")  # fmt: skip
    sb.close()


def big_heap(engine: WasmEngine, mode: str) -> None:
    sb = load_installed(engine, "rollback", rollback=mode)
    i = 0
    while sb.heap_size < 100 * MiB:  # held 2 MB blobs, plus the garbage making them leaves
        ops = [{"hold": {"size": 2_000_000, "fill": i % 250 + 1}}]
        arg = candid((Types.Vec(HoldType), ops), (EndType, {"commit": None}))
        assert not run(sb, EntryKind.UPDATE, "apply", arg).trapped
        i += 1
    arg = candid((Types.Nat, 3))
    result = run(sb, EntryKind.QUERY, "heldBlob", arg)
    assert result.response is not None
    size = len(result.response.data)
    t = per_call(lambda: run(sb, EntryKind.QUERY, "heldBlob", arg), 30)
    put = [{"put": {"key": 1, "size": 10, "fill": 1}}]
    trap_arg = candid((Types.Vec(PutType), put), (EndType, {"trap": None}))
    commit_arg = candid((Types.Vec(PutType), put), (EndType, {"commit": None}))
    trap = per_call(lambda: run(sb, EntryKind.UPDATE, "apply", trap_arg), 30)
    commit = per_call(lambda: run(sb, EntryKind.UPDATE, "apply", commit_arg), 30)
    print(f"[{mode}] heap {sb.heap_size / MiB:.0f} MiB: {size / MiB:.1f} MiB query reply "
          f"{t * 1e3:.1f} ms = {size / t / MiB:.0f} MiB/s; small update {commit * 1e3:.2f} ms, "
          f"trapped update {trap * 1e3:.2f} ms")  # fmt: skip
    sb.close()


def idle_rss(engine: WasmEngine, mode: str, n: int = 20) -> None:
    load_installed(engine, "sysapi", rollback=mode).close()  # compile first
    gc.collect()
    before = rss()
    boxes: list[CanisterSandbox] = [load_installed(engine, "sysapi", rollback=mode)
                                    for _ in range(n)]  # fmt: skip
    for sb in boxes:
        run(sb, EntryKind.UPDATE, "inc", candid((Types.Nat, 1)))
    gc.collect()
    delta = (rss() - before) / n
    start = time.perf_counter()
    extra = load_installed(engine, "sysapi", rollback=mode)
    load_time = time.perf_counter() - start
    heap = boxes[0].heap_size / MiB
    print(f"[{mode}] idle sandbox RSS {delta / MiB:.1f} MiB each (heap {heap:.1f} MiB); "
          f"load+init {load_time * 1e3:.1f} ms")  # fmt: skip
    extra.close()
    for sb in boxes:
        sb.close()


def main() -> None:
    engine = WasmEngine()
    for mode in ("dirty", "copy"):
        small_messages(engine, mode)
        idle_rss(engine, mode)
        big_heap(engine, mode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
