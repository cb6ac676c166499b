"""The launcher's egress proxy: the inner gateway's only way out.

It listens on a Unix socket (0600, in a directory only the launcher's user can enter) that
is bind-mounted into the container. Each connection carries exactly one request:

* ``CONNECT host:port`` to a configured target: the name is resolved here, on the host,
  the proxy connects and answers ``200``, then relays bytes both ways (TLS stays end to end);
* an absolute-form request (``POST http://host:port/path``) to a configured ``http://``
  target: sent upstream in origin form with its own ``Host``, without hop-by-hop and
  ``Proxy-*`` fields and with ``Connection: close``; the response comes back with
  ``Connection: close`` too, so clients open a new connection per request;
* ``GET /.well-known/auto-review-egress/stats``: the counters as JSON.

Everything else is refused with a short plain-text answer naming the reason, counted by
reason and logged with the target's ``host:port`` at most: never a header, a path, a body
or userinfo. See docs/EGRESS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from auto_review.isolation.egress.http import (
    STATS_PATH,
    Head,
    ProxyRequest,
    Refusal,
    body_framing,
    classify,
    downstream_response_head,
    parse_chunk_size,
    parse_request_head,
    parse_response_head,
    simple_response,
    upstream_request_head,
)
from auto_review.isolation.egress.loop import BackgroundLoop
from auto_review.isolation.egress.policy import EgressPolicy, EgressTarget, parse_ip
from auto_review.isolation.egress.stats import EgressCounters, EgressStats
from auto_review.isolation.egress.unix_socket import (
    EgressProxyError,
    listen_unix,
)

__all__ = [
    "STATS_PATH",
    "EgressPolicy",
    "EgressProxy",
    "EgressProxyError",
    "EgressProxyThread",
    "ProxyLimits",
    "system_resolver",
]

log = logging.getLogger("auto_review.isolation.egress")

Resolver = Callable[[str, int], Awaitable[list[str]]]

RELAY_CHUNK = 64 * 1024

REFUSAL_STATUS = {
    "malformed": 400,
    "bad-port": 400,
    "bad-host": 400,
    "head-too-large": 431,
    "head-timeout": 408,
    "method-not-allowed": 405,
    "too-many-connections": 503,
}
FAILURE_STATUS = {"resolve-failed": 502, "connect-failed": 502, "upstream-malformed": 502}


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_head_bytes: int = 32 * 1024
    max_response_head_bytes: int = 64 * 1024
    head_timeout: float = 10.0  # from accept to the end of the request head
    connect_timeout: float = 10.0  # resolution and TCP connect, each
    idle_timeout: float = 600.0  # no byte either way (an LLM may think for minutes)
    total_timeout: float = 3600.0  # one connection, end to end
    max_connections: int = 128


class _Failure(Exception):
    """An allowed request that could not be completed; ``reason`` is a fixed word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the host's resolver (the container has none)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_allowed(text: str) -> bool:
    """Whether a configured *name* may lead to this address.

    Loopback and private addresses are allowed (forges often live there); addresses that
    are never a server (unspecified, multicast, broadcast, reserved) and link-local ones
    (cloud metadata services live at 169.254.169.254) are not. A target configured as an
    IP literal is not checked: the operator named that address.
    """
    address = parse_ip(text)
    if address is None:
        return False  # scoped (fe80::1%eth0) or otherwise odd: refuse
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return False
    return not (
        address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.is_reserved
    )


class _LogBudget:
    """At most ``burst`` refusal lines at once, refilled at ``per_second``; the rest counted."""

    def __init__(self, per_second: float = 10.0, burst: float = 50.0) -> None:
        self._rate, self._burst = per_second, burst
        self._tokens, self._stamp = burst, time.monotonic()
        self.suppressed = 0

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False


class _Activity:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


