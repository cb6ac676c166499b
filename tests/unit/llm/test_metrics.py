"""Token, cost and outcome accounting, read back from a Prometheus exposition the way the
gateway's /metrics renders it (the collector added to another registry)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.support.fake_llm import (
    FakeLlm,
    check_recorded_traffic,
    error_reply,
    json_reply,
    rate_limited,
    refuse_json_schema,
    server_error,
    text_reply,
)
from tests.support.prometheus_text import sample_value
from tests.unit.llm.helpers import (
    CHEAP_MODEL,
    GOOD,
    MESSAGES,
    REASONING_MODEL,
    SCHEMA,
    make_client,
    run,
)

from auto_review.gateway.metrics import GatewayMetrics
from auto_review.llm.accounting import LlmMetrics, Prices, prices_by_tier
from auto_review.llm.api import LlmInvalidAnswer, LlmRefused, LlmUnavailable, Tier, Usage

PRICES = {Tier.REASONING: (3.0, 15.0), Tier.CHEAP: (0.15, 0.60)}


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_tokens_cost_outcomes_and_seconds_per_tier() -> None:
    registry = CollectorRegistry()
    with FakeLlm() as fake:
        fake.script(
            REASONING_MODEL,
            [json_reply(GOOD, usage=(10_000, 2_000))],
        )
        fake.script(
            CHEAP_MODEL,
            [
                text_reply("{broken", usage=(1_000, 100)),  # healed below
                json_reply(GOOD, usage=(1_200, 50)),
                json_reply({"supported": 1}, usage=(900, 20)),  # invalid twice
                json_reply({"supported": 2}, usage=(950, 20)),
            ],
        )
        client = make_client(fake, metrics=LlmMetrics(registry), prices=PRICES)

        async def go(c):
            await c.complete_json(Tier.REASONING, MESSAGES, schema=SCHEMA, schema_name="v")
            await c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v")
            with pytest.raises(LlmInvalidAnswer):
                await c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v")

        run(client, go)
        check_recorded_traffic(fake)
    text = exposition(registry)
    requests = "auto_review_llm_requests_total"
    assert sample_value(text, requests, tier="reasoning", outcome="ok") == 1
    assert sample_value(text, requests, tier="cheap", outcome="healed") == 1
    assert sample_value(text, requests, tier="cheap", outcome="invalid") == 1
    tokens = "auto_review_llm_tokens_total"
    assert sample_value(text, tokens, tier="reasoning", kind="prompt") == 10_000
    assert sample_value(text, tokens, tier="reasoning", kind="completion") == 2_000
    # Every round counts: heal rounds and rejected answers are paid for.
    assert sample_value(text, tokens, tier="cheap", kind="prompt") == 1_000 + 1_200 + 900 + 950
    assert sample_value(text, tokens, tier="cheap", kind="completion") == 100 + 50 + 20 + 20
    cost = "auto_review_llm_cost_usd_total"
    assert sample_value(text, cost, tier="reasoning") == pytest.approx(0.03 + 0.03)
    assert sample_value(text, cost, tier="cheap") == pytest.approx(
        (4_050 * 0.15 + 190 * 0.60) / 1e6
    )
    seconds = "auto_review_llm_request_seconds_count"
    assert sample_value(text, seconds, tier="cheap") == 2
    assert sample_value(text, seconds, tier="reasoning") == 1
    totals = client.ledger.snapshot()
    assert totals[Tier.CHEAP].calls == 2
    assert totals[Tier.CHEAP].prompt_tokens == 4_050
    assert totals[Tier.REASONING].cost_usd == pytest.approx(0.06)


def test_refused_unavailable_retries_and_fallbacks_are_counted() -> None:
    registry = CollectorRegistry()
    with FakeLlm() as fake:
        fake.script(CHEAP_MODEL, [error_reply(401, "no"), rate_limited(), server_error(503)])
        fake.script(REASONING_MODEL, [refuse_json_schema(), json_reply(GOOD)])
        client = make_client(fake, metrics=LlmMetrics(registry), max_retries=1)

        async def go(c):
            with pytest.raises(LlmRefused):
                await c.complete_text(Tier.CHEAP, MESSAGES)
            with pytest.raises(LlmUnavailable):
                await c.complete_text(Tier.CHEAP, MESSAGES)
            await c.complete_json(Tier.REASONING, MESSAGES, schema=SCHEMA, schema_name="v")

        run(client, go)
        check_recorded_traffic(fake)
    text = exposition(registry)
    requests = "auto_review_llm_requests_total"
    assert sample_value(text, requests, tier="cheap", outcome="refused") == 1
    assert sample_value(text, requests, tier="cheap", outcome="unavailable") == 1
    assert sample_value(text, requests, tier="reasoning", outcome="ok") == 1
    retries = "auto_review_llm_retries_total"
    assert sample_value(text, retries, tier="cheap", reason="rate_limited") == 1
    fallbacks = "auto_review_llm_format_fallbacks_total"
    assert sample_value(text, fallbacks, to_mode="json_object") == 1
    # Unpriced tiers cost nothing rather than a guess.
    assert sample_value(text, "auto_review_llm_cost_usd_total", tier="reasoning") == 0


def test_collector_joins_the_gateway_registry() -> None:
    gateway = GatewayMetrics()
    llm_metrics = LlmMetrics()
    gateway.registry.register(llm_metrics)
    with FakeLlm() as fake:
        fake.script(CHEAP_MODEL, [json_reply(GOOD, usage=(7, 3))])
        client = make_client(fake, metrics=llm_metrics)
        run(client, lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"))
    text = gateway.render().decode()
    assert sample_value(text, "auto_review_llm_tokens_total", tier="cheap", kind="prompt") == 7
    assert "auto_review_queue_depth" in text  # the gateway's own series are still there
    # Two LLM collectors in one registry would clash by name: the registry refuses it.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        gateway.registry.register(LlmMetrics())


def test_label_values_are_fixed_words_only() -> None:
    registry = CollectorRegistry()
    with FakeLlm() as fake:
        fake.script(CHEAP_MODEL, [json_reply(GOOD)])
        client = make_client(fake, metrics=LlmMetrics(registry), prices=PRICES)
        run(client, lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"))
    text = exposition(registry)
    assert CHEAP_MODEL not in text and "127.0.0.1" not in text


def test_prices() -> None:
    assert Prices(2.0, 8.0).cost(Usage(1_000_000, 500_000)) == pytest.approx(6.0)
    assert prices_by_tier({Tier.CHEAP: None}) == {}
    with pytest.raises(ValueError, match="cheap price"):
        prices_by_tier({Tier.CHEAP: (-1.0, 1.0)})
    with pytest.raises(ValueError, match="reasoning price"):
        prices_by_tier({Tier.REASONING: (float("nan"), 1.0)})
