"""The API-description checker against GitHub's OpenAPI subset (plus the one documented
addition, issues/list-comments-for-repo)."""

from __future__ import annotations

import copy
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
