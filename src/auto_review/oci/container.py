"""Container lifecycle on the host side: state directory, create, start, kill, delete.

State layout (one directory per container under the state root, all 0700):
    <root>/<id>/state.json   the record written once the container is created
    <root>/<id>/start.sock   the init's start socket; present while status is "created"
    <root>/.validated/<sha>  markers of config.json bytes already schema-validated
Status is derived, never stored: the init's pid alive with the recorded start time means
"created" while start.sock exists and "running" after; otherwise "stopped". A directory
without state.json is a create in progress (or one killed mid-way): "creating".
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from auto_review.oci import capabilities, hooks, namespaces, rlimits
from auto_review.oci import init as container_init
from auto_review.oci.errors import OciError, SpecError, StateError, StepError
from auto_review.oci.spec import load_bundle

OCI_VERSION = "1.3.0"  # the runtime-spec version of the shipped schemas
STATE_FILE = "state.json"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


# ------------------------------------------------------------------ state root and records


def state_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(os.path.abspath(root))
    if os.geteuid() == 0:
        return Path("/run/auto-review-oci")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir or not os.path.isdir(runtime_dir):
        raise OciError("no state root: pass --root, or set XDG_RUNTIME_DIR to a directory "
                       "this user owns")
    return Path(runtime_dir) / "auto-review-oci"


def check_id(container_id: str) -> None:
    if not _ID_PATTERN.match(container_id):
        raise OciError(f"invalid container id {container_id!r}: letters, digits and _.+- "
                       "only, at most 128 characters")


def _container_dir(root: Path, container_id: str) -> Path:
    check_id(container_id)
    return root / container_id


def read_record(root: Path, container_id: str) -> dict[str, Any]:
    directory = _container_dir(root, container_id)
    try:
        return json.loads((directory / STATE_FILE).read_bytes())
    except FileNotFoundError:
        if directory.is_dir():
            return {"id": container_id, "pid": 0, "creating": True, "bundle": ""}
        raise StateError(f"container {container_id} does not exist") from None
    except ValueError as exc:
        raise StateError(f"container {container_id}: unreadable state: {exc}") from exc


def _write_json_atomic(path: Path, document: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(document).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def process_start_time(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def status_of(record: dict[str, Any], directory: Path) -> str:
    if record.get("creating"):
        return "creating"
    info = process_start_time(record["pid"]) if record.get("pid") else None
    if info is None or info[0] in ("Z", "X") or info[1] != record.get("pid_start"):
        return "stopped"
    if (directory / container_init.START_SOCKET).exists():
        return "created"
    return "running"


def public_state(record: dict[str, Any], status: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": record["id"],
        "status": status,
        "pid": record.get("pid", 0) if status in ("created", "running") else 0,
        "bundle": record.get("bundle", ""),
        "rootfs": record.get("rootfs", ""),
        "created": record.get("created", ""),
        "owner": record.get("owner", ""),
    }
    if record.get("annotations"):
        state["annotations"] = record["annotations"]
    return state


def container_state(root: Path, container_id: str) -> dict[str, Any]:
    record = read_record(root, container_id)
    return public_state(record, status_of(record, root / container_id))


def _timestamp() -> str:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def _owner() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# ------------------------------------------------------------------ create


class Created:
    """What create hands back: the record, the init's pid, and in run mode the open
    sync socket the START message goes through."""

    __slots__ = ("cgroup", "directory", "init_pid", "record", "sync_fd")

    def __init__(self, record: dict[str, Any], directory: Path, init_pid: int,
                 sync_fd: int, cgroup: Any) -> None:
        self.record = record
        self.directory = directory
        self.init_pid = init_pid
        self.sync_fd = sync_fd
        self.cgroup = cgroup


def _plan(container_id: str, bundle_dir: str | os.PathLike[str], root: Path,
          preserve_fds: int, stdio: tuple[int, int, int] | None,
          run_mode: bool) -> container_init.LaunchPlan:
    bundle = load_bundle(bundle_dir, root / ".validated")
    config = bundle.config
    linux = config.get("linux") or {}
    process = config["process"]
    plan = container_init.LaunchPlan()
    plan.config = config
    plan.container_id = container_id
    plan.bundle = str(bundle.path)
    plan.rootfs = str(bundle.rootfs)
    plan.state_dir = str(root / container_id)
    plan.run_mode = run_mode
    plan.preserve_fds = preserve_fds
    plan.stdio = stdio
    plan.ns_plan = namespaces.NamespacePlan(linux.get("namespaces") or [])
    plan.uid_maps = namespaces.default_mappings(linux.get("uidMappings"), os.geteuid())
    plan.cap_masks = capabilities.parse(process.get("capabilities"))
    plan.rlimits = rlimits.parse(process.get("rlimits"))
    if linux.get("seccomp") is not None:
        from auto_review.oci.seccomp import SeccompFilter

        plan.seccomp_filter = SeccompFilter.from_spec(linux["seccomp"])
    annotations = config.get("annotations") or {}
    if annotations:
        from auto_review.oci import landlock

        plan.landlock_policy = landlock.policy_from_annotations(annotations)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError as exc:
            raise StepError("preserve-fds", exc.errno or errno.EBADF, str(fd)) from exc
    return plan


def _make_cgroup(container_id: str, config: dict[str, Any]) -> Any:
    linux = config.get("linux") or {}
    if not linux.get("resources"):
        return None
    from auto_review.oci import cgroups

    best_effort = cgroups.best_effort_from_annotations(config.get("annotations") or {})
    return cgroups.Cgroup.create(container_id, linux.get("cgroupsPath"), linux["resources"],
                                 best_effort=best_effort)


def create(container_id: str, bundle_dir: str | os.PathLike[str], root: Path, *,
           pid_file: str | os.PathLike[str] | None, preserve_fds: int,
           stdio: tuple[int, int, int] | None, run_mode: bool) -> Created:
    if preserve_fds < 0:
        raise OciError("--preserve-fds must be >= 0")
    directory = _container_dir(root, container_id)
    plan = _plan(container_id, bundle_dir, root, preserve_fds, stdio, run_mode)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        raise StateError(f"container {container_id} already exists") from None
    cleanup = _Cleanup(directory, pid_file)
    try:
        plan.namespace_fds = plan.ns_plan.open_join_paths()  # type: ignore[union-attr]
        cleanup.cgroup = _make_cgroup(container_id, plan.config)
        created = _spawn(plan, directory, cleanup, pid_file)
    except BaseException:
        cleanup.run()
        raise
    finally:
        for _, _, fd in plan.namespace_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return created


class _Cleanup:
    """Undo a failed create: kill what was started, remove the cgroup and the state dir.
    Mounts need no undoing: they live only in the init's mount namespace."""

    def __init__(self, directory: Path, pid_file: str | os.PathLike[str] | None) -> None:
        self.directory = directory
        self.pid_file = pid_file
        self.cgroup: Any = None
        self.pids: list[int] = []
        self.fds: list[int] = []

    def run(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        if self.cgroup is not None:
            # never let a cleanup error hide the error that made us clean up
            with contextlib.suppress(OciError):
                self.cgroup.destroy()
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.pid_file)
        remove_state_dir(self.directory)


