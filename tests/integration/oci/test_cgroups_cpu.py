"""linux.resources.cpu on the real kernel: written, read back, enforced, refused, removed."""

from __future__ import annotations

import errno
import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from tests.support.requirements import needs_root

from auto_review.oci.cgroups import Cgroup, _v2_cpu_writes
from auto_review.oci.errors import SpecError, StepError

SPIN_SECONDS = 0.4


def fresh_id() -> str:
    return f"ar-cpu-{uuid.uuid4().hex[:10]}"


def own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path.strip("/")
    raise AssertionError(controller)


def v1_directory(controller: str, container_id: str) -> Path:
    """Where a container without cgroupsPath gets its cgroup (v1, like runc's cgroupfs)."""
    return Path("/sys/fs/cgroup", controller, own_cgroup(controller), container_id)


def read(directory: Path, name: str) -> str:
    return (directory / name).read_text().strip()


def spin_and_report(go_read: int, report_write: int) -> None:
    """In a forked child: wait for the go, burn CPU for a while, report what it saw."""
    os.read(go_read, 1)
    deadline = time.monotonic() + SPIN_SECONDS
    while time.monotonic() < deadline:
        pass
    seen = {"affinity": sorted(os.sched_getaffinity(0))}
    os.write(report_write, json.dumps(seen).encode())
    os._exit(0)


def throttled_periods(directory: Path) -> int:
    stat = dict(line.split() for line in read(directory, "cpu.stat").splitlines())
    return int(stat["nr_throttled"])


@needs_root
def test_quota_period_shares_and_cpus_are_written_read_back_and_enforced() -> None:
    container_id = fresh_id()
    resources = {"cpu": {"shares": 512, "quota": 10000, "period": 100000, "cpus": "0"}}
    cgroup = Cgroup.create(container_id, None, resources, best_effort=False)
    cpu_dir, cpuset_dir = v1_directory("cpu", container_id), v1_directory("cpuset", container_id)
    try:
        assert cgroup.controllers == {"cpu": "v1", "cpuset": "v1"}
        assert {str(cpu_dir), str(cpuset_dir)} <= set(cgroup.paths())
        assert (read(cpu_dir, "cpu.shares"), read(cpu_dir, "cpu.cfs_quota_us")) == ("512", "10000")
        assert read(cpu_dir, "cpu.cfs_period_us") == "100000"
        assert read(cpuset_dir, "cpuset.cpus") == "0"
        # mems was not asked for: it comes from the parent, or no task could join.
        assert read(cpuset_dir, "cpuset.mems") == read(cpuset_dir.parent, "cpuset.mems")
        assert cgroup.effective_limits() == {
            "cpu.shares": 512,
            "cpu.quota": 10000,
            "cpu.period": 100000,
            "cpu.cpus": "0",
            "cpu.mems": read(cpuset_dir.parent, "cpuset.mems"),
        }
        go_read, go_write = os.pipe()
        report_read, report_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            spin_and_report(go_read, report_write)
        os.close(go_read)
        os.close(report_write)
        cgroup.add_process(pid)
        assert read(cpu_dir, "cgroup.procs").split() == [str(pid)]
        assert read(cpuset_dir, "cgroup.procs").split() == [str(pid)]
        os.write(go_write, b"g")
        os.close(go_write)
        with os.fdopen(report_read) as report:
            seen = json.loads(report.read())
        assert os.waitpid(pid, 0)[1] == 0
        assert seen["affinity"] == [0]
        # 10 ms per 100 ms against a busy loop of 400 ms: the scheduler had to throttle it.
        assert throttled_periods(cpu_dir) > 0
    finally:
        cgroup.destroy()
    assert not cpu_dir.exists() and not cpuset_dir.exists()


@needs_root
def test_unlimited_quota_reads_back_as_none_and_cpuset_is_left_as_the_parent() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(
        container_id,
        None,
        {"cpu": {"quota": -1, "period": 50000, "realtimeRuntime": 0, "idle": None, "burst": 0}},
        best_effort=False,
    )
    try:
        assert cgroup.controllers == {"cpu": "v1"}
        assert cgroup.effective_limits() == {
            "cpu.shares": 1024,  # the kernel's default, untouched
            "cpu.quota": None,
            "cpu.period": 50000,
        }
        cpuset_dir = v1_directory("cpuset", container_id)
        # As root the container has a cgroup in every hierarchy (as with runc); no cpus
        # were asked for, so its cpuset is the parent's.
        assert read(cpuset_dir, "cpuset.cpus") == read(cpuset_dir.parent, "cpuset.cpus")
    finally:
        cgroup.destroy()
    assert not v1_directory("cpu", container_id).exists()


