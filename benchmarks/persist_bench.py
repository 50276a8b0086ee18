"""What crash-consistent ``--state-dir`` costs per update call.

Two child localnets side by side in one run, one without and one with
``--state-dir``; each holds the ``journal`` test canister with a
``--heap-mib`` MiB heap (default 100) and serves ``--calls`` (default 200)
sequential ``add`` update calls (v4 sync calls through our agent). Each call
writes a few heap pages, a stable memory page and the certified data.

Reported: median and p90 latency per call with persistence off and on, the
difference, and the journal bytes appended per call. The target: the
journal grows by what a call wrote (dirty pages), never by the heap —
at most 1 MiB per call — otherwise the benchmark fails.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icp_candid import DIDLoader
from icp_candid.candid import decode, encode

from canister_iface.agent import Agent
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from localnet import persist
from localnet.process import LocalNetProcess

WASM = Path(__file__).resolve().parents[1] / "tests" / "canisters" / "wasm"
METHODS = DIDLoader().load_did_source((WASM / "journal.did").read_text())["methods"]
MAX_JOURNAL_BYTES_PER_CALL = 1024 * 1024


async def _call(agent: Agent, canister: Principal, method: str, *args: Any) -> Any:
    func = METHODS[method]
    arg = bytes(encode([{"type": t, "value": v} for t, v in zip(func.argTypes, args, strict=True)]))
    return decode(await agent.update(canister, method, arg), func.retTypes)[0]["value"]


async def _latencies(state_dir: Path | None, heap_mib: int, calls: int) -> list[float]:
    async with (
        LocalNetProcess(state_dir=state_dir) as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        management = ManagementClient(agent)
        canister = (await management.provisional_create_canister_with_cycles()).raw
        await management.install_code(canister, (WASM / "journal.wasm").read_bytes())
        target = Principal(canister)
        for _ in range(0, heap_mib, 20):
            await _call(agent, target, "ballast", min(20, heap_mib))
        for value in range(10):  # warm up
            await _call(agent, target, "add", value)
        journal = state_dir / persist.JOURNAL if state_dir else None
        before = journal.stat().st_size if journal else 0
        samples = []
        for value in range(calls):
            start = time.perf_counter()
            await _call(agent, target, "add", value)
            samples.append(time.perf_counter() - start)
        if journal is not None:
            grown = journal.stat().st_size - before
            print(f"journal: {grown / calls / 1024:.1f} KiB appended per update call")
            _JOURNAL_PER_CALL.append(grown / calls)
    return samples


_JOURNAL_PER_CALL: list[float] = []


def _show(name: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    p90 = sorted(samples)[int(0.9 * len(samples))]
    print(f"persistence {name}: median {median * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms per update")
    return median


async def run(argv: Sequence[str] = ()) -> bool:
    parser = argparse.ArgumentParser(prog="persist_bench")
    parser.add_argument("--heap-mib", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(list(argv))
    print(
        f"configuration: journal canister with a {args.heap_mib} MiB heap, {args.calls} "
        "sequential add() update calls per localnet (child process), persistence off then on"
    )
    off = _show("off", await _latencies(None, args.heap_mib, args.calls))
    with tempfile.TemporaryDirectory() as tmp:
        on = _show("on ", await _latencies(Path(tmp) / "state", args.heap_mib, args.calls))
    print(f"cost of persistence: {(on - off) * 1e3:+.2f} ms per update call ({on / off:.2f}x)")
    ok = bool(_JOURNAL_PER_CALL) and _JOURNAL_PER_CALL[-1] <= MAX_JOURNAL_BYTES_PER_CALL
    print(
        f"journal per call <= {MAX_JOURNAL_BYTES_PER_CALL // 1024} KiB: {'met' if ok else 'MISSED'}"
    )
    return ok
