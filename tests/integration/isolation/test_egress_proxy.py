"""The egress proxy and bridge over real sockets: loopback forge, LLM and bystander servers.

The "forge" is a plain-HTTP echo server (reached by absolute-form forwarding), the "LLM" a
TLS server with a self-signed certificate for ``localhost`` (reached by CONNECT; the name
is resolved by the proxy), plus a raw TCP echo target and a bystander service on the same
loopback address that the policy does not name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from auto_review.config import Settings
from auto_review.isolation.egress.bridge import (
    EgressBridgeError,
    EgressBridgeThread,
    fetch_egress_stats,
)
from auto_review.isolation.egress.metrics import EgressMetricsCollector
from auto_review.isolation.egress.policy import EgressPolicy, EgressTarget
from auto_review.isolation.egress.proxy import (
    EgressProxyError,
    EgressProxyThread,
    ProxyLimits,
)

CANARY = "canary-7f3e9b1d5a2c4e6f8a0b"
LOGGER = "auto_review.isolation.egress"


# -- loopback servers ------------------------------------------------------------------


def _read_chunked(rfile: object) -> bytes:
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0], 16)  # type: ignore[attr-defined]
        if size == 0:
            while rfile.readline() not in (b"\r\n", b""):  # type: ignore[attr-defined]
                pass
            return body
        body += rfile.read(size)  # type: ignore[attr-defined]
        rfile.readline()  # type: ignore[attr-defined]


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received: method, path, headers, body."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if self.path.startswith("/early"):
            # Refuses before reading the body, as a server over its size limit does.
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _EchoTCP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Threaded(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Bystander(_Threaded):
    """A service on the same loopback address that the policy does not name."""

    def __init__(self) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _CountingHandler)


class _CountingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")


def _serve(server: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def certificate() -> Iterator[tuple[Path, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="egress-cert-"))
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
    yield cert, key
    shutil.rmtree(directory)


@dataclass
class World:
    forge_url: str
    llm_url: str
    echo_port: int
    bystander: Bystander
    cert: Path
    socket_path: Path
    policy: EgressPolicy


@pytest.fixture(scope="module")
def servers(certificate: tuple[Path, Path]) -> Iterator[dict[str, object]]:
    forge = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    llm = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    llm.socket = context.wrap_socket(llm.socket, server_side=True)
    echo = _Threaded(("127.0.0.1", 0), _EchoTCP)
    bystander = Bystander()
    for server in (forge, llm, echo, bystander):
        _serve(server)
    yield {"forge": forge, "llm": llm, "echo": echo, "bystander": bystander}
    for server in (forge, llm, echo, bystander):
        server.shutdown()
        server.server_close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # mkdtemp makes a 0700 directory; a short path keeps within sockaddr_un's 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def world(servers: dict[str, object], certificate: tuple[Path, Path], socket_dir: Path) -> World:
    forge_port = servers["forge"].server_address[1]  # type: ignore[attr-defined]
    llm_port = servers["llm"].server_address[1]  # type: ignore[attr-defined]
    echo_port = servers["echo"].server_address[1]  # type: ignore[attr-defined]
    settings = Settings(
        forgejo_url=f"http://127.0.0.1:{forge_port}",
        llm_base_url=f"https://localhost:{llm_port}/v1",
        state_dir=socket_dir,
    )
    base = EgressPolicy.from_settings(settings)
    policy = EgressPolicy((*base.targets, EgressTarget("127.0.0.1", echo_port, "https", "llm")))
    return World(
        forge_url=f"http://127.0.0.1:{forge_port}",
        llm_url=f"https://localhost:{llm_port}",
        echo_port=echo_port,
        bystander=servers["bystander"],  # type: ignore[arg-type]
        cert=certificate[0],
        socket_path=socket_dir / "proxy.sock",
        policy=policy,
    )


@pytest.fixture
def proxy(world: World) -> Iterator[EgressProxyThread]:
    thread = EgressProxyThread(world.policy, world.socket_path)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def bridge(proxy: EgressProxyThread, world: World) -> Iterator[EgressBridgeThread]:
    thread = EgressBridgeThread(world.socket_path)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def proxy_environment(
    bridge: EgressBridgeThread, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = bridge.proxy_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def exchange(path: Path, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the proxy socket and read until it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the proxy closed with our unread bytes queued (an oversized head)
        return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- allowed traffic -------------------------------------------------------------------


def test_httpx_plain_http_is_forwarded_in_origin_form(
    world: World, proxy: EgressProxyThread, proxy_environment: dict[str, str]
) -> None:
    assert proxy_environment["NO_PROXY"] == ""
    with httpx.Client(trust_env=True, timeout=10) as client:
        answer = client.get(
            f"{world.forge_url}/api/v1/user?limit=1",
            headers={"Authorization": "token abc", "Connection": "x-drop", "X-Drop": "1"},
        )
        posted = client.post(f"{world.forge_url}/api/v1/repos", content=b'{"name":"r"}')
        streamed = client.put(
            f"{world.forge_url}/stream", content=iter([b"part-one,", b"part-two"])
        )
    assert answer.status_code == 200
    seen = answer.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["path"] == "/api/v1/user?limit=1"
    assert headers["host"] == world.forge_url.removeprefix("http://")
    assert headers["authorization"] == "token abc"  # end-to-end headers pass unchanged
    assert headers["connection"] == "close"
    assert "x-drop" not in headers  # named in Connection: hop-by-hop
    assert not any(name.startswith("proxy-") for name in headers)
    assert answer.headers["connection"] == "close"
    assert posted.json()["body"] == '{"name":"r"}'
    assert streamed.json()["body"] == "part-one,part-two"
    assert dict(streamed.json()["headers"])["Transfer-Encoding"] == "chunked"
    stats = proxy.stats
    assert stats.allowed == {"connect": 0, "forward": 3}
    assert stats.refused_total == 0
    assert stats.transferred["upstream"] > 0 and stats.transferred["downstream"] > 0


def test_https_request_tunnels_with_real_tls(
    world: World, proxy: EgressProxyThread, proxy_environment: dict[str, str]
) -> None:
    context = ssl.create_default_context(cafile=str(world.cert))
    with httpx.Client(trust_env=True, verify=context, timeout=10) as client:
        answer = client.post(f"{world.llm_url}/v1/chat/completions", json={"model": "m"})
    assert answer.status_code == 200
    assert answer.json()["path"] == "/v1/chat/completions"
    assert json.loads(answer.json()["body"]) == {"model": "m"}
    assert proxy.stats.allowed == {"connect": 1, "forward": 0}


def test_connect_tunnel_relays_raw_bytes(
    world: World, proxy: EgressProxyThread, bridge: EgressBridgeThread
) -> None:
    with socket.create_connection(("127.0.0.1", bridge.bridge.port), timeout=10) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{world.echo_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200 ")
        payload = os.urandom(200_000)
        sock.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += sock.recv(65536)
    assert echoed == payload
    assert proxy.stats.transferred["upstream"] >= len(payload)


def test_early_answer_ends_the_forwarded_exchange(world: World, proxy: EgressProxyThread) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)  # far below the idle limit: only the early answer can end it
        sock.connect(str(world.socket_path))
        sock.sendall(
            f"POST {world.forge_url}/early HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".encode()
            + b"x" * 1000
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 413 ") or answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer


def test_tunnel_ends_when_the_upstream_closes(world: World, proxy: EgressProxyThread) -> None:
    forge = world.forge_url.removeprefix("http://")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)  # the client never half-closes: the upstream's close must end it
        sock.connect(str(world.socket_path))
        sock.sendall(f"CONNECT {forge} HTTP/1.1\r\n\r\nGET /t HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    established, _, inner = answer.partition(b"\r\n\r\n")
    assert established == b"HTTP/1.1 200 Connection Established"
    assert inner.startswith(b"HTTP/1.1 200 OK")
    assert b'"path": "/t"' in inner


# -- refusals ----------------------------------------------------------------------------


def _refusal_cases(world: World) -> list[tuple[bytes, int, str]]:
    forge = world.forge_url.removeprefix("http://")
    llm = world.llm_url.removeprefix("https://")
    llm_port = llm.rsplit(":", 1)[1]
    by = world.bystander.server_address[1]
    return [
        (f"CONNECT 127.0.0.1:{by} HTTP/1.1\r\n\r\n".encode(), 403, "port-not-allowed"),
        (f"GET http://127.0.0.1:{by}/ HTTP/1.1\r\n\r\n".encode(), 403, "port-not-allowed"),
        (f"CONNECT localhost:{by} HTTP/1.1\r\n\r\n".encode(), 403, "port-not-allowed"),
        # the LLM is configured by name: its address as a literal is another host
        (f"CONNECT 127.0.0.1:{llm_port} HTTP/1.1\r\n\r\n".encode(), 403, "port-not-allowed"),
        (f"CONNECT [::1]:{llm_port} HTTP/1.1\r\n\r\n".encode(), 403, "host-not-allowed"),
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", 403, "host-not-allowed"),
        (b"CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n", 403, "host-not-allowed"),
        (b"CONNECT 2130706433:443 HTTP/1.1\r\n\r\n", 400, "bad-host"),
        (b"CONNECT localhost HTTP/1.1\r\n\r\n", 400, "bad-port"),
        (f"CONNECT localhost:0{llm_port} HTTP/1.1\r\n\r\n".encode(), 400, "bad-port"),
        (b"CONNECT localhost:99999 HTTP/1.1\r\n\r\n", 400, "bad-port"),
        (b"CONNECT localhost: HTTP/1.1\r\n\r\n", 400, "bad-port"),
        (f"CONNECT u:{CANARY}@{llm} HTTP/1.1\r\n\r\n".encode(), 403, "userinfo"),
        (f"GET http://u:{CANARY}@{forge}/ HTTP/1.1\r\n\r\n".encode(), 403, "userinfo"),
        (f"GET https://{llm}/ HTTP/1.1\r\n\r\n".encode(), 403, "scheme-not-allowed"),
        (f"GET http://{llm}/ HTTP/1.1\r\n\r\n".encode(), 403, "scheme-not-allowed"),
        (b"GET ftp://example.com/ HTTP/1.1\r\n\r\n", 403, "scheme-not-allowed"),
        (f"TRACE http://{forge}/ HTTP/1.1\r\n\r\n".encode(), 405, "method-not-allowed"),
        (f"GET /{CANARY} HTTP/1.1\r\nHost: {forge}\r\n\r\n".encode(), 403, "not-a-proxy-request"),
        (b"garbage\r\n\r\n", 400, "malformed"),
        (f"GET http://{forge}/ HTTP/2.0\r\n\r\n".encode(), 400, "malformed"),
        (f"GET http://{forge}/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n".encode(), 400, "malformed"),
        (f"GET http://{forge}/ HTTP/1.1\r\nBad Name: a\r\n\r\n".encode(), 400, "malformed"),
        (
            f"POST http://{forge}/ HTTP/1.1\r\nContent-Length: 3\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode(),
            400,
            "malformed",
        ),
        (
            f"POST http://{forge}/ HTTP/1.1\r\nContent-Length: 3\r\n"
            "Content-Length: 4\r\n\r\n".encode(),
            400,
            "malformed",
        ),
        (
            f"GET http://{forge}/ HTTP/1.1\r\nX-Big: {'a' * 40_000}\r\n\r\n".encode(),
            431,
            "head-too-large",
        ),
    ]


def test_refusals_answer_count_and_never_reach_anyone(
    world: World, proxy: EgressProxyThread, caplog: pytest.LogCaptureFixture
) -> None:
    cases = _refusal_cases(world)
    expected: dict[str, int] = {}
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for request, status, reason in cases:
            answer = exchange(world.socket_path, request)
            assert status_of(answer) == status, (reason, answer[:80])
            assert answer.endswith(f"egress proxy: {reason}\n".encode())
            assert b"Connection: close" in answer
            expected[reason] = expected.get(reason, 0) + 1
    stats = proxy.stats
    assert {k: v for k, v in stats.refused.items() if v} == expected
    assert stats.allowed_total == 0
    assert world.bystander.connections == 0
    lines = [record.getMessage() for record in caplog.records]
    assert CANARY not in "\n".join(lines)
    by = world.bystander.server_address[1]
    assert f"egress refused: reason=port-not-allowed target=127.0.0.1:{by}" in lines
    assert "egress refused: reason=host-not-allowed target=example.com:443" in lines


def test_refusals_through_the_bridge(
    world: World, proxy: EgressProxyThread, proxy_environment: dict[str, str]
) -> None:
    by = world.bystander.server_address[1]
    with httpx.Client(trust_env=True, timeout=10) as client:
        answer = client.get(f"http://127.0.0.1:{by}/")
        assert answer.status_code == 403
        with pytest.raises(httpx.ProxyError):
            client.get("https://example.com/")
        with pytest.raises(httpx.ProxyError):
            client.get(f"https://127.0.0.1:{by}/")
    assert proxy.stats.refused["port-not-allowed"] == 2
    assert proxy.stats.refused["host-not-allowed"] == 1
    assert world.bystander.connections == 0


def test_secrets_in_requests_never_reach_the_log(
    world: World, proxy: EgressProxyThread, caplog: pytest.LogCaptureFixture
) -> None:
    forge = world.forge_url.removeprefix("http://")
    secret_headers = (
        f"Authorization: Bearer {CANARY}\r\nProxy-Authorization: Basic {CANARY}\r\n"
        f"Cookie: s={CANARY}\r\n"
    )
    requests = [
        f"GET http://{forge}/p/{CANARY}?token={CANARY} HTTP/1.1\r\n{secret_headers}\r\n",
        f"GET http://example.org/{CANARY} HTTP/1.1\r\n{secret_headers}\r\n",
        f"CONNECT example.org:443 HTTP/1.1\r\n{secret_headers}\r\n",
        f"GET http://{forge}/{CANARY} HTTP/1.1\r\nX-{CANARY}: v\r\n folded\r\n\r\n",
        f"{CANARY} http://{forge}/ HTTP/1.1\r\n\r\n",
    ]
    with caplog.at_level(logging.DEBUG):
        for request in requests:
            exchange(world.socket_path, request.encode())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "egress refused" in text and "egress allowed" in text
    assert CANARY not in text
    # The forwarded request kept its end-to-end credentials, but not the proxy's.
    assert proxy.stats.allowed["forward"] == 1


# -- name resolution on the host ---------------------------------------------------------


def _proxy_with_resolver(
    socket_dir: Path, target_port: int, addresses: list[str] | Exception
) -> EgressProxyThread:
    async def resolve(host: str, port: int) -> list[str]:
        assert host == "forge.test"
        if isinstance(addresses, Exception):
            raise addresses
        return addresses

    policy = EgressPolicy((EgressTarget("forge.test", target_port, "http", "forgejo"),))
    thread = EgressProxyThread(policy, socket_dir / "p.sock", resolver=resolve)
    thread.start()
    return thread


def test_configured_name_resolved_on_the_host(world: World, socket_dir: Path) -> None:
    port = int(world.forge_url.rsplit(":", 1)[1])
    thread = _proxy_with_resolver(socket_dir, port, ["169.254.169.254", "127.0.0.1"])
    try:
        answer = exchange(
            socket_dir / "p.sock", f"GET http://FORGE.test.:{port}/x HTTP/1.1\r\n\r\n".encode()
        )
        assert status_of(answer) == 200
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["path"] == "/x"
        assert thread.stats.allowed["forward"] == 1
    finally:
        thread.stop()


@pytest.mark.parametrize(
    ("addresses", "status", "counter", "reason"),
    [
        (["169.254.169.254"], 403, "refused", "address-forbidden"),
        # never a server: unspecified, multicast, link-local behind an IPv4-mapped address
        (["0.0.0.0", "224.0.0.1", "::ffff:169.254.1.1"], 403, "refused", "address-forbidden"),  # noqa: S104
        (OSError("no such name"), 502, "failed", "resolve-failed"),
        ([], 502, "failed", "resolve-failed"),
    ],
)
def test_resolution_refusals(
    socket_dir: Path,
    addresses: list[str] | Exception,
    status: int,
    counter: str,
    reason: str,
) -> None:
    thread = _proxy_with_resolver(socket_dir, 8080, addresses)
    try:
        answer = exchange(socket_dir / "p.sock", b"CONNECT forge.test:8080 HTTP/1.1\r\n\r\n")
        assert status_of(answer) == status
        assert getattr(thread.stats, counter)[reason] == 1
        assert thread.stats.allowed_total == 0
    finally:
        thread.stop()


def test_configured_target_down_is_a_failure(socket_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    policy = EgressPolicy((EgressTarget("127.0.0.1", free_port, "https", "llm"),))
    with EgressProxyThread(policy, socket_dir / "p.sock") as thread:
        answer = exchange(
            socket_dir / "p.sock", f"CONNECT 127.0.0.1:{free_port} HTTP/1.1\r\n\r\n".encode()
        )
        assert status_of(answer) == 502
        assert thread.stats.failed["connect-failed"] == 1


# -- stats and metrics -------------------------------------------------------------------


def test_stats_through_the_socket_and_the_collector(world: World, proxy: EgressProxyThread) -> None:
    exchange(world.socket_path, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
    exchange(world.socket_path, f"GET {world.forge_url}/ HTTP/1.1\r\n\r\n".encode())
    deadline = time.monotonic() + 5
    while proxy.stats.active and time.monotonic() < deadline:
        time.sleep(0.01)  # the client saw EOF; the handler may still be closing upstream
    fetched = fetch_egress_stats(world.socket_path)
    assert fetched.refused["host-not-allowed"] == 1
    assert fetched.allowed == {"connect": 0, "forward": 1}
    assert (fetched.allowed, fetched.refused) == (proxy.stats.allowed, proxy.stats.refused)
    assert fetched.active == 1  # the stats request's own connection
    # the stats request itself is neither allowed nor refused traffic
    assert proxy.stats.allowed_total == 1 and proxy.stats.refused_total == 1

    registry = CollectorRegistry(auto_describe=True)
    registry.register(EgressMetricsCollector.for_socket(world.socket_path))
    text = generate_latest(registry).decode()
    assert 'auto_review_egress_refused_total{reason="host-not-allowed"} 1.0' in text
    assert 'auto_review_egress_refused_total{reason="port-not-allowed"} 0.0' in text
    assert 'auto_review_egress_allowed_total{kind="forward"} 1.0' in text
    assert "auto_review_egress_proxy_up 1.0" in text


def test_collector_reports_proxy_down_without_counts(socket_dir: Path) -> None:
    missing = socket_dir / "absent.sock"
    with pytest.raises(EgressBridgeError):
        fetch_egress_stats(missing)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EgressMetricsCollector.for_socket(missing))
    text = generate_latest(registry).decode()
    assert "auto_review_egress_proxy_up 0.0" in text
    assert "auto_review_egress_refused_total" not in text


# -- limits, timeouts, lifecycle ---------------------------------------------------------


def test_connection_cap(world: World, socket_dir: Path) -> None:
    limits = ProxyLimits(max_connections=4, head_timeout=30)
    path = socket_dir / "cap.sock"
    with EgressProxyThread(world.policy, path, limits=limits) as thread:
        idle = [socket.socket(socket.AF_UNIX) for _ in range(4)]
        try:
            for sock in idle:
                sock.connect(str(path))
            deadline = time.monotonic() + 5
            while thread.stats.active < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            answer = exchange(path, f"GET {world.forge_url}/ HTTP/1.1\r\n\r\n".encode())
            assert status_of(answer) == 503
            assert thread.stats.refused["too-many-connections"] == 1
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while thread.stats.active and time.monotonic() < deadline:
            time.sleep(0.01)
        # the idle ones left: room again
        answer = exchange(path, f"GET {world.forge_url}/ HTTP/1.1\r\n\r\n".encode())
        assert status_of(answer) == 200


def test_parallel_requests_through_the_bridge(
    world: World, proxy: EgressProxyThread, proxy_environment: dict[str, str]
) -> None:
    context = ssl.create_default_context(cafile=str(world.cert))

    def one(index: int) -> tuple[int, int]:
        with httpx.Client(trust_env=True, verify=context, timeout=20) as client:
            plain = client.get(f"{world.forge_url}/n{index}")
            tls = client.get(f"{world.llm_url}/n{index}")
            assert plain.json()["path"] == tls.json()["path"] == f"/n{index}"
            return plain.status_code, tls.status_code

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [(200, 200)] * 64
    assert proxy.stats.allowed == {"connect": 64, "forward": 64}
    assert proxy.stats.refused_total == 0


def test_head_timeout(world: World, socket_dir: Path) -> None:
    path = socket_dir / "t.sock"
    with EgressProxyThread(world.policy, path, limits=ProxyLimits(head_timeout=0.3)) as thread:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"CONNECT localhost:1")
            answer = sock.recv(1000)
        assert status_of(answer) == 408
        assert thread.stats.refused["head-timeout"] == 1


def test_idle_and_total_timeouts_close_tunnels(world: World, socket_dir: Path) -> None:
    connect = f"CONNECT 127.0.0.1:{world.echo_port} HTTP/1.1\r\n\r\n".encode()
    path = socket_dir / "i.sock"
    with EgressProxyThread(world.policy, path, limits=ProxyLimits(idle_timeout=0.4)) as idle:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(connect)
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            assert sock.recv(100) == b""  # closed by the proxy, no byte sent meanwhile
        assert idle.stats.failed["idle-timeout"] == 1
    path = socket_dir / "T.sock"
    limits = ProxyLimits(idle_timeout=10, total_timeout=1.0)
    with EgressProxyThread(world.policy, path, limits=limits) as total:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(connect)
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            closed = False
            for _ in range(50):  # busy for up to 5 s: only the total limit can end it
                try:
                    sock.sendall(b"ping")
                    if sock.recv(100) == b"":
                        closed = True
                        break
                except OSError:
                    closed = True
                    break
                time.sleep(0.1)
            assert closed
        assert total.stats.failed["total-timeout"] == 1


def test_stop_closes_connections_and_removes_the_socket(world: World, socket_dir: Path) -> None:
    path = socket_dir / "s.sock"
    thread = EgressProxyThread(world.policy, path)
    thread.start()
    assert path.stat().st_mode & 0o777 == 0o600
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(f"CONNECT 127.0.0.1:{world.echo_port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        thread.stop()
        assert sock.recv(100) == b""
    assert not path.exists()
    assert not thread.running
    thread.stop()  # idempotent
    with pytest.raises(OSError):
        exchange(path, b"GET / HTTP/1.1\r\n\r\n")


def test_socket_directory_must_be_private(world: World, socket_dir: Path) -> None:
    open_dir = socket_dir / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(EgressProxyError, match="mode 0700"):
        EgressProxyThread(world.policy, open_dir / "p.sock").start()
    regular = socket_dir / "file"
    regular.write_text("x")
    with pytest.raises(EgressProxyError, match="is no socket"):
        EgressProxyThread(world.policy, regular).start()
    with pytest.raises(EgressProxyError, match="longer than"):
        EgressProxyThread(world.policy, socket_dir / ("x" * 120)).start()
