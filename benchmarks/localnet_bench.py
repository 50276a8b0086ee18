"""localnet's own speed, measured over its HTTP interface.

localnet runs in its own process (as a replica would); the measuring client is
deliberately minimal (anonymous envelopes built with cbor2, one pooled httpx
client) so the figures are localnet's, not an agent's. Setup goes through our
own agent and management client.

- time per small update (v4 sync call) and per small query;
- MiB/s for 2 MiB query replies from a canister holding a 100 MiB heap
  (localnet must never be the bottleneck: target >= 200 MiB/s);
- memory (RSS) per live canister (50 canisters: all stay live; fleets of
  sleeping canisters are ``benchmarks/localnet_scale_bench.py``'s).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from pathlib import Path

import cbor2
import httpx
from icp_candid import Types, decode, encode

from canister_iface.agent import Agent
from canister_iface.management import ManagementClient
from localnet import LocalNet, ids
from localnet.process import LocalNetProcess
from localnet.rihash import request_id

COUNTER = (Path(__file__).resolve().parents[1] / "tests/canisters/wasm/counter.wasm").read_bytes()
MiB = 1024 * 1024


class _AnonymousClient:
    def __init__(self, url: str) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=60)
        self._nonce = 0

    async def close(self) -> None:
        await self._http.aclose()

    def _envelope(self, kind: str, canister: bytes, method: str, arg: bytes) -> bytes:
        self._nonce += 1
        content = {
            "request_type": kind,
            "canister_id": canister,
            "method_name": method,
            "arg": arg,
            "sender": ids.ANONYMOUS,
            "ingress_expiry": time.time_ns() + 120 * 10**9,
            "nonce": self._nonce.to_bytes(8, "big"),
        }
        request_id(content)
        return cbor2.dumps(cbor2.CBORTag(55799, {"content": content}))

    async def query(self, canister: bytes, method: str, arg: bytes) -> bytes:
        text = ids.to_text(canister)
        response = await self._http.post(
            f"/api/v3/canister/{text}/query",
            content=self._envelope("query", canister, method, arg),
            headers={"content-type": "application/cbor"},
        )
        response.raise_for_status()
        body = cbor2.loads(response.content)
        body = body.value if isinstance(body, cbor2.CBORTag) else body
        if body["status"] != "replied":
            raise RuntimeError(body)
        return bytes(body["reply"]["arg"])

    async def update(self, canister: bytes, method: str, arg: bytes) -> None:
        text = ids.to_text(canister)
        response = await self._http.post(
            f"/api/v4/canister/{text}/call",
            content=self._envelope("call", canister, method, arg),
            headers={"content-type": "application/cbor"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text}")


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _small_calls(client: _AnonymousClient, canister: bytes) -> None:
    empty = encode([])
    for _ in range(20):  # warm up
        await client.query(canister, "get", empty)
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        await client.update(canister, "inc", empty)
        samples.append(time.perf_counter() - start)
    print(
        f"small update (v4 sync call): median {statistics.median(samples) * 1e3:.2f} ms, "
        f"p90 {sorted(samples)[179] * 1e3:.2f} ms"
    )
    samples = []
    for _ in range(500):
        start = time.perf_counter()
        await client.query(canister, "get", empty)
        samples.append(time.perf_counter() - start)
    print(
        f"small query: median {statistics.median(samples) * 1e3:.2f} ms, "
        f"p90 {sorted(samples)[449] * 1e3:.2f} ms"
    )


async def _big_queries(client: _AnonymousClient, canister: bytes) -> None:
    for _ in range(5):  # 50 blobs of 2 MiB: a 100 MiB heap
        await client.update(canister, "fill", encode([{"type": Types.Nat, "value": 10}]))
    count = decode(await client.query(canister, "chunk_count", encode([])), [Types.Nat])
    assert count[0]["value"] == 50
    for concurrency in (1, 4):
        total = 0
        start = time.perf_counter()

        async def reader(worker: int, n: int = 100 // concurrency) -> int:
            got = 0
            for i in range(n):
                arg = encode([{"type": Types.Nat, "value": (worker * 13 + i) % 50}])
                got += len(await client.query(canister, "chunk", arg))
            return got

        total = sum(await asyncio.gather(*(reader(w) for w in range(concurrency))))
        elapsed = time.perf_counter() - start
        print(
            f"2 MiB queries from a 100 MiB heap, {concurrency} in flight: "
            f"{total / MiB / elapsed:.0f} MiB/s"
        )


async def _idle_memory() -> None:
    # In-process, so the RSS of the canisters themselves can be read.
    async with LocalNet() as net:
        await net.install_code(await net.create_canister(), COUNTER)
        before = _rss_mib()
        n = 50
        for _ in range(n):
            canister = await net.create_canister()
            await net.install_code(canister, COUNTER)
        after = _rss_mib()
    print(f"memory per live canister: {(after - before) / n:.2f} MiB RSS ({n} canisters)")


async def run() -> None:
    async with LocalNetProcess() as net:
        async with Agent(net.url, network="local", root_key=net.root_key) as agent:
            management = ManagementClient(agent)
            canister = (await management.provisional_create_canister_with_cycles()).raw
            await management.install_code(canister, COUNTER)
        client = _AnonymousClient(net.url)
        try:
            await _small_calls(client, canister)
            await _big_queries(client, canister)
        finally:
            await client.close()
    await _idle_memory()
