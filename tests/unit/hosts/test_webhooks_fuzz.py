"""Property tests: random and mutated payloads give an event or PayloadError, nothing else.

Mutations start from every real payload under the shared reference data, so they reach
deep fields (head sha, owner login, comment id) that fully random JSON rarely builds.
Any event that comes back is checked against rules written here independently of the
parser: identifiers that later become URLs and git refs must be safe.
"""

from __future__ import annotations

import copy
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.reference import load_json, reference_json_files, reference_path

from auto_review.core.refs import PayloadError
from auto_review.hosts.events import CommentEvent, IgnoredEvent, PullRequestEvent, WebhookEvent
from auto_review.hosts.forgejo_webhooks import parse_forgejo_event
from auto_review.hosts.github_webhooks import parse_github_event

Parser = Callable[[str, dict[str, Any]], WebhookEvent]

GITHUB_EXAMPLES = reference_path("github", "webhooks-examples")


def _forgejo_event(path: Path) -> str:
    return "issue_comment" if "issue_comment" in path.name else "pull_request"


def _seeds() -> list[tuple[Parser, str, dict[str, Any]]]:
    seeds: list[tuple[Parser, str, dict[str, Any]]] = []
    for path in reference_json_files("forge", "payloads"):
        data = load_json(path)
        assert isinstance(data, dict)
        seeds.append((parse_forgejo_event, _forgejo_event(path), data))
    for path in reference_json_files("github", "webhooks-examples"):
        data = load_json(path)
        assert isinstance(data, dict)
        event = path.relative_to(GITHUB_EXAMPLES).parts[0]
        seeds.append((parse_github_event, event, data))
        if event == "issue_comment":  # also as a comment on a pull request
            on_pull = copy.deepcopy(data)
            on_pull["issue"]["pull_request"] = {"url": "https://api.github.com/pulls/1"}
            seeds.append((parse_github_event, event, on_pull))
    return seeds


SEEDS = _seeds()

# Values chosen to sit near the validation boundaries, mixed with arbitrary JSON.
EDGE_STRINGS = [
    "",
    " ",
    ".",
    "..",
    "-x",
    "a/b",
    "a b",
    "x" * 101,
    "dependabot[bot]",
    "[bot]",
    "opened",
    "synchronize",
    "synchronized",
    "reopened",
    "ready_for_review",
    "edited",
    "created",
    "WIP: x",
    "0" * 40,
    "F" * 40,
    "a" * 64,
    "a" * 39,
    "a" * 41,
    "g" * 40,
    "\u0660" * 40,
    "ok",
    "\x00",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(EDGE_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=8), children, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def mutated_seed(draw: st.DrawFn) -> tuple[Parser, str, dict[str, Any]]:
    parser, event, seed = draw(st.sampled_from(SEEDS))
    payload = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        parent: Any = payload
        key = draw(st.sampled_from(sorted(parent)))
        # Walk down a random path; most interesting fields are 2-3 levels deep.
        while isinstance(parent[key], dict) and parent[key] and draw(st.integers(0, 9)) < 7:
            parent = parent[key]
            key = draw(st.sampled_from(sorted(parent)))
        if draw(st.integers(0, 4)) == 0:
            del parent[key]
        else:
            parent[key] = draw(json_values)
        if not payload:
            break
    return parser, event, payload


FIELD_NAMES = [
    "action", "number", "pull_request", "repository", "issue", "comment", "is_pull",
    "changes", "title", "from", "head", "base", "sha", "user", "login", "owner", "name",
    "full_name", "draft", "id", "body",
]  # fmt: skip
shaped_json = st.recursive(
    scalars,
    lambda children: st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5),
    max_leaves=12,
)
REVIEW_ACTIONS = ["opened", "synchronize", "synchronized", "reopened", "ready_for_review"]
# Top-level shape of a delivery, every part optional and arbitrary below it.
random_payload = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.sampled_from([*REVIEW_ACTIONS, "edited", "created"]), scalars),
        "number": scalars,
        "is_pull": scalars,
        "pull_request": shaped_json,
        "repository": shaped_json,
        "issue": shaped_json,
        "comment": shaped_json,
        "changes": shaped_json,
    },
)

SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
LOGIN_CHARS = set(string.ascii_letters + string.digits + "_.-")


def _check_safe_identifier(value: str, *, allow_leading_dot: bool) -> None:
    assert SAFE_ID.fullmatch(value), value
    assert len(value) <= 100
    assert value not in (".", "..")
    assert not value.startswith("-")
    if not allow_leading_dot:
        assert not value.startswith(".")


