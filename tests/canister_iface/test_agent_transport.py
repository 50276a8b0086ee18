"""The agent against a small scripted IC node (aiohttp) run inside the test.

The node validates every envelope with localnet's validator (signature,
request id, expiry) and answers with certificates signed by localnet's
certifier, so what is tested is the agent's behaviour at the HTTP boundary:
polling after 202, HTTP errors and rejects becoming the right IcError,
certificate and query signature checks, and connection pooling.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from aiohttp import web

from canister_iface.agent import Agent
from canister_iface.certificate import MAINNET_ROOT_KEY
from canister_iface.errors import (
    AccessDenied,
    CallTimeout,
    CanisterNotFound,
    CanisterReject,
    CertificateError,
    MethodNotFound,
    PayloadTooLarge,
    PermanentError,
    StaleCertificate,
    TransientError,
)
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from localnet import ids
from localnet.certification import (
    CanisterView,
    Certifier,
    NodeSigner,
    RequestStatus,
    RootKey,
    StateView,
    state_tree,
)
from localnet.envelope import EnvelopeError, validate_envelope
from localnet.http import HttpServer
from localnet.node_api import Request

CANISTER = ids.canister_id(7)
CANISTER_TEXT = Principal(CANISTER).to_text()
SUBNET = hashlib.sha224(b"fake subnet").digest() + b"\x02"
RANGES = [(ids.canister_id(0), ids.canister_id(0xFFFF))]
NAT_1 = b"DIDL\x00\x01}\x01"

Fault = tuple[int, dict[str, str], str]  # status, headers, body


@dataclass
class FakeIc:
    """A scripted node: set the attributes, then look at what it saw."""

    root: RootKey = field(default_factory=RootKey.generate)
    signer: NodeSigner = field(default_factory=NodeSigner.generate)
    reply: bytes = NAT_1
    call_mode: str = "sync"  # sync | accepted | nonreplicated
    nonreplicated: tuple[int, str, str | None] = (5, "Canister is stopped", "IC0508")
    polls_before_done: int = 0
    final: RequestStatus | None = None  # default: replied with ``reply``
    query_answer: dict[str, Any] | None = None  # default: replied with ``reply``
    tamper_query: bool = False
    query_signer: NodeSigner | None = None  # a node that is not in the certified subnet
    query_time_offset_ns: int = 0
    unsigned_query: bool = False
    wrong_certifier: Certifier | None = None
    cert_time_offset_ns: int = 0
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    delay_s: float = 0.0
    controllers: list[bytes] = field(default_factory=list)
    module_hash: bytes | None = None
    hits: Counter[str] = field(default_factory=Counter)
    connections: set[object] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    statuses: dict[bytes, RequestStatus] = field(default_factory=dict)
    polls: Counter[bytes] = field(default_factory=Counter)

    @property
    def root_key(self) -> bytes:
        return self.root.public_key_der

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/api/v2/status", self._wrap("status", self._status))
        app.router.add_post("/api/v3/canister/{id}/query", self._wrap("query", self._query))
        app.router.add_post("/api/v4/canister/{id}/call", self._wrap("call", self._call))
        app.router.add_post(
            "/api/v3/canister/{id}/read_state", self._wrap("read_state", self._read_state)
        )
        return app

    def _wrap(
        self, kind: str, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            assert request.transport is not None
            self.connections.add(request.transport.get_extra_info("peername"))
            self.hits[kind] += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            queue = self.faults.get(kind)
            if queue:
                status, headers, body = queue.pop(0)
                return web.Response(status=status, headers=headers, text=body)
            try:
                return await handler(request)
            except EnvelopeError as exc:
                return web.Response(status=exc.http_status, text=exc.message)

        return handle

    async def _envelope(self, request: web.Request, kind: Any) -> Request:
        assert request.content_type == "application/cbor"
        effective = Principal.from_text(request.match_info["id"]).raw
        parsed = validate_envelope(await request.read(), kind, effective)
        self.requests.append(parsed)
        return parsed

    async def _status(self, request: web.Request) -> web.Response:
        return _cbor({"root_key": self.root_key, "impl_version": "fake-ic"})

    async def _query(self, request: web.Request) -> web.Response:
        query = await self._envelope(request, "query")
        body = dict(self.query_answer or {"status": "replied", "reply": {"arg": self.reply}})
        signer = self.query_signer or self.signer
        signed_at = time.time_ns() + self.query_time_offset_ns
        body["signatures"] = [signer.sign_query_response(query.request_id, body, signed_at)]
        if self.unsigned_query:
            body["signatures"] = []
        if self.tamper_query:
            body["reply"] = {"arg": self.reply + b"!"}
        return _cbor(body)

    async def _call(self, request: web.Request) -> web.Response:
        call = await self._envelope(request, "call")
        if self.call_mode == "nonreplicated":
            code, message, error_code = self.nonreplicated
            fields = {"reject_code": code, "reject_message": message, "error_code": error_code}
            return _cbor({"status": "non_replicated_rejection", **fields})
        self.statuses[call.request_id] = RequestStatus("received")
        if self.call_mode == "accepted":
            return web.Response(status=202)
        self.statuses[call.request_id] = self._final()
        paths = [[b"time"], [b"request_status", call.request_id]]
        return _cbor({"status": "replied", "certificate": self._certificate(paths)})

    async def _read_state(self, request: web.Request) -> web.Response:
        read = await self._envelope(request, "read_state")
        for path in read.paths:
            if path[0] == b"request_status":
                self._advance(path[1])
        return _cbor({"certificate": self._certificate(read.paths)})

    def _final(self) -> RequestStatus:
        return self.final or RequestStatus("replied", reply=self.reply)

    def _advance(self, request_id: bytes) -> None:
        if request_id not in self.statuses:
            return
        self.polls[request_id] += 1
        if self.polls[request_id] > self.polls_before_done:
            self.statuses[request_id] = self._final()
        else:
            self.statuses[request_id] = RequestStatus("processing")

    def _certificate(self, paths: list[list[bytes]]) -> bytes:
        view = StateView(
            time_ns=time.time_ns() + self.cert_time_offset_ns,
            subnet_id=SUBNET,
            subnet_public_key_der=self.root.public_key_der,
            canister_ranges=RANGES,
            nodes={self.signer.node_id: self.signer.public_key_der},
            canisters={
                CANISTER: CanisterView(module_hash=self.module_hash, controllers=self.controllers)
            },
            request_status=dict(self.statuses),
        )
        certifier = self.wrong_certifier or Certifier(self.root)
        return certifier.certificate(state_tree(view, paths))


def _cbor(body: Any) -> web.Response:
    payload = cbor2.dumps(cbor2.CBORTag(55799, body))
    return web.Response(body=payload, content_type="application/cbor")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeIc, str]]:
    ic = FakeIc()
    async with HttpServer(ic.app()) as server:
        yield ic, server.url


def _agent(url: str, ic: FakeIc, **options: Any) -> Agent:
    options.setdefault("root_key", ic.root_key)
    options.setdefault("poll_initial", 0.01)
    options.setdefault("poll_max", 0.05)
    return Agent(url, options.pop("identity", Identity.generate_ed25519()), **options)


# ----------------------------------------------------------------- happy paths


async def test_sync_update_returns_the_certified_reply(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        assert await agent.update(CANISTER_TEXT, "inc", b"DIDL\x00\x00") == NAT_1
    assert ic.hits["call"] == 1
    assert ic.hits["read_state"] == 0


async def test_202_is_polled_until_replied(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.call_mode, ic.polls_before_done = "accepted", 3
    async with _agent(url, ic) as agent:
        assert await agent.update(CANISTER, "inc") == NAT_1
    assert ic.hits["read_state"] == 4
    call = next(r for r in ic.requests if r.request_type == "call")
    polls = [r for r in ic.requests if r.request_type == "read_state"]
    assert all(p.paths == [[b"request_status", call.request_id]] for p in polls)


async def test_polling_rides_out_transient_errors(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.call_mode, ic.polls_before_done = "accepted", 1
    ic.faults["read_state"] = [(503, {}, "busy"), (429, {"Retry-After": "0"}, "slow down")]
    async with _agent(url, ic) as agent:
        assert await agent.update(CANISTER, "inc") == NAT_1
    assert ic.hits["read_state"] == 4


async def test_polled_reject_is_classified(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.call_mode = "accepted"
    ic.final = RequestStatus(
        "rejected", reject_code=5, reject_message="Canister called trap", error_code="IC0503"
    )
    async with _agent(url, ic) as agent:
        with pytest.raises(CanisterReject) as caught:
            await agent.update(CANISTER, "boom")
    assert caught.value.reject_code == 5
    assert caught.value.error_code == "IC0503"
    assert caught.value.call is not None
    assert caught.value.call.method == "boom"


async def test_polling_stops_at_the_ingress_expiry(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.call_mode, ic.polls_before_done = "accepted", 10**9
    async with _agent(url, ic, ingress_expiry=2.0) as agent:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match="may still execute"):
            await agent.update(CANISTER, "inc")
    assert time.monotonic() - started < 5
    assert ic.hits["read_state"] >= 3


async def test_ingress_expiry_is_four_minutes_rounded_down_and_nonces_differ(
    fake: tuple[FakeIc, str],
) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        before = time.time_ns()
        await asyncio.gather(agent.update(CANISTER, "inc"), agent.update(CANISTER, "inc"))
    calls = [r for r in ic.requests if r.request_type == "call"]
    for call in calls:
        assert call.ingress_expiry % (60 * 10**9) == 0
        assert before + 179 * 10**9 < call.ingress_expiry <= before + 241 * 10**9
    nonces = {call.nonce for call in calls}
    assert len(nonces) == 2
    assert None not in nonces
    assert calls[0].request_id != calls[1].request_id


async def test_query_with_verified_node_signature(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        assert await agent.query(CANISTER, "get") == NAT_1
        assert await agent.query(CANISTER, "get") == NAT_1
    # The node keys were read once (verified read_state of /subnet) and cached.
    assert ic.hits["read_state"] == 1
    subnet_read = next(r for r in ic.requests if r.request_type == "read_state")
    assert subnet_read.paths == [[b"subnet"]]


async def test_query_reject_is_classified(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.query_answer = {
        "status": "rejected",
        "reject_code": 5,
        "reject_message": "Canister has no query method 'nope'",
        "error_code": "IC0536",
    }
    async with _agent(url, ic) as agent:
        with pytest.raises(MethodNotFound):
            await agent.query(CANISTER, "nope")


async def test_read_state_helpers(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    me = Identity.generate_ed25519()
    ic.controllers = [me.principal.raw, ids.ANONYMOUS]
    ic.module_hash = hashlib.sha256(b"wasm").digest()
    async with _agent(url, ic, identity=me) as agent:
        assert await agent.controllers(CANISTER) == [me.principal, Principal.anonymous()]
        assert await agent.module_hash(CANISTER) == ic.module_hash
        with pytest.raises(CanisterNotFound):
            await agent.controllers(ids.canister_id(8))
        assert await agent.module_hash(ids.canister_id(8)) is None
        assert await agent.request_status(bytes(32), CANISTER) is None  # provably unknown
        ic.call_mode = "accepted"
        await agent.update(CANISTER, "inc")
        call = next(r for r in ic.requests if r.request_type == "call")
        status = await agent.request_status(call.request_id, CANISTER)
        assert status is not None
        assert (status.status, status.reply) == ("replied", NAT_1)


async def test_status(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        status = await agent.status()
    assert status.root_key == ic.root_key
    assert status.impl_version == "fake-ic"


# ------------------------------------------------------------ HTTP and rejects


async def test_429_with_retry_after(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.faults["call"] = [(429, {"Retry-After": "3"}, "rate limited")]
    async with _agent(url, ic) as agent:
        with pytest.raises(TransientError) as caught:
            await agent.update(CANISTER, "inc")
    assert caught.value.retry_after == 3.0
    assert caught.value.http_status == 429


async def test_503_is_transient(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.faults["query"] = [(503, {}, "overloaded")]
    async with _agent(url, ic) as agent:
        with pytest.raises(TransientError) as caught:
            await agent.query(CANISTER, "get")
    assert caught.value.retry_after is None
    assert caught.value.http_status == 503


@pytest.mark.parametrize(
    ("status", "expected"), [(400, PermanentError), (403, AccessDenied), (413, PayloadTooLarge)]
)
async def test_4xx_is_permanent(
    fake: tuple[FakeIc, str], status: int, expected: type[PermanentError]
) -> None:
    ic, url = fake
    ic.faults["call"] = [(status, {}, "no")]
    async with _agent(url, ic) as agent:
        with pytest.raises(expected) as caught:
            await agent.update(CANISTER, "inc")
    assert caught.value.http_status == status


async def test_envelope_refused_by_the_node_is_a_400(fake: tuple[FakeIc, str]) -> None:
    """An ingress expiry beyond what a replica accepts: the node's own validator says 400."""
    ic, url = fake
    async with _agent(url, ic, ingress_expiry=3600.0) as agent:
        with pytest.raises(PermanentError, match="HTTP 400"):
            await agent.update(CANISTER, "inc")


