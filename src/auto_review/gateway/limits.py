"""Intake limits: the body-size cap and the per-client token bucket.

Both run before a request's signature is checked, so both must be cheap and must not let
a client make the gateway hold more than the cap in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from starlette.types import Receive
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auto_review.gateway.coalesced_writes import CoalescedWrites


class BodyTooLarge(Exception):
    """The request body is (or announces itself as) larger than the cap."""


class BodyIncomplete(Exception):
    """The client went away before the body was complete."""


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length a client announced, or None when absent or unreadable.

    An unreadable value is left to the HTTP parser (which refuses it) or to the counting
    reader below, so it can never let a body past the cap.
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body_capped(receive: Receive, cap: int) -> bytes:
    """Read the whole body, counting bytes as they stream in; stop past ``cap``.

    Chunked bodies announce no length, so the count is the only guard for them. The
    bytes read so far are dropped as soon as the cap is passed.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise BodyIncomplete
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > cap:
                chunks.clear()
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


class RateLimiter:
    """A token bucket per client address.

    Each address may spend ``burst`` requests at once and regains ``per_minute / 60``
    tokens a second. The table of buckets is bounded: when it reaches ``max_clients``,
    buckets that have refilled completely (idle clients) are dropped, and if that frees
    too little the oldest half goes, which can only make the limiter more lenient for a
    moment, never lock a client out.
    """

    __slots__ = ("_buckets", "_burst", "_clock", "_max_clients", "_rate")

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_clients: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 1 or burst < 1:
            raise ValueError("rate limit and burst must be at least 1")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        # address -> [tokens, last refill time]; lists are updated in place.
        self._buckets: dict[Any, list[float]] = {}

    def allow(self, client: Any) -> bool:
        """Spend one token of ``client``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max_clients:
                self._evict(now)
            self._buckets[client] = [self._burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def retry_after_seconds(self, client: Any) -> int:
        """Whole seconds until ``client`` has a token again (at least 1)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 1
        missing = 1.0 - bucket[0]
        return max(1, int(missing / self._rate + 0.999))

    def _evict(self, now: float) -> None:
        full_after = self._burst / self._rate
        idle = [k for k, (_, last) in self._buckets.items() if now - last >= full_after]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= self._max_clients:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1][1])
            for key, _ in by_age[: len(by_age) // 2 + 1]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


# ---- request line and headers ------------------------------------------------------------

MAX_HEADER_BYTES = 64 * 1024
HEADER_TIMEOUT_SECONDS = 30.0
_HEADERS_TOO_LARGE_BODY = b'{"error":"request line or headers too large"}'
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_HEADERS_TOO_LARGE_BODY)
) + _HEADERS_TOO_LARGE_BODY


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request line plus headers.

    The parser itself has no limit: without one, a client could stream an endless header
    into memory before any check of ours runs. Bytes are counted from the end of the
    previous request; past ``MAX_HEADER_BYTES`` with the headers still incomplete, the
    connection gets a 431 and is closed. A request whose headers are still incomplete
    ``HEADER_TIMEOUT_SECONDS`` after they began is cut off too (slow-header clients).
    Memory held per connection is thereby bounded by the cap plus one socket read. A new
    connection that sends no complete request head within the timeout is closed as well.
    """

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout_seconds = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._reading_headers = True
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._reading_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(_HEADERS_TOO_LARGE)

    # uvicorn's protocol narrows BaseProtocol's BaseTransport to Transport; so does this.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Each answer leaves in one socket write (head and body together); uvicorn's
        # flow control keeps the real transport.
        self.transport = cast(asyncio.Transport, CoalescedWrites(transport, self.loop))
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True
        self._header_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._reading_headers:
            self._refuse(b"")

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_seconds, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, answer: bytes) -> None:
        self._reading_headers = False
        self._cancel_header_timer()
        if not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()
