"""Per-job hermetic workspace: a shallow fetch of exactly the PR head, checked out read-only.

Layout of a job directory (0700, removed when the context manager exits, also on failure)::

    ar-job-XXXX/
      home/   empty HOME of every git child
      git/    the git directory (kept outside the tree, so tools never see `.git`)
      tree/   the checked-out PR head: the only directory the confined tools can reach

Only the PR head (and the merge base when asked for) are fetched, each with ``--depth=1``,
by URL: no remote is configured, so no URL is ever stored in ``git/config``. The fetched head
must be the commit the forge announced; if the branch moved, the job stops.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from auto_review.review.confined import ConfinedTree, ConfinementLimits
from auto_review.review.diff import DiffLimits, FileDiff, iter_file_diffs
from auto_review.review.gitenv import (
    NEUTRAL_ATTRIBUTES,
    GitCredentials,
    GitError,
    GitPolicy,
    GitRunner,
    find_git,
    tree_size,
)

HEAD_REF = "refs/auto-review/head"
BASE_REF = "refs/auto-review/base"

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_REF = re.compile(r"^refs/[A-Za-z0-9._/-]+$")


class WorkspaceError(Exception):
    """The workspace could not be prepared; the message carries no secret."""


class HeadMismatch(WorkspaceError):
    """The fetched head is not the commit the forge announced (the branch moved)."""


@dataclass(frozen=True, slots=True)
class WorkspaceLimits:
    fetch_timeout: float = 300.0
    checkout_timeout: float = 120.0
    diff_timeout: float = 120.0
    max_git_bytes: int = 1024 * 1024 * 1024  # fetched objects
    max_tree_bytes: int = 2 * 1024 * 1024 * 1024  # checked-out files


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What to fetch: the PR head by ref (verified against ``head_sha``) or by SHA alone."""

    url: str
    head_sha: str
    head_ref: str | None = None  # e.g. "refs/pull/7/head"; None fetches head_sha directly
    merge_base_sha: str | None = None

    def __post_init__(self) -> None:
        for name in ("head_sha", "merge_base_sha"):
            value = getattr(self, name)
            if value is not None and not _SHA.match(value):
                raise WorkspaceError(f"{name} must be a full lowercase hex commit id")
        if self.head_ref is not None and (
            not _REF.match(self.head_ref) or ".." in self.head_ref or "//" in self.head_ref
        ):
            raise WorkspaceError("head_ref must look like refs/pull/<n>/head")


def validate_remote_url(url: str, policy: GitPolicy) -> None:
    """Only https (file with the explicit test switch), never with credentials in the URL."""
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise WorkspaceError("remote URL contains whitespace or control characters")
    parts = urlsplit(url)
    allowed = {"https", "file"} if policy.allow_file_protocol else {"https"}
    if parts.scheme not in allowed:
        raise WorkspaceError(
            f"remote URL scheme must be one of {sorted(allowed)}, got {parts.scheme or 'none'!r}"
        )
    if "@" in parts.netloc:
        raise WorkspaceError("remote URL must not carry credentials; pass them separately")
    if parts.scheme == "https" and not parts.hostname:
        raise WorkspaceError("remote URL has no host")


@dataclass(slots=True)
class Workspace:
    """A prepared job directory. Use :func:`open_workspace` to create one."""

    job_dir: Path
    tree: Path
    git_dir: Path
    head_sha: str
    merge_base_sha: str | None
    runner: GitRunner
    limits: WorkspaceLimits

    def confined(self, limits: ConfinementLimits | None = None) -> ConfinedTree:
        return ConfinedTree(self.tree, limits or ConfinementLimits())

    @contextmanager
    def diff(self, limits: DiffLimits | None = None) -> Iterator[Iterator[FileDiff]]:
        """Stream the PR diff (merge base to head) as parsed files.

        External diff drivers and textconv are off; rename detection is on, as forges do.
        """
        if self.merge_base_sha is None:
            raise WorkspaceError("the merge base was not fetched; pass merge_base_sha")
        args = [
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            "--no-relative",
            self.merge_base_sha,
            self.head_sha,
            "--",
        ]
        with self.runner.stream(args, timeout=self.limits.diff_timeout) as out:
            yield iter_file_diffs(out, limits)


