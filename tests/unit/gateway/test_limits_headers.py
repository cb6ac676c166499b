"""The header cap and header timeout of the gateway's HTTP protocol, on a real loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

import uvicorn

from auto_review.gateway.limits import BoundedHttpToolsProtocol


class QuickProtocol(BoundedHttpToolsProtocol):
    max_header_bytes = 8 * 1024
    header_timeout_seconds = 0.5


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def with_server(check: Callable[[int], Awaitable[None]]) -> None:
    async def scenario() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            hello, http=QuickProtocol, lifespan="off", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            await check(port)
        finally:
            server.should_exit = True
            await task
            listener.close()

    asyncio.run(scenario())


async def read_all(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


def test_a_header_past_the_cap_gets_431_and_the_connection_closes() -> None:
    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000)  # head not done
        await writer.drain()
        answer = await read_all(reader)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert b"connection: close" in answer
        writer.close()

    with_server(check)


def test_an_endless_header_is_cut_off_not_buffered() -> None:
    async def check(port: int) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")

        async def stream() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(4096):  # 64 MiB if the server kept reading
                    writer.write(b"a" * 16384)
                    await writer.drain()
                raise AssertionError("the server kept reading an endless header")

        # Without the cap the parser buffers (and re-copies) the header and the writes
        # stall: the time bound turns that into a failure instead of a hang.
        await asyncio.wait_for(stream(), 10)
        writer.close()

    with_server(check)


def test_headers_under_the_cap_and_keep_alive_still_work() -> None:
    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 6000 + b"\r\n\r\n"
        for _ in range(3):  # each request counts afresh: 3 x 6 KB never trips 8 KB
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            assert status.startswith(b"HTTP/1.1 200"), status
            await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        writer.close()

    with_server(check)


def test_slow_or_silent_clients_are_cut_off() -> None:
    async def check(port: int) -> None:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
        slow.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        await slow.drain()
        assert await read_all(silent_reader, 3) == b""  # closed by the server
        assert await read_all(slow_reader, 3) == b""
        silent.close()
        slow.close()

    with_server(check)
