"""Conformance: the embedded runtime's probe report must match runc's and crun's.

Every scenario in bundles.SCENARIOS runs once per runtime (root scenarios under runc, crun
and the embedded CLI and API; rootless ones under runc and the embedded CLI and API as the
unprivileged test user). Reports are normalised (`normalise`) so that only values that
legitimately differ between correct runtimes are dropped or reduced; everything else must
be equal, field by field. The runc-vs-crun test shows that the normalised view is one on
which the two established runtimes agree, so a difference with the embedded runtime is a
difference in posture, not noise. docs/OCI-CONFORMANCE.md lists each normalisation and why.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bundles import ROOT_SCENARIOS, ROOTLESS_SCENARIOS, Scenario, base_config
from conftest import EMBEDDED_RUNNERS, HostFacts, ProbeRuns, RunResult
from report import MOUNT_FLAGS, Report

# Options a config may pass to a filesystem that the kernel echoes in the super options.
ECHOED_SUPER_OPTION_KEYS = ("size", "mode", "gid", "ptmxmode")
# crun adds a /dev/core -> /proc/kcore symlink that runc does not; neither is asked for.
RUNTIME_EXTRA_DEV_ENTRIES = {"core"}


def masked_paths(scenario: Scenario) -> set[str]:
    config = scenario.config("127.0.0.1:1", 0, 0)
    return set(config["linux"].get("maskedPaths", []))


def configured_mount_options(scenario: Scenario) -> dict[str, set[str]]:
    config = scenario.config("127.0.0.1:1", 0, 0)
    return {mount["destination"]: set(mount.get("options", [])) for mount in config["mounts"]}


def normalise(report: Report, host: HostFacts, scenario: Scenario) -> dict[str, Any]:
    """The comparable view of a probe report (see docs/OCI-CONFORMANCE.md)."""
    report = copy.deepcopy(report)
    masked = masked_paths(scenario)
    identity = report["identity"]
    for key in ("uid_map", "gid_map"):  # the kernel pads the columns
        identity[key] = [" ".join(line.split()) for line in identity[key] if line.strip()]
    view: dict[str, Any] = {
        "identity": {key: identity[key] for key in (
            "uid", "gid", "groups", "pid", "ppid", "cwd", "umask", "env", "uid_map",
            "gid_map", "setgroups", "argv0", "oom_score_adj",
        )},
        "security": {
            "capabilities": {
                kind: sorted(names) for kind, names in report["security"]["capabilities"].items()
            },
            "no_new_privs": report["security"]["no_new_privs"],
            # How many filters carry the policy is the runtime's choice; the mode is not.
            "seccomp": report["security"]["seccomp"],
        },
        # Namespace inode numbers are new for every container: compare "shared with the
        # host" or "private" instead.
        "namespaces": {
            name: "host" if link == host["namespaces"].get(name) else "private"
            for name, link in report["namespaces"].items()
        },
        "hostname": report["hostname"],
        "domainname": report["domainname"],
        "mounts": normalise_mounts(report["mounts"], masked, configured_mount_options(scenario)),
        "rlimits": report["rlimits"],
        # Limits are posture; where in the hierarchy the runtime puts its cgroup is not.
        "cgroup_limits": report["cgroup"]["limits"],
        "paths": normalise_paths(report["paths"], masked),
        "writes": report["writes"],
        "reads": report["reads"],
        "interfaces": report["interfaces"],
        "denied_syscall": report["denied_syscall"],
        "reach": report["reach"],
    }
    return view


def normalise_mounts(
    mounts: list[dict[str, Any]], masked: set[str], configured: dict[str, set[str]]
) -> dict[str, Any]:
    visible: dict[str, dict[str, Any]] = {}
    for mount in mounts:  # later mounts at a destination hide earlier ones
        visible[mount["destination"]] = mount
    view: dict[str, Any] = {}
    for destination, mount in sorted(visible.items()):
        if destination in masked:
            # runc masks a file with the container's /dev/null, crun with the host's, and
            # they mount the masking tmpfs with different super options: the masking
            # itself is compared through "paths".
            view[destination] = "masked"
            continue
        if destination == "/sys/fs/cgroup":
            # The tmpfs holding the v1 controller mounts: runc and crun size it differently.
            view[destination] = {"type": mount["type"]}
            continue
        asked = configured.get(destination, set())
        echoed = sorted(
            option for option in mount["super_options"]
            if option in asked and option.split("=")[0] in ECHOED_SUPER_OPTION_KEYS
        )  # fmt: skip
        view[destination] = {
            "type": mount["type"],
            "flags": sorted(set(mount["options"]) & MOUNT_FLAGS),
            "asked_super_options": echoed,
        }
    return view


def normalise_paths(paths: dict[str, Any], masked: set[str]) -> dict[str, Any]:
    view = {}
    for path, info in paths.items():
        info = dict(info)
        if path == "/dev" and isinstance(info.get("entries"), list):
            info["entries"] = [e for e in info["entries"] if e not in RUNTIME_EXTRA_DEV_ENTRIES]
        if path.startswith("/dev/") and info.get("type") == "char":
            # crun 1.8.1 gives the default device nodes to the process's uid/gid, runc to
            # the container's root; both make them 0666, so access is the same.
            info.pop("uid", None)
            info.pop("gid", None)
        if path in masked:
            # Whether the masking /dev/null bind or tmpfs is itself writable differs (see
            # normalise_mounts); what the container can read there does not.
            info.pop("writable", None)
            if info.get("type") == "dir":
                info.pop("mode", None)
        view[path] = info
    return view


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}/{key}"))
        return flat
    return {prefix or "/": value}


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    flat_left, flat_right = flatten(left), flatten(right)
    missing = object()
    lines = []
    for key in sorted(set(flat_left) | set(flat_right)):
        a, b = flat_left.get(key, missing), flat_right.get(key, missing)
        if a != b:
            show = lambda v: "<absent>" if v is missing else repr(v)  # noqa: E731
            lines.append(f"{key}: {show(a)} != {show(b)}")
    return lines


def outcome(result: RunResult, host: HostFacts, scenario: Scenario) -> dict[str, Any]:
    """A failed run is compared as a failure; a successful one by its normalised report."""
    if result.returncode != 0:
        return {"failed": True}
    return normalise(result.report(), host, scenario)


def assert_same(
    probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario, subject: str, reference: str
) -> None:
    expected = outcome(probe_runs.result(scenario, reference), host, scenario)
    subject_result = probe_runs.result(scenario, subject)
    actual = outcome(subject_result, host, scenario)
    if actual != expected and "failed" in (actual.keys() ^ expected.keys()):
        failed = subject if "failed" in actual else reference
        result = probe_runs.result(scenario, failed)
        pytest.fail(
            f"{scenario.name}: {failed} exited {result.returncode} while the other ran; "
            f"stderr: {result.stderr.strip()[-2000:]}"
        )
    diff = differences(actual, expected)
    if diff:
        detail = "\n  ".join(diff[:60])
        stderr = subject_result.stderr.strip()[-2000:]
        pytest.fail(
            f"{scenario.name}: {subject} differs from {reference} in {len(diff)} field(s) "
            f"({subject} != {reference}):\n  {detail}\n{subject} stderr: {stderr}"
        )


ROOT_PAIRS = [
    pytest.param(scenario, subject, reference, id=f"{scenario.name}-{subject}-vs-{reference}")
    for scenario in ROOT_SCENARIOS
    for subject in EMBEDDED_RUNNERS
    for reference in ("runc", "crun")
]
ROOTLESS_PAIRS = [
    pytest.param(scenario, subject, "runc", id=f"{scenario.name}-{subject}-vs-runc")
    for scenario in ROOTLESS_SCENARIOS
    for subject in EMBEDDED_RUNNERS
]


@pytest.mark.parametrize(("scenario", "subject", "reference"), ROOT_PAIRS + ROOTLESS_PAIRS)
def test_embedded_matches_reference(
    probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario, subject: str, reference: str
):
    assert_same(probe_runs, host, scenario, subject, reference)


@pytest.mark.parametrize("scenario", ROOT_SCENARIOS, ids=lambda scenario: scenario.name)
def test_runc_and_crun_agree_on_the_compared_view(
    probe_runs: ProbeRuns, host: HostFacts, scenario: Scenario
):
    assert_same(probe_runs, host, scenario, "crun", "runc")


def test_normalised_view_still_sees_posture_differences(probe_runs: ProbeRuns, host: HostFacts):
    """Guard against a normaliser that hides everything: two postures must differ."""
    by_name = {scenario.name: scenario for scenario in ROOT_SCENARIOS}
    default = outcome(probe_runs.result(by_name["default"], "runc"), host, by_name["default"])
    writable = outcome(probe_runs.result(by_name["writable"], "runc"), host, by_name["writable"])
    diff = differences(default, writable)
    assert "/writes//: 'error:EROFS' != 'ok'" in diff
    assert any(line.startswith("/mounts//tmp/") for line in diff)
    assert any(line.startswith("/denied_syscall/errno") for line in diff)


CAPABILITY_SETS = ("bounding", "effective", "permitted", "ambient")


def runc_spec(tmp_path: Path, *extra: str) -> dict[str, Any]:
    subprocess.run(["runc", "spec", *extra], cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "config.json").read_text())


def posture_fields(config: dict[str, Any]) -> dict[str, Any]:
    """What the scenarios inherit from `runc spec`; the probe's args, env and the added
    bind mounts are the bundle's own."""
    process, linux = config["process"], config["linux"]
    caps = process["capabilities"]
    mounts = [
        mount for mount in config["mounts"]
        if mount["type"] != "bind" and mount["destination"] != "/sys/fs/cgroup"
    ]  # fmt: skip
    return {
        "user": process["user"],
        "cwd": process["cwd"],
        "capabilities": {kind: sorted(caps.get(kind, [])) for kind in CAPABILITY_SETS},
        "rlimits": process["rlimits"],
        "noNewPrivileges": process["noNewPrivileges"],
        "root": config["root"],
        "mounts": mounts,
        "namespaces": sorted(ns["type"] for ns in linux["namespaces"]),
        "maskedPaths": linux["maskedPaths"],
        "readonlyPaths": linux["readonlyPaths"],
        "resources": linux.get("resources"),
        "idMappings": (linux.get("uidMappings"), linux.get("gidMappings")),
    }


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_base_config_is_runc_spec(tmp_path: Path, rootless: bool):
    """The scenarios start from what `runc spec` prints, except the terminal and the
    /sys/fs/cgroup mount (added only by the cgroup scenarios)."""
    reference = runc_spec(tmp_path, *(["--rootless"] if rootless else []))
    mapped = reference["linux"].get("uidMappings", [{"hostID": 0}])[0]["hostID"]
    ours = base_config(rootless=rootless, host_uid=mapped, host_gid=mapped)
    assert ours["process"]["terminal"] is False
    assert reference["process"]["terminal"] is True
    assert posture_fields(ours) == posture_fields(reference)
