"""The review pipeline: from a pull request (or a local patch) to a verified review.

``review_pull_request`` runs, for one PR::

    PR details (skip: closed, head moved on, already reviewed)
    -> .auto_review.yaml from the BASE commit (missing: defaults; invalid: defaults + note)
    -> commit status "pending"
    -> hermetic workspace (PR head + base commit, shallow, no repo-controlled execution)
    -> diff (base..head, byte budget) -> triage (files; whole-PR skip rules)
    -> incremental narrowing (only what changed since the last reviewed commit)
    -> context -> reasoning tier (FINDINGS_SCHEMA)
    -> verification (severity floor, path guard, cheap tier)
    -> mapping (dedup against history and the bot's earlier comment markers)
    -> review + final status (not in a dry run) -> history

Errors: transient failures (``core.errors.is_transient``: forge or LLM unavailable, a git
timeout) propagate, and the worker retries the job later; on the job's final attempt the
pending status is ended as ``error`` first. Anything else, unexpected exceptions (bugs)
included, ends in :class:`PipelineFailed`, after a commit status ``error`` naming the stage,
whose description is fixed text (never an exception message, which may quote the
repository or the forge). A final status that cannot be posted because the forge is
unavailable raises :class:`OutcomeNotPosted`, a transient error: the job is finished only
when its outcome is on the forge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from auto_review.core.errors import TransientError, is_transient
from auto_review.core.redaction import Redactor
from auto_review.core.refs import HostKind, RepoRef, is_from_bot
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostUnavailable,
    PipelineHost,
)
from auto_review.hosts.review_types import (
    CommitStatus,
    GitAccess,
    PullRequestDetails,
    ReviewDraft,
)
from auto_review.llm.api import (
    LanguageModel,
    LlmError,
    LlmInvalidAnswer,
    LlmRefused,
    LlmUnavailable,
    Tier,
    Usage,
)
from auto_review.review.diff.model import DiffParseError, FileDiff, parse_diff
from auto_review.review.diff.paths import display_path
from auto_review.review.diff.positions import ChangedLines
from auto_review.review.incremental import ChangedSinceLastReview, new_hunks_only
from auto_review.review.mapping import (
    PlannedReview,
    failed_status,
    fingerprints_in,
    pending_status,
    plan_review,
    skipped_status,
)
from auto_review.review.policy.repo_config import (
    CONFIG_FILE_NAME,
    MAX_CONFIG_BYTES,
    RepoConfig,
    config_ref,
    repo_config_or_default,
)
from auto_review.review.policy.triage import SkippedFile, Triage, pr_skip_reason, triage_files
from auto_review.review.stage_clock import StageClock
from auto_review.review.stages.context import ContextBudgetError, build_review_messages
from auto_review.review.stages.findings import (
    FINDINGS_ACCEPT_SCHEMA,
    FINDINGS_SCHEMA,
    Finding,
    parse_model_review,
)
from auto_review.review.stages.metered_model import MeteredModel
from auto_review.review.stages.verify import DroppedFinding, verify_findings
from auto_review.review.workspace.checkout import (
    HeadMismatch,
    Workspace,
    WorkspaceError,
    WorkspaceTooLarge,
)
from auto_review.review.workspace.confined import ConfinedTree
from auto_review.review.workspace.gitenv import GitError, GitSizeExceeded, GitTimeout
from auto_review.review.workspace.pull_request import (
    DiffRead,
    GitCredentialsRefused,
    WorkspaceSettings,
    fetch_commit,
    pr_workspace,
    read_diff_between,
    read_pr_diff,
    renewer,
)

log = logging.getLogger(__name__)

FINDINGS_SCHEMA_NAME = "review_findings"
MAX_LISTED_SKIPS = 20


class PipelineFailed(Exception):
    """The review cannot be done, and retrying will not help. The message is fixed text,
    safe for a commit status, a log line and the terminal; ``error_type`` names the class
    of the exception behind it."""

    def __init__(self, message: str, *, error_type: str = "", stage: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stage = stage


class OutcomeNotPosted(TransientError):
    """The review's final status could not be posted (the forge is unavailable): the job
    must run again, since an outcome that is not on the forge is no outcome."""


class ReviewHistory(Protocol):
    """What the pipeline needs of :class:`auto_review.store.sqlite_review.ReviewStore`."""

    def last_reviewed_sha(self, repo_key: str, pr: int) -> str | None: ...

    def record_review(
        self, repo_key: str, pr: int, head_sha: str, fingerprints: Iterable[str]
    ) -> None: ...

    def posted_fingerprints(self, repo_key: str, pr: int) -> set[str]: ...

    def claim_fingerprints(
        self, repo_key: str, pr: int, fingerprints: Iterable[str]
    ) -> set[str]: ...

    def release_fingerprints(self, repo_key: str, pr: int, fingerprints: Iterable[str]) -> int: ...

    def learnings(self, repo_key: str) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class ReviewReport:
    summary: str
    kept: list[Finding]
    dropped: list[DroppedFinding]
    stage_seconds: dict[str, float]
    usage: dict[Tier, Usage]
    skipped_reason: str | None = None
    # What was posted (or, in a dry run, would have been): the review draft and the status.
    planned: PlannedReview | None = None
    head_sha: str | None = None
    notes: tuple[str, ...] = ()
    incremental_since: str | None = None  # the last reviewed commit, when narrowed to it
    # Findings of the model's answer left out because they did not match the schema.
    invalid_findings: dict[str, int] = field(default_factory=dict)
    # Skipped because the PR is at another head than the job's: the head it is at.
    moved_on_to: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    """Everything a PR review needs besides the PR: forges, model, history, workspace."""

    hosts: Mapping[HostKind, PipelineHost]
    llm: LanguageModel
    store: ReviewHistory
    workspace: WorkspaceSettings
    context_tokens: int
    secrets: tuple[str, ...] = field(default=(), repr=False)  # every configured secret
    bot_login: str | None = None

    def host_for(self, repo: RepoRef) -> PipelineHost:
        host = self.hosts.get(repo.host)
        if host is None:
            raise PipelineFailed(f"no {repo.host} forge is configured")
        return host


def repo_key(repo: RepoRef) -> str:
    """The history and learnings key of a repository: ``host|owner/name``."""
    return f"{repo.host}|{repo.owner}/{repo.name}"


# ---- the shared core: model pass and verification ----------------------------------------


@dataclass(frozen=True, slots=True)
class _ModelPass:
    summary: str
    kept: list[Finding]
    dropped: list[DroppedFinding]
    invalid: dict[str, int] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """What the review body says about findings left out as malformed."""
        if not self.invalid:
            return []
        count = sum(self.invalid.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.invalid.items()))
        noun = "finding" if count == 1 else "findings"
        return [
            f"Dropped {count} malformed {noun} from the model's answer ({reasons}); "
            "the others were checked as usual."
        ]


@dataclass(frozen=True, slots=True)
class _ModelQuestion:
    """What the reasoning tier is asked to review, and what its findings are checked
    against."""

    files: Sequence[FileDiff]  # the hunks shown to the model
    changed_paths: Sequence[str]  # every changed file by name, skipped ones included
    changed: ChangedLines  # where a finding may sit
    title: str
    body: str
    tree: ConfinedTree | None  # the code around the change, when there is a checkout
    config: RepoConfig
    learnings: Sequence[str]
    budget_tokens: int


async def _find_and_verify(
    question: _ModelQuestion, llm: LanguageModel, clock: StageClock
) -> _ModelPass:
    files, tree, config = question.files, question.tree, question.config
    with clock.stage("context"):
        prompt = build_review_messages(
            title=question.title,
            body=question.body,
            files=files,
            changed_paths=question.changed_paths,
            tree=tree,
            guidelines=config.guidelines,
            learnings=question.learnings,
            budget_tokens=question.budget_tokens,
        )
    with clock.stage("llm"):
        answer = await llm.complete_json(
            Tier.REASONING,
            prompt.messages,
            schema=FINDINGS_SCHEMA,
            schema_name=FINDINGS_SCHEMA_NAME,
            accept=FINDINGS_ACCEPT_SCHEMA,
        )
        try:
            review = parse_model_review(answer.data)
        except (KeyError, TypeError, ValueError, AttributeError):
            # The client validates the schema; a model object that did not is not trusted.
            raise LlmInvalidAnswer("reasoning tier: the answer does not match the schema") from None
    with clock.stage("verify"):
        verification = await verify_findings(
            review.findings,
            llm=llm,
            tree=tree,
            changed=question.changed,
            floor=config.severity_floor,
            diff_files=files if tree is None else (),
        )
    if review.invalid:
        log.warning(
            "malformed findings dropped from the model's answer",
            extra={"invalid_findings": review.invalid},
        )
    return _ModelPass(review.summary, verification.kept, verification.dropped, review.invalid)


# ---- local patch ------------------------------------------------------------------------


async def review_patch(
    patch: bytes,
    *,
    llm: LanguageModel,
    repo_config: RepoConfig,
    tree: ConfinedTree | None = None,
    learnings: Sequence[str] = (),
    budget_tokens: int = 16000,
    title: str = "local patch",
) -> ReviewReport:
    """Review a unified diff without any forge: triage, context, model, verification.

    ``tree`` (a :class:`ConfinedTree` of the patched code) lets context and verification
    read surrounding code; without it they work from the diff hunks alone.
    Raises :class:`DiffParseError` for input that is not a diff, LLM errors as they come.
    """
    clock = StageClock()
    metered = MeteredModel(llm)
    with clock.stage("diff"):
        parsed = parse_diff(patch)
    with clock.stage("triage"):
        triage = triage_files(parsed.files, repo_config)
    notes = _skip_notes(triage.skipped)
    if not triage.reviewable:
        reason = "nothing to review: no reviewable file in the patch"
        return ReviewReport(reason, [], [], clock.seconds, metered.usage, skipped_reason=reason)
    question = _ModelQuestion(
        files=triage.reviewable,
        changed_paths=[f.path for f in parsed.files],
        changed=ChangedLines(triage.reviewable),
        title=title,
        body="",
        tree=tree,
        config=repo_config,
        learnings=learnings,
        budget_tokens=budget_tokens,
    )
    result = await _find_and_verify(question, metered, clock)
    return ReviewReport(
        summary=result.summary,
        kept=result.kept,
        dropped=result.dropped,
        stage_seconds=clock.seconds,
        usage=metered.usage,
        notes=(*notes, *result.notes),
        invalid_findings=result.invalid,
    )


# ---- pull request -----------------------------------------------------------------------


async def review_pull_request(
    deps: PipelineDeps,
    repo: RepoRef,
    number: int,
    *,
    expected_head: str | None,
    full: bool,
    dry_run: bool,
    last_attempt: bool = False,
) -> ReviewReport:
    """Review one PR and (unless ``dry_run``) post the review, the status and the history.

    ``expected_head``: the head SHA the job was queued for; a PR that moved on is skipped
    (its new head has its own job). ``full``: ignore the last reviewed commit and review
    the whole PR again (findings already posted are still never posted twice).
    ``last_attempt``: the worker will not retry this job again, so an unavailable forge or
    LLM also ends the pending status (as ``error``) before the exception propagates.
    """
    host = deps.host_for(repo)
    clock = StageClock("details")
    metered = MeteredModel(deps.llm)
    key = repo_key(repo)
    redactor = Redactor(deps.secrets)
    try:
        pr = await host.get_pull_request_details(repo, number)
    except (HostNotFound, HostAuthError, HostResponseError) as exc:
        raise PipelineFailed(
            f"details: {describe_failure(exc)}", error_type=type(exc).__name__, stage="details"
        ) from None

    def skipped(reason: str) -> ReviewReport:
        return _skipped_report(reason, pr, clock, metered)

    if pr.state != "open":
        return skipped(f"the pull request is {pr.state}")
    if expected_head and pr.head_sha != expected_head:
        return replace(
            skipped("the pull request moved on to a newer commit"), moved_on_to=pr.head_sha
        )
    # The store's reads run on a thread: with PostgreSQL each is a network round trip.
    previous = None if full else await asyncio.to_thread(deps.store.last_reviewed_sha, key, number)
    if previous == pr.head_sha:
        return skipped("this commit was already reviewed")

    status_poster = _StatusPoster(host, repo, pr.head_sha, dry_run)
    clock.current = "config"
    try:
        config, notes = await _read_repo_config(host, repo, pr)
        if not config.enabled or (pr.draft and config.skip_drafts):
            # Decided before any clone or status: nothing to show on the PR for these.
            return skipped(pr_skip_reason(pr, Triage(), config) or "skipped")
        access = await host.git_access(repo)
        redactor.add([access.token])
        await status_poster.post(pending_status())
        review = _PrReview(
            deps=deps,
            host=host,
            repo=repo,
            pr=pr,
            config=config,
            previous=previous,
            redactor=redactor,
            clock=clock,
            metered=metered,
            status_poster=status_poster,
            notes=notes,
        )
        return await _review_checked_out(review, access)
    except PipelineFailed:
        raise
    except HeadMismatch:
        await status_poster.post_final(
            skipped_status("a newer commit was pushed while fetching", redactor)
        )
        return skipped("the pull request moved on while it was being fetched")
    except Exception as exc:
        stage = clock.current
        if is_transient(exc):
            if last_attempt:
                await status_poster.post_final(
                    failed_status(describe_failure(exc), redactor, stage)
                )
            raise
        description = describe_failure(exc)
        log.warning(
            "review failed",
            extra={
                "repo": repo.full_name,
                "pr": number,
                "stage": stage,
                "error_type": type(exc).__name__,
            },
        )
        await status_poster.post_final(failed_status(description, redactor, stage))
        raise PipelineFailed(
            f"{stage}: {description}", error_type=type(exc).__name__, stage=stage
        ) from None


@dataclass(slots=True)
class _PrReview:
    """What the stages of one pull request's review share once it is past the checks that
    need no clone: where it is, what it was configured with, and what it has to say."""

    deps: PipelineDeps
    host: PipelineHost
    repo: RepoRef
    pr: PullRequestDetails
    config: RepoConfig
    previous: str | None  # the last reviewed commit, None for a full review
    redactor: Redactor
    clock: StageClock
    metered: MeteredModel
    status_poster: _StatusPoster
    notes: list[str]  # sentences for the review body, in the order they arose

    @property
    def key(self) -> str:
        return repo_key(self.repo)

    @property
    def dry_run(self) -> bool:
        return self.status_poster.dry_run

    def skipped(self, reason: str) -> ReviewReport:
        return _skipped_report(reason, self.pr, self.clock, self.metered)


@dataclass(frozen=True, slots=True)
class _ReviewScope:
    """The hunks to show the model and the lines findings may sit on."""

    files: list[FileDiff]
    changed: ChangedLines
    since_sha: str | None = None  # the last reviewed commit, when narrowed to it


async def _review_checked_out(review: _PrReview, access: GitAccess) -> ReviewReport:
    """Clone, diff, triage, narrow, ask the model; then map, post and record."""
    async with contextlib.AsyncExitStack() as stack:
        workspace = await _clone(review, access, stack)
        diff = await _read_diff(review, workspace)
        tree = workspace.confined()
        triage_or_skip = await _triage(review, diff, tree)
        if isinstance(triage_or_skip, str):
            await review.status_poster.post(skipped_status(triage_or_skip, review.redactor))
            return review.skipped(triage_or_skip)
        scope = await _narrow_to_new_changes(review, workspace, list(triage_or_skip.reviewable))
        result = await _model_pass(review, scope, [f.path for f in diff.files], tree)
    review.notes.extend(result.notes)
    summary = _compose_summary(result.summary, review.notes)
    already = await _already_posted(review)
    planned = _planned(review, result.kept, summary, scope.changed, already)
    moved = await _moved_on(review)
    if moved is not None:
        # A newer head was pushed while this one was reviewed: its own job reviews it, and
        # findings on an outdated commit are not posted.
        await review.status_poster.post_final(skipped_status(moved, review.redactor))
        return review.skipped("the pull request moved on while it was being reviewed")
    planned = await _claim(
        review,
        planned,
        lambda lost: _planned(review, result.kept, summary, scope.changed, already | lost),
    )
    await _post_and_record(review, planned)
    return ReviewReport(
        summary=summary,
        kept=result.kept,
        dropped=result.dropped,
        stage_seconds=review.clock.seconds,
        usage=review.metered.usage,
        planned=planned,
        head_sha=review.pr.head_sha,
        notes=tuple(review.notes),
        incremental_since=scope.since_sha,
        invalid_findings=result.invalid,
    )


async def _clone(
    review: _PrReview, access: GitAccess, stack: contextlib.AsyncExitStack
) -> Workspace:
    """The hermetic workspace of the PR head and base commit, removed when `stack` closes."""
    with review.clock.stage("clone"):
        renew = renewer(review.host, review.repo, review.redactor.add)
        return await stack.enter_async_context(
            pr_workspace(review.pr, access, review.deps.workspace, renew=renew)
        )


async def _read_diff(review: _PrReview, workspace: Workspace) -> DiffRead:
    budget = review.deps.workspace.max_diff_bytes
    with review.clock.stage("diff"):
        diff = await asyncio.to_thread(read_pr_diff, workspace, budget)
    if diff.truncated:
        review.notes.append(
            f"The diff is larger than {budget} bytes: only its first files were read."
        )
    return diff


async def _triage(review: _PrReview, diff: DiffRead, tree: ConfinedTree) -> Triage | str:
    """The files worth reviewing, or why the whole pull request is skipped."""
    with review.clock.stage("triage"):
        triage = await asyncio.to_thread(triage_files, diff.files, review.config, tree=tree)
        skip = pr_skip_reason(review.pr, triage, review.config)
    if skip is not None:
        return skip
    review.notes.extend(_skip_notes(triage.skipped))
    return triage


async def _narrow_to_new_changes(
    review: _PrReview, workspace: Workspace, files: list[FileDiff]
) -> _ReviewScope:
    """After an earlier review: only what changed since its commit, when that commit is
    still there and the changes since fit the diff budget; the whole PR otherwise."""
    previous = review.previous
    if previous is None:
        return _ReviewScope(files, ChangedLines(files))
    with review.clock.stage("diff"):
        fetched = await asyncio.to_thread(fetch_commit, workspace, review.pr.clone_url, previous)
        since = (
            await asyncio.to_thread(
                read_diff_between, workspace, previous, review.deps.workspace.max_diff_bytes
            )
            if fetched
            else None
        )
    if since is not None and not since.truncated:
        review.notes.append(f"Incremental review: changes since {previous[:12]}.")
        return _ReviewScope(
            new_hunks_only(files, since.files),
            ChangedSinceLastReview(files, since.files),
            since_sha=previous,
        )
    if since is None:
        review.notes.append(
            f"The last reviewed commit {previous[:12]} is no longer available "
            "(force-push?): the whole pull request was reviewed again."
        )
    else:
        review.notes.append(
            f"The changes since {previous[:12]} exceed the diff budget: the whole "
            "pull request was reviewed again."
        )
    return _ReviewScope(files, ChangedLines(files))


async def _model_pass(
    review: _PrReview, scope: _ReviewScope, changed_paths: list[str], tree: ConfinedTree
) -> _ModelPass:
    """Context, reasoning tier and verification over the scope; nothing new, no model call."""
    if not scope.files:
        return _ModelPass("No new changes to review since the last review.", [], [])
    stored = await asyncio.to_thread(review.deps.store.learnings, review.key)
    learnings = [_learning_text(item) for item in stored]
    question = _ModelQuestion(
        files=scope.files,
        changed_paths=changed_paths,
        changed=scope.changed,
        title=review.pr.title,
        body=review.pr.body,
        tree=tree,
        config=review.config,
        learnings=learnings,
        budget_tokens=review.deps.context_tokens,
    )
    return await _find_and_verify(question, review.metered, review.clock)


async def _already_posted(review: _PrReview) -> set[str]:
    """Fingerprints of the findings posted before: the store's, and the markers in the
    bot's comments on the pull request."""
    review.clock.current = "mapping"
    pr = review.pr
    posted = await asyncio.to_thread(review.deps.store.posted_fingerprints, review.key, pr.number)
    return posted | await (
        _posted_markers(review.host, review.repo, pr.number, review.deps.bot_login)
    )


