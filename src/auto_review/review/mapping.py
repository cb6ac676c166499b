"""From verified findings to what is posted: one review with inline comments, and a status.

Code, not the model, decides every API call. Rules:

* **Paths**: a finding's path is the real changed file's (verification mapped the model's
  path to it). A file whose name is not valid UTF-8 cannot be named by the forge APIs (paths
  are JSON strings), so its findings are written into the review body instead, under the
  name in git's C-style quoting, with their markers; every path shown in text is escaped
  that way (:func:`auto_review.review.diff.paths.display_path`).
* **One inline comment per new finding**, on ``LineSide.NEW`` at the finding's ``end_line``
  (``verify_findings`` re-anchors it to the last changed line of its range). When the path
  guard's ``changed`` index is passed, a comment whose line the PR did not change is not
  planned at all (a second guard, so a caller's mistake cannot comment on foreign lines).
* **Never twice**: a finding whose fingerprint is in ``already_posted`` (the local history
  plus the markers found in the bot's earlier comments) or repeats one earlier in the same
  batch is not posted again. Every comment body starts with a hidden marker
  ``<!-- auto-review:fp=<fingerprint> -->`` that :func:`fingerprints_in` reads back.
* **No review without news**: the draft is ``None`` when there is no new comment to post;
  the commit status still reports the outcome.
* **Untrusted text**: model text (summary, titles, bodies) and paths are redacted first (so
  no transformation can split a secret past the redactor), then neutralised: control and
  bidirectional-override characters removed, ``@mentions`` broken with a zero-width space
  (no pings), ``<`` before a tag, comment or autolink broken (no raw HTML, no fake marker),
  Markdown link and image syntax broken (links stay visible text, nothing loads). The final
  bodies pass the redactor once more.
* **Status** (context ``auto-review``): ``failure`` when any kept finding (new or posted
  before) is ``high`` or ``critical``, else ``success``. :func:`skipped_status`,
  :func:`pending_status` and :func:`failed_status` cover a skipped PR, a review in progress
  and a review that could not be done (``error``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from auto_review.hosts.review_types import (
    CommitState,
    CommitStatus,
    InlineComment,
    LineSide,
    ReviewDraft,
)
from auto_review.review.diff.paths import display_path, is_representable, scrub_surrogates
from auto_review.review.diff.positions import ChangedLines, NotCommentable
from auto_review.review.stages.findings import Finding, Severity

STATUS_CONTEXT = "auto-review"
BLOCKING_SEVERITY = Severity.HIGH  # at or above: the status is "failure"
MAX_STATUS_DESCRIPTION = 140  # GitHub's cap; Gitea accepts more
MAX_COMMENT_CHARS = 6000
MAX_SUMMARY_CHARS = 60_000  # both forges accept 65 536
MAX_MODEL_SUMMARY_CHARS = 2000
MAX_TITLE_CHARS = 200
MAX_PATH_CHARS = 1000
MAX_CATEGORY_CHARS = 40
REDACTION_MARGIN = 8192  # longer than any configured secret (PEM keys included)
MAX_LISTED_FINDINGS = 30
TRUNCATION_MARK = "\n\n*(truncated)*"
# A finding on a file whose name is not UTF-8 cannot be an inline comment (the forge APIs
# carry paths as JSON strings): it goes in the review body, with its marker.
MAX_UNANCHORED_CHARS = 1000
UNANCHORED_HEADING = (
    "Findings on files whose names are not valid UTF-8 (the forge cannot anchor an inline "
    "comment to them; names are shown with git's C-style escapes):"
)

_MARKER_PREFIX = "<!-- auto-review:fp="
_MARKER_RE = re.compile(r"<!-- auto-review:fp=([0-9a-f]{16}) -->")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")

_ZWSP = "\u200b"
# Bidi overrides/isolates (Trojan-source style text) and zero-width characters the model
# could use to hide or reorder text; C0/C1 controls except newline and tab.
_INVISIBLE = re.compile(
    "[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)
_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_HTML_OPEN = re.compile(r"<(?=[A-Za-z!/?])")
_LINK_SYNTAX = re.compile(r"\](?=[(\[:])")


@dataclass(frozen=True, slots=True)
class PlannedReview:
    draft: ReviewDraft | None  # None: nothing new to post
    status: CommitStatus
    new_fingerprints: list[str]  # fingerprints of the comments in draft, in order


def plan_review(
    *,
    kept: Sequence[Finding],
    summary: str,
    head_sha: str,
    already_posted: set[str],
    redact: Callable[[str], str],
    changed: ChangedLines | None = None,
) -> PlannedReview:
    """The review to post for verified findings, and the commit status for ``head_sha``."""
    first_of: dict[str, Finding] = {}
    for finding in kept:
        first_of.setdefault(finding.fingerprint, finding)
    distinct = list(first_of.values())  # first occurrence of each fingerprint, input order
    new = [
        finding
        for finding in distinct
        if finding.fingerprint not in already_posted
        and (changed is None or _commentable(changed, finding))
    ]
    repeated = sum(finding.fingerprint in already_posted for finding in distinct)
    status = review_status(distinct)
    if not new:
        return PlannedReview(draft=None, status=status, new_fingerprints=[])
    comments = tuple(
        InlineComment(
            path=finding.path,
            line=finding.end_line,
            side=LineSide.NEW,
            body=comment_body(finding, redact),
        )
        for finding in new
        if is_representable(finding.path)
    )
    in_body = [finding for finding in new if not is_representable(finding.path)]
    body = summary_body(new, summary, repeated=repeated, redact=redact, in_body=in_body)
    return PlannedReview(
        draft=ReviewDraft(commit_sha=head_sha, body=body, comments=comments),
        status=status,
        new_fingerprints=[finding.fingerprint for finding in new],
    )


def fingerprints_in(body: str) -> set[str]:
    """Fingerprints named by auto-review markers in a posted comment body.

    Only apply it to comments the bot itself wrote: anyone else could type a marker.
    """
    return set(_MARKER_RE.findall(body))


def marker(fingerprint: str) -> str:
    if not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise ValueError("a fingerprint is 16 lowercase hexadecimal digits")
    return f"{_MARKER_PREFIX}{fingerprint} -->"


# ---- bodies ---------------------------------------------------------------------------


def comment_body(
    finding: Finding, redact: Callable[[str], str], limit: int = MAX_COMMENT_CHARS
) -> str:
    """Marker, a one-line heading (severity, category, title), then the model's body."""
    title = _one_line(untrusted_text(finding.title, redact, MAX_TITLE_CHARS))
    category = _one_line(untrusted_text(finding.category, redact, MAX_CATEGORY_CHARS))
    heading = f"**{finding.severity.value.upper()}** · {category} · {title}"
    head = f"{marker(finding.fingerprint)}\n{heading}\n\n"
    body = untrusted_text(finding.body, redact, max(0, limit - len(head)))
    return redact(head + body).rstrip()


