"""The wire: signed CBOR envelopes over one pooled HTTP/1.1 client.

Every request the agent sends is an *envelope* (interface spec, "Envelope"):
CBOR with the self-describe tag 55799 around ``{content, sender_pubkey?,
sender_sig?}``.  ``content`` is the request (call, query or read_state); its
representation-independent hash is the *request id*, and the sender signs
``"\\x0Aic-request" · request_id``.  The anonymous identity sends neither key
nor signature.

:class:`Transport` owns one connection pool (:mod:`canister_iface.http11`)
for the agent's whole life: connections are kept alive, so thousands of
concurrent calls to a boundary node reuse a bounded set of sockets instead of
opening one each (as icp-py-core does).  HTTP failures and network exceptions
leave this module only as :mod:`canister_iface.errors` (through
:func:`errors.classify`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import httpx

from canister_iface import http11
from canister_iface.candid_value import ArgParts
from canister_iface.errors import CallInfo, HttpFailure, ProtocolError, classify, map_errors
from canister_iface.identity import Identity
from canister_iface.rihash import Value, hash_value

REQUEST_DOMAIN = b"\x0aic-request"
SELF_DESCRIBE_TAG = 55799
CBOR = "application/cbor"
NONCE_BYTES = 16

# Enough sockets for the orchestrator's global concurrency limit to be the
# real limit; all of them stay alive between bursts (a TLS handshake to a
# boundary node costs more than a small call).
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_KEEPALIVE_EXPIRY_S = 30.0
# The v4 call endpoint holds a request up to ~10 s before answering 202; a
# 2 MiB reply over a slow link needs more.  ``pool`` is how long a call may
# wait for a free connection when every one is busy.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=120.0)
USER_AGENT = "ic-replicator canister_iface"


# A content field may be an ArgParts (an ``arg`` whose blob is not copied).
Content = Mapping[str, Value | ArgParts | None]
# Parts of a body shorter than this are merged into one buffer before sending.
_MERGE_BELOW = 64 * 1024


@dataclass(frozen=True)
class SignedRequest:
    """An envelope ready to post (as its parts, in order), and the id that names it."""

    request_id: bytes
    parts: tuple[bytes | memoryview, ...]
    content: Content

    @property
    def body(self) -> bytes:
        """The envelope as one ``bytes`` (a copy of the parts)."""
        return b"".join(self.parts)


def new_nonce() -> bytes:
    """A fresh nonce: two otherwise identical calls must not share a request id."""
    return secrets.token_bytes(NONCE_BYTES)


def sign_request(content: Content, identity: Identity) -> SignedRequest:
    """The CBOR envelope of ``content`` signed by ``identity``.

    ``None`` fields are omitted from both the request id and the CBOR, so the
    two always describe the same map.  An ``arg`` given as
    :class:`~canister_iface.candid_value.ArgParts` is hashed and sent part by
    part: a 2 MiB blob in it is never copied.
    """
    present = {key: value for key, value in content.items() if value is not None}
    rid = _request_id(present)
    envelope: dict[str, Any] = {"content": present}
    public_key = identity.public_key_der
    if public_key is not None:
        envelope["sender_pubkey"] = public_key
        envelope["sender_sig"] = identity.sign(REQUEST_DOMAIN + rid)
    out = _Parts()
    out.add(_SELF_DESCRIBE)
    _cbor(envelope, out)
    return SignedRequest(rid, out.done(), present)


def _request_id(content: Mapping[str, Value | ArgParts]) -> bytes:
    """:func:`rihash.request_id` (the hash of a map), reading an :class:`ArgParts` as
    the one blob it is: its parts are hashed where they lie."""
    pairs = sorted(
        hashlib.sha256(name.encode("utf-8")).digest() + _hash_field(value)
        for name, value in content.items()
    )
    return hashlib.sha256(b"".join(pairs)).digest()


def _hash_field(value: Value | ArgParts) -> bytes:
    if isinstance(value, ArgParts):
        if value.digest is not None:  # hashed already (a verified reply sent on)
            return value.digest
        hasher = hashlib.sha256()
        for part in value.parts:
            hasher.update(part)
        return hasher.digest()
    return hash_value(value)


# ------------------------------------------------------------------ CBOR out
#
# The envelope is a few maps of text keys to blobs, text, naturals and arrays:
# it is written here, definite lengths only, so that a large blob is passed
# on as it is instead of being copied into one CBOR buffer (as cbor2.dumps
# must).  ``tests/canister_iface/test_agent_envelope.py`` decodes the result
# with cbor2 and with localnet's validator.

_SELF_DESCRIBE = b"\xd9\xd9\xf7"  # tag 55799


class _Parts:
    """Body parts: small pieces merged, large buffers kept as they are."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []
        self._small = bytearray()

    def add(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) < _MERGE_BELOW:
            self._small += data
            return
        if self._small:
            self._parts.append(bytes(self._small))
            self._small.clear()
        # A view is kept as it is: its owner may release it once sent (ArgParts.release).
        self._parts.append(data if isinstance(data, bytes | memoryview) else memoryview(data))

    def done(self) -> tuple[bytes | memoryview, ...]:
        if self._small:
            self._parts.append(bytes(self._small))
            self._small.clear()
        return tuple(self._parts)


