"""The agent's HTTP/1.1 client against raw asyncio servers that answer byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from canister_iface.http11 import Client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (content-length bodies only)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def _serve(handler: Handler) -> AsyncIterator[str]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
            await reader.read()  # until the client closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def _client(url: str, **kwargs: float) -> Client:
    timeout = kwargs.pop("timeout", 5.0)
    return Client(url, max_connections=2, timeout=timeout, keepalive_expiry=5.0, user_agent="test")


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers each request with its body, keeping the connection; records heads."""
    heads: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            head, body = await _request(reader)
            heads.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    async for url in _serve(handle):
        yield url, heads


async def test_a_body_in_parts_arrives_whole_and_connections_are_reused(
    echo: tuple[str, list[bytes]],
) -> None:
    url, heads = echo
    client = _client(url + "/api/")
    big = bytes(range(256)) * 8192  # 2 MiB
    for _ in range(3):
        response = await client.request(
            "POST", "v2/x", [b"head", memoryview(big), b"tail"], content_type="application/cbor"
        )
        assert response.status == 200
        assert response.content == b"head" + big + b"tail"
    await client.aclose()
    assert len(heads) == 3
    assert heads[0].startswith(b"POST /api/v2/x HTTP/1.1\r\n")
    assert b"content-type: application/cbor\r\n" in heads[0]
    assert client.closed


async def _answer_with(raw: bytes, close: bool = False) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    async for url in _serve(handle):
        yield url


async def _get(raw: bytes, close: bool = False) -> tuple[int, bytes, dict[str, str]]:
    async for url in _answer_with(raw, close):
        client = _client(url)
        try:
            response = await client.request("GET", "/status")
        finally:
            await client.aclose()
        return response.status, bytes(response.content), response.headers
    raise AssertionError("unreachable")


async def test_chunked_bodies_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    status, body, headers = await _get(raw)
    assert (status, body, headers["transfer-encoding"]) == (200, b"hello world", "chunked")


async def test_a_body_read_until_close_and_an_interim_response() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 503 Busy\r\nRetry-After: 3\r\n\r\nlater"
    status, body, headers = await _get(raw, close=True)
    assert (status, body, headers["retry-after"]) == (503, b"later", "3")


async def test_heads_and_bodies_larger_than_the_read_buffers() -> None:
    """A head over the 16 KiB head buffer, then chunked and until-close bodies over the
    256 KiB bulk buffer, each sent in one write (the reads cut them anywhere)."""
    padding = b"x-padding: " + b"p" * 40_000 + b"\r\n"
    payload = bytes(range(256)) * 2048  # 512 KiB
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:70_000], payload[70_000:])
    )
    raw = b"HTTP/1.1 200 OK\r\n" + padding + b"transfer-encoding: chunked\r\n\r\n" + chunks
    status, body, headers = await _get(raw + b"0\r\n\r\n")
    assert (status, body, len(headers["x-padding"])) == (200, payload, 40_000)
    status, body, _ = await _get(b"HTTP/1.0 200 OK\r\n" + padding + b"\r\n" + payload, close=True)
    assert (status, body) == (200, payload)
    length = b"content-length: %d\r\n\r\n" % len(payload)
    status, body, _ = await _get(b"HTTP/1.1 200 OK\r\n" + padding + length + payload)
    assert (status, body) == (200, payload)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "out of range"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabc", "more than its content-length"),
        (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
async def test_malformed_responses_are_protocol_errors(raw: bytes, message: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match=message):
        await _get(raw)


async def test_a_connection_closed_mid_body_is_a_read_error() -> None:
    with pytest.raises(httpx.ReadError):
        await _get(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", close=True)


async def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)  # one request per connection, then closed without saying so
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async for url in _serve(handle):
        client = _client(url)
        for _ in range(3):
            response = await client.request("POST", "/call", b"x")
            assert response.content == b"ok"
            await asyncio.sleep(0.2)  # the server has closed the idle connection by now
        await client.aclose()
    assert len(served) == 3


async def test_no_answer_is_a_read_timeout_and_no_server_a_connect_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(1)

    async for url in _serve(silent):
        client = _client(url, timeout=0.3)
        with pytest.raises(httpx.ReadTimeout):
            await client.request("GET", "/")
        await client.aclose()
    client = _client("http://127.0.0.1:9")
    with pytest.raises(httpx.ConnectError, match="cannot connect"):
        await client.request("GET", "/")


async def test_requests_beyond_the_pool_wait_their_turn(echo: tuple[str, list[bytes]]) -> None:
    url, _ = echo
    client = _client(url)  # two connections
    replies = await asyncio.gather(*(client.request("POST", "/", b"%d" % i) for i in range(10)))
    assert sorted(int(r.content) for r in replies) == list(range(10))
    await client.aclose()


def test_urls_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        _client("ftp://example.org")
    with pytest.raises(ValueError, match="at least 1"):
        Client("http://a", max_connections=0, timeout=1, keepalive_expiry=1, user_agent="t")


async def test_sent_is_told_once_the_kernel_has_the_body_which_may_then_be_freed() -> None:
    answer = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await _request(reader)
        await answer.wait()  # the body is ours alone before the response comes
        writer.write(b"HTTP/1.1 200 OK\r\nx-got: %d\r\ncontent-length: 0\r\n\r\n" % len(body))
        await writer.drain()

    buffer = bytearray(range(256)) * 4096  # 1 MiB
    view = memoryview(buffer)
    told: list[int] = []

    def sent() -> None:
        told.append(1)
        view.release()  # what a caller does with a reply it forwarded
        buffer.clear()  # BufferError if the client still held a view of it
        answer.set()

    async for url in _serve(handle):
        client = _client(url)
        response = await client.request("POST", "/call", [b"head", view], sent=sent)
        await client.aclose()
    assert (response.status, response.headers["x-got"], told) == (200, "1048580", [1])


async def test_a_sent_body_is_not_sent_again_on_a_connection_the_server_dropped() -> None:
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await _request(reader)  # the next request on this connection: dropped unanswered
        served.append(2)
        writer.close()

    told: list[int] = []

    def sent() -> None:
        told.append(1)

    async for url in _serve(handle):
        client = _client(url)
        assert (await client.request("POST", "/call", b"x")).content == b"ok"
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.request("POST", "/call", b"y", sent=sent)
        assert told == [1]
        # without ``sent`` the same drop is answered by sending it once more
        assert (await client.request("POST", "/call", b"x")).content == b"ok"
        assert (await client.request("POST", "/call", b"z")).content == b"ok"
        await client.aclose()
    assert served == [1, 2, 1, 2, 1]
