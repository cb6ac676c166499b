"""Launcher pieces on their own: the external runtime's command, the bundle's environment,
the egress socket name, the one-line step errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from auto_review.isolation.inner.entry import (
    ENV_CGROUP_LIMITS,
    ENV_HOST_NAMESPACES,
    ENV_RUNTIME,
    boundary_facts,
)
from auto_review.isolation.outer import external_runtime
from auto_review.isolation.outer.external_runtime import ExternalRuntimeError
from auto_review.isolation.outer.inner_path import package_root
from auto_review.isolation.outer.launcher import (
    LaunchError,
    LaunchStep,
    egress_socket_name,
    forwarding_signals,
    inner_environment,
    scrubbed_environment,
)
from auto_review.wiring.redaction import install_secrets

SECRET = "launcher-parts-secret-0123456789abcdef0123"


def test_runc_command_preserves_two_descriptors_and_dies_with_the_launcher(tmp_path: Path):
    argv = external_runtime.run_command(Path("/usr/sbin/runc"), tmp_path, tmp_path / "b", "c1", 2)
    assert argv[1:4] == ["--pdeathsig", "KILL", "--"]
    assert argv[0].endswith("setpriv")
    assert argv[4:] == ["/usr/sbin/runc", "--root", str(tmp_path), "run", "--bundle",
                        str(tmp_path / "b"), "--preserve-fds", "2", "c1"]  # fmt: skip


def test_crun_as_root_on_a_hybrid_host_hides_the_cgroup2_mount(tmp_path: Path):
    argv = external_runtime.run_command(Path("/usr/bin/crun"), tmp_path, tmp_path, "c2", 2)
    wrapped = os.geteuid() == 0 and external_runtime.is_hybrid_cgroup_host()
    assert ("--propagation" in argv) is wrapped
    if wrapped:
        assert argv[argv.index("--") + 1].endswith("unshare")
        assert "umount /sys/fs/cgroup/unified" in " ".join(argv)
    assert argv[-3:] == ["--preserve-fds", "2", "c2"]


def test_runtime_paths_are_checked(tmp_path: Path):
    with pytest.raises(ExternalRuntimeError, match="not found in PATH"):
        external_runtime.resolve_runtime(Path("no-such-runtime-here"))
    plain = tmp_path / "runc"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(ExternalRuntimeError, match="not an executable"):
        external_runtime.resolve_runtime(plain)
    assert external_runtime.runtime_name(Path("/opt/bin/youki-0.3")) == "youki"


def test_spawned_runtime_gets_the_descriptors_as_3_and_4(tmp_path: Path):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"settings")
    os.close(write_fd)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        out = tmp_path / "fds"
        script = (
            f"import os, socket; s = socket.socket(fileno=3); "
            f"open({str(out)!r}, 'w').write(repr((s.getsockname()[1], os.read(4, 99))))"
        )
        pid = external_runtime.spawn(
            ["/usr/bin/python3", "-c", script], [listener.fileno(), read_fd], {"PATH": "/usr/bin"}
        )  # fmt: skip
        _, status = os.waitpid(pid, 0)
        port = listener.getsockname()[1]
    os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_text() == repr((port, b"settings"))


def test_bundle_environment_holds_facts_not_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("AR_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = inner_environment("runc", rootless=True, required=("landlock",))
    assert not [key for key in env if key.startswith("AR_")]
    assert SECRET not in json.dumps(env)
    # The launcher's PYTHONPATH first, then what site would add, the package's root last.
    search = env["PYTHONPATH"].split(os.pathsep)
    assert search[0] == str(tmp_path)
    assert package_root() in search
    facts = boundary_facts(env)
    assert facts.runtime == "runc"
    assert facts.host_namespaces["net"] == os.readlink("/proc/self/ns/net")
    assert env[ENV_CGROUP_LIMITS].startswith("not applied")
    assert ENV_HOST_NAMESPACES in env and ENV_RUNTIME in env
    assert "AR_WEBHOOK_SECRET" not in scrubbed_environment()


def test_garbled_facts_verify_nothing():
    facts = boundary_facts({ENV_HOST_NAMESPACES: "not json"})
    assert facts.host_namespaces == {}
    assert facts.runtime == "unknown"


def test_egress_socket_is_named_after_the_listening_address():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert egress_socket_name(listener) == f"egress-127_0_0_1-{port}.sock"


def test_step_errors_are_one_redacted_line():
    install_secrets([SECRET])
    error = LaunchError(LaunchStep.BUNDLE, f"refused:\n value {SECRET} found")
    assert str(error) == "isolation setup failed at step bundle: refused: value [REDACTED] found"


def test_a_stop_signal_before_the_runtime_exists_reaches_it_once_it_does():
    with forwarding_signals() as child:
        signal.raise_signal(signal.SIGTERM)  # arrives before there is anyone to relay to
        process = subprocess.Popen(["sleep", "30"])
        child.pid = process.pid
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGTERM

