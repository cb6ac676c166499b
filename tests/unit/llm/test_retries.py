"""Retries and error mapping: 429 with Retry-After, 5xx, timeouts, dropped and refused
connections, 4xx without retry, and the vLLM and Ollama error shapes."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.fake_llm import (
    Answer,
    FakeLlm,
    check_recorded_traffic,
    dropped,
    error_reply,
    json_reply,
    rate_limited,
    raw_reply,
    server_error,
    slow,
    text_reply,
)
from tests.support.ports import closed_port
from tests.unit.llm.helpers import (
    CHEAP_MODEL,
    GOOD,
    MESSAGES,
    REASONING_MODEL,
    RecordedSleep,
    ask_json,
    make_client,
    run,
)

from auto_review.llm.api import LlmRefused, LlmUnavailable, Tier
from auto_review.llm.client import OpenAICompatibleClient


def test_429_waits_as_retry_after_asks(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [rate_limited(retry_after="7"), json_reply(GOOD)])
    sleep = RecordedSleep()
    assert ask_json(make_client(fake, sleep=sleep)).data == GOOD
    assert sleep.waits == [7.0]
    assert len(fake.chat_requests()) == 2
    check_recorded_traffic(fake)


def test_retry_after_ms_wins_over_retry_after(fake: FakeLlm) -> None:
    fake.script(
        CHEAP_MODEL, [rate_limited(retry_after="30", retry_after_ms="250"), json_reply(GOOD)]
    )
    sleep = RecordedSleep()
    ask_json(make_client(fake, sleep=sleep))
    assert sleep.waits == [0.25]


def test_http_date_retry_after(fake: FakeLlm) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 20))
    fake.script(CHEAP_MODEL, [rate_limited(retry_after=when), json_reply(GOOD)])
    sleep = RecordedSleep()
    ask_json(make_client(fake, sleep=sleep))
    assert 15 <= sleep.waits[0] <= 21


def test_retry_after_beyond_the_cap_fails_at_once(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [rate_limited(retry_after="3600"), json_reply(GOOD)])
    sleep = RecordedSleep()
    with pytest.raises(LlmUnavailable, match="asks to wait 3600 s, more than the 60 s"):
        ask_json(make_client(fake, sleep=sleep))
    assert sleep.waits == []
    assert len(fake.chat_requests()) == 1


def test_bare_429_backs_off_exponentially_then_gives_up(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [rate_limited() for _ in range(4)])
    sleep = RecordedSleep()
    with pytest.raises(
        LlmUnavailable, match=r"cheap tier: HTTP 429 \(rate limited\) after 4 attempts"
    ):
        ask_json(make_client(fake, sleep=sleep, max_retries=3))
    assert len(sleep.waits) == 3
    assert 0.375 <= sleep.waits[0] <= 0.5
    assert 0.75 <= sleep.waits[1] <= 1.0
    assert 1.5 <= sleep.waits[2] <= 2.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried(fake: FakeLlm, status: int) -> None:
    fake.script(CHEAP_MODEL, [server_error(status), json_reply(GOOD)])
    assert ask_json(make_client(fake)).data == GOOD
    assert len(fake.chat_requests()) == 2


def test_5xx_outlasting_the_retries_is_unavailable(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [server_error(503)] * 3)
    with pytest.raises(LlmUnavailable, match="HTTP 503 after 3 attempts"):
        ask_json(make_client(fake, max_retries=2))
    assert len(fake.chat_requests()) == 3


def test_zero_retries_means_one_attempt(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [server_error(500), json_reply(GOOD)])
    with pytest.raises(LlmUnavailable, match=r"after 1 attempt$"):
        ask_json(make_client(fake, max_retries=0))
    assert len(fake.chat_requests()) == 1


def test_slow_server_times_out_and_the_retry_succeeds(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [slow(json_reply(GOOD), 2.0), json_reply(GOOD)])
    started = time.monotonic()
    answer = ask_json(make_client(fake, timeout=0.4))
    assert answer.data == GOOD
    assert time.monotonic() - started < 1.9  # the first answer was not waited for
    assert len(fake.chat_requests()) == 2


def test_timeouts_outlasting_the_retries_are_unavailable(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [slow(json_reply(GOOD), 1.5)] * 2)
    with pytest.raises(LlmUnavailable, match=r"cheap tier: .*after 2 attempts"):
        ask_json(make_client(fake, timeout=0.3, max_retries=1))


def test_dropped_connection_is_retried(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [dropped(), json_reply(GOOD)])
    assert ask_json(make_client(fake)).data == GOOD
    assert len(fake.chat_requests()) == 2


def test_refused_connection_is_unavailable() -> None:
    client = OpenAICompatibleClient(
        f"http://127.0.0.1:{closed_port()}/v1",
        None,
        {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: CHEAP_MODEL},
        max_retries=1,
        sleep=RecordedSleep(),
    )
    with pytest.raises(LlmUnavailable, match=r"connection failed \(ConnectError\) after 2"):
        run(client, lambda c: c.complete_text(Tier.CHEAP, MESSAGES))


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (400, "request refused"),
        (401, "credentials refused"),
        (403, "credentials refused"),
        (404, "check the LLM base URL and the model name"),
        (422, "request refused"),
    ],
)
def test_client_errors_are_refused_without_retry(fake: FakeLlm, status: int, words: str) -> None:
    fake.script(CHEAP_MODEL, [error_reply(status, "nope"), json_reply(GOOD)])
    sleep = RecordedSleep()
    with pytest.raises(LlmRefused, match=words) as caught:
        ask_json(make_client(fake, sleep=sleep))
    assert f"HTTP {status}" in str(caught.value)
    assert "nope" not in str(caught.value)  # the server's text is matched, never shown
    assert sleep.waits == []
    assert len(fake.chat_requests()) == 1


@pytest.mark.parametrize("flat", [False, True])
def test_vllm_integer_error_codes_are_read(fake: FakeLlm, flat: bool) -> None:
    refusal = error_reply(
        400,
        "This model's maximum context length is 4096 tokens.",
        error_type="BadRequestError",
        vllm_code=True,
        flat=flat,
    )
    fake.script(CHEAP_MODEL, [refusal])
    with pytest.raises(LlmRefused, match="exceeds the model's context length"):
        ask_json(make_client(fake))


def test_vllm_abort_finish_is_retried_as_a_server_failure(fake: FakeLlm) -> None:
    fake.script(
        CHEAP_MODEL,
        [text_reply("", shape="vllm", finish_reason="abort"), json_reply(GOOD, shape="vllm")],
    )
    assert ask_json(make_client(fake)).data == GOOD
    assert len(fake.chat_requests()) == 2


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad gateway</html>", b'{"choices": []}', b"[1, 2]", b'{"choices": [{"x": 1}]}'],
)
def test_a_200_that_is_no_chat_completion_is_retried(fake: FakeLlm, body: bytes) -> None:
    fake.script(CHEAP_MODEL, [raw_reply(200, body), json_reply(GOOD)])
    assert ask_json(make_client(fake)).data == GOOD


def test_a_200_that_is_never_a_chat_completion_is_unavailable(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [raw_reply(200, b"<html>portal</html>", "text/html")] * 3)
    with pytest.raises(LlmUnavailable, match="malformed response"):
        ask_json(make_client(fake))


def test_oversized_response_is_not_accepted(fake: FakeLlm) -> None:
    # A valid chat completion, but beyond the 16 MiB cap: dropped and asked again.
    other = {"supported": False, "reason": "from the oversized answer"}
    oversized = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": CHEAP_MODEL,
        "padding": "x" * (17 * 1024 * 1024),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps(other)},
                "finish_reason": "stop",
            }
        ],
    }
    fake.script(CHEAP_MODEL, [raw_reply(200, json.dumps(oversized).encode()), json_reply(GOOD)])
    assert ask_json(make_client(fake)).data == GOOD
    assert len(fake.chat_requests()) == 2


def test_undecodable_body_is_retried(fake: FakeLlm) -> None:
    broken = Answer(200, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    fake.script(CHEAP_MODEL, [broken, json_reply(GOOD)])
    assert ask_json(make_client(fake)).data == GOOD
    assert len(fake.chat_requests()) == 2


def test_ping_lists_models(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [])
    run(make_client(fake), lambda c: c.ping())
    [request] = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")


def test_ping_refused_key_and_unreachable_server(fake: FakeLlm) -> None:
    fake.api_key = "the-right-key"
    with pytest.raises(LlmRefused, match="ping: HTTP 401"):
        run(make_client(fake, api_key="a-wrong-key"), lambda c: c.ping())
    client = OpenAICompatibleClient(
        f"http://127.0.0.1:{closed_port()}/v1",
        None,
        {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: CHEAP_MODEL},
        max_retries=0,
    )
    with pytest.raises(LlmUnavailable, match="ping: connection failed"):
        run(client, lambda c: c.ping())


def test_complete_text_returns_the_answer(fake: FakeLlm) -> None:
    fake.script(REASONING_MODEL, [text_reply("The change looks fine.", usage=(50, 6))])
    answer = run(make_client(fake), lambda c: c.complete_text(Tier.REASONING, MESSAGES))
    assert answer.text == "The change looks fine."
    assert (answer.model, answer.usage.completion_tokens) == (REASONING_MODEL, 6)
    assert "response_format" not in fake.chat_requests()[0].json
    check_recorded_traffic(fake)


def test_base_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain credentials"):
        OpenAICompatibleClient(
            "http://user:pw@127.0.0.1:1/v1",
            None,
            {Tier.REASONING: REASONING_MODEL, Tier.CHEAP: CHEAP_MODEL},
        )
    with pytest.raises(ValueError, match="no model configured for the cheap tier"):
        OpenAICompatibleClient("http://127.0.0.1:1/v1", None, {Tier.REASONING: "m"})
