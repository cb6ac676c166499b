"""Run the probe as root under every runtime and check the posture each config asks for.

The same assertions hold for runc, crun and the embedded runtime (through its CLI and its
Python API): each test reads what the kernel shows inside the container, not what the
runtime says it did.
"""

from __future__ import annotations

import pytest
from bundles import (
    ALL_CAPABILITIES,
    ALL_CAPS_SCENARIO,
    CGROUP_LIMITS,
    CUSTOM_UMASK,
    DEFAULT_CAPS,
    DEFAULT_ENV,
    DENIED_SYSCALL,
    DOMAINNAME,
    DOMAINNAME_SCENARIO,
    EXTRA_MASKED,
    EXTRA_READONLY,
    MASKED_PATHS,
    OOM_SCORE_ADJ,
    READONLY_PATHS,
    RLIMITS,
    SCENARIOS_BY_NAME,
    SYSCTLS,
    USER_IDS,
)
from conftest import EMBEDDED_RUNNERS, REFERENCE_RUNNERS, ROOT_RUNNERS, HostFacts, ProbeRuns
from report import Report, capabilities, env, mount_at, mount_flags, path_info

ISOLATED_NAMESPACES = ("pid", "net", "ipc", "uts", "mnt")
# Python adds LC_CTYPE itself when no locale is set (PEP 538); it is not the runtime's doing.
PYTHON_ADDED_ENV = {"LC_CTYPE"}
DEVICES = {"null": [1, 3], "zero": [1, 5], "full": [1, 7], "random": [1, 8],
           "urandom": [1, 9], "tty": [5, 0]}  # fmt: skip

runners = pytest.mark.parametrize("runner", ROOT_RUNNERS)


def probe(probe_runs: ProbeRuns, scenario: str, runner: str) -> Report:
    return probe_runs.report(SCENARIOS_BY_NAME[scenario], runner)


def config_env(entries: list[str]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in entries)


@runners
def test_default_identity_and_namespaces(probe_runs: ProbeRuns, host: HostFacts, runner: str):
    report = probe(probe_runs, "default", runner)
    identity = report["identity"]
    assert identity["uid"] == [0, 0, 0]
    assert identity["gid"] == [0, 0, 0]
    assert identity["groups"] == []
    assert (identity["pid"], identity["ppid"]) == (1, 0)
    assert identity["cwd"] == "/"
    assert identity["umask"] == "0022"
    for name in ISOLATED_NAMESPACES:
        assert report["namespaces"][name] != host["namespaces"][name], name
    assert report["namespaces"]["user"] == host["namespaces"]["user"]
    assert report["hostname"] == "probe"
    expected_env = config_env(DEFAULT_ENV)
    assert {k: v for k, v in env(report).items() if k not in PYTHON_ADDED_ENV} == expected_env


@runners
def test_default_capabilities_and_no_new_privs(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "default", runner)
    for kind in ("bounding", "effective", "permitted"):
        assert capabilities(report, kind) == sorted(DEFAULT_CAPS), kind
    # The default asks for ambient capabilities but no inheritable ones; the kernel only
    # raises an ambient capability that is also inheritable, so none can be raised.
    assert capabilities(report, "inheritable") == []
    assert capabilities(report, "ambient") == []
    assert report["security"]["no_new_privs"] is True


@runners
def test_seccomp_rule_denies_the_syscall_with_eperm(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "default", runner)
    assert report["security"]["seccomp"] == "filter"
    assert report["denied_syscall"] == {"name": DENIED_SYSCALL, "result": -1, "errno": "EPERM"}


@runners
def test_without_seccomp_the_syscall_succeeds(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "no-seccomp", runner)
    assert report["security"]["seccomp"] == "disabled"
    assert report["denied_syscall"]["errno"] is None
    assert report["denied_syscall"]["result"] >= 0


@runners
def test_network_namespace_has_only_loopback_and_no_host_reach(
    probe_runs: ProbeRuns, runner: str
):
    report = probe(probe_runs, "default", runner)
    assert [iface["name"] for iface in report["interfaces"]] == ["lo"]
    assert report["reach"]["connected"] is False


