"""Git smart HTTP for a loopback fake forge: real ``git http-backend`` behind Basic auth.

:class:`GitHttpBackend` is a ``passthrough`` for :class:`tests.support.fake_forgejo.
LoopbackForge`: it answers every request outside the API prefix (with ``api_prefix=None``,
as for the GitHub fake whose API is at the root: every request whose path holds ``.git/``),
so the API and ``https://host:port/<owner>/<repo>.git`` share one host:port, as on a real
forge (an egress policy that allows only the forge's host:port then covers the clone too).
Request lines and header names are recorded (never header values: they hold the token).

Who may fetch: ``username``/``token``, or ``accepts(username, password)`` when given (the
GitHub fake checks installation tokens with it). A refusal is a 401 with a Basic challenge,
as on the forges. Faults, for the next matching requests (``path_contains``)::

    backend.fail(503, times=2, path_contains="git-upload-pack")   # an HTTP error answer
    backend.cut(times=1)      # half the answer in a well-formed HTTP answer: an early end
    backend.cut(skip=1)       # the same for the second upload-pack POST (v2: the pack)
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

CGI_TIMEOUT = 30


@dataclass
class GitFault:
    times: int
    path_contains: str
    status: int | None  # None: cut the answer short instead
    skip: int = 0  # matching requests let through first


@dataclass
class GitHttpBackend:
    project_root: Path  # holds <owner>/<repo>.git bare repositories
    username: str
    token: str
    api_prefix: str | None = "/api/"
    accepts: Callable[[str, str], bool] | None = None
    request_lines: list[str] = field(default_factory=list)
    authorized: int = 0
    refused: int = 0
    _faults: list[GitFault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int, *, times: int = 1, path_contains: str = "") -> None:
        with self._lock:
            self._faults.append(GitFault(times, path_contains, status))

    def cut(
        self, *, times: int = 1, path_contains: str = "/git-upload-pack", skip: int = 0
    ) -> None:
        with self._lock:
            self._faults.append(GitFault(times, path_contains, None, skip))

    def serves(self, path: str) -> bool:
        if self.api_prefix is None:
            return ".git/" in path
        return not path.startswith(self.api_prefix)

    def __call__(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.serves(handler.path):
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
        fault = self._take_fault(handler.path)
        if fault is not None and fault.status is not None:
            _reply(handler, fault.status, [("Content-Type", "text/plain")], b"unavailable\n")
            return True
        self._run_cgi(handler, body, cut=fault is not None)
        return True

    def _take_fault(self, path: str) -> GitFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.path_contains in path:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        if self.accepts is not None:
            return self.accepts(username, password)
        return (username, password) == (self.username, f"{self.token}")

    def _run_cgi(self, handler: BaseHTTPRequestHandler, body: bytes, *, cut: bool) -> None:
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
        if cut:
            # The pack stops half-way but the HTTP answer ends cleanly (its length says so),
            # as when the forge's upload-pack dies mid-transfer: git sees the stream end early.
            payload = payload[: len(payload) // 2]
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
