"""Findings: what the reasoning model reports, the JSON schema it must answer with, and the
fingerprint that keeps the same finding from being posted twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from auto_review.review.diff.paths import path_bytes


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, floor: Severity) -> bool:
        return self.rank >= floor.rank


_RANKS = {s: i for i, s in enumerate(Severity)}

CATEGORIES = (
    "bug",
    "security",
    "injection",
    "path-traversal",
    "secret",
    "error-handling",
    "off-by-one",
    "concurrency",
    "resource-leak",
    "performance",
    "maintainability",
    "other",
)

MAX_TITLE = 200
MAX_BODY = 4000
MAX_FINDINGS = 50

# The reasoning tier's answer. Strict-mode compatible (every property required, no extra
# keys) so servers that enforce schemas by grammar accept it as is.
FINDINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "findings"],
    "properties": {
        "summary": {"type": "string", "maxLength": 2000},
        "findings": {
            "type": "array",
            "maxItems": MAX_FINDINGS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "path",
                    "start_line",
                    "end_line",
                    "severity",
                    "category",
                    "title",
                    "body",
                ],
                "properties": {
                    "path": {"type": "string", "minLength": 1, "maxLength": 4096},
                    "start_line": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                    "severity": {"type": "string", "enum": [s.value for s in Severity]},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                    "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE},
                    "body": {"type": "string", "maxLength": MAX_BODY},
                },
            },
        },
    },
}

# What an answer must meet to be used at all: the outer structure. Each finding is then
# checked on its own (`parse_model_review`), so one over-long body or bad line number drops
# that finding, not the whole answer; only an answer without this structure goes through
# the self-heal round.
FINDINGS_ACCEPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["summary", "findings"],
    "properties": {
        "summary": {"type": "string"},
        "findings": {"type": "array"},
    },
}

MAX_SUMMARY = FINDINGS_SCHEMA["properties"]["summary"]["maxLength"]
MAX_PATH = 4096

# The cheap tier's verdict on one finding.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["supported", "reason"],
    "properties": {
        "supported": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 1000},
    },
}


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    start_line: int
    end_line: int
    severity: Severity
    category: str
    title: str
    body: str

    @property
    def fingerprint(self) -> str:
        """Stable across pushes that move the code: path, category and normalised title,
        not line numbers (a finding that shifts by a few lines is still the same finding)."""
        title = re.sub(r"\s+", " ", self.title.strip().lower())
        # The path's own bytes (a name that is not UTF-8 included); model text with lone
        # surrogates is hashed as their surrogatepass bytes rather than failing. For UTF-8
        # text both are plain UTF-8, so fingerprints posted before stay the same.
        text = f"\0{self.category}\0{title}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(path_bytes(self.path) + text).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ModelReview:
    summary: str
    findings: tuple[Finding, ...]
    # Findings of the answer left out because they do not match the schema, by reason.
    invalid: dict[str, int] = field(default_factory=dict)

    @property
    def invalid_count(self) -> int:
        return sum(self.invalid.values())


class InvalidFinding(ValueError):
    """One finding of an answer does not match the schema; the message is the reason (a
    fixed phrase, counted and shown, never model text)."""


def parse_model_review(data: Any) -> ModelReview:
    """An answer meeting FINDINGS_ACCEPT_SCHEMA -> ModelReview, checking each finding on its
    own: one that does not match FINDINGS_SCHEMA is left out and counted by reason, the
    rest stand. Lines are ordered, never trusted beyond the schema: a reversed range is
    swapped rather than dropped. Raises (KeyError, TypeError) when the outer structure is
    missing."""
    summary = data["summary"]
    items = data["findings"]
    if not isinstance(summary, str) or not isinstance(items, list):
        raise TypeError("the answer has no summary text or no findings list")
    invalid: dict[str, int] = {}
    findings = []
    for index, item in enumerate(items):
        if index >= MAX_FINDINGS:
            invalid["more than the maximum number of findings"] = len(items) - MAX_FINDINGS
            break
        try:
            findings.append(_finding(item))
        except InvalidFinding as exc:
            reason = str(exc)
            invalid[reason] = invalid.get(reason, 0) + 1
    summary = summary.strip()
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    return ModelReview(summary=summary, findings=tuple(findings), invalid=invalid)


def _finding(item: Any) -> Finding:
    if not isinstance(item, dict):
        raise InvalidFinding("not an object")
    missing = [key for key in _REQUIRED if key not in item]
    if missing:
        raise InvalidFinding("a required field is missing")
    path = item["path"]
    # Only the type and size here: what the path names is the path guard's business
    # (verify: ChangedLines.resolve), which drops one that is not a changed file.
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidFinding("bad path")
    start, end = item["start_line"], item["end_line"]
    if not _line(start) or not _line(end):
        raise InvalidFinding("bad line number")
    if end < start:
        start, end = end, start
    try:
        severity = Severity(item["severity"])
    except ValueError:
        raise InvalidFinding("unknown severity") from None
    category = item["category"]
    if not isinstance(category, str) or category not in CATEGORIES:
        raise InvalidFinding("unknown category")
    title, body = item["title"], item["body"]
    if not isinstance(title, str) or not isinstance(body, str):
        raise InvalidFinding("title or body is not text")
    title, body = title.strip(), body.strip()
    if not title:
        raise InvalidFinding("empty title")
    if len(title) > MAX_TITLE:
        raise InvalidFinding(f"title over {MAX_TITLE} characters")
    if len(body) > MAX_BODY:
        raise InvalidFinding(f"body over {MAX_BODY} characters")
    return Finding(
        path=path,
        start_line=start,
        end_line=end,
        severity=severity,
        category=category,
        title=title,
        body=body,
    )


_REQUIRED = tuple(FINDINGS_SCHEMA["properties"]["findings"]["items"]["required"])


def _line(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
