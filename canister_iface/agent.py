"""The orchestrator's async IC agent: queries, update calls and read_state, verified.

One :class:`Agent` per network.  It owns one pooled HTTP client for its whole
life (use it as an async context manager or call :meth:`Agent.aclose`), and
any number of concurrent calls share it.

What is verified (unless ``insecure_skip_verify=True``, which logs a warning):

- **update calls**: the reply or reject comes from a certificate
  (``/request_status/<id>/…``) whose BLS signature verifies under the root
  key — directly, or through a subnet delegation whose canister ranges must
  contain the effective canister id — and whose ``/time`` is within
  ``certificate_max_age`` of the local clock;
- **read_state** (request status, module hash, controllers): the same;
- **queries**: every node signature in the response verifies under the key
  of a node of the subnet that hosts the canister, over the received
  fields and this request id, with a fresh timestamp.  The node keys come
  from a verified read_state of ``/subnet`` (cached for
  ``subnet_cache_ttl``).  A query is still one node's word: it proves who
  answered, not that the answer is what consensus would say.

Root of trust: mainnet's key is built in.  A local network's key may be
fetched from ``/api/v2/status`` — only for ``network="local"``, because
fetching the key from the network it is supposed to authenticate lets a man
in the middle forge everything.  Tests pass ``root_key=`` explicitly.

Errors are :mod:`canister_iface.errors`; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import cbor2
import httpx

from canister_iface import certificate as cert_mod
from canister_iface import query_signatures as qs
from canister_iface.candid_value import EMPTY_ARGS, ArgParts
from canister_iface.certificate import Certificate, RequestStatus
from canister_iface.errors import (
    CallInfo,
    CallKind,
    CallTimeout,
    CanisterNotFound,
    CertificateError,
    IcError,
    PermanentError,
    ProtocolError,
    Rejection,
    TransientError,
    classify,
)
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from canister_iface.transport import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    HttpAnswer,
    SignedRequest,
    Transport,
    canister_path,
    decode_cbor_map,
    labels,
    new_nonce,
    sign_request,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CanisterRef = Principal | str | bytes
NS = 1_000_000_000
# agent-rs: requests expire 4 minutes from now, rounded down to the minute
# (so the expiry does not reveal the client's clock to the second).
DEFAULT_INGRESS_EXPIRY_S = 240.0
DEFAULT_CERTIFICATE_MAX_AGE_S = 300.0
DEFAULT_SUBNET_CACHE_TTL_S = 300.0
MAINNET = "ic"
LOCAL = "local"


@dataclass(frozen=True)
class Status:
    """What ``/api/v2/status`` says about the node."""

    root_key: bytes | None
    impl_version: str | None
    replica_health_status: str | None
    ic_api_version: str | None


class Agent:
    """An IC agent bound to one network URL and one identity."""

    def __init__(
        self,
        url: str,
        identity: Identity | None = None,
        *,
        network: str = MAINNET,
        root_key: bytes | None = None,
        fetch_root_key: bool = False,
        insecure_skip_verify: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        ingress_expiry: float = DEFAULT_INGRESS_EXPIRY_S,
        certificate_max_age: float = DEFAULT_CERTIFICATE_MAX_AGE_S,
        subnet_cache_ttl: float = DEFAULT_SUBNET_CACHE_TTL_S,
        poll_initial: float = 0.05,
        poll_max: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``network`` is ``"ic"`` (mainnet, built-in root key) or ``"local"`` (root
        key fetched from the node unless ``root_key`` is given).  Any other network
        needs ``root_key``."""
        self._root_key = _initial_root_key(network, root_key, fetch_root_key)
        self.network = network
        self.identity = identity or Identity.anonymous()
        self._insecure = insecure_skip_verify
        self._transport = Transport(url, max_connections=max_connections, timeout=timeout)
        self._ingress_expiry_s = ingress_expiry
        self._max_age_ns = int(certificate_max_age * NS)
        self._subnet_ttl = subnet_cache_ttl
        self._poll_initial = poll_initial
        self._poll_max = poll_max
        self._clock = clock
        self._root_key_lock = asyncio.Lock()
        self._subnet_lock = asyncio.Lock()
        self._subnets: dict[bytes, qs.Subnet] = {}  # by subnet id
        if insecure_skip_verify:
            log.warning(
                "INSECURE: agent for %s (%s) skips certificate and query signature "
                "verification; any node or proxy can forge its answers. Use only for debugging.",
                self.url,
                network,
            )

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self._transport.url

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the agent cannot be used afterwards."""
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"Agent({self.url!r}, network={self.network!r}, identity={self.identity!r})"

    # --------------------------------------------------------------------- calls

    async def query(
        self,
        canister_id: CanisterRef,
        method: str,
        arg: bytes | ArgParts = EMPTY_ARGS,
        *,
        effective_canister_id: CanisterRef | None = None,
    ) -> bytes:
        """Run a query; returns the reply's Candid bytes or raises an :class:`IcError`."""
        reply, _ = await self._query(canister_id, method, arg, effective_canister_id, False)
        return bytes(reply)

    async def query_view(
        self,
        canister_id: CanisterRef,
        method: str,
        arg: bytes | ArgParts = EMPTY_ARGS,
        *,
        effective_canister_id: CanisterRef | None = None,
    ) -> memoryview:
        """:meth:`query`, the reply as a view of the HTTP response (a large reply is
        verified and handed on without a copy: the relay's reads)."""
        reply, _ = await self._query(canister_id, method, arg, effective_canister_id, True)
        return memoryview(reply)

    async def query_arg(
        self,
        canister_id: CanisterRef,
        method: str,
        arg: bytes | ArgParts = EMPTY_ARGS,
        *,
        effective_canister_id: CanisterRef | None = None,
    ) -> ArgParts:
        """:meth:`query_view`, the reply ready to be sent on as another call's argument:
        with its SHA-256, which checking its signature computed, so the call's request
        id does not hash the bytes again (a relay's read written on as they came)."""
        reply, digest = await self._query(canister_id, method, arg, effective_canister_id, True)
        view = memoryview(reply)
        return ArgParts((view,), digest if digest is not None else hashlib.sha256(view).digest())

    async def _query(
        self,
        canister_id: CanisterRef,
        method: str,
        arg: bytes | ArgParts,
        effective_canister_id: CanisterRef | None,
        views: bool,
    ) -> tuple[bytes | memoryview, bytes | None]:
        """The reply, and its SHA-256 where the signature check computed it."""
        target, effective = _targets(canister_id, effective_canister_id)
        call = self._call_info(target, method, "query")
        request = self._sign(
            {"request_type": "query", "canister_id": target.raw, "method_name": method, "arg": arg}
        )
        answer = await self._post(canister_path("v3", effective.to_text(), "query"), request, call)
        response = decode_cbor_map(answer.content, call, "query response", views=views)
        digest = None
        if not self._insecure:
            digest = await self._verify_query(response, request.request_id, effective, call)
        return _query_outcome(response, call), digest

    async def update(
        self,
        canister_id: CanisterRef,
        method: str,
        arg: bytes | ArgParts = EMPTY_ARGS,
        *,
        effective_canister_id: CanisterRef | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bytes:
        """Make an update call and wait for its certified outcome.

        ``arg`` may be :class:`~canister_iface.candid_value.ArgParts`: its parts
        are hashed and sent without being joined (large blobs).  ``sent`` is
        called once the node's socket has taken the whole request, so that
        the caller may release the argument's buffers then rather than when
        the outcome is certified (:meth:`ArgParts.release`); the call is then
        never sent again by the agent: on a failure the caller sends it anew.

        For the management canister (``aaaaa-aa``) pass ``effective_canister_id``:
        the canister the call is about (for ``provisional_create_canister_with_cycles``
        any canister id of the subnet that should host the new canister).
        """
        target, effective = _targets(canister_id, effective_canister_id)
        call = self._call_info(target, method, "update")
        request = self._sign(
            {
                "request_type": "call",
                "canister_id": target.raw,
                "method_name": method,
                "arg": arg,
                "nonce": new_nonce(),
            }
        )
        path = canister_path("v4", effective.to_text(), "call")
        answer = await self._post(path, request, call, sent)
        if answer.status == 200:
            status = await self._sync_outcome(answer, request.request_id, effective, call)
            if status is not None and status.terminal:
                return _call_outcome(status, request.request_id, call)
        expiry_ns = _int_field(request.content, "ingress_expiry")
        return await self._poll(request.request_id, effective, expiry_ns, call)

    # ---------------------------------------------------------------- read_state

    async def read_state(
        self, effective_canister_id: CanisterRef, paths: Sequence[Sequence[bytes | str]]
    ) -> Certificate:
        """A verified certificate revealing ``paths`` (and ``/time``)."""
        effective = Principal.of(effective_canister_id)
        shown = ", ".join("/" + "/".join(_show(label) for label in path) for path in paths)
        call = self._call_info(effective, shown, "read_state")
        return await self._read_state(effective, [labels(path) for path in paths], call)

    async def request_status(
        self, request_id: bytes, effective_canister_id: CanisterRef
    ) -> RequestStatus | None:
        """The certified status of a call sent by this agent's identity (``None``: unknown)."""
        effective = Principal.of(effective_canister_id)
        call = self._call_info(effective, f"request_status/{request_id.hex()}", "read_state")
        return await self._request_status(request_id, effective, call)

    async def module_hash(self, canister_id: CanisterRef) -> bytes | None:
        """SHA-256 of the installed Wasm module; ``None`` if the canister is empty."""
        canister = Principal.of(canister_id)
        call = self._call_info(canister, "module_hash", "read_state")
        path = [b"canister", canister.raw, b"module_hash"]
        cert = await self._read_state(canister, [path], call)
        return self._certified_value(cert, path, call)

    async def controllers(self, canister_id: CanisterRef) -> list[Principal]:
        """The canister's controllers, as certified by its subnet."""
        canister = Principal.of(canister_id)
        call = self._call_info(canister, "controllers", "read_state")
        path = [b"canister", canister.raw, b"controllers"]
        cert = await self._read_state(canister, [path], call)
        raw = self._certified_value(cert, path, call)
        if raw is None:
            raise CanisterNotFound(
                f"canister {canister} has no certified controllers: it does not exist (or was "
                "deleted) on this network; check the canister id and the network",
                call=call,
            )
        return _decode_principals(raw, call)

    async def subnet_id(self, canister_id: CanisterRef) -> bytes:
        """The id of the subnet hosting the canister, from a verified read_state of ``/subnet``.

        Two canisters share a subnet when their ids are equal (a snapshot can be
        loaded into another canister only on its own subnet).
        """
        canister = Principal.of(canister_id)
        call = self._call_info(canister, "subnet", "read_state")
        return (await self._subnet(canister, call)).subnet_id

    async def status(self) -> Status:
        """The node's ``/api/v2/status`` (unauthenticated: do not trust its root key)."""
        call = CallInfo("", "status", "status")
        answer = await self._transport.get("api/v2/status", call)
        body = decode_cbor_map(answer.content, call, "status")
        return Status(
            root_key=_opt(body, "root_key", bytes),
            impl_version=_opt(body, "impl_version", str),
            replica_health_status=_opt(body, "replica_health_status", str),
            ic_api_version=_opt(body, "ic_api_version", str),
        )

    async def root_key(self) -> bytes:
        """The root key certificates are verified against (fetched once for local)."""
        if self._root_key is not None:
            return self._root_key
        async with self._root_key_lock:
            if self._root_key is None:
                key = (await self.status()).root_key
                if key is None:
                    raise ProtocolError(
                        f"{self.url}/api/v2/status has no root_key; pass root_key= explicitly",
                        call=CallInfo("", "status", "status"),
                    )
                self._root_key = key
                log.info("trusting the root key %s… of local network %s", key[-8:].hex(), self.url)
            return self._root_key

    # ------------------------------------------------------------------ internals

    def _call_info(self, canister: Principal, method: str, kind: CallKind) -> CallInfo:
        return CallInfo(canister.to_text(), method, kind, self.identity.principal.to_text())

    def _sign(self, fields: Mapping[str, Any]) -> SignedRequest:
        content = {
            **fields,
            "sender": self.identity.principal.raw,
            "ingress_expiry": self._ingress_expiry_ns(),
        }
        return sign_request(content, self.identity)

    def _ingress_expiry_ns(self) -> int:
        expiry_s = int(self._clock() + self._ingress_expiry_s)
        if self._ingress_expiry_s > 90:
            expiry_s -= expiry_s % 60
        return expiry_s * NS

    def _now_ns(self) -> int:
        return int(self._clock() * NS)

    async def _post(
        self,
        path: str,
        request: SignedRequest,
        call: CallInfo,
        sent: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        return await self._transport.post(path, request.parts, call, sent=sent)

    async def _read_state(
        self, effective: Principal, paths: list[list[bytes]], call: CallInfo
    ) -> Certificate:
        request = self._sign({"request_type": "read_state", "paths": paths})
        path = canister_path("v3", effective.to_text(), "read_state")
        answer = await self._post(path, request, call)
        body = decode_cbor_map(answer.content, call, "read_state response")
        raw = body.get("certificate")
        if not isinstance(raw, bytes):
            raise ProtocolError("the read_state response has no certificate blob", call=call)
        return await self._verified(raw, effective, call)

    async def _verified(self, raw: bytes, effective: Principal, call: CallInfo) -> Certificate:
        try:
            if self._insecure:
                return cert_mod.decode_certificate(raw)
            return cert_mod.verify_certificate(
                raw,
                await self.root_key(),
                canister_id=effective.raw,
                now_ns=self._now_ns(),
                max_age_ns=self._max_age_ns,
            )
        except IcError as exc:
            raise exc.with_call(call) from None

    def _certified_value(
        self, cert: Certificate, path: Sequence[bytes], call: CallInfo
    ) -> bytes | None:
        try:
            return cert.value(*path)
        except IcError as exc:
            raise exc.with_call(call) from None

    async def _request_status(
        self, request_id: bytes, effective: Principal, call: CallInfo
    ) -> RequestStatus | None:
        cert = await self._read_state(effective, [[b"request_status", request_id]], call)
        return _status_in(cert, request_id, call)

    async def _sync_outcome(
        self, answer: HttpAnswer, request_id: bytes, effective: Principal, call: CallInfo
    ) -> RequestStatus | None:
        """The v4 endpoint's 200 answer: a certificate, or a non-replicated rejection."""
        body = decode_cbor_map(answer.content, call, "call response")
        status = body.get("status")
        if status == "non_replicated_rejection":
            raise classify(_rejection(body, call), call)
        if status != "replied" or not isinstance(body.get("certificate"), bytes):
            raise ProtocolError(
                f"the call endpoint answered status {status!r} without a certificate", call=call
            )
        cert = await self._verified(body["certificate"], effective, call)
        return _status_in(cert, request_id, call)

    async def _poll(
        self, request_id: bytes, effective: Principal, expiry_ns: int, call: CallInfo
    ) -> bytes:
        """Poll ``request_status`` with backoff until final or the ingress expiry passes.

        Transient failures while polling (429, 503, timeouts) do not end the
        wait: the call is already in the IC and its outcome is what matters.
        """
        delay = self._poll_initial
        last = "unknown"
        while True:
            wait = delay
            try:
                status = await self._request_status(request_id, effective, call)
            except TransientError as exc:
                log.debug("polling %s: %s", call, exc)
                wait = max(delay, exc.retry_after or 0.0)
            else:
                if status is not None and status.terminal:
                    return _call_outcome(status, request_id, call)
                last = status.status if status is not None else "unknown"
            remaining = expiry_ns / NS - self._clock()
            if remaining <= 0:
                _expired(request_id, last, call)
            await asyncio.sleep(min(wait, remaining))
            delay = min(delay * 1.5, self._poll_max)

    async def _verify_query(
        self, response: Mapping[str, Any], request_id: bytes, effective: Principal, call: CallInfo
    ) -> bytes | None:
        """Check every node signature; returns the SHA-256 of reply.arg (of a reply)."""
        try:
            fields = qs.signed_fields(response)
            signatures = qs.node_signatures(response)
            subnet = await self._subnet(effective, call)
            if len(signatures) > len(subnet.node_keys):
                raise CertificateError(
                    f"{len(signatures)} signatures for a subnet of {len(subnet.node_keys)} nodes",
                    reason="signature",
                )
            for signature in signatures:
                qs.check_timestamp(signature, self._now_ns(), self._max_age_ns)
                key = subnet.node_keys.get(signature.node_id)
                if key is None:  # a node that joined since the keys were cached
                    subnet = await self._subnet(effective, call, refresh=True)
                    key = subnet.node_keys.get(signature.node_id)
                if key is None:
                    raise CertificateError(
                        f"the query was signed by {Principal(signature.node_id)}, which is not "
                        f"a node of subnet {Principal(subnet.subnet_id)}",
                        reason="signature",
                    )
                qs.verify_node_signature(fields, request_id, signature, key)
            return qs.reply_arg_digest(fields)
        except IcError as exc:
            raise exc.with_call(call) from None

    async def _subnet(
        self, effective: Principal, call: CallInfo, refresh: bool = False
    ) -> qs.Subnet:
        """The (cached) subnet hosting ``effective``, from a verified read_state of /subnet."""
        if not refresh and (cached := self._cached_subnet(effective.raw)) is not None:
            return cached
        async with self._subnet_lock:
            if not refresh and (cached := self._cached_subnet(effective.raw)) is not None:
                return cached
            subnet_call = CallInfo(call.canister_id, "subnet keys", "read_state", call.sender)
            cert = await self._read_state(effective, [[b"subnet"]], subnet_call)
            try:
                subnet = qs.subnet_from_certificate(cert, effective.raw, await self.root_key())
            except IcError as exc:
                raise exc.with_call(subnet_call) from None
            self._subnets[subnet.subnet_id] = subnet
            log.debug("subnet %s: %d node keys", Principal(subnet.subnet_id), len(subnet.node_keys))
            return subnet

    def _cached_subnet(self, canister: bytes) -> qs.Subnet | None:
        now = time.monotonic()
        for subnet in self._subnets.values():
            if subnet.hosts(canister) and now - subnet.fetched_at < self._subnet_ttl:
                return subnet
        return None


# ----------------------------------------------------------------------- helpers


def _initial_root_key(network: str, root_key: bytes | None, fetch_root_key: bool) -> bytes | None:
    """The root key known up front; ``None`` means "fetch it" (local networks only)."""
    if fetch_root_key and network != LOCAL:
        raise ValueError(
            f"fetch_root_key=True is refused for network {network!r}: a key fetched from the "
            "network it should authenticate lets a man in the middle forge every answer. "
            "It is only allowed with network='local'; otherwise pass root_key= explicitly"
        )
    if root_key is not None:
        cert_mod.bls_public_key(root_key)  # shape check now, not at the first call
        return root_key
    if network == MAINNET:
        return cert_mod.MAINNET_ROOT_KEY
    if network == LOCAL:
        return None
    raise ValueError(
        f"unknown network {network!r}: use 'ic' (mainnet), 'local', or pass root_key= for "
        "any other network"
    )


def _targets(
    canister_id: CanisterRef, effective_canister_id: CanisterRef | None
) -> tuple[Principal, Principal]:
    target = Principal.of(canister_id)
    if effective_canister_id is not None:
        return target, Principal.of(effective_canister_id)
    if target.is_management_canister:
        raise ValueError(
            "calls to the management canister (aaaaa-aa) need effective_canister_id: the "
            "canister the call is about (for provisional_create_canister_with_cycles, any "
            "canister id on the subnet that should host the new canister)"
        )
    return target, target


def _status_in(cert: Certificate, request_id: bytes, call: CallInfo) -> RequestStatus | None:
    try:
        return cert_mod.request_status(cert, request_id)
    except IcError as exc:
        raise exc.with_call(call) from None


def _call_outcome(status: RequestStatus, request_id: bytes, call: CallInfo) -> bytes:
    if status.status == "replied" and status.reply is not None:
        return status.reply
    if status.status == "rejected":
        rejection = Rejection(
            status.reject_code or 0, status.reject_message or "", status.error_code
        )
        raise classify(rejection, call)
    raise PermanentError(
        f"request {request_id.hex()} is {status.status!r}: it completed, but its reply has "
        "already been pruned from the IC's state and cannot be read anymore",
        call=call,
    )


def _query_outcome(response: Mapping[str, Any], call: CallInfo) -> bytes | memoryview:
    status = response.get("status")
    if status == "replied":
        reply = response.get("reply")
        arg = reply.get("arg") if isinstance(reply, Mapping) else None
        if not isinstance(arg, bytes | memoryview):
            raise ProtocolError("a replied query response has no reply.arg blob", call=call)
        return arg
    if status == "rejected":
        raise classify(_rejection(response, call), call)
    raise ProtocolError(f"unknown query response status {status!r}", call=call)


def _rejection(body: Mapping[str, Any], call: CallInfo) -> Rejection:
    code, message = body.get("reject_code"), body.get("reject_message")
    error_code = body.get("error_code")
    if not isinstance(code, int) or not isinstance(message, str):
        raise ProtocolError("a reject without reject_code/reject_message", call=call)
    return Rejection(code, message, error_code if isinstance(error_code, str) else None)


def _expired(request_id: bytes, last: str, call: CallInfo) -> NoReturn:
    if last == "unknown":
        detail = (
            "the IC never reported receiving it, so it will not execute now; it is safe to "
            "send it again"
        )
    else:
        detail = (
            f"its last status was {last!r}, so it may still execute; repeat it only if it is "
            "idempotent or after checking the canister's state"
        )
    raise CallTimeout(
        f"request {request_id.hex()} got no final status before its ingress expiry: {detail}",
        call=call,
    )


def _decode_principals(raw: bytes, call: CallInfo) -> list[Principal]:
    try:
        value = cbor2.loads(raw)
    except Exception as exc:
        raise ProtocolError(f"certified controllers are not CBOR: {exc}", call=call) from exc
    if isinstance(value, cbor2.CBORTag):
        value = value.value
    if not isinstance(value, Sequence) or not all(isinstance(item, bytes) for item in value):
        raise ProtocolError("certified controllers are not a CBOR list of principals", call=call)
    return [Principal(item) for item in value]


def _int_field(content: Mapping[str, Any], name: str) -> int:
    value = content[name]
    assert isinstance(value, int)
    return value


def _opt(body: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    value = body.get(key)
    return value if isinstance(value, kind) else None


def _show(label: bytes | str) -> str:
    if isinstance(label, str):
        return label
    text = label.decode("ascii", "replace")
    return text if label.isascii() and text.isprintable() and label else label.hex()
