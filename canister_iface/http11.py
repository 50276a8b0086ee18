"""A lean HTTP/1.1 client for the agent: keep-alive connections, bodies read in place.

Why not httpx's own connection pool: an IC call moves one CBOR body of up to
2 MiB each way, and the relay path makes thousands of them.  httpx reads a
response in 64 KiB pieces through httpcore, h11 and anyio, copying the
bytes several times and walking its pool on every event: about 4 ms of CPU
for a 2 MB reply and 2 ms to send 2 MB (measured, ``benchmarks/backup_bench``).
Here a connection is an :class:`asyncio.BufferedProtocol`: once the head
says ``content-length: n``, the socket reads straight into one ``n``-byte
buffer, which becomes the response content without another copy; a body
is written as its parts (the envelope's prefix, the payload, ...) without
joining them.  The same bytes cost about 0.4 ms to receive and 0.6 ms to
send.

What it does, and no more: ``http`` and ``https`` (the default TLS context
httpx would use), persistent connections reused most-recent-first and
closed after ``keepalive_expiry`` idle seconds, ``content-length``,
``chunked`` and read-until-close bodies, a request that finds its kept-alive
connection closed by the server sent again once on a new one (safe for the
IC's API: a repeated envelope has the same request id).  Failures are
raised as httpx's exception types (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``WriteTimeout``, ``PoolTimeout``, ``RemoteProtocolError``,
``ReadError``), which :func:`canister_iface.errors.classify` already maps.
Timeouts follow httpx's meaning: ``connect``, ``pool`` (waiting for a free
connection), ``write`` (waiting for the socket to take the body) and
``read`` (the longest wait for the next bytes of the response).  HTTP
proxies are not supported.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

Body = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]

# Read sizes outside a content-length body (which is read in place).  A head
# is a few hundred bytes: its small buffer is all most connections ever
# allocate (each of 32 connections once had 256 KiB, zeroed when it opened
# and filled with the body's first bytes, copied twice: 8 MiB of fresh pages
# to fault in for a relay's first backup).  Chunked and read-until-close
# bodies get the large one, made when first needed.
_HEAD_READ_BYTES = 16 * 1024
_BULK_READ_BYTES = 256 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any IC response (3 MiB)
_SIZE_LINE = -1  # chunked bodies: a chunk size line comes next
_TRAILER = -2  # chunked bodies: the last chunk was read, trailer lines come next


@dataclass(frozen=True)
class Timeouts:
    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    @classmethod
    def of(cls, timeout: httpx.Timeout | float | None) -> Timeouts:
        if isinstance(timeout, httpx.Timeout):
            return cls(timeout.connect, timeout.read, timeout.write, timeout.pool)
        return cls(timeout, timeout, timeout, timeout)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    content: bytes | bytearray


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port and the URL's path prefix."""

    scheme: str
    host: str
    port: int
    prefix: str  # "" or "/some/base" (no trailing slash)

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the IC API URL must be http:// or https:// with a host, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


# glibc's mallopt parameters, and what they are set to (see retain_freed_memory).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD = 512 * 1024 * 1024
_MMAP_THRESHOLD = 32 * 1024 * 1024


