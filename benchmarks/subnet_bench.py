"""The opt-in subnet model: what it costs and whether its limits hold.

Every localnet runs in a child process (``LocalNetProcess``), as a replica
would; the load comes from our agent over HTTP. Side by side in one run:

- **ingress throughput**: ``--clients`` concurrent clients send ``store_size``
  update calls with a ``--payload-kib`` KiB argument to one counter canister
  for ``--seconds`` seconds, against a localnet without the model, with the
  default model (an application subnet: 1 round/s, 4 MiB blocks) and with
  ``rounds_per_second=10``. Reported: calls/s, ingress MiB/s, rounds/s
  achieved, the ratio model on / off.
- **inter-canister call latency**: a caller canister's ``call_inc`` to a
  counter on its own subnet and on the other one (two subnets at 10 rounds/s,
  ``--latency-calls`` sequential calls each, medians).
- **round rate**: the rounds/s achieved under that load and, idle, at
  ``rounds_per_second=1000`` with two subnets (the fabric's own ceiling).
- **memory per subnet**: the resident set of idle localnets (no canisters)
  with 1, 2 and 8 subnets.

Targets (the exit status is 1 if one is missed): the block limit holds (the
modelled ingress MiB/s stays within 2 % of 4 MiB per achieved round) and, at
1 round/s, this load fills the blocks at least half; rounds run at >= 90 % of
the configured rate under load (a round that runs late delays the next: no
catch-up bursts); a cross-subnet call takes 2 rounds (1.5 to 2.5) more than a
local one (the model's delivery rounds: 2 each way against 1); a subnet costs
at most 64 MiB of memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from icp_candid import Types, encode

from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.principal import Principal
from localnet import SubnetModel
from localnet.process import LocalNetProcess
from localnet.subnets import canister_range

WASM = Path(__file__).resolve().parents[1] / "tests/canisters/wasm"
COUNTER = (WASM / "counter.wasm").read_bytes()
CALLER = (WASM / "caller.wasm").read_bytes()
MiB = 1024 * 1024
MAX_SUBNET_MIB = 64
BLOCK_TOLERANCE = 1.02
PACED = 0.9  # rounds/s achieved under load, of the configured rate
# A cross-subnet call and its reply take xnet_delay_rounds (2) each way, a local
# one local_delay_rounds (1): 2 rounds more, within half a round either way.
XNET_EXTRA_ROUNDS = (1.5, 2.5)
LATENCY_RATE = 10.0


@dataclass
class Throughput:
    name: str
    calls: int
    bytes: int
    seconds: float
    rounds: int

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def mib_per_second(self) -> float:
        return self.bytes / self.seconds / MiB

    @property
    def rounds_per_second(self) -> float:
        return self.rounds / self.seconds

    def show(self) -> None:
        rounds = f", {self.rounds_per_second:6.2f} rounds/s" if self.rounds else ""
        print(
            f"{self.name:<28} {self.calls_per_second:8.1f} calls/s "
            f"{self.mib_per_second:7.2f} MiB/s ingress{rounds}"
        )


async def _rounds(http: httpx.AsyncClient) -> int:
    described = (await http.get("/_/subnets")).json()
    return int(described["stats"]["rounds"])


async def _throughput(
    name: str, model: SubnetModel | None, clients: int, payload: int, seconds: float
) -> Throughput:
    arg = bytes(encode([{"type": Types.Vec(Types.Nat8), "value": b"x" * payload}]))
    async with (
        LocalNetProcess(subnet_model=model) as net,
        Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent,
        httpx.AsyncClient(base_url=net.url) as http,
    ):
        management = ManagementClient(agent)
        canister = await management.provisional_create_canister_with_cycles()
        await management.install_code(canister.raw, COUNTER)
        done = [0]
        stop = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < stop:
                await agent.update(canister, "store_size", arg)
                done[0] += 1

        await agent.update(canister, "store_size", arg)  # warm up
        rounds_before, started = await _rounds(http), time.monotonic()
        calls_before = done[0]
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - started
        calls = done[0] - calls_before
        rounds = await _rounds(http) - rounds_before
    return Throughput(name, calls, calls * (len(arg) + len("store_size")), elapsed, rounds)


async def _idle_round_rate(seconds: float) -> float:
    model = SubnetModel(rounds_per_second=1000)
    async with (
        LocalNetProcess(subnets=2, subnet_model=model) as net,
        httpx.AsyncClient(base_url=net.url) as http,
    ):
        before, started = await _rounds(http), time.monotonic()
        await asyncio.sleep(seconds)
        return (await _rounds(http) - before) / (time.monotonic() - started)


async def _call_latency(calls: int) -> tuple[float, float]:
    """Median seconds of a caller's ``call_inc`` to a counter on its own and on the other subnet."""
    model = SubnetModel(rounds_per_second=LATENCY_RATE)
    async with (
        LocalNetProcess(subnets=2, subnet_model=model) as net,
        Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key) as agent,
    ):
        management = ManagementClient(agent)

        async def deploy(wasm: bytes, subnet: int) -> str:
            created = await management.provisional_create_canister_with_cycles(
                effective_canister_id=Principal(canister_range(subnet)[0])
            )
            await management.install_code(created.raw, wasm)
            return created.to_text()

        caller = Principal.from_text(await deploy(CALLER, 0))
        medians = []
        for subnet in (0, 1):
            arg = encode([{"type": Types.Principal, "value": await deploy(COUNTER, subnet)}])
            times = []
            for _ in range(calls):
                started = time.monotonic()
                await agent.update(caller, "call_inc", arg)
                times.append(time.monotonic() - started)
            medians.append(statistics.median(times))
        return medians[0], medians[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _memory(subnets: int) -> float:
    async with LocalNetProcess(subnets=subnets, subnet_model=SubnetModel()) as net:
        await asyncio.sleep(1.0)  # a round or so on every subnet
        assert net.pid is not None
        return _rss_mib(net.pid)


async def run(argv: Sequence[str] = ()) -> bool:
    parser = argparse.ArgumentParser(prog="subnet_bench")
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--payload-kib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--latency-calls", type=int, default=15)
    args = parser.parse_args(list(argv))
    payload = args.payload_kib * 1024
    print(
        f"configuration: {args.clients} concurrent agent clients, store_size({args.payload_kib} "
        f"KiB) update calls to one canister for {args.seconds:g} s per localnet (child "
        "process, one subnet); model off, default model (1 round/s, 4 MiB / 1000-message "
        "blocks), rounds_per_second=10"
    )
    runs = []
    for name, model in (
        ("model off", None),
        ("model on, 1 round/s", SubnetModel()),
        ("model on, 10 rounds/s", SubnetModel(rounds_per_second=10)),
    ):
        result = await _throughput(name, model, args.clients, payload, args.seconds)
        result.show()
        runs.append(result)
    off, default, fast = runs
    print(
        f"ratio model on / off: {default.calls_per_second / off.calls_per_second:.3f} "
        f"(1 round/s), {fast.calls_per_second / off.calls_per_second:.3f} (10 rounds/s)"
    )
    ok = True
    for result, rate in ((default, 1.0), (fast, 10.0)):
        ceiling = 4 * result.rounds_per_second
        held = result.mib_per_second <= ceiling * BLOCK_TOLERANCE
        paced = result.rounds_per_second >= PACED * rate
        print(
            f"{result.name}: block limit {ceiling:.2f} MiB/s {'held' if held else 'EXCEEDED'}; "
            f"rounds {result.rounds_per_second:.2f}/s of {rate:g} {'met' if paced else 'MISSED'}"
        )
        ok = ok and held and paced
    # At 1 round/s the load fills the blocks: the model, not localnet, is the limit.
    filled = default.mib_per_second >= 2 * default.rounds_per_second
    print(f"default model: blocks at least half full {'met' if filled else 'MISSED'}")
    ok = ok and filled
    local, remote = await _call_latency(args.latency_calls)
    extra = (remote - local) * LATENCY_RATE
    timed = XNET_EXTRA_ROUNDS[0] <= extra <= XNET_EXTRA_ROUNDS[1]
    print(
        f"inter-canister call_inc, 2 subnets, {LATENCY_RATE:g} rounds/s, median of "
        f"{args.latency_calls} sequential calls: same subnet {local * 1000:.0f} ms, other subnet "
        f"{remote * 1000:.0f} ms (ratio {remote / local:.2f}); {extra:.2f} rounds more "
        f"(target {XNET_EXTRA_ROUNDS[0]:g}..{XNET_EXTRA_ROUNDS[1]:g}) "
        f"{'met' if timed else 'MISSED'}"
    )
    ok = ok and timed
    print(f"idle, 2 subnets, rounds_per_second=1000: {await _idle_round_rate(3.0):.0f} rounds/s")
    rss = {n: await _memory(n) for n in (1, 2, 8)}
    per_subnet = (rss[8] - rss[1]) / 7
    print(
        "memory (RSS, idle, default model): "
        + ", ".join(f"{n} subnet(s) {mib:.0f} MiB" for n, mib in rss.items())
        + f"; {per_subnet:.1f} MiB per subnet (target <= {MAX_SUBNET_MIB})"
    )
    return ok and per_subnet <= MAX_SUBNET_MIB
