"""Path-confined read_file and search on real files, links, FIFOs, devices and races."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from auto_review.review.workspace.confined import ConfinedTree, ConfinementError, ConfinementLimits


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "job" / "tree"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "docs").mkdir()
    (tmp_path / "job" / "outside.txt").write_text("SECRET outside\n")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "f.txt").write_text("SECRET dir\n")
    (root / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    (root / "src" / "pkg" / "mod.py").write_text("def Handler():\n    return handler_id\n")
    (root / "docs" / "guide.md").write_text("Guide: call handler() first\n")
    (root / "bin.dat").write_bytes(b"handler\0\x01\x02")
    (root / "latin.txt").write_bytes(b"caf\xe9 handler\n")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("../outside.txt", root / "escape-link")
    os.symlink("../../outside-dir", root / "escape-dir")
    os.symlink("a.txt", root / "inner-link")
    os.symlink("docs", root / "docs-link")
    os.symlink("../a.txt", root / "src" / "up-link")
    os.symlink("../..", root / "src" / "pkg" / "top")  # src/pkg/top -> tree root (inside)
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    return root


def test_reads_line_ranges(layout: Path) -> None:
    tree = ConfinedTree(layout)
    part = tree.read_file("a.txt", 5, 7)
    assert (part.path, part.start, part.end, part.total_lines) == ("a.txt", 5, 7, 100)
    assert part.text == "line 5\nline 6\nline 7" and not part.truncated
    assert tree.read_file("./src//pkg/mod.py").text.startswith("def Handler")
    assert tree.read_file("a.txt", 99).text == "line 99\nline 100"
    assert tree.read_file("latin.txt").text == "caf\ufffd handler"


def test_caps_truncate_the_slice(layout: Path) -> None:
    tree = ConfinedTree(layout, ConfinementLimits(max_read_lines=10, max_read_bytes=30))
    part = tree.read_file("a.txt")
    assert part.truncated and part.text == "line 1\nline 2\nline 3\nline 4"
    assert part.end == 4


def test_one_huge_line_returns_its_head(layout: Path) -> None:
    (layout / "min.js").write_text("a" * 5000 + "\nnext\n")
    part = ConfinedTree(layout, ConfinementLimits(max_read_bytes=100)).read_file("min.js")
    assert part.truncated and part.text == "a" * 100 and (part.start, part.end) == (1, 1)


def test_symlinks_inside_the_tree_are_followed(layout: Path) -> None:
    tree = ConfinedTree(layout)
    assert tree.read_file("inner-link", 1, 1).text == "line 1"
    assert tree.read_file("docs-link/guide.md").text.startswith("Guide")
    assert tree.read_file("src/up-link", 2, 2).text == "line 2"
    assert tree.read_file("src/pkg/top/a.txt", 3, 3).text == "line 3"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "relative"),
        ("../job/outside.txt", r"'\.\.'"),
        ("src/../a.txt", r"'\.\.'"),
        ("", "non-empty"),
        ("a\0b", "NUL"),
        ("x" * 5000, "too long"),
        ("abs-link", "outside"),
        ("escape-link", "outside"),
        ("escape-dir/f.txt", "outside"),
        ("src/pkg/top/escape-link", "outside"),
        ("loop-a", "too many symlinks"),
        ("missing.txt", "no such file"),
        ("a.txt/x", "not a directory"),
        ("docs", "directory"),
        (".", "root"),
        ("bin.dat", "binary"),
    ],
)
def test_refusals(layout: Path, path: str, message: str) -> None:
    with pytest.raises(ConfinementError, match=message):
        ConfinedTree(layout).read_file(path)


def test_bad_line_ranges(layout: Path) -> None:
    tree = ConfinedTree(layout)
    for start, end in ((0, None), (5, 4), (101, None)):
        with pytest.raises(ConfinementError):
            tree.read_file("a.txt", start, end)
    with pytest.raises(ConfinementError, match="integer"):
        tree.read_file("a.txt", "1")  # type: ignore[arg-type]


@pytest.mark.timeout(20)
def test_special_files_are_refused_without_blocking(layout: Path) -> None:
    os.mkfifo(layout / "fifo")  # no writer: a blocking open would hang forever
    special = ["fifo"]
    try:  # creating a device node needs CAP_MKNOD (the test machine runs as root)
        os.mknod(layout / "null-dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        special.append("null-dev")
    except PermissionError:
        pass
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(layout / "sock"))
    tree = ConfinedTree(layout)
    try:
        for name in special:
            with pytest.raises(ConfinementError, match="regular file"):
                tree.read_file(name)
        with pytest.raises(ConfinementError):
            tree.read_file("sock")
        assert tree.search("handler").matches  # the search walks past them
    finally:
        sock.close()


def test_oversized_file_is_refused(layout: Path) -> None:
    (layout / "big.txt").write_bytes(b"x\n" * 1000)
    with pytest.raises(ConfinementError, match="over the 100-byte cap"):
        ConfinedTree(layout, ConfinementLimits(max_file_bytes=100)).read_file("big.txt")


def test_symlink_swap_race_never_escapes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    outside = tmp_path / "out"
    outside.mkdir()
    (outside / "f.txt").write_text("SECRET\n")
    real = tmp_path / "tree" / "real"
    real.mkdir()
    (real / "f.txt").write_text("inside\n")
    link = tmp_path / "tree" / "link-tmp"
    stop = threading.Event()

    def flip() -> None:
        # Atomically swap tree/d between a real directory and a symlink to ../out.
        os.rename(real, root / "d")
        while not stop.is_set():
            os.symlink("../out", link)
            os.rename(root / "d", real)
            os.rename(link, root / "d")
            os.unlink(root / "d")
            os.rename(real, root / "d")

    flipper = threading.Thread(target=flip)
    flipper.start()
    tree = ConfinedTree(root)
    seen_by_tool: set[str] = set()
    seen_by_plain_open: set[str] = set()
    try:
        # At least 3,000 rounds, and on until the race has shown itself both ways (a busy
        # machine may schedule the flipper rarely), within a bound.
        for attempt in range(200_000):
            if attempt >= 3000 and "SECRET" in seen_by_plain_open and "inside" in seen_by_tool:
                break
            try:
                seen_by_tool.add(tree.read_file("d/f.txt").text)
            except ConfinementError:
                seen_by_tool.add("refused")
            with contextlib.suppress(OSError):
                seen_by_plain_open.add((root / "d" / "f.txt").read_text().strip())
    finally:
        stop.set()
        flipper.join()
    assert "SECRET" in seen_by_plain_open  # the race is real: a naive open escapes
    assert "inside" in seen_by_tool
    assert not any("SECRET" in text for text in seen_by_tool)


def test_search_is_literal_confined_and_ordered(layout: Path) -> None:
    tree = ConfinedTree(layout)
    result = tree.search("handler")
    found = [(m.path, m.line) for m in result.matches]
    # bin.dat is binary, links are not followed, nothing outside the tree is read.
    assert found == [("docs/guide.md", 1), ("latin.txt", 1), ("src/pkg/mod.py", 2)]
    assert not result.truncated and result.reason is None
    assert result.matches[1].text == "caf\ufffd handler"
    folded = tree.search("HANDLER", ignore_case=True)
    assert [(m.path, m.line) for m in folded.matches] == [
        ("docs/guide.md", 1),
        ("latin.txt", 1),
        ("src/pkg/mod.py", 1),
        ("src/pkg/mod.py", 2),
    ]
    assert [m.path for m in tree.search("handler", under="src").matches] == ["src/pkg/mod.py"]
    assert tree.search("SECRET").matches == ()
    assert tree.search("(a+)+$").matches == ()  # a regex-looking pattern is just text
    (layout / "re.txt").write_text("x (a+)+$ y\n")
    assert [m.path for m in tree.search("(a+)+$").matches] == ["re.txt"]


def test_search_caps(layout: Path) -> None:
    (layout / "many.txt").write_text("hit\n" * 50 + "x" * 1000 + " hit\n")
    capped = ConfinedTree(layout, ConfinementLimits(max_matches=5)).search("hit")
    assert capped.truncated and len(capped.matches) == 5 and "match limit" in (capped.reason or "")
    long_line = ConfinedTree(layout, ConfinementLimits(max_match_line_chars=20)).search("hit")
    assert long_line.matches[-1].line == 51 and len(long_line.matches[-1].text) == 20
    timed = ConfinedTree(layout, ConfinementLimits(max_search_seconds=0)).search("hit")
    assert timed.truncated and "time limit" in (timed.reason or "")
    few = ConfinedTree(layout, ConfinementLimits(max_search_files=2)).search("hit")
    assert few.truncated and few.files_scanned == 2
    small = ConfinedTree(layout, ConfinementLimits(max_file_bytes=100)).search("hit")
    assert all(m.path != "many.txt" for m in small.matches)  # over-size files are skipped


def test_search_pattern_validation(layout: Path) -> None:
    tree = ConfinedTree(layout)
    for pattern in ("", "a\nb", "x" * 300, "a\0"):
        with pytest.raises(ConfinementError):
            tree.search(pattern)
    with pytest.raises(ConfinementError):
        tree.search("x", under="../")
    with pytest.raises(ConfinementError):
        tree.search("x", under="escape-dir")
