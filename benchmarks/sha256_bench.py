"""Instructions per byte of the Motoko library's SHA-256, and what they cost.

Every byte of an image is hashed when it is exported and again when a
backup verifies it, so SHA-256 is the dominant execution cost of a copy.
The ``sha256`` test canister hashes generated inputs (1 MiB and 2 MiB by
default) in one update message each, counting each path with
``ic0.performance_counter`` around the call:

- **region**: bytes in a Region (``Sha256.digestRegion``) — the export and
  import path of ``Image.mo``;
- **scratch**: a Blob copied into a scratch region and hashed from there
  (``Sha256.digestWith``; the copy is included);
- **blob**: a Blob read byte by byte (``Sha256.digest``), for small inputs.

localnet counts instructions as wasmtime fuel: one unit per Wasm operator
(control markers free). The IC weighs a few operators more (calls 5, loads
and stores 2 in a 64-bit memory, branches 2, plus 20 per ``stable64_read``):
the compression is arithmetic on locals, where the two tables agree, but
every byte read from a Blob costs four loads and two branches.
``benchmarks/wasm_cost.py`` walks one pass of the Blob loop
(``compressBlob``) in the Wasm on both tables; its fuel must match the
measured Blob figure (else the bench fails), and the region path on the
IC's table is the measured figure plus the loop's difference between them.

Cycles per GiB use the application (13-node) subnet price list of the
replica, ``CyclesAccountManagerConfig::application_subnet`` in dfinity/ic
``rs/config/src/subnet_config.rs``: ``ten_update_instructions_execution_fee``
10 cycles (1 cycle per instruction; the developer docs' cycles-costs table
says the same, "1B instructions executed: 1_000_000_000"), and
``WASM64_INSTRUCTION_COST_OVERHEAD`` (2) times that for a Wasm64 module such
as Motoko with enhanced orthogonal persistence. (An older table charged 4
cycles per 10 instructions; the figure at that price is printed too.) The
benchmark exits non-zero when the region path exceeds its target (100
instructions per byte).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icp_candid import DIDLoader
from icp_candid.candid import decode, encode

from benchmarks.figures import Figure
from benchmarks.wasm_cost import loop_cost
from canister_iface.agent import Agent
from canister_iface.management import ManagementClient
from localnet.process import LocalNetProcess

WASM = Path(__file__).resolve().parents[1] / "tests" / "canisters" / "wasm"
MiB = 1024 * 1024
GiB = 1024 * MiB
TARGET_INSTRUCTIONS_PER_BYTE = 100
CYCLES_PER_INSTRUCTION = 1.0  # 13-node application subnet: 10 cycles per 10 instructions
OLD_CYCLES_PER_INSTRUCTION = 0.4  # the earlier price list: 4 cycles per 10 instructions
WASM64_OVERHEAD = 2  # the IC charges Wasm64 instructions twice
PATHS = ("region", "scratch", "blob")


async def _measure(agent: Agent, canister: Any, length: int) -> dict[str, Any]:
    func = DIDLoader().load_did_source((WASM / "sha256.did").read_text())["methods"]["measure"]
    arg = encode(
        [{"type": t, "value": v} for t, v in zip(func.argTypes, [length, 0x5EED], strict=True)]
    )
    reply = await agent.update(canister, "measure", bytes(arg))
    return dict(decode(reply, func.retTypes)[0]["value"])


def _cycles_per_gib(per_byte: float, price: float = CYCLES_PER_INSTRUCTION) -> float:
    return per_byte * GiB * price * WASM64_OVERHEAD


def _static(wasm: bytes, per_byte_measured: float) -> tuple[float, float]:
    """The Blob loop's fuel and IC-table cost per byte, read from the Wasm.

    The fuel must agree with the performance counter's Blob figure (the loop
    is where the Blob path spends its instructions): if it does not, the
    static walk no longer matches what moc emits and its IC figure is void.
    """
    cost = loop_cost(wasm, "compressBlob")
    fuel, ic = cost.fuel / 64, cost.ic / 64
    if abs(fuel - per_byte_measured) > 0.02 * per_byte_measured:
        raise RuntimeError(
            f"the static count of compressBlob ({fuel:.1f} fuel/byte) disagrees with the "
            f"performance counter ({per_byte_measured:.1f}/byte): fix benchmarks/wasm_cost.py"
        )
    return fuel, ic


def _cycles_line(label: str, per_byte: float) -> str:
    return (
        f"{label}: {per_byte:6.1f} instructions/byte, "
        f"{_cycles_per_gib(per_byte) / 1e12:.3f} T cycles per GiB "
        "(13-node subnet, Wasm64; at the older 0.4 cycles/instruction "
        f"{_cycles_per_gib(per_byte, OLD_CYCLES_PER_INSTRUCTION) / 1e12:.3f} T)"
    )


async def run(argv: Sequence[str] = ()) -> list[Figure]:
    parser = argparse.ArgumentParser(prog="sha256_bench")
    parser.add_argument("--mib", type=int, nargs="+", default=[1, 2], help="input sizes")
    args = parser.parse_args(list(argv))
    config = (
        "localnet in a child process, tests/canisters/wasm/sha256.wasm, generated inputs of "
        f"{', '.join(f'{m} MiB' for m in args.mib)}, one update each; instructions = wasmtime "
        "fuel (ic0.performance_counter); IC table = the Blob loop re-weighted statically"
    )
    print(f"configuration: {config}")
    wasm = (WASM / "sha256.wasm").read_bytes()
    region = blob = 0.0
    async with (
        LocalNetProcess() as net,
        Agent(net.url, network="local", root_key=net.root_key) as agent,
    ):
        management = ManagementClient(agent)
        canister = (await management.provisional_create_canister_with_cycles()).raw
        await management.install_code(canister, wasm)
        for mib in args.mib:
            counts = await _measure(agent, canister, mib * MiB)
            for path in PATHS:
                per_byte = counts[path] / (mib * MiB)
                print(_cycles_line(f"{mib} MiB, {path:<7}", per_byte))
            region = max(region, counts["region"] / (mib * MiB))
            blob = max(blob, counts["blob"] / (mib * MiB))
    fuel, ic = _static(wasm, blob)
    # The region path is the Blob loop over 64 KiB slices plus one System API
    # call per slice: on the IC's table it costs what the loop costs more.
    region_ic = region + ic - fuel
    print(
        f"Blob loop read from the Wasm: {fuel:.1f} fuel/byte (measured {blob:.1f}), "
        f"{ic:.1f} on the IC's table"
    )
    print(_cycles_line("region path on the IC's table", region_ic))
    return [
        Figure(
            "SHA-256 region path (localnet fuel)",
            config,
            round(region, 1),
            "instr/B",
            target=TARGET_INSTRUCTIONS_PER_BYTE,
            higher_is_better=False,
        ),
        Figure("SHA-256 region path (IC's table)", config, round(region_ic, 1), "instr/B"),
        Figure(
            "SHA-256 region path, T cycles/GiB (IC)",
            config,
            round(_cycles_per_gib(region_ic) / 1e12, 3),
            "T",
        ),
    ]