@functools.cache
def retain_freed_memory() -> bool:
    """Let glibc keep freed megabyte buffers for reuse instead of unmapping them.

    By default glibc serves large allocations with fresh ``mmap`` pages, or
    trims the top of its heap once more than a few MB are free, and every
    new 2 MB reply or argument then page-faults in 512 pages: measured, that
    more than doubled the CPU of a 2 MB ``icrp_read`` (1,400 page faults,
    7 ms instead of 3).  With these settings the process keeps up to 512 MiB
    of freed heap to reuse.  Process-wide and once; elsewhere than glibc it
    does nothing and says so (``False``).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = None if libc is None else libc.mallopt
    except (OSError, AttributeError):
        return False
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


class Client:
    """A bounded pool of persistent HTTP/1.1 connections to one origin."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        timeout: httpx.Timeout | float | None,
        keepalive_expiry: float,
        user_agent: str,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.origin = Origin.parse(url)
        retain_freed_memory()
        self.timeouts = Timeouts.of(timeout)
        self.keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._ssl = httpx.create_ssl_context() if self.origin.scheme == "https" else None
        self._closed = False
        host = self.origin.host_header
        self._fixed_headers = f"host: {host}\r\nuser-agent: {user_agent}\r\naccept: */*\r\n"

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Body = b"",
        *,
        content_type: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> Response:
        """One request; raises httpx's exception types for transport failures.

        ``sent`` is called once the kernel has taken the whole body (not when the
        transport still holds some of it, which it may do as views of the
        caller's buffers), so that the caller may release them.  Once it was
        called the request is never sent again here: a kept-alive connection
        the server had closed is then an error (``RemoteProtocolError``), not
        a silent second attempt.
        """
        if self._closed:
            raise RuntimeError("the HTTP client is closed: create a new agent")
        parts = _parts(body)
        head = self._head(method, path, sum(len(p) for p in parts), content_type)
        try:
            async with asyncio.timeout(self.timeouts.pool):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time") from None
        try:
            return await self._exchange(head, parts, sent)
        finally:
            self._slots.release()

    def _head(self, method: str, path: str, length: int, content_type: str | None) -> bytes:
        target = f"{self.origin.prefix}/{path.lstrip('/')}"
        lines = f"{method} {target} HTTP/1.1\r\n{self._fixed_headers}"
        if content_type is not None:
            lines += f"content-type: {content_type}\r\n"
        if method != "GET" or length:
            lines += f"content-length: {length}\r\n"
        return (lines + "\r\n").encode("latin-1")

    async def _exchange(
        self, head: bytes, parts: list[memoryview], sent: Callable[[], None] | None
    ) -> Response:
        handed_over = False

        def taken() -> None:
            nonlocal handed_over
            handed_over = True
            assert sent is not None
            sent()

        connection = self._reusable()
        if connection is not None:
            try:
                return await self._send(connection, head, parts, sent and taken)
            except _Stale:
                if handed_over:  # the caller may have released the body's buffers
                    raise _closed_without_response() from None
                # the server closed it while idle: once more on a new connection
        connection = await self._connect()
        try:
            return await self._send(connection, head, parts, sent)
        except _Stale as stale:
            raise _closed_without_response() from stale

    async def _send(
        self,
        connection: _Connection,
        head: bytes,
        parts: list[memoryview],
        sent: Callable[[], None] | None,
    ) -> Response:
        try:
            response = await connection.exchange(head, parts, self.timeouts, sent)
        except BaseException:
            connection.close()  # its state is unknown (cancelled, timed out, broken)
            raise
        if connection.reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return response

    def _reusable(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl is not None else None,
                )
        except TimeoutError:
            where = f"{origin.host}:{origin.port}"
            raise httpx.ConnectTimeout(f"no connection to {where} in time") from None
        except OSError as exc:
            where = f"{origin.host}:{origin.port}"
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}") from exc
        return connection


def _parts(body: Body) -> list[memoryview]:
    # A memoryview is kept as it is: a caller releasing it once sent (``sent``)
    # then leaves no other view of its buffer here.
    if isinstance(body, bytes | bytearray | memoryview):
        return [_view(body)] if len(body) else []
    return [_view(p) for p in body if len(p)]


def _view(data: bytes | bytearray | memoryview) -> memoryview:
    return data if isinstance(data, memoryview) else memoryview(data)


def _closed_without_response() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("the server closed the connection without sending a response")


class _Stale(Exception):
    """A reused connection turned out closed before any byte of the response."""