class EgressProxy:
    """The proxy server; runs on the caller's event loop (see :class:`EgressProxyThread`)."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        limits: ProxyLimits | None = None,
        resolver: Resolver = system_resolver,
        counters: EgressCounters | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits or ProxyLimits()
        self.counters = counters or EgressCounters()
        self._resolve = resolver
        self._server: asyncio.AbstractServer | None = None
        self._socket_path: Path | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._log_budget = _LogBudget()

    @property
    def stats(self) -> EgressStats:
        return self.counters.snapshot()

    @property
    def socket_path(self) -> Path | None:
        return self._socket_path

    async def start(self, socket_path: Path, sock: socket.socket | None = None) -> None:
        """Listen on ``socket_path`` (mode 0600); its directory must be private (0700).

        ``sock``: that socket already bound and listening (:func:`listen_unix`), adopted.
        """
        if self._server is not None:
            raise EgressProxyError("egress proxy is already running")
        if sock is None:
            sock = listen_unix(socket_path, self.limits.max_connections)
        self._socket_path = socket_path  # removed by stop() from here on
        try:
            self._server = await asyncio.start_unix_server(
                self._accept,
                sock=sock,
                limit=self.limits.max_head_bytes,
                backlog=self.limits.max_connections,
            )
        except OSError as exc:
            sock.close()
            await self.stop()
            raise EgressProxyError(
                f"egress proxy cannot listen on {socket_path}: {exc.strerror}"
            ) from None
        log.info(
            "egress proxy listening on %s; allowed: %s",
            socket_path,
            ", ".join(self.policy.describe()) or "nothing",
        )

    async def stop(self) -> None:
        """Stop listening, end every connection, remove the socket. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
            self._socket_path = None

    # -- one connection ----------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.counters.connection_opened()
        try:
            if len(self._handlers) > self.limits.max_connections:
                await self._refuse(writer, Refusal("too-many-connections"))
                return
            try:
                async with asyncio.timeout(self.limits.total_timeout):
                    await self._serve(reader, writer)
            except TimeoutError:
                self._fail(_Failure("total-timeout"), None)
        except (ConnectionError, OSError):
            pass  # the client went away; nothing to answer
        finally:
            self.counters.connection_closed()
            self._handlers.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await self._read_head(reader)
            if head is None:
                return
            request = classify(head)
            if request.kind == "stats":
                writer.write(simple_response(200, self.stats.to_json(), "application/json"))
                await writer.drain()
                return
            target = self._allowed_target(request)
            framing = body_framing(head) if request.kind == "forward" else ("none", 0)
        except Refusal as refusal:
            await self._refuse(writer, refusal)
            return
        try:
            up_reader, up_writer = await self._open_upstream(target)
        except Refusal as refusal:
            await self._refuse(writer, refusal)
            return
        except _Failure as failure:
            self._fail(failure, target.authority)
            await _answer(writer, FAILURE_STATUS[failure.reason], failure.reason)
            return
        self.counters.allowed(request.kind)
        log.debug("egress allowed: %s %s (%s)", request.kind, target.authority, target.purpose)
        try:
            if request.kind == "connect":
                await self._tunnel(reader, writer, up_reader, up_writer)
            else:
                await self._forward(head, request, framing, reader, writer, up_reader, up_writer)
        except _Failure as failure:
            self._fail(failure, target.authority)
        finally:
            await _close(up_writer)

    async def _read_head(self, reader: asyncio.StreamReader) -> Head | None:
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise Refusal("head-timeout") from None
        except asyncio.LimitOverrunError:
            raise Refusal("head-too-large") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None  # connected and left without a word: nothing to count
            raise Refusal("malformed") from None
        return parse_request_head(raw)

    def _allowed_target(self, request: ProxyRequest) -> EgressTarget:
        target = self.policy.match(request.host, request.port)
        if target is None:
            reason = (
                "port-not-allowed" if self.policy.knows_host(request.host) else "host-not-allowed"
            )
            raise Refusal(reason, request.authority)
        if request.kind == "forward" and target.scheme != "http":
            # An https target is reached through CONNECT only, so TLS is end to end.
            raise Refusal("scheme-not-allowed", request.authority)
        return target

    async def _open_upstream(
        self, target: EgressTarget
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        timeout = self.limits.connect_timeout
        if target.is_ip_literal:
            addresses = [target.host]
        else:
            try:
                async with asyncio.timeout(timeout):
                    resolved = await self._resolve(target.host, target.port)
            except (OSError, TimeoutError, UnicodeError):
                raise _Failure("resolve-failed") from None
            if not resolved:
                raise _Failure("resolve-failed")
            addresses = [address for address in resolved if address_allowed(address)]
            if not addresses:
                raise Refusal("address-forbidden", target.authority)
        for address in addresses:
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.open_connection(
                        address, target.port, limit=self.limits.max_response_head_bytes
                    )
            except (OSError, TimeoutError):
                continue
        raise _Failure("connect-failed")

    # -- relaying ----------------------------------------------------------------------

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        established = b"HTTP/1.1 200 Connection Established\r\n\r\n"
        self.counters.transferred("downstream", len(established))
        writer.write(established)
        await writer.drain()
        activity = _Activity()
        await self._relay(
            activity,
            towards_client=self._pump(up_reader, writer, "downstream", activity),
            towards_upstream=self._pump(reader, up_writer, "upstream", activity),
        )

    async def _forward(
        self,
        head: Head,
        request: ProxyRequest,
        framing: tuple[str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        request_head = upstream_request_head(head, request)
        up_writer.write(request_head)
        self.counters.transferred("upstream", len(request_head))
        activity = _Activity()
        # Body and response run together: a server may answer (or send 100 Continue)
        # before the whole body arrived.
        await self._relay(
            activity,
            towards_client=self._relay_response(up_reader, writer, activity),
            towards_upstream=self._send_body(framing, reader, up_writer, activity),
        )

    async def _relay(
        self,
        activity: _Activity,
        towards_client: Awaitable[None],
        towards_upstream: Awaitable[None],
    ) -> None:
        """Run both directions; the exchange ends when the upstream side is done.

        A client may half-close (its direction ends, the answer keeps flowing); once the
        upstream has closed, or a forwarded response is complete, nothing more is relayed.
        """
        decisive = asyncio.ensure_future(towards_client)
        tasks = [decisive, asyncio.ensure_future(towards_upstream)]
        interval = min(1.0, self.limits.idle_timeout / 4)
        pending = set(tasks)
        try:
            while pending and not decisive.done():
                done, pending = await asyncio.wait(
                    pending, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    error = task.exception()
                    if error is not None:
                        if isinstance(error, _Failure):
                            raise error
                        return  # a reset or a malformed body ends the whole exchange
                if time.monotonic() - activity.last > self.limits.idle_timeout:
                    raise _Failure("idle-timeout")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: str,
        activity: _Activity,
    ) -> None:
        while data := await source.read(RELAY_CHUNK):
            activity.touch()
            self.counters.transferred(direction, len(data))
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()

    async def _send_body(
        self,
        framing: tuple[str, int],
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        activity: _Activity,
    ) -> None:
        kind, length = framing
        if kind == "length":
            await self._copy_exactly(reader, up_writer, length, activity)
        elif kind == "chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                size = parse_chunk_size(line)
                await self._send(up_writer, line, activity)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        await self._send(up_writer, trailer, activity)
                    await self._send(up_writer, b"\r\n", activity)
                    break
                await self._copy_exactly(reader, up_writer, size, activity)
                if await reader.readexactly(2) != b"\r\n":
                    raise Refusal("malformed")
                await self._send(up_writer, b"\r\n", activity)
        await up_writer.drain()

    async def _copy_exactly(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        count: int,
        activity: _Activity,
    ) -> None:
        while count > 0:
            data = await reader.read(min(count, RELAY_CHUNK))
            if not data:
                raise ConnectionResetError("client closed mid-body")
            count -= len(data)
            await self._send(writer, data, activity)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, activity: _Activity) -> None:
        activity.touch()
        self.counters.transferred("upstream", len(data))
        writer.write(data)
        await writer.drain()

    async def _relay_response(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        activity: _Activity,
    ) -> None:
        while True:
            try:
                raw = await up_reader.readuntil(b"\r\n\r\n")
                response = parse_response_head(raw)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, Refusal):
                await _answer(writer, 502, "upstream-malformed")
                raise _Failure("upstream-malformed") from None
            activity.touch()
            code = response.start[1]
            if code == "101":
                # No upgrade was asked for (Upgrade is never passed on).
                await _answer(writer, 502, "upstream-malformed")
                raise _Failure("upstream-malformed")
            out = downstream_response_head(response)
            self.counters.transferred("downstream", len(out))
            writer.write(out)
            await writer.drain()
            if not code.startswith("1"):
                break
        await self._pump(up_reader, writer, "downstream", activity)

    # -- refusals and failures ---------------------------------------------------------

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
        self.counters.refused(refusal.reason)
        self._log("egress refused: reason=%s target=%s", refusal.reason, refusal.target)
        await _answer(writer, REFUSAL_STATUS.get(refusal.reason, 403), refusal.reason)

    def _fail(self, failure: _Failure, target: str | None) -> None:
        self.counters.failed(failure.reason)
        self._log("egress failed: reason=%s target=%s", failure.reason, target)

    def _log(self, message: str, reason: str, target: str | None) -> None:
        if not self._log_budget.take():
            return
        suppressed, self._log_budget.suppressed = self._log_budget.suppressed, 0
        if suppressed:
            log.warning(
                message + " (%d similar lines suppressed)", reason, target or "-", suppressed
            )
        else:
            log.warning(message, reason, target or "-")


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(simple_response(status, f"egress proxy: {reason}\n".encode()))
        await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class EgressProxyThread:
    """:class:`EgressProxy` on its own event loop in its own thread, for the launcher."""

    def __init__(
        self,
        policy: EgressPolicy,
        socket_path: Path,
        *,
        limits: ProxyLimits | None = None,
        resolver: Resolver = system_resolver,
        sock: socket.socket | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.sock = sock
        self.proxy = EgressProxy(policy, limits=limits, resolver=resolver)
        self._loop = BackgroundLoop("egress-proxy")

    @property
    def stats(self) -> EgressStats:
        return self.proxy.stats

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self, timeout: float = 10.0) -> None:
        """Listening when this returns; raises :class:`EgressProxyError` otherwise."""
        self._loop.start(lambda: self.proxy.start(self.socket_path, self.sock), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the socket and every connection, end the thread. Idempotent."""
        self._loop.stop(self.proxy.stop, timeout)

    def __enter__(self) -> EgressProxyThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