def summary_body(
    new: Sequence[Finding],
    summary: str,
    *,
    repeated: int,
    redact: Callable[[str], str],
    in_body: Sequence[Finding] = (),
) -> str:
    counts = Counter(finding.severity for finding in new)
    by_severity = ", ".join(
        f"{counts[s]} {s.value}" for s in sorted(counts, key=lambda s: s.rank, reverse=True)
    )
    noun = "finding" if len(new) == 1 else "findings"
    lines = [f"**auto-review**: {len(new)} new {noun} ({by_severity})."]
    if repeated:
        lines.append(f"{repeated} already reported on this pull request are not repeated.")
    model_summary = untrusted_text(summary, redact, MAX_MODEL_SUMMARY_CHARS)
    if model_summary.strip():
        lines += ["", model_summary]
    lines.append("")
    ordered = sorted(new, key=lambda f: (-f.severity.rank, f.path, f.end_line))
    for finding in ordered[:MAX_LISTED_FINDINGS]:
        title = _one_line(untrusted_text(finding.title, redact, MAX_TITLE_CHARS))
        path = _one_line(untrusted_text(display_path(finding.path), redact, MAX_PATH_CHARS))
        where = _code_span(f"{path}:{finding.end_line}")
        lines.append(f"- **{finding.severity.value}** {where} {title}")
    if len(ordered) > MAX_LISTED_FINDINGS:
        lines.append(f"- … and {len(ordered) - MAX_LISTED_FINDINGS} more")
    if in_body:
        lines += ["", UNANCHORED_HEADING]
        for finding in in_body:
            path = _one_line(untrusted_text(display_path(finding.path), redact, MAX_PATH_CHARS))
            lines += [
                "",
                f"{_code_span(f'{path}:{finding.end_line}')}",
                "",
                comment_body(finding, redact, MAX_UNANCHORED_CHARS),
            ]
    return redact(_cap("\n".join(lines), MAX_SUMMARY_CHARS))