async def test_non_replicated_rejection(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.call_mode = "nonreplicated"
    async with _agent(url, ic) as agent:
        with pytest.raises(TransientError, match="stopped") as stopped:
            await agent.update(CANISTER, "inc")
        assert stopped.value.error_code == "IC0508"
        ic.nonreplicated = (4, "Only controllers may call this", "IC0406")
        with pytest.raises(AccessDenied):
            await agent.update(CANISTER, "inc")
        ic.nonreplicated = (3, "Canister not found", "IC0301")
        with pytest.raises(CanisterNotFound):
            await agent.update(CANISTER, "inc")


async def test_connection_refused_is_transient() -> None:
    agent = Agent("http://127.0.0.1:9", root_key=RootKey.generate().public_key_der)
    async with agent:
        with pytest.raises(TransientError, match="could not talk to the node"):
            await agent.status()


# ----------------------------------------------------------------- verification


async def test_certificate_from_another_key_is_refused(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.wrong_certifier = Certifier(RootKey.generate())
    async with _agent(url, ic) as agent:
        with pytest.raises(CertificateError, match="does not verify"):
            await agent.update(CANISTER, "inc")


async def test_trusting_another_root_key_refuses_everything(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic, root_key=RootKey.generate().public_key_der) as agent:
        with pytest.raises(CertificateError):
            await agent.update(CANISTER, "inc")
        with pytest.raises(CertificateError):
            await agent.query(CANISTER, "get")
        with pytest.raises(CertificateError):
            await agent.controllers(CANISTER)


async def test_stale_certificate_is_refused_as_a_clock_problem(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.cert_time_offset_ns = -600 * 10**9
    async with _agent(url, ic) as agent:
        with pytest.raises(StaleCertificate, match="old") as caught:
            await agent.update(CANISTER, "inc")
        with pytest.raises(StaleCertificate):
            await agent.controllers(CANISTER)
    assert isinstance(caught.value, TransientError)
    assert caught.value.call is not None
    assert caught.value.call.method == "inc"
    assert caught.value.skew_seconds == pytest.approx(-600, abs=5)


async def test_tampered_query_reply_is_refused(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.tamper_query = True
    async with _agent(url, ic) as agent:
        with pytest.raises(CertificateError, match="signature"):
            await agent.query(CANISTER, "get")


async def test_query_signed_by_a_stranger_is_refused(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        await agent.query(CANISTER, "get")  # caches the real node's key
        ic.query_signer = NodeSigner.generate()
        with pytest.raises(CertificateError, match="not a node of subnet") as caught:
            await agent.query(CANISTER, "get")
        assert caught.value.reason == "signature"
    assert ic.hits["read_state"] == 2  # the unknown node made the agent re-read the subnet


async def test_a_canister_outside_every_subnet_is_not_hosted(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    nowhere = ids.canister_id(0x10000)  # past the fake subnet's ranges
    async with _agent(url, ic) as agent:
        with pytest.raises(CertificateError, match="no subnet in the certificate hosts") as caught:
            await agent.query(nowhere, "get")
    assert caught.value.reason == "not_hosted"  # a wrong id or network, told by its reason


async def test_stale_or_unsigned_query_is_refused(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        ic.query_time_offset_ns = -600 * 10**9
        with pytest.raises(StaleCertificate, match="replayed answer"):
            await agent.query(CANISTER, "get")
        ic.query_time_offset_ns, ic.unsigned_query = 0, True
        with pytest.raises(CertificateError, match="no node signatures"):
            await agent.query(CANISTER, "get")


async def test_insecure_skip_verify_warns_and_skips(
    fake: tuple[FakeIc, str], caplog: pytest.LogCaptureFixture
) -> None:
    ic, url = fake
    ic.wrong_certifier = Certifier(RootKey.generate())
    ic.tamper_query = True
    with caplog.at_level(logging.WARNING, logger="canister_iface.agent"):
        agent = _agent(url, ic, insecure_skip_verify=True)
    assert "INSECURE" in caplog.text
    async with agent:
        assert await agent.update(CANISTER, "inc") == NAT_1
        assert await agent.query(CANISTER, "get") == NAT_1 + b"!"


async def test_local_network_fetches_its_root_key_once(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    agent = Agent(url, Identity.generate_ed25519(), network="local", poll_initial=0.01)
    async with agent:
        await asyncio.gather(*(agent.update(CANISTER, "inc") for _ in range(5)))
        assert await agent.root_key() == ic.root_key
    assert ic.hits["status"] == 1


async def test_fetching_the_root_key_is_refused_unless_local() -> None:
    with pytest.raises(ValueError, match="man in the middle"):
        Agent("https://icp-api.io", fetch_root_key=True)
    with pytest.raises(ValueError, match="unknown network"):
        Agent("https://testnet.example", network="testnet")
    await Agent("http://127.0.0.1:4943", network="local", fetch_root_key=True).aclose()
    mainnet = Agent("https://icp-api.io")
    assert await mainnet.root_key() == MAINNET_ROOT_KEY  # built in, nothing fetched
    await mainnet.aclose()


async def test_management_canister_needs_an_effective_canister_id(
    fake: tuple[FakeIc, str],
) -> None:
    ic, url = fake
    async with _agent(url, ic) as agent:
        with pytest.raises(ValueError, match="effective_canister_id"):
            await agent.update("aaaaa-aa", "canister_status", b"")
        await agent.update("aaaaa-aa", "canister_status", b"", effective_canister_id=CANISTER)
    call = next(r for r in ic.requests if r.request_type == "call")
    assert call.canister_id == b""
    assert call.effective_canister_id == CANISTER


# ---------------------------------------------------------------------- pooling


async def test_concurrent_calls_share_one_bounded_pool(fake: tuple[FakeIc, str]) -> None:
    ic, url = fake
    ic.delay_s = 0.02
    async with _agent(url, ic, max_connections=4) as agent:
        await agent.query(CANISTER, "get")  # warm the subnet key cache
        results = await asyncio.gather(*(agent.query(CANISTER, "get") for _ in range(40)))
        assert results == [NAT_1] * 40
        assert 1 < len(ic.connections) <= 4
        seen = set(ic.connections)
        await asyncio.gather(*(agent.update(CANISTER, "inc") for _ in range(20)))
        assert ic.connections == seen  # kept alive and reused: no new sockets
