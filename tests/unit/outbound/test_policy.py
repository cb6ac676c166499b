"""RetryPolicy: attempts, exponential backoff within its bounds, the jitter range."""

from __future__ import annotations

import random

import pytest

from auto_review.outbound.policy import MAX_ATTEMPTS, RetryPolicy


def pinned(value: str) -> RetryPolicy:
    """A policy whose random source always picks the low or the high end of the range."""

    def uniform(low: float, high: float) -> float:
        return low if value == "low" else high

    return RetryPolicy(initial_backoff=1.0, max_backoff=8.0, jitter=0.25, uniform=uniform)


def test_backoff_doubles_up_to_the_ceiling() -> None:
    high = pinned("high")
    assert [high.backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert high.backoff(10_000) == 8.0  # no overflow for a large retry number


def test_jitter_takes_at_most_its_share_off() -> None:
    low = pinned("low")
    assert [low.backoff(n) for n in range(1, 5)] == [0.75, 1.5, 3.0, 6.0]


def test_jitter_range_asked_of_the_random_source() -> None:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    RetryPolicy(jitter=0.5, uniform=uniform).backoff(1)
    RetryPolicy(jitter=0.0, uniform=uniform).backoff(1)
    assert asked == [(0.5, 1.0), (1.0, 1.0)]


def test_real_jitter_stays_in_range_and_varies() -> None:
    source = random.Random(7)
    policy = RetryPolicy(initial_backoff=2.0, max_backoff=2.0, jitter=0.5, uniform=source.uniform)
    samples = [policy.backoff(1) for _ in range(200)]
    assert all(1.0 <= s <= 2.0 for s in samples)
    assert max(samples) - min(samples) > 0.5  # it really spreads clients out


def test_zero_jitter_is_exact() -> None:
    assert RetryPolicy(initial_backoff=0.5, jitter=0.0).backoff(3) == 2.0


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"attempts": MAX_ATTEMPTS + 1},
        {"initial_backoff": -1.0},
        {"max_backoff": -0.1},
        {"max_retry_after": -5.0},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_invalid_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().backoff(0)


def test_one_attempt_is_allowed_and_defaults_are_bounded() -> None:
    assert RetryPolicy(attempts=1).attempts == 1
    default = RetryPolicy()
    assert (default.attempts, default.max_backoff, default.max_retry_after) == (4, 8.0, 60.0)
