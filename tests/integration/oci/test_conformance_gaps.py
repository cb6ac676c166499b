"""Conformance on the points where the embedded runtime used to differ from runc and crun.

Each scenario below is a bundle the established runtimes start on this machine. It runs
under runc, crun and the embedded runtime (CLI and API) and the normalised probe reports
must be equal, exactly as in test_conformance.py. A scenario the references refuse must be
refused by the embedded runtime too, with a line naming the reason. docs/OCI-CONFORMANCE.md
has the table of these points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bundles import (
    Scenario,
    add_cgroup_mount,
    add_namespace,
    deny_syscalls,
    remove_namespace,
    set_probe_args,
)
from conftest import (
    API_RUN_SNIPPET,
    EMBEDDED_RUNNERS,
    REFERENCE_RUNNERS,
    RUN_TIMEOUT,
    HostFacts,
    ProbeRuns,
    Runner,
    RunResult,
    crun_command,
    embedded_cli_command,
    runc_command,
)
from report import mount_flags, path_info
from test_conformance import differences, flatten, outcome

from auto_review.oci.default_spec import default_spec


def _unknown_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Properties the runtime spec does not define, at several depths."""
    config["org.example.future"] = {"enabled": True}
    config["process"]["futureSetting"] = 1
    config["process"]["user"]["futureGroupPolicy"] = "strict"
    config["root"]["futureVerity"] = "sha256:0"
    config["mounts"][0]["futureOption"] = ["x"]
    config["linux"]["futureKnob"] = {"level": 3}
    config["linux"]["namespaces"][0]["futureFlags"] = 0
    deny_syscalls(config, ["personality"])
    config["linux"]["seccomp"]["futureMode"] = "log"
    config["linux"]["seccomp"]["syscalls"][0]["futureComment"] = "ignored"
    config["linux"]["resources"]["futureController"] = {"limit": 1}
    return config


def _bind_data_options(config: dict[str, Any]) -> dict[str, Any]:
    """A bind mount carrying file-system data options, which do not apply to it."""
    config["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": "/usr/share",
         "options": ["rbind", "mode=755", "ro", "nosuid", "size=1k"]}
    )  # fmt: skip
    return set_probe_args(config, *config["process"]["args"][3:], "--path", "/mnt/doc")


def _user_seccomp_without_no_new_privileges(config: dict[str, Any]) -> dict[str, Any]:
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["noNewPrivileges"] = False
    return deny_syscalls(config, ["personality"])


REMAPPED_ROOT = {"containerID": 0, "hostID": 1000, "size": 2000}


def _remapped_root(config: dict[str, Any]) -> dict[str, Any]:
    """A user namespace whose root is host uid 1000, started by host root."""
    add_namespace(config, "user")
    config["linux"]["uidMappings"] = [dict(REMAPPED_ROOT)]
    config["linux"]["gidMappings"] = [dict(REMAPPED_ROOT)]
    return deny_syscalls(config, ["personality"])


BLOCK_DEVICE = os.stat("/").st_dev  # the root file system's disk: throttles need a real one
CGROUP_READS = ("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device",
                "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
                "/sys/fs/cgroup/memory/memory.oom_control")


