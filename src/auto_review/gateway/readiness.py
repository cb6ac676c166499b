"""Readiness: can the gateway reach its forges and its LLM right now?

Probes run at most once per cache period however often ``/readyz`` is asked, and
concurrent callers share one probe in flight, so a scraper cannot turn readiness checks
into load on the forge. Results carry fixed words only ("ok", "unreachable", ...), never
an exception message: those may quote URLs or credentials.

The LLM check is ``GET {base}/models`` through the LLM client's own transport
(:func:`auto_review.llm.transport.models_probe`, built by ``wiring``): the one outbound HTTP
stack, its size cap and deadline, with the API key held in a ``Secret`` there. The probe
holds no key and speaks no HTTP itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from auto_review.core.refs import HostKind
from auto_review.hosts.base import ForgeProbe, HostAuthError, HostError, HostUnavailable
from auto_review.llm.api import LlmRefused, LlmUnavailable
from auto_review.llm.transport import HttpRefused

log = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"
AUTH_FAILED = "auth-failed"
NOT_CONFIGURED = "not-configured"
ERROR = "error"


class ModelLister(Protocol):
    """What the LLM check needs: ``LlmTransport.list_models`` (reachable, key accepted)."""

    async def list_models(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    ready: bool
    checks: dict[str, str]  # component -> status word
    checked_at: float  # unix seconds

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "checks": dict(self.checks), "checked_at": self.checked_at}


class ReadinessProbe:
    """Checks every configured forge (``ForgeProbe.ping``) and the LLM (``GET /models``;
    ``llm`` is None when no LLM is configured)."""

    def __init__(
        self,
        hosts: Mapping[HostKind, ForgeProbe],
        *,
        llm: ModelLister | None,
        cache_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self._hosts = dict(hosts)
        self._llm = llm
        self._cache_seconds = cache_seconds
        self._timeout = timeout_seconds
        self._cached: ReadinessReport | None = None
        self._cached_at = 0.0
        self._in_flight: asyncio.Future[ReadinessReport] | None = None

    async def report(self) -> ReadinessReport:
        """The cached report while it is fresh, else a new one (shared by concurrent callers)."""
        cached = self._cached
        if cached is not None and time.monotonic() - self._cached_at < self._cache_seconds:
            return cached
        if self._in_flight is None:
            self._in_flight = asyncio.ensure_future(self._probe_all())
            self._in_flight.add_done_callback(self._store)
        # shield: a client hanging up must not cancel the probe others wait for.
        return await asyncio.shield(self._in_flight)

    def _store(self, future: asyncio.Future[ReadinessReport]) -> None:
        self._in_flight = None
        if not future.cancelled() and future.exception() is None:
            self._cached = future.result()
            self._cached_at = time.monotonic()

    async def _probe_all(self) -> ReadinessReport:
        names = list(self._hosts)
        probes = [self._probe_host(self._hosts[name]) for name in names]
        probes.append(self._probe_llm())
        results = await asyncio.gather(*probes)
        checks = dict(zip([*names, "llm"], results, strict=True))
        if not names:
            checks["forge"] = NOT_CONFIGURED
        # An LLM that is not configured is not a failure of this gateway's readiness to
        # queue work; a configured one that cannot be reached is.
        ready = bool(names) and all(
            status == OK or (component == "llm" and status == NOT_CONFIGURED)
            for component, status in checks.items()
        )
        return ReadinessReport(ready=ready, checks=checks, checked_at=time.time())

    async def _probe_host(self, host: ForgeProbe) -> str:
        try:
            await asyncio.wait_for(host.ping(), timeout=self._timeout)
        except HostAuthError:
            return AUTH_FAILED
        except (HostUnavailable, TimeoutError):
            return UNREACHABLE
        except HostError:
            return ERROR
        except Exception as exc:  # a probe must never take /readyz down with it
            log.warning("forge readiness probe failed", extra={"error_type": type(exc).__name__})
            return ERROR
        return OK

    async def _probe_llm(self) -> str:
        if self._llm is None:
            return NOT_CONFIGURED
        try:
            await self._llm.list_models()
        except HttpRefused as exc:
            return AUTH_FAILED if exc.status in (401, 403) else UNREACHABLE
        except (LlmUnavailable, LlmRefused):
            return UNREACHABLE
        except Exception as exc:  # a probe must never take /readyz down with it
            log.warning("LLM readiness probe failed", extra={"error_type": type(exc).__name__})
            return ERROR
        return OK
