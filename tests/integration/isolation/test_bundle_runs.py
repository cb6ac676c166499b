"""Stage the gateway bundle and really run it with the embedded runtime, as root and rootless.

Instead of the gateway, the container runs a probe (``PROBE``) with the same interpreter,
rootfs and controls: it imports what the gateway imports, uses SQLite in WAL mode in the
state dir, writes /tmp, tries to write elsewhere, runs git, talks to the egress socket and
makes the system calls the seccomp profile must refuse. Rootless runs happen as an
unprivileged user created here, under Debian's /usr/bin/python3 with a readable copy of
auto_review and the third-party modules it needs (/root, holding the default python3, is
0700), exactly as the launcher would run for that user.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import reference_path
from tests.support.rootless import DEBIAN_PYTHON, as_user, make_user_tree, user_env

from auto_review.isolation.outer.bundle import (
    BundleRequest,
    ResourceLimits,
    cgroup_limits_applied,
    stage_bundle,
)
from auto_review.isolation.outer.stale import MARKER_NAME, remove_stale_bundles

CANARY = "canary-secret-7f3a9c1e"
LIMITS = ResourceLimits(memory_bytes=768 * 1024 * 1024, pids=200, nofile=1024,
                        tmp_size_bytes=32 * 1024 * 1024)  # fmt: skip
RUN_TIMEOUT = 120

PROBE = r'''
import ctypes, errno, json, os, resource, socket, sqlite3, ssl, subprocess, sys, threading
HOST_PATHS = ("/home", "/boot", "/etc/shadow", "/root/.ssh", "/srv", "/var/log", "/sys",
              "/etc/ssl/private", "/usr/share/doc", "/usr/sbin", "/usr/local/bin")
BOUND_PATHS = ("/etc/passwd", "/etc/ssl/certs/ca-certificates.crt", "/usr/bin/git",
               "/usr/lib/git-core/git-remote-https", "/run/egress/proxy.sock")
report = {}
import asyncio, uvloop, httpx, certifi, auto_review
loop = uvloop.new_event_loop()
report["uvloop"] = loop.run_until_complete(asyncio.sleep(0, result="ok"))
loop.close()
report["imports"] = "ok"
context = ssl.create_default_context(cafile=certifi.where())
report["ca_certs"] = context.cert_store_stats()["x509_ca"]
report["system_ca_bundle"] = os.path.getsize("/etc/ssl/certs/ca-certificates.crt") > 0
db = sqlite3.connect("/var/lib/auto_review/probe.db")
report["journal_mode"] = db.execute("pragma journal_mode=wal").fetchone()[0]
db.execute("create table if not exists runs (n integer)")
db.execute("insert into runs values (1)")
db.commit()
report["rows"] = db.execute("select count(*) from runs").fetchone()[0]
db.close()

def try_write(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]

report["writes"] = {path: try_write(path) for path in (
    "/tmp/probe.txt", "/var/lib/auto_review/probe.txt", "/etc/probe.txt", "/usr/probe.txt",
    "/probe.txt", "/etc/passwd")}
worker = threading.Thread(target=lambda: report.__setitem__("thread", "ok"))
worker.start(); worker.join()
env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
version = subprocess.run(["git", "--version"], capture_output=True, text=True, env=env)
report["git_version"] = [version.returncode, version.stdout.strip()]
init = subprocess.run(["git", "init", "-q", "/tmp/repo"], capture_output=True, text=True, env=env)
report["git_init"] = [init.returncode, os.path.isdir("/tmp/repo/.git")]

libc = ctypes.CDLL(None, use_errno=True)
def denied(result):
    if result != -1:
        return "allowed"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
numbers = {"x86_64": {"clone": 56, "clone3": 435},
           "aarch64": {"clone": 220, "clone3": 435}}[os.uname().machine]
syscall = libc.syscall
syscall.restype = ctypes.c_long
report["seccomp"] = {
    "unshare": denied(libc.unshare(0x10000000)),
    "mount": denied(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    "clone3": denied(syscall(numbers["clone3"], None, ctypes.c_size_t(0))),
}
child = syscall(numbers["clone"], ctypes.c_ulong(0x00020000 | 17), None, None, None, None)
if child == 0:
    os._exit(0)
report["seccomp"]["clone_newns"] = denied(child)
pid = os.fork()
if pid == 0:
    os._exit(7)
report["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
report["status"] = {key: status[key].strip() for key in
                    ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp", "Uid")}
report["pid"] = os.getpid()
import pwd
report["user_name"] = pwd.getpwuid(os.getuid()).pw_name
report["localhost"] = socket.gethostbyname("localhost")
report["hostname"] = socket.gethostname()
report["host_paths_present"] = [path for path in HOST_PATHS if os.path.lexists(path)]
report["bound_paths_present"] = [path for path in BOUND_PATHS if os.path.lexists(path)]
try:
    os.listdir("/")
    report["list_root"] = "ok"
except OSError as exc:
    report["list_root"] = errno.errorcode[exc.errno]
report["rlimits"] = {name: list(resource.getrlimit(getattr(resource, name)))
                     for name in ("RLIMIT_DATA", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_CORE")}
report["interfaces"] = sorted(name for _index, name in socket.if_nameindex())
report["tmp_mount"] = [line.split()[3] for line in open("/proc/self/mounts")
                       if line.split()[1] == "/tmp"]
egress = socket.socket(socket.AF_UNIX)
egress.connect("/run/egress/proxy.sock")
egress.sendall(b"ping")
report["egress"] = egress.recv(16).decode()
egress.close()
print(json.dumps(report))
'''


# Runs inside with small limits: how far processes, memory and descriptors can grow.
LIMITS_PROBE = r'''
import errno, json, os, signal, time
report = {}
children = []
while len(children) < 1000:
    try:
        pid = os.fork()
    except OSError as exc:
        report["fork_error"] = errno.errorcode[exc.errno]
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
report["children"] = len(children)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
try:
    block = bytearray(512 * 1024 * 1024)
    report["memory"] = "allocated"
except MemoryError:
    report["memory"] = "MemoryError"
files = []
try:
    while len(files) < 100000:
        files.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    report["open_error"] = errno.errorcode[exc.errno]
report["highest_fd"] = max(files)
print(json.dumps(report))
'''
SMALL_LIMITS = ResourceLimits(memory_bytes=256 * 1024 * 1024, pids=24, nofile=64,
                              tmp_size_bytes=1024 * 1024)  # fmt: skip


def assert_limits_hold(report: dict[str, Any]) -> None:
    assert report["fork_error"] == "EAGAIN"
    assert 0 < report["children"] < SMALL_LIMITS.pids
    assert report["memory"] == "MemoryError"
    assert report["open_error"] == "EMFILE"
    assert report["highest_fd"] == SMALL_LIMITS.nofile - 1


@dataclass
class EgressStub:
    """A Unix socket server standing in for the egress proxy: answers "pong" to "ping"."""

    path: Path
    listener: socket.socket
    thread: threading.Thread

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def start_egress_stub(path: Path, owner: tuple[int, int] | None = None) -> EgressStub:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    if owner is not None:
        os.chown(path, *owner)
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                connection, _peer = listener.accept()
            except OSError:
                return
            with connection:
                if connection.recv(16) == b"ping":
                    connection.sendall(b"pong")

    thread = threading.Thread(target=serve, name="egress-stub", daemon=True)
    thread.start()
    return EgressStub(path, listener, thread)


def probe_report(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"the probe printed no report: {stdout[-2000:]!r}"
    return json.loads(lines[-1])


def assert_probe_posture(report: dict[str, Any], *, landlock: bool = True) -> None:
    assert report["imports"] == "ok"
    assert report["uvloop"] == "ok"
    assert report["thread"] == "ok"
    assert report["ca_certs"] > 10
    assert report["system_ca_bundle"] is True
    assert report["journal_mode"] == "wal"
    assert report["rows"] >= 1
    writes = report["writes"]
    assert writes["/tmp/probe.txt"] == "ok"
    assert writes["/var/lib/auto_review/probe.txt"] == "ok"
    for path in ("/etc/probe.txt", "/usr/probe.txt", "/probe.txt", "/etc/passwd"):
        assert writes[path] in ("EROFS", "EACCES"), (path, writes[path])
    assert report["git_version"][0] == 0 and report["git_version"][1].startswith("git version")
    assert report["git_init"] == [0, True]
    assert report["seccomp"] == {
        "unshare": "EPERM", "mount": "EPERM", "clone3": "ENOSYS", "clone_newns": "EPERM",
    }  # fmt: skip
    assert report["fork_status"] == 7
    status = report["status"]
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert status["Uid"].split() == ["0", "0", "0", "0"]
    assert report["pid"] == 1
    assert report["user_name"] == "root"  # the generated /etc/passwd, through nsswitch files
    assert report["localhost"] == "127.0.0.1"
    assert report["hostname"] == "auto-review"
    assert report["interfaces"] == ["lo"]
    # Nothing of the host's file system beyond the binds, and even "/" cannot be listed
    # (Landlock grants reading only on the bound paths; runc and crun ignore the annotation).
    assert report["host_paths_present"] == []
    assert len(report["bound_paths_present"]) == 5
    assert report["list_root"] == ("EACCES" if landlock else "ok")
    assert report["rlimits"] == {
        "RLIMIT_DATA": [LIMITS.memory_bytes, LIMITS.memory_bytes],
        "RLIMIT_NPROC": [LIMITS.pids, LIMITS.pids],
        "RLIMIT_NOFILE": [LIMITS.nofile, LIMITS.nofile],
        "RLIMIT_CORE": [0, 0],
    }
    tmp_options = report["tmp_mount"][0].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(tmp_options)
    assert f"size={LIMITS.tmp_size_bytes // 1024}k" in tmp_options
    assert report["egress"] == "pong"


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("these tests create containers and a test user: run them as root")


# ---------------------------------------------------------------- root


@pytest.fixture
def root_setup(tmp_path: Path) -> Iterator[dict[str, Path]]:
    require_root()
    stub = start_egress_stub(tmp_path / "proxy.sock")
    paths = {
        "runtime_dir": tmp_path / "run",
        "state_dir": tmp_path / "state",
        "oci_root": tmp_path / "oci",
        "egress": stub.path,
    }
    yield paths
    stub.close()


def root_request(paths: dict[str, Path], args: list[str]) -> BundleRequest:
    return BundleRequest(
        runtime_dir=paths["runtime_dir"],
        state_dir=paths["state_dir"],
        egress_socket=paths["egress"],
        inner_args=args,
        inner_env={"PATH": "/usr/bin:/bin", "HOME": "/var/lib/auto_review", "LANG": "C.UTF-8"},
        rootless=False,
        preserve_fds=0,
        limits=LIMITS,
    )


def run_in_process(bundle_path: Path, container_id: str, oci_root: Path) -> tuple[int, str, str]:
    from auto_review.oci import api

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with open(os.devnull) as stdin:
            status = api.run(container_id, bundle_path, root=oci_root,
                             stdio=(stdin.fileno(), out.fileno(), err.fileno()),
                             forward_signals=False)  # fmt: skip
        out.seek(0)
        err.seek(0)
        return status, out.read(), err.read()


def test_root_bundle_runs_the_probe_inside_the_boundary(root_setup: dict[str, Path]):
    request = root_request(root_setup, [sys.executable, "-c", PROBE])
    staged = stage_bundle(request, forbidden_values=[CANARY])
    try:
        status, out, err = run_in_process(staged.path, staged.container_id, root_setup["oci_root"])
        assert status == 0, err[-3000:]
        report = probe_report(out)
        assert_probe_posture(report)
        # The state written inside is on the host, in the state dir, and survives the run.
        db = root_setup["state_dir"] / "probe.db"
        assert db.is_file()
        assert (root_setup["state_dir"] / "probe.txt").read_text() == "x"
        assert CANARY not in out and CANARY not in err
    finally:
        staged.remove()
    assert not staged.path.exists()


# Debian's crun 1.8.1 refuses hybrid cgroups: it runs in a private mount namespace where
# the cgroup2 mount at /sys/fs/cgroup/unified is unmounted (the host's mounts are untouched).
HIDE_CGROUP2 = (
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi;"
    ' exec "$@"'
)
EXTERNAL_RUNTIMES = {
    "runc": ["runc"],
    "crun": ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_CGROUP2, "sh",
             "crun"],
}  # fmt: skip


@pytest.mark.parametrize("runtime", sorted(EXTERNAL_RUNTIMES))
def test_the_same_bundle_runs_under_runc_and_crun(root_setup: dict[str, Path], runtime: str):
    if shutil.which(runtime) is None:
        raise RuntimeError(f"{runtime} is not installed (apt-get install -y runc crun)")
    staged = stage_bundle(root_request(root_setup, [sys.executable, "-c", PROBE]))
    state = root_setup["oci_root"] / runtime
    try:
        completed = subprocess.run(
            [*EXTERNAL_RUNTIMES[runtime], "--root", str(state), "run", "--bundle",
             str(staged.path), staged.container_id],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT,
            check=False,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert_probe_posture(probe_report(completed.stdout), landlock=False)
    finally:
        staged.remove()


def test_root_limits_hold_inside(root_setup: dict[str, Path]):
    request = root_request(root_setup, [sys.executable, "-c", LIMITS_PROBE])
    request.limits = SMALL_LIMITS
    staged = stage_bundle(request)
    try:
        status, out, err = run_in_process(staged.path, staged.container_id, root_setup["oci_root"])
    finally:
        staged.remove()
    assert status == 0, err[-3000:]
    assert_limits_hold(probe_report(out))


def test_root_without_a_cgroup_processes_are_not_bounded_by_rlimit(root_setup: dict[str, Path]):
    """Why ``processes_bounded_without_cgroup`` is False as root: RLIMIT_NPROC never binds
    host uid 0, which the container's root is when the launcher is root."""
    probe = LIMITS_PROBE.replace("len(children) < 1000", f"len(children) < {SMALL_LIMITS.pids * 2}")
    request = root_request(root_setup, [sys.executable, "-c", probe])
    request.limits = SMALL_LIMITS
    staged = stage_bundle(request)
    assert staged.limits["processes_bounded_without_cgroup"] is False
    try:
        config_path = staged.path / "config.json"
        config = json.loads(config_path.read_text())
        del config["linux"]["resources"]  # as if no cgroup could be made
        config_path.write_text(json.dumps(config))
        status, out, err = run_in_process(staged.path, staged.container_id, root_setup["oci_root"])
    finally:
        staged.remove()
    assert status == 0, err[-3000:]
    report = probe_report(out)
    assert "fork_error" not in report
    assert report["children"] == SMALL_LIMITS.pids * 2


