"""Fail-closed: each set-up step made to fail, as root and as an unprivileged user.

Every case checks the exit status, the one-line diagnostic naming the step, errno and
path, and that nothing is left behind: no state directory, no process (the runtime's
forks inherit a marker in their environment), no mount on the host, no cgroup.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lifecycle import cli, container_config, make_bundle, processes_with_marker

DEBIAN_PYTHON = "/usr/bin/python3"
# what jsonschema needs at run time; the test user's copy of the package lacks them
SCHEMA_MODULES = ("jsonschema", "referencing", "rpds", "attrs", "attr",
                  "jsonschema_specifications", "typing_extensions")


def host_mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        return [line for line in handle if text in line]


def assert_failed_cleanly(completed: subprocess.CompletedProcess[str], root: Path,
                          container_id: str, marker: str, bundle: Path, expected: str) -> None:
    assert completed.returncode == 1, completed.stdout + completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert expected in lines[0], lines[0]
    assert "container setup failed: step=" in lines[0]
    assert not (root / container_id).exists()
    assert processes_with_marker(marker) == []
    assert host_mounts_mentioning(str(bundle)) == []


def _add_mount(source: str, options: list[str]) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/mnt", "type": "bind", "source": source,
                                 "options": options})
    return edit


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        target = config
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return edit


_HARD_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
ROOT_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("mount-source-missing", _add_mount("/nonexistent/source", ["bind"]),
     "step=mount:bind errno=ENOENT (No such file or directory) path=/nonexistent/source"),
    ("unknown-capability", _set(("process", "capabilities", "bounding"), ["CAP_NOPE"]),
     "step=capabilities errno=EINVAL (Invalid argument) path=CAP_NOPE"),
    ("seccomp-unknown-syscall", _set(("linux", "seccomp"), {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}),
     "step=seccomp errno=EINVAL"),
    ("missing-executable", _set(("process", "args"), ["/no/such/binary"]),
     "step=exec errno=ENOENT (No such file or directory) path=/no/such/binary"),
    ("missing-cwd", _set(("process", "cwd"), "/no/such/dir"),
     "step=cwd errno=ENOENT (No such file or directory) path=/no/such/dir"),
    ("missing-namespace-path", _set(("linux", "namespaces"), [
        {"type": "mount"}, {"type": "pid"}, {"type": "uts"},
        {"type": "network", "path": "/run/netns/no-such-netns"}]),
     "step=namespace-network errno=ENOENT (No such file or directory) "
     "path=/run/netns/no-such-netns"),
    ("bad-tmpfs-option", lambda c: c["mounts"].append(
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["size=lots"]}),
     "step=mount:tmpfs errno=EINVAL (Invalid argument) path=/scratch"),
    ("rlimit-above-hard-limit", _set(("process", "rlimits"), [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": _HARD_NOFILE + 1000}]),
     "step=rlimits errno=EPERM (Operation not permitted) path=RLIMIT_NOFILE"),
    ("unknown-rlimit", _set(("process", "rlimits"), [
        {"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]),
     "step=rlimits errno=EINVAL (Invalid argument) path=RLIMIT_NOPE"),
    ("oom-score-adj-lowered", _set(("process", "oomScoreAdj"), -500),
     "step=oom-score-adj errno=EACCES"),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.fail("the fail-closed tests need root (and create an unprivileged user)")
    return tmp_path / "state"


@pytest.mark.parametrize(("name", "edit", "expected"), ROOT_CASES,
                         ids=[case[0] for case in ROOT_CASES])
@pytest.mark.parametrize("command", ["run", "create"])
def test_failing_step_as_root(tmp_path: Path, root: Path, name: str,
                              edit: Callable[[dict[str, Any]], None], expected: str,
                              command: str) -> None:
    config = container_config(["/bin/true"])
    edit(config)
    bundle = make_bundle(tmp_path, config)
    marker = f"failclosed-{name}-{uuid.uuid4().hex}"
    pid_file = tmp_path / "pid"
    completed = cli(root, command, "--bundle", str(bundle), "--pid-file", str(pid_file), name,
                    env_marker=marker)
    assert_failed_cleanly(completed, root, name, marker, bundle, expected)
    assert not pid_file.exists()


def test_failure_inside_the_cgroup_removes_it(tmp_path: Path, root: Path) -> None:
    """A pids limit of 1 lets the intermediate in but not the init it clones: the clone
    step fails after the cgroup was made, and every cgroup directory goes away."""
    config = container_config(["/bin/true"])
    parent = f"ar-oci-failclosed-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{parent}/c"
    config["linux"]["resources"] = {"pids": {"limit": 1}, "memory": {"limit": 64 << 20}}
    bundle = make_bundle(tmp_path, config)
    marker = f"failclosed-cgroup-{uuid.uuid4().hex}"
    completed = cli(root, "run", "--bundle", str(bundle), "cgfail", env_marker=marker)
    assert_failed_cleanly(completed, root, "cgfail", marker, bundle,
                          "step=clone errno=EAGAIN (Resource temporarily unavailable)")
    leftovers = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{parent}")]
    assert leftovers == []


# ------------------------------------------------------------------ rootless


class User:
    def __init__(self, uid: int, gid: int, home: Path, python_path: Path) -> None:
        self.uid, self.gid, self.home, self.python_path = uid, gid, home, python_path

    def cli(self, root: Path, *args: str, marker: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.python_path),
               "XDG_RUNTIME_DIR": str(self.home), "PYTHONDONTWRITEBYTECODE": "1",
               "AR_OCI_TEST_MARKER": marker}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            completed = subprocess.run(
                [DEBIAN_PYTHON, "-m", "auto_review.oci", "--root", str(root), *args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd="/",
                user=self.uid, group=self.gid, extra_groups=[], timeout=60, check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, completed.returncode, out.read(),
                                               err.read())


@pytest.fixture(scope="module")
def user(test_user: Any) -> User:
    """The shared unprivileged user, with the schema validator's modules importable."""
    target = Path(test_user.python_path)
    for name in SCHEMA_MODULES:
        found = importlib.util.find_spec(name)
        if found is None or found.origin is None or any(target.glob(f"{name}*")):
            continue
        origin = Path(found.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, target / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target / origin.name)
    for directory, _subdirs, files in os.walk(target):
        os.chmod(directory, 0o755)  # noqa: S103 - the test user imports from it
        for file_name in files:
            path = os.path.join(directory, file_name)
            os.chmod(path, os.stat(path).st_mode | 0o444)
    return User(test_user.uid, test_user.gid, Path(test_user.runtime_dir), target)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test user can reach (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ar-oci-rootless-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _rootless_bundle(shared_dir: Path, user: User, config: dict[str, Any]) -> Path:
    return make_bundle(shared_dir, config, owner=(user.uid, user.gid))


def _rootless_config(user: User, args: list[str]) -> dict[str, Any]:
    config = container_config(args, rootless=True)
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1}]
    return config


