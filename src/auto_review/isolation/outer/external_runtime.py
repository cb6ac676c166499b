"""Run the staged bundle with an operator-chosen runtime (runc, crun, youki).

The command is the one the three share: ``RT --root STATE run --bundle DIR --preserve-fds
N ID``. The listening socket and the settings pipe must be descriptors 3 and 4 of the
runtime process, so it is started with ``posix_spawn`` whose file actions put them there
(no ``preexec_fn`` in a process that already runs the egress proxy thread). ``setpriv
--pdeathsig KILL`` in front of it makes the runtime die with the launcher, and the
inner gateway dies with the runtime (its own parent-death signal).

crun 1.8 refuses this host's hybrid cgroup layout (a cgroup2 mount at
``/sys/fs/cgroup/unified`` next to the v1 controllers). As root it therefore runs in a
private mount namespace in which that mount is unmounted; the host's mounts are untouched.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from auto_review.isolation.secrets_pipe import LISTEN_FD

HYBRID_CGROUP2_MOUNT = Path("/sys/fs/cgroup/unified")
HIDE_CGROUP2_SCRIPT = (
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi;"
    ' exec "$@"'
)
KNOWN_RUNTIMES = ("runc", "crun", "youki")
# Spawned descriptors start above any the child must own (3, 4, ...).
_HIGH_FD = 64


class ExternalRuntimeError(RuntimeError):
    """The external runtime cannot be used; the message names the path and the cause."""


def resolve_runtime(path: Path) -> Path:
    """An absolute, executable runtime path (a bare name is looked up in PATH)."""
    text = str(path)
    found = shutil.which(text) if "/" not in text else text
    if found is None:
        raise ExternalRuntimeError(f"OCI runtime {text!r} not found in PATH")
    resolved = Path(found)
    if not resolved.is_file() or not os.access(resolved, os.X_OK):
        raise ExternalRuntimeError(f"OCI runtime {text} is not an executable file")
    return resolved


def runtime_name(path: Path) -> str:
    name = path.name
    for known in KNOWN_RUNTIMES:
        if name.startswith(known):
            return known
    return name


def is_hybrid_cgroup_host() -> bool:
    return os.path.ismount(HYBRID_CGROUP2_MOUNT)


def run_command(
    runtime: Path, state_root: Path, bundle: Path, container_id: str, preserve_fds: int
) -> list[str]:
    argv = [str(runtime), "--root", str(state_root), "run", "--bundle", str(bundle),
            "--preserve-fds", str(preserve_fds), container_id]  # fmt: skip
    if runtime_name(runtime) == "crun" and os.geteuid() == 0 and is_hybrid_cgroup_host():
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c",
                HIDE_CGROUP2_SCRIPT, "sh", *argv]  # fmt: skip
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ExternalRuntimeError(
            "setpriv (util-linux) is needed to tie the runtime's life "
            "to the launcher's and was not found in PATH"
        )
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def spawn(argv: Sequence[str], fds: Sequence[int], env: Mapping[str, str]) -> int:
    """Start ``argv`` with ``fds`` as its descriptors 3, 4, ...; returns the pid."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD) for fd in fds]
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd, LISTEN_FD + index) for index, fd in enumerate(high)]
        return os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
    except OSError as exc:
        raise ExternalRuntimeError(f"cannot start {argv[0]}: {exc.strerror}") from None
    finally:
        for fd in high:
            os.close(fd)


def remove_stopped_containers(runtime: Path, state_root: Path) -> None:
    """Delete the runtime's records of stopped containers (their launcher died).

    Only ``stopped`` ones: another launcher of the same user may be running its own."""
    if not state_root.is_dir():
        return
    for entry in sorted(state_root.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        base = [str(runtime), "--root", str(state_root)]
        state = subprocess.run(
            [*base, "state", entry.name], capture_output=True, text=True, check=False, timeout=30
        )
        try:
            status = json.loads(state.stdout).get("status") if state.returncode == 0 else None
        except ValueError:
            status = None
        if status == "stopped":
            subprocess.run(
                [*base, "delete", "--force", entry.name],
                capture_output=True,
                check=False,
                timeout=30,
            )
