"""The inner gateway: what runs inside the container.

Started as ``python -m auto_review.isolation.inner.entry``.

Order matters:
1. Ask the kernel for SIGKILL when the parent dies (the launcher, or the external runtime
   the launcher runs): a launcher killed with SIGKILL takes the gateway with it.
2. Read the settings, secrets included, from the inherited pipe (fd 4) and close it.
3. Verify the boundary from inside (:mod:`selfcheck`); refuse to serve when a mandatory
   check fails, with one line naming it.
4. Start the egress bridge (127.0.0.1 inside -> the launcher's proxy socket) and point
   the HTTP clients and git at it through the proxy environment variables; with
   AR_DATABASE_URL also the database forward (another loopback port, CONNECT through the
   same proxy to exactly the database's host:port), which the store connects to.
5. Serve on the listening socket the launcher bound on the host (fd 3). When an LLM is
   configured, ``serve`` builds the review pipeline's runner at this point, after step 4:
   the forge and LLM clients and every git child take the bridge's proxy from the
   environment, so a review's clone leaves the container only through the egress proxy.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auto_review.isolation.inner.selfcheck import (
    INNER_STATE_DIR,
    BoundaryFacts,
    BoundaryNotVerified,
    require_verified,
    run_selfcheck,
)
from auto_review.isolation.secrets_pipe import (
    HOST_STATE_DIR_KEY,
    LISTEN_FD,
    ROLE_KEY,
    SECRETS_FD,
    SecretsPipeError,
    read_settings_pipe,
)

# Non-secret facts the launcher puts in process.env of the bundle.
ENV_HOST_NAMESPACES = "AUTO_REVIEW_HOST_NAMESPACES"  # JSON {"net": "net:[...]", ...}
ENV_RUNTIME = "AUTO_REVIEW_RUNTIME"  # embedded, runc, crun, youki...
ENV_CGROUP_LIMITS = "AUTO_REVIEW_CGROUP_LIMITS"  # "applied" or why not
ENV_REQUIRED_CONTROLS = "AUTO_REVIEW_REQUIRED_CONTROLS"  # degraded controls made mandatory
EGRESS_SOCKET_INSIDE = Path("/run/egress/proxy.sock")

EXIT_SETUP = 2
EXIT_BOUNDARY = 4
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("auto_review.isolation.inner.entry")


def set_parent_death_signal(number: int = signal.SIGKILL) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def boundary_facts(environ: Mapping[str, str]) -> BoundaryFacts:
    try:
        host_namespaces = json.loads(environ.get(ENV_HOST_NAMESPACES, "{}"))
    except ValueError:
        host_namespaces = {}
    if not isinstance(host_namespaces, dict):
        host_namespaces = {}
    return BoundaryFacts(
        host_namespaces={str(k): str(v) for k, v in host_namespaces.items()},
        runtime=environ.get(ENV_RUNTIME, "unknown"),
        cgroup_limits=environ.get(ENV_CGROUP_LIMITS, "not reported"),
    )


def required_controls(environ: Mapping[str, str]) -> list[str]:
    return [item for item in environ.get(ENV_REQUIRED_CONTROLS, "").split(",") if item]


def fail(message: str, status: int) -> int:
    from auto_review.wiring.redaction import redact

    print(f"auto-review gateway (inner): {redact(message)}", file=sys.stderr, flush=True)
    return status


def load_inner_settings(values: Mapping[str, Any]) -> Any:
    from auto_review.config import load_settings

    flags = {
        key: value
        for key, value in values.items()
        if value is not None and key not in (HOST_STATE_DIR_KEY, ROLE_KEY)
    }
    flags["state_dir"] = str(INNER_STATE_DIR)
    # No environment: every setting came through the pipe.
    return load_settings(flags=flags, environ={})


def start_egress_bridge() -> Any:
    """Start the bridge and export the proxy variables httpx and git read."""
    from auto_review.isolation.egress.bridge import EgressBridgeThread

    bridge = EgressBridgeThread(EGRESS_SOCKET_INSIDE)
    bridge.start()
    os.environ.update(bridge.proxy_env())
    return bridge


def start_database_forward(settings: Any) -> Any:
    """With AR_DATABASE_URL: the loopback forward to the database through the proxy, and
    the variable the store reads to use it (libpq cannot speak to an HTTP proxy)."""
    if settings.database_url is None:
        return None
    from auto_review.core.database_url import parse_database_url
    from auto_review.isolation.egress.database_forward import DatabaseForwardThread
    from auto_review.isolation.egress.policy import format_authority, normalise_host

    url = parse_database_url(settings.database_url.reveal())
    forward = DatabaseForwardThread(
        format_authority(normalise_host(url.host), url.port), EGRESS_SOCKET_INSIDE
    )
    forward.start()
    os.environ.update(forward.environment())
    return forward


def stop_before_serving(number: int, _frame: object) -> None:
    """A stop request before the server took over its signals: nothing is served yet and
    the store is crash-safe, so leaving at once is the graceful answer."""
    os._exit(0)


def main() -> int:
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, stop_before_serving)
    try:
        set_parent_death_signal()
    except OSError as exc:
        return fail(f"setup step parent-death-signal failed: {exc.strerror}", EXIT_SETUP)
    try:
        values = read_settings_pipe(SECRETS_FD)
    except SecretsPipeError as exc:
        return fail(f"setup step settings-pipe failed: {exc}", EXIT_SETUP)

    from auto_review.config import SettingsError
    from auto_review.core.logs import configure_logging
    from auto_review.wiring.redaction import install_secrets

    try:
        settings = load_inner_settings(values)
    except SettingsError as exc:
        install_secrets(str(v) for v in values.values() if isinstance(v, str))
        return fail(f"setup step settings failed: {exc}", EXIT_SETUP)
    # The operator's path of the state directory, for /info and error messages; inside the
    # container it is mounted at INNER_STATE_DIR.
    host_state_dir = values.get(HOST_STATE_DIR_KEY)
    role = values.get(ROLE_KEY, "gateway")
    del values
    redactor = install_secrets(settings.secret_values())
    configure_logging(settings.log_format, settings.log_level, redactor)

    posture = run_selfcheck(boundary_facts(os.environ), required=required_controls(os.environ))
    try:
        require_verified(posture)
    except BoundaryNotVerified as exc:
        log.error("runtime isolation NOT verified", extra={"runtime_isolation": posture})
        return fail(f"refusing to serve: {exc}", EXIT_BOUNDARY)
    log.info("runtime isolation verified", extra={"runtime_isolation": posture})
    for name in posture["degraded"]:
        detail = posture["checks"][name]["detail"]
        log.warning("runtime isolation degraded: %s (%s)", name, detail)

    try:
        listener = socket.socket(fileno=LISTEN_FD)
    except OSError as exc:
        return fail(f"setup step listen-socket (fd {LISTEN_FD}) failed: {exc.strerror}", EXIT_SETUP)
    from auto_review.isolation.egress.bridge import EgressBridgeError

    try:
        bridge = start_egress_bridge()
    except (OSError, EgressBridgeError, TimeoutError) as exc:
        return fail(f"setup step egress-bridge failed: {exc}", EXIT_SETUP)

    try:
        database_forward = start_database_forward(settings)
    except (OSError, EgressBridgeError, TimeoutError) as exc:
        bridge.stop()
        return fail(f"setup step database-forward failed: {exc}", EXIT_SETUP)

    from auto_review.gateway.roles import ProcessRole
    from auto_review.gateway.service import serve
    from auto_review.isolation.egress.metrics import EgressMetricsCollector

    try:
        # runner None: serve builds the review pipeline when the LLM is configured.
        return serve(
            settings,
            None,
            sock=listener,
            posture=posture,
            collectors=[EgressMetricsCollector.for_socket(EGRESS_SOCKET_INSIDE)],
            state_dir_shown=Path(host_state_dir) if isinstance(host_state_dir, str) else None,
            role=ProcessRole(role) if role in tuple(ProcessRole) else ProcessRole.GATEWAY,
        )
    finally:
        if database_forward is not None:
            database_forward.stop()
        bridge.stop()


if __name__ == "__main__":
    sys.exit(main())
