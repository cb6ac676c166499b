"""Time running one process in a container: embedded runtime vs crun and runc.

Workloads: `/bin/true` and `python3 -c pass` (Debian's /usr/bin/python3), each in a minimal
bundle with runc's default posture (namespaces, /proc, /dev, /sys, masked and read-only
paths, read-only root) and /usr bound read-only. Runners, timed round-robin in one pass so
drift hits them alike:

- fork-exec     posix_spawn + waitpid of the command, no container (the floor)
- crun          Debian's crun, spawned by a helper that lives in a private mount namespace
                with the hybrid cgroup2 mount hidden (crun 1.8.1 refuses hybrid cgroups)
- runc          Debian's runc
- embedded-cli  the `auto-review oci run` console script next to this interpreter: in the
                development set-up, the editable install (`site` reads its .pth files)
- embedded-cli-installed  the console script of a normal (non-editable) install: the
                package's wheel, built from the imported source, installed with pip into a
                new virtual environment of this interpreter's base Python (--install-python),
                with copies of the third-party modules the runtime may import
- embedded-cli-debian  the same installed console script in a virtual environment of
                Debian's /usr/bin/python3 (built with PGO, unlike pyenv's)
- embedded-api  auto_review.oci.api.run() called from this running process

Every timed run starts after a pause (--settle-ms, 50 ms), so none inherits the kernel's
warm cgroup-migration lock from the run before it (see SETTLE_MS).

Prints the median (and p10/p90) wall time and the median CPU time (user + system of the
runner's processes; less sensitive to other work on the machine) per runner and workload,
and the target ratios: embedded API within 2x of crun, embedded CLI no slower than runc
(for each console script). Run as root:
    python bench/oci_run.py [--runs 30] [--quick] [--json FILE] [--install-python PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The copy for Debian's python3 is built exactly as the rootless tests build theirs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.rootless import DEBIAN_PYTHON, LIST_SITE_MODULES

WORKLOADS: dict[str, list[str]] = {
    "/bin/true": ["/bin/true"],
    "python3 -c pass": [DEBIAN_PYTHON, "-c", "pass"],
}
RUNNERS = (
    "fork-exec",
    "crun",
    "runc",
    "embedded-cli",
    "embedded-cli-installed",
    "embedded-cli-debian",
    "embedded-api",
)
THIRD_PARTY_IMPORTS = ("jsonschema", "referencing", "referencing.jsonschema")
TARGETS = (  # (subject, reference, maximum ratio, meaning)
    ("embedded-api", "crun", 2.0, "Python API within 2x of crun"),
    ("embedded-cli-installed", "runc", 1.0, "installed CLI no slower than runc"),
    ("embedded-cli-debian", "runc", 1.0, "installed CLI (Debian python) vs runc"),
    ("embedded-cli", "runc", 1.0, "editable dev CLI vs runc"),
)
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
HYBRID_CGROUP2 = b"/sys/fs/cgroup/unified"
RUN_TIMEOUT = 60
# Moving a process into a cgroup through cgroup.procs (runc, crun; the embedded runtime
# only in some cases) takes a kernel-wide lock whose first use after a pause waits for an
# RCU grace period (4-15 ms here); for about one grace period after a use, the next one is
# free. Back to back, a runner would inherit that from the one before it in the round, so
# every timed run waits this long first and pays its own way.
SETTLE_MS = 50.0


class BenchError(RuntimeError):
    """The benchmark cannot run on this machine as it is (clear reason in the message)."""


# ---------------------------------------------------------------- bundle


def minimal_config(args: list[str]) -> dict[str, Any]:
    """runc's default posture (`runc spec`), without a terminal, /usr bound read-only."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    ro_bind = ["rbind", "ro", "nosuid", "nodev"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {kind: caps for kind in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ro_bind},
            {"destination": "/etc/ld.so.cache", "type": "bind", "source": "/etc/ld.so.cache",
             "options": ro_bind},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }  # fmt: skip


def make_bundle(parent: Path, name: str, args: list[str]) -> Path:
    bundle = parent / name
    rootfs = bundle / "rootfs"
    for directory in ("usr", "etc", "proc", "dev", "sys", "tmp"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "etc" / "ld.so.cache").touch()
    for link, target in {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib",
                         "lib64": "usr/lib64"}.items():  # fmt: skip
        (rootfs / link).symlink_to(target)
    (bundle / "config.json").write_text(json.dumps(minimal_config(args), indent=2))
    return bundle


