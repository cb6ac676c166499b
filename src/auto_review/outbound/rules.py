"""The words between the shared retry loop and a client's own retry rules.

The loop (:mod:`.exchange`) sends, enforces the deadline, reads the wait a server asks for,
backs off and counts attempts. What may be repeated, and which error a client raises, is
the client's: it answers the loop through a :class:`RetryRules` object.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar

import httpx

T_co = TypeVar("T_co", covariant=True)


class FailureKind(enum.Enum):
    """Why an attempt got no readable answer."""

    CONNECT = "connect"  # ConnectError/ConnectTimeout: the request never reached the server
    TIMEOUT = "timeout"  # one of httpx's per-phase timeouts (read, write, pool)
    DEADLINE = "deadline"  # the whole-attempt deadline passed
    TRANSPORT = "transport"  # the connection broke after the request went out
    UNREADABLE = "unreadable"  # an answer whose body could not be decoded


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that got no answer. ``error`` is the exception's type name only: its
    text may quote a URL."""

    kind: FailureKind
    error: str


@dataclass(frozen=True, slots=True)
class Retry:
    """An attempt the client's rules allow to be repeated.

    ``detail``: fixed words for the client's messages and logs (never a server's text).
    ``reason``: a short label for the client's metrics. ``status``: the HTTP status when
    the attempt got an answer. ``wait``: what the server asked for; the loop fills it from
    the answer's headers when the rules leave it None.
    """

    detail: str
    reason: str = ""
    status: int | None = None
    wait: float | None = None


class RetryRules(Protocol[T_co]):
    """A client's retry rules. Each method may raise the client's own final error instead
    of answering; the loop calls them outside any ``except`` block, so such an error
    carries no httpx exception (which could name the URL) as its context."""

    async def answer(self, response: httpx.Response) -> T_co | Retry:
        """An answer arrived (status and headers; the body is streamed, unread): read it
        into the result, or say to retry. Runs within the attempt's deadline."""
        ...

    def failure(self, failure: Failure, attempt: int) -> Retry:
        """An attempt got no answer: say to retry, or raise."""
        ...

    def give_up(self, retry: Retry, attempts: int) -> Exception:
        """The error for a call whose last attempt still asked to retry."""
        ...

    def too_long(self, retry: Retry, wait: float, limit: float) -> Exception:
        """The error when the server asks to wait ``wait`` s, more than ``limit``."""
        ...

    def retrying(self, retry: Retry, attempt: int, attempts: int, delay: float) -> None:
        """Told before the loop sleeps ``delay`` s and tries again (log, count)."""
        ...
