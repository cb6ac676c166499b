"""Fixtures for the OCI integration tests: runtimes to run bundles with, as root or as an
unprivileged user, a loopback TCP server on the host, and a cache of probe runs.

Runners, all used the same way (`runner.run(bundle, container_id) -> RunResult`):
- runc: `runc --root STATE run --bundle B ID`.
- crun: Debian's crun 1.8.1 refuses hybrid cgroups, so as root it runs in a private mount
  namespace where the cgroup2 mount at /sys/fs/cgroup/unified is unmounted (the host's
  mounts are untouched). Rootless it cannot hide that mount and refuses to start.
- embedded-cli: `python -m auto_review.cli.main oci --root STATE run --bundle B ID`.
- embedded-api: `auto_review.oci.api.run(...)` in this pytest process (root), or in a
  `/usr/bin/python3` process of the unprivileged user (rootless).

Rootless runs use a system user created on demand (`useradd`, idempotent). /root is 0700
and the default python3 lives under it, so the embedded runtime runs as that user under
Debian's /usr/bin/python3 with a readable copy of src/auto_review and of the third-party
modules it imports.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# bundles.py sits next to this file; the probe's report readers live with the probe.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "oci_probe"))

import bundles
from tests.support.rootless import DEBIAN_PYTHON, as_user, make_user_tree, user_env

RUN_TIMEOUT = 60
HIDE_CGROUP2_SCRIPT = (
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi;"
    ' exec "$@"'
)
API_RUN_SNIPPET = (
    "import sys\n"
    "from auto_review.oci import api\n"
    "sys.exit(api.run(sys.argv[1], sys.argv[2], root=sys.argv[3], forward_signals=False))\n"
)
_container_numbers = itertools.count(1)
# runc and crun name the container's cgroups after its id, in the host's hierarchy: ids
# carry a per-session token so concurrent test sessions never share a cgroup.
_SESSION_TOKEN = secrets.token_hex(3)


@dataclass
class RunResult:
    runner: str
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> dict[str, Any]:
        """The probe's JSON report; fails the test with the runtime's stderr if there is none."""
        assert self.returncode == 0, (
            f"{self.runner} exited {self.returncode}; stderr:\n{self.stderr.strip()}"
        )
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"{self.runner} printed no probe report; stdout={self.stdout[:500]!r}"
        return json.loads(lines[-1])


@dataclass(frozen=True)
class UnprivilegedUser:
    name: str
    uid: int
    gid: int
    runtime_dir: Path  # XDG_RUNTIME_DIR: 0700, owned by the user
    python_path: Path  # readable copy of auto_review and its third-party imports

    def env(self) -> dict[str, str]:
        return user_env(self.runtime_dir, self.python_path, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass
class Runner:
    """Runs a bundle in the foreground and captures the container's stdout and stderr."""

    name: str
    state_root: Path
    command: Callable[[Path, Path, str], list[str]] | None  # (state, bundle, id) -> argv
    user: UnprivilegedUser | None = None
    in_process: bool = False

    @property
    def rootless(self) -> bool:
        return self.user is not None

    def run(self, bundle: bundles.Bundle, container_id: str) -> RunResult:
        if self.in_process:
            return self._run_api_in_process(bundle.path, container_id)
        assert self.command is not None
        argv = self.command(self.state_root, bundle.path, container_id)
        return self._run_command(argv)

    def _run_command(self, argv: list[str]) -> RunResult:
        with tempfile.TemporaryDirectory(prefix="oci-run-") as scratch:
            # stdin is an empty file, not /dev/null: crun 1.8.1 fchowns the container's
            # stdio to the container's root, which with a remapped root would give the
            # host's /dev/null to an unprivileged uid.
            in_path = Path(scratch, "in")
            out_path, err_path = Path(scratch, "out"), Path(scratch, "err")
            for path in (in_path, out_path, err_path):
                path.touch()
            if self.user is not None:
                # runc fchowns the container's stdio to the container's root: give it files
                # the unprivileged user owns, not pipes this root process created.
                os.chmod(scratch, 0o755)  # noqa: S103 - the test user writes in it
                for path in (in_path, out_path, err_path):
                    os.chown(path, self.user.uid, self.user.gid)
            with open(in_path) as stdin, open(out_path, "w") as out, open(err_path, "w") as err:
                completed = subprocess.run(
                    argv,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    timeout=RUN_TIMEOUT,
                    cwd="/",
                    **self._identity(),
                )
            return RunResult(
                self.name, completed.returncode, out_path.read_text(), err_path.read_text()
            )

    def _identity(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {**as_user(self.user.uid, self.user.gid), "env": self.user.env()}

    def _run_api_in_process(self, bundle_path: Path, container_id: str) -> RunResult:
        from auto_review.oci import api
        from auto_review.oci.errors import OciError

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                with tempfile.TemporaryFile() as stdin:  # as _run_command's stdin
                    returncode = api.run(
                        container_id,
                        bundle_path,
                        root=self.state_root,
                        stdio=(stdin.fileno(), out.fileno(), err.fileno()),
                        forward_signals=False,
                    )
            except OciError as error:
                # The API reports a refused or failed setup by raising; the CLI by exit 1.
                return RunResult(self.name, 1, "", f"{type(error).__name__}: {error}")
            out.seek(0)
            err.seek(0)
            return RunResult(self.name, returncode, out.read(), err.read())


def runc_command(state: Path, bundle: Path, container_id: str) -> list[str]:
    return ["runc", "--root", str(state), "run", "--bundle", str(bundle), container_id]


def crun_command(state: Path, bundle: Path, container_id: str) -> list[str]:
    crun = ["crun", "--root", str(state), "run", "--bundle", str(bundle), container_id]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_CGROUP2_SCRIPT,
            "sh", *crun]  # fmt: skip


