"""A pull request's hermetic workspace for one job, and the diffs read from it.

Wraps :mod:`auto_review.review.workspace.checkout` for the pipeline and the chat handlers: the
git policy comes from the process environment (proxy, CA bundle), the credentials from
the forge, the size cap from the settings; git runs in a worker thread so the event loop
keeps serving. Diffs are read with a byte budget, whole files at a time, so a capped diff
never ends in the middle of a hunk.

Credentials that the forge refuses (HTTP 401 to git) are renewed once when the forge can
mint new ones (a GitHub App's installation token, revoked or expired since it was handed
out): the fetch runs again with the fresh token, and a second refusal is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from auto_review.core.errors import is_transient
from auto_review.core.refs import RepoRef
from auto_review.hosts.base import PipelineHost
from auto_review.hosts.review_types import GitAccess, PullRequestDetails
from auto_review.review.diff.model import DiffLimits, FileDiff
from auto_review.review.workspace.checkout import (
    BASE_REF,
    HEAD_REF,
    FetchRequest,
    Workspace,
    WorkspaceError,
    WorkspaceLimits,
    open_workspace,
)
from auto_review.review.workspace.gitenv import GitAuthRefused, GitCredentials, GitError, GitPolicy

log = logging.getLogger(__name__)

PREVIOUS_REF = "refs/auto-review/previous"
# History depths fetched, one after the other, to find where the PR branched off its base.
MERGE_BASE_DEPTHS = (50, 500)
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# Rough bytes of a file's diff header ("diff --git", index, ---/+++ lines).
_HEADER_BYTES = 200


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """What every job's workspace shares: where it lives, the git policy and the caps."""

    parent: Path  # job directories are created (and removed) under it
    policy: GitPolicy
    max_clone_bytes: int
    max_diff_bytes: int

    def limits(self) -> WorkspaceLimits:
        return WorkspaceLimits(
            max_git_bytes=self.max_clone_bytes, max_tree_bytes=2 * self.max_clone_bytes
        )


def git_policy_from_environment(
    environ: Mapping[str, str], *, ca_file: Path | None = None
) -> GitPolicy:
    """Proxy and CA bundle for git, the same the HTTP clients use.

    Inside the container the egress bridge sets ``HTTPS_PROXY``. The CA bundle is
    ``ca_file`` (``AR_CA_FILE``) when given, else ``SSL_CERT_FILE`` when it names a file,
    as for the HTTP clients (:mod:`auto_review.tls`). Nothing else of the environment
    reaches git.
    """
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy") or None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or None
    if ca_file is None:
        from_environment = environ.get("SSL_CERT_FILE") or None
        if from_environment and Path(from_environment).is_file():
            ca_file = Path(from_environment)
    return GitPolicy(https_proxy=proxy, no_proxy=no_proxy, ca_file=ca_file)


def credentials_for(url: str, access: GitAccess | None) -> GitCredentials | None:
    """Credentials answered only for the clone URL's host (``host[:port]``), https only."""
    parts = urlsplit(url)
    if access is None or parts.scheme != "https" or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return GitCredentials(username=access.username, token=access.token, host=host)


class GitCredentialsRefused(WorkspaceError):
    """The forge answered HTTP 401 to git's credentials; ``renewed``: also to a freshly
    minted one. The cause is the :class:`GitAuthRefused` of the last fetch."""

    def __init__(self, message: str, *, renewed: bool) -> None:
        super().__init__(message)
        self.renewed = renewed


RenewAccess = Callable[[GitAccess], Awaitable[GitAccess | None]]


def renewer(
    host: PipelineHost, repo: RepoRef, remember: Callable[[Iterable[str]], None]
) -> RenewAccess:
    """``renew`` for :func:`pr_workspace` from the forge; ``remember`` gets each new token
    (the job's redactor), so no message of the job can show it."""

    async def renew(refused: GitAccess) -> GitAccess | None:
        fresh = await host.renew_git_access(repo, refused)
        if fresh is not None:
            remember([fresh.token])
        return fresh

    return renew


@contextlib.asynccontextmanager
async def pr_workspace(
    pr: PullRequestDetails,
    access: GitAccess | None,
    settings: WorkspaceSettings,
    *,
    renew: RenewAccess | None = None,
) -> AsyncIterator[Workspace]:
    """Fetch the PR head (by its ref, verified against the head SHA) and the base commit.

    When git is refused (401) and ``renew`` gives fresh credentials (None: this forge's
    cannot change), the fetch runs once more with them.
    """
    settings.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    request = FetchRequest(
        url=pr.clone_url,
        head_sha=pr.head_sha,
        head_ref=pr.head_ref,
        merge_base_sha=pr.base_sha,
    )
    try:
        manager, workspace = await _fetched(request, access, settings)
    except GitCredentialsRefused:
        fresh = await renew(access) if renew is not None and access is not None else None
        if fresh is None:
            raise
        log.warning("git was refused the forge credentials (HTTP 401): fetching with new ones")
        try:
            manager, workspace = await _fetched(request, fresh, settings)
        except GitCredentialsRefused as again:
            raise GitCredentialsRefused(str(again), renewed=True) from again.__cause__
    try:
        await asyncio.to_thread(settle_merge_base, workspace, pr)
        yield workspace
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def _fetched(
    request: FetchRequest, access: GitAccess | None, settings: WorkspaceSettings
) -> tuple[contextlib.AbstractContextManager[Workspace], Workspace]:
    manager = open_workspace(
        request,
        parent=settings.parent,
        policy=settings.policy,
        credentials=credentials_for(request.url, access),
        limits=settings.limits(),
    )
    try:
        workspace = await asyncio.to_thread(manager.__enter__)
    except WorkspaceError as exc:
        if isinstance(exc.__cause__, GitAuthRefused):
            raise GitCredentialsRefused(str(exc), renewed=False) from exc.__cause__
        raise
    return manager, workspace