@contextmanager
def open_workspace(
    request: FetchRequest,
    *,
    parent: Path | None = None,
    policy: GitPolicy | None = None,
    credentials: GitCredentials | None = None,
    limits: WorkspaceLimits | None = None,
    git: str | None = None,
) -> Iterator[Workspace]:
    """Fetch and check out a PR head into a fresh job directory; remove it on exit."""
    policy = policy or GitPolicy()
    limits = limits or WorkspaceLimits()
    validate_remote_url(request.url, policy)
    git_binary = find_git(git)
    job_dir = Path(tempfile.mkdtemp(prefix="ar-job-", dir=parent))
    try:
        yield _prepare(job_dir, request, policy, credentials, limits, git_binary)
    finally:
        remove_tree(job_dir)


def _prepare(
    job_dir: Path,
    request: FetchRequest,
    policy: GitPolicy,
    credentials: GitCredentials | None,
    limits: WorkspaceLimits,
    git_binary: str,
) -> Workspace:
    home, git_dir, tree = job_dir / "home", job_dir / "git", job_dir / "tree"
    for directory in (home, tree):
        directory.mkdir(mode=0o700)
    runner = GitRunner(
        home=home,
        git_dir=git_dir,
        work_tree=tree,
        policy=policy,
        credentials=credentials,
        git=git_binary,
    )
    try:
        runner.run(["init", "--quiet", "--template="], timeout=limits.checkout_timeout)
        info = git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_bytes(NEUTRAL_ATTRIBUTES)

        head_source = request.head_ref or request.head_sha
        refspecs = [f"+{head_source}:{HEAD_REF}"]
        if request.merge_base_sha is not None:
            refspecs.append(f"+{request.merge_base_sha}:{BASE_REF}")
        runner.run(
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
                request.url,
                *refspecs,
            ],
            timeout=limits.fetch_timeout,
            watch={git_dir: limits.max_git_bytes},
        )
        fetched = (
            runner.run(
                ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{HEAD_REF}^{{commit}}"],
                timeout=limits.checkout_timeout,
            )
            .stdout.decode("ascii", "replace")
            .strip()
        )
        if fetched != request.head_sha:
            raise HeadMismatch(
                f"fetched head {fetched[:12] or 'nothing'} is not the announced head "
                f"{request.head_sha[:12]}: the pull request moved"
            )
        runner.run(
            [
                "checkout",
                "--quiet",
                "--detach",
                "--force",
                "--no-recurse-submodules",
                request.head_sha,
                "--",
            ],
            timeout=limits.checkout_timeout,
            watch={tree: limits.max_tree_bytes},
        )
    except GitError as exc:
        raise WorkspaceError(str(exc)) from exc
    if tree_size(tree, stop_above=limits.max_tree_bytes) > limits.max_tree_bytes:
        raise WorkspaceError(f"checked-out tree exceeds {limits.max_tree_bytes} bytes")
    return Workspace(
        job_dir=job_dir,
        tree=tree,
        git_dir=git_dir,
        head_sha=request.head_sha,
        merge_base_sha=request.merge_base_sha,
        runner=runner,
        limits=limits,
    )


def remove_tree(path: Path) -> None:
    """Remove a job directory, even with directories left without write or search permission.

    Symlinks are never followed (``shutil.rmtree`` works on descriptors on Linux).
    """
    if not (path.exists() or path.is_symlink()):
        return
    try:
        shutil.rmtree(path)
    except OSError:
        make_directories_writable(path)
        shutil.rmtree(path)


def make_directories_writable(root: Path) -> None:
    """Give the owner rwx on every real directory under ``root`` (links are skipped)."""
    _add_owner_rwx(str(root))
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            _add_owner_rwx(os.path.join(dirpath, name))


def _add_owner_rwx(path: str) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
    except FileNotFoundError:
        pass