@runners
def test_default_filesystem(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "default", runner)
    assert "ro" in mount_flags(report, "/")
    assert report["writes"]["/"] == "error:EROFS"
    assert report["writes"]["/dev/shm"] == "ok"
    assert {"ro", "nosuid", "nodev"} <= mount_flags(report, "/usr")
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_flags(report, "/opt/probe")
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_flags(report, "/sys")
    assert mount_at(report, "/proc")["type"] == "proc"
    assert mount_at(report, "/dev")["type"] == "tmpfs"
    assert mount_at(report, "/dev/pts")["type"] == "devpts"
    assert mount_at(report, "/dev/mqueue")["type"] == "mqueue"
    assert {"nosuid", "nodev", "noexec"} <= mount_flags(report, "/dev/shm")
    for path in READONLY_PATHS:  # a path the kernel lacks (sysrq-trigger here) stays absent
        if path_info(report, path)["exists"]:
            assert "ro" in mount_flags(report, path), path
    dev = path_info(report, "/dev")
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"):
        assert name in dev["entries"], name
    assert report["rlimits"]["RLIMIT_NOFILE"] == [1024, 1024]


@runners
def test_default_masked_paths(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "default", runner)
    for path in ("/proc/acpi", "/sys/firmware"):
        info = path_info(report, path)
        assert info["type"] == "dir" and info["entries"] == [], path
        assert "ro" in mount_flags(report, path), path
    keys = path_info(report, "/proc/keys")
    assert keys["type"] == "char" and keys["device"] == DEVICES["null"]
    # Every masked path the probe looked at is absent, an empty directory or /dev/null.
    for path in (p for p in MASKED_PATHS if p in report["paths"]):
        info = path_info(report, path)
        if info["exists"]:
            masked_dir = info["type"] == "dir" and info["entries"] == []
            null_device = info["type"] == "char" and info["device"] == DEVICES["null"]
            assert masked_dir or null_device, f"{path} is not masked: {info}"


@runners
def test_devices_are_the_standard_set(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "default", runner)
    for name, numbers in DEVICES.items():
        info = path_info(report, f"/dev/{name}")
        assert info["type"] == "char" and info["device"] == numbers, name
        assert info["mode"] == "0o666", name
    links = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
             "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"}  # fmt: skip
    for path, target in links.items():
        assert path_info(report, path)["target"] == target, path
    assert path_info(report, "/dev/ptmx")["exists"]


@runners
def test_user_ids_groups_umask_env_cwd(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "user", runner)
    uid, gid, additional = USER_IDS
    identity = report["identity"]
    assert identity["uid"] == [uid] * 3
    assert identity["gid"] == [gid] * 3
    assert identity["groups"] == sorted(additional)
    assert identity["umask"] == f"{CUSTOM_UMASK:04o}"
    assert identity["cwd"] == "/tmp"
    assert env(report)["PROBE_GREETING"] == "hello world"
    assert env(report)["EMPTY"] == ""
    # execve as a non-root user drops permitted and effective capabilities unless they are
    # ambient, and ambient ones need inheritable ones, which this config does not ask for.
    assert capabilities(report, "effective") == []
    assert capabilities(report, "permitted") == []
    assert capabilities(report, "bounding") == sorted(DEFAULT_CAPS)
    assert report["denied_syscall"]["errno"] == "EPERM"


@runners
def test_all_host_capabilities(probe_runs: ProbeRuns, host: HostFacts, runner: str):
    report = probe(probe_runs, "host-caps", runner)
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert capabilities(report, kind) == sorted(host["bounding"]), kind
    assert report["security"]["no_new_privs"] is False
    assert report["security"]["seccomp"] == "disabled"


@runners
def test_no_capabilities(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "no-caps", runner)
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert capabilities(report, kind) == [], kind
    assert report["identity"]["uid"] == [0, 0, 0]


@runners
def test_rlimits(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "rlimits", runner)
    for kind, (soft, hard) in RLIMITS.items():
        assert report["rlimits"][kind] == [soft, hard], kind


@runners
def test_writable_root_and_tmpfs(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "writable", runner)
    assert "rw" in mount_flags(report, "/")
    assert report["writes"]["/"] == "ok"
    assert report["writes"]["/tmp"] == "ok"
    tmp = mount_at(report, "/tmp")
    assert tmp is not None and tmp["type"] == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(tmp["options"])
    assert "size=1024k" in tmp["super_options"]
    assert path_info(report, "/tmp")["mode"] == "0o1777"


