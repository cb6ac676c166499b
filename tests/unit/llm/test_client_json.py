"""complete_json against a loopback OpenAI-compatible server: answers, fences, self-heal,
truncation, refusals, and the Ollama and vLLM reply shapes."""

from __future__ import annotations

import json

import pytest
from tests.support.fake_llm import (
    FakeLlm,
    check_recorded_traffic,
    fenced_json_reply,
    json_reply,
    refusal_reply,
    text_reply,
    truncated_reply,
)
from tests.unit.llm.helpers import (
    CHEAP_MODEL,
    GOOD,
    MESSAGES,
    REASONING_MODEL,
    SCHEMA,
    ask_json,
    make_client,
    run,
)

from auto_review.llm.api import LlmInvalidAnswer, Tier, Usage


def test_valid_answer_is_returned_with_model_and_usage(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [json_reply(GOOD, usage=(321, 17))])
    answer = ask_json(make_client(fake))
    assert answer.data == GOOD
    assert answer.model == CHEAP_MODEL
    assert answer.usage == Usage(321, 17)
    assert answer.healed is False
    [request] = fake.chat_requests()
    body = request.json
    assert body["model"] == CHEAP_MODEL
    assert body["stream"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
    }
    assert check_recorded_traffic(fake) == 2


def test_schema_travels_in_the_single_leading_system_message(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [json_reply(GOOD)])
    ask_json(make_client(fake))
    messages = fake.chat_requests()[0].messages
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert system.startswith(MESSAGES[0].content)
    assert json.dumps(SCHEMA, sort_keys=True, separators=(",", ":")) in system
    assert messages[1]["content"] == MESSAGES[1].content


def test_tiers_use_their_own_models(fake: FakeLlm) -> None:
    fake.script(REASONING_MODEL, [json_reply(GOOD, model="served-name")])
    answer = ask_json(make_client(fake), Tier.REASONING)
    assert answer.model == "served-name"  # the name the server reports wins
    assert [r.model for r in fake.chat_requests()] == [REASONING_MODEL]


def test_fenced_json_is_accepted_without_heal(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [fenced_json_reply(GOOD)])
    answer = ask_json(make_client(fake))
    assert (answer.data, answer.healed) == (GOOD, False)
    assert len(fake.chat_requests()) == 1


def test_prose_around_a_fenced_block_is_tolerated(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [text_reply(f"Here you go:\n```json\n{json.dumps(GOOD)}\n```\nBye")])
    assert ask_json(make_client(fake)).data == GOOD


def test_malformed_json_is_healed_in_one_round(fake: FakeLlm) -> None:
    bad = '{"supported": true, "reason": "unterminated'
    fake.script(CHEAP_MODEL, [text_reply(bad, usage=(100, 10)), json_reply(GOOD, usage=(150, 12))])
    answer = ask_json(make_client(fake))
    assert answer.data == GOOD
    assert answer.healed is True
    assert answer.usage == Usage(250, 22)  # both rounds are paid for
    first, heal = fake.chat_requests()
    sent = heal.messages
    assert sent[: len(first.messages)] == first.messages
    assert sent[-2] == {"role": "assistant", "content": bad}
    assert sent[-1]["role"] == "user"
    assert "not valid JSON" in sent[-1]["content"]
    assert heal.json["response_format"] == first.json["response_format"]
    check_recorded_traffic(fake)


def test_schema_violation_is_healed_and_the_model_is_told_what_is_wrong(fake: FakeLlm) -> None:
    violation = {"supported": "yes", "reason": "x"}
    fake.script(CHEAP_MODEL, [json_reply(violation), json_reply(GOOD)])
    answer = ask_json(make_client(fake))
    assert answer.healed is True
    feedback = fake.chat_requests()[1].last_user_text
    assert "/supported" in feedback
    assert "'yes' is not of type 'boolean'" in feedback


def test_still_invalid_after_heal_raises_naming_tier_and_problem_not_content(
    fake: FakeLlm,
) -> None:
    secret_looking = "ANSWER-CONTENT-MARKER"
    fake.script(
        CHEAP_MODEL,
        [
            json_reply({"supported": secret_looking, "reason": "r"}),
            json_reply({"supported": True, "reason": "r", "extra": secret_looking}),
        ],
    )
    with pytest.raises(LlmInvalidAnswer) as caught:
        ask_json(make_client(fake))
    message = str(caught.value)
    assert "cheap tier" in message
    assert "after the self-heal round" in message
    assert "additionalProperties" in message and "type" in message
    assert secret_looking not in message and secret_looking not in repr(caught.value)
    assert len(fake.chat_requests()) == 2  # exactly one heal round


