"""The forge-neutral event model enforces its own invariants, whoever builds it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from auto_review.core.refs import HostKind, PayloadError, RepoRef
from auto_review.hosts.events import (
    CommentEvent,
    JsonObject,
    PullRequestAction,
    PullRequestEvent,
    check_delivery_id,
    describe,
    has_prefix,
    header_values,
    single_header,
)

REPO = RepoRef(HostKind.FORGEJO, "owner", "repo")
SHA1 = "36b5813240a9d2daa29b05046d56a53e18f39a3e"


def pull(**changes: Any) -> PullRequestEvent:
    fields: dict[str, Any] = {
        "repo": REPO,
        "number": 7,
        "action": "opened",
        "head_sha": SHA1,
        "base_sha": "b" * 64,
        "author": "alice",
        "draft": False,
        "title": "A change",
    }
    fields.update(changes)
    return PullRequestEvent(**fields)


def comment(**changes: Any) -> CommentEvent:
    fields: dict[str, Any] = {
        "repo": REPO,
        "pr_number": 7,
        "comment_id": 2**40,
        "author": "bob",
        "body": "@auto-review help",
        "is_pull_request": True,
    }
    fields.update(changes)
    return CommentEvent(**fields)


def test_repo_ref() -> None:
    assert REPO.full_name == "owner/repo"
    assert RepoRef(HostKind.GITHUB, "Octo-Org", ".github").full_name == "Octo-Org/.github"
    assert HostKind("forgejo") is HostKind.FORGEJO
    with pytest.raises(dataclasses.FrozenInstanceError):
        REPO.owner = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("owner", "name"),
    [("", "r"), ("o", ""), ("o/x", "r"), ("o", "r/x"), ("o", ".."), ("o", "."), (".o", "r"),
     ("-o", "r"), ("o", "-r"), ("o", "r\n"), ("o" * 101, "r"), ("o", "r" * 101), (1, "r")],
)  # fmt: skip
def test_repo_ref_refuses_unsafe_names(owner: Any, name: Any) -> None:
    with pytest.raises(PayloadError):
        RepoRef(HostKind.GITHUB, owner, name)


def test_repo_ref_needs_a_host_kind() -> None:
    with pytest.raises(PayloadError):
        RepoRef("github", "o", "r")  # type: ignore[arg-type]


def test_valid_events_build() -> None:
    event = pull(action=PullRequestAction.READY_FOR_REVIEW)
    assert event.action == "ready_for_review"
    assert comment().comment_id == 2**40


@pytest.mark.parametrize(
    "changes",
    [
        {"number": 0},
        {"number": True},
        {"number": 2**31},
        {"action": "closed"},
        {"action": "synchronized"},
        {"action": ["opened"]},
        {"head_sha": SHA1.upper()},  # the model holds normalised (lower-case) ids only
        {"head_sha": SHA1[:-1]},
        {"base_sha": None},
        {"author": "has space"},
        {"author": 5},
        {"draft": 1},
        {"title": None},
    ],
    ids=repr,
)
def test_pull_request_invariants(changes: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        pull(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"pr_number": -1},
        {"comment_id": 0},
        {"comment_id": 2**63},
        {"author": ""},
        {"body": None},
        {"is_pull_request": "yes"},
    ],
    ids=repr,
)
def test_comment_invariants(changes: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        comment(**changes)


def test_json_object_paths_in_messages() -> None:
    root = JsonObject({"a": {"b": 1, "c": None, "d": True}}, "")
    child = root.child("a")
    with pytest.raises(PayloadError, match=r"^a\.b must be a string$"):
        child.text("b")
    with pytest.raises(PayloadError, match=r"^missing field a\.x$"):
        child.required("x")
    with pytest.raises(PayloadError, match=r"^a\.b must be a JSON object$"):
        child.child("b")
    assert child.optional_text("c") is None
    assert child.flag("c", default=True) is True
    assert child.flag("d", default=False) is True
    assert child.raw("missing") is None and not child.has("missing")
    with pytest.raises(PayloadError, match="must be a JSON object"):
        JsonObject([1], "")


def test_header_helpers() -> None:
    headers = {"X-Thing": " one ", "x-other": "two"}
    assert header_values(headers, "x-thing") == [" one "]
    assert single_header(headers, ("X-Missing", "X-THING"), "thing") == "one"
    assert single_header(headers, ("X-Missing",), "thing") is None
    with pytest.raises(PayloadError, match="conflicting thing headers"):
        single_header(headers, ("X-Thing", "X-Other"), "thing")


def test_title_prefix() -> None:
    assert has_prefix("  wip: x", ("WIP:",))
    assert not has_prefix("x WIP:", ("WIP:",))
    assert not has_prefix("WIP: x", ())


def test_describe_keeps_reasons_log_safe() -> None:
    assert describe("pull_request") == "'pull_request'"
    assert describe("evil\nINFO fake log line") == "(unprintable)"
    assert describe("x" * 65) == "(unprintable)"


@pytest.mark.parametrize("value", ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "1", "a.b:c_d"])
def test_delivery_ids(value: str) -> None:
    assert check_delivery_id(value) == value
