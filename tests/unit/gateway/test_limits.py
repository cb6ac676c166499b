"""Body cap and per-client token bucket."""

from __future__ import annotations

import asyncio

import pytest

from auto_review.gateway.limits import (
    BodyIncomplete,
    BodyTooLarge,
    RateLimiter,
    declared_length,
    read_body_capped,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def receiver(messages: list[dict[str, object]]):
    queue = list(messages)
    pulled: list[int] = []

    async def receive() -> dict[str, object]:
        pulled.append(1)
        return queue.pop(0)

    return receive, pulled


def test_declared_length_reads_the_header_and_ignores_garbage() -> None:
    assert declared_length([(b"host", b"x"), (b"content-length", b"42")]) == 42
    assert declared_length([(b"content-length", b"4x2")]) is None
    assert declared_length([]) is None


def test_body_is_joined_from_chunks() -> None:
    receive, _ = receiver(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ]
    )
    assert asyncio.run(read_body_capped(receive, 4)) == b"abcd"


def test_chunked_body_past_the_cap_stops_reading_at_the_chunk_that_crosses_it() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True} for _ in range(100)]
    receive, pulled = receiver(chunks)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body_capped(receive, 25))
    assert len(pulled) == 3  # 10 + 10 + 10 > 25: the rest is never pulled


def test_disconnect_mid_body_is_reported() -> None:
    receive, _ = receiver(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]
    )
    with pytest.raises(BodyIncomplete):
        asyncio.run(read_body_capped(receive, 100))


def test_bucket_allows_the_burst_then_refuses() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    # Another client has its own bucket.
    assert limiter.allow("b")


def test_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)  # one token a second
    assert limiter.allow("a") and limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.retry_after_seconds("a") == 1
    clock.now += 0.5
    assert not limiter.allow("a")
    clock.now += 0.6
    assert limiter.allow("a")
    clock.now += 100  # refills to the burst, never beyond
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]


def test_retry_after_reflects_a_slow_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)  # a token every 10 s
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert 9 <= limiter.retry_after_seconds("a") <= 10


def test_client_table_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=5, max_clients=100, clock=clock)
    for index in range(1000):
        clock.now += 0.001
        assert limiter.allow(f"10.0.{index // 256}.{index % 256}")
    assert len(limiter) <= 100


def test_eviction_drops_idle_clients_and_keeps_a_busy_one_limited() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=10, clock=clock)
    for index in range(9):
        limiter.allow(f"idle-{index}")
    clock.now += 10  # the idle buckets are full again: nothing is lost by forgetting them
    assert limiter.allow("busy") and limiter.allow("busy")
    assert len(limiter) == 10
    assert limiter.allow("newcomer")  # table full: evicts the idle ones
    assert len(limiter) == 2
    assert not limiter.allow("busy")  # still empty, not forgotten


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=1)
