"""The Motoko library's SHA-256 against Python's hashlib, through localnet.

The ``sha256`` test canister (tests/canisters/src/sha256) hashes every input
by each path of ``Sha256.mo`` — a Blob read byte by byte, a Blob through a
scratch region, a Region range at an unaligned offset and one ending at the
region's last byte — and the tests compare all of them with hashlib:
every length from 0 to 300 (the padding boundaries at 55/56/64 bytes and
their multiples), random lengths up to 300 KB, inputs fed in random pieces,
and generated inputs of 1 MiB + 3 bytes hashed in one message. The FIPS
180-4 vectors (including one million 'a') stay in the library self-test
(``tests/canister_iface/test_icrp_reference_canisters.py``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from icp_candid import DIDLoader
from icp_candid.candid import decode, encode

from canister_iface.agent import Agent
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from localnet import LocalNet

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

WASM = Path(__file__).parents[1] / "canisters" / "wasm"
METHODS = DIDLoader().load_did_source((WASM / "sha256.did").read_text())["methods"]
PATHS = ["blob", "blob via scratch", "region at offset 13", "region at its end"]


def xorshift_bytes(length: int, seed: int) -> bytes:
    """The canister's ``generate``: xorshift64 states, little-endian."""
    mask = (1 << 64) - 1
    x, out = seed, bytearray()
    while len(out) < length:
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out += x.to_bytes(8, "little")
    return bytes(out[:length])


class Sha256Canister:
    def __init__(self, agent: Agent, canister: Principal) -> None:
        self.agent, self.canister = agent, canister

    async def call(self, method: str, *args: Any) -> Any:
        func = METHODS[method]
        arg = bytes(
            encode([{"type": t, "value": v} for t, v in zip(func.argTypes, args, strict=True)])
        )
        if "query" in func.annotations:
            reply = await self.agent.query(self.canister, method, arg)
        else:
            reply = await self.agent.update(self.canister, method, arg)
        return decode(reply, func.retTypes)[0]["value"]

    async def check(self, blobs: list[bytes]) -> None:
        results = await self.call("digests", blobs)
        for data, digests in zip(blobs, results, strict=True):
            expected = hashlib.sha256(data).digest()
            for path, digest in zip(PATHS, digests, strict=True):
                assert bytes(digest) == expected, f"{len(data)} bytes by the {path} path"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sha() -> AsyncIterator[Sha256Canister]:
    me = Identity.generate_ed25519()
    async with LocalNet() as net:
        raw = await net.create_canister(controllers=[me.principal.raw, b"\x04"])
        await net.install_code(raw, (WASM / "sha256.wasm").read_bytes())
        async with Agent(net.url, me, root_key=net.root_key) as agent:
            yield Sha256Canister(agent, Principal(raw))


async def test_every_length_up_to_300(sha: Sha256Canister) -> None:
    rng = random.Random(300)
    await sha.check([rng.randbytes(n) for n in range(301)])


async def test_special_bytes_at_the_padding_boundaries(sha: Sha256Canister) -> None:
    # All-zero and all-0xff inputs: a mistake in masking or in the doubled
    # words would show as a carry into, or garbage from, the upper half.
    sizes = [55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192]
    await sha.check([bytes([fill]) * n for fill in (0, 0xFF, 0x80) for n in sizes])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_lengths(sha: Sha256Canister, seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randrange(301, 300_000) for _ in range(5)]
    await sha.check([rng.randbytes(n) for n in lengths])


@pytest.mark.parametrize("with_scratch", [True, False])
@pytest.mark.parametrize("seed", [4, 5])
async def test_pieces(sha: Sha256Canister, seed: int, with_scratch: bool) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1_000, 20_000))
    cuts = [*sorted(rng.sample(range(len(data)), 40)), len(data)]  # an empty last piece
    digest = await sha.call("digestPieces", data, cuts, with_scratch)
    assert bytes(digest) == hashlib.sha256(data).digest()


async def test_generated_megabyte_in_one_message(sha: Sha256Canister) -> None:
    length, seed = (1 << 20) + 3, 0x9E3779B97F4A7C15
    measured = await sha.call("measure", length, seed)
    assert bytes(measured["digest"]) == hashlib.sha256(xorshift_bytes(length, seed)).digest()
    # The instruction counts are the benchmark's (benchmarks/sha256_bench.py);
    # here only that every path was measured.
    assert all(measured[path] > length for path in ("blob", "scratch", "region"))