def settle_merge_base(
    workspace: Workspace, pr: PullRequestDetails, depths: Sequence[int] = MERGE_BASE_DEPTHS
) -> bool:
    """Point the workspace's diff base at the real merge base of head and base (blocking).

    Both forges report the base branch's tip as the PR's base commit; once the base branch
    moved on, a diff from the tip would show the base's newer changes, reverted, as lines
    the PR added. The history of both commits is deepened step by step until they meet;
    when they do not meet within the last step, the tip stays the base (False).
    """
    if pr.base_sha in _parents(workspace, workspace.head_sha):
        return True  # one commit on top of the base: no history to fetch
    for depth in (0, *depths):
        if depth:
            try:
                workspace.runner.run(
                    [
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--no-recurse-submodules",
                        f"--depth={depth}",
                        "--no-write-fetch-head",
                        "--no-auto-gc",
                        "--no-auto-maintenance",
                        "--",
                        pr.clone_url,
                        f"+{pr.head_ref}:{HEAD_REF}",
                        f"+{pr.base_sha}:{BASE_REF}",
                    ],
                    timeout=workspace.limits.fetch_timeout,
                    watch={workspace.git_dir: workspace.limits.max_git_bytes},
                )
            except GitError as exc:
                if is_transient(exc):
                    raise  # the forge is unreachable: the whole job is worth another try
                return False
        found = _merge_base(workspace)
        if found is not None:
            workspace.merge_base_sha = found
            return True
    return False


def _parents(workspace: Workspace, sha: str) -> set[str]:
    """Parent ids named by a commit object (readable in a shallow clone, whose grafts only
    hide the parents' own objects)."""
    try:
        raw = workspace.runner.run(
            ["cat-file", "commit", sha], timeout=workspace.limits.diff_timeout
        ).stdout
    except GitError:
        return set()
    header = raw.split(b"\n\n", 1)[0].decode("ascii", "replace")
    return {line[7:] for line in header.splitlines() if line.startswith("parent ")}


def _merge_base(workspace: Workspace) -> str | None:
    try:
        result = workspace.runner.run(
            ["merge-base", workspace.head_sha, BASE_REF], timeout=workspace.limits.diff_timeout
        )
    except GitError:
        return None  # exit 1: no common ancestor within the fetched history
    found = result.stdout.decode("ascii", "replace").strip()
    return found if _SHA.match(found) else None


@dataclass(frozen=True, slots=True)
class DiffRead:
    files: list[FileDiff]
    truncated: bool  # files past the byte budget were left out


def file_diff_bytes(file_diff: FileDiff) -> int:
    return _HEADER_BYTES + sum(len(line) + 1 for hunk in file_diff.hunks for line in hunk.lines)


def take_within_budget(files: Iterable[FileDiff], max_bytes: int) -> DiffRead:
    """Whole files, in diff order, until the next one would pass ``max_bytes``."""
    kept: list[FileDiff] = []
    used = 0
    for file_diff in files:
        size = file_diff_bytes(file_diff)
        if used + size > max_bytes:
            return DiffRead(kept, truncated=True)
        kept.append(file_diff)
        used += size
    return DiffRead(kept, truncated=False)


def read_pr_diff(workspace: Workspace, max_bytes: int) -> DiffRead:
    """The PR diff (base to head) from the workspace, within the byte budget (blocking)."""
    with workspace.diff(DiffLimits()) as files:
        return take_within_budget(files, max_bytes)


def fetch_commit(workspace: Workspace, url: str, sha: str) -> bool:
    """Fetch one more commit (depth 1) into the workspace; False when the forge no longer
    has it (e.g. it was force-pushed away) or refuses to serve it (blocking). A network
    failure raises (transient)."""
    if not _SHA.match(sha):
        return False
    try:
        workspace.runner.run(
            [
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--depth=1",
                "--no-write-fetch-head",
                "--no-auto-gc",
                "--no-auto-maintenance",
                "--",
                url,
                f"+{sha}:{PREVIOUS_REF}",
            ],
            timeout=workspace.limits.fetch_timeout,
            watch={workspace.git_dir: workspace.limits.max_git_bytes},
        )
    except GitError as exc:
        if is_transient(exc):
            raise  # unreachable, not gone: a full review now would be the wrong answer
        return False
    return True


def read_diff_between(workspace: Workspace, old_sha: str, max_bytes: int) -> DiffRead:
    """The diff from ``old_sha`` (fetched before) to the head, within the budget (blocking)."""
    with workspace.diff(DiffLimits(), since=old_sha) as files:
        return take_within_budget(files, max_bytes)
