"""Lifecycle of the embedded runtime, as root: create/start/state/kill/delete transitions
and their errors, pid file, hooks, --preserve-fds, and that delete leaves nothing behind.

Containers here run host binaries from a rootfs of read-only binds (/usr, ld.so.cache),
built by ``make_bundle`` (also used by the fail-closed and rootless tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auto_review.oci import api, container, spec
from auto_review.oci.default_spec import default_spec
from auto_review.oci.errors import StateError, StepError

REPO_SRC = Path(__file__).resolve().parents[3] / "src"


def container_config(args: list[str], *, rootless: bool = False) -> dict[str, Any]:
    config = default_spec(rootless=rootless)
    config["process"]["args"] = args
    config["mounts"] += [
        {"destination": "/usr", "type": "bind", "source": "/usr",
         "options": ["rbind", "ro", "nosuid", "nodev"]},
        {"destination": "/etc/ld.so.cache", "type": "bind", "source": "/etc/ld.so.cache",
         "options": ["bind", "ro"]},
    ]  # fmt: skip
    return config


def make_bundle(parent: Path, config: dict[str, Any], owner: tuple[int, int] | None = None
                ) -> Path:
    bundle = Path(tempfile.mkdtemp(prefix="bundle-", dir=parent))
    rootfs = bundle / "rootfs"
    for directory in ("usr", "etc", "proc", "dev", "sys", "tmp"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "etc" / "ld.so.cache").touch()
    for link in ("bin", "sbin", "lib", "lib64"):
        (rootfs / link).symlink_to(f"usr/{link}")
    spec.validate_against_schema(config)
    (bundle / "config.json").write_text(json.dumps(config))
    for path in [bundle, *bundle.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755)
        if owner is not None:
            os.lchown(path, *owner)
    return bundle


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment holds marker: the runtime's forks inherit its environment,
    so a leftover intermediate or init would show up here."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def cli(root: Path, *args: str, env_marker: str = "", timeout: float = 30,
        extra_fds: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI; output goes through files, since a created container keeps the
    runtime's stdout and stderr open (pipes would never reach EOF)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_SRC), AR_OCI_TEST_MARKER=env_marker or "none")
    command = [sys.executable, "-m", "auto_review.oci", "--root", str(root), *args]
    if extra_fds:
        command = ["/bin/sh", "-c", 'exec "$@" ' + extra_fds, "sh", *command]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        completed = subprocess.run(command, stdout=out, stderr=err, timeout=timeout, env=env,
                                   check=False, stdin=subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, completed.returncode, out.read(), err.read())


def validate_state(state: dict[str, Any]) -> None:
    spec.validate_against_schema(state, "state-schema.json")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the lifecycle tests create containers as root: run them as root")
    state_root = tmp_path / "state"
    yield state_root
    for entry in api.list_containers(root=state_root):
        api.delete(entry["id"], root=state_root, force=True)


def test_create_start_kill_delete_transitions(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))
    pid_file = tmp_path / "init.pid"
    created = api.create("life", bundle, root=root, pid_file=pid_file)
    assert created["status"] == "created"
    pid = int(pid_file.read_text())
    assert created["pid"] == pid
    state = api.state("life", root=root)
    validate_state(state)
    assert (state["status"], state["pid"], state["bundle"]) == ("created", pid, str(bundle))
    assert [c["id"] for c in api.list_containers(root=root)] == ["life"]
    # the init waits for start: it has not executed sleep yet
    assert Path(f"/proc/{pid}/exe").resolve() != Path("/usr/bin/sleep")

    api.start("life", root=root)
    state = api.state("life", root=root)
    validate_state(state)
    assert state["status"] == "running"
    with pytest.raises(StateError, match="in state running"):
        api.start("life", root=root)
    with pytest.raises(StateError, match="not stopped"):
        api.delete("life", root=root)

    api.kill("life", "KILL", root=root)
    deadline = time.monotonic() + 10
    while api.state("life", root=root)["status"] != "stopped":
        assert time.monotonic() < deadline, "container did not stop after SIGKILL"
        time.sleep(0.01)
    state = api.state("life", root=root)
    validate_state(state)
    assert state["pid"] == 0
    with pytest.raises(StateError, match="in state stopped"):
        api.kill("life", "TERM", root=root)
    with pytest.raises(StateError, match="in state stopped"):
        api.start("life", root=root)

    api.delete("life", root=root)
    assert not (root / "life").exists()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(StateError, match="does not exist"):
        api.state("life", root=root)


def test_cli_lifecycle_errors_are_one_line(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))
    first = cli(root, "create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "p"),
                "c1")
    assert first.returncode == 0, first.stderr
    again = cli(root, "create", "--bundle", str(bundle), "c1")
    assert again.returncode == 1
    assert again.stderr.strip().endswith("container c1 already exists")
    state = json.loads(cli(root, "state", "c1").stdout)
    validate_state(state)
    assert state["status"] == "created"
    assert state["pid"] == int((tmp_path / "p").read_text())
    assert cli(root, "start", "c1").returncode == 0
    second = cli(root, "start", "c1")
    assert (second.returncode, second.stderr.count("\n")) == (1, 1)
    assert "cannot start container c1 in state running" in second.stderr
    refused = cli(root, "delete", "c1")
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    listed = cli(root, "list", "--format", "json")
    assert [c["status"] for c in json.loads(listed.stdout)] == ["running"]
    assert cli(root, "delete", "--force", "c1").returncode == 0
    assert not (root / "c1").exists()
    stopped = cli(root, "kill", "c1")
    assert stopped.returncode == 1 and "does not exist" in stopped.stderr


def test_delete_of_a_created_container_needs_force(tmp_path: Path, root: Path) -> None:
    """The runtime spec: deleting a container that is not stopped MUST be an error (runc
    and crun delete a created one anyway). --force kills the waiting init."""
    bundle = make_bundle(tmp_path, container_config(["/bin/true"]))
    pid = api.create("fresh", bundle, root=root)["pid"]
    with pytest.raises(StateError, match="that is not stopped: created"):
        api.delete("fresh", root=root)
    assert api.state("fresh", root=root)["status"] == "created"
    refused = cli(root, "delete", "fresh")
    assert refused.returncode == 1
    assert refused.stderr == ("auto-review oci: cannot delete container fresh that is not "
                              "stopped: created (use --force)\n")
    api.delete("fresh", root=root, force=True)
    assert not Path(f"/proc/{pid}").exists()
    assert not (root / "fresh").exists()


def test_run_returns_the_exit_status_and_cleans_up(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sh", "-c", "exit 7"]))
    assert api.run("exit7", bundle, root=root, forward_signals=False) == 7
    assert not (root / "exit7").exists()
    completed = cli(root, "run", "--bundle", str(bundle), "exit7cli")
    assert completed.returncode == 7
    assert not (root / "exit7cli").exists()


def test_run_reports_128_plus_signal(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))

    def killer() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if api.state("killed", root=root)["status"] == "running":
                    api.kill("killed", "KILL", root=root)
                    return
            except StateError:
                pass
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    assert api.run("killed", bundle, root=root, forward_signals=False) == 128 + 9
    thread.join()


TRAP_SCRIPT = ("trap 'exit 42' TERM; trap 'exit 43' USR1; echo ready; "
               "while :; do sleep 0.05; done")
# A caller of api.run: argv = id, bundle, state root, "thread" (another thread runs while
# it waits) or "single", then signal numbers to block first. Prints the exit status, then
# the caller's blocked and pending signals afterwards and whether SIGINT's handler is back.
RUN_CALLER = """
import signal, sys, threading
from auto_review.oci import api
container_id, bundle, root, mode, *blocked = sys.argv[1:]
if blocked:
    signal.pthread_sigmask(signal.SIG_BLOCK, [int(n) for n in blocked])
