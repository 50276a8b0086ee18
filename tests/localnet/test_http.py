"""The HTTP layer against a fake node: routes, status codes, bodies, faults, admin API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import cbor2
import httpx
import pytest
from icp_agent.agent import sign_request
from icp_identity import Identity

from localnet import ids
from localnet.errors import ErrorCode, Reject, RejectCode
from localnet.faults import Faults
from localnet.http import HttpServer, make_app
from localnet.limits import Limits
from localnet.node_api import Forbidden, Request

CANISTER = ids.canister_id(5)
CANISTER_TEXT = ids.to_text(CANISTER)
SUBNET_TEXT = ids.to_text(b"\x02" * 29)
CBOR_HEADERS = {"Content-Type": "application/cbor"}
SELF_DESCRIBE = b"\xd9\xd9\xf7"


class FakeNode:
    """Records what the HTTP layer asks; completes calls unless told to hold them."""

    root_key = b"\x30\x81\x82fake-der-root-key"

    def __init__(self) -> None:
        self.submitted: list[Request] = []
        self.queries: list[Request] = []
        self.read_states: list[tuple[bytes, bytes, list[list[bytes]]]] = []
        self.senders: dict[bytes, bytes] = {}
        self.done: dict[bytes, asyncio.Event] = {}
        self.hold_calls = False
        self.reject: Reject | None = None
        self.crash: Exception | None = None

    async def submit_call(self, request: Request) -> None:
        if self.reject is not None:
            raise self.reject
        self.submitted.append(request)
        self.senders[request.request_id] = request.sender
        event = self.done.setdefault(request.request_id, asyncio.Event())
        if not self.hold_calls:
            event.set()

    async def wait_for(self, request_id: bytes, timeout: float) -> bool:  # noqa: ASYNC109 NodeApi
        try:
            await asyncio.wait_for(self.done[request_id].wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def read_state(
        self, sender: bytes, effective_canister_id: bytes, paths: list[list[bytes]]
    ) -> bytes:
        for path in paths:
            if path[:1] == [b"request_status"] and self.senders.get(path[1], sender) != sender:
                raise Forbidden("The user tries to access Request ID not signed by the caller.")
        self.read_states.append((sender, effective_canister_id, paths))
        return cbor2.dumps({"fake-certificate": paths})

    async def query(self, request: Request) -> dict[str, Any]:
        if self.crash is not None:
            raise self.crash
        self.queries.append(request)
        return {"status": "replied", "reply": {"arg": request.arg[::-1]}, "signatures": []}

    async def status(self) -> dict[str, Any]:
        return {"certified_height": 3}


class Client:
    """Signs requests with icp-py-core's identity and envelope code, like a real agent."""

    def __init__(self, http: httpx.AsyncClient, identity: Identity | None = None) -> None:
        self.http = http
        self.identity = identity or Identity()

    def envelope(self, request_type: str, **fields: Any) -> tuple[bytes, bytes]:
        body: dict[str, Any] = {
            "request_type": request_type,
            "sender": self.identity.sender().bytes,
            "ingress_expiry": time.time_ns() + 120 * 1_000_000_000,
        }
        if request_type == "read_state":
            body["paths"] = fields.pop("paths", [[b"time"]])
        else:
            body |= {"canister_id": CANISTER, "method_name": "m", "arg": b"DIDL\x00\x00"}
        return sign_request(body | fields, self.identity)

    async def post(self, path: str, request_type: str, **fields: Any) -> httpx.Response:
        _, data = self.envelope(request_type, **fields)
        return await self.http.post(path, content=data, headers=CBOR_HEADERS)

    async def call(self, version: str = "v4", **fields: Any) -> tuple[bytes, httpx.Response]:
        rid, data = self.envelope("call", **fields)
        path = f"/api/{version}/canister/{CANISTER_TEXT}/call"
        return rid, await self.http.post(path, content=data, headers=CBOR_HEADERS)

    async def query(self, **fields: Any) -> httpx.Response:
        return await self.post(f"/api/v3/canister/{CANISTER_TEXT}/query", "query", **fields)


