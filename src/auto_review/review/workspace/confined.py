"""Read-only tools confined to a checked-out tree: ``read_file`` and ``search``.

They serve the model's tool calls and context building, so every argument is hostile.

Path resolution is done component by component with directory file descriptors, the way
``openat`` is meant to be used: each component is opened relative to the descriptor of its
parent with ``O_NOFOLLOW``, so no path is ever resolved by the kernel across a symlink. A
symlink met on the way is read (``readlink``) and its target spliced into the remaining
components; ``..`` pops the descriptor stack and fails at the root; absolute targets are
refused. Because the walk holds descriptors, swapping a directory for a symlink between two
steps makes the open fail (``O_NOFOLLOW``/``O_DIRECTORY``) instead of escaping, and the
final descriptor is checked with ``fstat`` to be a regular file (no FIFO, device or socket;
``O_NONBLOCK`` keeps a FIFO from blocking the open).

Caller paths must be relative and may not contain ``..`` at all; symlinks inside the tree
are followed only while they stay inside it.

``search`` is a literal substring search, not a regular expression: a pattern from the model
cannot trigger catastrophic backtracking, and scanning stays linear in the bytes read. Case
folding (``ignore_case``) is ASCII-only. Symlinks are not followed by ``search`` (their
targets inside the tree are searched under their real paths), and files over the size cap or
that look binary (a NUL byte in the first 8 KiB) are skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_BINARY_SNIFF = 8192
_MAX_DEPTH = 256
_PATH_CHANGED = "the path changed while it was being opened"


class ConfinementError(ValueError):
    """A request was refused: outside the tree, not a regular file, too large, ..."""


@dataclass(frozen=True, slots=True)
class ConfinementLimits:
    max_path_bytes: int = 4096
    max_symlink_hops: int = 40
    max_file_bytes: int = 2 * 1024 * 1024  # larger files: refused by read_file, skipped by search
    max_read_lines: int = 400
    max_read_bytes: int = 64 * 1024
    max_pattern_chars: int = 256
    max_matches: int = 200
    max_match_line_chars: int = 300
    max_search_files: int = 50_000
    max_search_bytes: int = 256 * 1024 * 1024
    max_search_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class FileSlice:
    path: str
    start: int  # first line returned, 1-based
    end: int  # last line returned (start - 1 when none)
    total_lines: int
    text: str  # lines joined by "\n"; undecodable bytes replaced
    truncated: bool  # fewer lines than asked for, because of the line or byte cap


@dataclass(frozen=True, slots=True)
class SearchMatch:
    path: str
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    matches: tuple[SearchMatch, ...]
    files_scanned: int
    truncated: bool
    reason: str | None = None  # which cap stopped the search


class ConfinedTree:
    def __init__(self, root: Path, limits: ConfinementLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or ConfinementLimits()
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode):
            raise ConfinementError("the confinement root is not a directory")

    # -- public tools --------------------------------------------------------------------

    def read_file(self, path: str, start: int = 1, end: int | None = None) -> FileSlice:
        """Lines ``start``..``end`` (1-based, inclusive) of a regular file in the tree."""
        for name, value in (("start", start), ("end", end)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfinementError(f"{name} must be an integer")
        if start < 1 or (end is not None and end < start):
            raise ConfinementError("line range must satisfy 1 <= start <= end")
        parts = self._split(path)
        fd = self._open(parts, want_dir=False)
        data = self._read_capped(fd)
        if b"\0" in data[:_BINARY_SNIFF]:
            raise ConfinementError("the file looks binary")
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        total = len(lines)
        if start > max(total, 1):
            raise ConfinementError(
                f"start line {start} is past the end of the file ({total} lines)"
            )
        last = total if end is None else min(end, total)
        chosen: list[bytes] = []
        used = 0
        truncated = False
        for number in range(start, last + 1):
            line = lines[number - 1]
            if len(chosen) >= self.limits.max_read_lines or used + len(line) + 1 > (
                self.limits.max_read_bytes
            ):
                if not chosen:  # one huge line (minified code): return its head
                    chosen.append(line[: self.limits.max_read_bytes])
                truncated = True
                break
            chosen.append(line)
            used += len(line) + 1
        return FileSlice(
            path="/".join(parts),
            start=start,
            end=start + len(chosen) - 1,
            total_lines=total,
            text=b"\n".join(chosen).decode("utf-8", "replace"),
            truncated=truncated,
        )

    def search(
        self, pattern: str, *, under: str | None = None, ignore_case: bool = False
    ) -> SearchResult:
        """Literal substring search over the regular text files of the tree (or ``under``)."""
        if not isinstance(pattern, str) or not pattern:
            raise ConfinementError("the search pattern must be a non-empty string")
        if len(pattern) > self.limits.max_pattern_chars or "\n" in pattern or "\0" in pattern:
            raise ConfinementError(
                f"the search pattern must be one line of at most "
                f"{self.limits.max_pattern_chars} characters"
            )
        needle = pattern.encode("utf-8")
        if ignore_case:
            needle = needle.lower()
        base_parts = self._split(under) if under not in (None, "", ".") else []
        top_fd = self._open(base_parts, want_dir=True)
        return _Search(self.limits, needle, ignore_case).run(top_fd, base_parts)

    # -- confinement ---------------------------------------------------------------------

    def _split(self, path: str | None) -> list[str]:
        if not isinstance(path, str) or not path:
            raise ConfinementError("path must be a non-empty string")
        if "\0" in path or len(os.fsencode(path)) > self.limits.max_path_bytes:
            raise ConfinementError("path contains NUL or is too long")
        if path.startswith("/"):
            raise ConfinementError("path must be relative to the repository root")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ConfinementError("path must not contain '..'")
        if not parts:
            raise ConfinementError("path names the repository root, not a file")
        return parts

    def _open(self, parts: list[str], *, want_dir: bool) -> int:
        """Descriptor of the file (or directory) at ``parts``, resolved inside the root."""
        stack = [os.open(self.root, _DIR_FLAGS)]
        pending = list(reversed(parts))
        hops = 0
        try:
            while pending:
                name = pending.pop()
                if name in ("", "."):
                    continue
                if name == "..":  # only ever from a symlink target
                    if len(stack) == 1:
                        raise ConfinementError("a symlink on the path points outside the tree")
                    os.close(stack.pop())
                    continue
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    raise ConfinementError("no such file in the repository") from None
                except NotADirectoryError:
                    raise ConfinementError("a path component is not a directory") from None
                except OSError:
                    raise ConfinementError("the path cannot be inspected") from None
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > self.limits.max_symlink_hops:
                        raise ConfinementError("too many symlinks on the path")
                    try:
                        target = os.readlink(name, dir_fd=stack[-1])
                    except OSError:
                        raise ConfinementError(_PATH_CHANGED) from None
                    if target.startswith("/"):
                        raise ConfinementError("a symlink on the path points outside the tree")
                    pending.extend(reversed(target.split("/")))
                    continue
                last = not pending
                if not last or want_dir:
                    if not stat.S_ISDIR(st.st_mode):
                        raise ConfinementError("a path component is not a directory")
                    stack.append(_open_at(name, stack[-1], _DIR_FLAGS))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    raise ConfinementError("path names a directory, not a file")
                fd = _open_at(name, stack[-1], _FILE_FLAGS)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise ConfinementError("not a regular file")
                return fd
            if not want_dir:
                raise ConfinementError("path names a directory, not a file")
            return os.dup(stack[-1])
        finally:
            for fd in stack:
                os.close(fd)

    def _read_capped(self, fd: int) -> bytes:
        cap = self.limits.max_file_bytes
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > cap:
                raise ConfinementError(f"the file is {size} bytes, over the {cap}-byte cap")
            # Ask for the file's size, not the cap: read(n) allocates n bytes up front.
            data = handle.read(size + 1)
            if size < len(data) <= cap:  # it grew since fstat: read on, up to the cap
                data += handle.read(cap + 1 - len(data))
        if len(data) > cap:
            raise ConfinementError(f"the file is over the {cap}-byte cap")
        return data


def _open_at(name: str, dir_fd: int, flags: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfinementError(_PATH_CHANGED) from None
        if exc.errno in (errno.ENOENT,):
            raise ConfinementError("no such file in the repository") from None
        code = errno.errorcode.get(exc.errno or 0, "?")
        raise ConfinementError(f"cannot open the file ({code})") from None


def _entries(dir_fd: int) -> Iterator[tuple[str, bool]]:
    """(name, is_directory) of the directories and regular files in a directory, by name.

    Symlinks, FIFOs, devices and sockets are left out.
    """
    with os.scandir(dir_fd) as it:
        chosen = [
            (entry.name, entry.is_dir(follow_symlinks=False))
            for entry in it
            if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False)
        ]
    return iter(sorted(chosen))


class _Search:
    def __init__(self, limits: ConfinementLimits, needle: bytes, ignore_case: bool) -> None:
        self.limits = limits
        self.needle = needle
        self.ignore_case = ignore_case
        self.matches: list[SearchMatch] = []
        self.files = 0
        self.bytes = 0
        self.deadline = time.monotonic() + limits.max_search_seconds
        self.reason: str | None = None

    def run(self, top_fd: int, base_parts: list[str]) -> SearchResult:
        # Depth-first in path order, holding one descriptor per level: every directory is
        # entered with O_NOFOLLOW relative to its parent, so the walk never leaves the tree.
        stack: list[tuple[int, list[str], Iterator[tuple[str, bool]]]] = []
        try:
            stack.append((top_fd, base_parts, _entries(top_fd)))
            while stack and self.reason is None:
                dir_fd, rel, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    os.close(dir_fd)
                    stack.pop()
                    continue
                name, is_dir = entry
                if not is_dir:
                    self._search_file(dir_fd, name, rel)
                    continue
                if len(stack) >= _MAX_DEPTH:
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue
                stack.append((child, [*rel, name], iter(())))  # owned: closed even if listing fails
                stack[-1] = (child, [*rel, name], _entries(child))
        finally:
            for fd, _, _ in stack:
                os.close(fd)
        return SearchResult(tuple(self.matches), self.files, self.reason is not None, self.reason)

    def _search_file(self, dir_fd: int, name: str, rel: list[str]) -> None:
        limits = self.limits
        if time.monotonic() > self.deadline:
            self.reason = f"time limit of {limits.max_search_seconds:g}s reached"
            return
        if self.files >= limits.max_search_files:
            self.reason = f"file limit of {limits.max_search_files} reached"
            return
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > limits.max_file_bytes:
                return
            if self.bytes + st.st_size > limits.max_search_bytes:
                self.reason = f"byte limit of {limits.max_search_bytes} reached"
                return
            data = handle.read(st.st_size + 1)  # read(n) allocates n bytes up front
        self.files += 1
        self.bytes += len(data)
        if len(data) > limits.max_file_bytes or b"\0" in data[:_BINARY_SNIFF]:
            return
        haystack = data.lower() if self.ignore_case else data
        path = "/".join([*rel, name])
        line_no, counted_to = 1, 0
        pos = haystack.find(self.needle)
        while pos != -1:
            line_no += haystack.count(b"\n", counted_to, pos)
            start = haystack.rfind(b"\n", 0, pos) + 1
            end = haystack.find(b"\n", pos)
            end = len(haystack) if end == -1 else end
            text = data[start:end].decode("utf-8", "replace")[: limits.max_match_line_chars]
            self.matches.append(SearchMatch(path, line_no, text))
            if len(self.matches) >= limits.max_matches:
                self.reason = f"match limit of {limits.max_matches} reached"
                return
            counted_to = pos
            pos = haystack.find(self.needle, end + 1) if end < len(haystack) else -1