def crun_rootless_command(state: Path, bundle: Path, container_id: str) -> list[str]:
    # An unprivileged user cannot unmount the cgroup2 mount, so crun sees the host's layout.
    return ["crun", "--root", str(state), "run", "--bundle", str(bundle), container_id]


def embedded_cli_command(python: str) -> Callable[[Path, Path, str], list[str]]:
    def command(state: Path, bundle: Path, container_id: str) -> list[str]:
        return [python, "-m", "auto_review.cli.main", "oci", "--root", str(state),
                "run", "--bundle", str(bundle), container_id]  # fmt: skip

    return command


def embedded_api_command(state: Path, bundle: Path, container_id: str) -> list[str]:
    return [DEBIAN_PYTHON, "-c", API_RUN_SNIPPET, container_id, str(bundle), str(state)]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: the OCI conformance tests need Debian's runc and crun "
            "(apt-get install -y runc crun)"
        )
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the OCI integration tests create containers and users: run as root")


# ---------------------------------------------------------------- unprivileged user


THIRD_PARTY_IMPORTS = ("jsonschema", "referencing", "referencing.jsonschema")


@pytest.fixture(scope="session")
def test_user() -> Iterator[UnprivilegedUser]:
    require_root()
    # The OCI contract lets the runtime use jsonschema and referencing; Debian's python3 has
    # neither (and an older typing_extensions), so the site holds what importing them pulls in.
    tree = make_user_tree("oci-rootless-", "runtime", THIRD_PARTY_IMPORTS, preloaded="none")
    entry = tree.user
    yield UnprivilegedUser(entry.pw_name, entry.pw_uid, entry.pw_gid, tree.private_dir, tree.site)
    tree.remove()


# ---------------------------------------------------------------- runners

ROOT_RUNNERS = ("runc", "crun", "embedded-cli", "embedded-api")
ROOTLESS_RUNNERS = ("runc", "embedded-cli", "embedded-api")
REFERENCE_RUNNERS = ("runc", "crun")
EMBEDDED_RUNNERS = ("embedded-cli", "embedded-api")


@pytest.fixture(scope="session")
def root_runners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Runner]:
    require_root()
    require_tool("runc")
    require_tool("crun")
    state = tmp_path_factory.mktemp("oci-state")
    return {
        "runc": Runner("runc", state / "runc", runc_command),
        "crun": Runner("crun", state / "crun", crun_command),
        "embedded-cli": Runner(
            "embedded-cli", state / "embedded", embedded_cli_command(sys.executable)
        ),
        "embedded-api": Runner("embedded-api", state / "embedded-api", None, in_process=True),
    }