def untrusted_text(text: str, redact: Callable[[str], str], limit: int) -> str:
    """Model (or PR) text made safe to post: redacted, defused (see module doc), capped.

    The text is cut before redaction only REDACTION_MARGIN past ``limit`` (redaction cost
    grows with length), so a secret cut in half there lies past ``limit`` and goes with the
    final cap.
    """
    text = redact(scrub_surrogates(text[: limit + REDACTION_MARGIN]))
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    text = _MENTION.sub("@" + _ZWSP, text)
    text = _HTML_OPEN.sub("<" + _ZWSP, text)
    return _cap(_LINK_SYNTAX.sub("]" + _ZWSP, text), limit)


# ---- status ---------------------------------------------------------------------------


def review_status(kept: Iterable[Finding]) -> CommitStatus:
    counts = Counter(finding.severity for finding in kept)
    total = sum(counts.values())
    blocking = sum(n for s, n in counts.items() if s.at_least(BLOCKING_SEVERITY))
    noun = "finding" if total == 1 else "findings"
    if blocking:
        return _status(CommitState.FAILURE, f"{total} {noun}, {blocking} high or critical")
    if total:
        return _status(CommitState.SUCCESS, f"{total} {noun}, none high or critical")
    return _status(CommitState.SUCCESS, "no findings")


def skipped_status(reason: str, redact: Callable[[str], str]) -> CommitStatus:
    """A PR that was deliberately not reviewed (draft, skip label, trivial, ...)."""
    return _status(
        CommitState.SUCCESS,
        "skipped: " + _one_line(untrusted_text(reason, redact, MAX_STATUS_DESCRIPTION)),
    )


def pending_status() -> CommitStatus:
    return _status(CommitState.PENDING, "review in progress")


def failed_status(
    reason: str, redact: Callable[[str], str], stage: str | None = None
) -> CommitStatus:
    """The review itself could not be done (a permanent failure, or a transient one that
    outlasted the retry horizon). ``stage`` names where it failed."""
    where = f"review failed at {stage}: " if stage else "review failed: "
    return _status(
        CommitState.ERROR,
        where + _one_line(untrusted_text(reason, redact, MAX_STATUS_DESCRIPTION)),
    )


def _status(state: CommitState, description: str) -> CommitStatus:
    if len(description) > MAX_STATUS_DESCRIPTION:
        description = description[: MAX_STATUS_DESCRIPTION - 1] + "…"
    return CommitStatus(state=state, description=description, context=STATUS_CONTEXT)


# ---- helpers --------------------------------------------------------------------------


def _commentable(changed: ChangedLines, finding: Finding) -> bool:
    try:
        changed.anchor(finding.path, finding.end_line)
    except NotCommentable:
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _code_span(text: str) -> str:
    """Inline code whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATION_MARK))] + TRUNCATION_MARK
