"""Container cgroups on the real kernel: limits enforced, read back, and cleaned up."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.requirements import needs_root, require

import auto_review
from auto_review.oci.cgroups import (
    BEST_EFFORT_ANNOTATION,
    SUPPORTED_RESOURCES,
    Cgroup,
    best_effort_from_annotations,
)
from auto_review.oci.errors import SpecError, StepError

ROOTLESS_USER = "ar-oci-cgtest"
MIB = 1 << 20


def fresh_id() -> str:
    return f"ar-test-{uuid.uuid4().hex[:10]}"


def own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path.strip("/")
    raise AssertionError(controller)


def expected_directory(controller: str, container_id: str) -> Path:
    """Where runc's cgroupfs driver would put a container without cgroupsPath (v1)."""
    return Path("/sys/fs/cgroup", controller, own_cgroup(controller), container_id)


def mounted_hierarchies() -> list[tuple[Path, str]]:
    """(mount point, this process's cgroup there) of every cgroup hierarchy mounted here,
    read from /proc/self/mountinfo and /proc/self/cgroup independently of the runtime."""
    own: dict[frozenset[str], str] = {}
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[frozenset(controllers.split(",")) if controllers else frozenset()] = path
    found = []
    with open("/proc/self/mountinfo") as lines:
        for line in lines:
            fields = line.split()
            fstype, options = fields[fields.index("-") + 1], fields[fields.index("-") + 3]
            if fstype == "cgroup2":
                key: frozenset[str] = frozenset()
            elif fstype == "cgroup":
                key = next(k for k in own if k and k <= set(options.split(",")))
            else:
                continue
            assert fields[3] == "/", "the tests expect whole hierarchies mounted"
            found.append((Path(fields[4]), own[key].strip("/")))
    assert len(found) >= 2, found  # this host: nine v1 hierarchies and the unified one
    return found


def every_directory(container_id: str) -> list[str]:
    """The container's cgroup in each mounted hierarchy (relative to the caller's own)."""
    return sorted(str(mount / own / container_id) for mount, own in mounted_hierarchies())


def every_directory_under(absolute_path: str) -> list[str]:
    """An absolute cgroupsPath in each mounted hierarchy."""
    return sorted(str(mount) + absolute_path for mount, _ in mounted_hierarchies())


def memberships(pid: int) -> list[str]:
    """The cgroup paths of a process, one per hierarchy."""
    with open(f"/proc/{pid}/cgroup") as lines:
        return [line.rstrip("\n").split(":", 2)[2] for line in lines]




class HeldChild:
    """A forked child that waits on a pipe until it is told to run its body."""

    def __init__(self) -> None:
        self.go_read, self.go_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.go_write)
            os.read(self.go_read, 1)

    def release(self) -> None:
        os.close(self.go_read)
        os.write(self.go_write, b"g")
        os.close(self.go_write)

    def wait(self) -> int:
        return os.waitpid(self.pid, 0)[1]


def fork_until_refused(attempts: int) -> dict[str, object]:
    """In the child: fork holders until the kernel refuses; report how many and why."""
    hold_read, hold_write = os.pipe()
    children, refusal = [], "none"
    for _ in range(attempts):
        try:
            child = os.fork()
        except OSError as exc:
            refusal = errno.errorcode[exc.errno or 0]
            break
        if child == 0:
            os.close(hold_write)
            os.read(hold_read, 1)
            os._exit(0)
        children.append(child)
    os.close(hold_write)
    for child in children:
        os.waitpid(child, 0)
    return {"forked": len(children), "refusal": refusal}


@needs_root
def test_pids_limit_makes_fork_beyond_it_fail_with_eagain() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(container_id, None, {"pids": {"limit": 4}}, best_effort=False)
    directory = expected_directory("pids", container_id)
    # a cgroup in every hierarchy, as runc makes it; only pids is limited
    assert sorted(cgroup.paths()) == every_directory(container_id)
    assert str(directory) in cgroup.paths()
    assert cgroup.controllers == {"pids": "v1"}
    report_read, report_write = os.pipe()
    child = HeldChild()
    if child.pid == 0:
        os.close(report_read)
        os.write(report_write, json.dumps(fork_until_refused(10)).encode())
        os._exit(0)
    os.close(report_write)
    cgroup.add_process(child.pid)
    assert (directory / "cgroup.procs").read_text().split() == [str(child.pid)]
    # the child left the caller's cgroup in every hierarchy, not only the limited one
    assert all(path.endswith(f"/{container_id}") for path in memberships(child.pid))
    child.release()
    with os.fdopen(report_read) as report:
        outcome = json.loads(report.read())
    assert child.wait() == 0
    # The child itself is one of the four tasks.
    assert outcome == {"forked": 3, "refusal": "EAGAIN"}
    assert cgroup.effective_limits() == {"pids.limit": 4}
    cgroup.destroy()
    assert not any(os.path.exists(path) for path in every_directory(container_id))


