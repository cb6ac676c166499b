"""GitHub deliveries: every example payload parses or is ignored, with its own fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import load_json, reference_json_files, reference_path

from auto_review.core.refs import HostKind, PayloadError
from auto_review.hosts.events import CommentEvent, IgnoredEvent, PullRequestEvent
from auto_review.hosts.github_webhooks import (
    github_delivery_id,
    github_event_name,
    parse_github_event,
)

EXAMPLES = reference_path("github", "webhooks-examples")
GITHUB_PAYLOADS = reference_json_files("github", "webhooks-examples")
REVIEWED_ACTIONS = {"opened", "synchronize", "reopened", "ready_for_review"}


def event_name_of(path: Path) -> str:
    # octokit's examples are filed as <event>/<action>...json
    return path.relative_to(EXAMPLES).parts[0]


def load(event: str, name: str) -> dict[str, Any]:
    data = load_json(EXAMPLES / event / name)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", GITHUB_PAYLOADS, ids=lambda p: "/".join(p.parts[-2:]))
def test_every_example_parses_to_its_own_fields(path: Path) -> None:
    payload = load_json(path)
    assert isinstance(payload, dict)
    event_name = event_name_of(path)
    event = parse_github_event(event_name, copy.deepcopy(payload))

    if event_name == "pull_request" and payload["action"] in REVIEWED_ACTIONS:
        pull, repository = payload["pull_request"], payload["repository"]
        assert isinstance(event, PullRequestEvent)
        assert event.repo.host is HostKind.GITHUB
        assert event.repo.full_name == repository["full_name"]
        assert event.repo.owner == repository["owner"]["login"]
        assert event.repo.name == repository["name"]
        assert event.number == pull["number"] == payload["number"]
        assert event.action == payload["action"]
        assert event.head_sha == pull["head"]["sha"]
        assert event.base_sha == pull["base"]["sha"]
        assert event.author == pull["user"]["login"]
        assert event.title == pull["title"]
        assert event.draft is pull["draft"]
    elif (
        event_name == "issue_comment"
        and payload["action"] == "created"
        and "pull_request" in payload["issue"]
    ):
        assert isinstance(event, CommentEvent)
        assert event.comment_id == payload["comment"]["id"]
    else:
        # ping, installation, check_suite, pull_request_review, other PR actions,
        # comment edits/deletions and comments on plain issues.
        assert isinstance(event, IgnoredEvent)
        assert event.reason


def test_the_examples_cover_every_reviewed_action() -> None:
    actions = set()
    for path in GITHUB_PAYLOADS:
        event = parse_github_event(event_name_of(path), load_json(path))  # type: ignore[arg-type]
        if isinstance(event, PullRequestEvent):
            actions.add(event.action)
    assert actions == REVIEWED_ACTIONS


@pytest.mark.parametrize(
    "name",
    ["created.payload.json", "created.1.payload.json", "created.with-installation.payload.json"],
)
def test_comment_on_a_pull_request_becomes_comment_event(name: str) -> None:
    # The examples only comment on plain issues; GitHub marks a PR's conversation by
    # adding issue.pull_request, so add that to the real payload.
    payload = load("issue_comment", name)
    repository, issue, comment = payload["repository"], payload["issue"], payload["comment"]
    issue["pull_request"] = {"url": f"{repository['url']}/pulls/{issue['number']}"}
    event = parse_github_event("issue_comment", payload)
    assert isinstance(event, CommentEvent)
    assert event.repo.host is HostKind.GITHUB
    assert event.repo.full_name == repository["full_name"]
    assert event.pr_number == issue["number"]
    assert event.comment_id == comment["id"]
    assert event.author == comment["user"]["login"]
    assert event.body == comment["body"]
    assert event.is_pull_request is True


def test_comment_on_plain_issue_is_ignored() -> None:
    payload = load("issue_comment", "created.payload.json")
    assert "pull_request" not in payload["issue"]
    event = parse_github_event("issue_comment", payload)
    assert isinstance(event, IgnoredEvent)
    assert "plain issue" in event.reason


def test_pr_comment_edits_are_ignored() -> None:
    payload = load("issue_comment", "edited.payload.json")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/x"}
    assert isinstance(parse_github_event("issue_comment", payload), IgnoredEvent)


def test_draft_pull_request_keeps_its_draft_flag() -> None:
    payload = load("pull_request", "opened.payload.json")
    payload["pull_request"]["draft"] = True
    event = parse_github_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.draft is True
    assert event.action == "opened"


def test_gitea_spelling_is_not_a_github_action() -> None:
    payload = load("pull_request", "synchronize.payload.json")
    payload["action"] = "synchronized"
    assert isinstance(parse_github_event("pull_request", payload), IgnoredEvent)


def test_bot_author_login_is_accepted() -> None:
    payload = load("pull_request", "opened.payload.json")
    payload["pull_request"]["user"]["login"] = "dependabot[bot]"
    event = parse_github_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.author == "dependabot[bot]"


def test_dot_github_repository_name_is_accepted() -> None:
    payload = load("pull_request", "opened.payload.json")
    payload["repository"]["name"] = ".github"
    payload["repository"]["full_name"] = "Codertocat/.github"
    event = parse_github_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.repo.full_name == "Codertocat/.github"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("pull_request", "head", "sha"), "ec26c3e5"),
        (("pull_request", "head", "sha"), "ec26c3e57ca3a959ca5aad62de7213c562f8c821 "),
        (("pull_request", "base", "sha"), ""),
        (("pull_request", "number"), "2"),
        (("pull_request", "number"), None),
        (("number",), 3),
        (("repository", "owner", "login"), "Codertocat/Hello"),
        (("repository", "name"), "Hello World"),
        (("repository", "name"), "-Hello"),
        (("repository", "full_name"), "Codertocat/hello-world"),
        (("pull_request", "user", "login"), "[bot]"),
        (("pull_request", "draft"), 0),
        (("pull_request", "title"), 5),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_bad_pull_request_values_are_refused(path: tuple[str, ...], value: object) -> None:
    payload = load("pull_request", "opened.payload.json")
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PayloadError):
        parse_github_event("pull_request", payload)


@pytest.mark.parametrize(
    ("key", "value"),
    [("pull_request", "yes"), ("pull_request", []), ("number", 0)],
)
def test_bad_issue_values_are_refused(key: str, value: object) -> None:
    payload = load("issue_comment", "created.payload.json")
    payload["issue"].setdefault("pull_request", {})
    payload["issue"][key] = value
    with pytest.raises(PayloadError):
        parse_github_event("issue_comment", payload)


def test_missing_action_is_refused() -> None:
    payload = load("pull_request", "opened.payload.json")
    del payload["action"]
    with pytest.raises(PayloadError, match="missing field action"):
        parse_github_event("pull_request", payload)


def test_headers() -> None:
    headers = {
        "X-GitHub-Event": "pull_request",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    assert github_event_name(headers) == "pull_request"
    assert github_delivery_id(headers) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert github_delivery_id({"X-GitHub-Event": "ping"}) is None
    with pytest.raises(PayloadError, match="missing X-GitHub-Event"):
        github_event_name({"X-Gitea-Event": "pull_request"})
