"""Run the real `auto-review gateway` launcher as a subprocess, as root or as an unprivileged
user, and look at it from the host.

Settings (canary secrets included) go in an env file (0600, owned by the launching user),
never in the launcher's environment, as an operator is told to do. Rootless runs use a
system user created on demand, Debian's /usr/bin/python3 and a world-readable copy of
auto_review and the third-party modules the gateway imports (/root, holding the default
python3, is 0700): the launcher passes that PYTHONPATH on, and the bundle binds it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tests.support.rootless import (
    DEBIAN_PYTHON,
    as_user,
    make_user_tree,
    user_env,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE = REPO_ROOT / "tests" / "reference"
LAUNCHER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
STARTUP_TIMEOUT = 30.0

CANARY_WEBHOOK = "canary-webhook-secret-3f9d0c7a1b2e4f6a8c0d2e4f"
CANARY_TOKEN = "canary-forge-token-71c2e9a4b6d8f0a2c4e6a8b0"
CANARY_CI = "canary-ci-token-5a7c9e1b3d5f7a9c1e3b5d7f9a"
CANARY_LLM = "canary-llm-key-0b2d4f6a8c0e2a4c6e8a0c2e4a"
CANARIES = (CANARY_WEBHOOK, CANARY_TOKEN, CANARY_CI, CANARY_LLM)

# What the gateway imports, including what uvicorn loads by name at start-up.
GATEWAY_IMPORTS = (
    "auto_review.cli.main", "auto_review.cli.gateway", "auto_review.cli.ops",
    "auto_review.isolation.outer.launcher", "auto_review.isolation.inner.entry",
    "auto_review.isolation.outer.bundle", "auto_review.isolation.egress.proxy",
    "auto_review.isolation.egress.metrics", "auto_review.isolation.outer.host_probe",
    "auto_review.gateway.service", "auto_review.gateway.app", "auto_review.hosts.forgejo",
    "auto_review.hosts.github", "auto_review.oci.api", "auto_review.oci.landlock",
    "uvicorn.lifespan.on", "uvicorn.loops.uvloop", "uvicorn.protocols.http.httptools_impl",
    "jsonschema", "referencing", "referencing.jsonschema", "httpx", "certifi", "httpcore",
    "h11", "anyio", "anyio._backends._asyncio", "idna", "prometheus_client",
)  # fmt: skip


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the launcher e2e tests create users and containers: run as root")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- users


@dataclass(frozen=True)
class RunAs:
    """Who launches: root (uid 0, the default interpreter) or the unprivileged test user."""

    uid: int
    gid: int
    python: str
    runtime_dir: Path  # XDG_RUNTIME_DIR for the user; unused for root
    python_path: Path | None  # readable copy of the package for the user; None: the program's own
    program: Path | None = None  # the single file or an installed command, run instead of
    # `python -m auto_review...`
    program_env: Mapping[str, str] = field(default_factory=dict)  # e.g. AR_UNPACK_CACHE

    @property
    def rootless(self) -> bool:
        return self.uid != 0

    @property
    def launcher_runtime_dir(self) -> Path:
        return self.runtime_dir / "auto-review" if self.rootless else Path("/run/auto-review")

    def env(self) -> dict[str, str]:
        if self.rootless:
            assert self.python_path is not None or self.program is not None
            env = user_env(self.runtime_dir, self.python_path or self.runtime_dir,
                           path=LAUNCHER_PATH, write_bytecode=True)  # fmt: skip
            if self.python_path is None:
                del env["PYTHONPATH"]  # an installed command imports its environment only
        else:
            env = {"PATH": LAUNCHER_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        return {**env, **self.program_env}

    def popen_identity(self) -> dict[str, Any]:
        if not self.rootless:
            return {}
        return as_user(self.uid, self.gid)

    def own(self, path: Path) -> None:
        if self.rootless:
            os.chown(path, self.uid, self.gid)


def root_run_as() -> RunAs:
    return RunAs(0, 0, sys.executable, Path("/run"), None)


@dataclass
class UserSandbox:
    run_as: RunAs
    base: Path

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def make_user_sandbox() -> UserSandbox:
    require_root()
    tree = make_user_tree("launcher-rootless-", "runtime", GATEWAY_IMPORTS, preloaded="all",
                          byte_compile=True)  # fmt: skip
    run_as = RunAs(tree.user.pw_uid, tree.user.pw_gid, DEBIAN_PYTHON, tree.private_dir, tree.site)
    return UserSandbox(run_as, tree.base)


# ---------------------------------------------------------------- loopback services


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


class LoopbackHttp:
    """A small HTTP server on the host's 127.0.0.1 that records requests; GET /models
    answers like an OpenAI-compatible LLM server."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[Recorded] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                outer.requests.append(
                    Recorded("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                body = json.dumps({"object": "list", "data": [{"id": "test-model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                outer.connections += 1
                return super().get_request()

        self.server = Server((host, 0), Handler)
        # A client that connects and resets before the accept must not block the server.
        self.server.socket.setblocking(False)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- the launcher process


def gateway_settings(forge_url: str, llm_url: str, state_dir: Path, port: int) -> dict[str, str]:
    return {
        "AR_GATEWAY_BIND": f"127.0.0.1:{port}",
        "AR_STATE_DIR": str(state_dir),
        "AR_FORGEJO_URL": forge_url,
        "AR_FORGEJO_TOKEN": CANARY_TOKEN,
        "AR_WEBHOOK_SECRET": CANARY_WEBHOOK,
        "AR_CI_REVIEW_TOKEN": CANARY_CI,
        "AR_LLM_BASE_URL": llm_url,
        "AR_LLM_API_KEY": CANARY_LLM,
        "AR_POLL_INTERVAL_SECONDS": "0",
        "AR_READYZ_CACHE_SECONDS": "0",
        "AR_HTTP_TIMEOUT_SECONDS": "5",
        "AR_LOG_FORMAT": "json",
    }


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    run_as: RunAs
    base_url: str
    log_path: Path
    workdir: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def bundles(self) -> list[Path]:
        # The single file's bootloader runs the launcher as its child: either pid names it.
        pids = [self.pid, *children(self.pid)]
        directory = self.run_as.launcher_runtime_dir
        return sorted(path for pid in pids for path in directory.glob(f"bundle-{pid}-*"))

    def stop(self, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_launcher(
    workdir: Path,
    run_as: RunAs,
    settings: dict[str, str],
    *args: str,
    wait: bool = True,
    command_name: str = "gateway",
) -> Launcher:
    workdir.mkdir(parents=True, exist_ok=True)
    run_as.own(workdir)
    env_file = workdir / "gateway.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    run_as.own(env_file)
    log_path = workdir / f"launcher-{len(list(workdir.glob('launcher-*.log')))}.log"
    command = [run_as.python, "-m", "auto_review.cli.main"]
    if run_as.program is not None:
        command = [str(run_as.program)]
    argv = [*command, command_name, "--env-file", str(env_file), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=run_as.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            cwd="/", **run_as.popen_identity(),
        )  # fmt: skip
    launcher = Launcher(process, run_as, "http://" + settings["AR_GATEWAY_BIND"], log_path,
                        workdir, list(args))  # fmt: skip
    if wait:
        wait_healthy(launcher)
    return launcher


def wait_healthy(launcher: Launcher, timeout: float = STARTUP_TIMEOUT) -> float:
    """Seconds until /healthz answered 200; raises with the log when it never does."""
    started = time.monotonic()
    with launcher.client(timeout=1.0) as client:
        while time.monotonic() - started < timeout:
            if launcher.process.poll() is not None:
                raise RuntimeError(
                    f"launcher exited {launcher.process.returncode}; log:\n{launcher.logs()}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    launcher.stop()
    raise RuntimeError(f"gateway never became healthy; log:\n{launcher.logs()}")


# ---------------------------------------------------------------- host-side inspection


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    result, queue = [], [pid]
    while queue:
        for child in children(queue.pop()):
            result.append(child)
            queue.append(child)
    return result


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def inner_pid(launcher: Launcher, timeout: float = 10.0) -> int:
    """The inner gateway, found among the launcher's descendants by its command line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(launcher.pid):
            if "auto_review.isolation.inner.entry" in cmdline(pid):
                return pid
        time.sleep(0.05)
    raise AssertionError("no inner gateway process among the launcher's descendants")


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def namespaces_of(pid: int | str) -> dict[str, str]:
    names = ("user", "pid", "net", "mnt", "ipc", "uts", "cgroup")
    return {name: os.readlink(f"/proc/{pid}/ns/{name}") for name in names}


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def processes_holding(text: str) -> list[str]:
    """Every /proc/PID/{environ,cmdline} that contains ``text``, as 'PID/file'."""
    needle = text.encode()
    hits = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for name in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{entry}/{name}").read_bytes()
            except OSError:
                continue
            if needle in data:
                hits.append(f"{entry}/{name}")
    return hits


def files_holding(top: Path, text: str) -> list[str]:
    needle = text.encode()
    hits = []
    for directory, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            try:
                if os.path.isfile(path) and needle in Path(path).read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


# ---------------------------------------------------------------- requests


def signed_forgejo_delivery(delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    payload = REFERENCE / "forge" / "payloads" / "gitea_pull_request_opened.json"
    body = payload.read_bytes()
    signature = hmac.new(CANARY_WEBHOOK.encode(), body, hashlib.sha256).hexdigest()
    delivery = delivery or str(uuid.uuid4())
    return body, {
        "Content-Type": "application/json",
        "X-Forgejo-Event": "pull_request",
        "X-Forgejo-Delivery": delivery,
        "X-Forgejo-Signature": signature,
    }


def ci_request(pr: int, head_sha: str) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"host": "forgejo", "owner": "acme", "repo": "widgets", "pr": pr, "head_sha": head_sha}
    return body, {"Authorization": f"Bearer {CANARY_CI}"}


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total