def test_root_cgroup_limits_apply_and_are_visible_from_the_host(root_setup: dict[str, Path]):
    from auto_review.oci import api

    request = root_request(root_setup, [sys.executable, "-c", "pass"])
    staged = stage_bundle(request)
    try:
        state = api.create(staged.container_id, staged.path, root=root_setup["oci_root"],
                           stdio=(0, 1, 2))  # fmt: skip
        try:
            assert cgroup_limits_applied(state["pid"], staged.container_id) is True
            assert cgroup_limits_applied(os.getpid(), staged.container_id) is False
        finally:
            api.delete(staged.container_id, root=root_setup["oci_root"], force=True)
    finally:
        staged.remove()


def test_stale_bundle_and_its_container_state_are_removed(root_setup: dict[str, Path]):
    from auto_review.oci import api
    from auto_review.oci.errors import OciError

    request = root_request(root_setup, [sys.executable, "-c", "pass"])
    staged = stage_bundle(request)
    api.create(staged.container_id, staged.path, root=root_setup["oci_root"], stdio=(0, 1, 2))
    # Pretend the launcher died: a pid that exited, recorded in the marker.
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = json.loads((staged.path / MARKER_NAME).read_text())
    marker["pid"] = dead.pid
    (staged.path / MARKER_NAME).write_text(json.dumps(marker))

    removed = remove_stale_bundles(root_setup["runtime_dir"], oci_root=root_setup["oci_root"])

    assert removed == [staged.path]
    assert not staged.path.exists()
    with pytest.raises(OciError):
        api.state(staged.container_id, root=root_setup["oci_root"])


