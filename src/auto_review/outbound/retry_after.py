"""How long a server asks the client to wait before it tries again.

Read, in this order: ``retry-after-ms`` (OpenAI and several LLM servers), ``Retry-After``
(RFC 9110: delta-seconds or an HTTP date) and GitHub's primary rate limit
(``x-ratelimit-remaining: 0`` with an ``x-ratelimit-reset`` epoch).
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime

import httpx


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or HTTP date), None if invalid.

    A date in the past asks for no wait (0). A date without a zone is no valid HTTP date.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_retry_after_ms(value: str | None) -> float | None:
    """Seconds from a ``retry-after-ms`` value (milliseconds, fractions allowed)."""
    if value is None:
        return None
    try:
        millis = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(millis) or millis < 0:
        return None
    return millis / 1000.0


def rate_limit_reset(headers: httpx.Headers, now: float) -> float | None:
    """Seconds until GitHub's ``x-ratelimit-reset`` when the remaining count is 0."""
    if headers.get("x-ratelimit-remaining", "").strip() != "0":
        return None
    reset = headers.get("x-ratelimit-reset", "").strip()
    if not reset.isdigit():
        return None
    return max(0.0, int(reset) - now)


def requested_wait(headers: httpx.Headers, now: float) -> float | None:
    """The wait an answer asks for, or None when it names none (plain backoff then)."""
    for wait in (
        parse_retry_after_ms(headers.get("retry-after-ms")),
        parse_retry_after(headers.get("retry-after"), now),
    ):
        if wait is not None:
            return wait
    return rate_limit_reset(headers, now)
