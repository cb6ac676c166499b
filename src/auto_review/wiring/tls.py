"""The process's TLS trust: one client context for every outgoing HTTPS connection.

httpx builds a trust store (parsing the whole CA bundle, 10-30 ms and some memory) for every
client, and one more per proxy variable, unless it is handed an ``ssl.SSLContext``. The
composition root builds one context here and gives it to the forge clients, the LLM client
and the readiness probes.

Trust: ``AR_CA_FILE`` when the operator sets it (a private CA for a self-hosted forge or LLM;
it *replaces* the default store, the same way git's ``http.sslCAInfo`` does, so one file
decides what both trust); otherwise ``SSL_CERT_FILE`` when set, as httpx would honour it;
otherwise certifi's bundle, httpx's default.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path


class TrustError(ValueError):
    """The configured CA bundle cannot be loaded; the message names the setting."""


def client_tls_context(
    ca_file: Path | None, environ: Mapping[str, str] | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (``AR_CA_FILE``), or the default store.

    Raises :class:`TrustError` naming the setting when the file cannot be loaded, so a wrong
    path stops start-up instead of failing every request later.
    """
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError):
            raise TrustError(
                "AR_CA_FILE (--ca-file) cannot be loaded as a PEM CA bundle"
            ) from None
    env_file = (os.environ if environ is None else environ).get("SSL_CERT_FILE")
    if env_file:
        return ssl.create_default_context(cafile=env_file)
    import certifi  # httpx's own default bundle; imported only when needed

    return ssl.create_default_context(cafile=certifi.where())
