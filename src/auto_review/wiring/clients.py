"""Settings -> the outbound clients: forge hosts, the LLM client, the readiness LLM check.

Every client gets the process's one TLS context (:func:`~auto_review.wiring.tls.
client_tls_context`); callers that build several clients build the context once and pass
it to each. Below this module no client reads settings: they take plain values.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from auto_review.core.refs import HostKind
from auto_review.wiring.tls import client_tls_context

if TYPE_CHECKING:
    import httpx

    from auto_review.config import Settings
    from auto_review.hosts.base import ReviewHost
    from auto_review.hosts.forgejo_admin import ForgejoAdmin
    from auto_review.llm.accounting import LlmMetrics
    from auto_review.llm.client import OpenAICompatibleClient
    from auto_review.llm.transport import LlmTransport


def settings_tls(settings: Settings, tls: ssl.SSLContext | None) -> ssl.SSLContext:
    """``tls`` when the caller already holds the process's context, else one from settings."""
    return tls if tls is not None else client_tls_context(settings.ca_file)


def forge_hosts(
    settings: Settings, *, tls: ssl.SSLContext | None = None
) -> dict[HostKind, ReviewHost]:
    """A forge client for every forge whose settings are complete."""
    hosts: dict[HostKind, ReviewHost] = {}
    timeout = settings.http_timeout_seconds
    if settings.forgejo_url and settings.forgejo_token:
        from auto_review.hosts.forgejo import ForgejoClient

        hosts[HostKind.FORGEJO] = ForgejoClient(
            settings.forgejo_url,
            settings.forgejo_token.reveal(),
            timeout=timeout,
            tls=settings_tls(settings, tls),
        )
    if settings.github_app_id and settings.github_app_private_key:
        from auto_review.hosts.github import GitHubClient

        hosts[HostKind.GITHUB] = GitHubClient(
            settings.github_app_id,
            settings.github_app_private_key.reveal(),
            api_url=settings.github_api_url,
            timeout=timeout,
            tls=settings_tls(settings, tls),
        )
    return hosts


def llm_configured(settings: Settings) -> bool:
    return bool(settings.llm_base_url and settings.llm_reasoning_model)


def language_model(
    settings: Settings,
    *,
    tls: ssl.SSLContext | None = None,
    metrics: LlmMetrics | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAICompatibleClient:
    """The LLM client the settings describe. The cheap tier uses the reasoning model when
    ``AR_LLM_CHEAP_MODEL`` is unset. Raises ValueError naming a missing setting."""
    from auto_review.llm.api import Tier
    from auto_review.llm.client import OpenAICompatibleClient

    if not settings.llm_base_url:
        raise ValueError("AR_LLM_BASE_URL is not set: the review pipeline needs an LLM")
    if not settings.llm_reasoning_model:
        raise ValueError("AR_LLM_REASONING_MODEL is not set")
    api_key = settings.llm_api_key.reveal() if settings.llm_api_key else None
    return OpenAICompatibleClient(
        settings.llm_base_url,
        api_key,
        {
            Tier.REASONING: settings.llm_reasoning_model,
            Tier.CHEAP: settings.llm_cheap_model or settings.llm_reasoning_model,
        },
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        response_format_mode=settings.llm_response_format,
        prices={Tier.REASONING: settings.llm_reasoning_price, Tier.CHEAP: settings.llm_cheap_price},
        transport=transport,
        metrics=metrics,
        tls=settings_tls(settings, tls),
    )


def readiness_llm(
    settings: Settings,
    *,
    tls: ssl.SSLContext | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LlmTransport | None:
    """The LLM transport ``/readyz`` uses for ``GET {AR_LLM_BASE_URL}/models`` (one try
    within ``AR_HTTP_TIMEOUT_SECONDS``, through the proxy if set), or None without an LLM.
    The API key stays in its ``Secret`` until it is put on the request."""
    if not settings.llm_base_url:
        return None
    from auto_review.llm.transport import models_probe

    return models_probe(
        settings.llm_base_url,
        settings.llm_api_key,
        timeout=settings.http_timeout_seconds,
        transport=transport,
        tls=settings_tls(settings, tls),
    )


def forgejo_admin(settings: Settings, *, tls: ssl.SSLContext | None = None) -> ForgejoAdmin:
    """The set-up client (webhooks, tokens) of the configured Forgejo/Gitea."""
    from auto_review.hosts.forgejo_admin import ForgejoAdmin

    if not settings.forgejo_url:
        raise ValueError("AR_FORGEJO_URL is not set")
    return ForgejoAdmin(
        settings.forgejo_url,
        timeout=settings.http_timeout_seconds,
        tls=settings_tls(settings, tls),
    )
