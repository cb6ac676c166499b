"""In-memory stand-ins for the pipeline's collaborators, and a real git repository to review.

The forge, the model and the store are small fakes that record what they were asked; git
is real (a local repository fetched over ``file://``, allowed by the test git policy), so
the workspace, the diff and the path guard run for real. No tests live here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.git_env import isolated_git_env

from auto_review.chat.handlers import LearningsStore
from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import HostNotFound, PipelineHost
from auto_review.hosts.review_types import (
    CommitStatus,
    GitAccess,
    IssueComment,
    PostedReview,
    PostedReviewComment,
    PullRequestDetails,
    ReviewDraft,
)
from auto_review.llm.api import ChatMessage, JsonAnswer, LanguageModel, TextAnswer, Tier, Usage
from auto_review.review.pipeline import PipelineDeps, ReviewHistory
from auto_review.review.workspace.gitenv import GitPolicy
from auto_review.review.workspace.pull_request import WorkspaceSettings

REPO = RepoRef(HostKind.FORGEJO, "acme", "shop")
SECRET = "canary-forge-token-0123456789abcdef0123"
BOT = "review-bot"


# ---- a real repository -------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {
        **isolated_git_env(cwd, path="/usr/local/bin:/usr/bin:/bin"),
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


BASE_APP = "def total(items):\n    return sum(items)\n\n\ndef unchanged():\n    return 1\n"


@dataclass
class Origin:
    """A repository with a base commit on main and a PR head under refs/pull/1/head."""

    path: Path
    base_sha: str
    head_sha: str = ""

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def push(self, files: Mapping[str, str], message: str = "change") -> str:
        """Commit ``files`` on the feature branch and point refs/pull/1/head at it."""
        git(self.path, "checkout", "-q", "feature")
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", message)
        self.head_sha = git(self.path, "rev-parse", "HEAD")
        git(self.path, "update-ref", "refs/pull/1/head", self.head_sha)
        git(self.path, "checkout", "-q", "main")
        return self.head_sha

    def advance_base(self, files: Mapping[str, str]) -> str:
        """A commit on main after the PR branched off; the forge then reports it as base."""
        for name, text in files.items():
            (self.path / name).write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", "base moves on")
        self.base_sha = git(self.path, "rev-parse", "HEAD")
        return self.base_sha

    def force_push(self, files: Mapping[str, str]) -> str:
        """Replace the feature branch with one new commit on the base; the old head becomes
        unreachable and is pruned, as a forge's gc would."""
        git(self.path, "checkout", "-q", "-B", "feature", self.base_sha)
        git(self.path, "checkout", "-q", "main")
        head = self.push(files, "rewritten")
        git(self.path, "reflog", "expire", "--expire=now", "--all")
        git(self.path, "gc", "-q", "--prune=now")
        return head


def make_origin(tmp: Path) -> Origin:
    path = tmp / "origin"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text(BASE_APP)
    git(path, "add", ".")
    git(path, "commit", "-qm", "base")
    base = git(path, "rev-parse", "HEAD")
    git(path, "branch", "feature")
    return Origin(path, base)


# ---- forge ------------------------------------------------------------------------------


