"""GitHub webhook deliveries -> the forge-neutral event model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from auto_review.core.refs import HostKind
from auto_review.hosts.events import (
    IgnoredEvent,
    JsonObject,
    PullRequestAction,
    WebhookEvent,
    delivery_id_header,
    describe,
    event_name_header,
    read_comment_event,
    read_pull_request_event,
)

EVENT_HEADER: Final = "X-GitHub-Event"
DELIVERY_HEADER: Final = "X-GitHub-Delivery"

_REVIEW_ACTIONS: Final = {
    "opened": PullRequestAction.OPENED,
    "synchronize": PullRequestAction.SYNCHRONIZE,
    "reopened": PullRequestAction.REOPENED,
    "ready_for_review": PullRequestAction.READY_FOR_REVIEW,
}


def github_event_name(headers: Mapping[str, str]) -> str:
    """The event type from X-GitHub-Event."""
    return event_name_header(headers, (EVENT_HEADER,))


def github_delivery_id(headers: Mapping[str, str]) -> str | None:
    """The delivery GUID from X-GitHub-Delivery, None when absent."""
    return delivery_id_header(headers, (DELIVERY_HEADER,))


def parse_github_event(event_name: str, payload: dict[str, object]) -> WebhookEvent:
    """Turn one verified GitHub delivery into an event, or say why it is ignored.

    ping, installation, check_suite, pull_request_review and every other event are
    ignored: only pull_request and issue_comment carry work.
    """
    if event_name == "pull_request":
        return _pull_request(JsonObject(payload, ""))
    if event_name == "issue_comment":
        return _issue_comment(JsonObject(payload, ""))
    return IgnoredEvent(f"github event {describe(event_name)} is not handled")


def _pull_request(root: JsonObject) -> WebhookEvent:
    action_name = root.text("action")
    action = _REVIEW_ACTIONS.get(action_name)
    if action is None:
        return IgnoredEvent(f"pull_request action {describe(action_name)} is not reviewed")
    return read_pull_request_event(root, HostKind.GITHUB, action)


def _issue_comment(root: JsonObject) -> WebhookEvent:
    action_name = root.text("action")
    if action_name != "created":
        return IgnoredEvent(f"issue_comment action {describe(action_name)} is not handled")
    issue = root.child("issue")
    # GitHub marks a pull request's conversation by an issue.pull_request object.
    marker = issue.raw("pull_request")
    if marker is None:
        return IgnoredEvent("comment on a plain issue, not a pull request")
    JsonObject(marker, "issue.pull_request")
    return read_comment_event(root, HostKind.GITHUB, issue)
