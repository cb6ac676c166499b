"""The lifecycle commands under runc, crun and the embedded CLI, on the same bundle.

Where the runtime spec is clear the embedded runtime follows it; where runc or crun
deviate, the test pins down what they do (docs/OCI-CONFORMANCE.md lists the deviations):
- `delete` of a created container without --force: the spec says it MUST fail; runc and
  crun delete it.
- the state hooks get on stdin: runc gives poststart "created", crun gives every create
  hook "created" and startContainer "starting".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HIDE_CGROUP2_SCRIPT, require_root, require_tool
from test_lifecycle import SPEC_HOOK_STATUS, container_config, make_bundle, validate_state
from tests.support.waiting import wait_until

RUNTIMES = ("runc", "crun", "embedded")
REPO_SRC = Path(__file__).resolve().parents[3] / "src"
HOOK_PHASES = tuple(SPEC_HOOK_STATUS)
# What the references give each hook on this machine (runc 1.1.5, crun 1.8.1).
REFERENCE_HOOK_STATUS = {
    "runc": {**SPEC_HOOK_STATUS, "poststart": "created"},
    "crun": {**SPEC_HOOK_STATUS, "prestart": "created", "createRuntime": "created",
             "createContainer": "created", "startContainer": "starting"},
}  # fmt: skip
# runc and the embedded runtime also take lower-case names; crun 1.8.1 does not (it sends
# signal 0 for "usr1" and succeeds), so that form is not asked of crun.
KILL_CASES = [(runtime, form) for runtime in RUNTIMES for form in ("USR1", "SIGUSR1", "usr1", "10")
              if (runtime, form) != ("crun", "usr1")]
WAIT_SECONDS = 20


class Runtime:
    """One runtime's CLI with its own state root; output goes through files (a created
    container keeps the caller's stdout and stderr open)."""

    def __init__(self, name: str, state: Path) -> None:
        self.name = name
        self.state = state

    def argv(self, *args: str) -> list[str]:
        if self.name == "embedded":
            return [sys.executable, "-m", "auto_review.oci", "--root", str(self.state), *args]
        command = [self.name, "--root", str(self.state), *args]
        if self.name == "crun":  # crun 1.8.1 refuses hybrid cgroups: hide cgroup2 (conftest)
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    HIDE_CGROUP2_SCRIPT, "sh", *command]  # fmt: skip
        return command

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO_SRC))
        # stdin is an empty file, never /dev/null: crun 1.8.1 gives the container's stdio to
        # the container's root, which with a remapped root would chown the host's /dev/null
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile("w+") as out, \
                tempfile.TemporaryFile("w+") as err:
            completed = subprocess.run(self.argv(*args), stdin=stdin, stdout=out,
                                       stderr=err, env=env, timeout=60, check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, completed.returncode, out.read(),
                                               err.read())

    def state_of(self, container_id: str) -> dict[str, Any]:
        completed = self("state", container_id)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[dict[str, Runtime]]:
    require_root()
    require_tool("runc")
    require_tool("crun")
    made = {name: Runtime(name, tmp_path / f"state-{name}") for name in RUNTIMES}
    yield made
    for runtime in made.values():
        if runtime.state.is_dir():
            for entry in runtime.state.iterdir():
                if entry.is_dir() and not entry.name.startswith("."):
                    runtime("delete", "--force", entry.name)


def wait_for(predicate: Any, what: str) -> None:
    wait_until(predicate, timeout=WAIT_SECONDS, what=what)


