"""Diff parser on real git output for each special case, and on malformed input."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.review.diff_oracle import ScratchRepo, apply_file_diff

from auto_review.review.diff.model import (
    DiffLimits,
    DiffLine,
    DiffParseError,
    FileStatus,
    LineKind,
    iter_file_diffs,
    parse_diff,
)

SOURCE = b"".join(b"line %d of a reasonably long file body\n" % i for i in range(1, 41))


@pytest.fixture
def repo(tmp_path: Path) -> ScratchRepo:
    return ScratchRepo(tmp_path / "repo")


def test_modified_file_numbers_and_changed_lines(repo: ScratchRepo) -> None:
    repo.write(b"m.py", SOURCE)
    base = repo.commit()
    line_30 = b"line 30 of a reasonably long file body\n"
    new = SOURCE.replace(b"line 5 of", b"LINE 5 of").replace(line_30, b"inserted\n" + line_30)
    repo.write(b"m.py", new)
    head = repo.commit()
    (f,) = parse_diff(repo.diff(base, head)).files
    assert (f.status, f.old_path, f.new_path) == (FileStatus.MODIFIED, "m.py", "m.py")
    assert f.changed_lines() == {5, 30}
    assert [(h.old_start, h.old_count, h.new_start, h.new_count) for h in f.hunks] == [
        (2, 7, 2, 7),
        (27, 6, 27, 7),
    ]
    assert apply_file_diff(SOURCE, f) == new
    lines = list(f.hunks[0].iter_lines())
    assert lines[3] == DiffLine(LineKind.REMOVED, b"line 5 of a reasonably long file body", 5, None)
    assert lines[4].kind is LineKind.ADDED and lines[4].new_line == 5
    assert f.in_diff(2) and f.in_diff(8) and not f.in_diff(9)
    assert not f.is_changed(4)  # a context line is shown but not changed


def test_rename_with_edits_and_pure_rename(repo: ScratchRepo) -> None:
    repo.write(b"old name.py", SOURCE)
    repo.write(b"same.txt", b"identical content\n" * 5)
    base = repo.commit()
    repo.write(b"old name.py", None)
    repo.write(b"new name.py", SOURCE.replace(b"line 40 of", b"LINE 40 of"))
    repo.write(b"same.txt", None)
    repo.write(b"moved/same.txt", b"identical content\n" * 5)
    head = repo.commit()
    files = {f.path: f for f in parse_diff(repo.diff(base, head, "-M")).files}
    edited, pure = files["new name.py"], files["moved/same.txt"]
    assert (edited.status, edited.old_path) == (FileStatus.RENAMED, "old name.py")
    assert edited.similarity is not None and 90 <= edited.similarity < 100
    assert edited.changed_lines() == {40}
    assert (pure.status, pure.old_path, pure.similarity, pure.hunks) == (
        FileStatus.RENAMED,
        "same.txt",
        100,
        [],
    )


def test_copy_detection(repo: ScratchRepo) -> None:
    repo.write(b"a.txt", SOURCE)
    base = repo.commit()
    repo.write(b"b.txt", SOURCE + b"extra\n")
    head = repo.commit()
    files = parse_diff(repo.diff(base, head, "-C", "--find-copies-harder")).files
    (copy,) = files
    assert (copy.status, copy.old_path, copy.new_path) == (FileStatus.COPIED, "a.txt", "b.txt")
    assert copy.changed_lines() == {41}


def test_added_and_deleted_files(repo: ScratchRepo) -> None:
    repo.write(b"gone.txt", b"a\nb\n")
    base = repo.commit()
    repo.write(b"gone.txt", None)
    repo.write(b"fresh.txt", b"x\ny\n")
    head = repo.commit()
    files = {f.path: f for f in parse_diff(repo.diff(base, head)).files}
    fresh, gone = files["fresh.txt"], files["gone.txt"]
    assert (fresh.status, fresh.old_path, fresh.new_mode) == (FileStatus.ADDED, None, "100644")
    assert fresh.changed_lines() == {1, 2}
    assert (gone.status, gone.new_path, gone.old_mode) == (FileStatus.DELETED, None, "100644")
    assert gone.changed_lines() == frozenset()


def test_binary_files_with_and_without_patch_data(repo: ScratchRepo) -> None:
    repo.write(b"img.bin", b"\x00\x01binary" * 50)
    repo.write(b"z.txt", b"one\n")
    base = repo.commit()
    repo.write(b"img.bin", b"\x00\x02binary" * 70)
    repo.write(b"z.txt", b"one\ntwo\n")
    head = repo.commit()
    for extra in ((), ("--binary",)):
        files = {f.path: f for f in parse_diff(repo.diff(base, head, *extra)).files}
        assert files["img.bin"].is_binary and files["img.bin"].hunks == []
        assert files["z.txt"].changed_lines() == {2}  # the file after the binary patch


def test_mode_change_only_with_spaces_and_quoted_names(repo: ScratchRepo) -> None:
    names = [b"run me.sh", "sk\u00e9.sh".encode(), b"odd\xff.sh"]
    for name in names:
        repo.write(name, b"echo\n")
    base = repo.commit()
    for name in names:
        os.chmod(repo.root / name.decode("utf-8", "surrogateescape"), 0o755)  # noqa: S103
    head = repo.commit()
    files = parse_diff(repo.diff(base, head)).files
    assert sorted(os.fsencode(f.path) for f in files) == sorted(names)
    for f in files:
        assert (f.old_mode, f.new_mode, f.mode_changed, f.hunks) == ("100644", "100755", True, [])


def test_no_newline_at_end_on_both_sides_and_crlf(repo: ScratchRepo) -> None:
    old = b"a\r\nb\r\nc"
    new = b"a\r\nB\r\nc\r\nd"
    repo.write(b"w.txt", old)
    base = repo.commit()
    repo.write(b"w.txt", new)
    head = repo.commit()
    (f,) = parse_diff(repo.diff(base, head)).files
    (hunk,) = f.hunks
    assert hunk.old_missing_newline and hunk.new_missing_newline
    assert b"+B\r" in hunk.lines
    assert apply_file_diff(old, f) == new
    assert f.changed_lines() == {2, 3, 4}  # "c" gained a line end, so it changed too


def test_quoted_path_escapes_are_decoded() -> None:
    diff = (
        b'diff --git "a/t\\303\\251st\\tx\\"q\\\\.txt" "b/t\\303\\251st\\tx\\"q\\\\.txt"\n'
        b"index 1..2 100644\n"
        b'--- "a/t\\303\\251st\\tx\\"q\\\\.txt"\n'
        b'+++ "b/t\\303\\251st\\tx\\"q\\\\.txt"\n'
        b"@@ -1 +1 @@\n-a\n+b\n"
    )
    (f,) = parse_diff(diff).files
    assert f.path == 't\u00e9st\tx"q\\.txt'


def test_plain_unified_diff_with_timestamps() -> None:
    diff = (
        b"--- orig/file.c\t2026-01-01 00:00:00.000000000 +0000\n"
        b"+++ new/file.c\t2026-01-02 00:00:00.000000000 +0000\n"
        b"@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        b"--- /dev/null\t1970-01-01 00:00:00.000000000 +0000\n"
        b"+++ new/added.c\t2026-01-02 00:00:00.000000000 +0000\n"
        b"@@ -0,0 +1 @@\n+x\n"
    )
    first, second = parse_diff(diff).files
    assert (first.old_path, first.new_path, first.changed_lines()) == (
        "orig/file.c",
        "new/file.c",
        {2},
    )
    assert (second.status, second.path, second.changed_lines()) == (
        FileStatus.ADDED,
        "new/added.c",
        {1},
    )


def test_mail_headers_and_signature_around_a_patch_are_ignored(repo: ScratchRepo) -> None:
    repo.write(b"f.txt", b"a\n")
    repo.commit()
    repo.write(b"f.txt", b"a\nb\n")
    repo.commit()
    patch = repo.git("format-patch", "-1", "--stdout")
    assert patch.rstrip().splitlines()[-2] == b"-- "
    (f,) = parse_diff(patch).files
    assert f.changed_lines() == {2}


@pytest.mark.parametrize(
    ("diff", "message"),
    [
        (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n", "ends in the middle"),
        (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n a\n+b\n", "beyond"),
        (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\nzzz\n", "before its line"),
        (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -a +1 @@\n", "malformed hunk header"),
        (b"@@ -1 +1 @@\n-a\n+b\n", "outside of a file diff"),
        (b"diff --cc x\nindex 1,2..3\n", "combined diffs"),
        (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +0,1 @@\n-a\n+b\n", "line 0"),
        (b'diff --git "a/x b/x\n', "unterminated quoted path"),
        (b"--- a/\0x\n+++ b/x\n", "NUL"),
    ],
)
def test_malformed_input_raises_with_line_number(diff: bytes, message: str) -> None:
    with pytest.raises(DiffParseError, match=message) as failure:
        parse_diff(diff)
    assert str(failure.value).startswith("diff line ")


def _many_hunks(count: int) -> bytes:
    parts = [b"diff --git a/big b/big\n--- a/big\n+++ b/big\n"]
    for i in range(count):
        start = 10 * i + 1
        parts.append(b"@@ -%d,2 +%d,2 @@\n ctx\n-old\n+new\n" % (start, start))
    return b"".join(parts)


def test_hunk_cap_keeps_whole_hunks_and_marks_truncation() -> None:
    (f,) = parse_diff(_many_hunks(50), DiffLimits(max_hunks_per_file=10)).files
    assert f.truncated and len(f.hunks) == 10
    assert f.is_changed(92) and not f.is_changed(102)  # beyond the cap: not commentable
    (g,) = parse_diff(_many_hunks(50), DiffLimits(max_lines_per_file=40)).files
    assert g.truncated and len(g.hunks) == 10  # 4 lines per hunk


def test_over_long_lines_are_cut_from_a_stream_and_from_a_line_list() -> None:
    long = b"+" + b"x" * 5000
    diff = b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n" + long + b"\n+short\n"
    limits = DiffLimits(max_line_bytes=100)
    for source in (io.BytesIO(diff), diff.splitlines(keepends=True)):
        (f,) = list(iter_file_diffs(source, limits))
        assert f.truncated and f.changed_lines() == {1, 2}
        assert f.hunks[0].lines == [long[:100], b"+short"]


def test_file_cap_of_parse_diff() -> None:
    one = b"diff --git a/f%d b/f%d\n--- a/f%d\n+++ b/f%d\n@@ -1 +1 @@\n-a\n+b\n"
    diff = b"".join(one % (i, i, i, i) for i in range(5))
    parsed = parse_diff(diff, DiffLimits(max_files=3))
    assert parsed.truncated and [f.path for f in parsed.files] == ["f0", "f1", "f2"]
    assert parsed.file("f1") is not None and parsed.file("f4") is None


def test_files_are_yielded_before_the_input_is_exhausted() -> None:
    consumed = 0

    def lines() -> Iterator[bytes]:
        nonlocal consumed
        for i in range(1000):
            for line in (
                b"diff --git a/f%d b/f%d\n" % (i, i),
                b"--- a/f\n",
                b"+++ b/f\n",
                b"@@ -1 +1 @@\n",
                b"-a\n",
                b"+b\n",
            ):
                consumed += 1
                yield line

    first = next(iter_file_diffs(lines()))
    assert first.path == "f" and consumed <= 12


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_chunked_reading_gives_the_same_lines(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from auto_review.review.diff import model as diff_module

    # 59 added lines, some over the 100-byte cap, then one without a final newline.
    body = b"".join(
        b"+" + b"y" * (i % 13) + b"z" * (300 * (i % 17 == 0)) + b"\n" for i in range(59)
    )
    text = b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -0,0 +1,60 @@\n" + body + b"+last"
    limits = DiffLimits(max_line_bytes=100)
    (expected,) = list(iter_file_diffs(text.splitlines(keepends=True), limits))
    monkeypatch.setattr(diff_module, "_READ_CHUNK", chunk)
    (got,) = list(iter_file_diffs(io.BytesIO(text), limits))
    assert got.hunks == expected.hunks and got.truncated and expected.truncated
    assert got.changed_lines() == set(range(1, 61))
    assert got.hunks[0].lines[-1] == b"+last"
    assert max(len(line) for line in got.hunks[0].lines) == 100
