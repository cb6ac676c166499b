"""Findings: what the reasoning model reports, the JSON schema it must answer with, and the
fingerprint that keeps the same finding from being posted twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
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


def parse_model_review(data: Any) -> ModelReview:
    """A validated FINDINGS_SCHEMA answer -> ModelReview. Lines are ordered, never trusted
    beyond the schema: a reversed range is swapped rather than dropped."""
    findings = []
    for item in data["findings"]:
        start, end = item["start_line"], item["end_line"]
        if end < start:
            start, end = end, start
        findings.append(
            Finding(
                path=item["path"],
                start_line=start,
                end_line=end,
                severity=Severity(item["severity"]),
                category=item["category"],
                title=item["title"].strip(),
                body=item["body"].strip(),
            )
        )
    return ModelReview(summary=data["summary"].strip(), findings=tuple(findings))