def _planned(
    review: _PrReview, kept: list[Finding], summary: str, changed: ChangedLines, already: set[str]
) -> PlannedReview:
    """The review draft and final status: findings not posted before, redacted."""
    pr = review.pr
    planned = plan_review(
        kept=kept,
        summary=summary,
        head_sha=pr.head_sha,
        already_posted=already,
        redact=review.redactor,
        changed=changed,
    )
    return replace(planned, draft=_redacted_draft(planned.draft, review.redactor))


async def _claim(
    review: _PrReview, planned: PlannedReview, replan: Callable[[set[str]], PlannedReview]
) -> PlannedReview:
    """Record the findings about to be posted as posted, before posting them: of two
    workers (on any replicas) about to post one finding, the store's unique key lets exactly
    one claim it. Findings another worker claimed since they were planned are left out. A
    crash between this claim and the post leaves those findings unposted, never posted
    twice. Nothing is claimed in a dry run."""
    wanted = set(planned.new_fingerprints)
    if review.dry_run or not wanted:
        return planned
    store = review.deps.store
    claimed = await asyncio.to_thread(
        store.claim_fingerprints, review.key, review.pr.number, sorted(wanted)
    )
    if claimed == wanted:
        return planned
    log.info(
        "%d finding(s) of this review were posted by another worker meanwhile; left out",
        len(wanted - claimed),
    )
    return replan(wanted - claimed)


