"""The gateway's ASGI application: routes, request metrics, and background services.

``build_app`` wires the routes to the state store, the forge clients and the metrics of
one gateway. Its lifespan starts the job worker pool (and the chat poller when
configured) after the server is listening, and stops them after the server stopped
taking requests, so no accepted job is left behind half-handled.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auto_review.config import Settings
from auto_review.core.jobs import ReviewRunner
from auto_review.core.redaction import Redactor
from auto_review.core.refs import HostKind
from auto_review.gateway.intake import IntakePolicy
from auto_review.gateway.limits import RateLimiter
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.readiness import ReadinessProbe
from auto_review.gateway.responses import POST_ONLY, error_response, send_reply
from auto_review.gateway.roles import ProcessRole
from auto_review.gateway.routes_ci import ROUTE as CI_ROUTE
from auto_review.gateway.routes_ci import CiReviewEndpoint
from auto_review.gateway.routes_ops import healthz, make_info, make_metrics, make_readyz, version
from auto_review.gateway.routes_webhooks import WebhookEndpoint, forgejo_source, github_source
from auto_review.hosts.base import ReviewHost
from auto_review.store.base import IntakeStore
from auto_review.wiring.clients import readiness_llm

if TYPE_CHECKING:
    from auto_review.llm.transport import LlmTransport

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"


class BackgroundService(Protocol):
    """Something the app runs beside the HTTP server (worker pool, poller)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class IntakeEndpoint(Protocol):
    """A POST-only route answered over raw ASGI (it counts its own requests)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class GatewayApp(Starlette):
    """Starlette, with the intake routes dispatched before its router and middleware.

    Webhooks are the hot path (thousands a second): going straight to their handler saves
    the routing, exception and request-wrapper layers on every delivery. Their handlers
    answer every status themselves, 405 included, and count themselves in the metrics.
    """

    def __init__(
        self,
        intake_routes: Mapping[str, IntakeEndpoint],
        metrics: GatewayMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.intake_routes = dict(intake_routes)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.intake_routes.get(scope["path"])
            if endpoint is not None:
                if scope["method"] == "POST":
                    await endpoint(scope, receive, send)
                else:
                    await send_reply(send, POST_ONLY)
                    self.metrics.count_request(scope["path"], POST_ONLY.status)
                return
        await super().__call__(scope, receive, send)


class RequestMetricsMiddleware:
    """Counts every answer by route template and status code.

    The route label is the path itself only for the fixed set of routes the app serves;
    anything else is ``unmatched``, so a scanner cannot create new series.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else UNMATCHED_ROUTE
        status = 500  # what the client sees if the app dies before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.count_request(route, status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not found")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, exc.detail, headers)


def intake_policy(settings: Settings) -> IntakePolicy:
    return IntakePolicy(
        bot_login=settings.bot_login, redactor=Redactor(settings.secret_values())
    )


def _secret_bytes(value: Any) -> bytes | None:
    return value.reveal().encode() if value is not None else None


def public_settings(settings: Settings, state_dir_shown: Path | None) -> dict[str, Any]:
    """``/info``'s settings: the state directory as the operator named it, in every mode."""
    view = settings.public_view()
    if state_dir_shown is not None:
        view["state_dir"] = str(state_dir_shown)
    return view


def pipeline_state(runner: ReviewRunner | None) -> str:
    """What /info says about review work: running, or queued until a runner exists."""
    if runner is None:
        return (
            "not available: no LLM is configured, accepted jobs stay queued"
            " (set AR_LLM_BASE_URL and AR_LLM_REASONING_MODEL to review them)"
        )
    return "available"


def build_app(
    settings: Settings,
    store: IntakeStore,
    runner: ReviewRunner | None,
    hosts: Mapping[HostKind, ReviewHost],
    posture: Mapping[str, Any],
    *,
    metrics: GatewayMetrics | None = None,
    background: Sequence[BackgroundService] = (),
    llm_models: LlmTransport | None = None,
    tls: ssl.SSLContext | None = None,
    state_dir_shown: Path | None = None,
    role: ProcessRole = ProcessRole.GATEWAY,
) -> Starlette:
    """The gateway app for ``settings``.

    ``runner`` is kept for the worker pool a caller builds into ``background`` (see
    ``service.serve``); the app itself never runs jobs on the request path.
    ``background`` services are started in the lifespan, in order, and stopped in reverse.
    A worker (``role``) serves no intake route: its webhook and CI paths answer 404.
    ``llm_models`` is the LLM transport the readiness probe uses for
    ``GET {llm_base_url}/models``; when omitted and an LLM is configured, the app makes
    (and closes) its own from the settings.
    """
    metrics = metrics or GatewayMetrics()
    metrics.record_posture(posture)
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    policy = intake_policy(settings)
    own_llm = llm_models is None
    llm = llm_models if llm_models is not None else readiness_llm(settings, tls=tls)
    probe = ReadinessProbe(
        hosts,
        llm=llm,
        cache_seconds=settings.readyz_cache_seconds,
        timeout_seconds=settings.http_timeout_seconds,
    )

    # getattr: a store without the overview (a test double) still serves the rest.
    job_overview = getattr(store, "job_overview", None)
    routes: list[Route] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", make_readyz(probe), methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route(
            "/info",
            make_info(
                public_settings(settings, state_dir_shown),
                posture,
                pipeline_state(runner),
                job_overview,
                role=str(role),
            ),
            methods=["GET"],
        ),
        Route(
            "/metrics",
            make_metrics(metrics, store.queue_depth, job_overview, readiness=probe),
            methods=["GET"],
        ),
    ]
    webhook_sources = []
    forgejo_secret = _secret_bytes(settings.webhook_secret)
    if forgejo_secret is not None:
        webhook_sources.append(forgejo_source(forgejo_secret))
    github_secret = _secret_bytes(settings.github_webhook_secret)
    if github_secret is not None:
        webhook_sources.append(github_source(github_secret))
    intake_routes: dict[str, IntakeEndpoint] = {}
    for source in webhook_sources:
        intake_routes[source.route] = WebhookEndpoint(
            source,
            store=store,
            policy=policy,
            limiter=limiter,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
        )
    ci = CiReviewEndpoint(
        token=settings.ci_review_token.reveal() if settings.ci_review_token else None,
        store=store,
        hosts=hosts,
        limiter=limiter,
        metrics=metrics,
    )
    if ci.enabled:
        intake_routes[CI_ROUTE] = ci
    if not role.takes_intake:
        intake_routes.clear()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: list[BackgroundService] = []
        try:
            for service in background:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                try:
                    await service.stop()
                except Exception as exc:  # keep stopping the others
                    log.error(
                        "background service did not stop cleanly",
                        extra={"service": type(service).__name__, "error_type": type(exc).__name__},
                    )
            if own_llm and llm is not None:
                await llm.aclose()

    app = GatewayApp(
        intake_routes,
        metrics,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, HTTPException: _http_error},
    )
    # "/webhooks/forgejo/" is not a route: a redirect would only invite retries elsewhere.
    app.router.redirect_slashes = False
    app.state.metrics = metrics
    app.state.readiness = probe
    app.state.limiter = limiter
    app.add_middleware(
        RequestMetricsMiddleware,
        metrics=metrics,
        routes=frozenset(route.path for route in routes),
    )
    return app