@pytest.fixture(scope="session")
def rootless_runners(test_user: UnprivilegedUser) -> dict[str, Runner]:
    require_tool("runc")
    state = test_user.runtime_dir
    return {
        "runc": Runner("runc", state / "runc", runc_command, user=test_user),
        "crun": Runner("crun", state / "crun", crun_rootless_command, user=test_user),
        "embedded-cli": Runner(
            "embedded-cli", state / "embedded", embedded_cli_command(DEBIAN_PYTHON), test_user
        ),
        "embedded-api": Runner(
            "embedded-api", state / "embedded-api", embedded_api_command, user=test_user
        ),
    }


# ---------------------------------------------------------------- host loopback server


@dataclass
class LoopbackServer:
    """A TCP server on the host's 127.0.0.1 that records what each connection sent."""

    port: int
    received: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    server = LoopbackServer(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _peer = listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2.0)
                try:
                    server.received.append(connection.recv(256))
                except OSError:
                    server.received.append(b"")

    thread = threading.Thread(target=serve, name="oci-loopback-server", daemon=True)
    thread.start()
    yield server
    stop.set()
    listener.close()
    thread.join(timeout=5)


# ---------------------------------------------------------------- probe runs, cached

HostFacts = dict[str, Any]


def host_facts() -> HostFacts:
    """What the host process sees, for "differs from the host" comparisons."""
    namespaces = {}
    for name in sorted(os.listdir("/proc/self/ns")):
        if not name.endswith("_for_children"):
            namespaces[name] = os.readlink(f"/proc/self/ns/{name}")
    return {
        "namespaces": namespaces,
        "hostname": socket.gethostname(),
        "interfaces": sorted(name for _index, name in socket.if_nameindex()),
        "bounding": bundles.host_bounding_capabilities(),
    }


class ProbeRuns:
    """Runs each (scenario, runner) pair once per session; tests share the reports."""

    def __init__(
        self,
        root_runners: Callable[[], dict[str, Runner]],
        rootless_runners: Callable[[], dict[str, Runner]],
        test_user: Callable[[], UnprivilegedUser],
        server: LoopbackServer,
    ) -> None:
        self._root_runners = root_runners
        self._rootless_runners = rootless_runners
        self._test_user = test_user
        self.server = server
        self._results: dict[tuple[str, str], RunResult] = {}
        self._bundles: dict[str, bundles.Bundle] = {}

    def bundle(self, scenario: bundles.Scenario) -> bundles.Bundle:
        if scenario.name not in self._bundles:
            owner = None
            if scenario.rootless:
                user = self._test_user()
                config = scenario.config(self.server.address, user.uid, user.gid)
                owner = (user.uid, user.gid)
            else:
                config = scenario.config(self.server.address, 0, 0)
            self._bundles[scenario.name] = bundles.make_bundle(config, owner=owner)
        return self._bundles[scenario.name]

    def runner(self, scenario: bundles.Scenario, runner_name: str) -> Runner:
        runners = self._rootless_runners() if scenario.rootless else self._root_runners()
        return runners[runner_name]

    def result(self, scenario: bundles.Scenario, runner_name: str) -> RunResult:
        key = (scenario.name, runner_name)
        if key not in self._results:
            runner = self.runner(scenario, runner_name)
            number = next(_container_numbers)
            container_id = f"{scenario.name}-{runner_name}-{_SESSION_TOKEN}-{number}"
            self._results[key] = runner.run(self.bundle(scenario), container_id)
        return self._results[key]

    def report(self, scenario: bundles.Scenario, runner_name: str) -> dict[str, Any]:
        return self.result(scenario, runner_name).report()

    def cleanup(self) -> None:
        for bundle in self._bundles.values():
            bundle.remove()


@pytest.fixture(scope="session")
def host() -> HostFacts:
    return host_facts()


@pytest.fixture(scope="session")
def probe_runs(
    request: pytest.FixtureRequest, loopback_server: LoopbackServer
) -> Iterator[ProbeRuns]:
    require_root()
    runs = ProbeRuns(
        lambda: request.getfixturevalue("root_runners"),
        lambda: request.getfixturevalue("rootless_runners"),
        lambda: request.getfixturevalue("test_user"),
        loopback_server,
    )
    yield runs
    runs.cleanup()
