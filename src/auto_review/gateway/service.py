"""Run the gateway: state store, forge clients, worker pool, poller and the HTTP server.

``serve`` is what ``auto-review gateway`` (bare, or the inner process of the container)
calls. It runs uvicorn with httptools on a uvloop event loop, either on a socket it binds
itself from ``AR_GATEWAY_BIND`` or on a listening socket handed in (the launcher binds on
the host and passes the descriptor into the container's empty network namespace).

Shutdown order on SIGTERM/SIGINT: stop accepting connections, let in-flight requests
finish, stop the poller, let running jobs finish (then release them back to the queue),
close the forge clients, close the store. Every accepted job is already committed, so an
abrupt kill loses nothing either: the next start requeues interrupted jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client.registry import Collector

from auto_review.config import Settings
from auto_review.core.jobs import JobRequest, JobRetryPolicy, ReviewRunner
from auto_review.core.posture import bare_posture, external_posture
from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.app import BackgroundService, build_app, intake_policy
from auto_review.gateway.intake import plan_jobs
from auto_review.gateway.leadership import LeaderGatedService
from auto_review.gateway.limits import BoundedHttpToolsProtocol
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.poller import ChatPoller, WatermarkStore
from auto_review.gateway.roles import ProcessRole
from auto_review.gateway.worker import WorkerPool
from auto_review.hosts.base import ReviewHost
from auto_review.hosts.events import CommentEvent
from auto_review.store.base import IntakeStore, StoreError
from auto_review.wiring.clients import forge_hosts as forge_hosts_from
from auto_review.wiring.leader import chat_poller_lock
from auto_review.wiring.redaction import redact
from auto_review.wiring.stores import open_intake_store, open_watermark_store
from auto_review.wiring.tls import TrustError, client_tls_context

if TYPE_CHECKING:
    from auto_review.wiring.runner import PipelineRunner

log = logging.getLogger(__name__)

EXIT_STARTUP = 2
LISTEN_BACKLOG = 2048
WATERMARK_FILE_NAME = "poller-watermarks.json"
GRACEFUL_SHUTDOWN_SECONDS = 30


class GatewayStartupError(RuntimeError):
    """The gateway cannot start; the message names the cause, never a secret."""


NO_PIPELINE_NOTE = (
    "no LLM is configured (AR_LLM_BASE_URL, AR_LLM_REASONING_MODEL): the review pipeline "
    "does not run and accepted jobs stay queued in the state store until a start with an "
    "LLM processes them"
)


def default_posture(settings: Settings) -> dict[str, Any]:
    """The posture when the caller verified none: only the explicit opt-outs qualify."""
    if settings.gateway_bare:
        return bare_posture()
    if settings.gateway_external_isolation == "container":
        return external_posture()
    # Fail closed: claiming an isolation nobody verified would be a lie in /info.
    raise GatewayStartupError(
        "no verified isolation posture was given and neither AR_GATEWAY_BARE nor "
        "AR_GATEWAY_EXTERNAL_ISOLATION is set"
    )


def bind_listening_socket(settings: Settings) -> socket.socket:
    """Bind ``AR_GATEWAY_BIND`` with a clear error instead of uvicorn's exit."""
    host, port = settings.bind_host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise GatewayStartupError(
            f"cannot listen on AR_GATEWAY_BIND {host}:{port}: {exc.strerror or exc}"
        ) from None


def poll_repo_refs(settings: Settings) -> list[RepoRef]:
    """``AR_POLL_REPOS`` entries: ``host:owner/name``, or ``owner/name`` for Forgejo."""
    repos = []
    for entry in settings.poll_repos:
        host, _, full_name = entry.rpartition(":")
        owner, _, name = full_name.partition("/")
        repos.append(RepoRef(HostKind(host or HostKind.FORGEJO.value), owner, name))
    return repos


