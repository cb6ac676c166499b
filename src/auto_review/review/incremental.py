"""Incremental review: after a new push, only what changed since the last reviewed commit.

The PR diff (base to head) stays the reference for what may be commented on; the diff
from the last reviewed commit to the head narrows it. A hunk of the PR diff is reviewed
again only when one of its added lines changed since then, and a finding may only land
on a line that is both changed by the PR and changed since the last review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from auto_review.review.diff.model import FileDiff
from auto_review.review.diff.positions import ChangedLines, CommentAnchor, NotCommentable


class ChangedSinceLastReview(ChangedLines):
    """The path guard of an incremental review: PR-changed lines that are also new."""

    def __init__(self, pr_files: Iterable[FileDiff], since_files: Iterable[FileDiff]) -> None:
        super().__init__(pr_files)
        self._since = ChangedLines(since_files)

    def paths(self) -> list[str]:
        since = set(self._since.paths())
        return [path for path in super().paths() if path in since]

    def is_changed(self, path: str, line: int) -> bool:
        return self._since.is_changed(path, line) and super().is_changed(path, line)

    def anchor(self, path: str, line: int) -> CommentAnchor:
        if not self._since.is_changed(path, line):
            raise NotCommentable("the line did not change since the last review")
        return super().anchor(path, line)


def new_hunks_only(pr_files: Sequence[FileDiff], since_files: Iterable[FileDiff]) -> list[FileDiff]:
    """The PR's files cut down to the hunks holding a line changed since the last review;
    files without such a hunk are left out."""
    since = ChangedLines(since_files)
    narrowed: list[FileDiff] = []
    for file_diff in pr_files:
        path = file_diff.new_path
        if path is None or file_diff.is_binary:
            continue
        hunks = [
            hunk
            for hunk in file_diff.hunks
            if any(since.is_changed(path, line) for line in hunk.added_line_numbers())
        ]
        if hunks:
            narrowed.append(dataclasses.replace(file_diff, hunks=hunks, _changed=None))
    return narrowed
