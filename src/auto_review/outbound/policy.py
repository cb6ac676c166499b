"""How often and how patiently a call is repeated."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts every try, the first included (1: never repeat).

    Backoff before retry *n* is ``min(max_backoff, initial_backoff * 2**(n-1))`` with up to
    ``jitter`` of it taken off at random, so clients that failed together do not return
    together. A server that asks (Retry-After and its kin) for more than
    ``max_retry_after`` seconds is not waited for: the call fails at once.
    """

    attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.5
    # The random source, replaceable so tests can pin the jitter.
    uniform: Callable[[float, float], float] = field(
        default=random.uniform, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"RetryPolicy.attempts must be between 1 and {MAX_ATTEMPTS}")
        if min(self.initial_backoff, self.max_backoff, self.max_retry_after) < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (from 1), jitter applied."""
        if retry_number < 1:
            raise ValueError("retry numbers start at 1")
        exponent = min(retry_number - 1, 64)  # 2**64 * any delay is past max_backoff
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0**exponent)
        return ceiling * self.uniform(1.0 - self.jitter, 1.0)
