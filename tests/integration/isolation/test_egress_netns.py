"""Egress from inside a network namespace that has only ``lo``, as the inner gateway has.

The proxy runs on the host side (as root, and as an unprivileged user for the rootless
case); a child in a fresh network namespace (``unshare --net``; rootless adds
``--user --map-root-user``) starts the bridge on its own loopback and reaches the loopback
forge of the host only through the proxy's socket. Direct connections fail, another
service on the host's loopback is refused, and the child reads the counters through the
socket. The scripts run with Debian's interpreter so the unprivileged user can run them.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"
PYTHON = "/usr/bin/python3"
UNPRIVILEGED = 65534  # nobody

OUTER = r"""
import json, subprocess, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from auto_review.isolation.egress.policy import EgressPolicy, EgressTarget
from auto_review.isolation.egress.proxy import EgressProxyThread

src, inner, forge_port, bystander_port, rootless = sys.argv[1:6]
directory = Path(tempfile.mkdtemp(prefix="eg-"))
policy = EgressPolicy((EgressTarget("127.0.0.1", int(forge_port), "http", "forgejo"),))
unshare = ["unshare", "--net"] + (["--user", "--map-root-user"] if rootless == "1" else [])
with EgressProxyThread(policy, directory / "p.sock") as proxy:
    child = subprocess.run(
        [*unshare, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
         sys.executable, inner, src, str(directory / "p.sock"), forge_port, bystander_port],
        capture_output=True, timeout=60,
    )
    stats = proxy.stats
directory.rmdir()
print(json.dumps({
    "returncode": child.returncode,
    "inner": child.stdout.decode(),
    "stderr": child.stderr.decode()[-2000:],
    "allowed": stats.allowed,
    "refused": {k: v for k, v in stats.refused.items() if v},
}))
"""

INNER = r"""
import errno, json, socket, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from auto_review.isolation.egress.bridge import EgressBridgeThread, fetch_egress_stats

sock, forge_port, bystander_port = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
result = {"interfaces": sorted(name for _, name in socket.if_nameindex())}

def attempt(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

result["direct_forge"] = attempt("127.0.0.1", forge_port)
result["direct_outside"] = attempt("192.0.2.1", 80)

def through(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request.encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data.decode("latin-1")

with EgressBridgeThread(Path(sock)) as bridge:
    port = bridge.bridge.port
    result["proxy_env"] = bridge.proxy_env()["HTTP_PROXY"] == f"http://127.0.0.1:{port}"
    forge = through(port, f"GET http://127.0.0.1:{forge_port}/from-inside HTTP/1.1\r\n\r\n")
    result["forge_status"] = forge.split("\r\n", 1)[0]
    result["forge_body"] = forge.partition("\r\n\r\n")[2]
    other = through(port, f"CONNECT 127.0.0.1:{bystander_port} HTTP/1.1\r\n\r\n")
    result["bystander_status"] = other.split("\r\n", 1)[0]
    result["stats_refused"] = fetch_egress_stats(Path(sock)).refused["port-not-allowed"]
print(json.dumps(result))
"""


class _Forge(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"forge saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Counting(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def scripts() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="egress-netns-"))
    directory.chmod(0o755)  # readable by the unprivileged user
    (directory / "outer.py").write_text(OUTER)
    (directory / "inner.py").write_text(INNER)
    for script in directory.iterdir():
        script.chmod(0o644)
    yield directory
    shutil.rmtree(directory)


def _require_tools() -> None:
    missing = [tool for tool in ("unshare", "ip", "setpriv") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing or not Path(PYTHON).exists():
        raise RuntimeError(
            f"these tests need root, {PYTHON} and unshare/ip/setpriv (missing: {missing})"
        )


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_inner_namespace_reaches_only_the_configured_forge(scripts: Path, rootless: bool) -> None:
    _require_tools()
    forge = ThreadingHTTPServer(("127.0.0.1", 0), _Forge)
    bystander = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Counting)
    bystander.connections = 0  # type: ignore[attr-defined]
    for server in (forge, bystander):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    command = [
        PYTHON, str(scripts / "outer.py"), str(SRC), str(scripts / "inner.py"),
        str(forge.server_address[1]), str(bystander.server_address[1]), "1" if rootless else "0",
    ]  # fmt: skip
    if rootless:
        command = [
            "setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups",
            *command,
        ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=120, cwd="/tmp")
    finally:
        for server in (forge, bystander):
            server.shutdown()
            server.server_close()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = json.loads(done.stdout)
    assert report["returncode"] == 0, report["stderr"]
    inner = json.loads(report["inner"])
    assert inner["interfaces"] == ["lo"]
    assert inner["direct_forge"] == "ECONNREFUSED"  # the namespace's own loopback
    assert inner["direct_outside"] == "ENETUNREACH"
    assert inner["proxy_env"] is True
    assert inner["forge_status"].startswith("HTTP/1.") and " 200 " in inner["forge_status"]
    assert inner["forge_body"] == "forge saw /from-inside"
    assert inner["bystander_status"] == "HTTP/1.1 403 Forbidden"
    assert inner["stats_refused"] == 1
    assert report["allowed"] == {"connect": 0, "forward": 1}
    assert report["refused"] == {"port-not-allowed": 1}
    assert bystander.connections == 0  # type: ignore[attr-defined]