def test_rootless_run_and_lifecycle(shared_dir: Path, user: User) -> None:
    script = ("id -u; cat /proc/self/uid_map | tr -s ' '; hostname; "
              "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    bundle = _rootless_bundle(shared_dir, user, _rootless_config(user, ["/bin/sh", "-c", script]))
    state_root = user.home / f"state-{uuid.uuid4().hex[:6]}"
    marker = f"rootless-{uuid.uuid4().hex}"
    completed = user.cli(state_root, "run", "--bundle", str(bundle), "rl", marker=marker)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[2] == "auto-review"
    assert lines[3] == "CapEff:\t0000000020000420"  # KILL, NET_BIND_SERVICE, AUDIT_WRITE
    assert lines[4] == "NoNewPrivs:\t1"

    sleeper = _rootless_bundle(shared_dir, user, _rootless_config(user, ["/bin/sleep", "60"]))
    assert user.cli(state_root, "create", "--bundle", str(sleeper), "rl2",
                    marker=marker).returncode == 0
    state = json.loads(user.cli(state_root, "state", "rl2", marker=marker).stdout)
    assert state["status"] == "created"
    assert os.stat(f"/proc/{state['pid']}").st_uid == user.uid
    assert user.cli(state_root, "start", "rl2", marker=marker).returncode == 0
    assert json.loads(user.cli(state_root, "state", "rl2", marker=marker).stdout)[
        "status"] == "running"
    assert user.cli(state_root, "delete", "--force", "rl2", marker=marker).returncode == 0
    assert processes_with_marker(marker) == []
    assert not (state_root / "rl2").exists()


def test_rootless_uid_map_the_caller_may_not_write(shared_dir: Path, user: User) -> None:
    config = _rootless_config(user, ["/bin/true"])
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    bundle = _rootless_bundle(shared_dir, user, config)
    state_root = user.home / f"state-{uuid.uuid4().hex[:6]}"
    marker = f"rootless-map-{uuid.uuid4().hex}"
    completed = user.cli(state_root, "run", "--bundle", str(bundle), "badmap", marker=marker)
    assert_failed_cleanly(completed, state_root, "badmap", marker, bundle,
                          "step=uid_map errno=EPERM (Operation not permitted) path=/proc/")


def test_rootless_memory_limit_without_a_cgroup(shared_dir: Path, user: User) -> None:
    config = _rootless_config(user, ["/bin/true"])
    config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle = _rootless_bundle(shared_dir, user, config)
    state_root = user.home / f"state-{uuid.uuid4().hex[:6]}"
    marker = f"rootless-cgroup-{uuid.uuid4().hex}"
    completed = user.cli(state_root, "run", "--bundle", str(bundle), "nocg", marker=marker)
    assert_failed_cleanly(completed, state_root, "nocg", marker, bundle,
                          "step=cgroup errno=EACCES (Permission denied) path=/sys/fs/cgroup/")
    # the same bundle with best effort runs without the limit
    config["annotations"] = {"org.auto-review.cgroups.best-effort": "true"}
    (bundle / "config.json").write_text(json.dumps(config))
    completed = user.cli(state_root, "run", "--bundle", str(bundle), "nocg", marker=marker)
    assert completed.returncode == 0, completed.stderr
    assert not (state_root / "nocg").exists()


def test_rootless_additional_groups_are_refused(shared_dir: Path, user: User) -> None:
    """setgroups is denied in a rootless user namespace: asking for groups fails closed."""
    config = _rootless_config(user, ["/bin/true"])
    config["process"]["user"]["additionalGids"] = [0]
    bundle = _rootless_bundle(shared_dir, user, config)
    state_root = user.home / f"state-{uuid.uuid4().hex[:6]}"
    marker = f"rootless-groups-{uuid.uuid4().hex}"
    completed = user.cli(state_root, "run", "--bundle", str(bundle), "groups", marker=marker)
    assert completed.returncode == 1
    assert "step=setgroups errno=EPERM" in completed.stderr
    assert not (state_root / "groups").exists()
    assert processes_with_marker(marker) == []