async def _moved_on(review: _PrReview) -> str | None:
    """Why not to post on the reviewed head any more (the PR moved on to a newer commit,
    or was closed meanwhile), or None; read from the forge right before posting."""
    if review.dry_run:
        return None
    with review.clock.stage("post"):
        current = await review.host.get_pull_request_details(review.repo, review.pr.number)
    if current.head_sha != review.pr.head_sha:
        return "a newer commit was pushed during the review"
    if current.state != "open":
        return f"the pull request was {current.state} during the review"
    return None


async def _post_and_record(review: _PrReview, planned: PlannedReview) -> None:
    """The review and the final status on the forge, then the history row (not in a dry
    run)."""
    if review.dry_run:
        return
    pr = review.pr
    with review.clock.stage("post"):
        if planned.draft is not None:
            try:
                await review.host.post_review(review.repo, pr.number, planned.draft)
            except BaseException:
                # Not on the forge: give the claim back, so the retry posts these findings.
                await asyncio.to_thread(
                    review.deps.store.release_fingerprints,
                    review.key,
                    pr.number,
                    planned.new_fingerprints,
                )
                raise
        await review.status_poster.post(planned.status)
    # An fsync'd write: off the event loop, which serves webhooks meanwhile.
    await asyncio.to_thread(
        review.deps.store.record_review,
        review.key,
        pr.number,
        pr.head_sha,
        planned.new_fingerprints,
    )