def _reap(pid: int) -> int | None:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def remove_state_dir(directory: Path) -> None:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(directory / name)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def _spawn(plan: container_init.LaunchPlan, directory: Path, cleanup: _Cleanup,
           pid_file: str | os.PathLike[str] | None) -> Created:
    minimum_fd = 3 + plan.preserve_fds
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent_fd = container_init.high_fd(parent_sock.detach(), minimum_fd)
    child_fd = container_init.high_fd(child_sock.detach(), minimum_fd)
    cleanup.fds.append(parent_fd)
    intermediate = os.fork()
    if intermediate == 0:
        os.close(parent_fd)
        container_init.intermediate_main(plan, child_fd)  # never returns
    os.close(child_fd)
    cleanup.pids.append(intermediate)
    config = plan.config
    ns_plan = plan.ns_plan
    assert ns_plan is not None
    init_pid = 0
    while True:
        message = os.read(parent_fd, container_init.MAX_MESSAGE)
        if message == b"SYNC":
            if ns_plan.new_user:
                linux = config.get("linux") or {}
                gid_maps = namespaces.default_mappings(linux.get("gidMappings"), os.getegid())
                namespaces.write_id_maps(intermediate, plan.uid_maps, gid_maps,
                                         privileged=os.geteuid() == 0)
            if cleanup.cgroup is not None:
                cleanup.cgroup.add_process(intermediate)
            os.write(parent_fd, b"GO")
        elif message.startswith(b"PID "):
            init_pid = int(message[4:])
            cleanup.pids.insert(0, init_pid)
            _reap(intermediate)
            cleanup.pids.remove(intermediate)
            if "oomScoreAdj" in config["process"]:
                _write_oom_score_adj(init_pid, config["process"]["oomScoreAdj"])
        elif message == b"HOOKS":
            config_hooks = config.get("hooks") or {}
            state = plan.hook_state("creating", init_pid)
            hooks.run_hooks("prestart", config_hooks.get("prestart"), state)
            hooks.run_hooks("createRuntime", config_hooks.get("createRuntime"), state)
            os.write(parent_fd, b"GO")
        elif message == b"READY":
            break
        elif message.startswith(b"ERR "):
            raise container_init.decode_error(message)
        else:
            raise StepError("init", errno.EPIPE, _death_note(init_pid or intermediate))
    record = {
        "id": plan.container_id,
        "pid": init_pid,
        "pid_start": (process_start_time(init_pid) or ("", 0))[1],
        "bundle": plan.bundle,
        "rootfs": plan.rootfs,
        "created": _timestamp(),
        "owner": _owner(),
        "annotations": config.get("annotations") or {},
        # every directory the cgroup made (parents first): what delete must remove
        "cgroup_paths": cleanup.cgroup.created_paths() if cleanup.cgroup is not None else [],
        "cgroup_applied": cleanup.cgroup.applied if cleanup.cgroup is not None else False,
        "cgroup_reason": cleanup.cgroup.reason if cleanup.cgroup is not None else
        "no linux.resources",
        "hooks": {phase: (config.get("hooks") or {}).get(phase) or []
                  for phase in ("poststart", "poststop")},
    }
    if pid_file is not None:
        _write_pid_file(Path(pid_file), init_pid)
    _write_json_atomic(directory / STATE_FILE, record)
    if plan.run_mode:
        cleanup.fds.remove(parent_fd)
        return Created(record, directory, init_pid, parent_fd, cleanup.cgroup)
    os.close(parent_fd)
    cleanup.fds.remove(parent_fd)
    return Created(record, directory, init_pid, -1, cleanup.cgroup)


