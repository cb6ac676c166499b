"""A pull request whose file names are not UTF-8, reviewed with real git and a fake forge:
added, modified, renamed and deleted files; findings on them land in the review body,
findings on UTF-8 names inline, and nothing sent anywhere holds an unencodable character."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tests.unit.review.test_pipeline_fakes import (
    REPO,
    FakeHost,
    MemoryStore,
    Origin,
    ScriptedModel,
    finding,
    git,
    make_deps,
    make_origin,
    review,
)

from auto_review.hosts.forgejo_review import review_payload
from auto_review.review.diff.paths import display_path
from auto_review.review.mapping import fingerprints_in
from auto_review.review.pipeline import review_pull_request

BAD = os.fsdecode(b"bad-\xff\xfe.txt")  # modified
ADDED = os.fsdecode(b"added-\xff.py")
OLD = os.fsdecode(b"old-\xe9.py")  # latin-1, renamed to NEW
NEW = os.fsdecode(b"new-\xe9\xff.py")
GONE = os.fsdecode(b"gone-\xff.txt")  # deleted
RENAMED_TEXT = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(8))


def non_utf8_origin(tmp: Path) -> Origin:
    origin = make_origin(tmp)
    for name, text in ((BAD, "x\n"), (OLD, RENAMED_TEXT), (GONE, "bye\n")):
        (origin.path / name).write_text(text)
    git(origin.path, "add", "-A")
    git(origin.path, "commit", "-qm", "names")
    origin.base_sha = git(origin.path, "rev-parse", "HEAD")
    git(origin.path, "branch", "-f", "feature")
    git(origin.path, "checkout", "-q", "feature")
    git(origin.path, "mv", OLD, NEW)
    git(origin.path, "rm", "-q", GONE)
    (origin.path / NEW).write_text(RENAMED_TEXT + "def g():\n    return eval(input())\n")
    git(origin.path, "add", "-A")
    git(origin.path, "commit", "-qm", "move")
    git(origin.path, "checkout", "-q", "main")
    origin.push(
        {
            BAD: "x\ny = 1\n",
            ADDED: "import os\nos.system(input())\n",
            "app.py": "def total(items):\n    return sum(items) * 2\n",
        }
    )
    return origin


def test_non_utf8_names_are_reviewed_and_their_findings_posted_in_the_body(
    tmp_path: Path,
) -> None:
    origin = non_utf8_origin(tmp_path)
    host, store = FakeHost(origin), MemoryStore()
    answer = review(
        finding("./app.py", 2, title="Doubles the total"),  # issue 14 point 8
        finding(display_path(ADDED), 2, title="Shell injection"),
        finding(display_path(BAD)[1:-1], 2, title="Stray variable", severity="medium"),
        finding(display_path(NEW), 34, title="eval of input"),
        finding("../app.py", 2, title="Outside"),
        finding("/app.py", 2, title="Absolute"),
        summary="Several files.",
    )
    model = ScriptedModel([answer])
    deps = make_deps(tmp_path, host, model, store)
    report = asyncio.run(review_pull_request(deps, REPO, 1, expected_head=None, full=False,
                                             dry_run=False))

    # Everything sent to the model is text that a JSON body can carry as UTF-8.
    for _, messages in model.prompts:
        for message in messages:
            message.content.encode("utf-8")
    [prompt] = model.reasoning_prompts()
    for name in (ADDED, BAD, NEW):
        assert f"file: {display_path(name)}" in prompt
    assert display_path(OLD) in prompt  # the rename's source
    assert '"bad-\\377\\376.txt"' in prompt

    assert sorted(f.title for f in report.kept) == [
        "Doubles the total", "Shell injection", "Stray variable", "eval of input",
    ]
    assert {f.path for f in report.kept} == {"app.py", ADDED, BAD, NEW}  # real paths
    assert {d.finding.title for d in report.dropped} == {"Outside", "Absolute"}

    [posted] = host.posted_reviews
    assert [(c.path, c.line) for c in posted.comments] == [("app.py", 2)]
    body = posted.body
    body.encode("utf-8")
    for name in (ADDED, BAD, NEW):
        assert display_path(name) in body
    assert "Shell injection" in body and "eval of input" in body
    # The markers of the in-body findings are in the body: never posted twice.
    in_body = {f.fingerprint for f in report.kept if f.path != "app.py"}
    assert in_body <= fingerprints_in(body)
    # What the Forgejo client would send is plain JSON text.
    json.dumps(review_payload(posted), ensure_ascii=False).encode("utf-8")
    assert host.statuses[-1].state == "failure"
    assert report.planned is not None
    assert set(report.planned.new_fingerprints) == {f.fingerprint for f in report.kept}


def test_a_second_run_does_not_repeat_findings_posted_in_the_body(tmp_path: Path) -> None:
    origin = non_utf8_origin(tmp_path)
    host, store = FakeHost(origin), MemoryStore()
    model = ScriptedModel([review(finding(display_path(ADDED), 2, title="Shell injection"))])
    deps = make_deps(tmp_path, host, model, store)
    asyncio.run(review_pull_request(deps, REPO, 1, expected_head=None, full=False, dry_run=False))
    asyncio.run(review_pull_request(deps, REPO, 1, expected_head=None, full=True, dry_run=False))
    assert len(host.posted_reviews) == 1
