"""Operational routes: ``/healthz``, ``/readyz``, ``/version``, ``/info``, ``/metrics``.

None of them takes input, and none of them reveals a secret: ``/info`` shows
``Settings.public_view()`` (secrets as "set"/"unset") and the isolation posture the
caller verified; ``/metrics`` labels come from fixed sets.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auto_review import __version__
from auto_review.gateway.metrics import METRICS_CONTENT_TYPE, GatewayMetrics
from auto_review.gateway.readiness import ReadinessProbe
from auto_review.gateway.responses import json_response

log = logging.getLogger(__name__)

PRODUCT = "auto-review"


def version_payload() -> dict[str, str]:
    return {"name": PRODUCT, "version": __version__}


async def healthz(request: Request) -> Response:
    # Liveness only: answering at all means the event loop runs. No downstream I/O.
    return json_response(200, {"status": "ok"})


async def version(request: Request) -> Response:
    return json_response(200, version_payload())


def make_readyz(probe: ReadinessProbe) -> Callable[[Request], Any]:
    async def readyz(request: Request) -> Response:
        report = await probe.report()
        return json_response(200 if report.ready else 503, report.as_dict())

    return readyz


def make_info(
    public_settings: Mapping[str, Any],
    posture: Mapping[str, Any],
    review_pipeline: str,
    job_overview: Callable[[], Any] | None = None,
    role: str = "gateway",
) -> Callable[[Request], Any]:
    """``/info``; with ``job_overview``, also the queue at the moment of the request (the
    same counts as /metrics), or ``"unavailable"`` when the store cannot say."""
    payload = {
        **version_payload(),
        "role": role,
        "isolation": dict(posture),
        # The same posture under the name the isolation docs and `ops doctor` use.
        "runtime_isolation": dict(posture),
        "review_pipeline": review_pipeline,
        "settings": dict(public_settings),
    }

    async def info(request: Request) -> Response:
        if job_overview is None:
            return json_response(200, payload)
        try:
            # On a thread: with PostgreSQL a read is a round trip (and waits for a free
            # connection while the database is away); the event loop must not.
            jobs: Any = (await asyncio.to_thread(job_overview)).as_dict()
        except Exception as exc:  # a failing store must not hide the rest
            log.warning("job overview unavailable", extra={"error_type": type(exc).__name__})
            jobs = "unavailable"
        return json_response(200, {**payload, "jobs": jobs})

    return info


def make_metrics(
    metrics: GatewayMetrics,
    queue_depth: Callable[[], Any],
    job_overview: Callable[[], Any] | None = None,
    readiness: ReadinessProbe | None = None,
) -> Callable[[Request], Any]:
    async def metrics_endpoint(request: Request) -> Response:
        if readiness is not None:
            # The probe's own cache and in-flight sharing bound the load a scraper adds.
            report = await readiness.report()
            metrics.record_readiness(report.ready, report.checks)
        try:
            depth = await asyncio.to_thread(queue_depth)  # see info(): off the loop
            if inspect.isawaitable(depth):
                depth = await depth
            metrics.queue_depth.set(depth)
        except Exception as exc:  # a failing store must not hide the other figures
            log.warning("queue depth unavailable", extra={"error_type": type(exc).__name__})
        if job_overview is not None:
            try:
                overview = await asyncio.to_thread(job_overview)
                for state, count in overview.by_state.items():
                    metrics.jobs_by_state.labels(state=state).set(count)
                metrics.oldest_waiting_job_age_seconds.set(overview.oldest_waiting_seconds)
                for kind, states in overview.queue_by_lane.items():
                    for state, count in states.items():
                        metrics.queue_jobs.labels(kind=kind, state=state).set(count)
                for kind, age in overview.oldest_waiting_by_lane.items():
                    metrics.oldest_waiting_job_age_by_kind_seconds.labels(kind=kind).set(age)
            except Exception as exc:
                log.warning("job overview unavailable", extra={"error_type": type(exc).__name__})
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return metrics_endpoint
