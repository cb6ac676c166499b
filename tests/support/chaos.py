"""Random faults for the loopback servers, drawn from a seeded RNG (opt-in).

A :class:`RandomFaults` set on a fake (``forge.chaos = RandomFaults(...)``, same for
:class:`tests.support.fake_llm.FakeLlm`) makes that share of its requests fail, each with
one kind picked at random, and counts what it injected. Without it the fakes never fail on
their own, so the tests that do not ask see nothing of this. The kinds:

- ``5xx``: an error status (500, 502 or 503) instead of the answer;
- ``reset``: the connection is reset (RST, SO_LINGER 0) without an answer;
- ``timeout``: nothing is answered for ``stall_seconds`` (longer than the client's
  timeout), then the connection is closed;
- ``429``: rate limited, with ``Retry-After: retry_after``.

None of these lets the request act: the fault stands for a proxy or a failing front end
before the service, so a repeated write never finds its first copy already applied. One
more kind is there only when asked for by name (``kinds=(..., "lost-reply")``), and only
the forge fake serves it:

- ``lost-reply``: the forge does what was asked, then stalls past the client's timeout
  and closes without answering; the client cannot know that its write took effect.

``methods=("POST",)`` limits the faults to requests with those methods (the writes).
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = ("5xx", "reset", "timeout", "429")
LOST_REPLY = "lost-reply"
ERROR_STATUSES = (500, 502, 503)


class RandomFaults:
    """Decides, per request, whether and how it fails; thread-safe and reproducible for
    one seed and one order of requests."""

    def __init__(
        self,
        *,
        seed: int,
        rate: float = 0.1,
        kinds: Sequence[str] = KINDS,
        stall_seconds: float = 2.0,
        retry_after: str = "1",
        methods: Sequence[str] = (),
    ) -> None:
        unknown = set(kinds) - {*KINDS, LOST_REPLY}
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {(*KINDS, LOST_REPLY)}")
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        self.rate = rate
        self.kinds = tuple(kinds)
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self.methods = frozenset(methods)  # empty: every method may fail
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, method: str) -> str | None:
        """The kind of fault for this request, or None: it is answered as usual."""
        with self._lock:
            self.requests += 1
            if self.methods and method not in self.methods:
                return None
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            return kind

    def error_status(self) -> int:
        with self._lock:
            return self._random.choice(ERROR_STATUSES)

    def summary(self) -> str:
        counts = ", ".join(f"{kind} {self.injected[kind]}" for kind in self.kinds)
        return f"{sum(self.injected.values())} of {self.requests} requests ({counts})"


def stall_until_the_client_gives_up(handler: BaseHTTPRequestHandler, limit: float) -> None:
    """Answer nothing until the client closes the connection (its timeout), at most
    ``limit`` seconds: the stall ends on the client's own signal, not after a fixed time."""
    handler.close_connection = True
    connection = handler.connection
    try:
        connection.settimeout(limit)
        while connection.recv(4096):
            pass  # a client waiting for this answer sends nothing more; drain if it does
    except OSError:
        pass  # the limit passed, or the client reset the connection


def reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the handler's connection with a TCP reset: SO_LINGER 0 turns close into RST."""
    handler.close_connection = True
    connection = handler.connection
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass  # already gone


class LoopbackHttpServer(ThreadingHTTPServer):
    """A threaded server that takes a peer resetting its connection (a client giving up
    after a stall, a pool closing a kept-alive connection) as ordinary, not as an error
    to print with a traceback; any other exception is still printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
