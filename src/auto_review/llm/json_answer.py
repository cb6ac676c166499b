"""Turning a model's text into validated JSON, and describing what is wrong when it is not.

Model output is hostile data: it is parsed strictly (no NaN/Infinity, bounded nesting),
validated against the caller's schema with jsonschema whatever the server claims to
enforce, and every problem is described twice: ``for_model`` (details the model needs to
fix its answer, which may quote that answer) and ``public`` (for exceptions, logs and
metrics: built from the schema and the parser's position only, never from the content).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from auto_review.llm.api import ChatMessage, Role

# Problems listed to the model in a heal round; the rest are counted.
MAX_LISTED_PROBLEMS = 5
MAX_PROBLEM_CHARS = 300

# A whole answer inside one Markdown code fence, optionally tagged (```json).
_WHOLE_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\r?\n(?P<body>.*?)\r?\n?```\Z", re.DOTALL)
# A fenced block somewhere in a longer answer ("Here is the JSON: ```json ... ```").
_INNER_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\r?\n(?P<body>.*?)\r?\n?```", re.DOTALL)
# Reasoning models served without a reasoning parser put their thoughts first.
_THINK_BLOCK = re.compile(r"\A\s*<think>.*?</think>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class AnswerProblem:
    public: str  # content-free: safe for exceptions, logs and metrics
    for_model: str  # may quote the answer: only ever sent back to the model


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    data: Any = None
    problem: AnswerProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strip_wrapping(text: str) -> str:
    """The answer without a leading <think> block and without a Markdown fence around it."""
    text = _THINK_BLOCK.sub("", text, count=1).strip()
    whole = _WHOLE_FENCE.match(text)
    if whole is not None:
        return whole.group("body").strip()
    return text


def _load(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant)


def parse_json_text(text: str) -> ParsedAnswer:
    """Parse a model answer as JSON, tolerating a fence around it or one fenced block in it."""
    candidate = strip_wrapping(text)
    if not candidate:
        return ParsedAnswer(problem=AnswerProblem("empty answer", "the answer was empty"))
    try:
        return ParsedAnswer(data=_load(candidate))
    except json.JSONDecodeError as first_error:
        inner = _INNER_FENCE.search(candidate)
        if inner is not None:
            try:
                return ParsedAnswer(data=_load(inner.group("body").strip()))
            except (json.JSONDecodeError, ValueError, RecursionError):
                pass
        where = f"line {first_error.lineno} column {first_error.colno}"
        return ParsedAnswer(
            problem=AnswerProblem(
                f"not valid JSON ({first_error.msg} at {where})",
                f"the answer is not valid JSON: {first_error.msg} at {where}",
            )
        )
    except ValueError:
        return ParsedAnswer(
            problem=AnswerProblem(
                "not valid JSON (NaN or Infinity)",
                "the answer uses NaN or Infinity, which JSON does not allow",
            )
        )
    except RecursionError:
        return ParsedAnswer(
            problem=AnswerProblem("not valid JSON (nested too deeply)", "the JSON nests too deeply")
        )


class SchemaCache:
    """Compiled validators by schema content; schemas are checked once, when first used."""

    def __init__(self, limit: int = 64) -> None:
        self._validators: dict[str, Draft202012Validator] = {}
        self._limit = limit

    def validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        found = self._validators.get(key)
        if found is not None:
            return found
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            # A caller bug, not a model failure: say which keyword, not the whole schema.
            raise ValueError(f"invalid JSON Schema for the answer ({exc.validator})") from None
        compiled = Draft202012Validator(dict(schema))
        if len(self._validators) >= self._limit:
            self._validators.pop(next(iter(self._validators)))
        self._validators[key] = compiled
        return compiled


def _pointer(parts: Any) -> str:
    return "/" + "/".join(str(part) for part in parts) if parts else "/"


def validate_answer(data: Any, validator: Draft202012Validator) -> AnswerProblem | None:
    """None when ``data`` satisfies the schema, else what is wrong."""
    errors = list(validator.iter_errors(data))
    if not errors:
        return None
    first = best_match(errors)
    assert first is not None  # errors is not empty
    listed = [first, *(e for e in errors if e is not first)][:MAX_LISTED_PROBLEMS]
    lines = [f"at {_pointer(e.absolute_path)}: {e.message[:MAX_PROBLEM_CHARS]}" for e in listed]
    if len(errors) > len(listed):
        lines.append(f"... and {len(errors) - len(listed)} more")
    count = f"{len(errors)} schema violation{'s' if len(errors) != 1 else ''}"
    # The schema path and keyword come from the caller's schema, never from the answer.
    public = f"{count}, first at schema path {_pointer(first.schema_path)} ({first.validator})"
    return AnswerProblem(public, "the JSON does not match the schema:\n" + "\n".join(lines))


def check_answer(text: str, validator: Draft202012Validator) -> ParsedAnswer:
    parsed = parse_json_text(text)
    if not parsed.ok:
        return parsed
    problem = validate_answer(parsed.data, validator)
    return parsed if problem is None else ParsedAnswer(problem=problem)


def heal_messages(
    messages: list[ChatMessage], bad_answer: str | None, problem: AnswerProblem
) -> list[ChatMessage]:
    """The conversation for the self-heal round.

    ``bad_answer`` None means the answer was cut off: it is not echoed back (it would only
    spend the context again), the model is asked for a shorter complete answer instead.
    """
    if bad_answer is None:
        ask = (
            "Your previous answer was cut off at the output length limit before the JSON was "
            "complete. Answer again with a shorter, complete JSON object that matches the "
            "schema in the system message, and nothing else."
        )
        return [*messages, ChatMessage(Role.USER, ask)]
    ask = (
        f"Your previous answer was rejected: {problem.for_model}\n"
        "Reply with only the corrected JSON object, matching the schema in the system "
        "message: no prose, no code fences."
    )
    return [*messages, ChatMessage(Role.ASSISTANT, bad_answer), ChatMessage(Role.USER, ask)]