def _skipped_report(
    reason: str, pr: PullRequestDetails, clock: StageClock, metered: MeteredModel
) -> ReviewReport:
    return ReviewReport(
        reason,
        [],
        [],
        clock.seconds,
        metered.usage,
        skipped_reason=reason,
        head_sha=pr.head_sha,
    )


# ---- helpers ------------------------------------------------------------------------------


class _StatusPoster:
    """Posts the commit status of the reviewed head; does nothing in a dry run."""

    def __init__(self, host: PipelineHost, repo: RepoRef, sha: str, dry_run: bool) -> None:
        self.host, self.repo, self.sha, self.dry_run = host, repo, sha, dry_run

    async def post(self, status: CommitStatus) -> None:
        if not self.dry_run:
            await self.host.post_status(self.repo, self.sha, status)

    async def post_final(self, status: CommitStatus) -> None:
        """For the failure path. A forge that is unavailable here raises OutcomeNotPosted
        (the job runs again until the outcome is on the forge); one that refuses the post
        for good is logged, so it does not hide the first error."""
        try:
            await self.post(status)
        except HostUnavailable as exc:
            log.warning("final status not posted", extra={"error_type": type(exc).__name__})
            raise OutcomeNotPosted("the final status could not be posted") from exc
        except HostError as exc:
            log.warning("final status not posted", extra={"error_type": type(exc).__name__})