@runners
def test_without_network_namespace_host_loopback_is_reachable(
    probe_runs: ProbeRuns, host: HostFacts, runner: str
):
    report = probe(probe_runs, "host-network", runner)
    assert report["namespaces"]["net"] == host["namespaces"]["net"]
    assert sorted(iface["name"] for iface in report["interfaces"]) == host["interfaces"]
    assert report["reach"] == {
        "target": probe_runs.server.address, "connected": True, "error": None,
    }  # fmt: skip
    assert b"probe\n" in probe_runs.server.received


@runners
def test_extra_masked_and_readonly_paths(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "masked", runner)
    doc_dir, cpuinfo = EXTRA_MASKED
    assert path_info(report, doc_dir)["entries"] == []
    assert path_info(report, cpuinfo)["type"] == "char"
    assert path_info(report, cpuinfo)["device"] == DEVICES["null"]
    for path in EXTRA_READONLY:
        assert "ro" in mount_flags(report, path), path
    assert "ro" not in mount_flags(report, "/proc")


@runners
def test_cgroup_limits(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "cgroups", runner)
    limits = report["cgroup"]["limits"]
    assert limits["pids/pids.max"] == str(CGROUP_LIMITS["pids"])
    assert limits["memory/memory.limit_in_bytes"] == str(CGROUP_LIMITS["memory"])
    # cgroup v1: a tmpfs at /sys/fs/cgroup (left writable by runc and crun alike) holding one
    # read-only mount per controller, each showing only the container's own cgroup.
    for controller in ("pids", "memory"):
        destination = f"/sys/fs/cgroup/{controller}"
        assert {"ro", "nosuid", "nodev", "noexec"} <= mount_flags(report, destination)
        assert mount_at(report, destination)["type"] == "cgroup"


@pytest.mark.parametrize("runner", ROOT_RUNNERS)
def test_capabilities_outside_the_bounding_set_are_refused(
    probe_runs: ProbeRuns, host: HostFacts, runner: str
):
    """This host's root lacks CAP_SYS_RESOURCE in its bounding set: asking for every
    capability fails under runc and crun, and the embedded runtime fails alike, naming
    what it cannot grant."""
    missing = [name for name in ALL_CAPABILITIES if name not in host["bounding"]]
    assert missing, "this test needs a bounding set without some capability"
    result = probe_runs.result(ALL_CAPS_SCENARIO, runner)
    assert result.returncode != 0
    if runner in REFERENCE_RUNNERS:
        assert "operation not permitted" in result.stderr.lower()
    else:
        assert (f"step=capabilities errno=EPERM (Operation not permitted) "
                f"path={','.join(missing)} (not in the runtime's bounding set)") in result.stderr


@runners
def test_cgroup_cpu_quota(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "cgroups-cpu", runner)
    limits = report["cgroup"]["limits"]
    assert limits["cpu/cpu.cfs_quota_us"] == str(CGROUP_LIMITS["cpu_quota"])
    assert limits["cpu/cpu.cfs_period_us"] == str(CGROUP_LIMITS["cpu_period"])
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_flags(report, "/sys/fs/cgroup/cpu")


@runners
def test_sysctls_and_oom_score_adj(probe_runs: ProbeRuns, runner: str):
    report = probe(probe_runs, "kernel-params", runner)
    for key, value in SYSCTLS.items():
        assert report["reads"][f"/proc/sys/{key.replace('.', '/')}"] == value, key
    assert report["identity"]["oom_score_adj"] == str(OOM_SCORE_ADJ)


@pytest.mark.parametrize("runner", ["crun", *EMBEDDED_RUNNERS])
def test_domainname(probe_runs: ProbeRuns, runner: str):
    report = probe_runs.report(DOMAINNAME_SCENARIO, runner)
    assert report["domainname"] == DOMAINNAME
    assert report["hostname"] == "probe"


def test_runc_ignores_domainname(probe_runs: ProbeRuns):
    """Why domainname is not a conformance scenario: runc 1.1.5 leaves it unset."""
    report = probe_runs.report(DOMAINNAME_SCENARIO, "runc")
    assert report["domainname"] == "(none)"
