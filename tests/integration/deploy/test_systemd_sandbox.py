"""The embedded container starts and verifies itself inside the sandbox the systemd unit
asks for, and fails where docs/DEPLOYMENT.md says an option would break it.

There is no systemd as PID 1 here, so the unit's mount and credential options are
reproduced with util-linux, as systemd applies them, around the real `auto-review gateway`
run as an unprivileged user (the unit's `User=`):

- `ProtectSystem=strict`: the root mount and `/usr`, `/etc` read-only; the state and
  runtime directories (`StateDirectory=`, `RuntimeDirectory=`) stay writable binds;
- `ProtectHome=yes`: empty, inaccessible `/home` and `/root`;
- `ProtectProc=invisible`: `/proc` mounted again with `hidepid=invisible`;
- `PrivateDevices=yes`: a tmpfs `/dev` with only the pseudo-devices and the pty subsystem;
- `CapabilityBoundingSet=` (empty), `AmbientCapabilities=` (empty), `NoNewPrivileges=yes`,
  `User=`: `setpriv`.

With `SINGLE_FILE_UNDER_TEST` naming the file `scripts/build-release` made (as `.ci/run` gives
it), the same sandbox also runs that file as the program, with `AR_UNPACK_CACHE` naming a
writable directory of the user's for its unpacked program (the unit's `CacheDirectory=`).
It also runs the `auto-review` command of the wheel installed with `uv tool install`
outside any home directory, as docs/DEPLOYMENT.md has it (`UV_TOOL_DIR=/opt/auto-review`),
with no `PYTHONPATH`.

Not reproduced: the seccomp-based options (`SystemCallFilter=`, `RestrictNamespaces=`,
`RestrictAddressFamilies=`, `LockPersonality=`...), `PrivateTmp=` (the test user's files
live in /tmp) and the cgroup options.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.tool_install import ToolInstall, uv_tool_install, wheel_under_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "isolation"))

import launcher_support as support

# $1 state/work directory (the unpack cache is inside it), $2 runtime directory, $3
# "tunables" to add ProtectKernelTunables' read-only /proc/sys, then the command. Runs as
# root in a private mount namespace.
SANDBOX = r"""
set -eu
work="$1"; runtime="$2"; tunables="$3"; shift 3
mount --make-rprivate /
# PrivateDevices=yes
olddev=$(mktemp -d)
mount --bind /dev "$olddev"
mount -t tmpfs -o nosuid,noexec,mode=755 tmpfs /dev
for node in null zero full random urandom tty ptmx; do
    touch "/dev/$node"; mount --bind "$olddev/$node" "/dev/$node"
done
mkdir /dev/pts /dev/shm
mount --bind "$olddev/pts" /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
umount "$olddev"
# StateDirectory=, CacheDirectory= and RuntimeDirectory= stay writable under
# ProtectSystem=strict.
mount --bind "$work" "$work"
mount --bind "$runtime" "$runtime"
# ProtectSystem=strict. The root mount itself is made read-only: a bind stacked over /
# would leave this process's root below the namespace's, and the kernel refuses a user
# namespace to a process whose root is not its mount namespace's (as in a chroot).
mount -o remount,bind,ro /
for dir in /usr /etc /boot; do
    if mountpoint -q "$dir"; then mount -o remount,bind,ro "$dir"; fi
done
# ProtectHome=yes
mount -t tmpfs -o ro,mode=000 tmpfs /home
mount -t tmpfs -o ro,mode=000 tmpfs /root
# ProtectProc=invisible
mount -t proc -o nosuid,nodev,noexec,hidepid=invisible proc /proc
if [ "$tunables" = tunables ]; then
    # ProtectKernelTunables=yes (the part that matters here)
    mount --bind /proc/sys /proc/sys
    mount -o remount,bind,ro /proc/sys