@needs_root
def test_every_new_cpuset_level_inherits_cpus_and_mems() -> None:
    parent = fresh_id()
    cgroup = Cgroup.create("c1", f"/{parent}/middle/c1", {"cpu": {"mems": "0"}}, best_effort=False)
    root = Path("/sys/fs/cgroup/cpuset")
    try:
        for level in (root / parent, root / parent / "middle", root / parent / "middle/c1"):
            assert read(level, "cpuset.cpus") == read(root, "cpuset.cpus"), level
            assert read(level, "cpuset.mems") == "0", level
        assert [p for p in cgroup.created_paths() if p.startswith(str(root))] == [
            str(root / parent),
            str(root / parent / "middle"),
            str(root / parent / "middle/c1"),
        ]
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        try:
            cgroup.add_process(child)  # an empty cpuset would answer ENOSPC
            assert read(root / parent / "middle/c1", "cgroup.procs") == str(child)
        finally:
            os.kill(child, 9)
            os.waitpid(child, 0)
    finally:
        cgroup.destroy()
    assert not (root / parent).exists()


@needs_root
def test_a_cpu_the_kernel_does_not_have_fails_the_step_and_leaves_nothing() -> None:
    container_id = fresh_id()
    missing_cpu = "100000"  # beyond any kernel's CPU count
    resources = {"cpu": {"quota": 20000, "cpus": missing_cpu}}
    with pytest.raises(StepError) as caught:
        Cgroup.create(container_id, None, resources, best_effort=False)
    assert caught.value.step == "cgroup"
    assert caught.value.errno == errno.ERANGE
    assert caught.value.path.endswith(f"/{container_id}/cpuset.cpus")
    assert not v1_directory("cpu", container_id).exists()
    assert not v1_directory("cpuset", container_id).exists()
    lenient = Cgroup.create(container_id, None, resources, best_effort=True)
    assert not lenient.applied and "errno=ERANGE" in lenient.reason
    assert lenient.paths() == []
    assert not v1_directory("cpu", container_id).exists()
    assert not v1_directory("cpuset", container_id).exists()


@pytest.mark.parametrize(
    ("cpu", "field"),
    [
        ({"shares": 1}, "cpu.shares"),
        ({"shares": 262145}, "cpu.shares"),
        ({"shares": True}, "cpu.shares"),
        ({"quota": 999}, "cpu.quota"),
        ({"quota": -2}, "cpu.quota"),
        ({"quota": "50000"}, "cpu.quota"),
        ({"period": 999}, "cpu.period"),
        ({"period": 1_000_001}, "cpu.period"),
        ({"cpus": "0-"}, "cpu.cpus"),
        ({"cpus": "0;1"}, "cpu.cpus"),
        ({"mems": 0}, "cpu.mems"),
        ({"realtimeRuntime": 950000}, "cpu.realtimeRuntime"),
        ({"realtimePeriod": 1000000}, "cpu.realtimePeriod"),
        ({"idle": 1}, "cpu.idle"),
        ({"burst": 1000}, "cpu.burst"),
        ({"idle": False}, "cpu.idle"),
        ({"weight": 10}, "cpu.weight"),
    ],
)
def test_invalid_cpu_settings_are_spec_errors_naming_the_field(
    cpu: dict[str, object], field: str
) -> None:
    container_id = fresh_id()
    with pytest.raises(SpecError, match=re.escape(f"linux.resources.{field}:")):
        Cgroup.create(container_id, None, {"cpu": cpu}, best_effort=True)
    assert not v1_directory("cpu", container_id).exists()


def test_cpu_must_be_an_object() -> None:
    with pytest.raises(SpecError, match=r"linux\.resources\.cpu: must be an object"):
        Cgroup.create(fresh_id(), None, {"cpu": [1024]}, best_effort=False)


def test_all_zero_cpu_settings_set_no_cpu_limit() -> None:
    container_id = fresh_id()
    cgroup = Cgroup.create(
        container_id, None, {"cpu": {"shares": 0, "quota": 0, "cpus": ""}}, best_effort=False
    )
    try:
        assert cgroup.applied and cgroup.controllers == {}
        cpu_dir = v1_directory("cpu", container_id)
        assert read(cpu_dir, "cpu.shares") == "1024"  # the kernel's default, untouched
        assert read(cpu_dir, "cpu.cfs_quota_us") == "-1"
    finally:
        cgroup.destroy()
    assert not v1_directory("cpu", container_id).exists()


@pytest.mark.parametrize(
    ("settings", "writes"),
    [
        ({"shares": 2}, [("cpu.weight", "1")]),
        ({"shares": 1024}, [("cpu.weight", "39")]),
        ({"shares": 262144}, [("cpu.weight", "10000")]),
        ({"quota": 50000, "period": 100000}, [("cpu.max", "50000 100000")]),
        ({"quota": 50000}, [("cpu.max", "50000")]),
        ({"quota": -1, "period": 20000}, [("cpu.max", "max 20000")]),
        ({"period": 20000}, [("cpu.max", "max 20000")]),
    ],
)
def test_v2_files_for_shares_quota_and_period(
    settings: dict[str, int | str], writes: list[tuple[str, str]]
) -> None:
    """This host has no v2 cpu controller; the v2 mapping is checked as text."""
    assert _v2_cpu_writes(settings) == writes
