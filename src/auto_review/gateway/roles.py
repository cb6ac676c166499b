"""What a process of the service does: the gateway (intake and workers, or intake only
with ``AR_WORKERS=0``), or a worker (runs queued jobs, no intake)."""

from __future__ import annotations

from enum import StrEnum


class ProcessRole(StrEnum):
    GATEWAY = "gateway"  # webhooks, CI trigger and chat poller, and (unless 0) workers
    WORKER = "worker"  # workers only; HTTP serves health, readiness, /info and /metrics

    @property
    def takes_intake(self) -> bool:
        return self is ProcessRole.GATEWAY
