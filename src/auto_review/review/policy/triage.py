"""Deterministic triage: which changed files go to the model, and whether a PR is skipped.

Per file, the first rule that applies gives the skip reason:

1. deleted files, and binary files (nothing to read);
2. path rules, evaluated like one gitignore file: the built-in rules (lock files, vendored
   directories, generated file names) first, then the repository's ``ignore`` patterns, the
   last matching pattern deciding, so ``!vendor/`` in the repository's list re-includes a
   vendored directory the project maintains itself;
3. files with no added lines (only deletions, a pure rename or a mode change);
4. a generated-file marker in the first lines (``// Code generated ... DO NOT EDIT.``,
   ``@generated``, a line saying "generated" and "do not edit"). For a file that existed
   before the PR the marker must be an unchanged line: a PR cannot hide new code from review
   by adding a marker to an existing file. A path re-included by a ``!`` pattern skips this
   check.

Triage reduces noise; it is not a security boundary. Every skipped file keeps its reason, so
the review summary can list what was not read.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from auto_review.hosts.review_types import PullRequestDetails
from auto_review.review.diff.model import FileDiff, FileStatus, LineKind
from auto_review.review.policy.ignore_patterns import compile_ignore_pattern
from auto_review.review.policy.repo_config import CONFIG_FILE_NAME, RepoConfig
from auto_review.review.workspace.confined import ConfinedTree, ConfinementError

MARKER_LINES = 5

LOCK_FILES = (
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "deno.lock",
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "uv.lock",
    "Cargo.lock",
    "go.sum",
    "go.work.sum",
    "Gemfile.lock",
    "composer.lock",
    "mix.lock",
    "pubspec.lock",
    "Podfile.lock",
    "packages.lock.json",
    "gradle.lockfile",
    "flake.lock",
    "Package.resolved",
    ".terraform.lock.hcl",
)
VENDORED_DIRS = ("vendor/", "third_party/", "third-party/", "node_modules/", "bower_components/")
GENERATED_NAMES = (
    "*.min.js",
    "*.min.css",
    "*.js.map",
    "*.css.map",
    "*.pb.go",
    "*.pb.gw.go",
    "*_pb2.py",
    "*_pb2.pyi",
    "*_pb2_grpc.py",
    "*.pb.h",
    "*.pb.cc",
    "*.g.dart",
    "*.freezed.dart",
)
BUILTIN_RULES: tuple[tuple[str, str], ...] = (
    *((name, "lock file") for name in LOCK_FILES),
    *((directory, "vendored code") for directory in VENDORED_DIRS),
    *((name, "generated file (by name)") for name in GENERATED_NAMES),
)

_LOCK_NAMES = frozenset(LOCK_FILES)
# Every generated-name pattern is "*" plus a literal suffix.
_GENERATED_SUFFIXES = tuple((name[1:], name) for name in reversed(GENERATED_NAMES))
_GO_GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$")
_DOC_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc", ".asciidoc")
# Files where leading whitespace is syntax: re-indenting is a code change there.
_INDENT_SYNTAX = (".py", ".pyi", ".yaml", ".yml", ".nim", ".coffee", ".sass", ".pug", ".haml")
_INDENT_NAMES = ("Makefile", "GNUmakefile", "makefile")
TYPO_MAX_LINES = 5
TYPO_MIN_SIMILARITY = 0.8
TYPO_MAX_LINE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(slots=True)
class Triage:
    reviewable: list[FileDiff] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def triage_files(
    files: Iterable[FileDiff], config: RepoConfig, *, tree: ConfinedTree | None = None
) -> Triage:
    """Split the files into reviewable and skipped (with a reason). ``tree`` (the PR head
    checkout) lets the marker check see first lines the diff does not show."""
    result = Triage()
    for file_diff in files:
        reason = file_skip_reason(file_diff, config, tree=tree)
        if reason is None:
            result.reviewable.append(file_diff)
        else:
            result.skipped.append(SkippedFile(file_diff.path, reason))
    return result


def file_skip_reason(
    file_diff: FileDiff, config: RepoConfig, *, tree: ConfinedTree | None = None
) -> str | None:
    if file_diff.status is FileStatus.DELETED or file_diff.new_path is None:
        return "deleted"
    if file_diff.is_binary:
        return "binary file"
    path_reason, forced = _path_rule(file_diff.path, config.ignore)
    if path_reason is not None:
        return path_reason
    if not any(raw[:1] == b"+" for hunk in file_diff.hunks for raw in hunk.lines):
        if file_diff.status is FileStatus.RENAMED and not file_diff.hunks:
            return "renamed without changes"
        if file_diff.mode_changed and not file_diff.hunks:
            return "mode change only"
        return "no added lines (deletions only)"
    if not forced:
        marker = _generated_marker(file_diff, tree)
        if marker is not None:
            return f"generated file (marker {marker!r})"
    return None


def pr_skip_reason(pr: PullRequestDetails, triage: Triage, config: RepoConfig) -> str | None:
    """Why the whole PR is not reviewed, or None. Labels and authors compare without case."""
    if not config.enabled:
        return f"reviews are turned off by {CONFIG_FILE_NAME} (enabled: false)"
    if pr.draft and config.skip_drafts:
        return "draft pull request"
    labels = {label.casefold() for label in pr.labels}
    for label in config.skip_labels:
        if label.casefold() in labels:
            return f"label {label!r}"
    authors = {author.casefold() for author in config.skip_authors}
    if pr.author.casefold() in authors:
        return f"author {pr.author!r} is in skip_authors"
    if not triage.reviewable:
        total = len(triage.skipped)
        reason = f"nothing to review: all {total} changed files were skipped by triage"
        counts = Counter(skipped.reason for skipped in triage.skipped).most_common()
        shown = ", ".join(f"{why}: {count}" for why, count in counts[:3])
        more = ", ..." if len(counts) > 3 else ""
        return f"{reason} ({shown}{more})" if counts else reason
    count = len(triage.reviewable)
    if count > config.max_files:
        return f"too many files: {count} reviewable files, over max_files {config.max_files}"
    if not config.review_trivial:
        return trivial_reason(triage.reviewable)
    return None


def trivial_reason(files: list[FileDiff]) -> str | None:
    """Whitespace-only changes, possibly with a few small edits of documentation lines."""
    prose = [f for f in files if not _whitespace_only(f)]
    if not prose:
        return "trivial: whitespace-only changes"
    if not all(f.path.lower().endswith(_DOC_SUFFIXES) for f in prose):
        return None
    edited = 0
    for file_diff in prose:
        if file_diff.old_path is None or file_diff.truncated:
            return None
        for removed, added in _hunk_sides(file_diff):
            if len(removed) != len(added):
                return None
            for old, new in zip(removed, added, strict=True):
                edited += 1
                # Long lines are not typo-sized, and SequenceMatcher is quadratic in length.
                if edited > TYPO_MAX_LINES or max(len(old), len(new)) > TYPO_MAX_LINE_CHARS:
                    return None
                similarity = difflib.SequenceMatcher(None, old, new, autojunk=False).ratio()
                if similarity < TYPO_MIN_SIMILARITY:
                    return None
    return f"trivial: whitespace and documentation typo-size edits ({edited} lines)"


# -- rules -----------------------------------------------------------------------------------


def _path_rule(path: str, repo_patterns: tuple[str, ...]) -> tuple[str | None, bool]:
    """(skip reason, re-included by a ``!`` pattern): the last matching pattern decides."""
    reason, forced = _builtin_reason(path), False
    for source in repo_patterns:
        compiled = compile_ignore_pattern(source)
        if compiled.matches(path):
            if compiled.negated:
                reason, forced = None, True
            else:
                reason, forced = f"ignored by {CONFIG_FILE_NAME} pattern {source!r}", False
    return reason, forced


def _builtin_reason(path: str) -> str | None:
    """BUILTIN_RULES by set and suffix lookups (the same result as matching each pattern,
    the last rule winning: generated names, then vendored directories, then lock files)."""
    *directories, name = path.split("/")
    for suffix, pattern in _GENERATED_SUFFIXES:
        if name.endswith(suffix):
            return f"generated file (by name) ({pattern})"
    for directory in reversed(VENDORED_DIRS):
        if directory[:-1] in directories:
            return f"vendored code ({directory})"
    if name in _LOCK_NAMES:
        return f"lock file ({name})"
    return None


def _generated_marker(file_diff: FileDiff, tree: ConfinedTree | None) -> str | None:
    existed = file_diff.status is not FileStatus.ADDED
    for text, added in _first_lines(file_diff, tree):
        stripped = text.strip()
        marker = _marker_in(stripped)
        if marker is not None and not (added and existed):
            return marker
    return None


def _marker_in(line: str) -> str | None:
    if _GO_GENERATED.match(line):
        return "Code generated ... DO NOT EDIT."
    if "@generated" in line:
        return "@generated"
    lowered = line.lower()
    if "generated" in lowered and "do not edit" in lowered:
        return "generated, do not edit"
    return None


def _first_lines(file_diff: FileDiff, tree: ConfinedTree | None) -> Iterator[tuple[str, bool]]:
    """(text, added by the PR) of the new file's first lines, from the diff when a hunk
    shows them, else from the tree."""
    shown: dict[int, tuple[str, bool]] = {}
    for hunk in file_diff.hunks:
        if hunk.new_start > MARKER_LINES:
            break
        for line in hunk.iter_lines():
            if line.new_line is not None:
                if line.new_line > MARKER_LINES:
                    break
                text = line.text.decode("utf-8", "replace")
                shown[line.new_line] = (text, line.kind is LineKind.ADDED)
    if len(shown) < MARKER_LINES and tree is not None:
        try:
            head = tree.read_file(file_diff.path, 1, MARKER_LINES)
        except ConfinementError:
            head = None
        if head is not None:
            for offset, text in enumerate(head.text.split("\n")):
                shown.setdefault(offset + 1, (text, False))
    for number in sorted(shown):
        yield shown[number]


def _hunk_sides(file_diff: FileDiff) -> Iterator[tuple[list[str], list[str]]]:
    """Per hunk, the removed and the added lines (non-blank, decoded)."""
    for hunk in file_diff.hunks:
        removed: list[str] = []
        added: list[str] = []
        for line in hunk.iter_lines():
            text = line.text.decode("utf-8", "replace").rstrip("\r")
            if not text.strip():
                continue
            if line.kind is LineKind.REMOVED:
                removed.append(text)
            elif line.kind is LineKind.ADDED:
                added.append(text)
        yield removed, added


def _whitespace_only(file_diff: FileDiff) -> bool:
    name = file_diff.path.rsplit("/", 1)[-1]
    keep_indent = name.endswith(_INDENT_SYNTAX) or name in _INDENT_NAMES
    if file_diff.old_path is None or file_diff.truncated:
        return False
    for removed, added in _hunk_sides(file_diff):
        if [_squash(t, keep_indent) for t in removed] != [_squash(t, keep_indent) for t in added]:
            return False
    return True


def _squash(text: str, keep_indent: bool) -> str:
    """Whitespace runs become one space (token boundaries stay), ends are trimmed; the
    indentation is kept where it is syntax."""
    body = " ".join(text.split())
    if keep_indent:
        indent = text[: len(text) - len(text.lstrip())]
        return indent + body
    return body