def _death_note(pid: int) -> str:
    """Why a child closed the sync socket without a word (it was killed, typically by
    the OOM killer or a signal from outside)."""
    try:
        status = os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return "container init exited during set-up"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"container init killed by {signal.Signals(-code).name} during set-up"
    return f"container init exited with status {code} during set-up"


def _write_oom_score_adj(pid: int, value: int) -> None:
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        raise StepError("oom-score-adj", exc.errno or errno.EIO, path) from exc


def _write_pid_file(path: Path, pid: int) -> None:
    path = Path(os.path.abspath(path))
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(str(pid))
        os.replace(temporary, path)
    except OSError as exc:
        raise StepError("pid-file", exc.errno or errno.EIO, str(path)) from exc


# ------------------------------------------------------------------ start, kill, delete


def send_start(start_fd: int) -> None:
    """Send START and wait for the init's answer: EOF means execve happened."""
    try:
        os.write(start_fd, b"START")
        answer = os.read(start_fd, container_init.MAX_MESSAGE)
    finally:
        os.close(start_fd)
    if answer.startswith(b"ERR "):
        raise container_init.decode_error(answer)


def start(root: Path, container_id: str) -> None:
    record = read_record(root, container_id)
    directory = root / container_id
    status = status_of(record, directory)
    if status != "created":
        raise StateError(f"cannot start container {container_id} in state {status}")
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(f"/proc/self/fd/{dir_fd}/{container_init.START_SOCKET}")
        os.unlink(directory / container_init.START_SOCKET)
    except OSError as exc:
        connection.close()
        raise StateError(f"cannot start container {container_id}: {exc.strerror}") from exc
    finally:
        os.close(dir_fd)
    send_start(connection.detach())
    hooks.run_hooks_warn("poststart", record.get("hooks", {}).get("poststart"),
                         public_state(record, "running"))


