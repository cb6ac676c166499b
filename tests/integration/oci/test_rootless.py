"""Run the probe as an unprivileged user (created by the fixtures) and check the posture.

runc runs rootless with `--root` in the user's runtime dir; the embedded runtime runs under
Debian's /usr/bin/python3 as that user, through its CLI and through its Python API. Debian's
crun 1.8.1 cannot run rootless on this host's hybrid cgroups, and a test pins that down.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import bundles
import pytest
from bundles import DEFAULT_CAPS, DENIED_SYSCALL, RLIMITS, SCENARIOS_BY_NAME
from conftest import (
    ROOTLESS_RUNNERS,
    HostFacts,
    LoopbackServer,
    ProbeRuns,
    Runner,
    UnprivilegedUser,
)
from report import Report, capabilities, mount_at, mount_flags, path_info

runners = pytest.mark.parametrize("runner", ROOTLESS_RUNNERS)
ISOLATED_NAMESPACES = ("user", "pid", "ipc", "uts", "mnt")


def probe(probe_runs: ProbeRuns, scenario: str, runner: str) -> Report:
    return probe_runs.report(SCENARIOS_BY_NAME[scenario], runner)


def id_map(lines: list[str]) -> list[list[int]]:
    return [[int(field) for field in line.split()] for line in lines if line.strip()]


@runners
def test_rootless_identity_is_the_mapped_user(
    probe_runs: ProbeRuns, test_user: UnprivilegedUser, host: HostFacts, runner: str
):
    report = probe(probe_runs, "rootless", runner)
    identity = report["identity"]
    assert identity["uid"] == [0, 0, 0]
    assert identity["gid"] == [0, 0, 0]
    assert id_map(identity["uid_map"]) == [[0, test_user.uid, 1]]
    assert id_map(identity["gid_map"]) == [[0, test_user.gid, 1]]
    # An unprivileged user may only write a gid map after denying setgroups.
    assert identity["setgroups"] == "deny"
    assert identity["pid"] == 1
    for name in ISOLATED_NAMESPACES:
        assert report["namespaces"][name] != host["namespaces"][name], name
    assert report["hostname"] == "probe"


@runners
def test_rootless_capabilities_seccomp_and_no_new_privs(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "rootless", runner)
    for kind in ("bounding", "effective", "permitted"):
        assert capabilities(report, kind) == sorted(DEFAULT_CAPS), kind
    assert capabilities(report, "ambient") == []
    assert report["security"]["no_new_privs"] is True
    assert report["security"]["seccomp"] == "filter"
    assert report["denied_syscall"] == {"name": DENIED_SYSCALL, "result": -1, "errno": "EPERM"}


@runners
def test_rootless_filesystem(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "rootless", runner)
    assert "ro" in mount_flags(report, "/")
    assert report["writes"]["/"] == "error:EROFS"
    assert {"ro", "nosuid", "nodev"} <= mount_flags(report, "/usr")
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_flags(report, "/sys")
    # A user namespace cannot mknod: devices are bind mounts of the host's nodes.
    assert path_info(report, "/proc/keys")["device"] == [1, 3]
    assert path_info(report, "/sys/firmware")["entries"] == []
    assert report["rlimits"]["RLIMIT_NOFILE"] == [1024, 1024]


@runners
def test_rootless_without_network_namespace_reaches_host_loopback(
    probe_runs: ProbeRuns, host: HostFacts, runner: str
):
    report = probe(probe_runs, "rootless", runner)
    assert report["namespaces"]["net"] == host["namespaces"]["net"]
    assert report["reach"]["connected"] is True


@runners
def test_rootless_network_namespace_isolates(probe_runs: ProbeRuns, host: HostFacts, runner: str):
    report = probe(probe_runs, "rootless-netns", runner)
    assert report["namespaces"]["net"] != host["namespaces"]["net"]
    assert [iface["name"] for iface in report["interfaces"]] == ["lo"]
    assert report["reach"]["connected"] is False


@runners
def test_rootless_writable_root_and_tmpfs(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "rootless-writable", runner)
    # The rootfs belongs to the test user, who is root in the container.
    assert report["writes"]["/"] == "ok"
    assert report["writes"]["/tmp"] == "ok"
    tmp = mount_at(report, "/tmp")
    assert tmp is not None and tmp["type"] == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(tmp["options"])


@runners
def test_rootless_rlimits_and_no_capabilities(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "rootless-limits", runner)
    for kind, (soft, hard) in RLIMITS.items():
        assert report["rlimits"][kind] == [soft, hard], kind
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert capabilities(report, kind) == [], kind


def cgroup_delegated_to(uid: int) -> bool:
    """Whether any pids cgroup (v1) or the cgroup2 root lets this user create children."""
    for top in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if top.is_dir() and any(
            entry.is_dir() and entry.stat().st_uid == uid for entry in top.iterdir()
        ):
            return True
    return False


@runners
def test_rootless_cgroup_limit_without_delegation_fails_closed(
    probe_runs: ProbeRuns, test_user: UnprivilegedUser, runner: str
):
    assert not cgroup_delegated_to(test_user.uid), "this host delegates cgroups: update the test"
    result = probe_runs.result(SCENARIOS_BY_NAME["rootless-cgroups"], runner)
    # The limit cannot be applied, so the container must not run without it.
    assert result.returncode != 0
    assert "{" not in result.stdout
    assert re.search(r"cgroup", result.stderr, re.IGNORECASE), result.stderr


def test_crun_rootless_refuses_hybrid_cgroups(
    rootless_runners: dict[str, Runner],
    loopback_server: LoopbackServer,
    test_user: UnprivilegedUser,
):
    hybrid = _is_cgroup2_mount("/sys/fs/cgroup/unified")
    config = SCENARIOS_BY_NAME["rootless"].config(
        loopback_server.address, test_user.uid, test_user.gid
    )
    bundle = bundles.make_bundle(config, owner=(test_user.uid, test_user.gid))
    try:
        result = rootless_runners["crun"].run(bundle, f"crun-rootless-{secrets.token_hex(4)}")
    finally:
        bundle.remove()
    if hybrid:
        assert result.returncode != 0
        assert "cgroups in hybrid mode not supported" in result.stderr
    else:
        assert result.report()["identity"]["uid"] == [0, 0, 0]


def _is_cgroup2_mount(path: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split(" - ")
            if fields[0].split()[4] == path and fields[1].split()[0] == "cgroup2":
                return True
    return False