@needs_root
def test_memory_limits_read_back_and_are_enforced() -> None:
    container_id = fresh_id()
    resources = {"memory": {"limit": 48 * MIB, "swap": 48 * MIB, "reservation": 16 * MIB}}
    cgroup = Cgroup.create(container_id, None, resources, best_effort=False)
    directory = expected_directory("memory", container_id)
    try:
        assert cgroup.effective_limits() == {
            "memory.limit": 48 * MIB,
            "memory.swap": 48 * MIB,
            "memory.reservation": 16 * MIB,
        }
        assert (directory / "memory.limit_in_bytes").read_text().strip() == str(48 * MIB)
        child = HeldChild()
        if child.pid == 0:
            hog = b"\x01" * (128 * MIB)  # every page written: charged to the cgroup
            os._exit(len(hog) % 7)
        cgroup.add_process(child.pid)
        child.release()
        status = child.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        cgroup.destroy()
    assert not directory.exists()


@needs_root
def test_unlimited_values_read_back_as_none() -> None:
    resources = {"pids": {"limit": -1}, "memory": {"limit": -1}}
    cgroup = Cgroup.create(fresh_id(), None, resources, best_effort=False)
    try:
        limits = cgroup.effective_limits()
        assert limits["pids.limit"] is None
        assert limits["memory.limit"] is None
    finally:
        cgroup.destroy()


@needs_root
def test_hugepage_limit_uses_the_unified_hierarchy_when_it_offers_hugetlb() -> None:
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    require(
        controllers.exists() and "hugetlb" in controllers.read_text().split(),
        "a cgroup2 mount at /sys/fs/cgroup/unified offering hugetlb",
    )
    container_id = fresh_id()
    resources = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}]}
    cgroup = Cgroup.create(container_id, None, resources, best_effort=False)
    directory = Path("/sys/fs/cgroup/unified", container_id)
    assert cgroup.controllers == {"hugetlb": "v2"}
    assert sorted(cgroup.paths()) == every_directory(container_id)
    assert str(directory) in cgroup.paths()
    assert (directory / "hugetlb.2MB.max").read_text().strip() == str(4 * MIB)
    assert cgroup.effective_limits()["hugepageLimits"]["2MB"] == 4 * MIB
    child = HeldChild()
    if child.pid == 0:
        os._exit(0)
    cgroup.add_process(child.pid)
    assert (directory / "cgroup.procs").read_text().split() == [str(child.pid)]
    child.release()
    child.wait()
    cgroup.destroy()
    assert not any(os.path.exists(path) for path in every_directory(container_id))


@needs_root
def test_absolute_cgroups_path_is_taken_from_the_hierarchy_root() -> None:
    outer = fresh_id()
    cgroup = Cgroup.create("ignored", f"/{outer}/inner", {"pids": {"limit": 9}}, best_effort=False)
    assert sorted(cgroup.paths()) == every_directory_under(f"/{outer}/inner")
    assert f"/sys/fs/cgroup/pids/{outer}/inner" in cgroup.paths()
    cgroup.destroy()
    assert not any(os.path.exists(path) for path in every_directory_under(f"/{outer}"))
    cgroup.destroy()  # twice is harmless


@needs_root
def test_existing_parent_is_joined_and_kept() -> None:
    parent = Path("/sys/fs/cgroup/pids", fresh_id())
    parent.mkdir()
    try:
        cgroup = Cgroup.create(
            "c1", f"/{parent.name}/c1", {"pids": {"limit": 9}}, best_effort=False
        )
        made = cgroup.created_paths()
        cgroup.destroy()
        assert parent.exists()
        assert not (parent / "c1").exists()
        # elsewhere the parent was made for the container, so it goes with it
        assert str(parent) not in made
        assert f"/sys/fs/cgroup/memory/{parent.name}" in made
        assert not any(
            os.path.exists(path)
            for path in every_directory_under(f"/{parent.name}")
            if not path.startswith("/sys/fs/cgroup/pids/")
        )
    finally:
        parent.rmdir()


HALF_WAY_FAILURE = {
    "pids": {"limit": 10},
    "memory": {"limit": 64 * MIB},
    "hugepageLimits": [{"pageSize": "4MB", "limit": 0}],  # no such page size on x86_64
}


def would_be_directories(container_id: str) -> list[Path]:
    return [Path(path) for path in every_directory(container_id)]


@needs_root
def test_failure_half_way_leaves_nothing_behind() -> None:
    container_id = fresh_id()
    with pytest.raises(StepError) as caught:
        Cgroup.create(container_id, None, HALF_WAY_FAILURE, best_effort=False)
    assert caught.value.step == "cgroup"
    assert caught.value.errno == errno.ENOENT
    assert caught.value.path.endswith("/hugetlb.4MB.max")
    assert "\n" not in caught.value.one_line()
    assert not any(path.exists() for path in would_be_directories(container_id))