# ---------------------------------------------------------------- rootless


@dataclass(frozen=True)
class UserSetup:
    uid: int
    gid: int
    home: Path  # 0700, the user's: XDG_RUNTIME_DIR, state, oci root
    site: Path  # world-readable copy of auto_review and its third-party modules


SITE_IMPORTS = ("auto_review.isolation.outer.bundle", "auto_review.oci.api", "uvloop", "httpx",
                "certifi", "jsonschema", "referencing", "referencing.jsonschema")  # fmt: skip

# Runs as the test user under Debian's python3: stage, run (embedded API or runc), report,
# remove. argv: home, site, egress socket, probe, limits (JSON), canary, runner.
ROOTLESS_DRIVER = r"""
import json, os, subprocess, sys
from pathlib import Path
from auto_review.isolation.outer.bundle import BundleRequest, ResourceLimits, stage_bundle
from auto_review.oci import api
home, site, egress, probe = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
runner = sys.argv[7]
EXTERNAL = runner != "embedded"
limits = ResourceLimits(**json.loads(sys.argv[5]))
request = BundleRequest(
    runtime_dir=home / "auto-review", state_dir=home / "state", egress_socket=Path(egress),
    inner_args=["/usr/bin/python3", "-c", probe],
    inner_env={"PATH": "/usr/bin:/bin", "HOME": "/var/lib/auto_review", "LANG": "C.UTF-8",
               "PYTHONPATH": site},
    rootless=True, preserve_fds=0, limits=limits, external_runtime=EXTERNAL)
staged = stage_bundle(request, forbidden_values=[sys.argv[6]])
modes = {}
for directory, dirs, files in os.walk(staged.path):
    if os.path.relpath(directory, staged.path).startswith("rootfs"):
        continue
    for name in files:
        modes[os.path.relpath(os.path.join(directory, name), staged.path)] = (
            oct(os.stat(os.path.join(directory, name)).st_mode & 0o777))
modes["."] = oct(os.stat(staged.path).st_mode & 0o777)
out_path, err_path = home / "probe.out", home / "probe.err"
with open(os.devnull) as stdin, open(out_path, "w") as out, open(err_path, "w") as err:
    if EXTERNAL:
        status = subprocess.run([runner, "--root", str(home / runner), "run", "--bundle",
                                 str(staged.path), staged.container_id],
                                stdin=stdin, stdout=out, stderr=err).returncode
    else:
        status = api.run(staged.container_id, staged.path, root=home / "oci",
                         stdio=(stdin.fileno(), out.fileno(), err.fileno()),
                         forward_signals=False)
staged.remove()
print(json.dumps({"status": status, "out": out_path.read_text(), "err": err_path.read_text(),
                  "config": staged.config, "modes": modes,
                  "left": os.path.exists(staged.path)}))
"""


