"""Fixtures shared by the forge review tests: a real pull-request diff made by git."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.git_env import isolated_git_env


@dataclass(frozen=True)
class PullDiff:
    """A diff between two real commits, and what a reviewer may comment on in it."""

    diff: bytes
    base_sha: str
    head_sha: str
    changed_new_line: tuple[str, int]  # (path, line) of an added line
    removed_old_line: tuple[str, int]  # (path, line) of a removed line
    unchanged_line: tuple[str, int]  # (path, line) outside every hunk


def _git(repo: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def pull_diff(tmp_path_factory: pytest.TempPathFactory) -> PullDiff:
    """base -> head touching every kind of change: a modified file (lines 3 and 30 of 40
    replaced), an added file, a deleted file, a rename with an edit, a mode change, and a
    path with a space in a sub-directory."""
    root = tmp_path_factory.mktemp("pr-diff")
    repo, home = root / "repo", root / "home"
    repo.mkdir()
    home.mkdir()
    env = isolated_git_env(home, path=os.environ.get("PATH", "/usr/bin:/bin"))
    _git(repo, env, "init", "-q", "-b", "main")
    lines = [f"line {n}" for n in range(1, 41)]
    (repo / "app.py").write_text("\n".join(lines) + "\n")
    (repo / "old_name.txt").write_text("alpha\nbeta\ngamma\n")
    (repo / "gone.txt").write_text("bye\n")
    (repo / "run.sh").write_text("echo hi\n")
    (repo / "docs dir").mkdir()
    (repo / "docs dir" / "read me.md").write_text("# title\n")
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-q", "-m", "base")
    base = _git(repo, env, "rev-parse", "HEAD")

    lines[2] = "line 3 changed"
    lines[29] = "line 30 changed"
    (repo / "app.py").write_text("\n".join(lines) + "\n")
    _git(repo, env, "mv", "old_name.txt", "new_name.txt")
    (repo / "new_name.txt").write_text("alpha\nbeta\ngamma\ndelta\n")
    _git(repo, env, "rm", "-q", "gone.txt")
    (repo / "added.py").write_text("print('new')\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "docs dir" / "read me.md").write_text("# title\n\nmore\n")
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-q", "-m", "head")
    head = _git(repo, env, "rev-parse", "HEAD")
    diff = subprocess.run(
        ["git", "diff", "-M", base, head], cwd=repo, env=env, check=True, capture_output=True
    ).stdout
    return PullDiff(
        diff=diff,
        base_sha=base,
        head_sha=head,
        changed_new_line=("app.py", 30),
        removed_old_line=("app.py", 3),
        unchanged_line=("app.py", 20),
    )
