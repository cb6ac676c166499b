"""`auto-review gateway` end to end: the launcher runs the real gateway inside the container.

One scenario per (user, runtime): root with the embedded runtime, runc and crun; an
unprivileged user with the embedded runtime and runc (rootless crun 1.8 refuses this
host's hybrid cgroups). Each scenario starts the launcher with default isolation settings,
a loopback Forgejo and a loopback LLM server, and records what it sees:

- a signed webhook answered on the port the launcher bound and passed in;
- ``/readyz`` and ``POST /reviews/ci``, which make the inner gateway call the forge and
  the LLM: real outbound traffic, which can only leave through the egress proxy;
- ``/info``'s verified posture, checked against the inner process seen from the host
  (``/proc/PID/status``, ``/proc/PID/ns/*``);
- canary secrets searched for in every process's environment and command line, the
  bundle's files and the log;
- SIGTERM with a request in flight (it completes, exit 0, nothing left behind), then a
  second start on the same state directory (SQLite state survives).

The observations are made once per scenario and shared by the small tests below.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support
from tests.support.deploy_metrics import CONTAINER_ONLY_PREFIX, exported_names, names_read
from tests.support.fake_forgejo import FakeForgejo

HEAD = "1" * 40
BASE = "2" * 40
SCENARIOS = {
    "root-embedded": (False, None),
    "root-runc": (False, "runc"),
    "root-crun": (False, "crun"),
    "rootless-embedded": (True, None),
    "rootless-runc": (True, "runc"),
}
RUNTIME_LABEL = {None: "embedded", "runc": "runc", "crun": "crun"}


class Scenarios:
    """Runs each scenario once per session, on demand."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.results: dict[str, dict[str, Any]] = {}
        self._sandbox: support.UserSandbox | None = None

    def run_as(self, rootless: bool) -> support.RunAs:
        if not rootless:
            return support.root_run_as()
        if self._sandbox is None:
            self._sandbox = support.make_user_sandbox()
        return self._sandbox.run_as

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.results:
            rootless, runtime = SCENARIOS[name]
            run_as = self.run_as(rootless)
            # The unprivileged user cannot reach pytest's 0700 temporary directory.
            top = self._sandbox.base if rootless and self._sandbox else self.tmp
            self.results[name] = run_scenario(top / name, run_as, runtime)
        return self.results[name]

    def cleanup(self) -> None:
        if self._sandbox is not None:
            self._sandbox.cleanup()


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenarios]:
    support.require_root()
    base = tmp_path_factory.mktemp("launcher-e2e")
    runs = Scenarios(base)
    yield runs
    runs.cleanup()


def run_scenario(workdir: Path, run_as: support.RunAs, runtime: str | None) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    run_as.own(workdir)
    state_dir = workdir / "state"
    forge = FakeForgejo(support.CANARY_TOKEN).start()
    llm = support.LoopbackHttp()
    forge.add_pull_request("acme", "widgets", 3, head_sha=HEAD, base_sha=BASE)
    port = support.free_port()
    settings = support.gateway_settings(forge.url, llm.url, state_dir, port)
    args = ["--oci-runtime", runtime] if runtime else []
    seen: dict[str, Any] = {
        "state_dir": str(state_dir),
        "rootless": run_as.rootless,
        "runtime": RUNTIME_LABEL[runtime],
        "launcher_uid": run_as.uid,
    }
    try:
        started = time.monotonic()
        launcher = support.start_launcher(workdir, run_as, settings, *args)
        seen["startup_seconds"] = time.monotonic() - started
        try:
            observe_running(launcher, seen)
            seen["forge_paths"] = [(e.method, e.path) for e in forge.exchanges]
            seen["forge_tokens"] = {e.headers.get("authorization", "") for e in forge.exchanges}
            seen["llm_requests"] = [(r.path, r.headers.get("authorization")) for r in llm.requests]
            observe_graceful_stop(launcher, forge, seen)
        finally:
            launcher.stop()
        seen["log"] = launcher.logs()
        observe_restart(workdir, run_as, settings, args, seen)
    finally:
        forge.stop()
        llm.close()
    return seen


