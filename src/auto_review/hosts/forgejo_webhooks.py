"""Forgejo and Gitea webhook deliveries -> the forge-neutral event model.

Forgejo sends every header twice (X-Forgejo-* and X-Gitea-*); Gitea sends X-Gitea-*.
Gitea's event header groups several hook types: "pull_request" carries opened, edited,
synchronized, reopened, closed, label/assign/milestone changes and review requests;
"issue_comment" carries comments on issues and on pull requests alike.
"""

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
    has_prefix,
    read_comment_event,
    read_pull_request_event,
)

EVENT_HEADERS: Final = ("X-Forgejo-Event", "X-Gitea-Event")
DELIVERY_HEADERS: Final = ("X-Forgejo-Delivery", "X-Gitea-Delivery")

# Gitea/Forgejo spell "new commits pushed" as "synchronized"; the model uses GitHub's word.
_REVIEW_ACTIONS: Final = {
    "opened": PullRequestAction.OPENED,
    "synchronized": PullRequestAction.SYNCHRONIZE,
    "reopened": PullRequestAction.REOPENED,
}

# Default [repository.pull-request] WORK_IN_PROGRESS_PREFIXES of Gitea and Forgejo.
WIP_TITLE_PREFIXES: Final = ("WIP:", "[WIP]")


def forgejo_event_name(headers: Mapping[str, str]) -> str:
    """The event type from X-Forgejo-Event / X-Gitea-Event (must agree when both are sent)."""
    return event_name_header(headers, EVENT_HEADERS)


def forgejo_delivery_id(headers: Mapping[str, str]) -> str | None:
    """The delivery UUID from X-Forgejo-Delivery / X-Gitea-Delivery, None when absent."""
    return delivery_id_header(headers, DELIVERY_HEADERS)


def parse_forgejo_event(event_name: str, payload: dict[str, object]) -> WebhookEvent:
    """Turn one verified Forgejo/Gitea delivery into an event, or say why it is ignored."""
    if event_name == "pull_request":
        return _pull_request(JsonObject(payload, ""))
    if event_name == "issue_comment":
        return _issue_comment(JsonObject(payload, ""))
    return IgnoredEvent(f"forgejo event {describe(event_name)} is not handled")


def _pull_request(root: JsonObject) -> WebhookEvent:
    action_name = root.text("action")
    action = _REVIEW_ACTIONS.get(action_name)
    if action is None and action_name == "edited" and _left_work_in_progress(root):
        action = PullRequestAction.READY_FOR_REVIEW
    if action is None:
        return IgnoredEvent(f"pull_request action {describe(action_name)} is not reviewed")
    return read_pull_request_event(
        root, HostKind.FORGEJO, action, draft_title_prefixes=WIP_TITLE_PREFIXES
    )


def _left_work_in_progress(root: JsonObject) -> bool:
    """True for the "edited" delivery that removed the WIP prefix from the title.

    Gitea/Forgejo have no ready_for_review action: a draft is a PR whose title starts
    with a WIP prefix, and un-drafting it is a title edit.
    """
    changes = root.raw("changes")
    if changes is None:
        return False
    title_change = JsonObject(changes, "changes").raw("title")
    if title_change is None:
        return False
    old_title = JsonObject(title_change, "changes.title").text("from")
    pull = root.child("pull_request")
    new_title = pull.text("title")
    still_draft = pull.flag("draft", default=has_prefix(new_title, WIP_TITLE_PREFIXES))
    return has_prefix(old_title, WIP_TITLE_PREFIXES) and not still_draft


def _issue_comment(root: JsonObject) -> WebhookEvent:
    action_name = root.text("action")
    if action_name != "created":
        return IgnoredEvent(f"issue_comment action {describe(action_name)} is not handled")
    issue = root.child("issue")
    if not _is_pull(root, issue):
        return IgnoredEvent("comment on a plain issue, not a pull request")
    return read_comment_event(root, HostKind.FORGEJO, issue)


def _is_pull(root: JsonObject, issue: JsonObject) -> bool:
    # Newer Gitea/Forgejo send a top-level is_pull; older ones only a non-null
    # issue.pull_request object. is_pull wins when present.
    if root.raw("is_pull") is not None:
        return root.flag("is_pull", default=False)
    marker = issue.raw("pull_request")
    if marker is None:
        return False
    JsonObject(marker, "issue.pull_request")  # must be an object when present
    return True
