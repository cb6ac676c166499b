"""Each finding of a model answer is checked on its own: a bad one is left out and counted,
the rest of the answer stands."""

from __future__ import annotations

from typing import Any

import pytest

from auto_review.review.stages.findings import (
    MAX_BODY,
    MAX_FINDINGS,
    MAX_TITLE,
    Severity,
    parse_model_review,
)


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "path": "src/app.py",
        "start_line": 3,
        "end_line": 4,
        "severity": "high",
        "category": "bug",
        "title": "Off by one",
        "body": "The loop stops one early.",
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (item(body="x" * (MAX_BODY + 1)), f"body over {MAX_BODY} characters"),
        (item(title="t" * (MAX_TITLE + 1)), f"title over {MAX_TITLE} characters"),
        (item(path=""), "bad path"),
        (item(path=7), "bad path"),
        (item(path="a" * 4097), "bad path"),
        (item(start_line=0), "bad line number"),
        (item(end_line="5"), "bad line number"),
        (item(start_line=True), "bad line number"),
        (item(severity="urgent"), "unknown severity"),
        (item(severity=["high"]), "unknown severity"),
        (item(category="style"), "unknown category"),
        (item(title="   "), "empty title"),
        (item(body=None), "title or body is not text"),
        ({"path": "src/app.py"}, "a required field is missing"),
        ("just text", "not an object"),
    ],
)
def test_one_bad_finding_is_dropped_with_its_reason(bad: Any, reason: str) -> None:
    review = parse_model_review({"summary": " ok ", "findings": [item(), bad, item(title="b")]})
    assert [f.title for f in review.findings] == ["Off by one", "b"]
    assert review.invalid == {reason: 1}
    assert review.invalid_count == 1
    assert review.summary == "ok"


def test_a_good_answer_has_nothing_invalid_and_reversed_lines_are_swapped() -> None:
    review = parse_model_review({"summary": "s", "findings": [item(start_line=9, end_line=2)]})
    [only] = review.findings
    assert (only.start_line, only.end_line, only.severity) == (2, 9, Severity.HIGH)
    assert review.invalid == {}


def test_findings_past_the_maximum_are_counted_and_a_long_summary_is_shortened() -> None:
    review = parse_model_review(
        {"summary": "s" * 5000, "findings": [item(title=str(n)) for n in range(MAX_FINDINGS + 3)]}
    )
    assert len(review.findings) == MAX_FINDINGS
    assert review.invalid == {"more than the maximum number of findings": 3}
    assert len(review.summary) == 2000 and review.summary.endswith("…")


@pytest.mark.parametrize("answer", [{"summary": "s"}, {"summary": 1, "findings": []}, []])
def test_an_answer_without_its_structure_is_refused(answer: Any) -> None:
    with pytest.raises((KeyError, TypeError)):
        parse_model_review(answer)
