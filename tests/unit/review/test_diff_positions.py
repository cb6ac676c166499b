"""Path guard and per-forge comment anchors, checked against the forges' API descriptions."""

from __future__ import annotations

import json

import pytest
from tests.support.reference import reference_path

from auto_review.review.diff.model import parse_diff
from auto_review.review.diff.positions import ChangedLines, CommentAnchor, Forge, NotCommentable

REFERENCE = reference_path()

DIFF = (
    b"diff --git a/src/app.py b/src/app.py\n"
    b"index 1..2 100644\n--- a/src/app.py\n+++ b/src/app.py\n"
    b"@@ -10,4 +10,5 @@ def main():\n ctx10\n-old11\n+new11\n+new12\n ctx13\n ctx14\n"
    b"diff --git a/gone.py b/gone.py\ndeleted file mode 100644\nindex 1..0\n"
    b"--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    b"diff --git a/logo.png b/logo.png\nindex 1..2 100644\n"
    b"Binary files a/logo.png and b/logo.png differ\n"
    b"diff --git a/old.py b/renamed.py\nsimilarity index 90%\n"
    b"rename from old.py\nrename to renamed.py\n"
    b"--- a/old.py\n+++ b/renamed.py\n@@ -1,2 +1,2 @@\n keep\n-a\n+b\n"
)


@pytest.fixture
def guard() -> ChangedLines:
    return ChangedLines(parse_diff(DIFF).files)


def test_only_added_lines_are_commentable(guard: ChangedLines) -> None:
    assert guard.paths() == ["renamed.py", "src/app.py"]
    assert guard.is_changed("src/app.py", 11) and guard.is_changed("src/app.py", 12)
    for line in (10, 13, 14, 9, 15):  # context and out-of-hunk lines
        assert not guard.is_changed("src/app.py", line)
        with pytest.raises(NotCommentable):
            guard.anchor("src/app.py", line)
    assert guard.anchor("renamed.py", 2) == CommentAnchor("renamed.py", 2)
    for path, line in (("gone.py", 1), ("logo.png", 1), ("old.py", 2), ("nope.py", 1)):
        with pytest.raises(NotCommentable):
            guard.anchor(path, line)
    for bad in (0, -1, True, "11"):
        with pytest.raises(NotCommentable):
            guard.anchor("src/app.py", bad)  # type: ignore[arg-type]


def test_forgejo_and_gitea_anchor_matches_create_pull_review_comment(guard: ChangedLines) -> None:
    swagger = json.loads((REFERENCE / "forge" / "gitea-swagger-v1.json").read_text())
    properties = swagger["definitions"]["CreatePullReviewComment"]["properties"]
    for forge in (Forge.FORGEJO, Forge.GITEA):
        fields = guard.anchor("src/app.py", 12).for_forge(forge)
        assert fields == {"path": "src/app.py", "new_position": 12, "old_position": 0}
        assert set(fields) <= set(properties)
        for name, value in fields.items():
            assert isinstance(value, int if properties[name]["type"] == "integer" else str)


def test_github_anchor_matches_the_review_comment_schema(guard: ChangedLines) -> None:
    spec = json.loads((REFERENCE / "github" / "rest-openapi-subset.json").read_text())
    post = spec["paths"]["/repos/{owner}/{repo}/pulls/{pull_number}/reviews"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    properties = schema["properties"]["comments"]["items"]["properties"]
    fields = guard.anchor("src/app.py", 11).for_forge(Forge.GITHUB)
    assert fields == {"path": "src/app.py", "line": 11, "side": "RIGHT"}
    assert set(fields) <= set(properties)
    assert "position" not in fields  # the diff-relative position is not used
