""":class:`LanguageModel` for any OpenAI-compatible chat-completions server.

One client serves both tiers (a model name each) on one base URL. ``complete_json`` asks
for structured output in the strongest form the server accepts (see
:mod:`auto_review.llm.response_format`), validates the answer against the schema itself,
and gives an invalid answer exactly one self-heal round. Every answer's tokens are counted
(heal rounds and rejected answers too, since they are paid for) in :class:`LlmMetrics` and
a :class:`UsageLedger`. The API key appears in no repr, error, log line or metric label.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from auto_review.llm.accounting import (
    LlmMetrics,
    Outcome,
    Prices,
    UsageLedger,
    add_usage,
    prices_by_tier,
)
from auto_review.llm.api import (
    ChatMessage,
    JsonAnswer,
    LlmInvalidAnswer,
    LlmRefused,
    LlmUnavailable,
    TextAnswer,
    Tier,
    Usage,
)
from auto_review.llm.json_answer import (
    AnswerProblem,
    SchemaCache,
    check_answer,
    heal_messages,
)
from auto_review.llm.response_format import (
    AUTO,
    FormatMode,
    first_mode,
    next_mode,
    response_format_field,
    with_schema_instruction,
)
from auto_review.llm.transport import ChatReply, HttpRefused, LlmTransport, llm_retry
from auto_review.outbound.exchange import Sleep

log = logging.getLogger("auto_review.llm")

# Answers that end like this were cut short by a limit, not finished by the model.
TRUNCATED_FINISH = frozenset({"length"})
# The server's filter or the model declined; asking again in the same words will not help.
DECLINED_FINISH = frozenset({"content_filter"})


@dataclass(frozen=True, slots=True)
class _Judged:
    """A reply checked against the schema: the data, or the problem and what to echo back
    in the heal round (None: echo nothing)."""

    data: Any = None
    problem: AnswerProblem | None = None
    echo: str | None = None
    healable: bool = True


class OpenAICompatibleClient:
    """The review pipeline's :class:`~auto_review.llm.api.LanguageModel`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        models: Mapping[Tier, str],
        *,
        timeout: float = 180.0,
        max_retries: int = 2,
        response_format_mode: str = AUTO,
        prices: Mapping[Tier, tuple[float, float] | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: LlmMetrics | None = None,
        sleep: Sleep = asyncio.sleep,
        max_retry_after: float = 60.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.models: dict[Tier, str] = {}
        for tier in Tier:
            name = models.get(tier)
            if not name or not name.strip():
                raise ValueError(f"no model configured for the {tier.value} tier")
            self.models[tier] = name.strip()
        self._auto = response_format_mode == AUTO
        self._start_mode = first_mode(response_format_mode)
        self._modes: dict[str, FormatMode] = {}  # per model: where the ladder stands now
        self._modes_lock = threading.Lock()
        self._prices: dict[Tier, Prices] = prices_by_tier(prices)
        self.metrics = metrics if metrics is not None else LlmMetrics()
        self.ledger = UsageLedger()
        self._schemas = SchemaCache()
        self._transport = LlmTransport(
            base_url,
            api_key,
            timeout=timeout,
            retry=llm_retry(max_retries, max_retry_after),
            metrics=self.metrics,
            transport=transport,
            sleep=sleep,
            tls=tls,
        )

    def __repr__(self) -> str:
        models = {tier.value: name for tier, name in self.models.items()}
        mode = AUTO if self._auto else self._start_mode.value
        return (
            f"OpenAICompatibleClient(base_url={self.base_url!r}, models={models!r}, "
            f"response_format={mode!r})"
        )

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> OpenAICompatibleClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def format_mode(self, tier: Tier) -> FormatMode:
        """The response_format rung the next JSON call of ``tier`` will use."""
        with self._modes_lock:
            return self._modes.get(self.models[tier], self._start_mode)

    # -- LanguageModel ---------------------------------------------------------------------

    async def complete_json(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        schema_name: str,
        accept: Mapping[str, Any] | None = None,
    ) -> JsonAnswer:
        # A bad schema is a caller bug: ValueError.
        validator = self._schemas.validator(schema if accept is None else accept)
        started = time.monotonic()
        outcome: Outcome | None = None
        usage = Usage(0, 0)
        try:
            prompt = with_schema_instruction(messages, schema, schema_name)
            reply = await self._ask_json(tier, prompt, schema, schema_name)
            usage = reply.usage
            first = self._judge(reply, validator)
            if first.problem is None:
                outcome = Outcome.OK
                return JsonAnswer(first.data, reply.model, usage, healed=False)
            if not first.healable:
                outcome = Outcome.INVALID
                raise LlmInvalidAnswer(f"LLM {tier.value} tier: {first.problem.public}")
            log.info(
                "LLM %s tier: invalid answer (%s); self-heal round",
                tier.value,
                first.problem.public,
            )
            healing = heal_messages(prompt, first.echo, first.problem)
            second_reply = await self._ask_json(tier, healing, schema, schema_name)
            usage = add_usage(usage, second_reply.usage)
            second = self._judge(second_reply, validator)
            if second.problem is None:
                outcome = Outcome.HEALED
                return JsonAnswer(second.data, second_reply.model, usage, healed=True)
            outcome = Outcome.INVALID
            raise LlmInvalidAnswer(
                f"LLM {tier.value} tier: answer still invalid after the self-heal round "
                f"({second.problem.public}; first answer: {first.problem.public})"
            )
        except LlmRefused:
            outcome = Outcome.REFUSED
            raise
        except LlmUnavailable:
            outcome = Outcome.UNAVAILABLE
            raise
        finally:
            if outcome is not None:  # a cancelled call is no outcome
                self._count_call(tier, outcome, time.monotonic() - started)

    async def complete_text(self, tier: Tier, messages: Sequence[ChatMessage]) -> TextAnswer:
        started = time.monotonic()
        outcome: Outcome | None = None
        try:
            reply = await self._send(tier, list(messages), None)
            if reply.refusal is not None and not reply.content:
                outcome = Outcome.INVALID
                raise LlmInvalidAnswer(f"LLM {tier.value} tier: the model declined to answer")
            if not reply.content or not reply.content.strip():
                outcome = Outcome.INVALID
                raise LlmInvalidAnswer(f"LLM {tier.value} tier: empty answer")
            if reply.finish_reason in TRUNCATED_FINISH:
                log.info("LLM %s tier: text answer cut off at the length limit", tier.value)
            outcome = Outcome.OK
            return TextAnswer(reply.content, reply.model, reply.usage)
        except LlmRefused:
            outcome = Outcome.REFUSED
            raise
        except LlmUnavailable:
            outcome = Outcome.UNAVAILABLE
            raise
        finally:
            if outcome is not None:
                self._count_call(tier, outcome, time.monotonic() - started)

    async def ping(self) -> None:
        await self._transport.list_models()

    # -- internals -------------------------------------------------------------------------

    def _count_call(self, tier: Tier, outcome: Outcome, seconds: float) -> None:
        self.metrics.count_call(tier, outcome, seconds)
        self.ledger.add(tier, Usage(0, 0), 0.0, calls=1)

    def _judge(self, reply: ChatReply, validator: Draft202012Validator) -> _Judged:
        if reply.refusal is not None and not reply.content:
            declined = AnswerProblem("the model declined to answer", "")
            return _Judged(problem=declined, healable=False)
        if reply.finish_reason in DECLINED_FINISH:
            declined = AnswerProblem(
                f"the answer was withheld (finish_reason {reply.finish_reason})", ""
            )
            return _Judged(problem=declined, healable=False)
        if reply.finish_reason in TRUNCATED_FINISH:
            cut = AnswerProblem(
                "answer cut off at the output length limit (finish_reason length)",
                "the answer was cut off at the output length limit",
            )
            return _Judged(problem=cut, echo=None)
        text = reply.content or ""
        parsed = check_answer(text, validator)
        if parsed.problem is not None:
            return _Judged(problem=parsed.problem, echo=text)
        return _Judged(data=parsed.data)

    async def _ask_json(
        self,
        tier: Tier,
        messages: list[ChatMessage],
        schema: Mapping[str, Any],
        schema_name: str,
    ) -> ChatReply:
        """One round, stepping down the response_format ladder while the server refuses it
        (auto mode only)."""
        model = self.models[tier]
        while True:
            mode = self.format_mode(tier)
            refusal: HttpRefused | None = None
            try:
                return await self._send(
                    tier, messages, response_format_field(mode, schema, schema_name)
                )
            except HttpRefused as exc:
                refusal = exc
            lower = next_mode(mode) if refusal.format_refused else None
            if not self._auto or lower is None:
                hint = (
                    "; AR_LLM_RESPONSE_FORMAT=auto steps down to a weaker format"
                    if refusal.format_refused and not self._auto
                    else ""
                )
                raise HttpRefused(
                    f"{refusal}{hint}", status=refusal.status, format_refused=refusal.format_refused
                )
            self._step_down(tier, model, mode, lower)

    def _step_down(self, tier: Tier, model: str, refused: FormatMode, lower: FormatMode) -> None:
        with self._modes_lock:
            # Concurrent calls may both see the refusal: step one rung, not two.
            if self._modes.get(model, self._start_mode) is not refused:
                return
            self._modes[model] = lower
        self.metrics.count_fallback(lower.value)
        log.warning(
            "LLM %s tier: the server refused response_format %s; using %s for this model "
            "from now on",
            tier.value,
            refused.value,
            lower.value,
        )

    async def _send(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        response_format: dict[str, Any] | None,
    ) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.models[tier],
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": False,
        }
        if response_format is not None:
            body["response_format"] = response_format
        reply = await self._transport.chat(tier, body)
        price = self._prices.get(tier)
        cost = price.cost(reply.usage) if price is not None else 0.0
        self.metrics.count_usage(tier, reply.usage, cost)
        self.ledger.add(tier, reply.usage, cost)
        return reply