def _hooked_bundle(tmp_path: Path, runtime: str) -> tuple[Path, Path]:
    logs = tmp_path / f"logs-{runtime}"
    logs.mkdir(mode=0o755)
    config = container_config(["/bin/sleep", "30"])
    config["mounts"].append({"destination": "/logs", "type": "bind", "source": str(logs),
                             "options": ["bind"]})
    script = 'read -r state; echo "$0 $state" >> "$1"'
    config["hooks"] = {
        phase: [{"path": "/bin/sh", "args": ["/bin/sh", "-c", script, phase,
                                             "/logs/hooks.log" if phase == "startContainer"
                                             else str(logs / "hooks.log")]}]
        for phase in HOOK_PHASES
    }  # fmt: skip
    return make_bundle(tmp_path, config), logs / "hooks.log"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hooks_get_the_state_with_the_status_of_their_phase(
    tmp_path: Path, runtimes: dict[str, Runtime], runtime: str
):
    run = runtimes[runtime]
    bundle, log = _hooked_bundle(tmp_path, runtime)
    (bundle / "rootfs" / "logs").mkdir()
    assert run("create", "--bundle", str(bundle), "hooked").returncode == 0
    assert run("start", "hooked").returncode == 0
    assert run("delete", "--force", "hooked").returncode == 0
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    statuses = {phase: json.loads(state)["status"] for phase, state in entries}
    if runtime != "embedded":
        # runc's poststart races its startContainer hook: only the statuses are compared
        assert statuses == REFERENCE_HOOK_STATUS[runtime]
        return
    assert [phase for phase, _ in entries] == list(HOOK_PHASES)
    assert statuses == SPEC_HOOK_STATUS
    for _, state in entries:
        validate_state(json.loads(state))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_create_writes_the_pid_file_and_state_reports_stopped(
    tmp_path: Path, runtimes: dict[str, Runtime], runtime: str
):
    run = runtimes[runtime]
    bundle = make_bundle(tmp_path, container_config(["/bin/sh", "-c", "exit 0"]))
    pid_file = tmp_path / "init.pid"
    assert run("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "p").returncode == 0
    created = run.state_of("p")
    assert created["status"] == "created"
    assert int(pid_file.read_text()) == created["pid"]
    assert run("start", "p").returncode == 0
    wait_for(lambda: run.state_of("p")["status"] == "stopped", "the container to stop")
    if runtime == "embedded":
        assert run.state_of("p")["pid"] == 0
        validate_state(run.state_of("p"))
    assert run("delete", "p").returncode == 0
    assert run("state", "p").returncode != 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_delete_of_a_created_container_without_force(
    tmp_path: Path, runtimes: dict[str, Runtime], runtime: str
):
    run = runtimes[runtime]
    bundle = make_bundle(tmp_path, container_config(["/bin/true"]))
    assert run("create", "--bundle", str(bundle), "fresh").returncode == 0
    refused = run("delete", "fresh")
    if runtime == "embedded":  # the spec: MUST generate an error
        assert refused.returncode == 1
        assert "that is not stopped: created (use --force)" in refused.stderr
        assert run.state_of("fresh")["status"] == "created"
        assert run("delete", "--force", "fresh").returncode == 0
    else:  # runc and crun deviate: they delete it
        assert refused.returncode == 0, refused.stderr
    assert run("state", "fresh").returncode != 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_delete_force_of_a_running_container(
    tmp_path: Path, runtimes: dict[str, Runtime], runtime: str
):
    run = runtimes[runtime]
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))
    assert run("create", "--bundle", str(bundle), "busy").returncode == 0
    assert run("start", "busy").returncode == 0
    pid = run.state_of("busy")["pid"]
    assert run.state_of("busy")["status"] == "running"
    assert run("delete", "busy").returncode != 0  # not stopped: every runtime refuses
    assert run("delete", "--force", "busy").returncode == 0
    assert run("state", "busy").returncode != 0
    wait_for(lambda: _gone(pid), f"pid {pid} to exit")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize(("runtime", "form"), KILL_CASES)
def test_kill_accepts_each_signal_form(
    tmp_path: Path, runtimes: dict[str, Runtime], runtime: str, form: str
):
    run = runtimes[runtime]
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    script = ("trap 'echo USR1 > /logs/got; exit 0' USR1; trap 'echo TERM > /logs/got; exit 0' "
              "TERM; echo ready > /logs/ready; while :; do sleep 1 & wait $!; done")
    config = container_config(["/bin/sh", "-c", script])
    config["mounts"].append({"destination": "/logs", "type": "bind", "source": str(logs),
                             "options": ["bind"]})
    bundle = make_bundle(tmp_path, config)
    (bundle / "rootfs" / "logs").mkdir()
    assert run("create", "--bundle", str(bundle), "sig").returncode == 0
    assert run("start", "sig").returncode == 0
    wait_for((logs / "ready").exists, "the container's signal handlers")
    killed = run("kill", "sig", form)
    assert killed.returncode == 0, killed.stderr
    wait_for((logs / "got").exists, f"the container to get {form}")
    assert (logs / "got").read_text() == "USR1\n"
    wait_for(lambda: run.state_of("sig")["status"] == "stopped", "the container to stop")
    assert run("delete", "sig").returncode == 0


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every uid may traverse (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="oci-remapped-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_create_and_start_with_a_remapped_root(
    open_dir: Path, runtimes: dict[str, Runtime], runtime: str
):
    """Container root is host uid 1000: its init cannot enter the runtime's root-only state
    directory, which must not matter."""
    run = runtimes[runtime]
    tmp_path = open_dir
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o777)  # written by the container's root, host uid 1000
    config = container_config(["/bin/sh", "-c", "id -u > /logs/uid; cat /proc/self/uid_map "
                                                "> /logs/map; exec sleep 60"])
    config["mounts"].append({"destination": "/logs", "type": "bind", "source": str(logs),
                             "options": ["bind"]})
    config["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": 1000, "size": 2000}]
    config["linux"]["uidMappings"] = mapping
    config["linux"]["gidMappings"] = mapping
    bundle = make_bundle(tmp_path, config)
    (bundle / "rootfs" / "logs").mkdir()
    created = run("create", "--bundle", str(bundle), "remapped")
    assert created.returncode == 0, created.stderr
    assert run.state_of("remapped")["status"] == "created"
    assert run("start", "remapped").returncode == 0
    wait_for((logs / "map").exists, "the container's output")
    wait_for(lambda: (logs / "map").read_text().strip() != "", "the uid map")
    assert (logs / "uid").read_text() == "0\n"
    assert (logs / "map").read_text().split() == ["0", "1000", "2000"]
    assert run.state_of("remapped")["status"] == "running"
    assert run("delete", "--force", "remapped").returncode == 0
    assert os.stat("/dev/null").st_uid == 0, "a runtime gave the host's /dev/null away"