async def _read_repo_config(
    host: PipelineHost, repo: RepoRef, pr: PullRequestDetails
) -> tuple[RepoConfig, list[str]]:
    """The config at the base commit; an oversized or invalid file gives the defaults and
    notes saying why (failing closed: a broken config never turns reviews off)."""
    try:
        text = await host.get_file(
            repo, CONFIG_FILE_NAME, config_ref(pr), max_bytes=MAX_CONFIG_BYTES
        )
    except HostResponseError:
        return repo_config_or_default(None)[0], [
            f"{CONFIG_FILE_NAME} could not be read (too large or malformed): defaults were used."
        ]
    config, problems = repo_config_or_default(text)
    notes = [f"Configuration problem, defaults used where needed: {p}" for p in problems]
    return config, notes


async def _posted_markers(
    host: PipelineHost, repo: RepoRef, number: int, bot_login: str | None
) -> set[str]:
    """Fingerprints in the bot's earlier inline comments and review bodies on the PR.

    Without a configured bot login every author's markers count: a stranger's marker can
    then only hide a finding, never post one.
    """
    def ours(author: str) -> bool:
        return bot_login is None or is_from_bot(author, bot_login)

    found: set[str] = set()
    for comment in await host.list_review_comments(repo, number):
        if ours(comment.author):
            found |= fingerprints_in(comment.body)
    for review in await host.list_reviews(repo, number):
        if ours(review.author):
            found |= fingerprints_in(review.body)
    return found