def test_truncated_answer_is_retried_once_without_echoing_it(fake: FakeLlm) -> None:
    cut = '{"supported": true, "reason": "the query built on line 12 and'
    fake.script(CHEAP_MODEL, [truncated_reply(cut), json_reply(GOOD)])
    answer = ask_json(make_client(fake))
    assert answer.healed is True
    heal = fake.chat_requests()[1]
    assert all(m["content"] != cut for m in heal.messages)
    assert "cut off" in heal.last_user_text


def test_truncated_valid_looking_json_is_still_invalid(fake: FakeLlm) -> None:
    # finish_reason length means the server stopped it; even parseable text is not trusted.
    fake.script(CHEAP_MODEL, [truncated_reply(json.dumps(GOOD)), truncated_reply("{")])
    with pytest.raises(LlmInvalidAnswer, match="cut off at the output length limit"):
        ask_json(make_client(fake))


def test_model_refusal_is_invalid_without_a_heal_round(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [refusal_reply("I will not review this.")])
    with pytest.raises(LlmInvalidAnswer, match="declined") as caught:
        ask_json(make_client(fake))
    assert "I will not" not in str(caught.value)
    assert len(fake.chat_requests()) == 1


def test_content_filter_finish_is_invalid_without_a_heal_round(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [text_reply("", finish_reason="content_filter")])
    with pytest.raises(LlmInvalidAnswer, match="content_filter"):
        ask_json(make_client(fake))
    assert len(fake.chat_requests()) == 1


def test_think_block_before_the_json_is_dropped(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [text_reply(f"<think>let me see {{</think>\n{json.dumps(GOOD)}")])
    assert ask_json(make_client(fake)).data == GOOD


def test_nan_is_not_json(fake: FakeLlm) -> None:
    fake.script(
        CHEAP_MODEL,
        [text_reply('{"supported": NaN, "reason": "r"}'), json_reply(GOOD)],
    )
    answer = ask_json(make_client(fake))
    assert answer.healed is True
    assert "NaN" in fake.chat_requests()[1].last_user_text


@pytest.mark.parametrize("shape", ["ollama", "vllm"])
def test_ollama_and_vllm_reply_shapes_are_read(fake: FakeLlm, shape: str) -> None:
    fake.script(CHEAP_MODEL, [json_reply(GOOD, shape=shape, usage=(40, 9))])
    answer = ask_json(make_client(fake))
    assert (answer.data, answer.usage) == (GOOD, Usage(40, 9))
    check_recorded_traffic(fake)  # the request still conforms


def test_ollama_null_finish_reason_and_missing_usage_are_tolerated(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [json_reply(GOOD, shape="ollama", finish_reason=None, usage=None)])
    answer = ask_json(make_client(fake))
    assert (answer.data, answer.usage) == (GOOD, Usage(0, 0))


def test_vllm_repetition_finish_gets_the_heal_round(fake: FakeLlm) -> None:
    fake.script(
        CHEAP_MODEL,
        [
            text_reply(
                '{"supported": true, "reason": "aaaa', shape="vllm", finish_reason="repetition"
            ),
            json_reply(GOOD, shape="vllm"),
        ],
    )
    assert ask_json(make_client(fake)).healed is True


def test_a_schema_that_is_not_a_schema_is_a_caller_error(fake: FakeLlm) -> None:
    client = make_client(fake)
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        run(
            client,
            lambda c: c.complete_json(
                Tier.CHEAP, MESSAGES, schema={"type": "nonsense"}, schema_name="x"
            ),
        )
    assert fake.chat_requests() == []


def test_text_answer_cut_off_is_still_returned(fake: FakeLlm) -> None:
    fake.script(CHEAP_MODEL, [truncated_reply("The function leaks the file handle when")])
    answer = run(make_client(fake), lambda c: c.complete_text(Tier.CHEAP, MESSAGES))
    assert answer.text == "The function leaks the file handle when"


@pytest.mark.parametrize(
    ("reply", "words"),
    [(text_reply("   "), "empty answer"), (refusal_reply("No."), "declined")],
)
def test_text_answer_empty_or_declined_is_invalid(fake: FakeLlm, reply, words: str) -> None:
    fake.script(CHEAP_MODEL, [reply])
    with pytest.raises(LlmInvalidAnswer, match=words):
        run(make_client(fake), lambda c: c.complete_text(Tier.CHEAP, MESSAGES))