@pytest.fixture(scope="module")
def test_user() -> Iterator[UserSetup]:
    require_root()
    tree = make_user_tree("bundle-rootless-", "home", SITE_IMPORTS, preloaded="requested")
    yield UserSetup(tree.user.pw_uid, tree.user.pw_gid, tree.private_dir, tree.site)
    tree.remove()


def run_as_user(user: UserSetup, *args: str) -> subprocess.CompletedProcess[str]:
    env = user_env(user.home, user.site, path="/usr/bin:/bin")
    return subprocess.run([DEBIAN_PYTHON, *args], capture_output=True, text=True, env=env,
                          cwd="/", timeout=RUN_TIMEOUT, check=False,
                          **as_user(user.uid, user.gid))  # fmt: skip


def drive_rootless(
    user: UserSetup, probe: str, limits: ResourceLimits, runner: str
) -> dict[str, Any]:
    """Stage and run ``probe`` as the test user; the driver's JSON result."""
    socket_dir = Path(tempfile.mkdtemp(prefix="bundle-egress-"))
    socket_dir.chmod(0o755)
    stub = start_egress_stub(socket_dir / "proxy.sock", owner=(user.uid, user.gid))
    try:
        completed = run_as_user(
            user, "-c", ROOTLESS_DRIVER, str(user.home), str(user.site), str(stub.path),
            probe, json.dumps(dataclasses.asdict(limits)), CANARY, runner,
        )  # fmt: skip
    finally:
        stub.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["driver_stderr"] = completed.stderr
    return result


