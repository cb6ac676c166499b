"""Choosing hierarchies and files from mount tables of other hosts (pure v2, containers)."""

from __future__ import annotations

import errno

import pytest

from auto_review.oci import cgroups
from auto_review.oci.errors import StepError

PURE_V2_MOUNTINFO = (
    "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)
PURE_V2_OWN = "0::/user.slice/user-1000.slice/session-3.scope\n"
V2_CONTROLLERS = frozenset({"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"})

HYBRID_MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "37 31 0:34 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
HYBRID_OWN = (
    "9:name=systemd:/\n8:pids:/\n5:devices:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n"
)


def only_hugetlb(mount_point: str) -> frozenset[str]:
    return frozenset({"hugetlb"})


def test_pure_v2_host_puts_everything_on_v2_under_the_own_cgroup() -> None:
    found = cgroups.parse_hierarchies(PURE_V2_MOUNTINFO, PURE_V2_OWN, lambda _: V2_CONTROLLERS)
    assert [(h.version, h.mount_point) for h in found] == [("v2", "/sys/fs/cgroup")]
    for controller in ("pids", "memory", "hugetlb", "devices"):
        chosen = cgroups._choose(controller, found)
        assert chosen.version == "v2"
        assert chosen.own_path == "user.slice/user-1000.slice/session-3.scope"


def test_hybrid_host_splits_controllers_between_v1_and_v2() -> None:
    found = cgroups.parse_hierarchies(HYBRID_MOUNTINFO, HYBRID_OWN, only_hugetlb)
    chosen = {c: cgroups._choose(c, found) for c in ("pids", "memory", "hugetlb", "devices")}
    assert {c: (h.version, h.mount_point) for c, h in chosen.items()} == {
        "pids": ("v1", "/sys/fs/cgroup/pids"),
        "memory": ("v1", "/sys/fs/cgroup/memory"),
        "hugetlb": ("v2", "/sys/fs/cgroup/unified"),
        "devices": ("v1", "/sys/fs/cgroup/devices"),
    }
    assert chosen["memory"].own_path == "process_api/abc"
    co_mounted = [h for h in found if "cpu" in h.controllers]
    assert [h.controllers for h in co_mounted] == [frozenset({"cpu", "cpuacct"})]


def test_mount_inside_a_container_is_rooted_at_its_cgroup() -> None:
    mountinfo = (
        "600 590 0:32 /docker/abc /sys/fs/cgroup/my\\040pids ro,nosuid - cgroup cgroup rw,pids\n"
    )
    found = cgroups.parse_hierarchies(mountinfo, "8:pids:/docker/abc/inner\n")
    assert [(h.mount_point, h.own_path) for h in found] == [("/sys/fs/cgroup/my pids", "inner")]


def test_controller_nowhere_is_a_cgroup_step_error() -> None:
    found = cgroups.parse_hierarchies(HYBRID_MOUNTINFO, HYBRID_OWN, only_hugetlb)
    with pytest.raises(StepError) as caught:
        cgroups._choose("rdma", found)
    assert (caught.value.step, caught.value.errno) == ("cgroup", errno.ENOENT)
    assert "rdma" in caught.value.path


@pytest.mark.parametrize(
    ("version", "controller", "name", "value", "expected_file", "expected_text"),
    [
        ("v1", "pids", "limit", 7, "pids.max", "7"),
        ("v1", "pids", "limit", -1, "pids.max", "max"),
        ("v2", "pids", "limit", -1, "pids.max", "max"),
        ("v1", "memory", "limit", -1, "memory.limit_in_bytes", "-1"),
        ("v2", "memory", "limit", -1, "memory.max", "max"),
        ("v1", "memory", "swap", 96, "memory.memsw.limit_in_bytes", "96"),
        ("v2", "memory", "swap", 96, "memory.swap.max", "32"),  # 96 total - 64 memory
        ("v2", "memory", "swap", -1, "memory.swap.max", "max"),
        ("v1", "memory", "reservation", 16, "memory.soft_limit_in_bytes", "16"),
        ("v2", "memory", "reservation", 16, "memory.low", "16"),
        ("v1", "hugetlb", "2MB", 4, "hugetlb.2MB.limit_in_bytes", "4"),
        ("v2", "hugetlb", "1GB", 0, "hugetlb.1GB.max", "0"),
    ],
)
def test_settings_map_to_the_files_of_each_version(
    version: str, controller: str, name: str, value: int, expected_file: str, expected_text: str
) -> None:
    memory = {"limit": 64}
    assert cgroups._setting_file(version, controller, name) == expected_file
    assert cgroups._setting_value(version, controller, name, value, memory) == expected_text
