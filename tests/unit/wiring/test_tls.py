"""The process's TLS trust: a private CA is trusted only once AR_CA_FILE names it, and the
clients the composition root builds all use that one context."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.integration.review.smart_http import make_certificate

from auto_review.config import load_settings
from auto_review.core.refs import HostKind
from auto_review.wiring.clients import forge_hosts, language_model, readiness_llm
from auto_review.wiring.tls import TrustError, client_tls_context


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # refused handshakes are the point of one test


@pytest.fixture
def private_ca_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = make_certificate(tmp_path)
    server = _QuietServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", cert
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, context: ssl.SSLContext) -> int:
    with httpx.Client(verify=context, timeout=5) as client:
        return client.get(url).status_code


def test_default_store_refuses_a_private_ca(private_ca_server: tuple[str, Path]) -> None:
    url, _ = private_ca_server
    with pytest.raises(httpx.ConnectError):
        _get(url, client_tls_context(None))


def test_configured_ca_file_is_trusted(private_ca_server: tuple[str, Path]) -> None:
    url, cert = private_ca_server
    assert _get(url, client_tls_context(cert)) == 200


def test_unloadable_ca_file_names_the_setting(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate canary-ca-7f3e\n")
    with pytest.raises(TrustError) as info:
        client_tls_context(bogus)
    assert "AR_CA_FILE" in str(info.value)
    assert "canary" not in str(info.value)
    with pytest.raises(TrustError):
        client_tls_context(tmp_path / "missing.pem")


def _context_of(client: httpx.AsyncClient) -> object:
    # httpx keeps the context on its connection pool; the clients are built without a
    # custom transport here, so this is the context every connection will use.
    return client._transport._pool._ssl_context  # type: ignore[attr-defined]


def test_every_client_the_root_builds_uses_one_context(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    environ = {
        "AR_STATE_DIR": str(tmp_path),
        "AR_FORGEJO_URL": "https://forge.example",
        "AR_FORGEJO_TOKEN": "token-for-the-tls-test-0123456789",
        "AR_LLM_BASE_URL": "https://llm.example/v1",
        "AR_LLM_REASONING_MODEL": "m",
    }
    settings = load_settings({}, environ)
    trusted = client_tls_context(cert)
    forge = forge_hosts(settings, tls=trusted)[HostKind.FORGEJO]
    llm = language_model(settings, tls=trusted)
    readiness = readiness_llm(settings, tls=trusted)
    assert readiness is not None
    assert _context_of(forge._http._client) is trusted  # type: ignore[attr-defined]
    assert _context_of(llm._transport._client) is trusted
    assert _context_of(readiness._client) is trusted


def test_without_a_context_the_root_reads_ar_ca_file(
    private_ca_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, cert = private_ca_server
    environ = {"AR_STATE_DIR": str(tmp_path), "AR_LLM_BASE_URL": url + "v1"}
    without = readiness_llm(load_settings({}, environ))
    with_ca = readiness_llm(load_settings({}, {**environ, "AR_CA_FILE": str(cert)}))
    assert without is not None and with_ca is not None

    async def get(client: httpx.AsyncClient) -> int:
        async with client:
            return (await client.get(url)).status_code

    with pytest.raises(httpx.ConnectError):
        asyncio.run(get(without._client))
    assert asyncio.run(get(with_ca._client)) == 200
