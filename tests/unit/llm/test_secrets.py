"""The API key never leaves the Authorization header: a canary key is looked for in every
text a failure leaves behind (exception str/repr and its chain's traceback, every log
record at DEBUG, the metrics exposition, the client's repr)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.support.failure_texts import failure_texts
from tests.support.fake_llm import (
    Answer,
    FakeLlm,
    check_recorded_traffic,
    dropped,
    error_reply,
    json_reply,
    rate_limited,
    raw_reply,
    refuse_json_schema,
    slow,
    text_reply,
)
from tests.support.ports import closed_port
from tests.unit.llm.helpers import (
    CANARY_KEY,
    CHEAP_MODEL,
    MESSAGES,
    REASONING_MODEL,
    SCHEMA,
    make_client,
    run,
)

from auto_review.llm.accounting import LlmMetrics
from auto_review.llm.api import LlmError, Tier
from auto_review.llm.client import OpenAICompatibleClient

ECHO = f"Incorrect API key provided: Bearer {CANARY_KEY}"

FAILURES: dict[str, list[Answer]] = {
    "401 echoing the key": [error_reply(401, ECHO, code="invalid_api_key")],
    "403 echoing the key": [error_reply(403, ECHO)],
    "404 echoing the key": [error_reply(404, ECHO, error_type="not_found_error")],
    "400 echoing the key": [error_reply(400, ECHO)],
    "vLLM flat 400 echoing the key": [error_reply(400, ECHO, flat=True)],
    "429 exhausted": [rate_limited(retry_after="1")] * 3,
    "429 asking too long": [rate_limited(retry_after="86400")],
    "5xx exhausted": [error_reply(502, ECHO, error_type="api_error")] * 3,
    "timeouts": [slow(json_reply({}), 1.0)] * 3,
    "dropped connections": [dropped()] * 3,
    "malformed 200 echoing the key": [raw_reply(200, ECHO.encode())] * 3,
    "format refused everywhere": [
        refuse_json_schema(),
        error_reply(400, "json_object: " + ECHO),
        refuse_json_schema(),
    ],
    "invalid answers echoing the key": [text_reply(ECHO), text_reply(f'{{"k": "{CANARY_KEY}"}}')],
}


def exposed_texts(
    exc: BaseException,
    caplog: pytest.LogCaptureFixture,
    client: OpenAICompatibleClient,
    registry: CollectorRegistry,
) -> list[str]:
    return [
        *failure_texts(exc, caplog),
        "".join(traceback.format_exception(exc)),
        repr(exc.__context__),
        repr(exc.__cause__),
        repr(client),
        generate_latest(registry).decode(),
    ]


def fail_with(
    fake: FakeLlm,
    caplog: pytest.LogCaptureFixture,
    call: Callable[[OpenAICompatibleClient], Awaitable[object]],
) -> list[str]:
    registry = CollectorRegistry()
    client = make_client(fake, metrics=LlmMetrics(registry), timeout=0.3)
    with caplog.at_level(logging.DEBUG), pytest.raises(LlmError) as caught:
        run(client, call)
    return exposed_texts(caught.value, caplog, client, registry)


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_json_call_failures_never_show_the_key(case: str, caplog: pytest.LogCaptureFixture) -> None:
    with FakeLlm() as fake:
        fake.script(CHEAP_MODEL, FAILURES[case])
        texts = fail_with(
            fake,
            caplog,
            lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"),
        )
        assert fake.chat_requests(), "the failure path was not exercised"
        # The key did travel, in the header only.
        assert fake.chat_requests()[0].headers["authorization"] == f"Bearer {CANARY_KEY}"
        check_recorded_traffic(fake)
    for text in texts:
        assert CANARY_KEY not in text


@pytest.mark.parametrize("case", ["401 echoing the key", "5xx exhausted", "timeouts"])
def test_text_call_failures_never_show_the_key(case: str, caplog: pytest.LogCaptureFixture) -> None:
    with FakeLlm() as fake:
        fake.script(REASONING_MODEL, FAILURES[case])
        texts = fail_with(fake, caplog, lambda c: c.complete_text(Tier.REASONING, MESSAGES))
    for text in texts:
        assert CANARY_KEY not in text


def test_ping_with_a_wrong_key_echoed_back_never_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeLlm(api_key="the-configured-one") as fake:
        texts = fail_with(fake, caplog, lambda c: c.ping())
    for text in texts:
        assert CANARY_KEY not in text


def test_unreachable_server_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    client = OpenAICompatibleClient(
        f"http://127.0.0.1:{closed_port()}/v1",
        CANARY_KEY,
        {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: CHEAP_MODEL},
        metrics=LlmMetrics(registry),
        max_retries=1,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(LlmError) as caught:
        run(client, lambda c: c.complete_json(Tier.CHEAP, MESSAGES, schema=SCHEMA, schema_name="v"))
    for text in exposed_texts(caught.value, caplog, client, registry):
        assert CANARY_KEY not in text


def test_client_repr_and_state_listing_hide_the_key() -> None:
    client = OpenAICompatibleClient(
        "http://127.0.0.1:1/v1", CANARY_KEY, {Tier.REASONING: "a", Tier.CHEAP: "b"}
    )
    assert CANARY_KEY not in repr(client)
    assert CANARY_KEY not in repr(vars(client))
    assert CANARY_KEY not in repr(vars(client._transport))
    assert CANARY_KEY not in str(client)
