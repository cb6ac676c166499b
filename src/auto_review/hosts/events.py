"""Forge-neutral webhook event model, and the checked reader that builds it from JSON.

Webhook payloads are untrusted data even after their signature verified: the values
read here later become API URLs, git refs and queue keys. So every field the model
keeps is type-checked and, where it is an identifier, matched against a strict pattern.
Anything that does not fit raises `PayloadError` (HTTP 400), never KeyError/TypeError.
Error messages name the field and the rule, never the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from auto_review.core.refs import (
    MAX_COMMENT_ID,
    MAX_PR_NUMBER,
    SHA_RE,
    HostKind,
    PayloadError,
    RepoRef,
    check_login,
    check_owner,
    check_positive_int,
    check_repo_name,
    check_sha,
)


class PullRequestAction(StrEnum):
    """Normalised pull-request actions that ask for a review (GitHub's spelling)."""

    OPENED = "opened"
    SYNCHRONIZE = "synchronize"
    REOPENED = "reopened"
    READY_FOR_REVIEW = "ready_for_review"


_REVIEWABLE_ACTIONS: Final = frozenset(action.value for action in PullRequestAction)


@dataclass(frozen=True, slots=True)
class PullRequestEvent:
    repo: RepoRef
    number: int
    action: str  # a PullRequestAction value
    head_sha: str
    base_sha: str
    author: str
    draft: bool
    title: str

    def __post_init__(self) -> None:
        check_positive_int(self.number, "pull request number", MAX_PR_NUMBER)
        if not isinstance(self.action, str) or self.action not in _REVIEWABLE_ACTIONS:
            raise PayloadError("pull request action is not a reviewable action")
        for field, sha in (("head sha", self.head_sha), ("base sha", self.base_sha)):
            if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
                raise PayloadError(f"{field} must be 40 or 64 lower-case hexadecimal digits")
        if not isinstance(self.author, str):
            raise PayloadError("pull request author must be a string")
        check_login(self.author, "pull request author")
        if type(self.draft) is not bool:
            raise PayloadError("pull request draft flag must be a boolean")
        if not isinstance(self.title, str):
            raise PayloadError("pull request title must be a string")


@dataclass(frozen=True, slots=True)
class CommentEvent:
    repo: RepoRef
    pr_number: int
    comment_id: int
    author: str
    body: str
    is_pull_request: bool

    def __post_init__(self) -> None:
        check_positive_int(self.pr_number, "issue number", MAX_PR_NUMBER)
        check_positive_int(self.comment_id, "comment id", MAX_COMMENT_ID)
        if not isinstance(self.author, str):
            raise PayloadError("comment author must be a string")
        check_login(self.author, "comment author")
        if not isinstance(self.body, str):
            raise PayloadError("comment body must be a string")
        if type(self.is_pull_request) is not bool:
            raise PayloadError("comment is_pull_request must be a boolean")


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    """A delivery that is valid but asks for nothing (unsupported event or action)."""

    reason: str


WebhookEvent = PullRequestEvent | CommentEvent | IgnoredEvent


_EVENT_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def check_event_name(value: str) -> str:
    """Event header values are echoed into ignore reasons and logs: keep them tame."""
    if not _EVENT_NAME_RE.fullmatch(value):
        raise PayloadError("event name must be 1-64 characters of [A-Za-z0-9_.-]")
    return value


def describe(value: str) -> str:
    """A log-safe rendering of an attacker-chosen word (actions, event names) for reasons."""
    if _EVENT_NAME_RE.fullmatch(value):
        return repr(value)
    return "(unprintable)"


_MISSING: Final = object()


class JsonObject:
    """Typed access to one JSON object of a payload; failures name the dotted path.

    A child remembers its parent and key rather than its path: the path is spelled out
    only for an error message, so reading a valid payload builds no path strings.
    """

    __slots__ = ("_data", "_key", "_parent")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise PayloadError(f"{path} must be a JSON object")
        self._data: Mapping[object, object] = data
        self._parent: JsonObject | None = None
        self._key = path

    @property
    def _path(self) -> str:
        return self._key if self._parent is None else self._parent._where(self._key)

    def _where(self, key: str) -> str:
        path = self._path
        return f"{path}.{key}" if path else key

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> object:
        """The value, or None when the key is absent (JSON null and absent look alike)."""
        return self._data.get(key)

    def required(self, key: str) -> object:
        if key not in self._data:
            raise PayloadError(f"missing field {self._where(key)}")
        return self._data[key]

    def child(self, key: str) -> JsonObject:
        value = self.required(key)
        if not isinstance(value, dict):
            raise PayloadError(f"{self._where(key)} must be a JSON object")
        child = JsonObject.__new__(JsonObject)
        child._data, child._parent, child._key = value, self, key
        return child

    def text(self, key: str) -> str:
        value = self._data.get(key, _MISSING)
        if type(value) is str:  # the common case first: one lookup, one check
            return value
        if value is _MISSING:
            raise PayloadError(f"missing field {self._where(key)}")
        if not isinstance(value, str):
            raise PayloadError(f"{self._where(key)} must be a string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{self._where(key)} must be a string or null")
        return value

    # The checks below run with a short field name first and, only when they refuse,
    # again with the dotted path, so the message names the path as it always did.

    def integer(self, key: str, maximum: int) -> int:
        value = self.required(key)
        try:
            return check_positive_int(value, key, maximum)
        except PayloadError:
            return check_positive_int(value, self._where(key), maximum)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean that older forge versions omit: absent or null gives `default`."""
        value = self._data.get(key)
        if value is None:
            return default
        if type(value) is not bool:
            raise PayloadError(f"{self._where(key)} must be a boolean")
        return value

    def sha(self, key: str) -> str:
        value = self.text(key)
        try:
            return check_sha(value, key)
        except PayloadError:
            return check_sha(value, self._where(key))

    def login(self, key: str) -> str:
        value = self.text(key)
        try:
            return check_login(value, key)
        except PayloadError:
            return check_login(value, self._where(key))


def read_repository(payload: JsonObject, host: HostKind) -> RepoRef:
    """`repository.owner.login` + `repository.name`, cross-checked with `full_name`."""
    repository = payload.child("repository")
    owner = check_owner(repository.child("owner").text("login"), "repository.owner.login")
    name = check_repo_name(repository.text("name"), "repository.name")
    full_name = repository.optional_text("full_name")
    # Both forges derive full_name from the same two values; a mismatch means a forged
    # or corrupted payload, and we cannot tell which half to trust.
    if full_name is not None and full_name != f"{owner}/{name}":
        raise PayloadError("repository.full_name does not match owner and name")
    return RepoRef(host=host, owner=owner, name=name)


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """All values of a header, looked up case-insensitively.

    Iterates items() so a multi-valued mapping (Starlette's Headers) yields each copy;
    callers decide what a repeated header means.
    """
    wanted = name.lower()
    return [value for key, value in headers.items() if key.lower() == wanted]


def single_header(headers: Mapping[str, str], names: tuple[str, ...], label: str) -> str | None:
    """The one value carried by any of `names` (aliases such as X-Forgejo-*/X-Gitea-*).

    Absent everywhere gives None. Several copies must agree exactly; differing values
    raise PayloadError, because we cannot tell which one the forge meant.
    """
    values = {value.strip() for name in names for value in header_values(headers, name)}
    values.discard("")
    if not values:
        return None
    if len(values) > 1:
        raise PayloadError(f"conflicting {label} headers")
    return values.pop()


_DELIVERY_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)


def check_delivery_id(value: str) -> str:
    if not _DELIVERY_RE.fullmatch(value):
        raise PayloadError("delivery id must be 1-128 characters of [A-Za-z0-9._:-]")
    return value


def event_name_header(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    """The event type from the first of `names` present (aliases must agree); required."""
    value = single_header(headers, names, "event")
    if value is None:
        raise PayloadError(f"missing {' or '.join(names)} header")
    return check_event_name(value)


def delivery_id_header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The delivery id from any of `names` (aliases must agree), None when absent."""
    value = single_header(headers, names, "delivery id")
    return None if value is None else check_delivery_id(value)


def has_prefix(title: str, prefixes: tuple[str, ...]) -> bool:
    """Case-insensitive title prefix test (Gitea/Forgejo mark work in progress this way)."""
    folded = title.lstrip().casefold()
    return any(folded.startswith(prefix.casefold()) for prefix in prefixes)


def read_pull_request_event(
    root: JsonObject,
    host: HostKind,
    action: PullRequestAction,
    *,
    draft_title_prefixes: tuple[str, ...] = (),
) -> PullRequestEvent:
    """The fields both forges send under the same names in a pull_request payload.

    `draft_title_prefixes` decides the draft flag when the payload has no `draft`
    field (Gitea before 1.22 only marked drafts by a title prefix).
    """
    pull = root.child("pull_request")
    number = pull.integer("number", MAX_PR_NUMBER)
    if root.has("number") and root.integer("number", MAX_PR_NUMBER) != number:
        raise PayloadError("number does not match pull_request.number")
    title = pull.text("title")
    return PullRequestEvent(
        repo=read_repository(root, host),
        number=number,
        action=action,
        head_sha=pull.child("head").sha("sha"),
        base_sha=pull.child("base").sha("sha"),
        author=pull.child("user").login("login"),
        draft=pull.flag("draft", default=has_prefix(title, draft_title_prefixes)),
        title=title,
    )


def read_comment_event(root: JsonObject, host: HostKind, issue: JsonObject) -> CommentEvent:
    """A new comment on a pull request's conversation (issue-comment payload shape)."""
    comment = root.child("comment")
    return CommentEvent(
        repo=read_repository(root, host),
        pr_number=issue.integer("number", MAX_PR_NUMBER),
        comment_id=comment.integer("id", MAX_COMMENT_ID),
        author=comment.child("user").login("login"),
        body=comment.text("body"),
        is_pull_request=True,
    )
