"""The job runner every command uses: each queued job kind, run through the review pipeline.

``REVIEW`` reviews the head the job was queued for (incrementally after an earlier
review); ``RE_REVIEW`` (the chat command) reviews the whole PR at its current head; the
chat kinds go to :class:`auto_review.chat.handlers.ChatHandlers`.

A review skipped because the PR is at another head than the job's asks, through
``follow_up``, for a review of the head the PR is at: the queue accepts it unless that head
is queued, running or reviewed already. So a stale delivery that superseded the newest
head's queued job (coalescing goes by arrival) cannot leave the PR's head unreviewed.

Outcomes: a finished review is SUCCEEDED, a deliberate skip SKIPPED, a failure that
retrying cannot fix FAILED (after an ``error`` status naming the stage). Transient failures
(forge or LLM unavailable, a git timeout, a final status that could not be posted) raise,
so the worker pool retries the job with backoff until the retry horizon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from auto_review.chat.handlers import ChatHandlers, LearningsStore
from auto_review.core.jobs import Job, JobKind, JobOutcome, JobRequest
from auto_review.core.redaction import Redactor
from auto_review.core.refs import HostKind
from auto_review.hosts.base import HostError
from auto_review.review.mapping import failed_status
from auto_review.review.pipeline import (
    PipelineDeps,
    PipelineFailed,
    ReviewReport,
    review_pull_request,
)
from auto_review.review.workspace.checkout import remove_tree
from auto_review.review.workspace.pull_request import WorkspaceSettings, git_policy_from_environment
from auto_review.wiring.clients import language_model, llm_configured

if TYPE_CHECKING:
    from auto_review.config import Settings
    from auto_review.hosts.base import ReviewHost

log = logging.getLogger(__name__)

WORK_DIR_NAME = "work"
DEFAULT_MENTION = "@auto-review"


# Queues a review request; True when it was queued (not a duplicate).
FollowUp = Callable[[JobRequest], Awaitable[bool]]


def mention_for(bot_login: str | None) -> str:
    """How people address the bot: ``@<login>`` (a GitHub App's "[bot]" suffix dropped)."""
    return f"@{bot_login.removesuffix('[bot]')}" if bot_login else DEFAULT_MENTION


class PipelineRunner:
    """Implements :class:`auto_review.core.jobs.ReviewRunner` for every :class:`JobKind`."""

    def __init__(
        self,
        deps: PipelineDeps,
        learnings: LearningsStore,
        *,
        mention: str = DEFAULT_MENTION,
        closers: tuple[Any, ...] = (),
        follow_up: FollowUp | None = None,
    ) -> None:
        self.deps = deps
        self.follow_up = follow_up  # queues the review of a PR's current head (see above)
        self.review_metrics = ReviewMetrics()
        self.chat = ChatHandlers(deps, learnings, mention)
        self._closers = closers  # objects with close() or aclose(), released by aclose()

    @property
    def collectors(self) -> list[Any]:
        """Prometheus collectors of the runner's parts (the LLM client's metrics)."""
        metrics = getattr(self.deps.llm, "metrics", None)
        return [self.review_metrics, *([metrics] if metrics is not None else [])]

    async def run(self, job: Job) -> JobOutcome:
        request = job.request
        try:
            if request.kind in (JobKind.REVIEW, JobKind.RE_REVIEW):
                return await self._review(request, last_attempt=job.final_attempt)
            return await self.chat.handle(request)
        except PipelineFailed as exc:
            log.warning(
                "job failed",
                extra={
                    "job_id": job.id,
                    "kind": str(request.kind),
                    "reason": str(exc),
                    "error_type": exc.error_type,
                },
            )
            if request.kind is JobKind.RE_REVIEW:
                await self._tell(request, f"The review could not be done: {exc}.")
            return JobOutcome.FAILED

    async def conclude(self, job: Job, reason: str) -> None:
        """The final attempt was stopped at its time limit: an ``error`` status on the
        reviewed head (the current head for a re-review, which also gets a reply), or the
        chat command's reply. A forge error propagates to the worker, which logs it."""
        request = job.request
        host = self.deps.host_for(request.repo)
        if request.kind in (JobKind.REVIEW, JobKind.RE_REVIEW):
            sha = request.head_sha
            if not sha:
                details = await host.get_pull_request_details(request.repo, request.pr_number)
                sha = details.head_sha
            redactor = Redactor(self.deps.secrets)
            await host.post_status(request.repo, sha, failed_status(reason, redactor))
            if request.kind is JobKind.RE_REVIEW:
                await self._tell(request, f"The review could not be done: {reason}.")
            return
        await self.chat.post(host, request, f"Sorry, I could not answer: {reason}.")

    async def _review(self, request: JobRequest, *, last_attempt: bool) -> JobOutcome:
        full = request.kind is JobKind.RE_REVIEW
        report = await review_pull_request(
            self.deps,
            request.repo,
            request.pr_number,
            expected_head=None if full else (request.head_sha or None),
            full=full,
            dry_run=False,
            last_attempt=last_attempt,
        )
        _log_report(request, report)
        self.review_metrics.count(report)
        if report.skipped_reason is not None:
            if report.moved_on_to and self.follow_up is not None:
                await self._follow(request, report.moved_on_to)
            if full:
                await self._tell(request, f"Not reviewed: {report.skipped_reason}.")
            return JobOutcome.SKIPPED
        if full:
            # Whoever asked gets an answer in the conversation, also when the review
            # found nothing new (then only the commit status would change otherwise).
            await self._tell(request, re_review_reply(report))
        return JobOutcome.SUCCEEDED

    async def _follow(self, request: JobRequest, head_sha: str) -> None:
        """Queue the review of the head the PR is at; the queue drops it as a duplicate
        when that head is queued, running or reviewed, and revives a superseded job."""
        assert self.follow_up is not None
        follow = replace(
            request,
            head_sha=head_sha,
            comment_id=None,
            argument="",
            source="follow-up",
            redo_unless_reviewed=True,
        )
        queued = await self.follow_up(follow)
        if queued:
            log.info(
                "queued the review of the pull request's current head",
                extra={"repo": request.repo.full_name, "pr": request.pr_number,
                       "head": head_sha[:12]},
            )  # fmt: skip

    async def _tell(self, request: JobRequest, text: str) -> None:
        """A short reply to whoever asked by chat; a forge failure here is only logged."""
        try:
            host = self.deps.host_for(request.repo)
            await self.chat.post(host, request, text)
        except (HostError, PipelineFailed) as exc:
            log.warning("chat reply not posted", extra={"error_type": type(exc).__name__})

    async def aclose(self) -> None:
        for closer in self._closers:
            with contextlib.suppress(Exception):
                if hasattr(closer, "aclose"):
                    await closer.aclose()
                else:
                    closer.close()


class ReviewMetrics(Collector):
    """The reviews' own series for /metrics: findings left out of the model's answers."""

    def __init__(self) -> None:
        self.invalid_findings = Counter(
            "auto_review_findings_invalid",
            "Findings of the model's answers left out because they did not match the schema "
            "(the rest of each answer was used), by reason.",
            ["reason"],
            registry=None,
        )

    def count(self, report: ReviewReport) -> None:
        for reason, n in report.invalid_findings.items():
            self.invalid_findings.labels(reason=reason).inc(n)

    def collect(self) -> Iterable[Metric]:
        yield from self.invalid_findings.collect()


def re_review_reply(report: ReviewReport) -> str:
    """The conversation reply to ``@bot re-review`` once the review is done."""
    head = f"`{report.head_sha[:12]}`" if report.head_sha else "the current head"
    posted = len(report.planned.new_fingerprints) if report.planned else 0
    if posted:
        noun = "finding" if posted == 1 else "findings"
        return f"Reviewed again at {head}: {posted} new {noun}, in the review above."
    return (
        f"Reviewed again at {head}: nothing new to report "
        "(findings already posted are not repeated)."
    )


def _log_report(request: JobRequest, report: ReviewReport) -> None:
    log.info(
        "review finished",
        extra={
            "repo": request.repo.full_name,
            "pr": request.pr_number,
            "head_sha": report.head_sha,
            "skipped": report.skipped_reason,
            "kept": len(report.kept),
            "dropped": len(report.dropped),
            "invalid_findings": sum(report.invalid_findings.values()),
            "posted": len(report.planned.new_fingerprints) if report.planned else 0,
            "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
            "tokens": {
                str(tier): u.prompt_tokens + u.completion_tokens for tier, u in report.usage.items()
            },
        },
    )


def workspace_settings(settings: Settings, environ: Mapping[str, str]) -> WorkspaceSettings:
    return WorkspaceSettings(
        parent=Path(settings.state_dir) / WORK_DIR_NAME,
        policy=git_policy_from_environment(environ, ca_file=settings.ca_file),
        max_clone_bytes=settings.review_max_clone_bytes,
        max_diff_bytes=settings.review_max_diff_bytes,
    )


def clear_stale_work(parent: Path) -> None:
    """Job directories left by a process that was killed mid-job."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if entry.name.startswith("ar-job-"):
            remove_tree(entry)


def build_runner(
    settings: Settings,
    hosts: Mapping[HostKind, ReviewHost],
    *,
    environ: Mapping[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    follow_up: FollowUp | None = None,
) -> PipelineRunner | None:
    """The runner the settings describe, or None when no LLM is configured (jobs then wait
    in the queue). Git's proxy and CA bundle come from ``environ`` (default: os.environ)."""
    if not llm_configured(settings):
        return None
    from auto_review.wiring.stores import open_review_store

    workspace = workspace_settings(settings, os.environ if environ is None else environ)
    workspace.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    clear_stale_work(workspace.parent)
    llm = language_model(settings, tls=tls)
    store = open_review_store(settings)
    deps = PipelineDeps(
        hosts=hosts,
        llm=llm,
        store=store,
        workspace=workspace,
        context_tokens=settings.llm_context_tokens,
        secrets=tuple(settings.secret_values()),
        bot_login=settings.bot_login,
    )
    return PipelineRunner(
        deps,
        store,
        mention=mention_for(settings.bot_login),
        closers=(llm, store),
        follow_up=follow_up,
    )
