"""The base-URL check every outbound client applies to the URL it is configured with."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_base_url(
    url: str, what: str, *, credentials_hint: str = "configure them separately"
) -> str:
    """Validate a base URL and return it without a trailing slash.

    ``what`` names what the URL is for (``"AR_FORGEJO_URL"``, ``"LLM base URL"``); the
    message names it and never quotes the URL. Credentials are refused: they would travel
    into every message that names the URL. So are a query and a fragment.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain credentials; {credentials_hint}")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or fragment")
    return url.rstrip("/")
