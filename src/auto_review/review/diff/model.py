"""Unified diff model and a streaming parser for git-format diffs.

The parser works on bytes, line by line, from a binary file object or any iterable of byte
lines, so a diff of any size is read with bounded memory: every line is capped in length, and
the hunks kept per file are capped by count and by lines (a file past a cap is marked
``truncated``; hunks are either kept whole or not at all, so line numbers always stay right).

What it understands: ``diff --git`` headers and plain ``---``/``+++`` diffs; renames and
copies (with similarity); new and deleted files; mode changes; ``Binary files ... differ``
and ``GIT binary patch`` (marked binary, content skipped); ``\\ No newline at end of file``;
CRLF (the ``\\r`` stays part of the line text); paths quoted by git (``"\\303\\251"``) and any
non-UTF-8 bytes (paths are decoded as UTF-8 with ``surrogateescape``, so they round-trip to the
exact bytes with ``os.fsencode``). Combined diffs (``diff --cc``) are refused with an error.

Changed lines: only added lines (``+``) count as changed by the pull request. Context lines
are shown by the diff but were not changed; removed lines no longer exist in the new file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO


class DiffParseError(ValueError):
    """The input is not a diff this parser can read; the message names the line number."""


class FileStatus(StrEnum):
    ADDED = "added"
    DELETED = "deleted"
    MODIFIED = "modified"
    RENAMED = "renamed"
    COPIED = "copied"


class LineKind(StrEnum):
    CONTEXT = " "
    ADDED = "+"
    REMOVED = "-"


@dataclass(frozen=True, slots=True)
class DiffLimits:
    max_line_bytes: int = 64 * 1024
    max_path_bytes: int = 4096
    max_hunks_per_file: int = 2_000
    max_lines_per_file: int = 100_000
    max_files: int = 20_000  # used by parse_diff, which keeps every file


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: LineKind
    text: bytes  # without the prefix character and without the line end
    old_line: int | None
    new_line: int | None


@dataclass(slots=True)
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    section: bytes = b""
    lines: list[bytes] = field(default_factory=list)  # raw lines, prefix included
    old_missing_newline: bool = False
    new_missing_newline: bool = False

    def iter_lines(self) -> Iterator[DiffLine]:
        old, new = self.old_start, self.new_start
        for raw in self.lines:
            prefix, text = raw[:1], raw[1:]
            if prefix == b"+":
                yield DiffLine(LineKind.ADDED, text, None, new)
                new += 1
            elif prefix == b"-":
                yield DiffLine(LineKind.REMOVED, text, old, None)
                old += 1
            else:
                yield DiffLine(LineKind.CONTEXT, text, old, new)
                old += 1
                new += 1

    def added_line_numbers(self) -> Iterator[int]:
        new = self.new_start
        for raw in self.lines:
            prefix = raw[:1]
            if prefix == b"+":
                yield new
                new += 1
            elif prefix != b"-":
                new += 1

    @property
    def new_end(self) -> int:
        """Last new-file line covered by the hunk (``new_start - 1`` when it covers none)."""
        return self.new_start + self.new_count - 1


@dataclass(slots=True)
class FileDiff:
    old_path: str | None  # None for an added file
    new_path: str | None  # None for a deleted file
    status: FileStatus = FileStatus.MODIFIED
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None  # percent, for renames and copies
    is_binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)
    truncated: bool = False  # some hunks or line text were not kept (caps)
    _changed: frozenset[int] | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        """The path a reviewer sees: the new path, or the old one for a deleted file."""
        path = self.new_path if self.new_path is not None else self.old_path
        assert path is not None
        return path

    @property
    def mode_changed(self) -> bool:
        return (
            self.old_mode is not None
            and self.new_mode is not None
            and self.old_mode != self.new_mode
        )

    def changed_lines(self) -> frozenset[int]:
        """New-file line numbers the PR added or modified (``+`` lines of the kept hunks)."""
        if self._changed is None:
            self._changed = frozenset(n for h in self.hunks for n in h.added_line_numbers())
        return self._changed

    def is_changed(self, new_line: int) -> bool:
        return new_line in self.changed_lines()

    def in_diff(self, new_line: int) -> bool:
        """Whether the new-file line is shown by a kept hunk (added or context)."""
        return any(h.new_start <= new_line <= h.new_end for h in self.hunks if h.new_count)


@dataclass(slots=True)
class ParsedDiff:
    files: list[FileDiff]
    truncated: bool = False  # more files than DiffLimits.max_files

    def file(self, path: str) -> FileDiff | None:
        for candidate in self.files:
            if candidate.new_path == path:
                return candidate
        return None


def parse_diff(
    source: BinaryIO | Iterable[bytes] | bytes, limits: DiffLimits | None = None
) -> ParsedDiff:
    """Parse a whole diff, keeping at most ``limits.max_files`` files."""
    limits = limits or DiffLimits()
    if isinstance(source, bytes | bytearray):
        # Not bytes.splitlines(): it would also split at a lone "\r" inside a line.
        source = io.BytesIO(bytes(source))
    files: list[FileDiff] = []
    for file_diff in iter_file_diffs(source, limits):
        if len(files) >= limits.max_files:
            return ParsedDiff(files, truncated=True)
        files.append(file_diff)
    return ParsedDiff(files)


def iter_file_diffs(
    source: BinaryIO | Iterable[bytes], limits: DiffLimits | None = None
) -> Iterator[FileDiff]:
    """Yield each file of a diff as soon as it is complete (bounded memory)."""
    parser = _Parser(limits or DiffLimits())
    feed = parser.feed
    for line in _capped_lines(source, parser.limits.max_line_bytes):
        done = feed(line)
        if done is not None:
            yield done
    last = parser.finish()
    if last is not None:
        yield last


class _TruncatedLine(bytes):
    """A line whose tail was dropped because it exceeded DiffLimits.max_line_bytes."""


_READ_CHUNK = 1 << 20


def _capped_lines(source: BinaryIO | Iterable[bytes], cap: int) -> Iterator[bytes]:
    """Lines without their ``\\n`` (a ``\\r`` stays); a line over ``cap`` is cut to its
    first ``cap`` bytes and yielded as a :class:`_TruncatedLine`.

    File objects are read in chunks of 1 MiB, so memory stays bounded by the chunk size and
    ``cap`` whatever the input looks like.
    """
    read = getattr(source, "read1", None) or getattr(source, "read", None)
    if read is None:
        for line in source:
            if line.endswith(b"\n"):
                line = line[:-1]
            yield _TruncatedLine(line[:cap]) if len(line) > cap else line
        return
    pending = b""
    long_head: bytes | None = None  # head of an over-long line whose end is not read yet
    while chunk := read(_READ_CHUNK):
        if long_head is not None:
            end = chunk.find(b"\n")
            if end == -1:
                continue  # still inside the over-long line: drop it
            yield _TruncatedLine(long_head)
            long_head, chunk = None, chunk[end + 1 :]
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield _TruncatedLine(line[:cap]) if len(line) > cap else line
        if len(pending) > cap:
            long_head, pending = pending[:cap], b""
    if long_head is not None:
        yield _TruncatedLine(long_head)
    elif pending:
        yield _TruncatedLine(pending[:cap]) if len(pending) > cap else pending


_HUNK_HEADER = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$", re.DOTALL)
_SIMPLE_HEADERS = (
    b"index ",
    b"old mode ",
    b"new mode ",
    b"deleted file mode ",
    b"new file mode ",
    b"similarity index ",
    b"dissimilarity index ",
    b"rename from ",
    b"rename to ",
    b"copy from ",
    b"copy to ",
    b"rename old ",
    b"rename new ",
)


class _Parser:
    def __init__(self, limits: DiffLimits) -> None:
        self.limits = limits
        self.lineno = 0
        self.file: FileDiff | None = None
        self.in_header = False  # between "diff --git" and the first hunk
        self.skipping_binary = False
        self.pending_old: bytes | None = None  # "--- " of a plain diff, waiting for "+++ "
        self.git_paths: tuple[bytes | None, bytes | None] = (None, None)
        self.hunk: Hunk | None = None
        self.keep_hunk = False
        self.old_left = 0
        self.new_left = 0
        self.last_prefix = b""
        self.kept_lines = 0
        self.saw_dev_null_old = False
        self.saw_dev_null_new = False
        self.renamed_from: bytes | None = None
        self.renamed_to: bytes | None = None
        self.copied = False

    def error(self, message: str) -> DiffParseError:
        return DiffParseError(f"diff line {self.lineno}: {message}")

    # -- line dispatch -------------------------------------------------------------------

    def feed(self, line: bytes) -> FileDiff | None:
        """Consume one line; return a file diff when this line completed one."""
        self.lineno += 1
        if self.old_left > 0 or self.new_left > 0:
            self._hunk_line(line)
            return None
        if line.startswith(b"diff --git "):
            done = self._finish_file()
            self._start_git_file(line)
            return done
        if line.startswith((b"diff --cc ", b"diff --combined ")):
            raise self.error("combined diffs (merge commits) are not supported")
        if self.skipping_binary:
            return None
        if line.startswith(b"@@ "):
            self._start_hunk(line)
            return None
        if line.startswith(b"\\"):
            self._no_newline_marker()
            return None
        if line.startswith(b"--- ") and not self.in_header:
            done = self._finish_file()
            self.pending_old = line[4:]
            return done
        if line.startswith(b"+++ ") and self.pending_old is not None and not self.in_header:
            self._start_plain_file(self.pending_old, line[4:])
            self.pending_old = None
            return None
        self.pending_old = None
        if self.in_header and self.file is not None:
            self._header_line(line)
        elif self.hunk is not None and line[:1] in (b"+", b"-", b" ") and line != b"-- ":
            # Right after a complete hunk, a diff line means the counts were wrong. ("-- " is
            # the signature separator of a mailed patch.)
            raise self.error("diff line beyond the hunk's line counts")
        # Anything else between files (mail headers, a "-- " signature) is not diff content.
        return None

    def finish(self) -> FileDiff | None:
        if self.old_left > 0 or self.new_left > 0:
            raise self.error("the diff ends in the middle of a hunk")
        return self._finish_file()

    # -- files ---------------------------------------------------------------------------

    def _start_git_file(self, line: bytes) -> None:
        old, new = _split_git_header(line[len(b"diff --git ") :], self)
        self.git_paths = (
            None if old is None else self._checked(old),
            None if new is None else self._checked(new),
        )
        self.file = FileDiff(old_path=None, new_path=None)
        self._reset_file_state()
        self.in_header = True

    def _start_plain_file(self, old_field: bytes, new_field: bytes) -> None:
        old, new = self._path_field(old_field, b"a/"), self._path_field(new_field, b"b/")
        self.file = FileDiff(old_path=None, new_path=None)
        self._reset_file_state()
        self.git_paths = (old, new)
        self.saw_dev_null_old = old is None
        self.saw_dev_null_new = new is None
        self.in_header = True

    def _reset_file_state(self) -> None:
        self.skipping_binary = False
        self.hunk = None
        self.kept_lines = 0
        self.saw_dev_null_old = False
        self.saw_dev_null_new = False
        self.renamed_from = None
        self.renamed_to = None
        self.copied = False

    def _header_line(self, line: bytes) -> None:
        file = self.file
        assert file is not None
        if line.startswith(b"--- "):
            old = self._path_field(line[4:], b"a/")
            self.saw_dev_null_old = old is None
            self.git_paths = (old, self.git_paths[1])
        elif line.startswith(b"+++ "):
            new = self._path_field(line[4:], b"b/")
            self.saw_dev_null_new = new is None
            self.git_paths = (self.git_paths[0], new)
        elif line.startswith(b"new file mode "):
            file.status = FileStatus.ADDED
            file.new_mode = _ascii(line[len(b"new file mode ") :])
        elif line.startswith(b"deleted file mode "):
            file.status = FileStatus.DELETED
            file.old_mode = _ascii(line[len(b"deleted file mode ") :])
        elif line.startswith(b"old mode "):
            file.old_mode = _ascii(line[len(b"old mode ") :])
        elif line.startswith(b"new mode "):
            file.new_mode = _ascii(line[len(b"new mode ") :])
        elif line.startswith((b"rename from ", b"rename old ")):
            self.renamed_from = self._bare_path(line.split(b" ", 2)[2])
        elif line.startswith((b"rename to ", b"rename new ")):
            self.renamed_to = self._bare_path(line.split(b" ", 2)[2])
        elif line.startswith(b"copy from "):
            self.renamed_from, self.copied = self._bare_path(line[len(b"copy from ") :]), True
        elif line.startswith(b"copy to "):
            self.renamed_to, self.copied = self._bare_path(line[len(b"copy to ") :]), True
        elif line.startswith(b"similarity index "):
            file.similarity = _percent(line[len(b"similarity index ") :])
        elif line.startswith(b"index "):
            mode = line.rsplit(b" ", 1)[-1] if line.count(b" ") >= 2 else b""
            if mode.isdigit() and file.old_mode is None and file.new_mode is None:
                file.old_mode = file.new_mode = _ascii(mode)
        elif line.startswith(b"Binary files ") and line.endswith(b" differ"):
            file.is_binary = True
        elif line.startswith(b"GIT binary patch"):
            file.is_binary = True
            self.skipping_binary = True
        elif line.startswith(_SIMPLE_HEADERS):
            pass

    def _finish_file(self) -> FileDiff | None:
        file = self.file
        if file is None:
            return None
        self.file = None
        self.in_header = False
        self.skipping_binary = False
        self.pending_old = None
        old, new = self.git_paths
        if self.renamed_from is not None:
            old = self.renamed_from
        if self.renamed_to is not None:
            new = self.renamed_to
        if self.saw_dev_null_old or file.status is FileStatus.ADDED:
            file.status, old = FileStatus.ADDED, None
        elif self.saw_dev_null_new or file.status is FileStatus.DELETED:
            file.status, new = FileStatus.DELETED, None
        elif self.renamed_from is not None or self.renamed_to is not None:
            file.status = FileStatus.COPIED if self.copied else FileStatus.RENAMED
        if old is None and new is None:
            raise self.error("a file diff without any path")
        file.old_path = _decode_path(old)
        file.new_path = _decode_path(new)
        return file

    def _path_field(self, field_: bytes, prefix: bytes) -> bytes | None:
        if field_.startswith(b'"'):
            raw, _ = _unquote(field_, self)
        else:
            raw = field_.split(b"\t", 1)[0]
        if raw == b"/dev/null":
            return None
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
        return self._checked(raw)

    def _bare_path(self, field_: bytes) -> bytes:
        raw = _unquote(field_, self)[0] if field_.startswith(b'"') else field_
        return self._checked(raw)

    def _checked(self, raw: bytes) -> bytes:
        if not raw or len(raw) > self.limits.max_path_bytes or b"\0" in raw:
            raise self.error("empty, over-long or NUL-containing path")
        return raw

    # -- hunks ---------------------------------------------------------------------------

    def _start_hunk(self, line: bytes) -> None:
        file = self.file
        if file is None:
            raise self.error("hunk header outside of a file diff")
        match = _HUNK_HEADER.match(line)
        if match is None:
            raise self.error("malformed hunk header")
        old_start, old_count, new_start, new_count, section = match.groups()
        hunk = Hunk(
            old_start=int(old_start),
            old_count=1 if old_count is None else int(old_count),
            new_start=int(new_start),
            new_count=1 if new_count is None else int(new_count),
            section=section,
        )
        if (hunk.old_count and not hunk.old_start) or (hunk.new_count and not hunk.new_start):
            raise self.error("hunk header starts at line 0 but has lines")
        self.in_header = False
        self.old_left, self.new_left = hunk.old_count, hunk.new_count
        self.last_prefix = b""
        size = hunk.old_count + hunk.new_count
        self.keep_hunk = (
            len(file.hunks) < self.limits.max_hunks_per_file
            and self.kept_lines + size <= self.limits.max_lines_per_file
        )
        if self.keep_hunk:
            file.hunks.append(hunk)
            self.kept_lines += size
        else:
            file.truncated = True
        self.hunk = hunk

    def _hunk_line(self, line: bytes) -> None:
        prefix = line[:1]
        if prefix == b" " or not line:
            if self.old_left <= 0 or self.new_left <= 0:
                raise self.error("context line beyond the hunk's line counts")
            self.old_left -= 1
            self.new_left -= 1
            if not line:
                line = b" "  # some tools strip the space of empty context lines
        elif prefix == b"-":
            if self.old_left <= 0:
                raise self.error("removed line beyond the hunk's old line count")
            self.old_left -= 1
        elif prefix == b"+":
            if self.new_left <= 0:
                raise self.error("added line beyond the hunk's new line count")
            self.new_left -= 1
        elif prefix == b"\\":
            self._no_newline_marker()
            return
        else:
            raise self.error("the hunk ends before its line counts are reached")
        self.last_prefix = prefix or b" "
        if self.keep_hunk:
            assert self.hunk is not None
            self.hunk.lines.append(line)
            if isinstance(line, _TruncatedLine):
                assert self.file is not None
                self.file.truncated = True

    def _no_newline_marker(self) -> None:
        if self.hunk is None or not self.last_prefix:
            return  # a stray marker outside any hunk carries no information
        if self.last_prefix in (b"-", b" "):
            self.hunk.old_missing_newline = True
        if self.last_prefix in (b"+", b" "):
            self.hunk.new_missing_newline = True


def _ascii(raw: bytes) -> str:
    return raw.strip().decode("ascii", "replace")


def _percent(raw: bytes) -> int | None:
    digits = raw.strip().rstrip(b"%")
    return int(digits) if digits.isdigit() else None


def _decode_path(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


_ESCAPES = {
    ord("a"): 7,
    ord("b"): 8,
    ord("t"): 9,
    ord("n"): 10,
    ord("v"): 11,
    ord("f"): 12,
    ord("r"): 13,
    ord('"'): 34,
    ord("\\"): 92,
}


def _unquote(data: bytes, parser: _Parser | None = None) -> tuple[bytes, bytes]:
    """Decode a C-style quoted path as git writes it; return (path, text after the quote)."""
    out = bytearray()
    i = 1
    while i < len(data):
        ch = data[i]
        if ch == ord('"'):
            return bytes(out), data[i + 1 :]
        if ch == ord("\\") and i + 1 < len(data):
            nxt = data[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            octal = data[i + 1 : i + 4]
            if len(octal) == 3 and all(0x30 <= c <= 0x37 for c in octal):
                out.append(int(octal, 8) & 0xFF)
                i += 4
                continue
        elif ch == ord("\\"):
            break
        out.append(ch)
        i += 1
    message = "unterminated quoted path"
    raise parser.error(message) if parser else DiffParseError(message)


def _split_git_header(rest: bytes, parser: _Parser) -> tuple[bytes | None, bytes | None]:
    """Paths of ``diff --git a/X b/Y``; used when no ---/+++ or rename lines name them."""
    old: bytes | None
    new: bytes | None
    if rest.startswith(b'"'):
        old, tail = _unquote(rest, parser)
        tail = tail.lstrip(b" ")
        new = _unquote(tail, parser)[0] if tail.startswith(b'"') else tail
    else:
        # Unquoted paths may contain spaces: prefer the split where both sides are equal.
        old = new = None
        start = 0
        while (pos := rest.find(b" b/", start)) != -1:
            left, right = rest[:pos], rest[pos + 1 :]
            if left[2:] == right[2:]:
                old, new = left, right
                break
            start = pos + 1
        if old is None:
            if rest.endswith(b'"') and b' "' in rest:
                pos = rest.index(b' "')
                old, new = rest[:pos], _unquote(rest[pos + 1 :], parser)[0]
            else:
                pos = rest.find(b" b/")
                if pos == -1:
                    return None, None
                old, new = rest[:pos], rest[pos + 1 :]
    assert old is not None and new is not None
    return (old[2:] if old.startswith(b"a/") else old, new[2:] if new.startswith(b"b/") else new)
