"""Which runtime boundary the gateway gets: a small pure decision, tested on its own.

Default on Linux is the embedded OCI container. Bare (no boundary) is only ever an explicit
opt-in; ``external`` is the operator's statement that the process already runs inside a
container they own. Everything else refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IsolationMode(StrEnum):
    OCI = "oci"
    BARE = "bare"
    EXTERNAL = "external"


class IsolationRefused(RuntimeError):
    """Startup must stop: the requested boundary cannot be provided on this host."""


@dataclass(frozen=True, slots=True)
class IsolationDecision:
    mode: IsolationMode
    reason: str


def decide_isolation(
    platform: str, bare: bool, external_isolation: str | None
) -> IsolationDecision:
    """Map the platform and the operator's explicit choices to a mode, or refuse."""
    if bare:
        return IsolationDecision(IsolationMode.BARE, "explicit opt-out (--bare / AR_GATEWAY_BARE)")
    if external_isolation == "container":
        return IsolationDecision(
            IsolationMode.EXTERNAL, "operator-declared container (AR_GATEWAY_EXTERNAL_ISOLATION)"
        )
    if not platform.startswith("linux"):
        raise IsolationRefused(
            f"the embedded OCI runtime needs Linux (this is {platform}); refusing to start "
            "without a container boundary. Use --bare (AR_GATEWAY_BARE=true) to run unisolated."
        )
    return IsolationDecision(IsolationMode.OCI, "default on Linux")
