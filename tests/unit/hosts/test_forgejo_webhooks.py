"""Forgejo/Gitea deliveries: every real payload parses, and the parser refuses bad ones."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import load_json, reference_json_files

from auto_review.core.refs import HostKind, PayloadError
from auto_review.hosts.events import CommentEvent, IgnoredEvent, PullRequestEvent
from auto_review.hosts.forgejo_webhooks import (
    forgejo_delivery_id,
    forgejo_event_name,
    parse_forgejo_event,
)

FORGE_PAYLOADS = reference_json_files("forge", "payloads")

# Values of X-Gitea-Event (Gitea's HookEventType.Event()); a payload file is named
# "<forge>_<event>_<rest>.json", so the longest event name its stem starts with is its event.
GITEA_EVENT_NAMES = (
    "create",
    "delete",
    "fork",
    "push",
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_approved",
    "pull_request_rejected",
    "pull_request_comment",
    "wiki",
    "repository",
    "release",
)

# Gitea/Forgejo action -> normalised action; anything else on pull_request is ignored.
EXPECTED_PR_ACTIONS = {
    "opened": "opened",
    "synchronized": "synchronize",
    "reopened": "reopened",
}


def event_name_of(path: Path) -> str:
    stem = path.stem
    for forge in ("gitea_", "forgejo_"):
        stem = stem.removeprefix(forge)
    matches = [name for name in GITEA_EVENT_NAMES if stem == name or stem.startswith(name + "_")]
    assert matches, f"cannot tell the event of {path.name}: name it <forge>_<event>_..."
    return max(matches, key=len)


def load(name: str) -> dict[str, Any]:
    (path,) = [p for p in FORGE_PAYLOADS if p.name == name]
    data = load_json(path)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", FORGE_PAYLOADS, ids=lambda p: p.name)
def test_every_real_payload_parses_to_its_own_fields(path: Path) -> None:
    payload = load_json(path)
    assert isinstance(payload, dict)
    event_name = event_name_of(path)
    event = parse_forgejo_event(event_name, copy.deepcopy(payload))

    repository = payload["repository"]
    if event_name == "pull_request" and payload["action"] in EXPECTED_PR_ACTIONS:
        pull = payload["pull_request"]
        assert isinstance(event, PullRequestEvent)
        assert event.repo.host is HostKind.FORGEJO
        assert event.repo.full_name == repository["full_name"]
        assert (event.repo.owner, event.repo.name) == (
            repository["owner"]["login"],
            repository["name"],
        )
        assert event.number == pull["number"] == payload["number"]
        assert event.action == EXPECTED_PR_ACTIONS[payload["action"]]
        assert event.head_sha == pull["head"]["sha"]
        assert event.base_sha == pull["base"]["sha"]
        assert event.author == pull["user"]["login"]
        assert event.title == pull["title"]
        assert event.draft is pull.get("draft", False)
    elif (
        event_name == "issue_comment"
        and payload["action"] == "created"
        and (payload.get("is_pull") or payload["issue"].get("pull_request") is not None)
    ):
        comment = payload["comment"]
        assert isinstance(event, CommentEvent)
        assert event.repo.full_name == repository["full_name"]
        assert event.pr_number == payload["issue"]["number"]
        assert event.comment_id == comment["id"]
        assert event.author == comment["user"]["login"]
        assert event.body == comment["body"]
        assert event.is_pull_request is True
    else:
        assert isinstance(event, IgnoredEvent)
        assert event.reason


def test_the_reference_set_covers_every_supported_kind() -> None:
    # Guards the walk above: if files vanish or stop parsing as events, this says so.
    kinds = set()
    for path in FORGE_PAYLOADS:
        event = parse_forgejo_event(event_name_of(path), load_json(path))  # type: ignore[arg-type]
        kinds.add((type(event).__name__, getattr(event, "action", None)))
    assert {
        ("PullRequestEvent", "opened"),
        ("PullRequestEvent", "synchronize"),
        ("PullRequestEvent", "reopened"),
        ("CommentEvent", None),
    } <= kinds


# -- actions and variants derived from the real payloads --------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "closed",
        "edited",
        "assigned",
        "label_updated",
        "label_cleared",
        "milestoned",
        "reviewed",
        "review_requested",
        "synchronize",
        "OPENED",
        "",
    ],
)
def test_other_pull_request_actions_are_ignored(action: str) -> None:
    payload = load("gitea_pull_request_synchronized.json")
    payload["action"] = action
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, IgnoredEvent)


def test_ignored_action_does_not_need_the_rest_of_the_payload() -> None:
    event = parse_forgejo_event("pull_request", {"action": "closed"})
    assert isinstance(event, IgnoredEvent)


def test_draft_flag_from_payload_field() -> None:
    payload = load("forgejo_pull_request_reopened.json")
    payload["pull_request"]["draft"] = True
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.draft is True


@pytest.mark.parametrize(
    ("title", "draft"),
    [
        ("WIP: add licence", True),
        ("[wip] add licence", True),
        ("  wip:x", True),
        ("Add licence (WIP)", False),
        ("WIPE the cache", False),
    ],
)
def test_draft_flag_from_wip_title_when_field_absent(title: str, draft: bool) -> None:
    payload = load("gitea_pull_request_opened.json")
    assert "draft" not in payload["pull_request"]
    payload["pull_request"]["title"] = title
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.draft is draft


def test_draft_field_wins_over_title() -> None:
    payload = load("forgejo_pull_request_reopened.json")
    payload["pull_request"]["title"] = "WIP: not really"
    payload["pull_request"]["draft"] = False
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.draft is False


def _edited(old_title: str, new_title: str, draft: bool | None) -> dict[str, Any]:
    payload = load("forgejo_pull_request_reopened.json")
    payload["action"] = "edited"
    payload["changes"] = {"title": {"from": old_title}}
    payload["pull_request"]["title"] = new_title
    if draft is None:
        del payload["pull_request"]["draft"]
    else:
        payload["pull_request"]["draft"] = draft
    return payload


@pytest.mark.parametrize("draft", [False, None])
def test_removing_wip_prefix_is_ready_for_review(draft: bool | None) -> None:
    event = parse_forgejo_event("pull_request", _edited("WIP: Some change", "Some change", draft))
    assert isinstance(event, PullRequestEvent)
    assert event.action == "ready_for_review"
    assert event.draft is False
    assert event.title == "Some change"


@pytest.mark.parametrize(
    ("old", "new", "draft"),
    [
        ("Some change", "Better change", False),  # plain rename
        ("WIP: Some change", "WIP: Better change", True),  # still a draft
        ("WIP: Some change", "WIP: Better change", None),  # still a draft, by title
        ("Some change", "WIP: Some change", True),  # back to draft
    ],
)
def test_other_title_edits_are_ignored(old: str, new: str, draft: bool | None) -> None:
    assert isinstance(parse_forgejo_event("pull_request", _edited(old, new, draft)), IgnoredEvent)


def test_body_edit_is_ignored() -> None:
    payload = _edited("x", "x", False)
    payload["changes"] = {"body": {"from": "old body"}}
    assert isinstance(parse_forgejo_event("pull_request", payload), IgnoredEvent)


def test_edit_with_malformed_changes_is_refused() -> None:
    payload = _edited("x", "x", False)
    payload["changes"] = {"title": {"from": 7}}
    with pytest.raises(PayloadError, match=r"changes\.title\.from"):
        parse_forgejo_event("pull_request", payload)


def test_comment_on_plain_issue_is_ignored() -> None:
    payload = load("gitea_issue_comment_created_on_pull.json")
    payload["issue"]["pull_request"] = None
    event = parse_forgejo_event("issue_comment", payload)
    assert isinstance(event, IgnoredEvent)
    assert "plain issue" in event.reason


@pytest.mark.parametrize(("is_pull", "expected"), [(True, CommentEvent), (False, IgnoredEvent)])
def test_is_pull_field_decides_when_present(is_pull: bool, expected: type) -> None:
    payload = load("gitea_issue_comment_created_on_pull.json")
    payload["is_pull"] = is_pull
    payload["issue"]["pull_request"] = None if is_pull else {"merged": False}
    assert isinstance(parse_forgejo_event("issue_comment", payload), expected)


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_comment_edits_and_deletions_are_ignored(action: str) -> None:
    payload = load("gitea_issue_comment_created_on_pull.json")
    payload["action"] = action
    assert isinstance(parse_forgejo_event("issue_comment", payload), IgnoredEvent)


@pytest.mark.parametrize(
    "event_name",
    ["push", "issues", "create", "pull_request_approved", "pull_request_comment", "Pull_Request"],
)
def test_unhandled_events_are_ignored(event_name: str) -> None:
    payload = load("gitea_pull_request_opened.json")
    event = parse_forgejo_event(event_name, payload)
    assert isinstance(event, IgnoredEvent)
    assert repr(event_name) in event.reason


# -- refusals: values that later become URLs, refs and keys ----------------------------


def _set(payload: dict[str, Any], dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value


def _delete(payload: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    target = payload
    for key in parents:
        target = target[key]
    del target[last]


BAD_PR_VALUES = [
    ("pull_request.head.sha", "36b5813"),
    ("pull_request.head.sha", "36b5813240a9d2daa29b05046d56a53e18f39a3g"),
    ("pull_request.head.sha", "36b5813240a9d2daa29b05046d56a53e18f39a3e\n"),
    ("pull_request.head.sha", " 36b5813240a9d2daa29b05046d56a53e18f39a3e"),
    ("pull_request.head.sha", "refs/heads/main"),
    ("pull_request.head.sha", None),
    ("pull_request.head.sha", 12),
    ("pull_request.base.sha", "a" * 41),
    ("pull_request.head", "36b5813240a9d2daa29b05046d56a53e18f39a3e"),
    ("pull_request.number", 0),
    ("pull_request.number", -1),
    ("pull_request.number", "1"),
    ("pull_request.number", 1.0),
    ("pull_request.number", True),
    ("pull_request.number", 2**31),
    ("number", 2),
    ("repository.owner.login", "test_it/../x"),
    ("repository.owner.login", "-rf"),
    ("repository.owner.login", ".hidden"),
    ("repository.owner.login", "te st"),
    ("repository.owner.login", "tëst"),
    ("repository.owner.login", ""),
    ("repository.name", ".."),
    ("repository.name", "."),
    ("repository.name", "a/b"),
    ("repository.name", "name?x=1"),
    ("repository.name", "x" * 101),
    ("repository.full_name", "someone/else"),
    ("repository.owner", None),
    ("repository", []),
    ("pull_request.user.login", "a b"),
    ("pull_request.user", None),
    ("pull_request.title", None),
    ("pull_request.draft", "false"),
    ("pull_request", "1"),
    ("action", None),
    ("action", ["opened"]),
]


@pytest.mark.parametrize(("field", "value"), BAD_PR_VALUES, ids=lambda v: repr(v)[:40])
def test_bad_pull_request_values_are_refused(field: str, value: object) -> None:
    payload = load("forgejo_pull_request_reopened.json")
    _set(payload, field, value)
    with pytest.raises(PayloadError) as caught:
        parse_forgejo_event("pull_request", payload)
    # The message names the problem, never the attacker-chosen value.
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(caught.value)


@pytest.mark.parametrize(
    "field",
    [
        "pull_request",
        "pull_request.head",
        "pull_request.head.sha",
        "pull_request.base.sha",
        "pull_request.number",
        "pull_request.user",
        "pull_request.title",
        "repository",
        "repository.owner",
        "repository.name",
        "action",
    ],
)
def test_missing_required_pull_request_fields_are_refused(field: str) -> None:
    payload = load("forgejo_pull_request_reopened.json")
    _delete(payload, field)
    with pytest.raises(PayloadError, match="missing field"):
        parse_forgejo_event("pull_request", payload)


def test_missing_full_name_is_accepted() -> None:
    payload = load("forgejo_pull_request_reopened.json")
    del payload["repository"]["full_name"]
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.repo.full_name == "test_it/test_ci_thing"


def test_sha256_object_ids_and_upper_case_hex_are_accepted() -> None:
    payload = load("forgejo_pull_request_reopened.json")
    payload["pull_request"]["head"]["sha"] = "AB" * 32
    payload["pull_request"]["base"]["sha"] = "cd" * 32
    event = parse_forgejo_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.head_sha == "ab" * 32
    assert event.base_sha == "cd" * 32


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("comment.id", 0),
        ("comment.id", "45"),
        ("comment.id", 2**63),
        ("comment.body", None),
        ("comment.user.login", "x\ny"),
        ("issue.number", -2),
        ("issue.pull_request", "yes"),
        ("is_pull", "true"),
        ("issue", None),
        ("comment", []),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_bad_comment_values_are_refused(field: str, value: object) -> None:
    payload = load("gitea_issue_comment_created_on_pull.json")
    _set(payload, field, value)
    with pytest.raises(PayloadError):
        parse_forgejo_event("issue_comment", payload)


def test_payload_must_be_an_object() -> None:
    with pytest.raises(PayloadError, match="must be a JSON object"):
        parse_forgejo_event("pull_request", ["not", "an", "object"])  # type: ignore[arg-type]


# -- headers ---------------------------------------------------------------------------


def test_event_and_delivery_headers_either_name() -> None:
    delivery = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
    gitea = {"X-Gitea-Event": "pull_request", "X-Gitea-Delivery": delivery}
    forgejo = {"x-forgejo-event": "pull_request", "x-forgejo-delivery": delivery}
    both = {**gitea, **forgejo}
    for headers in (gitea, forgejo, both):
        assert forgejo_event_name(headers) == "pull_request"
        assert forgejo_delivery_id(headers) == delivery


def test_conflicting_event_headers_are_refused() -> None:
    headers = {"X-Forgejo-Event": "pull_request", "X-Gitea-Event": "issue_comment"}
    with pytest.raises(PayloadError, match="conflicting event"):
        forgejo_event_name(headers)


def test_conflicting_delivery_headers_are_refused() -> None:
    headers = {"X-Forgejo-Delivery": "a-1", "X-Gitea-Delivery": "a-2"}
    with pytest.raises(PayloadError, match="conflicting delivery"):
        forgejo_delivery_id(headers)


def test_missing_event_header_is_refused_and_missing_delivery_is_none() -> None:
    with pytest.raises(PayloadError, match="missing X-Forgejo-Event"):
        forgejo_event_name({"X-Gitea-Event": "  "})
    assert forgejo_delivery_id({}) is None


@pytest.mark.parametrize("value", ["pull request", "pull_request;drop", "é", "x" * 65])
def test_strange_event_names_are_refused(value: str) -> None:
    with pytest.raises(PayloadError):
        forgejo_event_name({"X-Gitea-Event": value})


@pytest.mark.parametrize("value", ["a b", "../x", "x" * 129, "-abc", "id\x00"])
def test_strange_delivery_ids_are_refused(value: str) -> None:
    with pytest.raises(PayloadError):
        forgejo_delivery_id({"X-Gitea-Delivery": value})


# -- the reference-data locator itself -------------------------------------------------


def test_reference_locator_names_the_missing_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support import reference

    missing = tmp_path / "tests" / "reference"
    monkeypatch.setattr(reference, "REFERENCE_DIR", missing)
    with pytest.raises(reference.ReferenceDataMissing, match="restore it from git") as caught:
        reference.reference_json_files("forge", "payloads")
    assert str(missing) in str(caught.value)
    missing.mkdir(parents=True)
    (missing / "empty").mkdir()
    with pytest.raises(reference.ReferenceDataMissing, match="no JSON files"):
        reference.reference_json_files("empty")
    with pytest.raises(reference.ReferenceDataMissing, match="missing"):
        reference.reference_path("nowhere.json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pull_request.head.sha", "36b5813"),
        ("pull_request.base.sha", 12),
        ("pull_request.number", 0),
        ("pull_request.user.login", "a b"),
        ("pull_request.head", "36b5813240a9d2daa29b05046d56a53e18f39a3e"),
        ("pull_request.title", None),
    ],
)
def test_a_refused_nested_field_is_named_by_its_dotted_path(field: str, value: object) -> None:
    payload = load("forgejo_pull_request_reopened.json")
    _set(payload, field, value)
    with pytest.raises(PayloadError) as caught:
        parse_forgejo_event("pull_request", payload)
    assert str(caught.value).startswith(f"{field} "), str(caught.value)


def test_a_missing_nested_field_is_named_by_its_dotted_path() -> None:
    payload = load("forgejo_pull_request_reopened.json")
    _delete(payload, "pull_request.head.sha")
    with pytest.raises(PayloadError, match=r"^missing field pull_request\.head\.sha$"):
        parse_forgejo_event("pull_request", payload)