def observe_running(launcher: support.Launcher, seen: dict[str, Any]) -> None:
    body, headers = support.signed_forgejo_delivery("e2e-delivery-1")
    with launcher.client() as client:
        answer = client.post("/webhooks/forgejo", content=body, headers=headers)
        seen["webhook"] = (answer.status_code, answer.json())
        ready = client.get("/readyz")
        seen["readyz"] = (ready.status_code, ready.json())
        ci_body, ci_headers = support.ci_request(3, HEAD)
        ci = client.post("/reviews/ci", json=ci_body, headers=ci_headers)
        seen["ci"] = (ci.status_code, ci.json())
        seen["info"] = client.get("/info").json()
        seen["metrics"] = client.get("/metrics").text
    pid = support.inner_pid(launcher)
    seen["inner_pid"] = pid
    seen["inner_status"] = support.proc_status(pid)
    seen["inner_ns"] = support.namespaces_of(pid)
    seen["host_ns"] = support.namespaces_of("self")
    seen["inner_parent"] = int(support.proc_status(pid)["PPid"])
    seen["inner_uid_map"] = Path(f"/proc/{pid}/uid_map").read_text().split()
    seen["inner_cgroups"] = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    # /proc/PID/cgroup read from inside the inner's cgroup namespace: paths from its root
    inside = subprocess.run(
        ["nsenter", "-t", str(pid), "-C", "cat", f"/proc/{pid}/cgroup"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    seen["inner_cgroups_inside"] = inside.stdout.splitlines()
    seen["launcher_pid"] = launcher.pid
    seen["bundles_running"] = launcher.bundles()
    bundle = launcher.bundles()[0]
    seen["bundle_mode"] = bundle.stat().st_mode & 0o777
    seen["bundle_file_modes"] = {
        str(path.relative_to(bundle)): path.stat().st_mode & 0o777
        for path in bundle.rglob("*")
        if path.is_file() and "rootfs" not in path.parts
    }
    seen["canaries_in_proc"] = {c: support.processes_holding(c) for c in support.CANARIES}
    seen["canaries_in_bundle"] = {c: support.files_holding(bundle, c) for c in support.CANARIES}
    seen["descendants"] = support.descendants(launcher.pid)


def observe_graceful_stop(
    launcher: support.Launcher, forge: FakeForgejo, seen: dict[str, Any]
) -> None:
    """SIGTERM while /readyz waits on a slow forge: the request still gets its answer."""
    forge.delay(1.5, path_contains="/api/v1/user")
    answer: dict[str, Any] = {}

    def slow_request() -> None:
        with launcher.client() as client:
            response = client.get("/readyz")
            answer["status"] = response.status_code

    pings = len(forge.requests_to("/api/v1/user"))
    thread = threading.Thread(target=slow_request)
    thread.start()
    # The forge has the readiness ping (and holds it 1.5 s): the request is in flight.
    assert len(forge.wait_for_requests("/api/v1/user", pings + 1)) > pings
    descendants = support.descendants(launcher.pid)
    launcher.process.send_signal(signal.SIGTERM)
    seen["stop_status"] = launcher.process.wait(timeout=40)
    thread.join(timeout=40)
    seen["in_flight_answer"] = answer.get("status")
    seen["left_processes"] = [pid for pid in descendants if support.pid_alive(pid)]
    seen["bundles_after_stop"] = launcher.bundles()
    seen["egress_sockets_after_stop"] = list(
        launcher.run_as.launcher_runtime_dir.glob(f"egress-*-{launcher.port}.sock")
    )
    mounts = Path("/proc/self/mountinfo").read_text()
    seen["mounts_after_stop"] = [
        line for line in mounts.splitlines() if str(launcher.run_as.launcher_runtime_dir) in line
    ]


def observe_restart(
    workdir: Path, run_as: support.RunAs, settings: dict[str, str], args: list[str],
    seen: dict[str, Any],
) -> None:  # fmt: skip
    again = support.start_launcher(workdir, run_as, settings, *args)
    try:
        body, headers = support.signed_forgejo_delivery("e2e-delivery-1")
        with again.client() as client:
            answer = client.post("/webhooks/forgejo", content=body, headers=headers)
            seen["redelivery"] = (answer.status_code, answer.json())
    finally:
        seen["restart_stop_status"] = again.stop()
    seen["log"] += again.logs()


scenario_names = pytest.mark.parametrize("name", list(SCENARIOS))


@scenario_names
def test_signed_webhook_is_accepted_through_the_passed_socket(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert seen["webhook"] == (202, {"status": "accepted", "jobs": 1})


@scenario_names
def test_forge_and_llm_are_reached_through_the_egress_proxy(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert seen["readyz"][0] == 200, seen["readyz"]
    assert seen["readyz"][1]["checks"] == {"forgejo": "ok", "llm": "ok"}
    assert seen["ci"] == (202, {"status": "accepted", "jobs": 1})
    assert ("GET", "/api/v1/user") in seen["forge_paths"]
    assert ("GET", "/api/v1/repos/acme/widgets/pulls/3") in seen["forge_paths"]
    assert seen["forge_tokens"] == {f"token {support.CANARY_TOKEN}"}
    assert ("/models", f"Bearer {support.CANARY_LLM}") in seen["llm_requests"]
    # The proxy counted what it let through, and the gateway's /metrics shows it.
    metrics = seen["metrics"]
    assert support.metric_value(metrics, "auto_review_egress_proxy_up") == 1
    allowed = support.metric_value(metrics, "auto_review_egress_allowed_total")
    assert allowed >= 3, [line for line in metrics.splitlines() if "egress" in line]


@scenario_names
def test_deploy_reads_only_egress_series_the_container_exports(scenarios: Scenarios, name: str):
    """The alert rules and the dashboard in deploy/ read egress series that only the inner
    gateway exports; they must be in this real scrape (the rest: integration/deploy/)."""
    seen = scenarios.get(name)
    read = {n for n in names_read() if n.startswith(CONTAINER_ONLY_PREFIX)}
    assert "auto_review_egress_refused_total" in read
    assert read - exported_names(seen["metrics"]) == set()


@scenario_names
def test_info_reports_a_verified_posture(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    posture = seen["info"]["runtime_isolation"]
    assert posture["mode"] == "oci"
    assert posture["runtime"] == seen["runtime"]
    assert posture["verified"] is True
    assert posture["failed"] == []
    for check in ("pid-1", "capabilities", "no-new-privileges", "seccomp", "network",
                  "namespaces", "host-paths", "read-only-outside-state"):  # fmt: skip
        assert posture["checks"][check]["ok"] is True, (check, posture["checks"][check])
    if seen["runtime"] == "embedded":
        assert posture["checks"]["landlock"]["ok"] is True  # the annotation is ours
    if seen["rootless"]:
        assert "cgroup-limits" in posture["degraded"]
    else:
        assert posture["checks"]["cgroup-limits"]["ok"] is True
    # The state directory as the operator named it, not its mount point in the container.
    assert seen["info"]["settings"]["state_dir"] == seen["state_dir"]


@scenario_names
def test_host_sees_the_same_boundary_independently(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    status = seen["inner_status"]
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, (field, status[field])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert status["NSpid"].split()[-1] == "1"  # pid 1 of its own pid namespace
    for kind, ident in seen["inner_ns"].items():
        assert ident != seen["host_ns"][kind], kind
    uid_map = seen["inner_uid_map"]
    assert uid_map == ["0", str(seen["launcher_uid"]), "1"]  # only the launcher's own uid


@pytest.mark.parametrize("name", ["root-embedded", "rootless-embedded"])
def test_embedded_init_is_the_launchers_own_child(scenarios: Scenarios, name: str):
    """CLONE_PARENT: the parent-death signal of the inner gateway points at the launcher."""
    seen = scenarios.get(name)
    assert seen["inner_parent"] == seen["launcher_pid"]
    assert seen["descendants"] == [seen["inner_pid"]]


def test_embedded_root_init_sits_in_its_cgroups_and_is_their_namespace_root(
    scenarios: Scenarios,
):
    """Every hierarchy, v2 included, holds the init in the container's own cgroup (joined
    by the runtime's children themselves), and its cgroup namespace is rooted there."""
    seen = scenarios.get("root-embedded")
    container = seen["bundles_running"][0].name.replace("bundle-", "auto-review-", 1)
    lines = seen["inner_cgroups"]
    assert any(line.startswith("0::") for line in lines), lines
    for line in lines:
        assert line.split(":", 2)[2].endswith("/" + container), (line, container)
    assert seen["inner_cgroups_inside"], "nsenter read nothing"
    assert [line.split(":", 2)[2] for line in seen["inner_cgroups_inside"]] == ["/"] * len(lines)


@scenario_names
def test_bundle_is_private_and_holds_no_secret(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert len(seen["bundles_running"]) == 1
    assert seen["bundle_mode"] == 0o700
    assert seen["bundle_file_modes"], "the bundle has files"
    assert set(seen["bundle_file_modes"].values()) == {0o600}, seen["bundle_file_modes"]
    assert seen["canaries_in_bundle"] == {c: [] for c in support.CANARIES}


@scenario_names
def test_no_process_shows_a_secret_in_environ_or_cmdline(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert seen["canaries_in_proc"] == {c: [] for c in support.CANARIES}


@scenario_names
def test_logs_hold_no_secret(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert "runtime isolation verified" in seen["log"]
    for canary in support.CANARIES:
        assert canary not in seen["log"]


@scenario_names
def test_sigterm_finishes_in_flight_work_and_leaves_nothing(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert seen["in_flight_answer"] == 200
    assert seen["stop_status"] == 0
    assert seen["left_processes"] == []
    assert seen["bundles_after_stop"] == []
    assert seen["egress_sockets_after_stop"] == []
    assert seen["mounts_after_stop"] == []


@scenario_names
def test_state_survives_a_restart(scenarios: Scenarios, name: str):
    seen = scenarios.get(name)
    assert seen["redelivery"] == (200, {"status": "duplicate", "duplicate": "delivery"})
    assert seen["restart_stop_status"] == 0
