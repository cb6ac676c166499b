"""Time and size caps on real git processes."""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from tests.integration.review.hostile_repo import git

from auto_review.review.diff.model import FileStatus
from auto_review.review.workspace.checkout import (
    FetchRequest,
    Workspace,
    WorkspaceError,
    WorkspaceLimits,
    open_workspace,
)
from auto_review.review.workspace.gitenv import GitPolicy, GitRunner, GitTimeout

FILE_OK = GitPolicy(allow_file_protocol=True)


def _git_processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(pid))
    return found


def test_timeout_kills_the_git_process_group(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    fifo = tmp_path / "never-written-fifo"
    os.mkfifo(fifo)  # opening it for reading blocks forever: git hangs
    runner = GitRunner(home=home, git_dir=tmp_path / "g")
    runner.run(["init", "--quiet", "--bare"], timeout=30)
    started = time.monotonic()
    with pytest.raises(GitTimeout, match=r"time limit of 0\.5s"):
        runner.run(["hash-object", str(fifo)], timeout=0.5)
    assert time.monotonic() - started < 10
    assert _git_processes_mentioning(str(fifo)) == []


def _repo_with_file(tmp_path: Path, name: str, content: bytes) -> tuple[Path, str]:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    (origin / name).write_bytes(content)
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "big")
    return origin, git(origin, "rev-parse", "HEAD")


def _jobs_dir(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    return jobs


def _open_local_head(
    origin: Path, head: str, jobs: Path, limits: WorkspaceLimits
) -> AbstractContextManager[Workspace]:
    """A workspace of ``head`` fetched from the local ``origin`` repository under ``limits``."""
    return open_workspace(
        FetchRequest(url=origin.as_uri(), head_sha=head),
        parent=jobs,
        policy=FILE_OK,
        limits=limits,
    )


def test_fetch_over_the_object_size_cap_fails_and_cleans_up(tmp_path: Path) -> None:
    origin, head = _repo_with_file(tmp_path, "random.bin", os.urandom(6 * 1024 * 1024))
    jobs = _jobs_dir(tmp_path)
    limits = WorkspaceLimits(max_git_bytes=1024 * 1024)
    with (
        pytest.raises(WorkspaceError, match="size cap of 1048576 bytes"),
        _open_local_head(origin, head, jobs, limits),
    ):
        pass
    assert os.listdir(jobs) == []


def test_checkout_over_the_tree_size_cap_fails(tmp_path: Path) -> None:
    # 40 MB of zeros packs into a few KB: only the checkout reveals the size.
    origin, head = _repo_with_file(tmp_path, "zeros.bin", bytes(40 * 1024 * 1024))
    jobs = _jobs_dir(tmp_path)
    limits = WorkspaceLimits(max_tree_bytes=8 * 1024 * 1024)
    with (
        pytest.raises(WorkspaceError, match="8388608 bytes"),
        _open_local_head(origin, head, jobs, limits),
    ):
        pass
    assert os.listdir(jobs) == []


def test_within_caps_the_same_repository_is_fetched(tmp_path: Path) -> None:
    origin, head = _repo_with_file(tmp_path, "zeros.bin", bytes(2 * 1024 * 1024))
    jobs = _jobs_dir(tmp_path)
    limits = WorkspaceLimits(max_tree_bytes=8 * 1024 * 1024)
    with _open_local_head(origin, head, jobs, limits) as ws:
        assert (ws.tree / "zeros.bin").stat().st_size == 2 * 1024 * 1024


def test_diff_leaves_oversized_blobs_out_of_the_patch(tmp_path: Path) -> None:
    # Zeros compress to almost nothing, so only blob sizes tell how much git diff would load.
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "small.txt").write_text("one\n")
    (origin / "old-big.bin").write_bytes(bytes(3 * 1024 * 1024))
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "base")
    base = git(origin, "rev-parse", "HEAD")
    (origin / "small.txt").write_text("one\ntwo\n")
    git(origin, "mv", "old-big.bin", "moved-big.bin")
    (origin / "esc\x1b big.bin").write_bytes(bytes(2 * 1024 * 1024) + b"x")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "head")
    head = git(origin, "rev-parse", "HEAD")
    jobs = _jobs_dir(tmp_path)
    limits = WorkspaceLimits(max_diff_blob_bytes=1024 * 1024)
    request = FetchRequest(url=origin.as_uri(), head_sha=head, merge_base_sha=base)
    with open_workspace(request, parent=jobs, policy=FILE_OK, limits=limits) as ws:
        with ws.diff() as files:
            by_path = {f.path: f for f in files}
        assert by_path["small.txt"].changed_lines() == {2}  # small files keep their hunks
        oversized = {path: f for path, f in by_path.items() if path != "small.txt"}
        # No rename pairing for blobs git never loaded: a deletion and an addition.
        assert {(p, f.status) for p, f in oversized.items()} == {
            ("old-big.bin", FileStatus.DELETED),
            ("moved-big.bin", FileStatus.ADDED),
            ("esc\x1b big.bin", FileStatus.ADDED),
        }
        assert all(f.is_binary and f.truncated and not f.hunks for f in oversized.values())

        with ws.diff(since=head) as files:
            assert list(files) == []  # `since` moves the start of the range
        with pytest.raises(WorkspaceError, match="commit id"), ws.diff(since="HEAD~1"):
            pass

    few = WorkspaceLimits(max_diff_blob_bytes=1024 * 1024, max_oversized_files=2)
    with (
        open_workspace(request, parent=jobs, policy=FILE_OK, limits=few) as ws,
        pytest.raises(WorkspaceError, match="too many changed files are over 1048576 bytes"),
        ws.diff(),
    ):
        pass
    assert os.listdir(jobs) == []