def _head(major: int, number: int) -> bytes:
    if number < 24:
        return bytes([major << 5 | number])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if number < 1 << (8 * size):
            return bytes([major << 5 | extra]) + number.to_bytes(size, "big")
    raise ValueError(f"{number} does not fit a CBOR head")


def _cbor(value: object, out: _Parts) -> None:
    # The envelope's own types first, each a concrete class (~20 items per
    # call): the general chain below costs an ABC check (Mapping) for most.
    if isinstance(value, str):
        out.add(_cbor_text(value))
    elif isinstance(value, bytes):
        if len(value) < _MERGE_BELOW:  # one part, not a head and a blob
            out.add(_head(2, len(value)) + value)
        else:
            out.add(_head(2, len(value)))
            out.add(value)
    elif isinstance(value, dict):
        out.add(_head(5, len(value)))
        for key, item in value.items():
            _cbor(key, out)
            _cbor(item, out)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        out.add(_head(0, value))
    else:
        _cbor_any(value, out)


# Field names, request types and method names recur in every envelope.
_TEXTS: dict[str, bytes] = {}
_MAX_TEXTS = 512


def _cbor_text(value: str) -> bytes:
    """A CBOR text string (the common ones from a cache)."""
    encoded = _TEXTS.get(value)
    if encoded is None:
        raw = value.encode("utf-8")
        encoded = _head(3, len(raw)) + raw
        if len(_TEXTS) < _MAX_TEXTS:
            _TEXTS[value] = encoded
    return encoded


def _cbor_any(value: object, out: _Parts) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        out.add(_head(2, len(value)))
        out.add(value)
    elif isinstance(value, ArgParts):
        out.add(_head(2, len(value)))
        for part in value.parts:
            out.add(part)
    elif isinstance(value, str):
        encoded = value.encode("utf-8")
        out.add(_head(3, len(encoded)) + encoded)
    elif isinstance(value, bool) or not isinstance(value, int | Mapping | list | tuple):
        raise TypeError(f"an envelope cannot hold a {type(value).__name__}")
    elif isinstance(value, int):
        out.add(_head(0, value) if value >= 0 else _head(1, -1 - value))
    elif isinstance(value, Mapping):
        out.add(_head(5, len(value)))
        for key, item in value.items():
            _cbor(key, out)
            _cbor(item, out)
    else:
        out.add(_head(4, len(value)))
        for item in value:
            _cbor(item, out)


def decode_cbor_map(
    data: bytes | bytearray, call: CallInfo | None, what: str, *, views: bool = False
) -> Mapping[str, Any]:
    """A CBOR map (tag 55799 optional); anything else is a :class:`ProtocolError`.

    ``views``: byte strings of :data:`VIEW_FROM` bytes or more come back as
    ``memoryview`` slices of ``data`` instead of copies (a 2 MiB query reply
    is then never copied).  ``data`` must not change while they are in use.
    """
    if views:
        try:
            value: Any = _decode_views(memoryview(data))
        except _NotFast:
            pass  # anything the small decoder does not read: cbor2 decides (and explains)
        else:
            if isinstance(value, Mapping):
                return value
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises assorted types for garbage
        raise ProtocolError(
            f"the node's {what} is not valid CBOR ({type(exc).__name__}: {exc})", call=call
        ) from exc
    if isinstance(value, cbor2.CBORTag) and value.tag == SELF_DESCRIBE_TAG:
        value = value.value
    if not isinstance(value, Mapping):
        raise ProtocolError(
            f"the node's {what} is a CBOR {type(value).__name__}, not a map", call=call
        )
    return value


