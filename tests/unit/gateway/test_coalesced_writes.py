"""Each answer leaves in one socket write: head and body together, on a real loopback server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from auto_review.gateway.limits import BoundedHttpToolsProtocol


class RecordingTransport:
    """Stands between the event loop's transport and the protocol; notes every write."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


WRITES: list[bytes] = []


class RecordedProtocol(BoundedHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(RecordingTransport(transport, WRITES))  # type: ignore[arg-type]


async def answer(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b'{"status":"accepted","jobs":1}'
    closing = scope["path"] == "/close"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if closing:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_and(check: Any) -> None:
    async def scenario() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(
            answer, http=RecordedProtocol, lifespan="off", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        # The socket listens already: a connection made before the server starts waits in
        # its backlog, so nothing needs to wait for start-up.
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            await check(listener.getsockname()[1])
        finally:
            server.should_exit = True
            await task
            listener.close()

    asyncio.run(scenario())


def test_keep_alive_answers_go_out_in_one_write_each() -> None:
    WRITES.clear()

    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 202 "), head
            assert await asyncio.wait_for(reader.readuntil(b"}"), 5) == (
                b'{"status":"accepted","jobs":1}'
            )
        writer.close()

    serve_and(check)
    assert len(WRITES) == 3, [w[:40] for w in WRITES]
    for write in WRITES:
        assert write.startswith(b"HTTP/1.1 202 ")
        assert write.endswith(b'\r\n\r\n{"status":"accepted","jobs":1}')


def test_an_answer_that_closes_the_connection_is_sent_whole_before_the_close() -> None:
    WRITES.clear()

    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /close HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        everything = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        assert everything.startswith(b"HTTP/1.1 202 ")
        assert everything.endswith(b'{"status":"accepted","jobs":1}')
        writer.close()

    serve_and(check)
    assert len(WRITES) == 1