def chat_poller(
    settings: Settings,
    store: IntakeStore,
    hosts: Mapping[HostKind, ReviewHost],
    metrics: GatewayMetrics,
) -> ChatPoller | None:
    """The chat poller when ``AR_POLL_INTERVAL_SECONDS`` > 0 and repositories are listed."""
    if settings.poll_interval_seconds <= 0 or not settings.poll_repos:
        return None
    policy = intake_policy(settings)

    async def on_comments(comments: list[CommentEvent]) -> None:
        jobs: list[JobRequest] = []
        for comment in comments:
            decision = plan_jobs(comment, policy, source="poller")
            if decision.ignored_reason is not None:
                metrics.ignored_events_total.labels(
                    source="poller", reason=decision.ignored_reason
                ).inc()
            jobs.extend(decision.jobs)
        if not jobs:
            return
        # Raising (StoreError) keeps the poller's watermark where it was: nothing is lost.
        result = await store.accept(None, jobs)
        if result.new_jobs:
            metrics.jobs_accepted_total.labels(source="poller").inc(result.new_jobs)
        if result.duplicate_jobs:
            metrics.dedup_hits_total.labels(kind="job").inc(result.duplicate_jobs)
        if result.superseded_jobs:
            metrics.jobs_superseded_total.inc(result.superseded_jobs)

    # Shared in PostgreSQL, so a new leader resumes where the last one stopped.
    watermarks: WatermarkStore | None = open_watermark_store(settings)
    if watermarks is None:
        watermarks = FileWatermarkStore(settings.state_dir / WATERMARK_FILE_NAME)
    try:
        return ChatPoller(
            hosts,
            poll_repo_refs(settings),
            settings.poll_interval_seconds,
            on_comments,
            watermarks,
        )
    except ValueError as exc:
        raise GatewayStartupError(f"AR_POLL_REPOS: {exc}") from None


class FileWatermarkStore:
    """The poller's per-repository watermarks in a small JSON file of the state directory,
    replaced atomically, so a restart resumes where the last successful round ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("poller watermarks unreadable; starting from the catch-up window")
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        )

    def _save(self, values: dict[str, str]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(values, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)

    async def get(self, key: str) -> datetime | None:
        if self._values is None:
            self._values = await asyncio.to_thread(self._load)
        value = self._values.get(key)
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    async def set(self, key: str, value: datetime) -> None:
        if self._values is None:
            self._values = await asyncio.to_thread(self._load)
        self._values[key] = value.isoformat()
        await asyncio.to_thread(self._save, dict(self._values))


class WorkerPoolService:
    """Adapts the pool's start() (which reports the requeued jobs) to a background service."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    async def start(self) -> None:
        await self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()


class PollerService:
    """Adapts the poller's task-returning start() to the app's background services."""

    def __init__(self, poller: ChatPoller) -> None:
        self.poller = poller

    async def start(self) -> None:
        self.poller.start()

    async def stop(self) -> None:
        await self.poller.stop()


def poller_service(
    settings: Settings, poller: ChatPoller, metrics: GatewayMetrics
) -> BackgroundService:
    """The poller as is with SQLite; with PostgreSQL, only while this replica holds the
    chat poller's leader lock (one replica polls; another takes over when it dies)."""
    lock = chat_poller_lock(settings)
    if lock is None:
        metrics.poller_leader.set(1)
        return PollerService(poller)
    return LeaderGatedService(
        PollerService(poller),
        lock,
        name="chat poller",
        check_interval=max(settings.database_lease_seconds / 3, 1.0),
        on_change=lambda leading: metrics.poller_leader.set(1 if leading else 0),
    )