@needs_root
def test_best_effort_failure_reports_the_reason_and_leaves_nothing() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(container_id, None, HALF_WAY_FAILURE, best_effort=True)
    assert not cgroup.applied
    assert "step=cgroup" in cgroup.reason and "errno=ENOENT" in cgroup.reason
    assert cgroup.paths() == []
    assert cgroup.posture()["limits"] == {}
    assert not any(path.exists() for path in would_be_directories(container_id))
    cgroup.add_process(os.getpid())  # nothing to join: no effect, no error
    cgroup.destroy()


@needs_root
def test_adding_a_vanished_process_fails_or_degrades() -> None:
    child = HeldChild()
    if child.pid == 0:
        os._exit(0)
    child.release()
    child.wait()
    strict = Cgroup.create(fresh_id(), None, {"pids": {"limit": 5}}, best_effort=False)
    lenient = Cgroup.create(fresh_id(), None, {"pids": {"limit": 5}}, best_effort=True)
    try:
        with pytest.raises(StepError) as caught:
            strict.add_process(child.pid)
        assert (caught.value.step, caught.value.errno) == ("cgroup", errno.ESRCH)
        assert caught.value.path.endswith("/cgroup.procs")
        lenient.add_process(child.pid)
        assert not lenient.applied
        assert "errno=ESRCH" in lenient.reason
    finally:
        strict.destroy()
        lenient.destroy()
    assert strict.paths() == [] and lenient.paths() == []


@needs_root
def test_destroy_with_a_live_process_inside_is_busy_then_succeeds() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(container_id, None, {"pids": {"limit": 5}}, best_effort=False)
    child = HeldChild()
    if child.pid == 0:
        os._exit(0)
    cgroup.add_process(child.pid)
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        cgroup.destroy()
    # one shared retry deadline (2 s), not one per hierarchy
    assert time.monotonic() - started < 5
    assert (caught.value.step, caught.value.errno) == ("cgroup", errno.EBUSY)
    assert caught.value.path in every_directory(container_id)
    assert all(os.path.isdir(path) for path in every_directory(container_id))
    child.release()
    child.wait()
    cgroup.destroy()
    assert not any(os.path.exists(path) for path in every_directory(container_id))


@needs_root
def test_no_limits_requested_still_makes_a_cgroup_in_every_hierarchy_as_root() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(container_id, None, {"devices": []}, best_effort=False)
    try:
        assert cgroup.applied and cgroup.reason == ""
        assert cgroup.controllers == {}
        assert sorted(cgroup.paths()) == every_directory(container_id)
        assert sorted(cgroup.created_paths()) == every_directory(container_id)
        # the kernel's defaults are there to read, as under runc
        cpu = expected_directory("cpu", container_id)
        assert (cpu / "cpu.shares").read_text().strip() == "1024"
        assert (expected_directory("pids", container_id) / "pids.max").read_text() == "max\n"
        cpuset = expected_directory("cpuset", container_id)
        # a new cpuset gets its parent's cpus and mems, or no task could join it
        assert (cpuset / "cpuset.mems").read_text() == (cpuset.parent / "cpuset.mems").read_text()
        assert (cpuset / "cpuset.cpus").read_text().strip()
        child = HeldChild()
        if child.pid == 0:
            os._exit(0)
        cgroup.add_process(child.pid)
        joined = memberships(child.pid)
        child.release()
        child.wait()
        assert len(joined) == len(mounted_hierarchies())
        assert all(path.endswith(f"/{container_id}") for path in joined), joined
    finally:
        cgroup.destroy()
    assert not any(os.path.exists(path) for path in every_directory(container_id))