if mode == "thread":
    threading.Thread(target=threading.Event().wait, daemon=True).start()
# Python's handler, or SIG_IGN when this process started with SIGINT ignored.
handler = signal.getsignal(signal.SIGINT)
status = api.run(container_id, bundle, root=root)
print(status, sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, []))),
      sorted(map(int, signal.sigpending())),
      signal.getsignal(signal.SIGINT) == handler, flush=True)
"""


def _run_and_signal(command: list[str], root: Path, container_id: str,
                    signals: list[int]) -> tuple[int, bytes]:
    """Start command (a foreground run of a container with TRAP_SCRIPT), send it signals
    once the container's traps are set, and return its exit status and its other output."""
    env = dict(os.environ, PYTHONPATH=str(REPO_SRC))
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert process.stdout is not None
        # The shell says "ready" once its traps are installed: signals are sent only then.
        assert process.stdout.readline() == b"ready\n"
        for number in signals:
            process.send_signal(number)
        rest, _ = process.communicate(timeout=20)
        assert not (root / container_id).exists()
        return process.returncode, rest
    finally:
        # A failed run must not leave its container spinning on the machine.
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)
        with contextlib.suppress(Exception):
            api.delete(container_id, root=root, force=True)


def _cli_run(root: Path, bundle: Path, container_id: str) -> list[str]:
    return [sys.executable, "-m", "auto_review.oci", "--root", str(root), "run", "--bundle",
            str(bundle), container_id]


