"""The shared TLS trust store: a private CA is trusted only once AR_CA_FILE names it."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.integration.review.smart_http import make_certificate

from auto_review import tls


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
        tls.configure_trust(None)


def _get(url: str) -> int:
    with httpx.Client(verify=tls.trust_context(), timeout=5) as client:
        return client.get(url).status_code


def test_default_store_refuses_a_private_ca(private_ca_server: tuple[str, Path]) -> None:
    url, _ = private_ca_server
    tls.configure_trust(None)
    with pytest.raises(httpx.ConnectError):
        _get(url)


def test_configured_ca_file_is_trusted_and_shared(private_ca_server: tuple[str, Path]) -> None:
    url, cert = private_ca_server
    tls.configure_trust(cert)
    assert tls.configured_ca_file() == cert
    assert tls.trust_context() is tls.trust_context()  # one store per process
    assert _get(url) == 200


def test_unloadable_ca_file_names_the_setting(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate canary-ca-7f3e\n")
    with pytest.raises(ValueError) as info:
        tls.configure_trust(bogus)
    assert "AR_CA_FILE" in str(info.value)
    assert "canary" not in str(info.value)
    with pytest.raises(ValueError):
        tls.configure_trust(tmp_path / "missing.pem")
    tls.configure_trust(None)