def _check_login(value: str) -> None:
    name = value.removesuffix("[bot]")
    assert name and set(name) <= LOGIN_CHARS and not name.startswith(("-", "."))


def _dig(payload: dict[str, Any], *keys: str) -> Any:
    value: Any = payload
    for key in keys:
        value = value[key]
    return value


def check_outcome(parser: Parser, event_name: str, payload: dict[str, Any]) -> None:
    snapshot = copy.deepcopy(payload)
    try:
        event = parser(event_name, payload)
    except PayloadError as exc:
        assert str(exc)
        return
    assert payload == snapshot, "the parser must not modify the payload"
    assert isinstance(event, PullRequestEvent | CommentEvent | IgnoredEvent)
    if isinstance(event, IgnoredEvent):
        assert event.reason
        return
    _check_safe_identifier(event.repo.owner, allow_leading_dot=False)
    _check_safe_identifier(event.repo.name, allow_leading_dot=True)
    assert event.repo.owner == _dig(payload, "repository", "owner", "login")
    assert event.repo.name == _dig(payload, "repository", "name")
    _check_login(event.author)
    if isinstance(event, PullRequestEvent):
        assert type(event.number) is int and 1 <= event.number < 2**31
        assert event.number == _dig(payload, "pull_request", "number")
        assert SHA.fullmatch(event.head_sha) and SHA.fullmatch(event.base_sha)
        assert event.head_sha == _dig(payload, "pull_request", "head", "sha").lower()
        assert event.base_sha == _dig(payload, "pull_request", "base", "sha").lower()
        assert type(event.draft) is bool
        assert isinstance(event.title, str)
        assert event.action in {"opened", "synchronize", "reopened", "ready_for_review"}
    else:
        assert type(event.pr_number) is int and 1 <= event.pr_number < 2**31
        assert type(event.comment_id) is int and 1 <= event.comment_id < 2**63
        assert event.comment_id == _dig(payload, "comment", "id")
        assert event.body == _dig(payload, "comment", "body")
        assert event.is_pull_request is True


PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(case=mutated_seed())
def test_mutated_real_payloads(case: tuple[Parser, str, dict[str, Any]]) -> None:
    check_outcome(*case)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parser=st.sampled_from([parse_forgejo_event, parse_github_event]),
    event_name=st.sampled_from(["pull_request", "issue_comment", "ping", "push"]),
    payload=random_payload,
)
def test_random_payloads(parser: Parser, event_name: str, payload: dict[str, Any]) -> None:
    check_outcome(parser, event_name, payload)


@settings(max_examples=200, deadline=None)
@given(
    parser=st.sampled_from([parse_forgejo_event, parse_github_event]),
    event_name=st.sampled_from(["pull_request", "issue_comment"]),
    payload=json_values,
)
def test_non_object_payloads(parser: Parser, event_name: str, payload: Any) -> None:
    if isinstance(payload, dict):
        check_outcome(parser, event_name, payload)
        return
    try:
        parser(event_name, payload)
    except PayloadError:
        return
    raise AssertionError("a non-object payload must be refused")


@settings(max_examples=300, deadline=None)
@given(sha=st.one_of(st.text(max_size=70), st.text("0123456789abcdefABCDEF", max_size=70)))
def test_head_sha_accepted_only_when_40_or_64_hex(sha: str) -> None:
    payload = load_json(reference_path("forge", "payloads", "forgejo_pull_request_reopened.json"))
    assert isinstance(payload, dict)
    payload["pull_request"]["head"]["sha"] = sha
    valid = len(sha) in (40, 64) and all(c in string.hexdigits for c in sha) and sha.isascii()
    try:
        event = parse_forgejo_event("pull_request", payload)
    except PayloadError:
        assert not valid
        return
    assert valid
    assert isinstance(event, PullRequestEvent)
    assert event.head_sha == sha.lower()


@settings(max_examples=300, deadline=None)
@given(owner=st.one_of(st.text(max_size=12), st.text("aZ09_.-/ ", max_size=12)))
def test_owner_accepted_only_when_safe(owner: str) -> None:
    payload = load_json(reference_path("github", "webhooks-examples", "pull_request",
                                       "opened.payload.json"))  # fmt: skip
    assert isinstance(payload, dict)
    payload["repository"]["owner"]["login"] = owner
    payload["repository"].pop("full_name")
    safe = bool(owner) and set(owner) <= LOGIN_CHARS and owner[0] not in "-." and len(owner) <= 100
    try:
        event = parse_github_event("pull_request", payload)
    except PayloadError:
        assert not safe
        return
    assert safe
    assert isinstance(event, PullRequestEvent)
    assert event.repo.owner == owner
