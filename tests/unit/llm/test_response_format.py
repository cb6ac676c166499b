"""The response_format ladder: json_schema -> json_object -> prompt in auto mode, remembered
per model; fixed modes never step down."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.support.fake_llm import (
    Answer,
    FakeLlm,
    RecordedRequest,
    check_recorded_traffic,
    error_reply,
    json_reply,
    refuse_json_schema,
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

from auto_review.llm.accounting import LlmMetrics
from auto_review.llm.api import LlmRefused, Tier
from auto_review.llm.response_format import FormatMode, refuses_response_format


def two_calls(client, tier: Tier = Tier.CHEAP):
    async def go(c):
        first = await c.complete_json(tier, MESSAGES, schema=SCHEMA, schema_name="verdict")
        second = await c.complete_json(tier, MESSAGES, schema=SCHEMA, schema_name="verdict")
        return first, second

    return run(client, go)


def test_auto_steps_down_to_json_object_and_remembers(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [refuse_json_schema(), json_reply(GOOD), json_reply(GOOD)])
    client = make_client(fake)
    first, second = two_calls(client)
    assert first.data == second.data == GOOD
    assert [r.response_format_type for r in fake.chat_requests()] == [
        "json_schema",
        "json_object",
        "json_object",  # remembered: the refused mode is not tried again
    ]
    assert client.format_mode(Tier.CHEAP) is FormatMode.JSON_OBJECT
    # json_object needs the word JSON in the messages; the schema instruction carries it.
    assert "JSON" in fake.chat_requests()[1].system_text
    check_recorded_traffic(fake)


def test_auto_steps_down_to_prompt_only(fake: FakeLlm) -> None:
    no_json_mode = error_reply(400, "response_format json_object is not supported")
    fake.script(CHEAP_MODEL, [refuse_json_schema(), no_json_mode, json_reply(GOOD)])
    client = make_client(fake)
    answer = run(
        client,
        lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="verdict"),
    )
    assert answer.data == GOOD
    requests = fake.chat_requests()
    assert [r.response_format_type for r in requests] == ["json_schema", "json_object", None]
    assert '"supported"' in requests[2].system_text  # the schema is in the system message
    assert client.format_mode(Tier.CHEAP) is FormatMode.PROMPT
    check_recorded_traffic(fake)


def test_fallback_is_per_model(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [refuse_json_schema(), json_reply(GOOD)])
    fake.script(REASONING_MODEL, [json_reply(GOOD)])

    async def go(c):
        await c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v")
        await c.complete_json(Tier.REASONING, MESSAGES, schema=SCHEMA, schema_name="v")

    client = make_client(fake)
    run(client, go)
    assert client.format_mode(Tier.REASONING) is FormatMode.JSON_SCHEMA
    assert fake.chat_requests(REASONING_MODEL)[0].response_format_type == "json_schema"


def test_prompt_mode_refused_for_format_words_is_final(fake: FakeLlm) -> None:
    fake.script(
        CHEAP_MODEL,
        [refuse_json_schema(), error_reply(400, "json_object unsupported"), refuse_json_schema()],
    )
    with pytest.raises(LlmRefused, match="HTTP 400"):
        run(
            make_client(fake),
            lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"),
        )
    assert len(fake.chat_requests()) == 3  # three rungs, no loop


def test_other_400s_do_not_step_down(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [error_reply(400, "This model's maximum context length is 8192")])
    client = make_client(fake)
    with pytest.raises(LlmRefused, match="context length"):
        run(
            client,
            lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"),
        )
    assert client.format_mode(Tier.CHEAP) is FormatMode.JSON_SCHEMA
    assert len(fake.chat_requests()) == 1


def test_fixed_json_schema_mode_refuses_with_a_hint(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [refuse_json_schema()])
    with pytest.raises(LlmRefused, match="AR_LLM_RESPONSE_FORMAT=auto"):
        run(
            make_client(fake, response_format_mode="json_schema"),
            lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"),
        )
    assert len(fake.chat_requests()) == 1


@pytest.mark.parametrize(
    ("mode", "sent"),
    [("json_object", "json_object"), ("prompt", None), ("json_schema", "json_schema")],
)
def test_fixed_modes_send_their_format(fake: FakeLlm, mode: str, sent: str | None) -> None:
    fake.script(CHEAP_MODEL, [json_reply(GOOD)])
    run(
        make_client(fake, response_format_mode=mode),
        lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"),
    )
    assert fake.chat_requests()[0].response_format_type == sent
    check_recorded_traffic(fake)


def test_unknown_mode_is_refused_at_construction(fake: FakeLlm) -> None:
    with pytest.raises(ValueError, match="auto, json_schema, json_object, prompt"):
        make_client(fake, response_format_mode="grammar")


@pytest.mark.parametrize(
    ("status", "text", "param", "expected"),
    [
        (400, "Invalid parameter: 'response_format' ...", None, True),
        (400, "bad", "response_format", True),
        (400, "json_schema is not supported", None, True),
        (422, "Structured outputs are not available", None, True),
        (400, "messages must not be empty", None, False),
        (500, "response_format broke us", None, False),
        (401, "response_format", None, False),
    ],
)
def test_format_refusal_detection(
    status: int, text: str, param: str | None, expected: bool
) -> None:
    assert refuses_response_format(status, text, param) is expected


def test_concurrent_refusals_step_down_one_rung(fake: FakeLlm) -> None:
    registry = CollectorRegistry()
    both_in_flight = threading.Barrier(2, timeout=5)

    def responder(request: RecordedRequest) -> Answer:
        if request.response_format_type == "json_schema":
            both_in_flight.wait()  # both calls see the refusal before either steps down
            return refuse_json_schema()
        return json_reply(GOOD)

    fake.respond(responder)
    client = make_client(fake, metrics=LlmMetrics(registry))

    async def go(c):
        calls = [
            c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v") for _ in (1, 2)
        ]
        return await asyncio.gather(*calls)

    answers = run(client, go)
    assert [a.data for a in answers] == [GOOD, GOOD]
    assert client.format_mode(Tier.CHEAP) is FormatMode.JSON_OBJECT  # not PROMPT
    assert sorted(str(r.response_format_type) for r in fake.chat_requests()) == [
        "json_object",
        "json_object",
        "json_schema",
        "json_schema",
    ]
    text = generate_latest(registry).decode()
    assert sample_value(text, "auto_review_llm_format_fallbacks_total", to_mode="json_object") == 1
