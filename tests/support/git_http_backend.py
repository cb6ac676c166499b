"""Git smart HTTP for a loopback fake forge: real ``git http-backend`` behind Basic auth.

:class:`GitHttpBackend` is a ``passthrough`` for :class:`tests.support.fake_forgejo.
LoopbackForge`: it answers every request outside the API prefix, so the API and
``https://host:port/<owner>/<repo>.git`` share one host:port, as on a real Forgejo (an
egress policy that allows only the forge's host:port then covers the clone too). Request
lines and header names are recorded (never header values: they hold the token).
"""

from __future__ import annotations

import base64
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

CGI_TIMEOUT = 30


@dataclass
class GitHttpBackend:
    project_root: Path  # holds <owner>/<repo>.git bare repositories
    username: str
    token: str
    api_prefix: str = "/api/"
    request_lines: list[str] = field(default_factory=list)
    authorized: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, handler: BaseHTTPRequestHandler) -> bool:
        if handler.path.startswith(self.api_prefix):
            return False
        with self._lock:
            self.request_lines.append(f"{handler.command} {handler.path}")
        body = _read_body(handler) if handler.command == "POST" else b""
        if not self._authorized(handler.headers.get("Authorization", "")):
            with self._lock:
                self.refused += 1
            _reply(handler, 401, [("WWW-Authenticate", 'Basic realm="git"')], b"")
            return True
        with self._lock:
            self.authorized += 1
        self._run_cgi(handler, body)
        return True

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return header == f"Basic {expected}"

    def _run_cgi(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.username,
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header, variable in (("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                                 ("Git-Protocol", "GIT_PROTOCOL")):  # fmt: skip
            if handler.headers.get(header):
                env[variable] = handler.headers[header]
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True,
            timeout=CGI_TIMEOUT, check=False,
        )  # fmt: skip
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for raw in head.split(b"\r\n"):
            name, _, value = raw.decode("latin-1").partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        _reply(handler, status, headers, payload)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    chunks: list[bytes] = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            handler.rfile.readline()  # the empty trailer line
            return b"".join(chunks)
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()


def _reply(
    handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes
) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
