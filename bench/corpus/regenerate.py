"""Rebuild each fixture's ``pr.patch`` from its ``before/`` and ``after/`` trees with real git.

Usage:
    python3 bench/corpus/regenerate.py            # rewrite every fixture's pr.patch
    python3 bench/corpus/regenerate.py --check    # exit 1 if a stored patch is stale
    python3 bench/corpus/regenerate.py 03-path-traversal-go

The patch is what a forge serves for a pull request: ``before/`` is committed, then the tree is
replaced by ``after/`` and committed, and the two commits are diffed. Git runs with no system
or user configuration and a fixed identity, and blob ids are printed in full, so the bytes
depend only on the trees.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent
PATCH_NAME = "pr.patch"

_GIT_CONFIG = (
    "init.defaultBranch=main",
    "core.autocrlf=false",
    "core.filemode=true",
    "core.quotepath=true",
    "diff.renames=true",
    "diff.noprefix=false",
    "diff.mnemonicprefix=false",
    "commit.gpgsign=false",
)


def fixture_dirs(corpus: Path = CORPUS_DIR) -> list[Path]:
    """Every fixture directory (one holding a pr.yaml), sorted by name."""
    return sorted(path.parent for path in corpus.glob("*/pr.yaml"))


def _git_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "corpus",
        "GIT_AUTHOR_EMAIL": "corpus@example.invalid",
        "GIT_COMMITTER_NAME": "corpus",
        "GIT_COMMITTER_EMAIL": "corpus@example.invalid",
        "LC_ALL": "C",
    }


def _replace_tree(work: Path, source: Path) -> None:
    """Make ``work`` (minus .git) an exact copy of ``source`` (which may be absent)."""
    for entry in work.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if source.is_dir():
        shutil.copytree(source, work, symlinks=True, dirs_exist_ok=True)


def build_patch(fixture: Path) -> bytes:
    """The unified diff from the fixture's before/ tree to its after/ tree."""
    if not (fixture / "after").is_dir():
        raise FileNotFoundError(f"{fixture.name}: no after/ tree")
    with tempfile.TemporaryDirectory(prefix="ar-corpus-") as tmp:
        work = Path(tmp) / "repo"
        work.mkdir()
        env = _git_env(tmp)
        config = [arg for pair in _GIT_CONFIG for arg in ("-c", pair)]

        def git(*args: str) -> bytes:
            return subprocess.run(
                ["git", *config, *args], cwd=work, env=env, check=True, capture_output=True
            ).stdout

        git("init", "--quiet")
        for side in ("before", "after"):
            _replace_tree(work, fixture / side)
            git("add", "--all")
            git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", side)
        return git(
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            "--full-index",
            "HEAD~1",
            "HEAD",
            "--",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="fixture directory names (default: all)")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="default: this directory")
    args = parser.parse_args(argv)
    fixtures = fixture_dirs(args.corpus)
    if args.names:
        fixtures = [f for f in fixtures if f.name in set(args.names)]
        missing = set(args.names) - {f.name for f in fixtures}
        if missing:
            print(f"no such fixture: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    stale = []
    for fixture in fixtures:
        patch = build_patch(fixture)
        stored = fixture / PATCH_NAME
        if args.check:
            if not stored.is_file() or stored.read_bytes() != patch:
                stale.append(fixture.name)
        else:
            stored.write_bytes(patch)
    for name in stale:
        print(f"stale: {name}/{PATCH_NAME}", file=sys.stderr)
    if not args.check:
        print(f"wrote {len(fixtures)} patches")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
