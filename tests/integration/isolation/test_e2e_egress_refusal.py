"""From inside the boundary, only the configured forge and LLM can be reached.

The gateway itself never asks for another host, so the launcher runs a probe in its
place: the same launcher code, the same bundle staging, proxy, settings pipe and runtime,
only ``LaunchOptions.inner_command`` differs. The probe reads the settings pipe, starts the
egress bridge as the gateway does, and tries: the allowed forge (through the proxy),
another service on the host's loopback (GET, CONNECT, by IP and by name), a configured
host on another port, a name on the internet, the host's own address, and direct
connections without the proxy. Its report goes to the state directory, readable here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

PROBE = r"""
import errno, hashlib, json, socket, sys
from auto_review.isolation.secrets_pipe import read_settings_pipe
from auto_review.isolation.egress.bridge import EgressBridgeThread, fetch_egress_stats
forge_port, other_port, host_ip, token_digest, other_host = sys.argv[1:6]
values = read_settings_pipe(4)
report = {"token_matches":
          hashlib.sha256(values["forgejo_token"].encode()).hexdigest() == token_digest}
bridge = EgressBridgeThread()
bridge.start()
port = int(bridge.proxy_url.rsplit(":", 1)[1])

def ask(raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")

def get(authority, path="/"):
    return ask(f"GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n"
               "Connection: close\r\n\r\n".encode())

def connect(authority):
    return ask(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())

def direct(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

report["allowed_get"] = get(f"127.0.0.1:{forge_port}", "/models")
report["other_loopback_get"] = get(f"{other_host}:{other_port}")
report["other_loopback_connect"] = connect(f"{other_host}:{other_port}")
report["loopback_other_port"] = connect(f"127.0.0.1:{other_port}")
report["other_loopback_by_name"] = connect(f"localhost:{other_port}")
report["forge_host_other_port"] = connect("127.0.0.1:22")
report["internet_name"] = connect("example.com:443")
report["host_address"] = connect(f"{host_ip}:{forge_port}")
report["direct_loopback"] = direct(other_host, other_port)
report["direct_host_address"] = direct(host_ip, other_port)
try:
    socket.getaddrinfo("example.com", 443)
    report["dns"] = "resolved"
except OSError as exc:
    report["dns"] = type(exc).__name__
stats = fetch_egress_stats()
report["allowed"], report["refused"] = stats.allowed, stats.refused
bridge.stop()
with open("/var/lib/auto_review/probe.json", "w") as out:
    json.dump(report, out)
"""

DRIVER = r"""
import sys
from pathlib import Path
from auto_review.config import load_settings
from auto_review.isolation.outer.launcher import LaunchOptions, launch
env_file, runtime, probe = sys.argv[1], sys.argv[2], sys.argv[3:]
settings = load_settings(env_file=Path(env_file), environ={})
options = LaunchOptions(oci_runtime=Path(runtime) if runtime else None, inner_command=probe)
sys.exit(launch(settings, options))
"""

CASES = {
    "root-embedded": (False, None),
    "root-runc": (False, "runc"),
    "rootless-embedded": (True, None),
}


def host_address() -> str:
    completed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    addresses = [a for a in completed.stdout.split() if "." in a and not a.startswith("127.")]
    return addresses[0] if addresses else "192.0.2.1"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    support.require_root()
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


def run_probe(
    workdir: Path, run_as: support.RunAs, runtime: str | None
) -> tuple[int, str, dict[str, Any], support.LoopbackHttp]:
    forge = support.LoopbackHttp()  # the configured "forge": answers every GET
    # Another service on the host's loopback. On 127.0.0.2: test suites running beside
    # this one probe "closed" ports of 127.0.0.1 and could land on it by chance.
    other = support.LoopbackHttp("127.0.0.2")
    try:
        workdir.mkdir(parents=True)
        run_as.own(workdir)
        settings = support.gateway_settings(
            forge.url, forge.url, workdir / "state", support.free_port()
        )
        env_file = workdir / "probe.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        env_file.chmod(0o600)
        run_as.own(env_file)
        digest = hashlib.sha256(support.CANARY_TOKEN.encode()).hexdigest()
        probe = [run_as.python, "-c", PROBE, str(forge.port), str(other.port), host_address(),
                 digest, other.host]  # fmt: skip
        completed = subprocess.run(
            [run_as.python, "-c", DRIVER, str(env_file), runtime or "", *probe],
            env=run_as.env(), capture_output=True, text=True, timeout=120, check=False,
            cwd="/", **run_as.popen_identity(),
        )  # fmt: skip
        report_path = workdir / "state" / "probe.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        return completed.returncode, completed.stderr, report, other
    finally:
        forge.close()
        other.close()


@pytest.mark.parametrize("name", list(CASES))
def test_only_the_configured_targets_are_reachable_from_inside(
    name: str, sandbox: support.UserSandbox, tmp_path: Path
) -> None:
    rootless, runtime = CASES[name]
    run_as = sandbox.run_as if rootless else support.root_run_as()
    workdir = (sandbox.base if rootless else tmp_path) / f"egress-{name}"
    status, stderr, report, other = run_probe(workdir, run_as, runtime)
    assert status == 0, stderr[-3000:]
    assert report["token_matches"] is True  # the settings pipe delivered the secret
    assert report["allowed_get"].startswith("HTTP/1.1 200"), report
    for attempt in ("other_loopback_get", "other_loopback_connect", "loopback_other_port",
                    "other_loopback_by_name", "forge_host_other_port", "internet_name",
                    "host_address"):  # fmt: skip
        assert report[attempt].startswith("HTTP/1.1 403"), (attempt, report[attempt])
    # Without the proxy nothing leaves: the container's loopback is its own, and it has
    # no route anywhere else; names do not resolve inside.
    assert report["direct_loopback"] == "ECONNREFUSED"
    assert report["direct_host_address"] == "ENETUNREACH"
    assert report["dns"] == "gaierror"
    assert report["allowed"]["forward"] >= 1, report["allowed"]
    assert sum(report["refused"].values()) >= 7, report["refused"]
    # The other host service never saw a connection.
    assert other.connections == 0
    assert other.requests == []
    for canary in support.CANARIES:
        assert canary not in stderr