@dataclass
class FakeHost(PipelineHost):
    """A ReviewHost in memory; ``calls`` lists (operation, details) in order."""

    origin: Origin
    kind: HostKind = HostKind.FORGEJO
    title: str = "Add discount"
    body: str = "Adds a discount."
    draft: bool = False
    state: str = "open"
    labels: tuple[str, ...] = ()
    author: str = "alice"
    clone_url: str | None = None  # default: the origin's file:// URL
    files_at_base: dict[str, bytes] = field(default_factory=dict)
    review_comments: list[PostedReviewComment] = field(default_factory=list)
    reviews: list[PostedReview] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: dict[str, Exception] = field(default_factory=dict)

    def _call(self, operation: str, detail: Any = None) -> None:
        self.calls.append((operation, detail))
        if operation in self.fail_with:
            raise self.fail_with[operation]

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    @property
    def statuses(self) -> list[CommitStatus]:
        return [detail[1] for name, detail in self.calls if name == "post_status"]

    @property
    def posted_reviews(self) -> list[ReviewDraft]:
        return [detail for name, detail in self.calls if name == "post_review"]

    @property
    def issue_comments(self) -> list[str]:
        return [detail for name, detail in self.calls if name == "post_issue_comment"]

    async def get_pull_request_details(self, repo: RepoRef, number: int) -> PullRequestDetails:
        self._call("get_pull_request_details", number)
        if number != 1:
            raise HostNotFound("get_pull_request_details", "404")
        return PullRequestDetails(
            number=1,
            head_sha=self.origin.head_sha,
            base_sha=self.origin.base_sha,
            head_ref="refs/pull/1/head",
            base_branch="main",
            author=self.author,
            draft=self.draft,
            state=self.state,
            title=self.title,
            body=self.body,
            labels=self.labels,
            clone_url=self.clone_url or self.origin.url,
        )

    async def get_file(self, repo: RepoRef, path: str, ref: str, *, max_bytes: int) -> bytes | None:
        self._call("get_file", (path, ref))
        return self.files_at_base.get(path) if ref == self.origin.base_sha else None

    async def git_access(self, repo: RepoRef) -> GitAccess:
        self._call("git_access")
        return GitAccess("bot", SECRET)

    async def renew_git_access(self, repo: RepoRef, refused: GitAccess) -> GitAccess | None:
        self._call("renew_git_access")
        return None

    async def list_review_comments(self, repo: RepoRef, number: int) -> list[PostedReviewComment]:
        self._call("list_review_comments")
        posted = [
            PostedReviewComment(i, BOT, c.path, c.line, c.body)
            for i, draft in enumerate(self.posted_reviews)
            for c in draft.comments
        ]
        return [*self.review_comments, *posted]

    async def list_reviews(self, repo: RepoRef, number: int) -> list[PostedReview]:
        self._call("list_reviews")
        return list(self.reviews)

    async def list_issue_comments(self, repo: RepoRef, number: int) -> list[IssueComment]:
        self._call("list_issue_comments")
        return []

    async def post_review(self, repo: RepoRef, number: int, draft: ReviewDraft) -> int:
        self._call("post_review", draft)
        return len(self.posted_reviews)

    async def post_status(self, repo: RepoRef, sha: str, status: CommitStatus) -> None:
        self._call("post_status", (sha, status))

    async def post_issue_comment(self, repo: RepoRef, number: int, body: str) -> int:
        self._call("post_issue_comment", body)
        return len(self.issue_comments)


# ---- model ------------------------------------------------------------------------------


def finding(
    path: str = "app.py",
    line: int = 2,
    *,
    end: int | None = None,
    severity: str = "high",
    category: str = "bug",
    title: str = "Discount applied twice",
    body: str = "The discount is subtracted twice.",
) -> dict[str, Any]:
    return {
        "path": path,
        "start_line": line,
        "end_line": end or line,
        "severity": severity,
        "category": category,
        "title": title,
        "body": body,
    }


