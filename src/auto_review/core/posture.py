"""The runtime isolation posture reported in startup logs, /info and diagnostics."""

from __future__ import annotations

from typing import Any

BARE_WARNING_LINES = (
    "!" * 78,
    "!! WARNING: auto-review gateway is running in BARE mode.",
    "!! No container boundary is active: no namespaces, no seccomp filter, no egress",
    "!! proxy. A hostile pull request that found a bug in this process would reach",
    "!! this host and its network directly. This was requested explicitly with",
    "!! --bare or AR_GATEWAY_BARE=true.",
    "!" * 78,
)

BARE_WARNING = "\n".join(BARE_WARNING_LINES)


def bare_posture() -> dict[str, Any]:
    return {
        "mode": "bare",
        "verified": False,
        "boundary": "none",
        "warning": "BARE MODE: no container boundary is active (explicit opt-out)",
    }


def external_posture() -> dict[str, Any]:
    return {
        "mode": "external",
        "verified": False,
        "boundary": "operator-declared container",
        "warning": "isolation is provided by the operator's container and is not verified",
    }