def test_run_forwards_signals_to_the_container(tmp_path: Path, root: Path) -> None:
    # The CLI alone in its process: the signals are read from a signalfd.
    bundle = make_bundle(tmp_path, container_config(["/bin/sh", "-c", TRAP_SCRIPT]))
    assert _run_and_signal(_cli_run(root, bundle, "fwd"), root, "fwd", [15]) == (42, b"")


def test_run_with_a_poststart_hook_forwards_signals_to_the_container(
        tmp_path: Path, root: Path) -> None:  # fmt: skip
    # A hook started while it waits must not inherit blocked signals: Python handlers relay.
    log = tmp_path / "hooks.log"
    config = container_config(["/bin/sh", "-c", TRAP_SCRIPT])
    config["hooks"] = {"poststart": [{"path": "/bin/sh", "args": [
        "/bin/sh", "-c", 'grep ^SigBlk /proc/self/status >> "$0"', str(log)]}]}
    bundle = make_bundle(tmp_path, config)
    assert _run_and_signal(_cli_run(root, bundle, "fwdhook"), root, "fwdhook", [15]) == (42, b"")
    assert log.read_text() == "SigBlk:\t0000000000000000\n"


def test_run_from_a_threaded_caller_forwards_signals_and_restores_handlers(
        tmp_path: Path, root: Path) -> None:  # fmt: skip
    bundle = make_bundle(tmp_path, container_config(["/bin/sh", "-c", TRAP_SCRIPT]))
    command = [sys.executable, "-c", RUN_CALLER, "fwdthread", str(bundle), str(root), "thread"]
    status, output = _run_and_signal(command, root, "fwdthread", [15])
    assert (status, output) == (0, b"42 [] [] True\n")


def test_run_relays_no_signal_the_caller_blocked_and_restores_its_mask(
        tmp_path: Path, root: Path) -> None:  # fmt: skip
    # SIGUSR1 (10) blocked by the caller stays pending for the caller; SIGTERM is relayed.
    bundle = make_bundle(tmp_path, container_config(["/bin/sh", "-c", TRAP_SCRIPT]))
    command = [sys.executable, "-c", RUN_CALLER, "fwdmask", str(bundle), str(root), "single",
               "10"]  # fmt: skip
    status, output = _run_and_signal(command, root, "fwdmask", [10, 15])
    assert (status, output) == (0, b"42 [10] [10] True\n")


