"""Prometheus metrics of one gateway, in a registry of its own.

Each app gets a private :class:`CollectorRegistry`, so two gateways in one process (tests,
benchmarks) never mix figures. Label values come from fixed sets chosen by the code (route
templates, reason words, outcomes), never from request data: a client cannot grow the
series count, and nothing a client or a setting supplies can surface in the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# The *_created series double the exposition size and tell an operator nothing here.
disable_created_metrics()

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Review jobs take seconds to minutes; the buckets cover both ends.
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class GatewayMetrics:
    """The gateway's counters, gauges and histograms, registered in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests_total = Counter(
            "auto_review_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.signature_failures_total = Counter(
            "auto_review_signature_failures",
            "Webhook deliveries refused for their signature, by source and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.payload_failures_total = Counter(
            "auto_review_payload_failures",
            "Requests refused for their body (malformed JSON, missing fields), by source.",
            ["source"],
            registry=registry,
        )
        self.dedup_hits_total = Counter(
            "auto_review_dedup_hits",
            "Duplicates recognised at intake: a repeated delivery id or an already queued job.",
            ["kind"],
            registry=registry,
        )
        self.ignored_events_total = Counter(
            "auto_review_ignored_events",
            "Verified deliveries that produced no job, by source and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.rate_limited_total = Counter(
            "auto_review_rate_limited_requests",
            "Requests refused with 429 by the per-client token bucket, by route template.",
            ["route"],
            registry=registry,
        )
        self.jobs_accepted_total = Counter(
            "auto_review_jobs_accepted",
            "Jobs committed to the queue, by source (webhook, ci, poller).",
            ["source"],
            registry=registry,
        )
        self.jobs_superseded_total = Counter(
            "auto_review_jobs_superseded",
            "Queued reviews of an older head replaced by the job of a newer head of the same "
            "pull request, at accept time (never run, no forge call).",
            registry=registry,
        )
        self.poller_leader = Gauge(
            "auto_review_poller_leader",
            "1 while this replica runs the chat poller (with PostgreSQL: holds its leader "
            "lock), else 0.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "auto_review_queue_depth",
            "Jobs waiting to run, read from the store when metrics are scraped.",
            registry=registry,
        )
        self.jobs_by_state = Gauge(
            "auto_review_jobs_by_state",
            "Jobs in the state store by state (queued: due now; waiting-retry: waiting for "
            "the next attempt after a transient failure), read at scrape time.",
            ["state"],
            registry=registry,
        )
        self.oldest_waiting_job_age_seconds = Gauge(
            "auto_review_oldest_waiting_job_age_seconds",
            "Seconds since the oldest job still waiting to run (queued or waiting-retry) "
            "was accepted; 0 when none waits.",
            registry=registry,
        )
        self.queue_jobs = Gauge(
            "auto_review_queue_jobs",
            "Jobs waiting or running, by kind (chat: commands from comments, re-review "
            "included, claimed first; review: pushed heads) and state (queued, "
            "waiting-retry, running), read at scrape time.",
            ["kind", "state"],
            registry=registry,
        )
        self.oldest_waiting_job_age_by_kind_seconds = Gauge(
            "auto_review_oldest_waiting_job_age_by_kind_seconds",
            "Seconds since the oldest job of this kind still waiting to run was accepted; "
            "0 when none waits.",
            ["kind"],
            registry=registry,
        )
        self.jobs_total = Counter(
            "auto_review_jobs",
            "Jobs finished by the worker pool, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.job_duration_seconds = Histogram(
            "auto_review_job_duration_seconds",
            "Wall time of one job run.",
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "auto_review_ready",
            "1 when the readiness probe (the one /readyz answers with) finds every configured "
            "forge and the LLM reachable, else 0; probed at scrape time, at most once per "
            "AR_READYZ_CACHE_SECONDS.",
            registry=registry,
        )
        self.readiness_check_ok = Gauge(
            "auto_review_readiness_check_ok",
            "1 when one readiness check passes (or the LLM is not configured), else 0, "
            "by component (a forge kind or llm).",
            ["component"],
            registry=registry,
        )
        self.isolation_verified = Gauge(
            "auto_review_isolation_verified",
            "1 when the gateway verified its container boundary from inside, 0 in bare or "
            "external mode, by mode; set once at start.",
            ["mode"],
            registry=registry,
        )
        self.isolation_degraded = Gauge(
            "auto_review_isolation_degraded",
            "1 for each optional control the boundary self-check found not in force "
            "(landlock, cgroup-limits, cgroup-namespace); set once at start.",
            ["check"],
            registry=registry,
        )
        # Per-request label lookups take a lock inside prometheus_client; the hot path
        # reuses the child counters it already resolved.
        self._request_children: dict[tuple[str, int], Counter] = {}

    def count_request(self, route: str, status: int) -> None:
        key = (route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests_total.labels(route=route, status=str(status))
            self._request_children[key] = child
        child.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric in this registry."""
        return generate_latest(self.registry)

    def record_posture(self, posture: Mapping[str, Any]) -> None:
        """The isolation posture the gateway started with (verified or not, what degraded)."""
        verified = posture.get("verified") is True
        self.isolation_verified.labels(mode=str(posture.get("mode", "unknown"))).set(
            1 if verified else 0
        )
        for check in posture.get("degraded", ()):
            self.isolation_degraded.labels(check=str(check)).set(1)

    def record_readiness(self, ready: bool, checks: Mapping[str, str]) -> None:
        """One readiness report: the overall answer and each component's."""
        self.ready.set(1 if ready else 0)
        for component, status in checks.items():
            passed = status == "ok" or (component == "llm" and status == "not-configured")
            self.readiness_check_ok.labels(component=component).set(1 if passed else 0)

    def on_job_finished(self, kind: object, outcome: object, seconds: float) -> None:
        """Worker pool observer hook: one finished (or retried) run of a job."""
        self.jobs_total.labels(outcome=str(outcome)).inc()
        self.job_duration_seconds.observe(seconds)
