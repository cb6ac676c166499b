"""Test oracles for the diff parser: a hunk applier and real git on a scratch repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.git_env import isolated_git_env

from auto_review.review.diff.model import FileDiff


class ApplyMismatch(AssertionError):
    pass


def apply_file_diff(old: bytes, file_diff: FileDiff) -> bytes:
    """Rebuild the new file from the old one and the parsed hunks (checks every old line)."""
    old_lines = old.split(b"\n")
    old_final_newline = old.endswith(b"\n") or not old
    if old.endswith(b"\n"):
        old_lines.pop()
    if not old:
        old_lines = []
    out: list[bytes] = []
    pos = 0
    final_newline = old_final_newline
    for hunk in file_diff.hunks:
        start = hunk.old_start - 1 if hunk.old_count else hunk.old_start
        if start < pos:
            raise ApplyMismatch(f"hunk at old line {hunk.old_start} overlaps the previous one")
        out.extend(old_lines[pos:start])
        pos = start
        for raw in hunk.lines:
            kind, text = raw[:1], raw[1:]
            if kind in (b" ", b"-"):
                if pos >= len(old_lines) or old_lines[pos] != text:
                    raise ApplyMismatch(f"old line {pos + 1} does not match the hunk")
                pos += 1
            if kind in (b" ", b"+"):
                out.append(text)
        if pos == len(old_lines):
            final_newline = not hunk.new_missing_newline
    out.extend(old_lines[pos:])
    if not out:
        return b""
    return b"\n".join(out) + (b"\n" if final_newline else b"")


def scratch_env(home: Path) -> dict[str, str]:
    return isolated_git_env(home, path="/usr/bin:/bin")


class ScratchRepo:
    """A throwaway repository: write files, commit, and ask git for diffs and numbers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = scratch_env(root)
        self.git("init", "-q")

    def git(self, *args: str | bytes) -> bytes:
        return subprocess.run(
            ["git", *args],
            cwd=self.root,
            env=self.env,
            check=True,
            capture_output=True,
        ).stdout

    def write(self, name: bytes, content: bytes | None) -> None:
        path = self.root / name.decode("utf-8", "surrogateescape")
        if content is None:
            if path.exists():
                path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def commit(self, message: str = "c") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").decode().strip()

    def diff(self, old: str, new: str, *extra: str) -> bytes:
        return self.git("diff", "--no-color", "--no-ext-diff", *extra, old, new, "--")

    def numstat(self, old: str, new: str) -> dict[str, tuple[int, int]]:
        out = self.git("diff", "--numstat", "-z", "--no-renames", old, new, "--")
        result = {}
        for record in out.split(b"\0"):
            if record:
                added, deleted, name = record.split(b"\t", 2)
                result[name.decode("utf-8", "surrogateescape")] = (int(added), int(deleted))
        return result