def parse_signal(value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    number = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if number is None:
        raise OciError(f"unknown signal {value!r}")
    return int(number)


def kill(root: Path, container_id: str, signal_value: int | str) -> None:
    number = parse_signal(signal_value)
    record = read_record(root, container_id)
    status = status_of(record, root / container_id)
    if status not in ("created", "running"):
        raise StateError(f"cannot kill container {container_id} in state {status}")
    try:
        os.kill(record["pid"], number)
    except ProcessLookupError as exc:
        raise StateError(f"container {container_id} is not running") from exc


def _wait_gone(pid: int, start_ticks: int, timeout: float = 10.0) -> None:
    try:
        if os.waitpid(pid, 0)[0] == pid:
            return
    except ChildProcessError:
        pass  # not our child: it was created by another invocation
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = process_start_time(pid)
        if info is None or info[1] != start_ticks or info[0] in ("Z", "X"):
            return
        time.sleep(0.002)
    raise StepError("delete", errno.ETIMEDOUT, f"pid {pid} did not exit")


def delete(root: Path, container_id: str, *, force: bool, cgroup: Any = None) -> None:
    """Stop (when forced) and remove a container. cgroup: the live Cgroup object when the
    caller created the container itself; otherwise the recorded directories are removed."""
    record = read_record(root, container_id)
    directory = root / container_id
    status = status_of(record, directory)
    if status == "running" and not force:
        raise StateError(f"cannot delete container {container_id} that is not stopped: "
                         "running (use --force)")
    if status == "creating" and not force:
        raise StateError(f"container {container_id} is being created (use --force)")
    if status in ("created", "running"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record["pid"], signal.SIGKILL)
        _wait_gone(record["pid"], record.get("pid_start", 0))
    elif record.get("pid"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record["pid"], os.WNOHANG)  # our own zombie, if we made it
    if cgroup is not None:
        cgroup.destroy()
    else:
        remove_cgroup(record.get("cgroup_paths") or [])
    remove_state_dir(directory)
    hooks.run_hooks_warn("poststop", (record.get("hooks") or {}).get("poststop"),
                         public_state(record, "stopped"))


def remove_cgroup(paths: list[str]) -> None:
    """Remove the container's cgroup directories, deepest first (the processes are gone;
    a dying process can keep a cgroup busy for a moment)."""
    for path in reversed(paths):
        for _ in range(500):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise StepError("cgroup-remove", exc.errno or errno.EIO, path) from exc
                time.sleep(0.002)
        else:
            raise StepError("cgroup-remove", errno.EBUSY, path)


def list_all(root: Path) -> list[dict[str, Any]]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    states = []
    for name in names:
        if name.startswith(".") or not (root / name).is_dir():
            continue
        try:
            states.append(container_state(root, name))
        except OciError:
            continue
    return states


__all__ = ["OciError", "SpecError", "StateError", "StepError"]