def test_the_container_process_starts_with_no_signal_blocked_or_ignored(
        tmp_path: Path, root: Path) -> None:  # fmt: skip
    # Python ignores SIGPIPE and SIGXFSZ, and the CLI blocks the relayed signals while it
    # waits: none of that may reach the container, nor a poststop hook.
    log = tmp_path / "poststop.log"
    config = container_config(["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
    config["hooks"] = {"poststop": [{"path": "/bin/sh", "args": [
        "/bin/sh", "-c", 'grep ^SigBlk /proc/self/status >> "$0"', str(log)]}]}
    bundle = make_bundle(tmp_path, config)
    completed = cli(root, "run", "--bundle", str(bundle), "sigs")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    assert log.read_text() == "SigBlk:\t0000000000000000\n"


# Modules `auto-review oci run` must not import: each costs milliseconds at every start
# (enum, functools and collections come with socket, signal and contextlib; re with json
# and typing), and the command is held to runc's start-up time.
SLOW_IMPORTS = frozenset({"enum", "socket", "signal", "contextlib", "functools",
                          "collections", "re", "json", "typing", "argparse", "hashlib"})
CONSOLE_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "console" / "auto-review"


def _imported(args: list[str]) -> set[str]:
    """The modules a fresh interpreter without `site` imports to run args."""
    completed = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", *args], capture_output=True, text=True,
        timeout=60, check=False, env={"PYTHONPATH": str(REPO_SRC), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in completed.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_the_run_command_imports_none_of_the_slow_modules(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/true"]))
    command = [str(CONSOLE_SCRIPT), "oci", "--root", str(root), "run", "--bundle", str(bundle)]
    # the first run validates config.json (jsonschema, from site-packages), later ones not
    assert cli(root, "run", "--bundle", str(bundle), "warm").returncode == 0
    imported = _imported([*command, "timed"]) - _imported(["-c", "pass"])
    assert "auto_review.oci.container" in imported
    assert not SLOW_IMPORTS & imported, sorted(SLOW_IMPORTS & imported)


def test_container_output_and_identity(tmp_path: Path, root: Path) -> None:
    config = container_config(["/bin/sh", "-c",
                               "echo $(hostname) $(id -u):$(id -g):$(id -G) $(umask) $PWD; "
                               "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                               "ulimit -n"])
    config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7],
                                 "umask": 0o27}
    config["process"]["cwd"] = "/tmp"
    # a non-root uid keeps capabilities across execve only through the ambient set
    config["process"]["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 99}]
    config["hostname"] = "lifecycle-host"
    bundle = make_bundle(tmp_path, config)
    with tempfile.TemporaryFile("w+") as out:
        code = api.run("ident", bundle, root=root, forward_signals=False,
                       stdio=(0, out.fileno(), out.fileno()))
        out.seek(0)
        lines = out.read().splitlines()
    assert code == 0, lines
    assert lines[0] == "lifecycle-host 1000:1000:1000 5 7 0027 /tmp"
    status = dict(line.split(":\t") for line in lines[1:4])
    assert int(status["CapBnd"], 16) == (1 << 5) | (1 << 0)
    assert int(status["CapEff"], 16) == 1 << 5
    assert status["NoNewPrivs"] == "1"
    assert lines[4] == "77"


def test_mounts_devices_masks_and_readonly_root(tmp_path: Path, root: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from host\n")
    script = (
        "cat /data/hello; touch /data/new && echo data-rw; "
        "touch /probe 2>/dev/null || echo root-ro; "
        "touch /ro/x 2>/dev/null || echo bind-ro; "
        "(echo > /proc/sys/kernel/hostname) 2>/dev/null || echo procsys-ro; "
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
        "test -c /dev/null && test -c /dev/urandom && test -c /dev/tty && echo devices; "
        "test -c /dev/pts/ptmx && echo devpts; "
        "mount | grep ' /tmp ' ; cat /proc/sys/kernel/msgmax"
    )
    config = container_config(["/bin/sh", "-c", script])
    config["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(shared), "options": ["bind"]},
        {"destination": "/ro", "type": "bind", "source": str(shared),
         "options": ["bind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m", "mode=1777"]},
    ]  # fmt: skip
    config["linux"]["sysctl"] = {"kernel.msgmax": "4321"}
    bundle = make_bundle(tmp_path, config)
    with tempfile.TemporaryFile("w+") as out:
        code = api.run("mounts", bundle, root=root, forward_signals=False,
                       stdio=(0, out.fileno(), out.fileno()))
        out.seek(0)
        lines = out.read().splitlines()
    assert code == 0, lines
    assert lines[:5] == ["from host", "data-rw", "root-ro", "bind-ro", "procsys-ro"]
    assert lines[5:7] == ["0", "0"]  # /proc/timer_list is /dev/null, /sys/firmware an empty tmpfs
    assert lines[7:9] == ["devices", "devpts"]
    assert "tmpfs on /tmp type tmpfs (rw,nosuid,nodev,relatime,size=1024k" in lines[9]
    assert lines[10] == "4321"
    assert (shared / "new").exists()
    assert not (root / "mounts").exists()


def test_preserve_fds_passes_exactly_those_fds(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(
        ["/bin/sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"]))
    out3 = tmp_path / "fd3"
    completed = cli(root, "run", "--preserve-fds", "1", "--bundle", str(bundle), "pfds",
                    extra_fds=f"3>{out3} 4>/dev/null")
    assert completed.returncode == 0, completed.stderr
    assert out3.read_text() == "via-fd3\n"
    # 0-2, the preserved 3 and the fd ls opens for the directory: 4 (not the caller's 4)
    fds = completed.stdout.split()
    assert fds == ["0", "1", "2", "3", "4"]
    refused = cli(root, "run", "--preserve-fds", "1", "--bundle", str(bundle), "pfds2")
    assert refused.returncode == 1
    assert "step=preserve-fds errno=EBADF" in refused.stderr


# The state's status at each hook: the create operation (prestart, createRuntime,
# createContainer) is "creating"; startContainer runs before the program: "created".
SPEC_HOOK_STATUS = {"prestart": "creating", "createRuntime": "creating",
                    "createContainer": "creating", "startContainer": "created",
                    "poststart": "running", "poststop": "stopped"}
HOOK_LOG_SCRIPT = 'read -r state; echo "$0 $state" >> "$1"'


def _hook(name: str, log: Path, *, fail: bool = False) -> dict[str, Any]:
    script = HOOK_LOG_SCRIPT + ("; exit 3" if fail else "")
    return {"path": "/bin/sh", "args": ["/bin/sh", "-c", script, name, str(log)]}


def _hook_log(log: Path) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for line in log.read_text().splitlines():
        name, _, state = line.partition(" ")
        entries.append((name, json.loads(state)))
    return entries


def test_hooks_run_in_order_with_the_state_on_stdin(tmp_path: Path, root: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    host_log = logs / "hooks.log"
    config = container_config(["/bin/true"])
    config["mounts"].append({"destination": "/logs", "type": "bind", "source": str(logs),
                             "options": ["bind"]})
    in_container_log = Path("/logs/hooks.log")  # startContainer runs after pivot_root
    config["hooks"] = {
        "prestart": [_hook("prestart", host_log)],
        "createRuntime": [_hook("createRuntime", host_log)],
        "createContainer": [_hook("createContainer", host_log)],
        "startContainer": [_hook("startContainer", in_container_log)],
        "poststart": [_hook("poststart", host_log)],
        "poststop": [_hook("poststop", host_log)],
    }
    bundle = make_bundle(tmp_path, config)
    state = api.create("hooked", bundle, root=root)
    assert [name for name, _ in _hook_log(host_log)] == [
        "prestart", "createRuntime", "createContainer"]
    api.start("hooked", root=root)
    api.delete("hooked", root=root, force=True)
    entries = _hook_log(host_log)
    assert [name for name, _ in entries] == [
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
        "poststop"]
    for name, hook_state in entries:
        validate_state(hook_state)
        assert hook_state["id"] == "hooked"
        assert hook_state["bundle"] == str(bundle)
        assert hook_state["status"] == SPEC_HOOK_STATUS[name], name
        if name != "poststop":
            assert hook_state["pid"] == state["pid"]


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook_fails_create_and_leaves_nothing(
        tmp_path: Path, root: Path, phase: str) -> None:
    log = tmp_path / "hooks.log"
    config = container_config(["/bin/true"])
    config["hooks"] = {phase: [_hook(phase, log, fail=True)]}
    bundle = make_bundle(tmp_path, config)
    marker = f"hookfail-{phase}-{os.getpid()}"
    completed = cli(root, "create", "--bundle", str(bundle), "hf", env_marker=marker)
    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1
    assert f"step=hook-{phase} errno=ECANCELED" in completed.stderr
    assert "(exit status 3)" in completed.stderr
    assert not (root / "hf").exists()
    assert processes_with_marker(marker) == []


def test_a_create_hook_that_outlives_its_timeout_fails_create(tmp_path: Path,
                                                              root: Path) -> None:
    config = container_config(["/bin/true"])
    config["hooks"] = {"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 60"], "timeout": 1}]}
    bundle = make_bundle(tmp_path, config)
    marker = f"hooktimeout-{os.getpid()}"
    started = time.monotonic()
    completed = cli(root, "create", "--bundle", str(bundle), "ht", env_marker=marker)
    assert time.monotonic() - started < 30
    assert completed.returncode == 1
    assert "step=hook-createRuntime errno=ETIMEDOUT" in completed.stderr
    assert not (root / "ht").exists()
    assert processes_with_marker(marker) == []


def test_a_poststop_hook_that_times_out_only_warns(tmp_path: Path, root: Path) -> None:
    config = container_config(["/bin/sleep", "30"])
    config["hooks"] = {"poststop": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 60"], "timeout": 1}]}
    bundle = make_bundle(tmp_path, config)
    assert cli(root, "run", "--detach", "--bundle", str(bundle), "pt").returncode == 0
    deleted = cli(root, "delete", "--force", "pt")
    assert deleted.returncode == 0
    assert "warning: container setup failed: step=hook-poststop errno=ETIMEDOUT" in (
        deleted.stderr)
    assert not (root / "pt").exists()


def test_a_failing_start_container_hook_fails_start(tmp_path: Path, root: Path) -> None:
    config = container_config(["/bin/true"])
    config["hooks"] = {"startContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]}
    bundle = make_bundle(tmp_path, config)
    api.create("startfail", bundle, root=root)
    with pytest.raises(StepError) as caught:
        api.start("startfail", root=root)
    assert caught.value.step == "hook-startContainer"
    assert "exit status 4" in caught.value.path
    deadline = time.monotonic() + 10
    while api.state("startfail", root=root)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    api.delete("startfail", root=root)


def test_failing_poststart_and_poststop_hooks_only_warn(tmp_path: Path, root: Path) -> None:
    bundle_config = container_config(["/bin/sleep", "30"])
    failing = {"path": "/bin/false"}
    bundle_config["hooks"] = {"poststart": [failing], "poststop": [failing]}
    bundle = make_bundle(tmp_path, bundle_config)
    assert cli(root, "create", "--bundle", str(bundle), "warn").returncode == 0
    started = cli(root, "start", "warn")
    assert started.returncode == 0
    assert "warning: container setup failed: step=hook-poststart" in started.stderr
    assert json.loads(cli(root, "state", "warn").stdout)["status"] == "running"
    deleted = cli(root, "delete", "--force", "warn")
    assert deleted.returncode == 0
    assert "step=hook-poststop" in deleted.stderr
    assert not (root / "warn").exists()


def test_delete_leaves_no_cgroup_behind(tmp_path: Path, root: Path) -> None:
    config = container_config(["/bin/sleep", "30"])
    config["linux"]["resources"] = {"pids": {"limit": 64}, "memory": {"limit": 64 << 20}}
    config["linux"]["cgroupsPath"] = f"/ar-oci-lifecycle-{os.getpid()}/cg"
    bundle = make_bundle(tmp_path, config)
    api.create("cg", bundle, root=root)
    record = container.read_record(str(root), "cg")
    paths = record["cgroup_paths"]
    leaves = [path for path in paths if path.endswith("/cg")]
    # a cgroup in every hierarchy, limited or not, each with its parent directory
    hierarchies = host_cgroup_mounts()
    assert sorted(leaves) == sorted(f"{point}{config['linux']['cgroupsPath']}"
                                    for point in hierarchies), paths
    assert len(paths) == 2 * len(hierarchies)
    for path in leaves:
        procs = Path(path, "cgroup.procs").read_text().split()
        assert str(record["pid"]) in procs
    api.start("cg", root=root)
    # a separate invocation deletes it: only the recorded directories are known there
    assert cli(root, "delete", "--force", "cg").returncode == 0
    assert [p for p in paths if os.path.exists(p)] == []
    assert not (root / "cg").exists()


def test_state_root_is_private(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "30"]))
    api.create("private", bundle, root=root)
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / ".validated").stat().st_mode & 0o777 == 0o700
    assert (root / "private").stat().st_mode & 0o777 == 0o700
    assert (root / "private" / container.STATE_FILE).stat().st_mode & 0o777 == 0o600
    api.delete("private", root=root, force=True)
    shutil.rmtree(root)


def _run_capture(root: Path, container_id: str, bundle: Path) -> tuple[int, list[str]]:
    with tempfile.TemporaryFile("w+") as out:
        code = api.run(container_id, bundle, root=root, forward_signals=False,
                       stdio=(0, out.fileno(), out.fileno()))
        out.seek(0)
        return code, out.read().splitlines()


def test_joining_a_namespace_by_path(tmp_path: Path, root: Path) -> None:
    holder = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))
    holder_pid = api.create("holder", holder, root=root)["pid"]
    net_path = f"/proc/{holder_pid}/ns/net"
    config = container_config(["/bin/sh", "-c", "readlink /proc/self/ns/net"])
    config["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "pid"}, {"type": "uts"}, {"type": "ipc"},
        {"type": "network", "path": net_path}]
    code, lines = _run_capture(root, "joiner", make_bundle(tmp_path, config))
    assert code == 0, lines
    assert lines == [os.readlink(net_path)]
    assert lines[0] != os.readlink("/proc/self/ns/net")
    api.delete("holder", root=root, force=True)


def test_seccomp_filter_is_loaded_last(tmp_path: Path, root: Path) -> None:
    config = container_config(["/bin/sh", "-c",
                               "grep Seccomp: /proc/self/status; mkdir /tmp/x; echo $?"])
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}
    code, lines = _run_capture(root, "seccomp", make_bundle(tmp_path, config))
    assert code == 0, lines
    assert lines[0] == "Seccomp:\t2"
    assert "Operation not permitted" in lines[1]
    assert lines[2] == "1"


