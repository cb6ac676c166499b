"""The API-description checker catches drift, so the fakes cannot wander from real Gitea.

The GitHub half of these checks lives in test_github_spec_check.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.support.fake_forgejo import FakeForgejo, RecordedExchange
from tests.support.openapi_check import ApiSpec

AUTH = {"authorization": "token abc"}


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.gitea()


def exchange(
    path: str,
    *,
    query: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    status: int = 200,
    body: Any = None,
    method: str = "GET",
) -> RecordedExchange:
    return RecordedExchange(
        method, path, query or {}, AUTH if headers is None else headers, b"", status, body
    )


def test_every_object_the_fake_serves_validates(spec: ApiSpec) -> None:
    with FakeForgejo("abc") as fake:
        sha = "ab" * 20
        fake.add_pull_request("o", "r", 1, head_sha=sha, base_sha=sha)
        fake.add_pull_request("o", "r", 2, head_sha=sha, base_sha=sha, draft=None, merged=True)
        fake.add_comment("o", "r", 1, author="a", body="b")
        fake.add_comment("o", "r", 3, author="a", body="b", on_pull=False)
        pull = fake.pulls[("o", "r", 1)]
        old_pull = fake.pulls[("o", "r", 2)]
        comments = [fake.comment_object(c) for c in fake.comments]
        user = fake.user_object("bot")
    checks = [
        exchange("/api/v1/repos/o/r/pulls/1", body=pull),
        exchange("/api/v1/repos/o/r/pulls/2", body=old_pull),
        exchange(
            "/api/v1/repos/o/r/issues/comments",
            query={"since": ["2026-01-01T00:00:00Z"]},
            body=comments,
        ),
        exchange("/api/v1/user", body=user),
        exchange("/api/v1/version", body={"version": "1.22.0"}),
    ]
    spec.assert_conforms(checks)


def test_wrong_types_in_responses_are_caught(spec: ApiSpec) -> None:
    with FakeForgejo("abc") as fake:
        fake.add_pull_request("o", "r", 1, head_sha="a" * 40, base_sha="b" * 40)
        pull = copy.deepcopy(fake.pulls[("o", "r", 1)])
    pull["number"] = "1"
    pull["head"]["sha"] = 5
    problems = spec.problems([exchange("/api/v1/repos/o/r/pulls/1", body=pull)])
    assert any("/number" in p and "'1'" in p for p in problems)
    assert any("/head/sha" in p for p in problems)
    problems = spec.problems([exchange("/api/v1/repos/o/r/issues/comments", body={"id": 1})])
    assert any("is not of type 'array'" in p for p in problems)


def test_requests_outside_the_api_are_caught(spec: ApiSpec) -> None:
    assert spec.problems([exchange("/api/v1/repos/o/r/frobnicate")]) == [
        "GET /api/v1/repos/o/r/frobnicate: no such operation in the API description"
    ]
    assert "outside the API base path" in spec.problems([exchange("/repos/o/r/pulls/1")])[0]
    assert "no such operation" in spec.problems([exchange("/api/v1/user", method="PATCH")])[0]


def test_query_parameters_are_checked(spec: ApiSpec) -> None:
    problems = spec.problems(
        [
            exchange(
                "/api/v1/repos/o/r/issues/comments",
                query={"since": ["yesterday"], "per_page": ["5"], "page": ["x"], "token": ["t"]},
                body=[],
            )
        ]
    )
    assert problems == [
        "GET /repos/{owner}/{repo}/issues/comments: query since is not an RFC 3339 date-time",
        "GET /repos/{owner}/{repo}/issues/comments: undeclared query parameter 'per_page'",
        "GET /repos/{owner}/{repo}/issues/comments: query page is not an integer",
        "GET /repos/{owner}/{repo}/issues/comments: credential in query parameter 'token'",
    ]


def test_path_parameters_and_auth_header_are_checked(spec: ApiSpec) -> None:
    problems = spec.problems([exchange("/api/v1/repos/o/r/pulls/seven", headers={}, body={})])
    assert problems == [
        "GET /repos/{owner}/{repo}/pulls/{index}: path parameter index is not an integer",
        "GET /repos/{owner}/{repo}/pulls/{index}: header 'authorization' missing",
    ]
    problems = spec.problems(
        [exchange("/api/v1/user", headers={"authorization": "Bearer abc"}, body={})]
    )
    assert problems == ["GET /user: header 'authorization' has the wrong form"]


def test_literal_segments_win_over_parameters(spec: ApiSpec) -> None:
    operation, values = spec.match("GET", "/repos/o/r/issues/comments") or (None, None)
    assert operation is not None and operation.definition["operationId"] == "issueGetRepoComments"
    assert values == {"owner": "o", "repo": "r"}


def test_undocumented_success_status_is_caught_but_errors_pass(spec: ApiSpec) -> None:
    assert spec.problems([exchange("/api/v1/user", status=201, body={})]) == [
        "GET /user -> 201: success status not documented"
    ]
    assert spec.problems([exchange("/api/v1/user", status=401, body={"message": "x"})]) == []


def test_an_empty_recording_is_a_failure(spec: ApiSpec) -> None:
    with pytest.raises(AssertionError, match="no HTTP exchanges"):
        spec.assert_conforms([])


def posted(path: str, payload: Any, *, content_type: str = "application/json") -> RecordedExchange:
    return RecordedExchange(
        "POST",
        path,
        {},
        {**AUTH, "content-type": content_type},
        json.dumps(payload).encode(),
        200,
        {"id": 1},
    )


def test_request_body_fields_are_checked_against_the_body_parameter(spec: ApiSpec) -> None:
    good: dict[str, Any] = {
        "event": "COMMENT",
        "commit_id": "a" * 40,
        "body": "summary",
        "comments": [{"path": "a.py", "body": "x", "new_position": 3, "old_position": 0}],
    }
    assert spec.problems([posted("/api/v1/repos/o/r/pulls/1/reviews", good)]) == []
    bad = copy.deepcopy(good)
    bad["comments"][0]["new_postion"] = 3  # a misspelling Gitea would silently ignore
    bad["comments"][0]["old_position"] = "0"
    bad["event"] = "COMMENTED"
    bad["draft"] = True
    problems = spec.problems([posted("/api/v1/repos/o/r/pulls/1/reviews", bad)])
    where = "POST /repos/{owner}/{repo}/pulls/{index}/reviews: "
    assert where + "body field /comments/0/new_postion is not in the API description" in problems
    assert where + "body field /draft is not in the API description" in problems
    assert any(p.startswith(where + "body at /comments/0/old_position") for p in problems)
    assert any(p.startswith(where + "body at /event") for p in problems)


def test_request_body_media_type_and_presence_are_checked(spec: ApiSpec) -> None:
    status = {"state": "success", "context": "auto-review"}
    problems = spec.problems(
        [posted("/api/v1/repos/o/r/statuses/abc", status, content_type="text/plain")]
    )
    assert "request body is not sent as application/json" in problems[0]
    missing_body = RecordedExchange(
        "POST", "/api/v1/repos/o/r/pulls/1/reviews", {}, AUTH, b"", 200, {"id": 1}
    )
    assert spec.problems([missing_body]) == [
        "POST /repos/{owner}/{repo}/pulls/{index}/reviews: request body required"
    ]
    unexpected = exchange("/api/v1/user", body={"login": "bot"})
    unexpected.body = b"{}"
    assert spec.problems([unexpected]) == ["GET /user: unexpected request body"]


def test_diff_and_raw_paths_match_their_operations(spec: ApiSpec) -> None:
    operation, values = spec.match("GET", "/repos/o/r/pulls/7.diff") or (None, None)
    assert operation is not None
    assert operation.definition["operationId"] == "repoDownloadPullDiffOrPatch"
    assert values == {"owner": "o", "repo": "r", "index": "7", "diffType": "diff"}
    operation, values = spec.match("GET", "/repos/o/r/raw/docs/a%20b/c.md") or (None, None)
    assert operation is not None and operation.definition["operationId"] == "repoGetRawFile"
    assert values is not None and values["filepath"] == "docs/a%20b/c.md"


def test_raw_responses_need_a_media_type_the_operation_produces(spec: ApiSpec) -> None:
    diff = exchange("/api/v1/repos/o/r/pulls/7.diff")
    diff.response_json, diff.response_body = None, b"diff --git a/x b/x\n"
    diff.response_content_type = "text/plain; charset=utf-8"
    raw = exchange("/api/v1/repos/o/r/raw/a.txt", query={"ref": ["main"]})
    raw.response_json, raw.response_content_type = None, "application/octet-stream"
    assert spec.problems([diff, raw]) == []
    raw.response_content_type = "text/html"
    assert spec.problems([raw]) == [
        "GET /repos/{owner}/{repo}/raw/{filepath} -> 200: response media type text/html is "
        "not one the operation produces"
    ]