# ---------------------------------------------------------------- runners


def _hide_hybrid_cgroup2() -> None:
    """Enter a private mount namespace and unmount the hybrid cgroup2 mount there."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if os.path.ismount(HYBRID_CGROUP2) and libc.umount2(HYBRID_CGROUP2, MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "umount /sys/fs/cgroup/unified")


class PrivateMountLauncher:
    """A forked helper living in a private mount namespace without the cgroup2 mount.

    crun 1.8.1 refuses hybrid cgroups, so it must start where /sys/fs/cgroup/unified is
    hidden. Doing that per run (a wrapper exec or a Python preexec hook) would add several
    milliseconds that are not crun's; instead this helper enters the namespace once and
    posix_spawns each crun command on request, answering over a pipe. The round trip adds
    tens of microseconds.
    """

    def __init__(self) -> None:
        request_read, self._request = os.pipe()
        self._reply, reply_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the helper: never returns
            os.close(self._request)
            os.close(self._reply)
            self._serve(request_read, reply_write)
        os.close(request_read)
        os.close(reply_write)
        self._replies = os.fdopen(self._reply, "rb")
        ready = self._replies.readline()
        if ready != b"ready\n":
            raise BenchError(f"mount-namespace helper failed: {ready.decode(errors='replace')}")

    @staticmethod
    def _serve(requests: int, replies: int) -> None:
        status = 0
        try:
            _hide_hybrid_cgroup2()
            os.write(replies, b"ready\n")
            with os.fdopen(requests, "rb") as incoming:
                for line in incoming:
                    argv = json.loads(line)
                    os.write(replies, (json.dumps(_spawn_and_wait(argv)) + "\n").encode())
        except BaseException as error:  # reported to the parent, then the helper exits
            with contextlib.suppress(OSError):
                os.write(replies, f"{type(error).__name__}: {error}\n".encode())
            status = 1
        os._exit(status)

    def run(self, argv: list[str]) -> float:
        """Run argv in the helper; returns the CPU seconds of the processes it waited for."""
        os.write(self._request, (json.dumps(argv) + "\n").encode())
        reply = json.loads(self._replies.readline() or b'{"status": -1, "stderr": "helper died"}')
        if reply["status"] != 0:
            raise BenchError(f"{argv[0]} exited {reply['status']}: {reply['stderr']}")
        return float(reply["cpu"])

    def close(self) -> None:
        os.close(self._request)
        self._replies.close()
        os.waitpid(self.pid, 0)


def _spawn_and_wait(argv: list[str]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as errors, open(os.devnull, "r+b") as null:
        actions = [(os.POSIX_SPAWN_DUP2, null.fileno(), 0), (os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, errors.fileno(), 2)]  # fmt: skip
        executable = shutil.which(argv[0]) or argv[0]
        pid = os.posix_spawn(executable, argv, dict(os.environ), file_actions=actions)
        _pid, wait_status = os.waitpid(pid, 0)
        errors.seek(0)
        detail = errors.read().decode(errors="replace").strip()[-500:]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"status": os.waitstatus_to_exitcode(wait_status), "stderr": detail, "cpu": cpu}


def _run_command(argv: list[str], env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=RUN_TIMEOUT, check=False, env=env,
    )  # fmt: skip
    if completed.returncode != 0:
        detail = completed.stderr.decode(errors="replace").strip()[-500:]
        raise BenchError(f"{argv[0]} exited {completed.returncode}: {detail}")


def _fork_exec(argv: list[str]) -> None:
    with open(os.devnull, "r+b") as null:
        pid = os.posix_spawn(
            argv[0], argv, {"PATH": "/usr/bin:/bin"},
            file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), fd) for fd in (0, 1, 2)],
        )  # fmt: skip
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{argv[0]} exited {os.waitstatus_to_exitcode(status)}")


def embedded_cli_path() -> list[str]:
    """The console script next to this interpreter (not a pyenv shim, which adds ~50 ms)."""
    script = Path(sysconfig.get_path("scripts")) / "auto-review"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "auto_review.cli.main"]


def project_root() -> Path:
    """The project whose auto_review this interpreter imports (PYTHONPATH honoured)."""
    import auto_review

    root = Path(auto_review.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise BenchError(f"{root} holds no pyproject.toml: no package to build and install")
    return root


def _setup_command(argv: list[str]) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False,
                               timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    if completed.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])} ... failed: {completed.stderr.strip()[-800:]}")
    return completed.stdout


def build_wheel(scratch: Path) -> Path:
    """The package's wheel, built by this interpreter's pip from a copy of the project (a
    build leaves build/ and *.egg-info in the tree it builds)."""
    source = project_root()
    copy = scratch / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    copy.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (source / name).is_file():
            shutil.copy2(source / name, copy / name)
    shutil.copytree(source / "src", copy / "src", ignore=ignore)
    shutil.copytree(source / "scripts" / "console", copy / "scripts" / "console", ignore=ignore)
    wheels = scratch / "wheels"
    _setup_command([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--wheel-dir", str(wheels),
                    str(copy)])  # fmt: skip
    found = sorted(wheels.glob("auto_review-*.whl"))
    if len(found) != 1:
        raise BenchError(f"expected one auto_review wheel in {wheels}, found {found}")
    return found[0]


def install_in_new_venv(base_python: str, wheel: Path, target: Path) -> list[str]:
    """A virtual environment made as DEPLOYMENT.md makes one (`python3 -m venv`, with pip),
    the wheel installed by its own pip (no editable install, no .pth of ours), and copies of
    the third-party modules the runtime imports (jsonschema, on a validation-cache miss):
    the index is not needed. Returns the command of its console script."""
    if not os.access(base_python, os.X_OK):
        raise BenchError(f"{base_python} is not an executable Python")
    _setup_command([base_python, "-m", "venv", str(target)])
    python = str(target / "bin" / "python")
    _setup_command([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)])  # fmt: skip
    site = _setup_command([python, "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"]).strip()  # fmt: skip
    listed = _setup_command([sys.executable, "-c", LIST_SITE_MODULES, "none",
                             *THIRD_PARTY_IMPORTS])  # fmt: skip
    ignore = shutil.ignore_patterns("__pycache__")
    for name, origin in json.loads(listed).items():
        if name == "auto_review":
            continue
        if os.path.isdir(origin):
            shutil.copytree(origin, Path(site) / name, ignore=ignore)
        else:
            shutil.copy2(origin, Path(site) / name)
    _setup_command([python, "-m", "compileall", "-q", site])
    script = target / "bin" / "auto-review"
    if not script.read_text().startswith(f"#!{python}\n"):
        raise BenchError(f"{script} does not start with #!{python}")
    return [str(script)]


def installed_environment() -> dict[str, str]:
    """The caller's environment without PYTHON* variables: PYTHONPATH would make the
    installed command import another copy of the package."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