fi
exec "$@"
"""


# The program the unit's ExecStart would name: the installed package's command (here the
# package run by the Debian interpreter), the wheel installed as a tool and, when given, the
# single file.
SINGLE_FILE = os.environ.get("SINGLE_FILE_UNDER_TEST")
PROGRAMS = ["package", "tool-install", *(["single-file"] if SINGLE_FILE else [])]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def tool(sandbox: support.UserSandbox) -> ToolInstall:
    """The wheel installed as a tool where the service user can read it (not under a home)."""
    base = sandbox.base / "tool-install"
    return uv_tool_install(base / "opt", wheel_under_test(base / "wheel"))


@pytest.fixture
def services() -> Iterator[support.LoopbackHttp]:
    server = support.LoopbackHttp()
    yield server
    server.close()


def program_argv(
    program: str, sandbox: support.UserSandbox, tool: ToolInstall | None
) -> list[str]:
    if program == "package":
        return [sandbox.run_as.python, "-m", "auto_review.cli.main"]
    if program == "tool-install":
        assert tool is not None
        return [str(tool.command)]
    assert SINGLE_FILE
    # Where the unprivileged user can run it (0755 in a 0755 directory).
    copy = sandbox.base / "auto-review"
    if not copy.exists():
        shutil.copy(SINGLE_FILE, copy)
        copy.chmod(0o755)
    return [str(copy)]


def launch_in_unit_sandbox(
    sandbox: support.UserSandbox,
    services: support.LoopbackHttp,
    name: str,
    *,
    tunables: bool,
    program: str = "package",
    tool: ToolInstall | None = None,
) -> support.Launcher:
    run_as = sandbox.run_as
    workdir = sandbox.base / name
    workdir.mkdir()
    run_as.own(workdir)
    # PrivateTmp=: a private, writable temporary directory; CacheDirectory=: the single
    # file's unpack cache, this user's, 0700.
    private_tmp = workdir / "tmp"
    private_tmp.mkdir(mode=0o700)
    run_as.own(private_tmp)
    cache = workdir / "cache"
    cache.mkdir(mode=0o700)
    run_as.own(cache)
    settings = support.gateway_settings(
        services.url, services.url, workdir / "state", support.free_port()
    )
    env_file = workdir / "gateway.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    run_as.own(env_file)
    identity = [
        "setpriv", f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups",
        "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs",
    ]  # fmt: skip
    argv = [
        "unshare", "--mount", "sh", "-c", SANDBOX, "sh",
        str(workdir), str(run_as.runtime_dir), "tunables" if tunables else "-",
        *identity, *program_argv(program, sandbox, tool), "gateway",
        "--env-file", str(env_file),
    ]  # fmt: skip
    log_path = workdir / "launcher-0.log"
    env = {**run_as.env(), "TMPDIR": str(private_tmp), "AR_UNPACK_CACHE": str(cache)}
    if program == "tool-install":
        del env["PYTHONPATH"]  # the installed command imports its own environment only
    with log_path.open("wb") as log:
        # sh and setpriv exec: the pid is the launcher's.
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
        )
    return support.Launcher(
        process, run_as, "http://" + settings["AR_GATEWAY_BIND"], log_path, workdir
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_embedded_gateway_verifies_its_boundary_inside_the_units_sandbox(
    sandbox: support.UserSandbox,
    services: support.LoopbackHttp,
    program: str,
    request: pytest.FixtureRequest,
) -> None:
    tool = request.getfixturevalue("tool") if program == "tool-install" else None
    launcher = launch_in_unit_sandbox(
        sandbox, services, f"unit-{program}", tunables=False, program=program, tool=tool
    )
    try:
        support.wait_healthy(launcher)
        launcher_status = support.proc_status(launcher.pid)
        launcher_argv = support.cmdline(launcher.pid)
        with launcher.client() as client:
            posture = client.get("/info").json()["runtime_isolation"]
    finally:
        status = launcher.stop()
    # The launcher ran as the unit would make it: unprivileged, no capability at all.
    assert launcher_status["Uid"].split()[0] == str(sandbox.run_as.uid)
    assert int(launcher_status["CapBnd"], 16) == 0
    assert int(launcher_status["CapEff"], 16) == 0
    assert launcher_status["NoNewPrivs"] == "1"
    if tool is not None:  # the tool's interpreter (its shebang) runs the installed command
        assert launcher_argv[:2] == [f"{tool.environment}/bin/python", str(tool.command)]
    assert posture["mode"] == "oci" and posture["runtime"] == "embedded"
    assert posture["verified"] is True, posture
    assert posture["failed"] == []
    assert posture["checks"]["landlock"]["ok"] is True
    assert status == 0, launcher.logs()


def test_protect_kernel_tunables_stops_the_container(
    sandbox: support.UserSandbox, services: support.LoopbackHttp
) -> None:
    # Why the unit leaves ProtectKernelTunables off: with /proc/sys read-only bound over
    # itself the kernel refuses the container its own /proc, and the start fails closed.
    launcher = launch_in_unit_sandbox(sandbox, services, "tunables", tunables=True)
    try:
        status = launcher.process.wait(timeout=60)
    finally:
        launcher.stop()
    logs = launcher.logs()
    assert status == 3, logs
    assert "isolation setup failed at step runtime" in logs
    assert "step=mount:proc errno=EPERM" in logs
