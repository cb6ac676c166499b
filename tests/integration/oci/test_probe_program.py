"""The probe itself, run outside any container: its report must match what the host shows."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess

import probe as probe_module
from bundles import HOST_PYTHON, PROBE_SOURCE
from conftest import HostFacts, LoopbackServer


def run_probe_on_host(*args: str) -> dict:
    completed = subprocess.run(
        [HOST_PYTHON, "-I", str(PROBE_SOURCE), *args],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(completed.stdout)


def test_host_report_matches_the_host(host: HostFacts, loopback_server: LoopbackServer):
    report = run_probe_on_host("--connect", loopback_server.address, "--write-dir", "/tmp")
    assert report["identity"]["uid"] == list(os.getresuid())
    assert report["identity"]["gid"] == list(os.getresgid())
    for name, link in host["namespaces"].items():
        if name in report["namespaces"]:
            assert report["namespaces"][name] == link, name
    assert report["hostname"] == host["hostname"]
    assert sorted(iface["name"] for iface in report["interfaces"]) == host["interfaces"]
    assert report["security"]["seccomp"] == "disabled"
    assert report["denied_syscall"]["errno"] is None
    assert report["reach"]["connected"] is True
    assert b"probe\n" in loopback_server.received
    assert report["writes"]["/tmp"] == "ok"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert report["rlimits"]["RLIMIT_NOFILE"] == [soft, hard]
    assert sorted(report["security"]["capabilities"]["bounding"]) == sorted(host["bounding"])
    assert any(mount["destination"] == "/" for mount in report["mounts"])


def test_unreachable_target_reports_the_errno(loopback_server: LoopbackServer):
    # A port nothing listens on: bind one, close it, connect to it.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    report = run_probe_on_host("--connect", f"127.0.0.1:{port}")
    assert report["reach"] == {
        "target": f"127.0.0.1:{port}", "connected": False, "error": "ECONNREFUSED",
    }  # fmt: skip


def test_mountinfo_escapes_are_decoded():
    assert probe_module.unescape_mount_field("/mnt/a\\040b\\011c\\134d") == "/mnt/a b\tc\\d"
    assert probe_module.unescape_mount_field("/plain") == "/plain"


def test_capability_masks_decode_by_bit_number():
    assert probe_module.capability_names(0) == []
    assert probe_module.capability_names(1 << 21 | 1) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert probe_module.capability_names(1 << 63) == ["CAP_63"]
