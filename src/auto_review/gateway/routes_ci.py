"""``POST /reviews/ci``: CI asks for a review of a PR head after its checks passed.

The endpoint exists only when ``AR_CI_REVIEW_TOKEN`` is set (32+ characters); otherwise it
answers 404 like any unknown path. The bearer token is compared in constant time. The
requested head SHA is re-checked against the forge, so a token holder can only ask for
the review of what the PR really contains now.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from auto_review.core.jobs import JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef
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
    DUPLICATE_JOB,
    Reply,
    accepted,
    error_reply,
    reply,
)
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostUnavailable,
    PullRequestSource,
)
from auto_review.store.base import IntakeStore

log = logging.getLogger(__name__)

ROUTE = "/reviews/ci"
MIN_TOKEN_CHARS = 32
# The CI body is tiny; a small cap keeps unauthenticated bodies cheap.
MAX_CI_BODY_BYTES = 16 * 1024
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


UNAUTHORIZED = reply(
    401, {"error": "bearer token missing or wrong"}, {"WWW-Authenticate": "Bearer"}
)


class CiRequestInvalid(ValueError):
    """The CI request body does not name a PR head; the message names the field."""


@dataclass(frozen=True, slots=True)
class CiReviewRequest:
    host: HostKind
    owner: str
    repo: str
    pr: int
    head_sha: str

    @property
    def repo_ref(self) -> RepoRef:
        return RepoRef(host=self.host, owner=self.owner, name=self.repo)


def parse_ci_request(payload: Any) -> CiReviewRequest:
    """Validate ``{host, owner, repo, pr, head_sha}``; messages name fields, not values."""
    if not isinstance(payload, dict):
        raise CiRequestInvalid("body must be a JSON object")
    host = payload.get("host")
    if not isinstance(host, str) or host not in {kind.value for kind in HostKind}:
        raise CiRequestInvalid("host must be one of: " + ", ".join(k.value for k in HostKind))
    for field in ("owner", "repo"):
        value = payload.get(field)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise CiRequestInvalid(f"{field} must be a repository owner/name component")
    pr = payload.get("pr")
    if isinstance(pr, bool) or not isinstance(pr, int) or not 0 < pr < 2**31:
        raise CiRequestInvalid("pr must be a positive integer")
    head_sha = payload.get("head_sha")
    if not isinstance(head_sha, str) or not _SHA.fullmatch(head_sha.lower()):
        raise CiRequestInvalid("head_sha must be a full hexadecimal commit id")
    return CiReviewRequest(HostKind(host), payload["owner"], payload["repo"], pr, head_sha.lower())


def bearer_matches(header: str | None, expected: bytes) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), expected)


class CiReviewEndpoint:
    """Handler of ``POST /reviews/ci``."""

    def __init__(
        self,
        *,
        token: str | None,
        store: IntakeStore,
        hosts: Mapping[HostKind, PullRequestSource],
        limiter: RateLimiter,
        metrics: GatewayMetrics,
    ) -> None:
        # A short token is refused by the settings; this guard keeps the endpoint closed
        # even if a caller builds the app around that validation.
        self.enabled = token is not None and len(token) >= MIN_TOKEN_CHARS
        self._token = token.encode() if self.enabled and token else b""
        self.store = store
        self.hosts = hosts
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Raw ASGI, like the webhook routes."""
        await answer_and_count(
            send,
            self.respond(scope, receive),
            route=ROUTE,
            metrics=self.metrics,
            log=log,
            failure_message="ci review handler failed",
        )

    async def respond(self, scope: Scope, receive: Receive) -> Reply:
        if not self.enabled:
            return error_reply(404, "not found")
        refused = refuse_before_body(
            scope,
            route=ROUTE,
            max_body_bytes=MAX_CI_BODY_BYTES,
            limiter=self.limiter,
            metrics=self.metrics,
        )
        if refused is not None:
            return refused
        headers = Headers(scope=scope)
        if not bearer_matches(headers.get("authorization"), self._token):
            log.warning(
                "ci review request refused: bad token", extra={"client": client_address(scope)}
            )
            return UNAUTHORIZED
        body = await read_json_body(headers, receive, MAX_CI_BODY_BYTES)
        if isinstance(body, Reply):
            return body
        try:
            ci = parse_ci_request(json.loads(body))
        except CiRequestInvalid as exc:
            self.metrics.payload_failures_total.labels(source="ci").inc()
            return error_reply(400, str(exc))
        except ValueError:
            self.metrics.payload_failures_total.labels(source="ci").inc()
            return error_reply(400, "body is not valid JSON")
        return await self._review(ci)

    async def _review(self, ci: CiReviewRequest) -> Reply:
        host = self.hosts.get(ci.host)
        if host is None:
            return error_reply(422, f"host {ci.host.value} is not configured")
        repo = ci.repo_ref
        try:
            pull = await host.get_pull_request(repo, ci.pr)
        except HostNotFound:
            return error_reply(404, "pull request not found on the forge")
        except HostAuthError:
            log.error(
                "ci review: forge refused the gateway's credentials", extra={"host": ci.host.value}
            )
            return error_reply(502, "forge refused the gateway's credentials")
        except HostUnavailable:
            log.warning("ci review: forge unreachable", extra={"host": ci.host.value})
            return error_reply(503, "forge unreachable", 30)
        except HostError as exc:
            log.error(
                "ci review: forge error",
                extra={"host": ci.host.value, "error_type": type(exc).__name__},
            )
            return error_reply(502, "forge answered with an error")
        if pull.state != "open":
            return reply(409, {"error": "pull request is not open"})
        if pull.head_sha.lower() != ci.head_sha:
            return reply(
                409,
                {
                    "error": "head moved",
                    "requested_head_sha": ci.head_sha,
                    "current_head_sha": pull.head_sha,
                },
            )
        job = JobRequest(
            kind=JobKind.REVIEW,
            repo=repo,
            pr_number=ci.pr,
            head_sha=ci.head_sha,
            comment_id=None,
            argument="",
            requested_by="ci",
            source="ci",
        )
        result = await store_jobs(
            self.store,
            None,
            [job],
            log=log,
            failure_message="ci review could not be stored",
            log_extra={},
        )
        if isinstance(result, Reply):
            return result
        if result.new_jobs == 0:
            self.metrics.dedup_hits_total.labels(kind="job").inc()
            return DUPLICATE_JOB
        self.metrics.jobs_accepted_total.labels(source="ci").inc(result.new_jobs)
        self.metrics.jobs_superseded_total.inc(result.superseded_jobs)
        log.info(
            "ci review accepted",
            extra={"repo": repo.full_name, "pr": ci.pr, "head_sha": ci.head_sha},
        )
        return accepted(result.new_jobs)