def test_rootless_bundle_runs_under_runc(test_user: UserSetup):
    """runc has no best effort: for it the rootless bundle asks for no cgroup (rlimits stay)."""
    if shutil.which("runc") is None:
        raise RuntimeError("runc is not installed (apt-get install -y runc)")
    result = drive_rootless(test_user, PROBE, LIMITS, "runc")
    assert result["status"] == 0, result["err"][-3000:]
    assert "resources" not in result["config"]["linux"]
    assert_probe_posture(probe_report(result["out"]), landlock=False)


@pytest.fixture(scope="module")
def rootless_run(test_user: UserSetup) -> Iterator[dict[str, Any]]:
    yield drive_rootless(test_user, PROBE, LIMITS, "embedded")


def test_rootless_bundle_runs_the_probe_inside_the_boundary(
    rootless_run: dict[str, Any], test_user: UserSetup
):
    assert rootless_run["status"] == 0, rootless_run["err"][-3000:]
    report = probe_report(rootless_run["out"])
    assert_probe_posture(report)
    assert (test_user.home / "state" / "probe.db").stat().st_uid == test_user.uid
    assert rootless_run["left"] is False
    for text in (rootless_run["out"], rootless_run["err"], rootless_run["driver_stderr"]):
        assert CANARY not in text


