"""canister_iface.Agent against the real localnet, over HTTP, as against mainnet.

The agent trusts only ``net.root_key`` (passed explicitly), so every update,
query and read_state below is verified: certificates under that key and query
responses under the node key certified in localnet's state tree.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from canister_iface import candid_value as candid
from canister_iface.agent import Agent
from canister_iface.errors import (
    CanisterReject,
    CertificateError,
    MethodNotFound,
    TransientError,
)
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from canister_iface.transport import DEFAULT_MAX_CONNECTIONS
from localnet import LocalNet
from localnet.certification import RootKey

# One LocalNet for the module (its engine compiles the Wasm once); one canister per test.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

COUNTER_WASM = Path(__file__).parents[1] / "canisters" / "wasm" / "counter.wasm"
TWO_MIB = 2 * 1024 * 1024


@dataclass
class Setup:
    net: LocalNet
    me: Identity
    canister: Principal
    wasm: bytes


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net() -> AsyncIterator[LocalNet]:
    async with LocalNet() as local:
        yield local


@pytest_asyncio.fixture(loop_scope="module")
async def setup(net: LocalNet) -> AsyncIterator[Setup]:
    me = Identity.generate_ed25519()
    wasm = COUNTER_WASM.read_bytes()
    # The anonymous principal co-controls the canister so that LocalNet's
    # helpers (which act as anonymous by default) may install code.
    raw = await net.create_canister(controllers=[me.principal.raw, b"\x04"])
    await net.install_code(raw, wasm)
    yield Setup(net, me, Principal(raw), wasm)
    net.faults.reset()


def _agent(setup: Setup, **options: object) -> Agent:
    return Agent(setup.net.url, setup.me, root_key=setup.net.root_key, **options)  # type: ignore[arg-type]


async def test_update_query_round_trip(setup: Setup) -> None:
    async with _agent(setup) as agent:
        assert candid.decode_nat(await agent.update(setup.canister, "inc")) == 1
        assert candid.decode_nat(await agent.update(setup.canister, "inc")) == 2
        assert candid.decode_nat(await agent.query(setup.canister, "get")) == 2
        assert candid.decode_principal(await agent.query(setup.canister, "whoami")) == (
            setup.me.principal
        )
        who = await agent.update(setup.canister, "whoami_update")
        assert candid.decode_principal(who) == setup.me.principal


async def test_rejects_are_classified(setup: Setup) -> None:
    async with _agent(setup) as agent:
        await agent.update(setup.canister, "inc")
        with pytest.raises(CanisterReject) as trapped:
            await agent.update(setup.canister, "boom")
        assert trapped.value.reject_code == 5
        assert candid.decode_nat(await agent.query(setup.canister, "get")) == 1  # rolled back
        with pytest.raises(CanisterReject, match="refused on purpose") as refused:
            await agent.update(setup.canister, "refuse")
        assert refused.value.reject_code == 4
        with pytest.raises(MethodNotFound):
            await agent.update(setup.canister, "no_such_method")
        with pytest.raises(MethodNotFound):
            await agent.query(setup.canister, "no_such_method")


async def test_read_state_helpers(setup: Setup) -> None:
    async with _agent(setup) as agent:
        controllers = await agent.controllers(setup.canister)
        assert set(controllers) == {setup.me.principal, Principal.anonymous()}
        assert await agent.module_hash(setup.canister) == hashlib.sha256(setup.wasm).digest()
        status = await agent.status()
        assert status.root_key == setup.net.root_key


async def test_local_network_fetches_the_root_key(setup: Setup) -> None:
    async with Agent(setup.net.url, Identity.anonymous(), network="local") as agent:
        assert candid.decode_nat(await agent.query(setup.canister, "get")) == 0
        assert await agent.root_key() == setup.net.root_key


async def test_a_different_root_key_refuses_every_answer(setup: Setup) -> None:
    other = RootKey.generate().public_key_der
    async with Agent(setup.net.url, setup.me, root_key=other) as agent:
        with pytest.raises(CertificateError):
            await agent.update(setup.canister, "inc")
        with pytest.raises(CertificateError):
            await agent.query(setup.canister, "get")
        with pytest.raises(CertificateError):
            await agent.module_hash(setup.canister)


async def test_injected_faults_are_transient(setup: Setup) -> None:
    async with _agent(setup) as agent:
        setup.net.faults.set(http_429={"call": 1.0}, retry_after_s=2)
        with pytest.raises(TransientError) as limited:
            await agent.update(setup.canister, "inc")
        assert limited.value.retry_after == 2.0
        setup.net.faults.reset()
        setup.net.faults.set(stopped_canisters=[setup.canister.raw])
        with pytest.raises(TransientError, match="stopped"):
            await agent.update(setup.canister, "inc")
        setup.net.faults.reset()
        assert candid.decode_nat(await agent.update(setup.canister, "inc")) == 1


class _CountingProxy:
    """A TCP relay in front of localnet that counts the connections clients open."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_concurrent_calls_share_one_pool(setup: Setup) -> None:
    port = int(setup.net.url.rsplit(":", 1)[1])
    proxy = _CountingProxy(port)
    async with proxy as url, Agent(url, setup.me, root_key=setup.net.root_key) as agent:
        await agent.query(setup.canister, "get")
        queries = [agent.query(setup.canister, "get") for _ in range(100)]
        updates = [agent.update(setup.canister, "inc") for _ in range(20)]
        await asyncio.gather(*queries, *updates)
        opened = proxy.accepted
        await asyncio.gather(*(agent.query(setup.canister, "get") for _ in range(50)))
    assert candid.decode_nat(await _fresh_get(setup)) == 20
    assert opened <= DEFAULT_MAX_CONNECTIONS  # the pool's bound, not one socket per call
    assert proxy.accepted == opened  # the burst after reused kept-alive connections


