"""Token, cost and call accounting for the LLM client, as Prometheus collectors.

:class:`LlmMetrics` is itself a collector: the gateway adds it to its own registry with
``registry.register(llm_metrics)`` (or passes ``registry=`` when building it), so the LLM
series appear on ``/metrics`` beside the gateway's. Label values come from fixed sets
(tier, outcome, token kind, retry reason, format mode); model names, URLs and keys are
never labels. :class:`UsageLedger` keeps the same totals as plain numbers for reports.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from auto_review.llm.api import Tier, Usage

# Prices are per million tokens.
TOKENS_PER_PRICE_UNIT = 1_000_000

# LLM calls take from well under a second (cheap verdicts) to minutes (a long review).
REQUEST_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 180, 300, 600)


class Outcome(StrEnum):
    OK = "ok"
    HEALED = "healed"  # the first answer was invalid; the heal round fixed it
    INVALID = "invalid"  # still invalid after the heal round
    REFUSED = "refused"  # 400/401/403/404 and the like
    UNAVAILABLE = "unavailable"  # transport, timeout, 429 or 5xx outlasting the retries


class RetryReason(StrEnum):
    CONNECT = "connect"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million prompt (input) and completion (output) tokens."""

    prompt: float
    completion: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.prompt + usage.completion_tokens * self.completion
        ) / TOKENS_PER_PRICE_UNIT


def prices_by_tier(
    prices: Mapping[Tier, tuple[float, float] | None] | None,
) -> dict[Tier, Prices]:
    """Validated prices; a tier without a price costs nothing in the figures."""
    result: dict[Tier, Prices] = {}
    for tier, pair in (prices or {}).items():
        if pair is None:
            continue
        prompt, completion = pair
        if not (0 <= prompt < 1e6 and 0 <= completion < 1e6):  # also refuses nan
            raise ValueError(f"{tier.value} price must be two non-negative numbers")
        result[Tier(tier)] = Prices(float(prompt), float(completion))
    return result


@dataclass(frozen=True, slots=True)
class TierTotals:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageLedger:
    """Running totals per tier, readable without Prometheus (CLI reports, bench)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[Tier, TierTotals] = {}

    def add(self, tier: Tier, usage: Usage, cost: float, *, calls: int = 0) -> None:
        with self._lock:
            old = self._totals.get(tier, TierTotals(0, 0, 0, 0.0))
            self._totals[tier] = TierTotals(
                old.calls + calls,
                old.prompt_tokens + usage.prompt_tokens,
                old.completion_tokens + usage.completion_tokens,
                old.cost_usd + cost,
            )

    def snapshot(self) -> dict[Tier, TierTotals]:
        with self._lock:
            return dict(self._totals)


class LlmMetrics(Collector):
    """The LLM client's Prometheus series, collected through this one object."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.calls_total = Counter(
            "auto_review_llm_requests",
            "LLM calls (complete_json, complete_text) by tier and outcome.",
            ["tier", "outcome"],
            registry=None,
        )
        self.tokens_total = Counter(
            "auto_review_llm_tokens",
            "Tokens the server reported, by tier and kind (prompt, completion); every "
            "round counts, heal rounds and rejected answers included.",
            ["tier", "kind"],
            registry=None,
        )
        self.cost_total = Counter(
            "auto_review_llm_cost_usd",
            "Estimated cost in USD from the configured per-tier prices (0 when unpriced).",
            ["tier"],
            registry=None,
        )
        self.retries_total = Counter(
            "auto_review_llm_retries",
            "HTTP attempts that were retried, by tier and reason.",
            ["tier", "reason"],
            registry=None,
        )
        self.format_fallbacks_total = Counter(
            "auto_review_llm_format_fallbacks",
            "Times the server refused a response_format and the client stepped down, by the "
            "mode it stepped down to.",
            ["to_mode"],
            registry=None,
        )
        self.request_seconds = Histogram(
            "auto_review_llm_request_seconds",
            "Wall time of one LLM call, retries and heal round included.",
            ["tier"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=None,
        )
        self._parts: tuple[MetricWrapperBase, ...] = (
            self.calls_total,
            self.tokens_total,
            self.cost_total,
            self.retries_total,
            self.format_fallbacks_total,
            self.request_seconds,
        )
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        for part in self._parts:
            yield from part.collect()

    def describe(self) -> Iterable[Metric]:
        for part in self._parts:
            yield from part.describe()

    # -- recording -------------------------------------------------------------------------

    def count_call(self, tier: Tier, outcome: Outcome, seconds: float) -> None:
        self.calls_total.labels(tier=tier.value, outcome=outcome.value).inc()
        self.request_seconds.labels(tier=tier.value).observe(seconds)

    def count_usage(self, tier: Tier, usage: Usage, cost: float) -> None:
        self.tokens_total.labels(tier=tier.value, kind="prompt").inc(usage.prompt_tokens)
        self.tokens_total.labels(tier=tier.value, kind="completion").inc(usage.completion_tokens)
        self.cost_total.labels(tier=tier.value).inc(cost)

    def count_retry(self, tier: Tier, reason: RetryReason) -> None:
        self.retries_total.labels(tier=tier.value, reason=reason.value).inc()

    def count_fallback(self, to_mode: str) -> None:
        self.format_fallbacks_total.labels(to_mode=to_mode).inc()


def add_usage(first: Usage, second: Usage) -> Usage:
    return Usage(
        first.prompt_tokens + second.prompt_tokens,
        first.completion_tokens + second.completion_tokens,
    )
