"""Property tests: random edits, a real `git diff`, the parser, and two oracles.

* Applying the parsed hunks to the old text must give exactly the new text.
* With unique lines (no ambiguity in the alignment), the changed-line set must equal the
  set of lines the generator inserted; with arbitrary, repetitive text, the numbers of added
  and removed lines must equal git's own ``--numstat``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.review.diff_oracle import ScratchRepo, apply_file_diff

from auto_review.review.diff.model import FileStatus, parse_diff

PATHS = [
    b"plain.txt",
    b"dir/sub/deep.py",
    b"with space.md",
    "caf\u00e9/\u00fcber.txt".encode(),
    b'quote"and\\back.txt',
    b"tab\there.txt",
    b"latin1-\xe9\xff.txt",  # not UTF-8
]
LINE_ENDINGS = [b"", b"\r"]  # "\r" before "\n" makes CRLF lines
DECORATIONS = [b"", b" \xff\xfe", " \u2603".encode(), b"\t"]

PROFILE = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@dataclass
class UniqueEdit:
    old: bytes | None
    new: bytes | None
    inserted: set[int]  # 1-based new line numbers of generated lines


@st.composite
def unique_edits(draw: st.DrawFn) -> UniqueEdit:
    """Old lines are unique, inserted lines are unique and never in the old text."""
    exists_after = draw(st.integers(0, 9)) > 0
    old_count = draw(st.integers(0, 30))
    decoration = draw(st.sampled_from(DECORATIONS))
    ending = draw(st.sampled_from(LINE_ENDINGS))
    old_lines = [b"old %d%s%s" % (i, decoration, ending) for i in range(old_count)]
    new_lines: list[bytes] = []
    kept_from: dict[int, int] = {}  # new line index -> old line index
    inserted: set[int] = set()
    counter = 0

    def insert_some() -> None:
        nonlocal counter
        for _ in range(draw(st.integers(0, 3))):
            new_lines.append(b"new %d%s%s" % (counter, decoration, ending))
            counter += 1
            inserted.add(len(new_lines))

    for index, line in enumerate(old_lines):
        insert_some()
        if draw(st.integers(0, 3)) > 0:  # keep three times out of four
            kept_from[len(new_lines)] = index
            new_lines.append(line)
    insert_some()
    old_newline = draw(st.booleans())
    new_newline = draw(st.booleans())
    # git compares lines with their line end: a kept line that gains or loses the final
    # newline ("\ No newline at end of file") is a changed line.
    for new_index, old_index in kept_from.items():
        old_ends = old_index < len(old_lines) - 1 or old_newline
        new_ends = new_index < len(new_lines) - 1 or new_newline
        if old_ends != new_ends:
            inserted.add(new_index + 1)
    old = _join(old_lines, old_newline)
    new = _join(new_lines, new_newline) if exists_after else None
    if new is None:
        inserted = set()
    return UniqueEdit(old, new, inserted)


def _join(lines: list[bytes], final_newline: bool) -> bytes:
    if not lines:
        return b""
    return b"\n".join(lines) + (b"\n" if final_newline else b"")


@given(edits=st.lists(unique_edits(), min_size=1, max_size=3), paths=st.permutations(PATHS))
@PROFILE
def test_unique_line_edits_give_exact_changed_lines(
    edits: list[UniqueEdit], paths: list[bytes]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = ScratchRepo(Path(tmp))
        chosen = dict(zip(paths, edits, strict=False))
        for name, edit in chosen.items():
            repo.write(name, edit.old)
        base = repo.commit("old")
        for name, edit in chosen.items():
            repo.write(name, edit.new)
        head = repo.commit("new")
        parsed = parse_diff(repo.diff(base, head, "--no-renames"))

    by_path = {f.path: f for f in parsed.files}
    for name, edit in chosen.items():
        path = name.decode("utf-8", "surrogateescape")
        if edit.old == edit.new:
            assert path not in by_path
            continue
        file_diff = by_path[path]
        assert not file_diff.truncated
        if edit.new is None:
            assert file_diff.status is FileStatus.DELETED and file_diff.new_path is None
            assert apply_file_diff(edit.old or b"", file_diff) == b""
            continue
        assert apply_file_diff(edit.old or b"", file_diff) == edit.new
        assert file_diff.changed_lines() == edit.inserted
    assert set(by_path) == {
        n.decode("utf-8", "surrogateescape") for n, e in chosen.items() if e.old != e.new
    }


line_text = st.lists(
    st.sampled_from(
        [
            b"a",
            b"b",
            b"}",
            b"",
            b"  x = 1",
            b"\xff\xfe",
            b"\r",
            b"\\",
            b"+",
            b"-",
            b" ",
            b"@@ -1 +1 @@",
            b"diff --git a/x b/x",
            b"--- a/x",
            b"+++ b/x",
        ]
    ),
    min_size=0,
    max_size=3,
).map(b"".join)


@given(
    old_lines=st.lists(line_text, max_size=40),
    new_lines=st.lists(line_text, max_size=40),
    old_newline=st.booleans(),
    new_newline=st.booleans(),
    context=st.sampled_from(["-U0", "-U1", "-U3", "-U7"]),
)
@PROFILE
def test_arbitrary_text_round_trips_and_matches_numstat(
    old_lines: list[bytes],
    new_lines: list[bytes],
    old_newline: bool,
    new_newline: bool,
    context: str,
) -> None:
    old, new = _join(old_lines, old_newline), _join(new_lines, new_newline)
    with tempfile.TemporaryDirectory() as tmp:
        repo = ScratchRepo(Path(tmp))
        repo.write(b"f.txt", old)
        base = repo.commit("old")
        repo.write(b"f.txt", new)
        head = repo.commit("new")
        parsed = parse_diff(repo.diff(base, head, context))
        numstat = repo.numstat(base, head)
    if old == new:
        assert parsed.files == []
        return
    (file_diff,) = parsed.files
    assert apply_file_diff(old, file_diff) == new
    kinds = [raw[:1] for h in file_diff.hunks for raw in h.lines]
    assert (kinds.count(b"+"), kinds.count(b"-")) == numstat["f.txt"]
    assert len(file_diff.changed_lines()) == kinds.count(b"+")
    for number in file_diff.changed_lines():
        assert 1 <= number <= len(new.split(b"\n"))


FRAGMENTS = [
    b"diff --git a/x b/x",
    b'diff --git "a/\\303\\251" "b/\\303\\251"',
    b"diff --git a/x y",
    b"--- a/x",
    b"+++ b/x",
    b"--- /dev/null",
    b"+++ /dev/null",
    b'--- "a/\\q',
    b"@@ -1 +1 @@",
    b"@@ -0,0 +1,2 @@",
    b"@@ -1 +0,1 @@",
    b"@@ -0,1 +1 @@",
    b"@@ -3,2 +0,0 @@ f",
    b"@@ -99999999999999999999 +1 @@",
    b" ctx",
    b"+add",
    b"-del",
    b"",
    b"\\ No newline at end of file",
    b"new file mode 100644",
    b"deleted file mode 100644",
    b"rename from a",
    b"rename to b",
    b"similarity index 9x%",
    b"index 1..2 100644",
    b"Binary files a/x and b/x differ",
    b"GIT binary patch",
    b"literal 0",
    b"old mode 100644",
    b"new mode 100755",
    b'copy from "',
    b"\xff\xfe",
    b"-- ",
]


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30))
@settings(max_examples=400, deadline=None, derandomize=True)
def test_any_input_parses_or_fails_with_a_diff_parse_error(lines: list[bytes]) -> None:
    from auto_review.review.diff.model import DiffParseError

    try:
        parsed = parse_diff(b"\n".join(lines))
    except DiffParseError:
        return
    for file_diff in parsed.files:
        assert file_diff.path  # every file has a usable path
        assert all(n >= 1 for n in file_diff.changed_lines())