async def _fresh_get(setup: Setup) -> bytes:
    async with _agent(setup) as agent:
        return await agent.query(setup.canister, "get")


async def test_overhead_and_throughput(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    async with _agent(setup) as agent:
        await agent.query(setup.canister, "get")  # node keys cached, connection open
        query_s = await _mean_s(30, lambda: agent.query(setup.canister, "get"))
        update_s = await _mean_s(15, lambda: agent.update(setup.canister, "inc"))
        started = time.perf_counter()
        await asyncio.gather(*(agent.query(setup.canister, "get") for _ in range(200)))
        concurrent_qps = 200 / (time.perf_counter() - started)

        assert candid.decode_nat(await agent.update(setup.canister, "fill", candid.encode_nat(1)))
        arg = candid.encode_nat(0)
        reads = 5
        started = time.perf_counter()
        for _ in range(reads):
            chunk = candid.decode_blob(await agent.query(setup.canister, "chunk", arg))
        read_mib_s = reads * len(chunk) / 2**20 / (time.perf_counter() - started)
        assert len(chunk) == TWO_MIB

        upload = candid.encode_blob(bytes(1_500_000))
        started = time.perf_counter()
        size = candid.decode_nat(await agent.update(setup.canister, "store_size", upload))
        upload_mib_s = len(upload) / 2**20 / (time.perf_counter() - started)
        assert size == 1_500_000
    with capsys.disabled():
        print(
            f"\nagent on localnet: query {query_s * 1e3:.1f} ms, update {update_s * 1e3:.1f} ms "
            f"per call (sequential); {concurrent_qps:.0f} queries/s with 200 concurrent; "
            f"2 MiB chunk reads {read_mib_s:.1f} MiB/s; 1.5 MB update {upload_mib_s:.1f} MiB/s"
        )


async def _mean_s(rounds: int, call: Callable[[], Awaitable[bytes]]) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        await call()
    return (time.perf_counter() - started) / rounds
