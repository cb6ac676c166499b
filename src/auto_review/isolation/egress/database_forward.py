"""Inner side of the database's egress: a loopback TCP port that leads to exactly one
PostgreSQL server through the launcher's proxy.

libpq speaks no HTTP, so it cannot use the proxy the way the HTTP clients and git do. Each
connection to :class:`DatabaseForward` (``127.0.0.1:<ephemeral port>`` in the container's
network namespace, which has only ``lo``) opens the proxy's Unix socket, asks
``CONNECT host:port`` for the one database the settings name, and once the proxy answers
200 relays bytes both ways. The proxy decides (the database's host:port is in its
allowlist, nothing broader); TLS, when configured, stays end to end between libpq and the
server, which libpq verifies against the URL's host name (``hostaddr`` points it here).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from auto_review.isolation.egress.bridge import (
    BRIDGE_HOST,
    CONTAINER_SOCKET,
    EgressBridgeError,
    _pump,
    _relay,
)
from auto_review.isolation.egress.loop import BackgroundLoop
from auto_review.wiring.stores import DATABASE_FORWARD_ENV

# What the inner process's store reads to connect here instead of the database's address.
FORWARD_ENV = DATABASE_FORWARD_ENV
MAX_ANSWER_BYTES = 4096
ANSWER_TIMEOUT_SECONDS = 15.0


class DatabaseForward:
    def __init__(self, authority: str, socket_path: Path = CONTAINER_SOCKET) -> None:
        self.authority = authority  # host:port of the database, as the proxy's policy has it
        self.socket_path = socket_path
        self._server: asyncio.AbstractServer | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise EgressBridgeError("database forward is not listening")
        return self._port

    def environment(self) -> dict[str, str]:
        return {FORWARD_ENV: f"{BRIDGE_HOST}:{self.port}"}

    async def start(self) -> None:
        if not self.socket_path.is_socket():
            raise EgressBridgeError(f"egress proxy socket {self.socket_path} is missing")
        try:
            self._server = await asyncio.start_server(self._accept, BRIDGE_HOST, 0)
        except OSError as exc:
            raise EgressBridgeError(
                f"database forward cannot listen on {BRIDGE_HOST}: {exc.strerror}"
            ) from None
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.socket_path))
            up_writer.write(
                f"CONNECT {self.authority} HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode()
            )
            await up_writer.drain()
            async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
                answer = await up_reader.readuntil(b"\r\n\r\n")
            if len(answer) > MAX_ANSWER_BYTES or not answer.startswith(b"HTTP/1.1 200 "):
                return  # refused or failed: the proxy counted and logged why; libpq sees EOF
            await _relay(_pump(reader, up_writer), _pump(up_reader, writer))
        except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # either side went away
        except asyncio.LimitOverrunError:
            pass  # an answer head too large: not the proxy's
        finally:
            self._handlers.discard(task)
            for each in (writer, up_writer):
                if each is not None:
                    each.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await each.wait_closed()


class DatabaseForwardThread:
    """:class:`DatabaseForward` on its own loop and thread, like the egress bridge."""

    def __init__(self, authority: str, socket_path: Path = CONTAINER_SOCKET) -> None:
        self.forward = DatabaseForward(authority, socket_path)
        self._loop = BackgroundLoop("database-forward")

    def environment(self) -> dict[str, str]:
        return self.forward.environment()

    def start(self, timeout: float = 10.0) -> None:
        self._loop.start(self.forward.start, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(self.forward.stop, timeout)
