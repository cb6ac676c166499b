"""Path guard and comment anchors: where on a forge an inline comment for (path, line) goes.

Only lines the pull request added or modified (``+`` lines) are commentable; context lines,
removed lines, binary files and lines in hunks dropped by the parser's caps are not, so a
finding about anything else is refused rather than posted at a wrong place.

Anchors, per forge API:

* Forgejo / Gitea, ``CreatePullReviewComment``: ``new_position`` is the line number in the new
  file (``old_position`` 0 means "not on the old side").
* GitHub, review comments: ``line`` is the line number in the new file and ``side`` is
  ``"RIGHT"`` (the new version of the file).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from auto_review.review.diff.model import FileDiff
from auto_review.review.diff.paths import PathIndex


class Forge(StrEnum):
    FORGEJO = "forgejo"
    GITEA = "gitea"
    GITHUB = "github"


class NotCommentable(LookupError):
    """The line is not one the pull request changed; no comment may be anchored there."""


@dataclass(frozen=True, slots=True)
class CommentAnchor:
    path: str
    line: int  # 1-based line number in the new file

    def for_forge(self, forge: Forge) -> dict[str, object]:
        """The location fields of a review comment in the forge's own API shape."""
        if forge in (Forge.FORGEJO, Forge.GITEA):
            return {"path": self.path, "new_position": self.line, "old_position": 0}
        if forge is Forge.GITHUB:
            return {"path": self.path, "line": self.line, "side": "RIGHT"}
        raise ValueError(f"unknown forge {forge!r}")


class ChangedLines:
    """Index of a diff's files by new path, answering the path guard."""

    def __init__(self, files: Iterable[FileDiff]) -> None:
        self._files: dict[str, FileDiff] = {}
        for file_diff in files:
            if file_diff.new_path is not None and not file_diff.is_binary:
                self._files[file_diff.new_path] = file_diff
        self._index: PathIndex | None = None

    def paths(self) -> list[str]:
        return sorted(self._files)

    def resolve(self, written: str) -> str | None:
        """The real path of a changed text file that ``written`` (a model's path) names:
        ``./`` dropped, escaped names mapped back to their bytes; None when it names no
        such file, is absolute or holds ``..`` (see :class:`PathIndex`)."""
        if self._index is None:
            self._index = PathIndex(self._files)
        return self._index.resolve(written)

    def is_changed(self, path: str, line: int) -> bool:
        file_diff = self._files.get(path)
        return file_diff is not None and file_diff.is_changed(line)

    def anchor(self, path: str, line: int) -> CommentAnchor:
        """An anchor for a changed line; :class:`NotCommentable` for anything else."""
        if isinstance(line, bool) or not isinstance(line, int) or line < 1:
            raise NotCommentable("line must be a positive integer")
        if path not in self._files:
            raise NotCommentable("the path is not a text file changed by the pull request")
        if not self._files[path].is_changed(line):
            raise NotCommentable(f"line {line} of the file was not changed by the pull request")
        return CommentAnchor(path, line)
