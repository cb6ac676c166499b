"""``POST /webhooks/forgejo`` and ``POST /webhooks/github``: signed event intake.

The order of checks is the security contract of this endpoint, cheapest and least
trusting first:

1. announced size over the cap -> 413 (the body is not read);
2. the client's token bucket is empty -> 429;
3. content type is not JSON -> 415;
4. body read while counting bytes; past the cap -> 413 (chunked bodies);
5. HMAC-SHA256 of the raw bytes, constant time: missing 401, malformed 400, mismatch 401;
6. only now: event header, JSON parsing (400), event parsing (400), intake decision;
7. jobs committed to the store (with delivery-id dedup) before the 2xx answer.

Nothing derived from the body is logged before step 5 succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from auto_review.core.refs import PayloadError
from auto_review.gateway.intake import IntakePolicy, plan_jobs
from auto_review.gateway.intake_steps import (
    answer_and_count,
    client_address,
    read_json_body,
    refuse_before_body,
    store_jobs,
)
from auto_review.gateway.limits import RateLimiter
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.responses import (
    DUPLICATE_DELIVERY,
    DUPLICATE_JOB,
    Reply,
    accepted,
    error_reply,
    reply,
)
from auto_review.gateway.signatures import (
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    verify_forgejo_request,
    verify_github_request,
)
from auto_review.hosts.events import WebhookEvent, check_delivery_id, check_event_name
from auto_review.hosts.forgejo_webhooks import parse_forgejo_event
from auto_review.hosts.github_webhooks import parse_github_event
from auto_review.store.base import DeliveryRef, IntakeStore

log = logging.getLogger(__name__)

# Parser bugs on signed-but-odd payloads must still be a 400, not a 500.
_PARSER_FAULTS = (PayloadError, ValueError, TypeError, KeyError, AttributeError, IndexError)


@dataclass(frozen=True, slots=True)
class WebhookSource:
    """How one forge family signs and labels its deliveries."""

    name: str  # "forgejo" | "github": metric label and DeliveryRef.source
    route: str
    secret: bytes
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    verify: Callable[[bytes, bytes, Mapping[str, str]], None]
    parse: Callable[[str, dict[str, Any]], WebhookEvent]


def forgejo_source(secret: bytes) -> WebhookSource:
    # Forgejo sends both its own headers and Gitea's; Gitea sends only its own.
    return WebhookSource(
        name="forgejo",
        route="/webhooks/forgejo",
        secret=secret,
        event_headers=("x-forgejo-event", "x-gitea-event"),
        delivery_headers=("x-forgejo-delivery", "x-gitea-delivery"),
        verify=verify_forgejo_request,
        parse=parse_forgejo_event,
    )


def github_source(secret: bytes) -> WebhookSource:
    return WebhookSource(
        name="github",
        route="/webhooks/github",
        secret=secret,
        event_headers=("x-github-event",),
        delivery_headers=("x-github-delivery",),
        verify=verify_github_request,
        parse=parse_github_event,
    )


def _first_header(headers: Any, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return str(value)
    return None


@lru_cache(maxsize=64)
def ignored_reply(reason: str, detail: str | None) -> Reply:
    payload = {"status": "ignored", "reason": reason}
    if detail:
        payload["detail"] = detail
    return reply(202, payload)


class WebhookEndpoint:
    """The request handler for one webhook source."""

    def __init__(
        self,
        source: WebhookSource,
        *,
        store: IntakeStore,
        policy: IntakePolicy,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        max_body_bytes: int,
    ) -> None:
        self.source = source
        self.store = store
        self.policy = policy
        self.limiter = limiter
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._bad_signature = metrics.signature_failures_total
        self._payload_failures = metrics.payload_failures_total.labels(source=source.name)
        self._jobs_accepted = metrics.jobs_accepted_total.labels(source="webhook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Raw ASGI: the intake hot path skips routing and middleware layers."""
        await answer_and_count(
            send,
            self.respond(scope, receive),
            route=self.source.route,
            metrics=self.metrics,
            log=log,
            failure_message="webhook handler failed",
            log_extra={"source": self.source.name},
        )

    async def respond(self, scope: Scope, receive: Receive) -> Reply:
        source = self.source
        refused = refuse_before_body(
            scope,
            route=source.route,
            max_body_bytes=self.max_body_bytes,
            limiter=self.limiter,
            metrics=self.metrics,
        )
        if refused is not None:
            return refused
        headers = Headers(scope=scope)
        body = await read_json_body(headers, receive, self.max_body_bytes)
        if isinstance(body, Reply):
            return body
        client = client_address(scope)

        try:
            source.verify(source.secret, body, headers)
        except SignatureMissing:
            return self._signature_refused(client, "missing", 401, "signature missing")
        except SignatureMalformed:
            return self._signature_refused(client, "malformed", 400, "signature malformed")
        except SignatureMismatch:
            return self._signature_refused(client, "mismatch", 401, "signature mismatch")

        # -- the body is authentic from here on --------------------------------------
        event_name = _first_header(headers, source.event_headers)
        delivery_id = _first_header(headers, source.delivery_headers)
        try:
            check_event_name(event_name or "")
            if delivery_id is not None:
                check_delivery_id(delivery_id)
        except PayloadError as exc:
            self._payload_failures.inc()
            return error_reply(400, str(exc))
        try:
            # orjson: a quarter of the stdlib parser's time on forge payloads; strict
            # RFC 8259 (UTF-8 only, no NaN), which no forge's deliveries go beyond.
            payload = orjson.loads(body)
        except ValueError:  # orjson.JSONDecodeError, invalid UTF-8 included
            self._payload_failures.inc()
            return error_reply(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            self._payload_failures.inc()
            return error_reply(400, "body must be a JSON object")
        try:
            event = source.parse(event_name or "", payload)
            decision = plan_jobs(event, self.policy)
        except _PARSER_FAULTS as exc:
            self._payload_failures.inc()
            log.warning(
                "webhook payload refused",
                extra={
                    "source": source.name,
                    "event": event_name,
                    "error_type": type(exc).__name__,
                },
            )
            return error_reply(400, "payload invalid for its event")

        if decision.ignored_reason is not None:
            self.metrics.ignored_events_total.labels(
                source=source.name, reason=decision.ignored_reason
            ).inc()
            return ignored_reply(decision.ignored_reason, decision.detail)

        delivery = DeliveryRef(source.name, delivery_id) if delivery_id else None
        result = await store_jobs(
            self.store,
            delivery,
            list(decision.jobs),
            log=log,
            failure_message="webhook could not be stored",
            log_extra={"source": source.name},
        )
        if isinstance(result, Reply):
            return result

        if result.duplicate_delivery:
            self.metrics.dedup_hits_total.labels(kind="delivery").inc()
            return DUPLICATE_DELIVERY
        if result.duplicate_jobs:
            self.metrics.dedup_hits_total.labels(kind="job").inc(result.duplicate_jobs)
        if result.new_jobs == 0:
            return DUPLICATE_JOB
        self._jobs_accepted.inc(result.new_jobs)
        if result.superseded_jobs:
            self.metrics.jobs_superseded_total.inc(result.superseded_jobs)
        log.info(
            "webhook accepted",
            extra={
                "source": source.name,
                "event": event_name,
                "delivery": delivery_id,
                "repo": decision.jobs[0].repo.full_name,
                "pr": decision.jobs[0].pr_number,
                "jobs": result.new_jobs,
            },
        )
        return accepted(result.new_jobs)

    def _signature_refused(self, client: str, reason: str, status: int, text: str) -> Reply:
        self._bad_signature.labels(source=self.source.name, reason=reason).inc()
        log.warning(
            "webhook signature refused",
            extra={"source": self.source.name, "reason": reason, "client": client},
        )
        return error_reply(status, text)
