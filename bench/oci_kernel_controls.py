"""Cost of the OCI kernel controls on the container start path; prints medians in ms.

Run: python3 bench/oci_kernel_controls.py [runs]
Measures: module import in a fresh /usr/bin/python3 (cumulative, -X importtime; with
PYTHONDONTWRITEBYTECODE set the package is compiled from source each time); compiling an
allow-list seccomp profile of every system call libseccomp knows, without and with the
cache; loading it in a child; applying a Landlock policy in a child; and, as root, making,
joining and removing a pids+memory cgroup.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import auto_review
from auto_review.oci.cgroups import Cgroup
from auto_review.oci.landlock import LandlockPolicy, apply, landlock_abi
from auto_review.oci.seccomp import SeccompFilter

SOURCE_ROOT = str(Path(auto_review.__file__).parents[1])


def known_syscall_names() -> list[str]:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_num_arch.argtypes = (ctypes.c_uint32, ctypes.c_int)
    libc = ctypes.CDLL(None)
    libc.free.argtypes = (ctypes.c_void_p,)
    native = lib.seccomp_arch_native()
    names = []
    for number in range(512):
        pointer = lib.seccomp_syscall_resolve_num_arch(native, number)
        if pointer:
            names.append(ctypes.string_at(pointer).decode())
            libc.free(pointer)
    return names


def median_ms(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def child_ms(action: Callable[[], object], runs: int) -> float:
    """Median time of the action alone, measured inside forked children."""
    samples = []
    for _ in range(runs):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            start = time.perf_counter()
            action()
            os.write(write_end, str(time.perf_counter() - start).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as reader:
            samples.append(float(reader.read()) * 1000)
        os.waitpid(pid, 0)
    return statistics.median(samples)


def import_ms(module: str, runs: int) -> float:
    """Median cumulative import time of module in a fresh /usr/bin/python3 (-X importtime)."""
    env = {"PYTHONPATH": SOURCE_ROOT, "PATH": "/usr/bin:/bin"}
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            ["/usr/bin/python3", "-X", "importtime", "-c", f"import {module}"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        last = result.stderr.strip().splitlines()[-1]
        samples.append(int(last.split("|")[1]) / 1000)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    names = known_syscall_names()
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    }
    compiled = SeccompFilter.from_spec(profile)
    print(f"runs per figure: {runs}")
    for module in ("auto_review.oci.seccomp", "auto_review.oci.landlock",
                   "auto_review.oci.cgroups"):  # fmt: skip
        print(f"import {module} (fresh /usr/bin/python3): {import_ms(module, runs):.2f} ms")
    compile_ms = median_ms(lambda: SeccompFilter.from_spec(profile), runs)
    print(f"seccomp from_spec, {len(names)} names, 3 arches "
          f"({len(compiled.program) // 8} BPF instructions): {compile_ms:.2f} ms")  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        SeccompFilter.from_spec(profile, cache_dir=cache)
        cached_ms = median_ms(lambda: SeccompFilter.from_spec(profile, cache_dir=cache), runs)
    print(f"seccomp from_spec, same profile, cache hit: {cached_ms:.2f} ms")
    print(f"seccomp load in child: {child_ms(compiled.load, runs):.3f} ms")
    policy = LandlockPolicy(("/usr", "/etc", "/proc"), ("/tmp",))
    landlock_ms = child_ms(lambda: apply(policy), runs)
    print(f"landlock apply in child (ABI {landlock_abi()}): {landlock_ms:.3f} ms")
    if os.geteuid() == 0:
        resources = {"pids": {"limit": 64}, "memory": {"limit": 256 << 20}}

        def cgroup_cycle() -> None:
            cgroup = Cgroup.create(f"bench-{uuid.uuid4().hex[:8]}", None, resources,
                                   best_effort=False)  # fmt: skip
            cgroup.add_process(os.getpid())
            for directory in cgroup.paths():  # move back out so destroy() can remove it
                Path(directory).parent.joinpath("cgroup.procs").write_text(str(os.getpid()))
            cgroup.destroy()

        print(f"cgroup create+add+destroy (pids, memory): {median_ms(cgroup_cycle, runs):.2f} ms")
    else:
        print("cgroup figures need root")


if __name__ == "__main__":
    main()
