"""The API-description checker against GitHub's OpenAPI subset (plus the one documented
addition, issues/list-comments-for-repo)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.support.fake_forgejo import RecordedExchange
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.openapi_check import ApiSpec

HEADERS = {
    "authorization": "Bearer abc",
    "accept": "application/vnd.github+json",
    "x-github-api-version": "2022-11-28",
    "user-agent": "auto-review",
}


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.github()


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    _, public = generate_app_key()
    with FakeGitHub(1, public) as fake:
        fake.install("o", "r", 5)
        fake.add_pull_request("o", "r", 1, head_sha="a" * 40, base_sha="b" * 40)
        fake.add_comment("o", "r", 1, author="a", body="b")
        fake.add_comment("o", "r", 2, author="a", body="b", on_pull=False)
        return {
            "pull": fake.pulls[("o", "r", 1)],
            "comments": [fake.comment_object(c) for c in fake.comments],
            "installation": fake.installation_object(5),
            "token": fake._issue_token(5),
            "app": fake.app_object(),
        }


def exchange(
    path: str,
    *,
    method: str = "GET",
    query: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    status: int = 200,
    body: Any = None,
) -> RecordedExchange:
    return RecordedExchange(
        method, path, query or {}, HEADERS if headers is None else headers, b"", status, body
    )


def test_every_object_the_fake_serves_validates(spec: ApiSpec, objects: dict[str, Any]) -> None:
    spec.assert_conforms(
        [
            exchange("/repos/o/r/pulls/1", body=objects["pull"]),
            exchange(
                "/repos/o/r/issues/comments",
                query={
                    "since": ["2026-01-01T00:00:00Z"],
                    "sort": ["updated"],
                    "direction": ["asc"],
                },
                body=objects["comments"],
            ),
            exchange("/repos/o/r/installation", body=objects["installation"]),
            exchange(
                "/app/installations/5/access_tokens",
                method="POST",
                status=201,
                body=objects["token"],
            ),
            exchange("/app", body=objects["app"]),
            exchange("/repos/o/r/pulls/9", status=404, body={"message": "Not Found"}),
        ]
    )


def test_required_fields_and_nullability_are_enforced(
    spec: ApiSpec, objects: dict[str, Any]
) -> None:
    pull = copy.deepcopy(objects["pull"])
    del pull["head"]
    pull["milestone"] = None  # nullable: fine
    pull["title"] = None  # not nullable
    problems = spec.problems([exchange("/repos/o/r/pulls/1", body=pull)])
    assert any("'head' is a required property" in p for p in problems)
    assert any("/title" in p for p in problems)
    assert not any("/milestone" in p for p in problems)
    token = {"token": "x"}
    problems = spec.problems(
        [exchange("/app/installations/5/access_tokens", method="POST", status=201, body=token)]
    )
    assert any("'expires_at' is a required property" in p for p in problems)


def test_headers_and_query_are_checked(spec: ApiSpec) -> None:
    problems = spec.problems(
        [
            exchange(
                "/repos/o/r/issues/comments",
                query={"sort": ["newest"], "limit": ["5"]},
                headers={"authorization": "token abc", "user-agent": "x"},
                body=[],
            )
        ]
    )
    where = "GET /repos/{owner}/{repo}/issues/comments: "
    assert problems == [
        where + "query sort is not one of ['created', 'updated']",
        where + "undeclared query parameter 'limit'",
        where + "header 'authorization' has the wrong form",
        where + "header 'accept' missing",
        where + "header 'x-github-api-version' missing",
    ]


def test_operations_not_in_the_description_are_caught(spec: ApiSpec) -> None:
    assert spec.problems([exchange("/repos/o/r/pulls")]) == [
        "GET /repos/o/r/pulls: no such operation in the API description"
    ]
    assert "no such operation" in spec.problems([exchange("/app", method="DELETE")])[0]


def posted(path: str, payload: Any, status: int = 200) -> RecordedExchange:
    headers = {**HEADERS, "content-type": "application/json"}
    return RecordedExchange("POST", path, {}, headers, json.dumps(payload).encode(), status, None)


def test_request_body_fields_are_checked_against_the_request_body(spec: ApiSpec) -> None:
    good: dict[str, Any] = {
        "commit_id": "a" * 40,
        "body": "summary",
        "event": "COMMENT",
        "comments": [{"path": "a.py", "line": 3, "side": "RIGHT", "body": "x"}],
    }
    review = {"id": 1}
    ok = posted("/repos/o/r/pulls/1/reviews", good)
    ok.response_json = review
    assert [p for p in spec.problems([ok]) if "-> 200" not in p] == []
    bad = copy.deepcopy(good)
    bad["event"] = "COMMENTED"
    bad["comments"][0]["new_position"] = 3  # Gitea's field, not GitHub's
    del bad["comments"][0]["path"]
    problems = spec.request_problems(posted("/repos/o/r/pulls/1/reviews", bad))
    where = "POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews: "
    assert where + "body field /comments/0/new_position is not in the API description" in problems
    assert any(p.startswith(where + "body at /event") for p in problems)
    assert any("'path' is a required property" in p for p in problems)
    status = spec.request_problems(posted("/repos/o/r/statuses/" + "a" * 40, {"context": "x"}))
    assert any("'state' is a required property" in p for p in status)


def test_custom_media_types_are_allowed_where_the_operation_lists_them(spec: ApiSpec) -> None:
    diff = exchange(
        "/repos/o/r/pulls/1", headers={**HEADERS, "accept": "application/vnd.github.diff"}
    )
    diff.response_content_type = "application/vnd.github.diff; charset=utf-8"
    diff.response_body = b"diff --git a/x b/x\n"
    raw = exchange(
        "/repos/o/r/contents/docs/read%20me.md",
        query={"ref": ["main"]},
        headers={**HEADERS, "accept": "application/vnd.github.raw+json"},
    )
    raw.response_content_type = "application/vnd.github.raw"
    assert spec.problems([diff, raw]) == []
    # the diff media type is not documented for listing comments
    wrong = exchange(
        "/repos/o/r/issues/1/comments",
        headers={**HEADERS, "accept": "application/vnd.github.diff"},
        body=[],
    )
    assert spec.problems([wrong]) == [
        "GET /repos/{owner}/{repo}/issues/{issue_number}/comments: header 'accept' has the "
        "wrong form"
    ]
    # a diff answered to a request that asked for JSON
    sneaky = exchange("/repos/o/r/pulls/1")
    sneaky.response_content_type = "application/vnd.github.diff"
    assert spec.problems([sneaky]) == [
        "GET /repos/{owner}/{repo}/pulls/{pull_number} -> 200: non-JSON response "
        "(application/vnd.github.diff) to a request for application/vnd.github+json"
    ]


def test_multi_segment_path_parameters(spec: ApiSpec) -> None:
    operation, values = spec.match("GET", "/repos/o/r/contents/a/b/c.txt") or (None, None)
    assert operation is not None and operation.definition["operationId"] == "repos/get-content"
    assert values == {"owner": "o", "repo": "r", "path": "a/b/c.txt"}
    assert spec.match("GET", "/repos/o/r/pulls/1/extra") is None
