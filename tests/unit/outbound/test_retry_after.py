"""How long a server asks to wait: Retry-After (seconds, HTTP date), retry-after-ms,
GitHub's x-ratelimit-reset, and the order they are read in."""

from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest

from auto_review.outbound.retry_after import (
    parse_retry_after,
    parse_retry_after_ms,
    rate_limit_reset,
    requested_wait,
)

NOW = 1_700_000_000.0


def test_delta_seconds() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    assert parse_retry_after("120", NOW) == 120.0


def test_http_date_in_the_future_and_the_past() -> None:
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), NOW) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(NOW - 30, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1.5", "Fri, 31 Dec 1999 23:59:59", "Mon, 99 Foo 2024"]
)
def test_invalid_retry_after_is_none(value: str | None) -> None:
    # negative and fractional delta-seconds are not RFC 9110; a date needs its zone
    assert parse_retry_after(value, NOW) is None


def test_retry_after_ms() -> None:
    assert parse_retry_after_ms("250") == 0.25
    assert parse_retry_after_ms("1500.5") == pytest.approx(1.5005)
    for bad in (None, "", "-1", "nan", "inf", "ten"):
        assert parse_retry_after_ms(bad) is None


def test_github_reset_counts_only_when_nothing_remains() -> None:
    reset = str(int(NOW) + 42)
    spent = httpx.Headers({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    left = httpx.Headers({"x-ratelimit-remaining": "10", "x-ratelimit-reset": reset})
    past = httpx.Headers({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 9)})
    garbage = httpx.Headers({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "later"})
    assert rate_limit_reset(spent, NOW) == 42.0
    assert rate_limit_reset(left, NOW) is None
    assert rate_limit_reset(past, NOW) == 0.0
    assert rate_limit_reset(garbage, NOW) is None


def test_requested_wait_reads_ms_then_retry_after_then_reset() -> None:
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)}
    every = httpx.Headers({"retry-after-ms": "250", "retry-after": "30", **reset})
    assert requested_wait(every, NOW) == 0.25
    assert requested_wait(httpx.Headers({"retry-after": "30", **reset}), NOW) == 30.0
    assert requested_wait(httpx.Headers(reset), NOW) == 90.0
    broken_ms = httpx.Headers({"retry-after-ms": "x", "retry-after": "4"})
    assert requested_wait(broken_ms, NOW) == 4.0
    assert requested_wait(httpx.Headers({}), NOW) is None
