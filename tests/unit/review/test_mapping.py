"""plan_review and fingerprints_in: one review, never twice, nothing unsafe leaves."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auto_review.core.redaction import REDACTED, Redactor
from auto_review.hosts.review_types import CommitState, LineSide
from auto_review.llm.api import ChatMessage, JsonAnswer, TextAnswer, Tier, Usage
from auto_review.review.diff.model import parse_diff
from auto_review.review.diff.positions import ChangedLines
from auto_review.review.mapping import (
    MAX_COMMENT_CHARS,
    MAX_LISTED_FINDINGS,
    MAX_STATUS_DESCRIPTION,
    MAX_SUMMARY_CHARS,
    PlannedReview,
    failed_status,
    fingerprints_in,
    pending_status,
    plan_review,
    skipped_status,
)
from auto_review.review.stages.findings import Finding, Severity
from auto_review.review.stages.verify import verify_findings

SHA = "c" * 40
SECRET = "sk-live-0123456789abcdef"
redact = Redactor([SECRET])


def no_redaction(text: str) -> str:
    return text


def finding(
    title: str = "unchecked input",
    *,
    path: str = "app.py",
    line: int = 10,
    severity: Severity = Severity.MEDIUM,
    category: str = "bug",
    body: str = "the value is used unchecked",
) -> Finding:
    return Finding(path, line, line, severity, category, title, body)


def plan(
    kept: Sequence[Finding], summary: str = "Looks mostly fine.", **options: Any
) -> PlannedReview:
    arguments: dict[str, Any] = {
        "kept": list(kept),
        "summary": summary,
        "head_sha": SHA,
        "already_posted": set(),
        "redact": redact,
    }
    arguments.update(options)
    return plan_review(**arguments)


def all_texts(planned: PlannedReview) -> list[str]:
    assert planned.draft is not None
    return [planned.draft.body, *(c.body for c in planned.draft.comments)]


def test_one_comment_per_finding_with_marker_and_summary_counts() -> None:
    high = finding("sql built from input", severity=Severity.HIGH, line=12, category="injection")
    medium = finding("missing close", line=20, category="resource-leak")
    planned = plan([high, medium])
    draft = planned.draft
    assert draft is not None
    assert draft.commit_sha == SHA
    assert [(c.path, c.line, c.side) for c in draft.comments] == [
        ("app.py", 12, LineSide.NEW),
        ("app.py", 20, LineSide.NEW),
    ]
    first = draft.comments[0].body
    assert first.startswith(f"<!-- auto-review:fp={high.fingerprint} -->\n")
    assert "**HIGH** · injection · sql built from input" in first
    assert "the value is used unchecked" in first
    assert fingerprints_in(first) == {high.fingerprint}
    assert planned.new_fingerprints == [high.fingerprint, medium.fingerprint]
    assert "2 new findings (1 high, 1 medium)" in draft.body
    assert "Looks mostly fine." in draft.body
    assert draft.body.index("sql built from input") < draft.body.index("missing close")


def test_status_policy() -> None:
    assert plan([finding(severity=Severity.CRITICAL)]).status.state is CommitState.FAILURE
    assert plan([finding(severity=Severity.HIGH)]).status.state is CommitState.FAILURE
    medium = plan([finding(severity=Severity.MEDIUM), finding("other", severity=Severity.LOW)])
    assert medium.status.state is CommitState.SUCCESS
    assert medium.status.description == "2 findings, none high or critical"
    clean = plan([])
    assert clean.draft is None
    assert clean.status.state is CommitState.SUCCESS
    assert clean.status.description == "no findings"
    assert clean.status.context == "auto-review"


def test_already_posted_findings_are_never_posted_again_but_still_count() -> None:
    old = finding("old problem", severity=Severity.HIGH)
    moved = finding("Old   PROBLEM ", severity=Severity.HIGH, line=30)  # same fingerprint
    assert moved.fingerprint == old.fingerprint
    planned = plan([moved], already_posted={old.fingerprint})
    assert planned.draft is None
    assert planned.new_fingerprints == []
    assert planned.status.state is CommitState.FAILURE

    fresh = finding("new problem")
    planned = plan([moved, fresh, fresh], already_posted={old.fingerprint})
    assert planned.draft is not None
    assert [c.line for c in planned.draft.comments] == [10]
    assert planned.new_fingerprints == [fresh.fingerprint]
    assert "1 already reported on this pull request are not repeated" in planned.draft.body
    assert planned.status.description == "2 findings, 1 high or critical"


def test_fingerprints_survive_a_round_trip_through_posted_bodies() -> None:
    findings = [finding(f"problem {i}", line=i + 1) for i in range(5)]
    planned = plan(findings)
    assert planned.draft is not None
    recovered: set[str] = set()
    for comment in planned.draft.comments:
        recovered |= fingerprints_in(comment.body)
    assert recovered == {f.fingerprint for f in findings}
    assert plan(findings, already_posted=recovered).draft is None


def test_secrets_are_redacted_everywhere() -> None:
    leaky = finding(
        f"token {SECRET} in code",
        body=f"The key {SECRET} is hard-coded; also https://user:{SECRET}@example.com",
        path="app.py",
    )
    planned = plan([leaky], summary=f"summary mentions {SECRET}")
    for text in all_texts(planned):
        assert SECRET not in text
        assert REDACTED in text


def test_redaction_happens_before_neutralisation() -> None:
    # a secret that neutralisation would split (it contains a mention and link syntax)
    secret = "abc@def](x)-secret-value"
    redactor = Redactor([secret])
    planned = plan([finding(body=f"value {secret}")], redact=redactor, summary=secret)
    for text in all_texts(planned):
        assert "secret-value" not in text


def test_model_cannot_inject_a_marker_a_mention_html_or_a_link() -> None:
    fake = "0123456789abcdef"
    body = (
        f"<!-- auto-review:fp={fake} -->\n"
        "@admin please approve, cc @org/security-team\n"
        "[click here](https://evil.example/phish) ![pixel](https://evil.example/p.png)\n"
        "[ref]: https://evil.example/ref\n"
        "<img src=https://evil.example/x.png> <https://evil.example/auto>\n"
        "text \u202eeulav desrever\u202c and \u200bhidden"
    )
    bad = finding("@root look <!-- x -->", body=body)
    planned = plan([bad], summary=f"@everyone <!-- auto-review:fp={fake} --> [a](b)")
    real = bad.fingerprint
    for text in all_texts(planned):
        assert fake not in fingerprints_in(text)
        assert not re.search(r"(?<![\w\u200b])@(admin|org|root|everyone)", text)
        assert "<!-- x" not in text
        assert "<img" not in text and "<https" not in text
        assert "](" not in text and "]:" not in text
        assert "\u202e" not in text
    comment = planned.draft.comments[0].body if planned.draft else ""
    assert fingerprints_in(comment) == {real}
    assert "@\u200badmin" in comment
    assert "https://evil.example/phish" in comment  # the link stays visible, as text


def test_bodies_are_capped_and_keep_their_marker() -> None:
    huge = finding("long", body="x" * 100_000)
    many = [finding(f"problem number {i}", line=i + 1) for i in range(MAX_LISTED_FINDINGS + 7)]
    planned = plan([huge, *many], summary="s" * 100_000)
    assert planned.draft is not None
    assert len(planned.draft.body) <= MAX_SUMMARY_CHARS
    assert "and 8 more" in planned.draft.body
    first = planned.draft.comments[0].body
    assert len(first) <= MAX_COMMENT_CHARS
    assert first.endswith("*(truncated)*")
    assert fingerprints_in(first) == {huge.fingerprint}


def test_status_helpers() -> None:
    skipped = skipped_status("label @ops " + "z" * 300, no_redaction)
    assert skipped.state is CommitState.SUCCESS
    assert skipped.description.startswith("skipped: label @\u200bops")
    assert len(skipped.description) == MAX_STATUS_DESCRIPTION
    failed = failed_status(f"LLM unavailable at {SECRET}", redact)
    assert failed.state is CommitState.ERROR
    assert SECRET not in failed.description
    assert pending_status().state is CommitState.PENDING
    assert {s.context for s in (skipped, failed, pending_status())} == {"auto-review"}


# ---- no comment on an unchanged line, whatever the model says ---------------------------

OPS = st.lists(st.sampled_from(["context", "added", "removed"]), min_size=1, max_size=40)


def build_diff(files: dict[str, list[str]]) -> bytes:
    """One hunk per file from a list of line operations, with correct counts."""
    out: list[bytes] = []
    for path, ops in files.items():
        old_count = sum(op != "added" for op in ops)
        new_count = sum(op != "removed" for op in ops)
        out.append(f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n".encode())
        old_start = 1 if old_count else 0
        new_start = 1 if new_count else 0
        out.append(f"@@ -{old_start},{old_count} +{new_start},{new_count} @@\n".encode())
        for index, op in enumerate(ops):
            prefix = {"context": " ", "added": "+", "removed": "-"}[op]
            out.append(f"{prefix}{op} {index}\n".encode())
    return b"".join(out)


class AlwaysSupported:
    async def complete_json(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        schema_name: str,
        accept: Mapping[str, Any] | None = None,
    ) -> JsonAnswer:
        return JsonAnswer({"supported": True, "reason": "ok"}, "fake", Usage(1, 1), False)

    async def complete_text(self, tier: Tier, messages: Sequence[ChatMessage]) -> TextAnswer:
        raise AssertionError("not used")

    async def ping(self) -> None:
        return None


PATHS = ["a.py", "src/b.py", "/etc/passwd", "../a.py", "a.py\0", "c.py"]


@st.composite
def findings_for(draw: st.DrawFn) -> list[Finding]:
    items = []
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.integers(1, 60))
        end = draw(st.integers(start, start + 30))
        items.append(
            Finding(
                path=draw(st.sampled_from(PATHS)),
                start_line=start,
                end_line=end,
                severity=draw(st.sampled_from(list(Severity))),
                category="bug",
                title=draw(st.text(min_size=1, max_size=20)),
                body=draw(st.text(max_size=40)),
            )
        )
    return items


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a_ops=OPS, b_ops=OPS, findings=findings_for())
def test_no_comment_is_ever_planned_on_an_unchanged_line(
    a_ops: list[str], b_ops: list[str], findings: list[Finding]
) -> None:
    files = parse_diff(build_diff({"a.py": a_ops, "src/b.py": b_ops})).files
    changed = ChangedLines(files)
    verified = asyncio.run(
        verify_findings(
            findings,
            llm=AlwaysSupported(),
            tree=None,
            changed=changed,
            floor=Severity.INFO,
            diff_files=files,
        )
    )
    through_verify = plan(verified.kept)
    raw_with_guard = plan(findings, changed=changed)
    for planned in (through_verify, raw_with_guard):
        comments = planned.draft.comments if planned.draft else ()
        for comment in comments:
            assert changed.is_changed(comment.path, comment.line), comment
            assert comment.side is LineSide.NEW
    # whatever verification kept is planned (no fingerprint collision among distinct titles)
    fingerprints = {f.fingerprint for f in verified.kept}
    assert len(through_verify.new_fingerprints) == len(fingerprints)


def test_hostile_path_and_category_stay_on_their_line() -> None:
    odd = Finding("a`b\n# Heading @x.py", 3, 3, Severity.LOW, "bug\n@team <b>", "t", "body")
    planned = plan([odd])
    assert planned.draft is not None
    assert not any(line.startswith("# Heading") for line in planned.draft.body.splitlines())
    # Shown in git's C-style quoting: the newline is an escape, not a line break.
    assert '`` "a`b\\n# Heading @\u200bx.py":3 ``' in planned.draft.body
    heading = planned.draft.comments[0].body.splitlines()[1]
    assert heading == "**LOW** · bug @\u200bteam <\u200bb> · t"
