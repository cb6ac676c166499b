"""Paths are bytes end to end: arbitrary byte file names (not UTF-8, control characters,
quotes, backslashes, names git quotes or refuses to add) through the diff model, triage,
context building, verification, mapping and the forge payloads."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.unit.review.diff_oracle import ScratchRepo
from tests.unit.review.test_pipeline_fakes import ScriptedModel

from auto_review.hosts import forgejo_review, github_review
from auto_review.review.diff.model import FileDiff, FileStatus, parse_diff
from auto_review.review.diff.paths import (
    PathIndex,
    display_path,
    is_representable,
    path_bytes,
    unescape,
)
from auto_review.review.diff.positions import ChangedLines
from auto_review.review.mapping import fingerprints_in, plan_review
from auto_review.review.policy.repo_config import RepoConfig
from auto_review.review.policy.triage import triage_files
from auto_review.review.stages.context import build_question_messages, build_review_messages
from auto_review.review.stages.findings import Finding, Severity
from auto_review.review.stages.verify import verify_findings

PROFILE = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# Components: any bytes but NUL and "/", never "." or ".." (no file system has those names).
COMPONENT = (
    st.binary(min_size=1, max_size=12)
    .map(lambda b: b.replace(b"\0", b"\x01").replace(b"/", b"\xff"))
    .filter(lambda b: b not in (b".", b".."))
)
NAME = st.lists(COMPONENT, min_size=1, max_size=3).map(b"/".join)
TRICKY = st.sampled_from(
    [b"bad-\xff\xfe.txt", b"a\nb.py", b'"quoted".py', b"back\\slash", b"tab\t.c", b" lead",
     b"caf\xc3\xa9.py", b"lat\xe9.py", b".git/config", b"x\x7f\x1b[31m.sh", b"\xed\xa0\x80.py"]
)  # fmt: skip


def git_quote(raw: bytes) -> bytes:
    """A name as git writes it in a diff header (core.quotePath=true)."""
    named = {7: b"a", 8: b"b", 9: b"t", 10: b"n", 11: b"v", 12: b"f", 13: b"r", 34: b'"', 92: b"\\"}
    if not any(b < 0x20 or b >= 0x7F or b in (34, 92) for b in raw):
        return raw
    out = b"".join(
        b"\\" + named[b] if b in named else b"\\%03o" % b if b < 0x20 or b >= 0x7F else bytes([b])
        for b in raw
    )
    return b'"' + out + b'"'


def side(prefix: bytes, raw: bytes) -> bytes:
    quoted = git_quote(raw)
    return b'"' + prefix + quoted[1:] if quoted.startswith(b'"') else prefix + raw


def file_diff_text(status: str, old: bytes, new: bytes) -> bytes:
    head = b"diff --git " + side(b"a/", old) + b" " + side(b"b/", new) + b"\n"
    if status == "added":
        return head + (
            b"new file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ "
            + side(b"b/", new) + b"\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        )  # fmt: skip
    if status == "deleted":
        return head + (
            b"deleted file mode 100644\nindex 1111111..0000000\n--- " + side(b"a/", old)
            + b"\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
        )  # fmt: skip
    rename = b""
    if status == "renamed":
        rename = b"similarity index 80%\nrename from " + git_quote(old)
        rename += b"\nrename to " + git_quote(new) + b"\n"
    return head + rename + (
        b"index 1111111..2222222 100644\n--- " + side(b"a/", old) + b"\n+++ " + side(b"b/", new)
        + b"\n@@ -1,2 +1,3 @@\n keep\n-old\n+new\n+more\n"
    )  # fmt: skip


@st.composite
def pull_requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
    names = draw(st.lists(st.one_of(NAME, TRICKY), min_size=1, max_size=6, unique=True))
    entries = []
    for name in names:
        status = draw(st.sampled_from(["added", "modified", "deleted", "renamed"]))
        old = draw(st.one_of(NAME, TRICKY)) if status == "renamed" else name
        entries.append((status, old, name))
    text = b"".join(file_diff_text(*entry) for entry in entries)
    return text, entries


def identity(text: str) -> str:
    return text


@PROFILE
@given(pull_requests())
def test_names_round_trip_through_the_diff_model(pr: tuple[bytes, list]) -> None:
    text, entries = pr
    files = parse_diff(text).files
    assert len(files) == len(entries)
    for file_diff, (status, old, new) in zip(files, entries, strict=True):
        assert file_diff.status.value == status
        if status != "deleted":
            assert file_diff.new_path is not None and path_bytes(file_diff.new_path) == new
        if status != "added":
            assert file_diff.old_path is not None and path_bytes(file_diff.old_path) == old


@PROFILE
@given(st.lists(st.one_of(NAME, TRICKY), min_size=1, max_size=8, unique=True))
def test_every_shown_name_is_one_line_of_text_and_maps_back(names: list[bytes]) -> None:
    paths = [os.fsdecode(n) for n in names]
    index = PathIndex(paths)
    for raw, path in zip(names, paths, strict=True):
        shown = display_path(path)
        shown.encode("utf-8")  # always valid text
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in shown)
        assert index.resolve(shown) == path
        if shown != path:  # quoted: git's C-style escapes give the exact bytes back
            assert shown[0] == shown[-1] == '"' and unescape(shown[1:-1]) == raw
        if is_representable(path):
            assert index.resolve(path) == path
            if not path.startswith("/"):
                assert index.resolve("./" + path) == path
        assert index.resolve("/" + path) is None
        assert index.resolve("../" + path) is None


@PROFILE
@given(pull_requests(), st.text(max_size=30))
def test_triage_context_verify_mapping_and_payloads_never_fail(
    pr: tuple[bytes, list], question: str
) -> None:
    text, _ = pr
    files = parse_diff(text).files
    triage = triage_files(files, RepoConfig())
    reviewable: list[FileDiff] = list(triage.reviewable)
    changed_paths = [f.path for f in files]
    prompt = build_review_messages(
        title="t", body="b", files=reviewable, changed_paths=changed_paths, tree=None,
        guidelines="", learnings=[], budget_tokens=20_000,
    )  # fmt: skip
    messages = [*prompt.messages]
    messages += build_question_messages(
        question=question, title="t", files=files, tree=None, learnings=[], budget_tokens=20_000
    )
    for message in messages:
        json.dumps({"content": message.content}, ensure_ascii=False).encode("utf-8")
    user = prompt.messages[1].content
    for file_diff in reviewable:
        assert f"file: {display_path(file_diff.path)} (" in user
    for skipped in triage.skipped:
        display_path(skipped.path).encode("utf-8")

    # The model answers with the names as the prompt shows them; verification maps them back.
    written = [
        Finding(display_path(f.path), 2, 2, Severity.HIGH, "bug", f"bug {i}", "body")
        for i, f in enumerate(reviewable)
    ]
    changed = ChangedLines(reviewable)
    verification = asyncio.run(
        verify_findings(
            written, llm=ScriptedModel(), tree=None, changed=changed, floor=Severity.LOW,
            diff_files=reviewable,
        )
    )  # fmt: skip
    assert [f.path for f in verification.kept] == [f.path for f in reviewable]

    planned = plan_review(
        kept=verification.kept, summary="s", head_sha="a" * 40, already_posted=set(),
        redact=identity, changed=changed,
    )  # fmt: skip
    if not verification.kept:
        assert planned.draft is None
        return
    draft = planned.draft
    assert draft is not None
    assert {c.path for c in draft.comments} == {
        f.path for f in verification.kept if is_representable(f.path)
    }
    unanchored = {f.fingerprint for f in verification.kept if not is_representable(f.path)}
    assert unanchored <= fingerprints_in(draft.body)
    for payload in (forgejo_review.review_payload(draft), github_review.review_payload(draft)):
        json.dumps(payload, ensure_ascii=False).encode("utf-8")


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.lists(st.one_of(NAME, TRICKY), min_size=1, max_size=4, unique=True))
def test_real_git_names_round_trip(names: list[bytes]) -> None:
    """Whatever names git accepts, the parsed diff gives their exact bytes back."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = ScratchRepo(Path(tmp))
        base = repo.commit()
        written = []
        for name in names:
            target = Path(tmp).joinpath(os.fsdecode(name))
            if any(p.is_file() for p in [target, *target.parents][:-1]):
                continue  # a component is already a file
            try:
                repo.write(name, b"line\n")
            except OSError:
                continue  # e.g. a component is already a file
            written.append(name)
        assume(written)
        try:
            head = repo.commit()
        except Exception:  # git refuses some names (".git" components): nothing to diff
            assume(False)
        parsed = parse_diff(repo.diff(base, head))
        got = {path_bytes(f.path) for f in parsed.files}
        committed = set(repo.git("ls-files", "-z").split(b"\0")) - {b""}
        assert got == committed
        assert all(f.status is FileStatus.ADDED for f in parsed.files)
