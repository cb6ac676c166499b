"""`auto-review version [--verbose]`: what is running, and from where.

  auto-review version            auto-review 0.1.0
  auto-review version --verbose  also: the source commit, the Python running it, and how it
                                 is installed

How it runs, decided from where the ``auto_review`` package was imported:

- ``single file``: a frozen executable (``sys.frozen``: the PyInstaller build that the
  single file of ``scripts/build-release`` unpacks into its cache and runs), named by the
  file's path (``isolation/outer/frozen.py``);
- ``editable checkout``: the package is a source tree's ``src/auto_review`` (the directory
  above ``src`` holds auto-review's ``pyproject.toml``): an editable install or ``PYTHONPATH``;
- ``installed package``: anything else (a wheel installed by pip, pipx or uv), with the
  installer its metadata names.

The commit comes from ``build_info.json`` beside the package when the build recorded one
(``scripts/build-release`` puts it in the single file and in the wheel beside it), else from
``git`` in a checkout (``+modified`` when tracked files differ from it), else ``unknown``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

import auto_review
from auto_review.cli.parsing import ArgumentParser
from auto_review.isolation.outer.frozen import single_file

BUILD_INFO_NAME = "build_info.json"
GIT_TIMEOUT_SECONDS = 10
SINGLE_FILE, EDITABLE, INSTALLED = "single file", "editable checkout", "installed package"


@dataclass(frozen=True, slots=True)
class Running:
    """How this auto-review runs: ``kind`` is one of the three names above."""

    kind: str
    location: str  # the executable file, the checkout, or the directory holding the package
    commit: str
    commit_source: str  # "recorded at build", "git", or "" when unknown
    installer: str = ""


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(auto_review.__file__))


def recorded_build(directory: str) -> dict[str, object]:
    """``build_info.json`` beside the package, or an empty record when there is none."""
    try:
        with open(os.path.join(directory, BUILD_INFO_NAME), encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def checkout_of(directory: str) -> str | None:
    """The source tree ``directory`` (a package dir) belongs to: ``<tree>/src/auto_review``."""
    source = os.path.dirname(directory)
    tree = os.path.dirname(source)
    if os.path.basename(source) != "src":
        return None
    try:
        with open(os.path.join(tree, "pyproject.toml"), encoding="utf-8") as handle:
            if 'name = "auto-review"' not in handle.read():
                return None
    except OSError:
        return None
    return tree


def git_commit(tree: str) -> str | None:
    """HEAD of the checkout, ``+modified`` when tracked files differ; None without git."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": tree}  # fmt: skip
    try:
        head = subprocess.run(
            ["git", "-C", tree, "rev-parse", "--verify", "HEAD"], env=env, capture_output=True,
            text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
        if head.returncode != 0:
            return None
        changes = subprocess.run(
            ["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"], env=env,
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    return commit + "+modified" if changes.returncode == 0 and changes.stdout.strip() else commit


def installer_of(directory: str) -> str:
    """The installer the package's metadata names, if that metadata is this package's."""
    try:
        found = metadata.distribution("auto-review")
    except metadata.PackageNotFoundError:
        return ""
    if os.path.realpath(str(found.locate_file("auto_review"))) != os.path.realpath(directory):
        return ""  # another copy's metadata (e.g. an editable install shadowed by PYTHONPATH)
    return (found.read_text("INSTALLER") or "").strip()


def describe_running(directory: str, frozen: bool, executable: str) -> Running:
    recorded = recorded_build(directory)
    commit = recorded.get("commit")
    if isinstance(commit, str) and commit:
        found, source = commit, "recorded at build"
    else:
        found, source = "unknown", ""
    if frozen:
        return Running(SINGLE_FILE, executable, found, source)
    tree = checkout_of(directory)
    if tree is not None:
        if not source:
            from_git = git_commit(tree)
            if from_git:
                found, source = from_git, "git"
        return Running(EDITABLE, tree, found, source)
    return Running(INSTALLED, os.path.dirname(directory), found, source, installer_of(directory))


def verbose_lines(running: Running) -> list[str]:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    how = f"{running.kind} ({running.location})"
    if running.installer:
        how += f", installed by {running.installer}"
    commit = running.commit + (f" ({running.commit_source})" if running.commit_source else "")
    return [f"commit: {commit}", f"python: {python} ({sys.executable})", f"runs as: {how}"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review version", description="Print the version.")
    parser.add_argument(
        "--verbose", action="store_true",
        help="also the source commit, the Python running it and how it is installed "
        "[default: the version only]",
    )  # fmt: skip
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    print(f"auto-review {auto_review.__version__}")
    if args.verbose:
        frozen = bool(getattr(sys, "frozen", False))
        running = describe_running(package_dir(), frozen, single_file() if frozen else "")
        for line in verbose_lines(running):
            print(line)
    return 0
