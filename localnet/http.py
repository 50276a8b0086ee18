"""localnet's HTTP interface: the IC's public endpoints over a :class:`NodeApi`.

Endpoints (interface spec "HTTPS Interface"; status codes and texts follow
the replica's HTTP handler):

- ``GET  /api/v2/status``                        CBOR status with ``root_key``
- ``POST /api/{v2,v3}/canister/<id>/query``      query
- ``POST /api/{v3,v4}/canister/<id>/call``       synchronous call: 200 with a
  certificate when done within the sync timeout, else 202 (then poll)
- ``POST /api/v2/canister/<id>/call``            asynchronous call: 202
- ``POST /api/{v2,v3}/canister/<id>/read_state`` and ``.../subnet/<id>/read_state``
- ``GET|PUT|PATCH /_/faults``, ``POST /_/faults/reset``: fault injection (JSON)
- ``GET /_/subnets``: subnet ids, canister ranges, the subnet model and round statistics
- ``GET|PUT /_/calls``: executions of the update methods a test watches
  (:mod:`localnet.callcount`: calls, and repeats of an identical call)

A call the node refuses before execution (``Reject`` from ``submit_call``) is
200 with ``status: non_replicated_rejection`` on the sync endpoints and 200
with the bare reject fields on v2, as on the replica.  Client errors are 400
(malformed or unauthenticated envelope), 403 (forbidden read_state path),
404 (unknown route or read_state path), 405, 413 (body over the request limit
or call over the ingress limit), 503 when the subnet model's ingress pool is
full.  Injected faults add latency and answer 429 / 503 (with ``Retry-After``
when configured) before a request is looked at.
Error bodies are ``text/plain``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
from aiohttp import web

from localnet import ids
from localnet.callcount import CallCount
from localnet.envelope import (
    Clock,
    EnvelopeError,
    ReadStateEndpoint,
    check_read_state_paths,
    validate_envelope,
)
from localnet.errors import Reject
from localnet.faults import EndpointKind, FaultConfig, Faults
from localnet.limits import Limits, MiB
from localnet.node_api import Forbidden, NodeApi, NotFound, Overloaded, Request, RequestType

IC_API_VERSION = "0.18.0"
IMPL_VERSION = "localnet-0.1.0"
DEFAULT_SYNC_CALL_TIMEOUT_S = 10.0  # the replica's ingress_message_certificate_timeout_seconds
# The replica's max_request_size_bytes: bodies above it are refused before parsing.
REQUEST_BODY_LIMIT = 5 * MiB
CBOR = "application/cbor"
_SELF_DESCRIBE_TAG = 55799

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    node: NodeApi,
    faults: Faults,
    *,
    limits: Limits | None = None,
    sync_call_timeout_s: float = DEFAULT_SYNC_CALL_TIMEOUT_S,
    clock: Clock = time.time_ns,
    impl_version: str = IMPL_VERSION,
    describe: Callable[[], dict[str, Any]] | None = None,
    calls: CallCount | None = None,
) -> web.Application:
    """The aiohttp application serving ``node``'s IC endpoints and the fault admin API.

    ``limits`` gives the ingress limit for calls (lowered by ``faults``'
    payload cap at request time); ``clock`` (ns since the epoch) is what
    ``ingress_expiry`` and delegation expiries are checked against.
    """
    limits = limits or Limits()
    body_limit = max(REQUEST_BODY_LIMIT, limits.max_ingress_bytes + MiB)
    app = web.Application(client_max_size=body_limit, middlewares=[_plain_text_errors])
    api = _Api(node, faults, limits, sync_call_timeout_s, clock, impl_version)
    canister = "/api/{version:v2|v3}/canister/{id}"
    app.router.add_get("/api/v2/status", api.status)
    app.router.add_post(canister + "/query", api.query)
    app.router.add_post("/api/{version:v3|v4}/canister/{id}/call", api.call_sync)
    app.router.add_post("/api/v2/canister/{id}/call", api.call_async)
    app.router.add_post(canister + "/read_state", api.read_state_canister)
    app.router.add_post("/api/{version:v2|v3}/subnet/{id}/read_state", api.read_state_subnet)
    admin = _FaultAdmin(faults)
    app.router.add_get("/_/faults", admin.get)
    app.router.add_put("/_/faults", admin.put)
    app.router.add_patch("/_/faults", admin.patch)
    app.router.add_post("/_/faults/reset", admin.reset)
    if describe is not None:

        async def subnets(request: web.Request) -> web.Response:
            return web.json_response(describe())

        app.router.add_get("/_/subnets", subnets)
    if calls is not None:
        counts = _CallAdmin(calls)
        app.router.add_get("/_/calls", counts.get)
        app.router.add_put("/_/calls", counts.put)
    return app


class _Api:
    """The IC endpoints; one instance per app."""

    def __init__(
        self,
        node: NodeApi,
        faults: Faults,
        limits: Limits,
        sync_call_timeout_s: float,
        clock: Clock,
        impl_version: str,
    ) -> None:
        self._node = node
        self._faults = faults
        self._limits = limits
        self._sync_timeout = sync_call_timeout_s
        self._clock = clock
        self._impl_version = impl_version

    async def status(self, request: web.Request) -> web.Response:
        if (fault := await self._inject("status")) is not None:
            return fault
        body: dict[str, Any] = {
            "ic_api_version": IC_API_VERSION,
            "impl_version": self._impl_version,
            "root_key": self._node.root_key,
            "replica_health_status": "healthy",
        }
        body.update(await self._node.status())
        return _cbor(body)

    async def query(self, request: web.Request) -> web.Response:
        if (fault := await self._inject("query")) is not None:
            return fault
        query = await self._envelope(request, "query")
        return _cbor(await self._node.query(query))

    async def call_sync(self, request: web.Request) -> web.Response:
        if (fault := await self._inject("call")) is not None:
            return fault
        call = await self._envelope(request, "call")
        try:
            await self._node.submit_call(call)
        except Reject as reject:
            return _cbor({"status": "non_replicated_rejection", **_reject_fields(reject)})
        if not await self._node.wait_for(call.request_id, self._sync_timeout):
            # Spec: 202 with an empty body; the agent polls read_state from here.
            return web.Response(status=202)
        paths = [[b"time"], [b"request_status", call.request_id]]
        certificate = await self._node.read_state(call.sender, call.effective_canister_id, paths)
        return _cbor({"status": "replied", "certificate": certificate})

    async def call_async(self, request: web.Request) -> web.Response:
        if (fault := await self._inject("call")) is not None:
            return fault
        call = await self._envelope(request, "call")
        try:
            await self._node.submit_call(call)
        except Reject as reject:
            return _cbor(_reject_fields(reject))
        return web.Response(status=202)

    async def read_state_canister(self, request: web.Request) -> web.Response:
        return await self._read_state(request, "canister")

    async def read_state_subnet(self, request: web.Request) -> web.Response:
        return await self._read_state(request, "subnet")

    async def _read_state(self, request: web.Request, endpoint: ReadStateEndpoint) -> web.Response:
        if (fault := await self._inject("read_state")) is not None:
            return fault
        read = await self._envelope(request, "read_state")
        check_read_state_paths(read.paths, read.effective_canister_id, endpoint)
        certificate = await self._node.read_state(
            read.sender, read.effective_canister_id, read.paths
        )
        return _cbor({"certificate": certificate})

    async def _inject(self, kind: EndpointKind) -> web.Response | None:
        """Apply the configured latency, then answer 429/503 if the faults say so."""
        delay = self._faults.delay_s(kind)
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self._faults.http_fault(kind)
        if fault is None:
            return None
        headers = {}
        if fault.retry_after_s is not None:
            headers["Retry-After"] = str(fault.retry_after_s)
        return _text(fault.status, fault.message, headers)

    async def _envelope(self, request: web.Request, request_type: RequestType) -> Request:
        effective_id = _effective_id(request)
        if request.content_type != CBOR:
            raise EnvelopeError(400, f"Unexpected content-type, expected {CBOR}.")
        body = await request.read()
        limit = self._faults.limits(self._limits).max_ingress_bytes
        return validate_envelope(
            body, request_type, effective_id, clock=self._clock, max_ingress_bytes=limit
        )


def _effective_id(request: web.Request) -> bytes:
    text = request.match_info["id"]
    try:
        return ids.from_text(text)
    except ValueError as exc:
        raise EnvelopeError(400, f"Invalid effective id in URL: {exc}") from exc


def _reject_fields(reject: Reject) -> dict[str, Any]:
    fields: dict[str, Any] = {"reject_code": int(reject.code), "reject_message": reject.message}
    if reject.error_code is not None:
        fields["error_code"] = reject.error_code
    return fields


def _cbor(body: Any, status: int = 200) -> web.Response:
    payload = cbor2.dumps(cbor2.CBORTag(_SELF_DESCRIBE_TAG, body))
    return web.Response(status=status, body=payload, content_type=CBOR)


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)


@web.middleware
async def _plain_text_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a readable ``text/plain`` body with the replica's status code."""
    try:
        return await handler(request)
    except EnvelopeError as exc:
        return _text(exc.http_status, exc.message)
    except Forbidden as exc:
        return _text(403, str(exc) or "Forbidden.")
    except NotFound as exc:
        return _text(404, str(exc) or "Not found.")
    except Overloaded as exc:
        return _text(503, str(exc) or "Service is overloaded, try again later.")
    except web.HTTPNotFound:
        return _text(404, f"Endpoint not found: {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"Method {request.method} not allowed on {request.path}; use {allowed}."
        return _text(405, message, {"Allow": allowed})
    except web.HTTPException as exc:
        return _text(exc.status, exc.text or exc.reason, _retained_headers(exc))
    except ConnectionError:
        # The client went away while sending its request (it stopped waiting
        # for a call it no longer needs): a replica drops it; the answer below
        # goes nowhere (aiohttp would log the error as a server failure).
        log.debug("localnet: %s %s: the client disconnected", request.method, request.path)
        return _text(400, "The client disconnected.")
    except Exception as exc:  # a node bug must still produce a readable HTTP answer
        log.exception("localnet: %s %s failed", request.method, request.path)
        return _text(500, f"Internal error in localnet: {type(exc).__name__}: {exc}")


def _retained_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type",)}


class _FaultAdmin:
    """``/_/faults``: read, replace (PUT), merge (PATCH) or reset the fault config."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults.to_json())

    async def put(self, request: web.Request) -> web.Response:
        return await self._install(request, base=None)

    async def patch(self, request: web.Request) -> web.Response:
        return await self._install(request, base=self._faults.config)

    async def reset(self, request: web.Request) -> web.Response:
        self._faults.reset()
        return web.json_response(self._faults.to_json())

    async def _install(self, request: web.Request, base: FaultConfig | None) -> web.Response:
        text = await request.text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return _text(400, f"Invalid JSON body: {exc}")
        try:
            config = FaultConfig.from_json(data, base=base)
        except ValueError as exc:
            return _text(400, f"Invalid fault config: {exc}")
        self._faults.replace(config)
        return web.json_response(self._faults.to_json())


class _CallAdmin:
    """``/_/calls``: which methods to count (PUT, resets), and the counts (GET)."""

    def __init__(self, calls: CallCount) -> None:
        self._calls = calls

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._calls.to_json())

    async def put(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.text())
            methods = data["methods"]
            if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
                raise TypeError("methods must be a list of method names")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            return _text(400, f'Invalid body: {exc}; send {{"methods": ["icrp_write", ...]}}')
        self._calls.watch(methods)
        return web.json_response(self._calls.to_json())


class HttpServer:
    """Serves an app on ``host``:``port`` inside the running event loop (port 0 = ephemeral)."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout_s: float = 1.0,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None

    @classmethod
    def for_node(
        cls,
        node: NodeApi,
        faults: Faults,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits | None = None,
        sync_call_timeout_s: float = DEFAULT_SYNC_CALL_TIMEOUT_S,
        clock: Clock = time.time_ns,
        admin: Callable[[], dict[str, Any]] | None = None,
        calls: CallCount | None = None,
    ) -> HttpServer:
        """A server for :func:`make_app` over ``node`` (what ``LocalNet`` runs);
        ``admin`` describes the subnets for ``GET /_/subnets``."""
        app = make_app(
            node,
            faults,
            limits=limits,
            sync_call_timeout_s=sync_call_timeout_s,
            clock=clock,
            describe=admin,
            calls=calls,
        )
        return cls(app, host=host, port=port)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"HttpServer is already running at {self.url}")
        runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout_s,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("HttpServer is not running: call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening; in-flight requests get ``shutdown_timeout_s`` to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
