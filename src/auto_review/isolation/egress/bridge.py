"""Inner side of egress: a loopback TCP port that leads to the launcher's proxy socket.

HTTP clients and git speak to proxies over TCP, and the container's network namespace has
only ``lo``. :class:`EgressBridge` listens on ``127.0.0.1:<ephemeral port>`` inside that
namespace and pipes each connection, byte for byte, to the proxy's Unix socket (mounted at
:data:`CONTAINER_SOCKET`). It does not parse anything: the proxy on the host decides.
:func:`fetch_egress_stats` asks the proxy for its counters, for the gateway's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from pathlib import Path

from auto_review.isolation.egress.http import STATS_PATH
from auto_review.isolation.egress.loop import BackgroundLoop
from auto_review.isolation.egress.stats import EgressStats

CONTAINER_SOCKET = Path("/run/egress/proxy.sock")
BRIDGE_HOST = "127.0.0.1"
RELAY_CHUNK = 64 * 1024
MAX_STATS_BYTES = 64 * 1024

# The schemes the gateway speaks, in both spellings (curl ignores upper-case HTTP_PROXY).
# No ALL_PROXY: httpx builds one transport, with its own TLS trust store (certifi's bundle
# parsed again, 10-30 ms), per proxy variable at every client's construction, and nothing
# but http and https leaves the container anyway (its network namespace has only lo).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY")


class EgressBridgeError(RuntimeError):
    """The bridge cannot start or the proxy cannot be reached."""


def proxy_env(proxy_url: str) -> dict[str, str]:
    """Proxy variables sending every request through ``proxy_url``.

    ``NO_PROXY`` is set empty, exempting nothing: inside the container no destination is
    reachable directly, and a loopback forge on the host (``http://127.0.0.1:3000``) must
    go through the proxy too, because the container's own loopback is not the host's.
    """
    env: dict[str, str] = {}
    for name in PROXY_VARIABLES:
        env[name] = env[name.lower()] = proxy_url
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


class EgressBridge:
    """TCP listener on the container's loopback, each connection piped to the proxy socket."""

    name = "egress bridge"  # in its error messages

    def __init__(self, socket_path: Path = CONTAINER_SOCKET, *, port: int = 0) -> None:
        self.socket_path = socket_path
        self._requested_port = port
        self._server: asyncio.AbstractServer | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise EgressBridgeError(f"{self.name} is not listening")
        return self._port

    @property
    def proxy_url(self) -> str:
        return f"http://{BRIDGE_HOST}:{self.port}"

    def proxy_env(self) -> dict[str, str]:
        return proxy_env(self.proxy_url)

    async def start(self) -> None:
        if self._server is not None:
            raise EgressBridgeError(f"{self.name} is already running")
        if not self.socket_path.is_socket():
            raise EgressBridgeError(f"egress proxy socket {self.socket_path} is missing")
        try:
            self._server = await asyncio.start_server(
                self._accept, BRIDGE_HOST, self._requested_port, reuse_address=True
            )
        except OSError as exc:
            raise EgressBridgeError(
                f"{self.name} cannot listen on {BRIDGE_HOST}: {exc.strerror}"
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
            if await self._opened(up_reader, up_writer):
                await _relay(_pump(reader, up_writer), _pump(up_reader, writer))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # either side went away (timeouts included); the proxy counts what matters
        except asyncio.LimitOverrunError:
            pass  # an answer head too large: not the proxy's
        finally:
            self._handlers.discard(task)
            for each in (writer, up_writer):
                if each is not None:
                    each.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await each.wait_closed()


    async def _opened(
        self, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> bool:
        """Whatever must pass on the proxy connection before the relay; False ends the
        connection. The bridge relays at once: its clients speak to the proxy themselves."""
        return True


async def _relay(*pumps: Coroutine[object, object, None]) -> None:
    """Both directions until both ended; an error in one ends the other too."""
    tasks = [asyncio.ensure_future(pump) for pump in pumps]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(RELAY_CHUNK):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        with contextlib.suppress(OSError):
            sink.write_eof()


class EgressBridgeThread:
    """:class:`EgressBridge` on its own loop and thread, independent of the gateway's loop."""

    def __init__(self, socket_path: Path = CONTAINER_SOCKET, *, port: int = 0) -> None:
        self.bridge = EgressBridge(socket_path, port=port)
        self._loop = BackgroundLoop("egress-bridge")

    @property
    def proxy_url(self) -> str:
        return self.bridge.proxy_url

    def proxy_env(self) -> dict[str, str]:
        return self.bridge.proxy_env()

    def start(self, timeout: float = 10.0) -> None:
        self._loop.start(self.bridge.start, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(self.bridge.stop, timeout)

    def __enter__(self) -> EgressBridgeThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def fetch_egress_stats(socket_path: Path = CONTAINER_SOCKET, timeout: float = 2.0) -> EgressStats:
    """The proxy's counters, asked over its socket (blocking, bounded by ``timeout``)."""
    request = f"GET {STATS_PATH} HTTP/1.1\r\nHost: egress-proxy\r\n\r\n".encode("ascii")
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(request)
            received = 0
            while chunk := sock.recv(RELAY_CHUNK):
                chunks.append(chunk)
                received += len(chunk)
                if received > MAX_STATS_BYTES:
                    raise EgressBridgeError("egress stats answer is too large")
    except OSError as exc:
        raise EgressBridgeError(f"egress proxy stats unavailable: {exc.strerror or exc}") from None
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200 "):
        raise EgressBridgeError("egress proxy stats answer is not 200")
    try:
        return EgressStats.from_json(body)
    except ValueError as exc:
        raise EgressBridgeError(str(exc)) from None
