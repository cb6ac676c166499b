"""git through the egress proxy: smart HTTP served by ``git http-backend`` on loopback.

Over https the project's own hermetic fetch (``open_workspace`` with ``GitPolicy.https_proxy``
set to the bridge) tunnels through CONNECT, with basic-auth credentials the proxy never
sees; over plain http a ``git clone`` with the bridge's proxy environment is forwarded in
origin form, POST bodies included. A remote on a port the policy does not name is refused.
"""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from auto_review.isolation.egress.bridge import EgressBridgeThread
from auto_review.isolation.egress.policy import EgressPolicy, EgressTarget
from auto_review.isolation.egress.proxy import EgressProxyThread
from auto_review.review.workspace.checkout import FetchRequest, open_workspace
from auto_review.review.workspace.gitenv import GitCredentials, GitPolicy

CANARY = "canary-git-4c1d9e7b2a6f0e3d"
USER = "x-access-token"


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd or "/nonexistent"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"git {args[0]} failed: {result.stderr.decode()[-500:]}")
    return result.stdout.decode().strip()


class GitBackend(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` (CGI) per request; with ``token`` set, asks for basic auth."""

    protocol_version = "HTTP/1.1"
    root: Path
    token: str | None = None
    requests: list[str]

    def _cgi(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = base64.b64encode(f"{USER}:{self.token}".encode()).decode()
        if self.token is not None and self.headers.get("Authorization") != f"Basic {expected}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": USER if self.token else "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        for name, value in self.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, fields = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                fields.append((name, value))
        self.send_response(status)
        for name, value in fields:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _cgi

    def log_message(self, format: str, *args: object) -> None:
        pass


def _backend(root: Path, token: str | None) -> tuple[ThreadingHTTPServer, list[str]]:
    requests: list[str] = []
    handler = type("Handler", (GitBackend,), {"root": root, "token": token, "requests": requests})
    return ThreadingHTTPServer(("127.0.0.1", 0), handler), requests


@pytest.fixture(scope="module")
def remote_root() -> Iterator[tuple[Path, str]]:
    root = Path(tempfile.mkdtemp(prefix="egress-git-"))
    work = root / "work"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    (work / "README.md").write_text("reached through the egress proxy\n")
    git("add", "README.md", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(root / "repo.git"), cwd=root)
    yield root, sha
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def certificate() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="egress-git-cert-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (directory / "chain").write_text(cert.read_text() + key.read_text())
    yield directory
    shutil.rmtree(directory)


def _start(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_hermetic_https_fetch_tunnels_through_connect(
    remote_root: tuple[Path, str],
    certificate: Path,
    socket_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, sha = remote_root
    server, seen = _backend(root, token=CANARY)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _start(server)
    port = server.server_address[1]
    policy = EgressPolicy((EgressTarget("localhost", port, "https", "forgejo"),))
    try:
        with (
            caplog.at_level(logging.DEBUG),
            EgressProxyThread(policy, socket_dir / "proxy.sock") as proxy,
            EgressBridgeThread(socket_dir / "proxy.sock") as bridge,
        ):
            git_policy = GitPolicy(https_proxy=bridge.proxy_url, ca_file=certificate / "cert.pem")
            credentials = GitCredentials(username=USER, token=CANARY, host=f"localhost:{port}")
            request = FetchRequest(
                url=f"https://localhost:{port}/repo.git", head_sha=sha, head_ref="refs/heads/main"
            )
            with open_workspace(request, policy=git_policy, credentials=credentials) as workspace:
                readme = (workspace.tree / "README.md").read_text()
            stats = proxy.stats
    finally:
        server.shutdown()
        server.server_close()
    assert readme == "reached through the egress proxy\n"
    assert any(line.startswith("POST /repo.git/git-upload-pack") for line in seen)
    assert stats.allowed["connect"] >= 1 and stats.allowed["forward"] == 0
    assert stats.refused_total == 0
    assert CANARY not in "\n".join(record.getMessage() for record in caplog.records)


def test_plain_http_clone_with_the_bridge_environment(
    remote_root: tuple[Path, str], socket_dir: Path
) -> None:
    root, sha = remote_root
    server, seen = _backend(root, token=None)
    _start(server)
    port = server.server_address[1]
    policy = EgressPolicy((EgressTarget("127.0.0.1", port, "http", "forgejo"),))
    target = socket_dir / "clone"
    try:
        with (
            EgressProxyThread(policy, socket_dir / "proxy.sock") as proxy,
            EgressBridgeThread(socket_dir / "proxy.sock") as bridge,
        ):
            git("clone", "--quiet", f"http://127.0.0.1:{port}/repo.git", str(target),
                cwd=socket_dir, env=bridge.proxy_env())  # fmt: skip
            stats = proxy.stats
    finally:
        server.shutdown()
        server.server_close()
    assert git("rev-parse", "HEAD", cwd=target) == sha
    assert any(line.startswith("POST /repo.git/git-upload-pack") for line in seen)
    # one connection per request: discovery and upload-pack at least
    assert stats.allowed["forward"] >= 2 and stats.allowed["connect"] == 0


def test_clone_from_an_unlisted_port_is_refused(
    remote_root: tuple[Path, str], socket_dir: Path
) -> None:
    root, _ = remote_root
    allowed, _ = _backend(root, token=None)
    unlisted, unlisted_seen = _backend(root, token=None)
    for server in (allowed, unlisted):
        _start(server)
    policy = EgressPolicy(
        (EgressTarget("127.0.0.1", allowed.server_address[1], "http", "forgejo"),)
    )
    try:
        with (
            EgressProxyThread(policy, socket_dir / "proxy.sock") as proxy,
            EgressBridgeThread(socket_dir / "proxy.sock") as bridge,
        ):
            with pytest.raises(AssertionError, match="git clone failed"):
                git("clone", "--quiet",
                    f"http://127.0.0.1:{unlisted.server_address[1]}/repo.git",
                    str(socket_dir / "nope"), cwd=socket_dir, env=bridge.proxy_env())  # fmt: skip
            stats = proxy.stats
    finally:
        for server in (allowed, unlisted):
            server.shutdown()
            server.server_close()
    assert unlisted_seen == []
    assert stats.refused["port-not-allowed"] >= 1
    assert stats.allowed_total == 0
    assert not (socket_dir / "nope").exists()
