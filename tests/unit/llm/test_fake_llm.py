"""The loopback LLM server itself: its OpenAI-shaped replies conform to the reference
description, its Ollama and vLLM shapes differ from it exactly where SOURCES.md says, the
conformance check catches a bad request, and the responder API serves a pipeline-like
sequence (a reasoning call, then cheap verification calls)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.support.fake_llm import (
    ANY_MODEL,
    Answer,
    FakeLlm,
    RecordedRequest,
    check_recorded_traffic,
    json_reply,
    spec_problems,
    text_reply,
)
from tests.unit.llm.helpers import CHEAP_MODEL, GOOD, REASONING_MODEL, SCHEMA, make_client, run

from auto_review.config import load_settings
from auto_review.llm.api import ChatMessage, Role, Tier
from auto_review.llm.response_format import FormatMode
from auto_review.wiring.clients import language_model


def served(shape: str, **options: Any) -> dict[str, Any]:
    with FakeLlm() as fake:
        fake.script(CHEAP_MODEL, [json_reply(GOOD, shape=shape, **options)])
        body = {"model": CHEAP_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{fake.url}/chat/completions", json=body, timeout=5)
        assert reply.status_code == 200
        assert reply.json() == fake.response_body(fake.requests[0])
        return dict(reply.json())


def test_openai_shaped_replies_conform() -> None:
    for options in ({}, {"usage": None}, {"finish_reason": "length"}):
        assert spec_problems("CreateChatCompletionResponse", served("openai", **options)) == []


def test_ollama_shape_lacks_refusal_and_logprobs() -> None:
    problems = spec_problems("CreateChatCompletionResponse", served("ollama"))
    assert any("'refusal' is a required property" in p for p in problems)
    assert any("'logprobs' is a required property" in p for p in problems)


def test_vllm_shape_has_nulls_the_spec_refuses() -> None:
    body = served("vllm")
    assert body["choices"][0]["message"]["tool_calls"] == []
    assert "stop_reason" in body["choices"][0]
    problems = spec_problems("CreateChatCompletionResponse", body)
    assert any("annotations" in p and "None is not of type 'array'" in p for p in problems)


def test_request_check_catches_a_bad_body() -> None:
    with FakeLlm() as fake:
        fake.script(ANY_MODEL, [text_reply("x"), text_reply("y")])
        httpx.post(
            f"{fake.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "ok"}]},
            timeout=5,
        )
        assert check_recorded_traffic(fake) == 2
        httpx.post(f"{fake.url}/chat/completions", json={"model": "m", "messages": []}, timeout=5)
        with pytest.raises(AssertionError, match="request 2: messages"):
            check_recorded_traffic(fake)


def test_unscripted_request_is_a_loud_400() -> None:
    with FakeLlm() as fake:
        body = {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{fake.url}/chat/completions", json=body, timeout=5)
    assert reply.status_code == 400
    assert "nothing scripted for model 'nobody'" in reply.json()["error"]["message"]


def test_models_list_conforms() -> None:
    with FakeLlm(models=["a"]) as fake:
        fake.script("b", [])
        listing = httpx.get(f"{fake.url}/models", timeout=5).json()
    assert [m["id"] for m in listing["data"]] == ["a", "b"]
    assert spec_problems("ListModelsResponse", listing) == []


def test_responder_serves_a_review_then_verifications() -> None:
    """The shape of the pipeline's traffic: one reasoning call, one cheap call per finding."""
    findings = {"summary": "two issues", "findings": ["sql", "path"]}

    def responder(request: RecordedRequest) -> Answer:
        if request.model == REASONING_MODEL:
            return json_reply(findings)
        supported = "sql" in request.last_user_text
        return json_reply({"supported": supported, "reason": "checked the line"})

    review_schema = {
        "type": "object",
        "required": ["summary", "findings"],
        "properties": {"summary": {"type": "string"}, "findings": {"type": "array"}},
    }
    with FakeLlm() as fake:
        fake.respond(responder)
        client = make_client(fake)

        async def go(c) -> list[bool]:
            review = await c.complete_json(
                Tier.REASONING,
                [ChatMessage(Role.USER, "review this diff")],
                schema=review_schema,
                schema_name="review",
            )
            verdicts = []
            for finding in review.data["findings"]:
                answer = await c.complete_json(
                    Tier.CHEAP,
                    [ChatMessage(Role.USER, f"verify: {finding}")],
                    schema=SCHEMA,
                    schema_name="verdict",
                )
                verdicts.append(answer.data["supported"])
            return verdicts

        assert run(client, go) == [True, False]
        assert [r.model for r in fake.chat_requests()] == [
            REASONING_MODEL,
            CHEAP_MODEL,
            CHEAP_MODEL,
        ]
        assert check_recorded_traffic(fake) == 6


def test_client_from_settings_wires_url_key_models_format_and_prices() -> None:
    with FakeLlm(api_key="from-settings-key") as fake:
        fake.script(REASONING_MODEL, [json_reply(GOOD)])
        settings = load_settings(
            {},
            {
                "AR_LLM_BASE_URL": fake.url,
                "AR_LLM_API_KEY": "from-settings-key",
                "AR_LLM_REASONING_MODEL": REASONING_MODEL,
                "AR_LLM_RESPONSE_FORMAT": "json_object",
                "AR_LLM_TIMEOUT_SECONDS": "12.5",
                "AR_LLM_MAX_RETRIES": "4",
                "AR_LLM_REASONING_PRICE": "1/2",
            },
        )
        client = language_model(settings)
        assert client.models == {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: REASONING_MODEL}
        assert client.format_mode(Tier.CHEAP) is FormatMode.JSON_OBJECT
        answer = run(
            client,
            lambda c: c.complete_json(Tier.REASONING, [], schema=SCHEMA, schema_name="v"),
        )
        assert answer.data == GOOD
        assert client.ledger.snapshot()[Tier.REASONING].cost_usd == pytest.approx(
            (120 * 1 + 30 * 2) / 1e6
        )
        request = fake.chat_requests()[0]
        assert request.headers["authorization"] == "Bearer from-settings-key"
        assert json.loads(request.body)["response_format"] == {"type": "json_object"}


def test_client_from_settings_needs_url_and_model() -> None:
    with pytest.raises(ValueError, match="AR_LLM_BASE_URL"):
        language_model(load_settings({}, {}))
    with pytest.raises(ValueError, match="AR_LLM_REASONING_MODEL"):
        language_model(load_settings({}, {"AR_LLM_BASE_URL": "http://127.0.0.1:1/v1"}))