# ------------------------------------------------------------------ CBOR in
#
# The responses the agent decodes are definite-length maps of text keys to
# blobs, text, naturals and arrays; the small decoder below reads exactly
# that (tag 55799 only at the top) and leaves everything else (indefinite
# lengths, floats, other tags, malformed input) to cbor2.

VIEW_FROM = 64 * 1024
_MAX_DEPTH = 16


class _NotFast(Exception):
    """Not the plain CBOR the small decoder reads (cbor2 takes over)."""


def _decode_views(view: memoryview) -> Any:
    if view[:3] == _SELF_DESCRIBE:
        view = view[3:]
    value, end = _item(view, 0, 0)
    if end != len(view):
        raise _NotFast()
    return value


def _item(view: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    major, number, pos = _head_at(view, pos, depth)
    if major == 0:
        return number, pos
    if major == 1:
        return -1 - number, pos
    if major in (2, 3):
        return _string(view, major, pos, pos + number)
    if major == 4:
        items = []
        for _ in range(number):
            item, pos = _item(view, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        fields: dict[Any, Any] = {}
        for _ in range(number):
            key, pos = _item(view, pos, depth + 1)
            if not isinstance(key, str | int | bytes):
                raise _NotFast()
            fields[key], pos = _item(view, pos, depth + 1)
        return fields, pos
    raise _NotFast()  # tags inside, floats, simple values


def _head_at(view: memoryview, pos: int, depth: int) -> tuple[int, int, int]:
    """``(major type, number, position after the head)`` of the item at ``pos``."""
    if depth > _MAX_DEPTH or pos >= len(view):
        raise _NotFast()
    initial = view[pos]
    major, info = initial >> 5, initial & 31
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        raise _NotFast()  # indefinite length or reserved
    size = 1 << (info - 24)
    if pos + size > len(view):
        raise _NotFast()
    return major, int.from_bytes(view[pos : pos + size], "big"), pos + size


def _string(view: memoryview, major: int, pos: int, end: int) -> tuple[Any, int]:
    if end > len(view):
        raise _NotFast()
    if major == 3:
        try:
            return str(view[pos:end], "utf-8"), end
        except UnicodeDecodeError:
            raise _NotFast() from None
    return (view[pos:end] if end - pos >= VIEW_FROM else bytes(view[pos:end])), end


@dataclass(frozen=True)
class HttpAnswer:
    status: int  # 200 or 202; every other status became an IcError
    content: bytes | bytearray


class Transport:
    """Persistent HTTP/1.1 connections to one IC API URL (a boundary node or replica)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the IC API URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        # Requests beyond the pool size wait in the client, in FIFO order.
        self._client = http11.Client(
            self.url,
            max_connections=max_connections,
            timeout=timeout,
            keepalive_expiry=keepalive_expiry,
            user_agent=USER_AGENT,
        )

    @property
    def closed(self) -> bool:
        return self._client.closed

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self,
        path: str,
        body: http11.Body,
        call: CallInfo,
        *,
        sent: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        """POST a CBOR envelope (bytes, or its parts in order); 200/202 come back,
        anything else raises an IcError.  ``sent``: as :meth:`http11.Client.request`."""
        with map_errors(call):
            response = await self._client.request("POST", path, body, content_type=CBOR, sent=sent)
        return _answer(response, call)

    async def get(self, path: str, call: CallInfo) -> HttpAnswer:
        with map_errors(call):
            response = await self._client.request("GET", path)
        return _answer(response, call)


def _answer(response: http11.Response, call: CallInfo) -> HttpAnswer:
    if response.status in (200, 202):
        return HttpAnswer(response.status, response.content)
    failure = HttpFailure(
        status=response.status,
        body=_text(response),
        retry_after=response.headers.get("retry-after"),
    )
    raise classify(failure, call)


def _text(response: http11.Response) -> str:
    """The body as text for an error message (CBOR error bodies are shown as hex)."""
    content = bytes(response.content)
    if response.headers.get("content-type", "").startswith(CBOR):
        return f"<{len(content)} bytes of CBOR: {content[:64].hex()}>"
    return content[:2000].decode("utf-8", "replace")


def canister_path(version: str, effective_id: str, endpoint: str) -> str:
    return f"api/{version}/canister/{effective_id}/{endpoint}"


def labels(path: Sequence[bytes | str]) -> list[bytes]:
    """A read_state path as the blobs the envelope carries."""
    return [label.encode("utf-8") if isinstance(label, str) else bytes(label) for label in path]