@pytest.mark.parametrize(
    ("resources", "path", "message"),
    [
        ({"memory": {"swappiness": 10}}, None, "memory.swappiness: not supported"),
        ({"memory": {"limit": 64 * MIB, "swap": MIB}}, None, "smaller than memory.limit"),
        ({"memory": {"swap": 64 * MIB}}, None, "needs a positive memory.limit"),
        ({"memory": {"limit": -1, "swap": 64 * MIB}}, None, "needs a positive memory.limit"),
        ({"blockIO": {"weight": 5}}, None, "blockIO.weight: must be an integer from 10"),
        ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, None, "linux.resources.rdma: not supported"),
        ({"pids": {"limit": "10"}}, None, "pids.limit"),
        ({"hugepageLimits": [{"pageSize": "2MB/../x", "limit": 1}]}, None, "pageSize"),
        ({"pids": {"limit": 5}}, "/a/../../b", "'..' is not allowed"),
        ({"pids": {"limit": 5}}, "system.slice:ar:c1", "systemd-style"),
        ({"pids": {"limit": 5}}, "/", "hierarchy root"),
    ],
)
def test_bad_requests_are_spec_errors_even_with_best_effort(
    resources: dict[str, object], path: str | None, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        Cgroup.create(fresh_id(), path, resources, best_effort=True)


def test_best_effort_annotation() -> None:
    assert best_effort_from_annotations({BEST_EFFORT_ANNOTATION: "true"}) is True
    assert best_effort_from_annotations({BEST_EFFORT_ANNOTATION: "false"}) is False
    assert best_effort_from_annotations({}) is False
    with pytest.raises(SpecError, match=BEST_EFFORT_ANNOTATION):
        best_effort_from_annotations({BEST_EFFORT_ANNOTATION: "yes"})
    assert {"pids", "memory"} <= SUPPORTED_RESOURCES


# ---------------------------------------------------------------- rootless

ROOTLESS_SCRIPT = """
import json
from auto_review.oci.cgroups import Cgroup
from auto_review.oci.errors import StepError
answer = {}
try:
    Cgroup.create(CONTAINER_ID, None, {"pids": {"limit": 8}}, best_effort=False)
    answer["strict"] = "created"
except StepError as exc:
    answer["strict"] = [exc.step, exc.errno, exc.path, exc.one_line()]
lenient = Cgroup.create(CONTAINER_ID, None, {"pids": {"limit": 8}}, best_effort=True)
answer["lenient"] = [lenient.applied, lenient.reason, lenient.paths()]
deny_all = {"devices": [{"allow": False, "access": "rwm"}]}
devices = Cgroup.create(CONTAINER_ID, None, deny_all, best_effort=False)
answer["devices"] = [devices.applied, sorted(devices.skipped), devices.paths()]
unlimited = Cgroup.create(CONTAINER_ID, None, {}, best_effort=False)
answer["unlimited"] = [unlimited.applied, unlimited.reason, unlimited.paths()]
print(json.dumps(answer))
"""


@pytest.fixture
def readable_package() -> Iterator[str]:
    """A copy of the package any user can import (/root is 0700)."""
    top = tempfile.mkdtemp(prefix="ar-oci-pkg-")
    os.chmod(top, 0o755)  # noqa: S103 - the unprivileged user must import from it
    package = Path(auto_review.__file__).parent
    target = Path(top, "auto_review")
    target.mkdir()
    shutil.copy(package / "__init__.py", target / "__init__.py")
    shutil.copytree(package / "oci", target / "oci", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield top
    shutil.rmtree(top)


@pytest.fixture
def unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) of a plain user made with useradd; None when the tests already run as one."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                ROOTLESS_USER,
            ],
            check=True,
        )
        entry = pwd.getpwnam(ROOTLESS_USER)
    return entry.pw_uid, entry.pw_gid


def test_rootless_create_fails_with_the_step_unless_best_effort(
    readable_package: str, unprivileged_user: tuple[int, int] | None
) -> None:
    container_id = fresh_id()
    credentials = {}
    if unprivileged_user is not None:
        uid, gid = unprivileged_user
        credentials = {"user": uid, "group": gid, "extra_groups": []}
    result = subprocess.run(
        ["/usr/bin/python3", "-c", ROOTLESS_SCRIPT.replace("CONTAINER_ID", repr(container_id))],
        env={"PYTHONPATH": readable_package, "PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **credentials,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    step, err, path, line = answer["strict"]
    assert (step, err) == ("cgroup", errno.EACCES)
    assert path == str(expected_directory("pids", container_id))
    assert line.startswith("container setup failed: step=cgroup errno=EACCES")
    applied, reason, paths = answer["lenient"]
    assert (applied, paths) == (False, [])
    assert reason == line
    # Device rules alone are skipped, not failed: see docs/OCI-KERNEL-CONTROLS.md.
    assert answer["devices"] == [True, ["devices"], []]
    # Without limits an unprivileged caller makes no cgroup at all (root makes one in
    # every hierarchy).
    assert answer["unlimited"] == [True, "no cgroup limits requested", []]


@needs_root
def test_created_paths_list_every_made_directory_parents_first() -> None:
    outer = fresh_id()
    cgroup = Cgroup.create("c1", f"/{outer}/mid/c1", {"pids": {"limit": 3}}, best_effort=False)
    made = cgroup.created_paths()
    assert len(made) == 3 * len(mounted_hierarchies())
    for mount, _ in mounted_hierarchies():
        mine = [path for path in made if path.startswith(f"{mount}/")]
        assert mine == [f"{mount}/{outer}", f"{mount}/{outer}/mid", f"{mount}/{outer}/mid/c1"]
    cgroup.destroy()
    assert cgroup.created_paths() == []
    assert not any(os.path.exists(path) for path in every_directory_under(f"/{outer}"))