@dataclass
class ScriptedModel(LanguageModel):
    """Answers the reasoning tier from ``reviews`` (one per call, the last one repeated),
    the cheap tier with ``supported`` (a verdict for every finding), text with ``text``."""

    reviews: list[Any] = field(default_factory=list)
    supported: bool = True
    text: str = "The change looks fine."
    errors: dict[Tier, Exception] = field(default_factory=dict)
    prompts: list[tuple[Tier, list[ChatMessage]]] = field(default_factory=list)

    def reasoning_prompts(self) -> list[str]:
        return [
            "\n".join(m.content for m in messages)
            for tier, messages in self.prompts
            if tier is Tier.REASONING
        ]

    async def complete_json(
        self,
        tier: Tier,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        schema_name: str,
        accept: Mapping[str, Any] | None = None,
    ) -> JsonAnswer:
        self.prompts.append((tier, list(messages)))
        if tier in self.errors:
            raise self.errors[tier]
        if tier is Tier.CHEAP:
            data: Any = {"supported": self.supported, "reason": "checked against the code"}
        else:
            index = min(len(self.reasoning_prompts()) - 1, len(self.reviews) - 1)
            data = self.reviews[index] if self.reviews else {"summary": "ok", "findings": []}
        return JsonAnswer(json.loads(json.dumps(data)), "fake", Usage(100, 10), healed=False)

    async def complete_text(self, tier: Tier, messages: Sequence[ChatMessage]) -> TextAnswer:
        self.prompts.append((tier, list(messages)))
        if tier in self.errors:
            raise self.errors[tier]
        return TextAnswer(self.text, "fake", Usage(50, 5))

    async def ping(self) -> None:
        return None


def review(*findings: dict[str, Any], summary: str = "Reviewed.") -> dict[str, Any]:
    return {"summary": summary, "findings": list(findings)}


# ---- store ------------------------------------------------------------------------------


@dataclass
class Learned:
    id: int
    text: str
    author: str


@dataclass
class MemoryStore(ReviewHistory, LearningsStore):
    last: dict[tuple[str, int], str] = field(default_factory=dict)
    fingerprints: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    notes: dict[str, list[Learned]] = field(default_factory=dict)
    next_id: int = 1

    def last_reviewed_sha(self, repo_key: str, pr: int) -> str | None:
        return self.last.get((repo_key, pr))

    def record_review(self, repo_key: str, pr: int, head_sha: str, fingerprints: Any) -> None:
        self.last[(repo_key, pr)] = head_sha
        self.fingerprints.setdefault((repo_key, pr), set()).update(fingerprints)

    def posted_fingerprints(self, repo_key: str, pr: int) -> set[str]:
        return set(self.fingerprints.get((repo_key, pr), set()))

    def claim_fingerprints(self, repo_key: str, pr: int, fingerprints: Any) -> set[str]:
        posted = self.fingerprints.setdefault((repo_key, pr), set())
        claimed = set(fingerprints) - posted
        posted.update(claimed)
        return claimed

    def release_fingerprints(self, repo_key: str, pr: int, fingerprints: Any) -> int:
        posted = self.fingerprints.setdefault((repo_key, pr), set())
        released = posted & set(fingerprints)
        posted.difference_update(released)
        return len(released)

    def learnings(self, repo_key: str) -> list[Learned]:
        return list(self.notes.get(repo_key, []))

    def add_learning(self, repo_key: str, text: str, author: str) -> int:
        learned = Learned(self.next_id, text, author)
        self.next_id += 1
        self.notes.setdefault(repo_key, []).append(learned)
        return learned.id

    def forget_learning(self, repo_key: str, learning_id: int) -> bool:
        kept = [n for n in self.notes.get(repo_key, []) if n.id != learning_id]
        removed = len(kept) != len(self.notes.get(repo_key, []))
        self.notes[repo_key] = kept
        return removed


def make_deps(
    tmp: Path, host: FakeHost, model: ScriptedModel, store: MemoryStore, **extra: Any
) -> PipelineDeps:
    return PipelineDeps(
        hosts={HostKind.FORGEJO: host},  # type: ignore[dict-item]
        llm=model,
        store=store,
        workspace=WorkspaceSettings(
            parent=tmp / "work",
            policy=GitPolicy(allow_file_protocol=True),
            max_clone_bytes=64 * 1024 * 1024,
            max_diff_bytes=extra.pop("max_diff_bytes", 1024 * 1024),
        ),
        context_tokens=16000,
        secrets=(SECRET,),
        bot_login=BOT,
        **extra,
    )
