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

import itertools
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

from auto_review.core.errors import TransientError
from auto_review.review.diff.model import DiffLimits, FileDiff, FileStatus, iter_file_diffs
from auto_review.review.workspace.confined import ConfinedTree, ConfinementLimits
from auto_review.review.workspace.gitenv import (
    NEUTRAL_ATTRIBUTES,
    GitCredentials,
    GitError,
    GitPolicy,
    GitRunner,
    find_git,
    tree_size,
)

# Given on the command line, git never looks up the per-submodule `ignore` setting in the
# PR's `.gitmodules`: a hostile one could hide pointer changes, and a bad value in it (e.g.
# `update = !command`) would make `git diff` fail. Pointer changes stay in the diff.
IGNORE_NO_SUBMODULES = "--ignore-submodules=none"

HEAD_REF = "refs/auto-review/head"
BASE_REF = "refs/auto-review/base"

_MAX_EXCLUDED_PATH_BYTES = 512 * 1024
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_REF = re.compile(r"^refs/[A-Za-z0-9._/-]+$")


class WorkspaceError(Exception):
    """The workspace could not be prepared; the message carries no secret."""


class WorkspaceTooLarge(WorkspaceError):
    """The checked-out tree exceeds its cap (fetched objects over theirs raise the
    underlying ``GitSizeExceeded``, kept as the cause)."""


class HeadMismatch(WorkspaceError, TransientError):
    """The fetched head is not the commit the forge announced (the branch moved).

    Transient: a review skips the head that moved on (its newer head has a job), and
    anything else that wants the PR as it is now (a chat question) runs again and fetches
    the new head."""


@dataclass(frozen=True, slots=True)
class WorkspaceLimits:
    fetch_timeout: float = 300.0
    checkout_timeout: float = 120.0
    diff_timeout: float = 120.0
    max_git_bytes: int = 1024 * 1024 * 1024  # fetched objects
    max_tree_bytes: int = 2 * 1024 * 1024 * 1024  # checked-out files
    # `git diff` reads every blob it prints whole into memory (an added 1 GB file of zeros
    # arrives as 1 MB and would cost 1 GB), and rename detection reads both sides. Changed
    # blobs above this size are kept out of the patch and reported as binary files instead.
    max_diff_blob_bytes: int = 16 * 1024 * 1024
    max_oversized_files: int = 1000  # more than this many such files: the diff is refused


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
    def diff(
        self, limits: DiffLimits | None = None, *, since: str | None = None
    ) -> Iterator[Iterator[FileDiff]]:
        """Stream the diff from ``since`` (default: the merge base) to the head, parsed.

        External diff drivers and textconv are off; rename detection is on, as forges do;
        submodule pointer changes are shown whatever `.gitmodules` says. Files whose old or
        new blob is over ``limits.max_diff_blob_bytes`` are left out of git's patch (so git
        never loads them) and follow the patched files as binary, truncated entries without
        hunks.
        """
        old = since if since is not None else self.merge_base_sha
        if old is None:
            raise WorkspaceError("the merge base was not fetched; pass merge_base_sha")
        if not _SHA.match(old):
            raise WorkspaceError("the diff start must be a full lowercase hex commit id")
        oversized = self._oversized_changes(old)
        args = [
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            "--no-relative",
            IGNORE_NO_SUBMODULES,
            old,
            self.head_sha,
            "--",
            *(f":(top,exclude,literal){os.fsdecode(change.path)}" for change in oversized),
        ]
        with self.runner.stream(args, timeout=self.limits.diff_timeout) as out:
            yield itertools.chain(
                iter_file_diffs(out, limits), (change.as_file_diff() for change in oversized)
            )

    def _oversized_changes(self, old: str) -> list[_RawChange]:
        """Changed paths with a blob over the diff cap, found from object headers only."""
        raw = self.runner.run(
            [
                "diff",
                "--raw",
                "-z",
                "--no-renames",
                "--no-abbrev",
                IGNORE_NO_SUBMODULES,
                old,
                self.head_sha,
                "--",
            ],
            timeout=self.limits.diff_timeout,
        ).stdout
        changes = _parse_raw_diff(raw)
        blobs = {
            oid
            for change in changes
            for mode, oid in ((change.old_mode, change.old_oid), (change.new_mode, change.new_oid))
            if mode.startswith(("100", "120")) and oid.strip("0")
        }
        if not blobs:
            return []
        sizes = self.runner.run(
            ["cat-file", "--batch-check=%(objectname) %(objectsize)"],
            timeout=self.limits.diff_timeout,
            stdin="".join(f"{oid}\n" for oid in sorted(blobs)).encode("ascii"),
        ).stdout
        cap = self.limits.max_diff_blob_bytes
        too_big: set[str] = set()
        for line in sizes.decode("ascii", "replace").splitlines():
            oid, _, size = line.partition(" ")
            if size.isdigit() and int(size) > cap:
                too_big.add(oid)
        oversized = [c for c in changes if c.old_oid in too_big or c.new_oid in too_big]
        # Each one becomes a pathspec argument: keep the command line far below ARG_MAX.
        if (
            len(oversized) > self.limits.max_oversized_files
            or sum(len(c.path) for c in oversized) > _MAX_EXCLUDED_PATH_BYTES
        ):
            raise WorkspaceError(
                f"too many changed files are over {cap} bytes (at most "
                f"{self.limits.max_oversized_files}, with paths of {_MAX_EXCLUDED_PATH_BYTES} "
                "bytes in all)"
            )
        return oversized


@dataclass(frozen=True, slots=True)
class _RawChange:
    """One record of ``git diff --raw -z --no-renames``."""

    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    status: str
    path: bytes

    def as_file_diff(self) -> FileDiff:
        path = self.path.decode("utf-8", "surrogateescape")
        added, deleted = self.status == "A", self.status == "D"
        return FileDiff(
            old_path=None if added else path,
            new_path=None if deleted else path,
            status=(
                FileStatus.ADDED
                if added
                else FileStatus.DELETED
                if deleted
                else FileStatus.MODIFIED
            ),
            old_mode=None if added else self.old_mode,
            new_mode=None if deleted else self.new_mode,
            is_binary=True,
            truncated=True,
        )


def _parse_raw_diff(raw: bytes) -> list[_RawChange]:
    fields = raw.split(b"\0")
    changes = []
    for header, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = header.decode("ascii", "replace").lstrip(":").split(" ")
        if len(parts) != 5:
            raise WorkspaceError("unexpected output from git diff --raw")
        old_mode, new_mode, old_oid, new_oid, status = parts
        changes.append(_RawChange(old_mode, new_mode, old_oid, new_oid, status[:1], path))
    return changes


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
        raise WorkspaceTooLarge(f"checked-out tree exceeds {limits.max_tree_bytes} bytes")
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