def test_rootless_bundle_maps_only_the_callers_ids_and_is_private(
    rootless_run: dict[str, Any], test_user: UserSetup
):
    config = rootless_run["config"]
    assert config["linux"]["uidMappings"] == [
        {"containerID": 0, "hostID": test_user.uid, "size": 1}
    ]
    assert config["linux"]["gidMappings"] == [
        {"containerID": 0, "hostID": test_user.gid, "size": 1}
    ]
    assert config["annotations"]["org.auto-review.cgroups.best-effort"] == "true"
    assert "devices" not in config["linux"]["resources"]
    modes = rootless_run["modes"]
    assert modes.pop(".") == "0o700"
    assert modes and set(modes.values()) == {"0o600"}, modes
    # The interpreter and its search path are Debian's and the readable copy, not /root's.
    destinations = {mount["destination"] for mount in config["mounts"]}
    assert "/usr/bin/python3" in destinations
    assert str(test_user.site) in destinations
    assert not any(destination.startswith("/root") for destination in destinations)


REFERENCE_SCHEMA = reference_path("oci", "schema")


def reference_errors(config: dict[str, Any]) -> list[str]:
    """Every error of ``config`` against the reference runtime-spec schema (Draft 4)."""
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resources(
        (path.as_uri(), Resource.from_contents(json.loads(path.read_text()),
                                               default_specification=DRAFT4))
        for path in REFERENCE_SCHEMA.glob("*.json")
    )  # fmt: skip
    entry = {"$ref": (REFERENCE_SCHEMA / "config-schema.json").as_uri()}
    validator = Draft4Validator(entry, registry=registry)
    return [f"{list(error.absolute_path)}: {error.message}" for error in
            validator.iter_errors(config)]  # fmt: skip


def test_rootless_config_is_valid_against_the_reference_schema(rootless_run: dict[str, Any]):
    assert reference_errors(rootless_run["config"]) == []


def test_rootless_limits_hold_without_a_cgroup(test_user: UserSetup):
    """No cgroup can be made for this user here: the rlimits alone bound the container."""
    result = drive_rootless(test_user, LIMITS_PROBE, SMALL_LIMITS, "embedded")
    assert result["status"] == 0, result["err"][-3000:]
    assert_limits_hold(probe_report(result["out"]))