@dataclass
class Runner:
    name: str
    # (id, bundle, argv, state root) -> the CPU seconds of its processes when they are not
    # children of this process (crun's, reported by the helper), else None
    once: Callable[[str, Path, list[str], str], float | None]
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_samples: dict[str, list[float]] = field(default_factory=dict)
    unavailable: str = ""
    in_process: bool = False  # its CPU time is this process's own


def build_runners(wanted: list[str], scratch: Path, stack: contextlib.ExitStack,
                  install_python: str) -> list[Runner]:  # fmt: skip
    cli = embedded_cli_path()
    installed: dict[str, list[str]] = {}
    unavailable: dict[str, str] = {}
    bases = {"embedded-cli-installed": install_python, "embedded-cli-debian": DEBIAN_PYTHON}
    if any(name in wanted for name in bases):
        wheel = build_wheel(scratch)
        for name, base in bases.items():
            if name not in wanted:
                continue
            try:
                installed[name] = install_in_new_venv(base, wheel, scratch / f"venv-{name}")
            except BenchError as error:
                unavailable[name] = str(error)
    clean_env = installed_environment()

    launcher = PrivateMountLauncher() if "crun" in wanted and shutil.which("crun") else None
    if launcher is not None:
        stack.callback(launcher.close)

    def crun(container_id: str, bundle: Path, _argv: list[str], state: str) -> float:
        assert launcher is not None
        return launcher.run(["crun", "--root", state, "run", "--bundle", str(bundle),
                             container_id])  # fmt: skip

    def runc(container_id: str, bundle: Path, _argv: list[str], state: str) -> None:
        _run_command(["runc", "--root", state, "run", "--bundle", str(bundle), container_id])

    def embedded_cli(container_id: str, bundle: Path, _argv: list[str], state: str) -> None:
        _run_command([*cli, "oci", "--root", state, "run", "--bundle", str(bundle),
                      container_id])  # fmt: skip

    def installed_cli(name: str) -> Callable[[str, Path, list[str], str], None]:
        def run(container_id: str, bundle: Path, _argv: list[str], state: str) -> None:
            _run_command([*installed[name], "oci", "--root", state, "run", "--bundle",
                          str(bundle), container_id], env=clean_env)  # fmt: skip

        return run

    def embedded_api(container_id: str, bundle: Path, _argv: list[str], state: str) -> None:
        from auto_review.oci import api

        with open(os.devnull, "r+b") as null:
            fd = null.fileno()
            status = api.run(container_id, bundle, root=state, stdio=(fd, fd, fd),
                             forward_signals=False)  # fmt: skip
        if status != 0:
            raise BenchError(f"embedded API run exited {status}")

    def fork_exec(_id: str, _bundle: Path, argv: list[str], _state: str) -> None:
        _fork_exec(argv)

    table: dict[str, Callable[[str, Path, list[str], str], float | None]] = {
        "fork-exec": fork_exec, "crun": crun, "runc": runc, "embedded-cli": embedded_cli,
        "embedded-cli-installed": installed_cli("embedded-cli-installed"),
        "embedded-cli-debian": installed_cli("embedded-cli-debian"),
        "embedded-api": embedded_api,
    }  # fmt: skip
    runners = [Runner(name, table[name], in_process=name == "embedded-api") for name in wanted]
    for runner in runners:
        tool = {"crun": "crun", "runc": "runc"}.get(runner.name)
        if tool and shutil.which(tool) is None:
            runner.unavailable = f"{tool} not installed (apt-get install -y {tool})"
        runner.unavailable = runner.unavailable or unavailable.get(runner.name, "")
    return runners