@pytest.mark.parametrize("no_new_privileges", [True, False])
def test_seccomp_order_depends_on_no_new_privileges(tmp_path: Path, root: Path,
                                                    no_new_privileges: bool) -> None:
    """With noNewPrivileges the filter is loaded last, after the identity switch, so a
    profile denying setresuid and capset still lets the container start. Without it the
    filter is loaded first, while the init is privileged (as runc does), so the same
    profile stops the switch to the user."""
    config = container_config(["/bin/sh", "-c", "id -u; grep Seccomp: /proc/self/status"])
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["noNewPrivileges"] = no_new_privileges
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["setresuid", "setresgid", "capset"],
                      "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    bundle = make_bundle(tmp_path, config)
    if no_new_privileges:
        code, lines = _run_capture(root, "nnp", bundle)
        assert (code, lines) == (0, ["1000", "Seccomp:\t2"])
    else:
        with pytest.raises(StepError) as caught:
            _run_capture(root, "privileged", bundle)
        assert (caught.value.step, caught.value.errno) == ("setuid", 1)


def test_landlock_annotation_confines_the_file_system(tmp_path: Path, root: Path) -> None:
    from auto_review.oci import landlock

    if landlock.landlock_abi() == 0:
        pytest.fail("this kernel has no Landlock; the test expects it on this machine")
    config = container_config(["/bin/sh", "-c",
                               "ls /usr >/dev/null && echo usr-ok; "
                               "touch /tmp/ok && echo tmp-ok; "
                               "ls /etc 2>/dev/null || echo etc-denied"])
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    config["annotations"] = {landlock.LANDLOCK_ANNOTATION: json.dumps(
        {"read_only": ["/usr"], "read_write": ["/tmp", "/dev"], "mandatory": True})}
    code, lines = _run_capture(root, "landlock", make_bundle(tmp_path, config))
    assert code == 0, lines
    assert lines == ["usr-ok", "tmp-ok", "etc-denied"]


