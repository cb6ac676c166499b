"""A 1 GiB sparse file committed in a pull request: about 5 MB on the wire, 1 GiB on checkout.

The caps must hold at every step: the tree cap refuses the checkout when it is below 1 GiB,
the confined tools refuse or skip the file without reading it, the diff leaves it out of
git's patch (git would otherwise load the whole blob), and neither this process nor any git
child grows by anything near the file's size. Memory is measured, never time.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.integration.review.hostile_repo import clean_env, git

from auto_review.review.diff.model import FileStatus
from auto_review.review.workspace.checkout import (
    FetchRequest,
    WorkspaceError,
    WorkspaceLimits,
    open_workspace,
)
from auto_review.review.workspace.confined import ConfinementError, ConfinementLimits
from auto_review.review.workspace.gitenv import GitPolicy

FILE_OK = GitPolicy(allow_file_protocol=True)
MIB = 1024 * 1024
GIB = 1024 * MIB
HUGE = "huge.bin"
NOTES_LINES = 5000
# A bound on memory growth, far below the file's size: a sign that nothing read it whole.
MEMORY_BOUND = 200 * MIB


@dataclass(frozen=True)
class SparseRepo:
    origin: Path
    base: str
    head: str
    stored_bytes: int  # what the 1 GiB file costs in the repository

    def request(self) -> FetchRequest:
        return FetchRequest(
            url=self.origin.as_uri(),
            head_sha=self.head,
            head_ref="refs/pull/1/head",
            merge_base_sha=self.base,
        )


def _stored_bytes(git_dir: Path) -> int:
    return sum(path.stat().st_size for path in (git_dir / "objects").rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def sparse_repo(tmp_path_factory: pytest.TempPathFactory) -> SparseRepo:
    # Built once per run: hashing and compressing 1 GiB of zeros takes a few seconds.
    origin = tmp_path_factory.mktemp("sparse") / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("a repository with a very large file\n")
    notes = "".join(f"line {n}: zero page\n" for n in range(1, NOTES_LINES + 1))
    (origin / "notes.txt").write_text(notes)
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "base")
    base = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-qb", "feature")
    huge = origin / HUGE
    with huge.open("wb") as handle:
        handle.truncate(GIB)  # `truncate -s 1G`: no block is written
    git(origin, "-c", "core.compression=1", "add", HUGE)
    git(origin, "commit", "-qm", "add a 1 GiB file of zeros")
    head = git(origin, "rev-parse", "HEAD")
    git(origin, "update-ref", "refs/pull/1/head", head)
    git(origin, "checkout", "-q", "main")  # removes the 1 GiB file from the origin's tree
    assert not huge.exists()
    return SparseRepo(origin, base, head, _stored_bytes(origin / ".git"))


def _jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    return jobs


def write_rss_recorder(path: Path, log: Path) -> None:
    """A `git` that runs the real one and appends "<subcommand> <peak RSS in KiB>" to ``log``.

    ``wait4`` reports the peak of the child and of every process it waited for, so a fetch
    counts its upload-pack and index-pack too.
    """
    real_git = shutil.which("git")
    assert real_git is not None
    path.write_text(
        "#!/usr/bin/python3 -I\n"
        "import os, sys\n"
        f"pid = os.posix_spawn({real_git!r}, ['git', *sys.argv[1:]], os.environ)\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "words = [a for a in sys.argv[1:] if a[:1] not in '-/' and '=' not in a]\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        "    out.write(f'{words[0] if words else \"?\"} {usage.ru_maxrss}\\n')\n"
        "code = os.waitstatus_to_exitcode(status)\n"
        "sys.exit(code if code >= 0 else 128 - code)\n"
    )
    path.chmod(0o755)


def _peaks(log: Path) -> dict[str, int]:
    """Peak RSS in bytes per git subcommand."""
    peaks: dict[str, int] = {}
    for line in log.read_text().splitlines():
        name, kib = line.rsplit(" ", 1)
        peaks[name] = max(peaks.get(name, 0), int(kib) * 1024)
    return peaks


def test_the_file_is_cheap_to_send(sparse_repo: SparseRepo) -> None:
    # The premise of the attack: a 1 GiB file costs the sender almost nothing.
    assert sparse_repo.stored_bytes < 16 * MIB
    size = git(sparse_repo.origin, "cat-file", "-s", f"{sparse_repo.head}:{HUGE}")
    assert int(size) == GIB


def test_tree_cap_below_the_file_refuses_the_job_and_removes_it(
    sparse_repo: SparseRepo, tmp_path: Path
) -> None:
    jobs = _jobs(tmp_path)
    limits = WorkspaceLimits(max_tree_bytes=512 * MIB)
    with (
        pytest.raises(WorkspaceError, match=f"{512 * MIB} bytes"),
        open_workspace(sparse_repo.request(), parent=jobs, policy=FILE_OK, limits=limits),
    ):
        pass
    assert os.listdir(jobs) == []


def test_default_caps_keep_tools_git_and_this_process_bounded(
    sparse_repo: SparseRepo, tmp_path: Path
) -> None:
    jobs = _jobs(tmp_path)
    recorder, rss_log = tmp_path / "git-rss", tmp_path / "git-rss.log"
    write_rss_recorder(recorder, rss_log)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open_workspace(
        sparse_repo.request(), parent=jobs, policy=FILE_OK, git=str(recorder)
    ) as ws:
        job_dir = ws.job_dir
        # The default tree cap (2 GiB) admits the file; the tools must cope with it.
        assert (ws.tree / HUGE).stat().st_size == GIB
        tracemalloc.start()
        try:
            confined = ws.confined()
            for lines in ((1, None), (1, 1), (100, 200)):
                with pytest.raises(ConfinementError, match=r"1073741824 bytes, over the 2097152"):
                    confined.read_file(HUGE, *lines)

            found = confined.search("zero page")
            assert found.truncated and found.reason == "match limit of 200 reached"
            assert len(found.matches) == 200
            assert {match.path for match in found.matches} == {"notes.txt"}
            assert found.files_scanned == 2  # README.md and notes.txt; the huge file skipped

            # Even with a per-file cap above 1 GiB, the search's byte budget stops before the
            # file is read rather than after.
            roomy = ws.confined(
                ConfinementLimits(max_file_bytes=2 * GIB, max_search_bytes=64 * MIB)
            )
            stopped = roomy.search("zero page")
            assert stopped.truncated and stopped.reason == f"byte limit of {64 * MIB} reached"

            piece = confined.read_file("notes.txt")
            assert piece.truncated and (piece.start, piece.end) == (1, 400)
            assert len(piece.text.encode()) <= 64 * 1024
            assert piece.total_lines == NOTES_LINES

            with ws.diff() as files:
                by_path = {file_diff.path: file_diff for file_diff in files}
            _, python_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        huge = by_path[HUGE]
        assert huge.status is FileStatus.ADDED and huge.is_binary and huge.truncated
        assert huge.hunks == []
    assert not job_dir.exists()  # the 1 GiB checkout is gone with the job
    assert os.listdir(jobs) == []

    assert python_peak < 16 * MIB
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert rss_after - rss_before < MEMORY_BOUND
    peaks = _peaks(rss_log)
    assert {"fetch", "checkout", "diff", "cat-file"} <= set(peaks)
    assert max(peaks.values()) < MEMORY_BOUND, peaks


def test_control_an_unfiltered_git_diff_loads_the_whole_blob(
    sparse_repo: SparseRepo, tmp_path: Path
) -> None:
    # Why the workspace filters the diff: plain `git diff` of the same range reads the added
    # 1 GiB blob into memory. Also shows the RSS recorder sees such growth.
    recorder, rss_log = tmp_path / "git-rss", tmp_path / "git-rss.log"
    write_rss_recorder(recorder, rss_log)
    subprocess.run(
        [str(recorder), "diff", "--no-color", sparse_repo.base, sparse_repo.head, "--"],
        cwd=sparse_repo.origin,
        env=clean_env(sparse_repo.origin),
        check=True,
        capture_output=True,
    )
    assert _peaks(rss_log)["diff"] > 512 * MIB
