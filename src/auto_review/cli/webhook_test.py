"""`auto-review webhook test`: signed deliveries to the gateway, as the forge sends them.

Two deliveries go to ``URL/webhooks/forgejo``, each signed with ``AR_WEBHOOK_SECRET`` and
carrying the headers Forgejo sends (``X-Forgejo-*`` and ``X-Gitea-*``):

1. a ``ping`` (the gateway handles no such event: a 202 ``ignored`` answer proves that it
   is reachable and that its secret is the same; 401 says it is not);
2. a ``pull_request`` event with action ``synchronized`` built from the forge's own
   objects for ``--repo`` and ``--pr`` (``GET /repos/{owner}/{repo}/pulls/{index}``: the
   pull request, its base repository, its author as sender), the shape of the Gitea
   payloads in ``tests/reference/forge/payloads/``.

For each it prints the HTTP status and what the gateway did (``accepted`` and the jobs
it queued, ``duplicate``, ``ignored`` and why, or the error), then what ``/metrics``
counted in between. The pull request event asks for a real review of that head: a second
run is a duplicate, as the forge's own redelivery would be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

HOOK_PATH = "/webhooks/forgejo"
# Counters (and the gauge) /metrics shows that say what intake did with a delivery.
WATCHED = (
    "auto_review_jobs_accepted_total",
    "auto_review_dedup_hits_total",
    "auto_review_ignored_events_total",
    "auto_review_signature_failures_total",
    "auto_review_payload_failures_total",
    "auto_review_queue_depth",
)
_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+\-]+|NaN|[+-]Inf)$")


class GatewayUnreachable(Exception):
    """One line: the gateway could not be asked at all."""


@dataclass(frozen=True, slots=True)
class Answer:
    event: str
    status: int
    body: dict[str, Any]

    @property
    def summary(self) -> str:
        body = self.body
        state = body.get("status")
        if state == "accepted":
            return f"accepted, {body.get('jobs')} job(s) queued"
        if state == "duplicate":
            return f"duplicate {body.get('duplicate')}: nothing new queued"
        if state == "ignored":
            detail = f": {body['detail']}" if body.get("detail") else ""
            return f"ignored ({body.get('reason')}){detail}"
        if "error" in body:
            return f"refused: {body['error']}"
        return "unexpected answer"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(secret: str, body: bytes, event: str) -> dict[str, str]:
    signature = sign(secret, body)
    delivery = str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "User-Agent": "auto-review webhook test",
        "X-Forgejo-Event": event,
        "X-Gitea-Event": event,
        "X-Forgejo-Delivery": delivery,
        "X-Gitea-Delivery": delivery,
        "X-Forgejo-Signature": signature,
        "X-Gitea-Signature": signature,
    }


def pull_request_payload(pull: dict[str, Any]) -> dict[str, Any]:
    """A ``synchronized`` delivery around the forge's pull request object."""
    base = pull.get("base")
    repository = base.get("repo") if isinstance(base, dict) else None
    return {
        "action": "synchronized",
        "number": pull.get("number"),
        "pull_request": pull,
        "requested_reviewer": None,
        "repository": repository,
        "sender": pull.get("user"),
        "commit_id": "",
        "review": None,
    }


def ping_payload(repository: Any) -> dict[str, Any]:
    return {"zen": "auto-review webhook test", "hook_id": 0, "repository": repository}


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for the watched series of a Prometheus text page."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match[1] in WATCHED:
            values[match[1] + (match[2] or "")] = float(match[3])
    return values


def metric_changes(before: dict[str, float], after: dict[str, float]) -> list[str]:
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, 0.0), after.get(key, 0.0)
        if key.startswith("auto_review_queue_depth"):
            continue
        if new != old:
            changes.append(f"{key} {new - old:+g}")
    return changes


class GatewayClient:
    """The few requests ``webhook test`` makes to the gateway."""

    def __init__(self, base_url: str, *, timeout: float, tls: Any) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(base_url=base_url, timeout=timeout, verify=tls,
                                    trust_env=False)  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def metrics(self) -> dict[str, float] | None:
        try:
            response = self._client.get("/metrics")
        except self._httpx.HTTPError as exc:
            raise GatewayUnreachable(f"cannot reach the gateway: {type(exc).__name__}") from None
        return parse_metrics(response.text) if response.status_code == 200 else None

    def deliver(self, secret: str, event: str, payload: dict[str, Any]) -> Answer:
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            response = self._client.post(
                HOOK_PATH, content=body, headers=delivery_headers(secret, body, event)
            )
        except self._httpx.HTTPError as exc:
            raise GatewayUnreachable(f"cannot reach the gateway: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return Answer(event, response.status_code, answer if isinstance(answer, dict) else {})