def host_cgroup_mounts() -> dict[str, str]:
    """Mount point -> type of every cgroup hierarchy mounted on the host."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            found[fields[4]] = fstype
    return found


def test_cgroup_mount_shows_only_the_containers_own_cgroups(tmp_path: Path, root: Path) -> None:
    parent = f"ar-oci-lifecycle-{os.getpid()}-mount"
    hierarchies = host_cgroup_mounts()
    v1 = sorted(Path(point).name for point, kind in hierarchies.items() if kind == "cgroup")
    assert len(v1) >= 2, hierarchies
    # a host cgroup beside the container's in every hierarchy: it must never show inside
    for point in hierarchies:
        Path(point, parent, "sibling").mkdir(parents=True)
        if Path(point, "cpuset.cpus").exists():  # a joined cpuset is used as it is
            for name in ("cpuset.cpus", "cpuset.mems"):
                Path(point, parent, name).write_text(Path(point, name).read_text())
    script = (
        "for d in /sys/fs/cgroup/*; do"
        " if grep -qx 1 $d/cgroup.procs; then echo ${d##*/} own; else echo ${d##*/} other; fi;"
        " done; "
        "find /sys/fs/cgroup -mindepth 2 -type d; "
        "grep ' /sys/fs/cgroup/' /proc/self/mountinfo | cut -d' ' -f4 | sort -u; "
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares; "
        "(echo 5 > /sys/fs/cgroup/pids/pids.max) 2>/dev/null || echo read-only"
    )
    config = container_config(["/bin/sh", "-c", script])
    config["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                             "source": "cgroup",
                             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
    config["linux"]["resources"] = {"pids": {"limit": 77}}
    config["linux"]["cgroupsPath"] = f"/{parent}/cg"
    try:
        code, lines = _run_capture(root, "cgmount", make_bundle(tmp_path, config))
    finally:
        for point in hierarchies:
            Path(point, parent, "sibling").rmdir()
            Path(point, parent).rmdir()
    assert code == 0, lines
    # every v1 hierarchy (the unified one is left out beside them, as runc does) holds
    # the container's own cgroup, its sh (pid 1) inside, limited or not
    assert lines[: len(v1)] == [f"{name} own" for name in v1], lines
    # nothing below the container's own cgroups (the host's tree would show the
    # sibling), and every bind is rooted at the container's cgroup
    assert lines[len(v1):] == [f"/{parent}/cg", "77", "1024", "read-only"], lines


def test_run_detached_and_create_with_given_stdio(tmp_path: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, container_config(["/bin/sleep", "60"]))
    assert cli(root, "run", "--detach", "--bundle", str(bundle), "bg").returncode == 0
    assert api.state("bg", root=root)["status"] == "running"
    api.delete("bg", root=root, force=True)

    talker = make_bundle(tmp_path, container_config(["/bin/sh", "-c", "echo out; echo err >&2"]))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        api.create("talker", talker, root=root, stdio=(0, out.fileno(), err.fileno()))
        api.start("talker", root=root)
        deadline = time.monotonic() + 10
        while api.state("talker", root=root)["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        out.seek(0)
        err.seek(0)
        assert (out.read(), err.read()) == ("out\n", "err\n")
    api.delete("talker", root=root)


def test_pass_fds_places_caller_descriptors_after_the_preserved_ones(
        tmp_path: Path, root: Path) -> None:
    """The launcher's way to hand over a socket and a secrets pipe without owning fds 3..:
    whatever numbers they have here, the container sees them as 3, 4, ..."""
    bundle = make_bundle(tmp_path, container_config(
        ["/bin/sh", "-c", "read -r secret <&3; echo \"got $secret\" >&4; "
                          "ls /proc/self/fd | sort -n | tr '\\n' ' '"]))
    secret_read, secret_write = os.pipe()
    reply_read, reply_write = os.pipe()
    os.write(secret_write, b"s3cr3t\n")
    os.close(secret_write)
    with tempfile.TemporaryFile("w+") as out:
        code = api.run("passfds", bundle, root=root, forward_signals=False,
                       stdio=(0, out.fileno(), out.fileno()),
                       pass_fds=[secret_read, reply_write])
        out.seek(0)
        listing = out.read().split()
    os.close(reply_write)
    os.close(secret_read)
    assert code == 0
    assert os.read(reply_read, 100) == b"got s3cr3t\n"
    os.close(reply_read)
    assert listing == ["0", "1", "2", "3", "4", "5"]  # 5: the directory ls reads
    with pytest.raises(StepError) as caught:
        api.run("passfds2", bundle, root=root, forward_signals=False, pass_fds=[9999])
    assert (caught.value.step, caught.value.path) == ("pass-fds", "9999")
    assert not (root / "passfds2").exists()


@pytest.mark.parametrize("variant", ["plain", "cgroup-namespace", "user-namespace"])
def test_the_init_is_in_the_container_cgroup_of_every_hierarchy(tmp_path: Path, root: Path,
                                                                 variant: str) -> None:
    """Plain: the children join by themselves (the intermediate writes its v1 `tasks`, the
    init is cloned into the v2 cgroup). With a cgroup or user namespace the runtime writes
    the intermediate's pid to cgroup.procs. Either way the init ends up in the container's
    cgroup of every mounted hierarchy."""
    config = container_config(["/bin/sleep", "30"], rootless=variant == "user-namespace")
    if variant == "cgroup-namespace":
        config["linux"]["namespaces"].append({"type": "cgroup"})
    created = api.create(variant, make_bundle(tmp_path, config), root=root)
    record = container.read_record(str(root), variant)
    leaves = [path for path in record["cgroup_paths"] if path.endswith(f"/{variant}")]
    assert len(leaves) == len(host_cgroup_mounts()), record["cgroup_paths"]
    for path in leaves:
        assert str(created["pid"]) in Path(path, "cgroup.procs").read_text().split(), path
    api.delete(variant, root=root, force=True)
    assert [path for path in leaves if os.path.exists(path)] == []


def test_a_cgroup_namespace_is_rooted_at_the_container_cgroup(tmp_path: Path,
                                                               root: Path) -> None:
    config = container_config(["/bin/cat", "/proc/self/cgroup"])
    config["linux"]["namespaces"].append({"type": "cgroup"})
    output = tmp_path / "cgroup.txt"
    with open(output, "w+b") as sink, open(os.devnull, "rb") as null:
        status = api.run("cgns", make_bundle(tmp_path, config), root=root,
                         stdio=(null.fileno(), sink.fileno(), sink.fileno()),
                         forward_signals=False)
    lines = output.read_text().splitlines()
    assert status == 0, lines
    # one line per hierarchy, each at the namespace's root: the container's own cgroup
    assert len(lines) == len(host_cgroup_mounts())
    assert all(line.endswith(":/") for line in lines), lines