def _block_io_and_oom(config: dict[str, Any]) -> dict[str, Any]:
    device = {"major": os.major(BLOCK_DEVICE), "minor": 0}
    config["linux"]["resources"]["blockIO"] = {
        "throttleReadBpsDevice": [{**device, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{**device, "rate": 100}],
    }
    config["linux"]["resources"]["memory"] = {"limit": 64 << 20, "disableOOMKiller": True}
    add_cgroup_mount(config)
    reads = [arg for path in CGROUP_READS for arg in ("--read", path)]
    return set_probe_args(config, *config["process"]["args"][3:], *reads)


def _network_classes(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["resources"]["network"] = {
        "classID": 0x100001, "priorities": [{"name": "lo", "priority": 5}]}
    return config


MOUNT_LABEL = "system_u:object_r:container_file_t:s0:c1,c2"


def _mount_label(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["mountLabel"] = MOUNT_LABEL
    return config


GAP_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("gap-unknown-fields", "properties the spec does not define are ignored",
             _unknown_fields),
    Scenario("gap-bind-data-options", "data options on a bind mount are ignored",
             _bind_data_options),
    Scenario("gap-user-seccomp-privileged", "a non-root user, seccomp, noNewPrivileges false",
             _user_seccomp_without_no_new_privileges),
    Scenario("gap-remapped-root", "container root is host uid 1000 (0 -> 1000, size 2000)",
             _remapped_root),
    Scenario("gap-blockio-oom", "blkio throttles and disableOOMKiller, cgroup mounted",
             _block_io_and_oom),
    Scenario("gap-network-classes", "net_cls class id and net_prio priorities",
             _network_classes),
    Scenario("gap-mount-label", "linux.mountLabel on a host without SELinux", _mount_label),
)  # fmt: skip
SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in GAP_SCENARIOS}
# References that do not start a scenario on this machine (each pinned down by a test
# below); the embedded runtime is compared with the others.
REFERENCE_FAILS = {"gap-mount-label": {"runc"}, "gap-network-classes": {"runc", "crun"}}


def _references(scenario: Scenario) -> list[str]:
    failing = REFERENCE_FAILS.get(scenario.name, set())
    return [name for name in REFERENCE_RUNNERS if name not in failing]


PAIRS = [
    pytest.param(scenario, subject, reference, id=f"{scenario.name}-{subject}-vs-{reference}")
    for scenario in GAP_SCENARIOS
    for subject in EMBEDDED_RUNNERS
    for reference in _references(scenario)
]


@pytest.mark.parametrize(
    ("scenario", "runner"),
    [(scenario, runner) for scenario in GAP_SCENARIOS for runner in _references(scenario)],
    ids=lambda value: getattr(value, "name", value),
)
def test_references_start_the_scenario(probe_runs: ProbeRuns, scenario: Scenario, runner: str):
    """Each gap is one runc and crun close: they start the bundle on this machine."""
    probe_runs.report(scenario, runner)


@pytest.mark.parametrize(("scenario", "subject", "reference"), PAIRS)
def test_embedded_matches_references(
    probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario, subject: str, reference: str
):
    """Field by field, except where the references disagree with each other (then neither
    is the standard): such fields are listed in `disputed_fields`."""
    expected = outcome(probe_runs.result(scenario, reference), host, scenario)
    result = probe_runs.result(scenario, subject)
    actual = outcome(result, host, scenario)
    assert ("failed" in actual) == ("failed" in expected), (
        f"{subject} exit {result.returncode}, {reference} "
        f"{probe_runs.result(scenario, reference).returncode}: {result.stderr[-2000:]}")
    disputed = disputed_fields(probe_runs, host, scenario)
    diff = [line for line in differences(actual, expected)
            if line.split(": ", 1)[0] not in disputed]
    assert not diff, f"{subject} != {reference}:\n  " + "\n  ".join(diff[:60])


def disputed_fields(probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario) -> set[str]:
    """Fields on which the references that start the scenario differ from each other."""
    views = [flatten(outcome(probe_runs.result(scenario, name), host, scenario))
             for name in _references(scenario)]
    keys = set().union(*views)
    return {key for key in keys if len({repr(view.get(key)) for view in views}) > 1}


# What runc and crun disagree on, per scenario: the comparison leaves these out.
EXPECTED_DISPUTES = {
    # runc makes /dev/mqueue in the host's gid 0 (unmapped: 65534), crun in the namespace's
    # root; crun gives bind-mounted device nodes nosuid and noexec, runc does not.
    "gap-remapped-root": {"/paths//dev/mqueue/gid"} | {
        f"/mounts//dev/{name}/flags" for name in ("full", "null", "random", "tty", "urandom",
                                                  "zero")},
}


@pytest.mark.parametrize("scenario", GAP_SCENARIOS, ids=lambda scenario: scenario.name)
def test_references_disagree_only_where_expected(
    probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario
):
    """Keeps the left-out set small and known: a new disagreement fails here."""
    assert disputed_fields(probe_runs, host, scenario) == EXPECTED_DISPUTES.get(
        scenario.name, set())


def test_cli_debug_names_each_ignored_field(probe_runs: ProbeRuns, tmp_path: Path) -> None:
    bundle = probe_runs.bundle(SCENARIOS_BY_NAME["gap-unknown-fields"])
    completed = subprocess.run(
        [sys.executable, "-m", "auto_review.oci", "--root", str(tmp_path), "--debug", "run",
         "--bundle", str(bundle.path), f"gap-debug-{os.getpid()}"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    debug_lines = [line for line in completed.stderr.splitlines() if "debug:" in line]
    assert "auto-review oci: debug: ignoring unknown field org.example.future" in debug_lines
    assert "auto-review oci: debug: ignoring unknown field linux.seccomp.futureMode" in (
        debug_lines
    )


@pytest.mark.parametrize("runner", EMBEDDED_RUNNERS)
def test_bind_mount_with_data_options_is_made_with_its_flags(probe_runs: ProbeRuns, runner: str):
    report = probe_runs.report(SCENARIOS_BY_NAME["gap-bind-data-options"], runner)
    assert {"ro", "nosuid"} <= mount_flags(report, "/mnt")
    assert path_info(report, "/mnt/doc")["type"] == "dir"


def test_cli_debug_says_the_mount_label_was_ignored(probe_runs: ProbeRuns, tmp_path: Path):
    assert not Path("/sys/fs/selinux/enforce").exists(), "this test expects no SELinux"
    bundle = probe_runs.bundle(SCENARIOS_BY_NAME["gap-mount-label"])
    completed = subprocess.run(
        [sys.executable, "-m", "auto_review.oci", "--root", str(tmp_path), "--debug", "run",
         "--bundle", str(bundle.path), f"gap-label-{os.getpid()}"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert (f"auto-review oci: debug: linux.mountLabel {MOUNT_LABEL!r}: SELinux is not "
            "enabled on this host, ignored") in completed.stderr.splitlines()


def test_runc_passes_the_mount_label_to_a_kernel_without_selinux(probe_runs: ProbeRuns):
    """Why runc is not a reference for mountLabel here: runc 1.1.5 adds context= to the
    /dev tmpfs even though SELinux is off, and the kernel refuses it."""
    result = probe_runs.result(SCENARIOS_BY_NAME["gap-mount-label"], "runc")
    assert result.returncode != 0
    assert "context=" in result.stderr and "invalid argument" in result.stderr


@pytest.mark.parametrize("runner", EMBEDDED_RUNNERS)
def test_seccomp_applies_to_a_non_root_user_without_no_new_privileges(
    probe_runs: ProbeRuns, runner: str
):
    report = probe_runs.report(SCENARIOS_BY_NAME["gap-user-seccomp-privileged"], runner)
    assert report["identity"]["uid"] == [1000, 1000, 1000]
    assert report["security"]["no_new_privs"] is False
    assert report["security"]["seccomp"] == "filter"
    assert report["denied_syscall"]["errno"] == "EPERM"


@pytest.mark.parametrize("runner", EMBEDDED_RUNNERS)
def test_remapped_root_runs_as_the_mapped_host_ids(probe_runs: ProbeRuns, runner: str):
    report = probe_runs.report(SCENARIOS_BY_NAME["gap-remapped-root"], runner)
    assert report["identity"]["uid"] == [0, 0, 0]
    assert [" ".join(line.split()) for line in report["identity"]["uid_map"]] == ["0 1000 2000"]


@pytest.mark.parametrize("runner", EMBEDDED_RUNNERS)
def test_block_io_throttles_and_oom_switch_reach_the_cgroup(probe_runs: ProbeRuns, runner: str):
    reads = probe_runs.report(SCENARIOS_BY_NAME["gap-blockio-oom"], runner)["reads"]
    device = f"{os.major(BLOCK_DEVICE)}:0"
    assert reads[CGROUP_READS[0]].split() == [device, "1048576"]
    assert reads[CGROUP_READS[1]].split() == [device, "100"]
    assert "oom_kill_disable 1" in reads[CGROUP_READS[2]]


@pytest.mark.parametrize("runner", [*REFERENCE_RUNNERS, *EMBEDDED_RUNNERS])
def test_network_classes_without_net_cls_fail_everywhere(probe_runs: ProbeRuns, runner: str):
    """This host mounts no net_cls or net_prio hierarchy: runc and crun fail, and so does
    the embedded runtime, naming the missing controller."""
    assert "net_cls" not in Path("/proc/self/mountinfo").read_text()
    result = probe_runs.result(SCENARIOS_BY_NAME["gap-network-classes"], runner)
    assert result.returncode != 0
    if runner in EMBEDDED_RUNNERS:
        assert ("step=cgroup errno=ENOENT (No such file or directory) path=no mounted cgroup "
                "hierarchy offers net_cls") in result.stderr



# ---------------------------------------------------------------- no mount namespace
# Without a mount namespace a runtime mounts in its caller's namespace (runc even binds the
# rootfs onto itself there). Every runtime therefore runs inside
# `unshare -m --propagation private`, so nothing reaches this machine's mount table.

PRIVATE_MOUNTS = ["unshare", "--mount", "--propagation", "private"]


def _no_mount_namespace(config: dict[str, Any]) -> dict[str, Any]:
    # runc refuses maskedPaths and readonlyPaths without a private mount namespace
    # ("unable to restrict sys entries"); the scenario leaves them out for every runtime.
    config["linux"].pop("maskedPaths")
    config["linux"].pop("readonlyPaths")
    # runc and crun leave the root writable without a mount namespace whatever
    # root.readonly says; the embedded runtime honours it (a test below), so the compared
    # scenario asks for a writable root.
    config["root"]["readonly"] = False
    return remove_namespace(deny_syscalls(config, ["personality"]), "mount")


NO_MOUNT_NAMESPACE = Scenario("gap-no-mount-namespace", "the runtime's mount namespace",
                              _no_mount_namespace)


def _private(command: Any) -> Any:
    return lambda state, bundle, container_id: [*PRIVATE_MOUNTS,
                                                *command(state, bundle, container_id)]


def _api_command(state: Path, bundle: Path, container_id: str) -> list[str]:
    return [sys.executable, "-c", API_RUN_SNIPPET, container_id, str(bundle), str(state)]


@pytest.fixture(scope="module")
def no_mount_namespace_runs(probe_runs: ProbeRuns, tmp_path_factory: pytest.TempPathFactory
                            ) -> dict[str, RunResult]:
    state = tmp_path_factory.mktemp("no-mount-ns")
    runners = {
        "runc": Runner("runc", state / "runc", _private(runc_command)),
        "crun": Runner("crun", state / "crun", crun_command),  # already in its own one
        "embedded-cli": Runner("embedded-cli", state / "cli",
                               _private(embedded_cli_command(sys.executable))),
        "embedded-api": Runner("embedded-api", state / "api", _private(_api_command)),
    }
    bundle = probe_runs.bundle(NO_MOUNT_NAMESPACE)
    before = Path("/proc/self/mountinfo").read_text()
    results = {name: runner.run(bundle, f"nomntns-{name}-{os.getpid()}")
               for name, runner in runners.items()}
    assert Path("/proc/self/mountinfo").read_text() == before, "a mount reached the host"
    return results


@pytest.mark.parametrize("reference", REFERENCE_RUNNERS)
@pytest.mark.parametrize("subject", EMBEDDED_RUNNERS)
def test_without_a_mount_namespace_embedded_matches_references(
    no_mount_namespace_runs: dict[str, RunResult], host: HostFacts, subject: str,
    reference: str
):
    expected = outcome(no_mount_namespace_runs[reference], host, NO_MOUNT_NAMESPACE)
    assert "failed" not in expected, no_mount_namespace_runs[reference].stderr
    actual = outcome(no_mount_namespace_runs[subject], host, NO_MOUNT_NAMESPACE)
    assert "failed" not in actual, no_mount_namespace_runs[subject].stderr
    disputed = _disputes(no_mount_namespace_runs, host)
    assert disputed == NO_MOUNT_NAMESPACE_DISPUTES
    diff = [line for line in differences(actual, expected)
            if line.split(": ", 1)[0] not in disputed]
    assert not diff, f"{subject} != {reference}:\n  " + "\n  ".join(diff[:60])


# crun does not bind the rootfs onto itself: "/" is no mount point in its container.
NO_MOUNT_NAMESPACE_DISPUTES = {"/mounts///asked_super_options", "/mounts///flags",
                               "/mounts///type"}


def _disputes(runs: dict[str, RunResult], host: HostFacts) -> set[str]:
    views = [flatten(outcome(runs[name], host, NO_MOUNT_NAMESPACE)) for name in REFERENCE_RUNNERS]
    return {key for key in set().union(*views)
            if len({repr(view.get(key)) for view in views}) > 1}


@pytest.mark.parametrize("runner", ["runc", "embedded-cli"])
def test_without_a_mount_namespace_root_readonly(tmp_path: Path, runner: str) -> None:
    """The embedded runtime keeps root.readonly without a mount namespace (the rootfs is
    its own bind, remounted read-only); runc silently leaves the root writable."""
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    config = default_spec()
    config["process"]["args"] = ["/usr/bin/touch", "/written"]
    config["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/usr", "type": "bind", "source": "/usr",
                         "options": ["rbind", "ro"]},
                        {"destination": "/etc/ld.so.cache", "type": "bind",
                         "source": "/etc/ld.so.cache", "options": ["bind", "ro"]}]
    for link in ("bin", "lib", "lib64"):
        (bundle / "rootfs" / link).symlink_to(f"usr/{link}")
    for directory in ("etc", "proc", "usr"):
        (bundle / "rootfs" / directory).mkdir()
    (bundle / "rootfs" / "etc" / "ld.so.cache").touch()
    config["linux"].pop("maskedPaths")
    config["linux"].pop("readonlyPaths")
    config["linux"]["namespaces"] = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}]
    (bundle / "config.json").write_text(json.dumps(config))
    state = str(tmp_path / "state")
    command = (["runc", "--root", state] if runner == "runc" else
               [sys.executable, "-m", "auto_review.oci", "--root", state])
    before = Path("/proc/self/mountinfo").read_text()
    with open(tmp_path / "in", "w+") as stdin:
        completed = subprocess.run(
            [*PRIVATE_MOUNTS, *command, "run", "--bundle", str(bundle), f"ro-{runner}"],
            stdin=stdin, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert Path("/proc/self/mountinfo").read_text() == before
    if runner == "runc":
        assert completed.returncode == 0, completed.stderr
        assert (bundle / "rootfs" / "written").exists()
    else:
        assert completed.returncode == 1
        assert "Read-only file system" in completed.stderr
        assert not (bundle / "rootfs" / "written").exists()


def test_root_slash_without_a_mount_namespace_needs_a_private_one(tmp_path: Path) -> None:
    """A rootfs of / with no mount namespace would stack a second / on this machine's
    mount table (after which no user namespace can be created until `umount -l /`): the
    runtime refuses it outside a private mount namespace and runs it inside one."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = default_spec()
    config["root"] = {"path": "/", "readonly": False}  # "/" stays the caller's own
    config["process"]["args"] = ["/bin/true"]
    config["mounts"] = []
    config["linux"].pop("maskedPaths")
    config["linux"].pop("readonlyPaths")
    config["linux"]["namespaces"] = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}]
    (bundle / "config.json").write_text(json.dumps(config))
    before = Path("/proc/self/mountinfo").read_text()
    command = [sys.executable, "-m", "auto_review.oci", "--root", str(tmp_path / "state"),
               "run", "--bundle", str(bundle), f"slash-{os.getpid()}"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             check=False)
    assert refused.returncode == 1
    assert "root.path / without a mount namespace would stack a second /" in refused.stderr
    assert Path("/proc/self/mountinfo").read_text() == before
    private = subprocess.run([*PRIVATE_MOUNTS, *command], capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, check=False)
    assert private.returncode == 0, private.stderr
    assert Path("/proc/self/mountinfo").read_text() == before