def _skip_notes(skipped: Sequence[SkippedFile]) -> list[str]:
    if not skipped:
        return []
    shown = ", ".join(
        f"`{display_path(s.path)}` ({s.reason})" for s in skipped[:MAX_LISTED_SKIPS]
    )
    more = f" and {len(skipped) - MAX_LISTED_SKIPS} more" if len(skipped) > MAX_LISTED_SKIPS else ""
    return [f"Not reviewed: {shown}{more}."]


def _compose_summary(model_summary: str, notes: Sequence[str]) -> str:
    parts = [model_summary.strip()] if model_summary.strip() else []
    parts.extend(notes)
    return "\n\n".join(parts)


def _learning_text(item: object) -> str:
    text = getattr(item, "text", item)
    return text if isinstance(text, str) else str(text)


def _redacted_draft(draft: ReviewDraft | None, redact: Callable[[str], str]) -> ReviewDraft | None:
    """A last pass over everything about to be posted (mapping redacts too; this is the
    backstop the pipeline owns)."""
    if draft is None:
        return None
    return replace(
        draft,
        body=redact(draft.body),
        comments=tuple(replace(c, body=redact(c.body)) for c in draft.comments),
    )


def describe_failure(exc: BaseException) -> str:
    """Fixed text for a failure: shown on the PR and in logs, so never the message."""
    if isinstance(exc, OutcomeNotPosted | HostUnavailable):
        return "the forge stayed unavailable"
    if isinstance(exc, LlmUnavailable):
        return "the LLM stayed unavailable"
    if isinstance(exc, HostAuthError):
        return "the forge refused the bot's credentials"
    if isinstance(exc, HostNotFound):
        return "the forge did not find the pull request or a file it needs"
    if isinstance(exc, HostResponseError):
        return "the forge answered with something its API does not document"
    if isinstance(exc, HostError):
        return "a forge call failed"
    if isinstance(exc, LlmRefused):
        return "the LLM endpoint refused the request (check the LLM settings)"
    if isinstance(exc, LlmInvalidAnswer):
        return "the model's answer did not match the review schema, even after a retry"
    if isinstance(exc, LlmError):
        return "the LLM call failed"
    if isinstance(exc, GitCredentialsRefused):
        if exc.renewed:
            return "git was refused (HTTP 401) the forge credentials, a freshly minted token too"
        return "git was refused (HTTP 401) the forge credentials"
    cause = exc.__cause__ if isinstance(exc, WorkspaceError) else exc
    if isinstance(cause, GitSizeExceeded) or isinstance(exc, WorkspaceTooLarge):
        return "the repository is larger than the clone size cap"
    if isinstance(cause, GitTimeout):
        return "fetching the repository took longer than its time limit"
    if isinstance(exc, WorkspaceError | GitError):
        return "the pull request could not be fetched with git"
    if isinstance(exc, ContextBudgetError):
        return "the LLM context budget is too small for the review prompt (AR_LLM_CONTEXT_TOKENS)"
    if isinstance(exc, DiffParseError):
        return "the pull request's diff could not be parsed"
    return f"internal error ({type(exc).__name__})"
