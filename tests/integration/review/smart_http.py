"""A loopback HTTPS git server: real `git http-backend` behind Basic auth, with a throwaway CA.

It records every request line and header it receives, so tests can check where the token
travelled (only in the Authorization header, never in a URL).
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class SmartHttpServer:
    project_root: Path
    username: str
    token: str
    cert: Path
    key: Path
    seen: list[str] = field(default_factory=list)
    authorized_requests: int = 0

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                server.seen.append(self.requestline)
                server.seen.extend(f"{k}: {v}" for k, v in self.headers.items())
                expected = base64.b64encode(f"{server.username}:{server.token}".encode())
                if self.headers.get("Authorization", "") != f"Basic {expected.decode()}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.authorized_requests += 1
                self._cgi()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _cgi(self) -> None:
                parts = urlsplit(self.path)
                body = self._body() if self.command == "POST" else b""
                env = {
                    "PATH": "/usr/bin:/bin",
                    "GIT_PROJECT_ROOT": str(server.project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": parts.path,
                    "QUERY_STRING": parts.query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": server.username,
                    "REMOTE_ADDR": "127.0.0.1",
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                result = subprocess.run(
                    ["git", "http-backend"],
                    input=body,
                    env=env,
                    capture_output=True,
                    check=False,
                )
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for raw in head.split(b"\r\n"):
                    name, _, value = raw.decode("latin-1").partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, repo: str) -> str:
        return f"https://{self.host}/{repo}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def write_argv_logger(path: Path, log: Path) -> None:
    """A `git` wrapper that records its own /proc cmdline and whether the token env var is
    set, then runs the real git."""
    path.write_text(
        "#!/bin/sh\n"
        f"tr '\\0' ' ' < /proc/$$/cmdline >> '{log}'\n"
        f"if [ -n \"$AR_GIT_TOKEN\" ]; then echo ' [token-in-env]' >> '{log}'; "
        f"else echo ' [no-token]' >> '{log}'; fi\n"
        'exec /usr/bin/git "$@"\n'
    )
    path.chmod(0o755)
    os.sync()