# ---------------------------------------------------------------- timing and report


def _cpu_seconds(in_process: bool) -> float:
    """User + system time of the waited-for children (and of this process, for a runner
    that works in it)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    if in_process:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total += own.ru_utime + own.ru_stime
    return total


def measure(runners: list[Runner], bundles: dict[str, Path], runs: int, warmup: int,
            state_root: Path, settle: float = 0.0) -> None:  # fmt: skip
    for runner in runners:
        (state_root / runner.name).mkdir()
    for workload, bundle in bundles.items():
        argv = WORKLOADS[workload]
        for index in range(-warmup, runs):
            for runner in runners:
                if runner.unavailable:
                    continue
                container_id = f"bench-{runner.name}-{abs(hash(workload)) % 10000}-{index}"
                time.sleep(settle)  # each run starts cold (see SETTLE_MS)
                cpu_before = _cpu_seconds(runner.in_process)
                started = time.perf_counter()
                try:
                    reported_cpu = runner.once(container_id, bundle, argv,
                                               str(state_root / runner.name))  # fmt: skip
                except Exception as error:  # a failing runner is reported, not fatal
                    runner.unavailable = f"{type(error).__name__}: {error}"[:300]
                    continue
                elapsed = time.perf_counter() - started
                cpu = _cpu_seconds(runner.in_process) - cpu_before
                if reported_cpu is not None:
                    cpu = reported_cpu
                if index >= 0:
                    runner.samples.setdefault(workload, []).append(elapsed * 1000)
                    runner.cpu_samples.setdefault(workload, []).append(cpu * 1000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(runners: list[Runner]) -> dict[str, Any]:
    medians: dict[str, dict[str, tuple[float, float]]] = {}  # workload -> runner -> (wall, cpu)
    rows = []
    for runner in runners:
        for workload in WORKLOADS:
            samples = runner.samples.get(workload, [])
            if runner.unavailable or not samples:
                rows.append({"runner": runner.name, "workload": workload,
                             "unavailable": runner.unavailable or "no samples"})  # fmt: skip
                continue
            median = statistics.median(samples)
            cpu = statistics.median(runner.cpu_samples[workload])
            medians.setdefault(workload, {})[runner.name] = (median, cpu)
            rows.append({"runner": runner.name, "workload": workload, "runs": len(samples),
                         "median_ms": median, "p10_ms": percentile(samples, 0.1),
                         "p90_ms": percentile(samples, 0.9), "cpu_median_ms": cpu})  # fmt: skip
    ratios = []
    for subject, reference, limit, meaning in TARGETS:
        for workload, by_runner in medians.items():
            if subject in by_runner and reference in by_runner:
                ratio = by_runner[subject][0] / by_runner[reference][0]
                cpu_ratio = by_runner[subject][1] / by_runner[reference][1]
                ratios.append({"target": meaning, "workload": workload, "ratio": ratio,
                               "cpu_ratio": cpu_ratio, "limit": limit,
                               "met": ratio <= limit})  # fmt: skip
    return {"rows": rows, "ratios": ratios}


def print_report(summary: dict[str, Any], runs: int) -> None:
    print(f"per run, {runs} runs each (ms): wall time median, p10, p90; CPU time median")
    print(f"{'runner':<23} {'workload':<16} {'median':>8} {'p10':>8} {'p90':>8} {'cpu':>8}")
    for row in summary["rows"]:
        if "unavailable" in row:
            print(f"{row['runner']:<23} {row['workload']:<16} unavailable: {row['unavailable']}")
            continue
        print(f"{row['runner']:<23} {row['workload']:<16} {row['median_ms']:8.1f} "
              f"{row['p10_ms']:8.1f} {row['p90_ms']:8.1f} "
              f"{row['cpu_median_ms']:8.1f}")  # fmt: skip
    print()
    for ratio in summary["ratios"]:
        verdict = "met" if ratio["met"] else "NOT met"
        print(f"{ratio['target']:<38} {ratio['workload']:<16} ratio {ratio['ratio']:5.2f} "
              f"(limit {ratio['limit']:.1f}): {verdict}; CPU ratio "
              f"{ratio['cpu_ratio']:5.2f}")  # fmt: skip
    print()
    for line in summary.get("notes", []):
        print(line)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per cell (>= 30 "
                        "for the reported medians; default 30)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="5 runs, 1 warm-up: a smoke run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--settle-ms", type=float, default=SETTLE_MS,
                        help=f"pause before every timed run (default {SETTLE_MS:g}; 0 runs "
                        "them back to back, letting a runner inherit the previous one's "
                        "warm cgroup lock)")  # fmt: skip
    parser.add_argument("--runners", default=",".join(RUNNERS),
                        help=f"comma-separated subset of {','.join(RUNNERS)}")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--install-python", default=sys._base_executable,
                        help="the base Python of embedded-cli-installed's virtual environment "
                        f"(default: this interpreter's, {sys._base_executable})")  # fmt: skip
    return parser.parse_args(argv)


def compile_package() -> None:
    """Byte-compile auto_review for this interpreter first: with PYTHONDONTWRITEBYTECODE
    set, a module without a current .pyc is compiled again in every timed CLI run."""
    import compileall

    import auto_review

    compileall.compile_dir(str(Path(auto_review.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        raise BenchError("bench/oci_run.py creates root containers: run it as root")
    runs, warmup = (5, 1) if arguments.quick else (arguments.runs, arguments.warmup)
    wanted = [name.strip() for name in arguments.runners.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(RUNNERS))
    if unknown:
        raise BenchError(f"unknown runner(s) {unknown}; choose from {list(RUNNERS)}")
    compile_package()
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oci-bench-")))
        runners = build_runners(wanted, base, stack, arguments.install_python)
        load_before = os.getloadavg()
        bundles = {
            workload: make_bundle(base, f"bundle-{index}", args)
            for index, (workload, args) in enumerate(WORKLOADS.items())
        }
        state_root = base / "state"
        state_root.mkdir()
        measure(runners, bundles, runs, warmup, state_root, arguments.settle_ms / 1000)
    load_after = os.getloadavg()
    summary = summarise(runners)
    summary["notes"] = [
        f"embedded-cli: {' '.join(embedded_cli_path())} (this environment's install)",
        f"embedded-cli-installed: wheel in a new venv of {arguments.install_python}",
        f"embedded-cli-debian: wheel in a new venv of {DEBIAN_PYTHON}",
        "load average (1, 5, 15 min) before the timed runs: "
        + ", ".join(f"{value:.2f}" for value in load_before)
        + "; after: "
        + ", ".join(f"{value:.2f}" for value in load_after),
    ]
    print_report(summary, runs)
    if arguments.json:
        arguments.json.write_text(json.dumps({"runs": runs, **summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        try:
            sys.exit(main())
        except BenchError as error:
            print(f"oci_run: {error}", file=sys.stderr)
            sys.exit(2)