class _Connection(asyncio.BufferedProtocol):
    """One TCP (or TLS) connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._scratch = bytearray(_HEAD_READ_BYTES)  # heads; bulk reads once made
        self._bulk = False  # self._scratch is the large buffer
        self._pending = bytearray()  # received, not yet parsed (head, chunked framing)
        self._waiter: asyncio.Future[Response] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._closed = False
        self._used = False  # has carried a request before
        self._received = 0  # bytes of the current response so far
        self._status = 0
        self._headers: dict[str, str] = {}
        self._mode = ""  # "" head | "length" | "chunked" | "close"
        self._body = bytearray()
        self._filled = 0
        self._chunk_left = _SIZE_LINE  # chunked: size of the chunk being read, or a state
        self._keep_alive = True
        self._read_timeout: float | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0

    @property
    def reusable(self) -> bool:
        transport = self._transport
        return (
            not self._closed
            and self._keep_alive
            and self._waiter is None
            and transport is not None
            and not transport.is_closing()
        )

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    # -------------------------------------------------------------- a request

    async def exchange(
        self,
        head: bytes,
        parts: list[memoryview],
        timeouts: Timeouts,
        sent: Callable[[], None] | None = None,
    ) -> Response:
        if self._closed or self._transport is None:
            raise _Stale()
        reused, self._used = self._used, True
        self._start(timeouts.read)
        waiter = self._waiter
        assert waiter is not None
        try:
            transport = self._transport
            transport.write(head)
            for part in parts:
                transport.write(part)
            if self._paused and not waiter.done():
                await self._drain(seconds=timeouts.write)
            if sent is not None and not transport.get_write_buffer_size():
                sent()  # the kernel has every byte: nothing here refers to them
            self._arm()
            return await waiter
        except (httpx.ReadError, ConnectionError) as exc:
            if reused and self._received == 0:
                raise _Stale() from exc
            raise
        finally:
            self._waiter = None
            self._cancel_timer()

    def _start(self, read_timeout: float | None) -> None:
        self._waiter = self._loop.create_future()
        self._received = 0
        self._status = 0
        self._headers = {}
        self._mode = ""
        self._keep_alive = True
        self._read_timeout = read_timeout
        self._pending.clear()

    async def _drain(self, *, seconds: float | None) -> None:
        self._drained = self._loop.create_future()
        try:
            async with asyncio.timeout(seconds):
                await self._drained
        except TimeoutError:
            raise httpx.WriteTimeout("the node did not take the request body in time") from None
        finally:
            self._drained = None

    # --------------------------------------------------------------- timers

    def _arm(self) -> None:
        if self._read_timeout is not None and self._waiter is not None:
            self._deadline = self._loop.time() + self._read_timeout
            self._timer = self._loop.call_at(self._deadline, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        if self._loop.time() >= self._deadline:
            self._fail(httpx.ReadTimeout("no answer from the node in time"))
            self.close()
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_idle)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------- protocol events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Writing pauses while anything is left unsent and resumes once the kernel
        # has it all: a request's body is then wholly sent when its drain ends
        # (what the write timeout bounds, and when ``sent`` may be told).
        transport.set_write_buffer_limits(high=0)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self._mode == "close" and exc is None:
            self._finish(bytes(self._body))
            return
        if exc is None:
            self._fail(httpx.ReadError("the server closed the connection"))
        else:
            self._fail(httpx.ReadError(f"connection lost: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost completes or fails the response

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._release_drain()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._mode == "length":
            return memoryview(self._body)[self._filled :]
        if self._mode and not self._bulk:  # chunked or until close: read in large pieces
            self._scratch, self._bulk = bytearray(_BULK_READ_BYTES), True
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self._received += nbytes
        if self._read_timeout is not None:
            self._deadline = self._loop.time() + self._read_timeout
        if self._mode == "length":
            self._filled += nbytes
            if self._filled == len(self._body):
                self._finish(self._body)
            return
        self._pending += memoryview(self._scratch)[:nbytes]
        try:
            self._parse()
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            self.close()

    # -------------------------------------------------------------- parsing

    def _parse(self) -> None:
        if self._mode == "":
            end = self._pending.find(b"\r\n\r\n")
            if end < 0:
                if len(self._pending) > _MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("the response head is too large")
                return
            head = bytes(self._pending[:end])
            del self._pending[: end + 4]
            if self._read_head(head):  # 1xx: another head follows
                self._parse()
                return
        if self._mode == "chunked":
            self._parse_chunks()
        elif self._mode == "close":
            self._body += self._pending
            self._pending.clear()

    def _read_head(self, head: bytes) -> bool:
        """Read a response head; ``True`` for an interim (1xx) response."""
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        try:
            status = int(status_line[1])
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad status line {lines[0][:80]!r}") from None
        if 100 <= status < 200:
            return True
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise httpx.RemoteProtocolError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self._status, self._headers = status, headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        self._keep_alive = "close" not in tokens and status_line[0] != "HTTP/1.0"
        self._body_mode(status, headers)
        return False

    def _body_mode(self, status: int, headers: dict[str, str]) -> None:
        if status in (204, 304):
            self._finish(b"")
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode, self._body, self._chunk_left = "chunked", bytearray(), _SIZE_LINE
        elif "content-length" in headers:
            self._length_body(headers["content-length"])
        else:
            self._mode, self._body, self._keep_alive = "close", bytearray(), False

    def _length_body(self, value: str) -> None:
        try:
            length = int(value)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad content-length {value!r}") from None
        if not 0 <= length <= _MAX_BODY_BYTES:
            raise httpx.RemoteProtocolError(f"content-length {length} is out of range")
        if len(self._pending) > length:
            raise httpx.RemoteProtocolError("the server sent more than its content-length")
        self._body = bytearray(length)
        self._filled = len(self._pending)
        self._body[: self._filled] = self._pending
        self._pending.clear()
        self._mode = "length"
        if self._filled == length:
            self._finish(self._body)

    def _parse_chunks(self) -> None:
        pending = self._pending
        while True:
            if self._chunk_left == _TRAILER:  # after the last chunk: lines up to an empty one
                end = pending.find(b"\r\n")
                if end < 0:
                    return
                del pending[: end + 2]
                if end == 0:
                    self._finish(bytes(self._body))
                    return
                continue
            if self._chunk_left == _SIZE_LINE:
                end = pending.find(b"\r\n")
                if end < 0:
                    return
                self._chunk_left = _chunk_size(bytes(pending[:end]))
                del pending[: end + 2]
                if self._chunk_left == 0:
                    self._chunk_left = _TRAILER
                elif len(self._body) + self._chunk_left > _MAX_BODY_BYTES:
                    raise httpx.RemoteProtocolError("the chunked response is too large")
                continue
            if len(pending) < self._chunk_left + 2:
                return
            self._body += pending[: self._chunk_left]
            del pending[: self._chunk_left + 2]
            self._chunk_left = _SIZE_LINE

    def _finish(self, content: bytes | bytearray) -> None:
        self._mode = ""
        self._body = bytearray()  # the response owns it now: the connection keeps no reply alive
        self._cancel_timer()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, content))
        self._release_drain()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._release_drain()

    def _release_drain(self) -> None:
        """Stop waiting to send: the answer (or the failure) came first."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        size = int(text, 16)
    except ValueError:
        raise httpx.RemoteProtocolError(f"bad chunk size {text[:20]!r}") from None
    if size < 0:
        raise httpx.RemoteProtocolError(f"bad chunk size {text[:20]!r}")
    return size