def serve(
    settings: Settings,
    runner: ReviewRunner | None = None,
    *,
    sock: socket.socket | None = None,
    posture: Mapping[str, Any] | None = None,
    hosts: Mapping[HostKind, ReviewHost] | None = None,
    collectors: Sequence[Collector] = (),
    state_dir_shown: Path | None = None,
    role: ProcessRole = ProcessRole.GATEWAY,
) -> int:
    """Run the gateway until SIGTERM/SIGINT on a uvloop event loop; return the exit status.

    A startup failure (bind, state directory, poller settings, missing posture) prints one
    line naming the cause and returns ``EXIT_STARTUP``. ``collectors`` are extra Prometheus
    collectors for ``/metrics`` (the inner gateway adds the egress proxy's counters).
    ``state_dir_shown``: the state directory as the operator named it, when this process
    sees it under another path (inside the container): errors and ``/info`` show it.
    """
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
            loop_runner.run(
                serve_async(
                    settings,
                    runner,
                    sock=sock,
                    posture=posture,
                    hosts=hosts,
                    collectors=collectors,
                    state_dir_shown=state_dir_shown,
                    role=role,
                )
            )
    except (GatewayStartupError, StoreError) as exc:
        text = str(exc)
        if state_dir_shown is not None:
            text = text.replace(str(settings.state_dir), str(state_dir_shown))
        print(f"auto-review {role}: {redact(text)}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    return 0


async def serve_async(
    settings: Settings,
    runner: ReviewRunner | None,
    *,
    sock: socket.socket | None = None,
    posture: Mapping[str, Any] | None = None,
    hosts: Mapping[HostKind, ReviewHost] | None = None,
    collectors: Sequence[Collector] = (),
    state_dir_shown: Path | None = None,
    role: ProcessRole = ProcessRole.GATEWAY,
) -> None:
    """The body of :func:`serve`, for callers that own the event loop."""
    posture = dict(posture) if posture is not None else default_posture(settings)
    try:
        # Before any client exists: the forge, LLM and readiness clients share it.
        tls = client_tls_context(settings.ca_file)
    except TrustError as exc:
        raise GatewayStartupError(str(exc)) from None
    listener = sock if sock is not None else bind_listening_socket(settings)
    store = open_intake_store(settings)
    own_hosts = hosts is None
    forge_hosts: Mapping[HostKind, ReviewHost] = (
        hosts if hosts is not None else forge_hosts_from(settings, tls=tls)
    )
    own_runner: PipelineRunner | None = None
    try:
        if runner is None:
            # The review pipeline runs whenever an LLM is configured; its forge clients are
            # the gateway's own, and git reads the proxy from this process's environment.
            # Imported here: the pipeline's modules load only when jobs will run.
            from auto_review.wiring.runner import build_runner

            async def follow_up(request: JobRequest) -> bool:
                return (await store.accept(None, [request])).new_jobs > 0

            runner = own_runner = build_runner(
                settings, forge_hosts, tls=tls, follow_up=follow_up
            )
        metrics = GatewayMetrics()
        for collector in (*collectors, *(own_runner.collectors if own_runner else ())):
            metrics.registry.register(collector)
        background: list[BackgroundService] = []
        if role is ProcessRole.WORKER and (runner is None or settings.workers == 0):
            # A worker exists to run jobs: without a runner it would hold nothing but a port.
            raise GatewayStartupError(
                "auto-review worker runs review jobs: it needs an LLM (AR_LLM_BASE_URL, "
                "AR_LLM_REASONING_MODEL) and AR_WORKERS of at least 1"
            )
        if settings.workers == 0:
            # An intake-only replica: other processes on the shared database run the jobs.
            log.info("intake only (AR_WORKERS=0): accepted jobs are run by other replicas")
        elif runner is not None:
            pool = WorkerPool(
                store,
                runner,
                concurrency=settings.workers,
                observer=metrics,
                retry=retry_policy(settings),
                job_timeout_seconds=settings.job_timeout_seconds,
            )
            background.append(WorkerPoolService(pool))
        else:
            # Skipping jobs would lose accepted work; they wait, durable, for a runner.
            log.warning(NO_PIPELINE_NOTE)
        # The poller is intake: a worker leaves it to the gateways.
        poller = chat_poller(settings, store, forge_hosts, metrics) if role.takes_intake else None
        if poller is not None:
            background.append(poller_service(settings, poller, metrics))
        app = build_app(
            settings,
            store,
            runner,
            forge_hosts,
            posture,
            metrics=metrics,
            background=background,
            tls=tls,
            state_dir_shown=state_dir_shown,
            role=role,
        )
        server = uvicorn.Server(_uvicorn_config(app))
        address = listener.getsockname()
        log.info(
            "gateway listening"
            if role.takes_intake
            else "worker listening (health, /info, /metrics)",
            extra={
                "role": str(role),
                "address": f"{address[0]}:{address[1]}",
                "isolation": posture.get("mode"),
                "forges": sorted(str(kind) for kind in forge_hosts),
                "workers": settings.workers,
            },
        )
        if posture.get("mode") == "bare":
            log.warning(str(posture.get("warning", "BARE MODE: no container boundary")))
        with _quiet_reraised_signals(server):
            await server.serve(sockets=[listener])
    finally:
        if own_runner is not None:
            await own_runner.aclose()
        if own_hosts:
            for host in forge_hosts.values():
                with contextlib.suppress(Exception):
                    await host.aclose()
        await asyncio.to_thread(store.close)
        listener.close()
        log.info("gateway stopped")


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=BoundedHttpToolsProtocol,  # httptools, with a cap on request line + headers
        ws="none",  # no WebSocket routes: never upgrade
        lifespan="on",
        access_log=False,  # requests are counted in /metrics; access lines would be noise
        log_config=None,  # logging is configured (with redaction) by the caller
        proxy_headers=False,  # rate limiting keys on the TCP peer, not on a header
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        backlog=LISTEN_BACKLOG,
    )


@contextlib.contextmanager
def _quiet_reraised_signals(server: uvicorn.Server) -> Any:
    """uvicorn re-raises the signal that stopped it once it has shut down; with the
    default handlers that would kill the process before the store is closed. While
    serving, these placeholders are what uvicorn restores and re-raises into. A signal
    that arrives before uvicorn installed its own handlers still stops the server."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def request_exit(number: int, frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, request_exit) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def retry_policy(settings: Settings) -> JobRetryPolicy:
    """The worker pool's fate for transient failures, from the AR_JOB_RETRY_* settings."""
    return JobRetryPolicy(
        horizon_seconds=settings.job_retry_horizon_seconds,
        base_delay_seconds=settings.job_retry_base_seconds,
        max_delay_seconds=settings.job_retry_max_delay_seconds,
    )
