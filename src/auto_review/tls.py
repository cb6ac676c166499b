"""One TLS trust store per process, shared by every outgoing HTTPS client.

httpx builds a trust store (parsing the whole CA bundle, 10-30 ms and some memory) for every
client, and one more per proxy variable, unless it is handed an ``ssl.SSLContext``. The forge
clients, the LLM client and the readiness probe all take the context from here instead.

Trust: ``AR_CA_FILE`` when the operator sets it (a private CA for a self-hosted forge or LLM;
it *replaces* the default store, the same way git's ``http.sslCAInfo`` does, so one file
decides what both trust); otherwise ``SSL_CERT_FILE`` when set, as httpx would honour it;
otherwise certifi's bundle, httpx's default.
"""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path

_lock = threading.Lock()
_ca_file: Path | None = None
_context: ssl.SSLContext | None = None


def configure_trust(ca_file: Path | None) -> None:
    """Set the process's CA bundle (from ``AR_CA_FILE``); None restores the default.

    Raises ValueError naming the setting when the file cannot be loaded, so a wrong path
    stops start-up instead of failing every request later.
    """
    global _ca_file, _context
    context = _build(ca_file)
    with _lock:
        _ca_file, _context = ca_file, context


def trust_context() -> ssl.SSLContext:
    """The shared client context, built on first use."""
    global _context
    with _lock:
        if _context is None:
            _context = _build(_ca_file)
        return _context


def configured_ca_file() -> Path | None:
    return _ca_file


def _build(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError):
            raise ValueError(
                "AR_CA_FILE (--ca-file) cannot be loaded as a PEM CA bundle"
            ) from None
    env_file = os.environ.get("SSL_CERT_FILE")
    if env_file:
        return ssl.create_default_context(cafile=env_file)
    import certifi  # httpx's own default bundle; imported only when needed

    return ssl.create_default_context(cafile=certifi.where())