def decode(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/cbor"
    assert response.content.startswith(SELF_DESCRIBE)
    return cbor2.loads(response.content)


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def server(node: FakeNode, faults: Faults) -> AsyncIterator[HttpServer]:
    app = make_app(
        node, faults, limits=Limits(max_ingress_bytes=64 * 1024), sync_call_timeout_s=0.3
    )
    async with HttpServer(app) as running:
        yield running


@pytest.fixture
async def http(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> Client:
    return Client(http)


async def test_status(http: httpx.AsyncClient, node: FakeNode, server: HttpServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    response = await http.get("/api/v2/status")
    assert response.status_code == 200
    body = decode(response)
    assert body["root_key"] == node.root_key
    assert body["ic_api_version"] == "0.18.0"
    assert body["replica_health_status"] == "healthy"
    assert body["certified_height"] == 3  # fields from the node are merged in


async def test_query_reaches_the_node(client: Client, node: FakeNode) -> None:
    response = await client.query(arg=b"DIDL\x00\x01")
    assert response.status_code == 200
    assert decode(response)["reply"]["arg"] == b"\x01\x00LDID"
    assert node.queries[0].effective_canister_id == CANISTER
    assert node.queries[0].sender == client.identity.sender().bytes


@pytest.mark.parametrize("version", ["v3", "v4"])
async def test_sync_call_replies_with_a_certificate(
    client: Client, node: FakeNode, version: str
) -> None:
    rid, response = await client.call(version)
    assert response.status_code == 200
    body = decode(response)
    assert body["status"] == "replied"
    paths = [[b"time"], [b"request_status", rid]]
    assert cbor2.loads(body["certificate"]) == {"fake-certificate": paths}
    assert node.read_states == [(client.identity.sender().bytes, CANISTER, paths)]
    assert node.submitted[0].request_id == rid


async def test_sync_call_not_done_in_time_is_202(client: Client, node: FakeNode) -> None:
    node.hold_calls = True
    started = time.monotonic()
    _, response = await client.call()
    assert response.status_code == 202
    assert response.content == b""
    assert 0.25 <= time.monotonic() - started < 5
    assert node.read_states == []


async def test_refused_call_is_a_non_replicated_rejection(client: Client, node: FakeNode) -> None:
    node.reject = Reject(
        RejectCode.CANISTER_ERROR, "Canister is stopped", ErrorCode.CANISTER_STOPPED
    )
    _, response = await client.call()
    assert response.status_code == 200
    assert decode(response) == {
        "status": "non_replicated_rejection",
        "reject_code": 5,
        "reject_message": "Canister is stopped",
        "error_code": "IC0508",
    }


async def test_async_call(client: Client, node: FakeNode) -> None:
    node.hold_calls = True
    _, response = await client.call("v2")
    assert response.status_code == 202
    assert response.content == b""
    assert len(node.submitted) == 1
    node.reject = Reject(RejectCode.DESTINATION_INVALID, "no such canister", None)
    _, response = await client.call("v2")
    assert response.status_code == 200
    assert decode(response) == {"reject_code": 3, "reject_message": "no such canister"}


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_read_state(client: Client, node: FakeNode, version: str) -> None:
    rid, _ = await client.call()
    paths = [[b"request_status", rid, b"status"]]
    path = f"/api/{version}/canister/{CANISTER_TEXT}/read_state"
    response = await client.post(path, "read_state", paths=paths)
    assert response.status_code == 200
    assert cbor2.loads(decode(response)["certificate"]) == {"fake-certificate": paths}


async def test_read_state_of_someone_elses_request_is_403(
    client: Client, http: httpx.AsyncClient
) -> None:
    rid, _ = await client.call()
    other = Client(http, Identity(type="secp256k1"))
    path = f"/api/v3/canister/{CANISTER_TEXT}/read_state"
    response = await other.post(path, "read_state", paths=[[b"request_status", rid]])
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "not signed by the caller" in response.text


async def test_read_state_invalid_path_is_404(client: Client) -> None:
    path = f"/api/v3/canister/{CANISTER_TEXT}/read_state"
    response = await client.post(path, "read_state", paths=[[b"canister", CANISTER, b"x"]])
    assert response.status_code == 404
    assert response.text == "Invalid path requested."


async def test_subnet_read_state(client: Client, node: FakeNode) -> None:
    path = f"/api/v3/subnet/{SUBNET_TEXT}/read_state"
    response = await client.post(path, "read_state", paths=[[b"subnet"]])
    assert response.status_code == 200
    assert node.read_states[-1][1] == b"\x02" * 29
    response = await client.post(path, "read_state", paths=[[b"request_status", b"r" * 32]])
    assert response.status_code == 404


async def test_bad_signature_is_400_with_a_readable_body(http: httpx.AsyncClient) -> None:
    identity = Identity()
    body = {
        "request_type": "query",
        "sender": Identity().sender().bytes,  # somebody else's principal
        "canister_id": CANISTER,
        "method_name": "m",
        "arg": b"",
        "ingress_expiry": time.time_ns() + 60 * 1_000_000_000,
    }
    _, data = sign_request(body, identity)
    response = await http.post(
        f"/api/v3/canister/{CANISTER_TEXT}/query", content=data, headers=CBOR_HEADERS
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert "does not match the public key" in response.text


async def test_wrong_content_type_garbage_and_bad_url_id(http: httpx.AsyncClient) -> None:
    path = f"/api/v3/canister/{CANISTER_TEXT}/query"
    response = await http.post(path, content=b"{}", headers={"Content-Type": "application/json"})
    assert (response.status_code, response.text) == (
        400,
        "Unexpected content-type, expected application/cbor.",
    )
    response = await http.post(path, content=b"\xff\xff", headers=CBOR_HEADERS)
    assert response.status_code == 400
    assert response.text.startswith("Failed to deserialize cbor request")
    response = await http.post("/api/v3/canister/nope/query", content=b"", headers=CBOR_HEADERS)
    assert response.status_code == 400
    assert "Invalid effective id in URL" in response.text


async def test_unknown_route_and_wrong_method(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v9/nothing")
    assert response.status_code == 404
    assert response.text == "Endpoint not found: GET /api/v9/nothing"
    response = await http.get(f"/api/v4/canister/{CANISTER_TEXT}/call")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


async def test_call_over_the_ingress_limit_is_413(
    client: Client, node: FakeNode, faults: Faults
) -> None:
    _, response = await client.call(arg=b"x" * 60_000)  # under the 64 KiB limit
    assert response.status_code == 200
    faults.set(payload_cap=10_000)
    _, response = await client.call(arg=b"x" * 20_000)
    assert response.status_code == 413
    assert "is larger than the max allowed 10000" in response.text
    assert len(node.submitted) == 1


async def test_body_over_the_request_limit_is_413(http: httpx.AsyncClient) -> None:
    path = f"/api/v3/canister/{CANISTER_TEXT}/query"
    response = await http.post(path, content=b"\x00" * (5 * 1024 * 1024 + 1), headers=CBOR_HEADERS)
    assert response.status_code == 413
    assert "Maximum request body size" in response.text


async def test_node_failure_is_500_with_the_reason(client: Client, node: FakeNode) -> None:
    node.crash = RuntimeError("wasm engine exploded")
    response = await client.query()
    assert response.status_code == 500
    assert response.text == "Internal error in localnet: RuntimeError: wasm engine exploded"


async def test_a_client_leaving_mid_request_is_dropped_quietly(
    server: HttpServer, client: Client, node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    # An agent that stops waiting for a call closes its connection, maybe before
    # the body is sent: a replica drops the request, it is not a node failure.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"POST /api/v4/canister/{CANISTER_TEXT}/call HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/cbor\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b"\x00" * 10)  # 10 of the 1,000 bytes announced
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()  # a reset, as a cancelled call's socket is closed
    await asyncio.sleep(0.2)
    del reader
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert node.submitted == []
    assert (await client.call())[1].status_code == 200  # and the node keeps serving


async def test_injected_429_and_503_are_seeded(client: Client, faults: Faults) -> None:
    async def statuses() -> list[int]:
        return [(await client.query()).status_code for _ in range(30)]

    faults.set(seed=11, http_429={"query": 0.4}, http_503={"query": 0.2}, retry_after_s=4)
    first = await statuses()
    assert {200, 429, 503} <= set(first)
    faults.set(seed=11)
    assert await statuses() == first
    faults.set(http_429={"query": 1.0}, http_503={})
    response = await client.query()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert "localnet fault injection" in response.text
    _, call = await client.call()
    assert call.status_code == 200  # other endpoints are unaffected


async def test_injected_latency(client: Client, http: httpx.AsyncClient, faults: Faults) -> None:
    faults.set(latency_s={"query": 0.3})
    started = time.monotonic()
    assert (await client.query()).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await http.get("/api/v2/status")).status_code == 200
    assert time.monotonic() - started < 0.3


async def test_latency_does_not_block_the_event_loop(client: Client, faults: Faults) -> None:
    faults.set(latency_s={"query": 0.4})
    started = time.monotonic()
    responses = await asyncio.gather(*(client.query() for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert time.monotonic() - started < 1.5  # concurrent, not 5 x 0.4 s


async def test_fault_admin_round_trip(http: httpx.AsyncClient, faults: Faults) -> None:
    default = (await http.get("/_/faults")).json()
    assert default["latency_s"] == {}
    assert default["payload_cap"] is None
    wanted = default | {
        "seed": 3,
        "latency_s": {"call": 1.5, "query": 0.15},
        "http_429": {"call": 0.1},
        "retry_after_s": 2,
        "stopped_canisters": [CANISTER_TEXT],
    }
    response = await http.put("/_/faults", json=wanted)
    assert response.status_code == 200
    assert response.json() == wanted
    assert (await http.get("/_/faults")).json() == wanted
    assert faults.stopped_canisters == {CANISTER}

    patched = await http.patch("/_/faults", json={"payload_cap": 1000})
    assert patched.json() == wanted | {"payload_cap": 1000}

    response = await http.put("/_/faults", json={"latency_s": {"update": 1}})
    assert response.status_code == 400
    assert "unknown endpoint kind 'update'" in response.text
    response = await http.put("/_/faults", content=b"{nope", headers={"Content-Type": "x"})
    assert response.status_code == 400
    assert response.text.startswith("Invalid JSON body")
    assert faults.config.payload_cap == 1000  # failed updates change nothing

    assert (await http.post("/_/faults/reset")).json() == default
    assert faults.config.payload_cap is None


async def test_server_stops_and_frees_the_port(node: FakeNode, faults: Faults) -> None:
    server = HttpServer.for_node(node, faults, sync_call_timeout_s=1.0)
    await server.start()
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/api/v2/status")).status_code == 200
    url = server.url
    await server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url + "/api/v2/status")
