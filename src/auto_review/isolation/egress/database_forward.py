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
from pathlib import Path

from auto_review.isolation.egress.bridge import BRIDGE_HOST, CONTAINER_SOCKET, EgressBridge
from auto_review.isolation.egress.loop import BackgroundLoop
from auto_review.wiring.stores import DATABASE_FORWARD_ENV

# What the inner process's store reads to connect here instead of the database's address.
FORWARD_ENV = DATABASE_FORWARD_ENV
MAX_ANSWER_BYTES = 4096
ANSWER_TIMEOUT_SECONDS = 15.0


class DatabaseForward(EgressBridge):
    """The egress bridge for one destination: each connection asks the proxy for a tunnel
    to the database first, and relays only once the proxy said 200."""

    name = "database forward"

    def __init__(self, authority: str, socket_path: Path = CONTAINER_SOCKET) -> None:
        super().__init__(socket_path)
        self.authority = authority  # host:port of the database, as the proxy's policy has it

    def environment(self) -> dict[str, str]:
        return {FORWARD_ENV: f"{BRIDGE_HOST}:{self.port}"}

    async def _opened(
        self, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> bool:
        up_writer.write(
            f"CONNECT {self.authority} HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode()
        )
        await up_writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
            answer = await up_reader.readuntil(b"\r\n\r\n")
        # Refused or failed: the proxy counted and logged why; libpq sees EOF.
        return len(answer) <= MAX_ANSWER_BYTES and answer.startswith(b"HTTP/1.1 200 ")


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
