"""What the inner gateway's root file system holds: read-only binds of exactly what it runs.

The container sees the interpreter, its standard library and search path (site-packages,
an editable install's ``src`` dir, a ``PYTHONPATH`` copy), ``git`` with its helper
directory, shared libraries and CA certificates, each at the same absolute path as on the
host, so ``sys.path``, shebangs and compiled-in paths keep working. Nothing else of the
host's file system is visible.

Shared libraries: the multiarch directory that holds the C library is bound whole, and
every library ``ldd`` reports for the interpreter, ``git`` and ``git-remote-https``
outside it (a pyenv ``libpython``, the dynamic loader's own path) is bound file by file.
A per-file closure of every extension module was measured at about 5 s here (``ldd`` over
the 464 ``.so`` files of the interpreter's tree) on every launch, and it would still miss
what is loaded with ``dlopen`` (``libgcc_s`` for thread cancellation, OpenSSL providers,
gconv modules). The library directory holds only world-readable shared code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from auto_review.isolation.outer import frozen


class BundleError(RuntimeError):
    """Staging the bundle failed; ``step`` names where. Never carries a secret value."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"bundle staging failed: step={step}: {detail}")
        self.step = step
        self.detail = detail


QUERY_TIMEOUT = 30
SHELL = "/bin/sh"  # git's SHELL_PATH
# Directories too broad to bind whole: a search path naming one of these is refused.
TOO_BROAD = frozenset(
    ("/", "/etc", "/root", "/home", "/usr", "/var", "/run", "/tmp", "/proc", "/sys", "/dev",  # noqa: S108
     "/boot", "/opt", "/srv", "/mnt", "/media", "/usr/lib", "/usr/local", "/lib")
)  # fmt: skip
CA_PATHS = ("/etc/ssl/certs", "/usr/share/ca-certificates", "/usr/lib/ssl", "/etc/ssl/openssl.cnf")
LOADER_CACHE = "/etc/ld.so.cache"
# Options that take a value: kept with it when the interpreter is asked for its layout.
_OPTIONS_WITH_VALUE = ("-X", "-W")
_SIMPLE_OPTIONS = ("-s", "-S", "-I", "-E", "-B", "-u", "-O", "-OO", "-P", "-b", "-bb")

INTERPRETER_QUERY = """
import json, os, sys
found = {"path": list(sys.path), "prefix": sys.prefix, "base_prefix": sys.base_prefix,
         "executable": sys.executable, "package": None, "certifi": None}
try:
    import auto_review
    found["package"] = os.path.dirname(os.path.dirname(os.path.abspath(auto_review.__file__)))
except ImportError:
    pass
try:
    import certifi
    found["certifi"] = certifi.where()
except ImportError:
    pass
print(json.dumps(found))
"""


@dataclass(frozen=True, slots=True)
class Bind:
    """One bind mount: host ``source`` (symlinks resolved) at ``destination`` inside."""

    source: str
    destination: str
    writable: bool = False
    executable: bool = True

    def mount(self) -> dict[str, object]:
        options = ["bind", "rw" if self.writable else "ro", "nosuid", "nodev"]
        if not self.executable:
            options.append("noexec")
        return {
            "destination": self.destination,
            "type": "bind",
            "source": self.source,
            "options": options,
        }


@dataclass(frozen=True, slots=True)
class InterpreterLayout:
    executable: str  # as named in process.args
    search_path: tuple[str, ...]  # existing absolute sys.path directories
    prefix: str
    base_prefix: str
    package_root: str  # the directory auto_review is imported from
    certifi_bundle: str | None


def canonical(path: str) -> str:
    """The path with its directories' symlinks resolved, the last component kept."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def interpreter_options(args: Sequence[str]) -> list[str]:
    """The interpreter's own options in ``args`` (before ``-m``/``-c``/the script)."""
    options: list[str] = []
    index = 1
    while index < len(args):
        arg = args[index]
        if arg in _OPTIONS_WITH_VALUE and index + 1 < len(args):
            options += [arg, args[index + 1]]
            index += 2
            continue
        if arg in _SIMPLE_OPTIONS:
            options.append(arg)
            index += 1
            continue
        break
    return options


def describe_interpreter(args: Sequence[str], env: Mapping[str, str]) -> InterpreterLayout:
    """Ask the inner interpreter (with the inner environment) where its files are."""
    import subprocess  # only when the plan is not cached: not on every launch's path

    if not args or not os.path.isabs(args[0]):
        raise BundleError(
            "interpreter", "process args must start with an absolute interpreter path"
        )
    interpreter = args[0]
    if not os.access(interpreter, os.X_OK):
        raise BundleError("interpreter", f"{interpreter} is not an executable file")
    try:
        completed = subprocess.run(
            [interpreter, *interpreter_options(args), "-c", INTERPRETER_QUERY],
            env=dict(env), capture_output=True, text=True, timeout=QUERY_TIMEOUT, cwd="/",
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError("interpreter", f"{interpreter} could not be run: {exc}") from None
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise BundleError("interpreter", f"{interpreter} failed to report its layout "
                          f"(exit {completed.returncode})")  # fmt: skip
    found = json.loads(lines[-1])
    if not found["package"]:
        raise BundleError("interpreter", f"{interpreter} cannot import auto_review "
                          "with the inner environment")  # fmt: skip
    search = tuple(
        entry for entry in found["path"] if os.path.isabs(entry) and os.path.exists(entry)
    )
    return InterpreterLayout(
        executable=interpreter,
        search_path=search,
        prefix=found["prefix"],
        base_prefix=found["base_prefix"],
        package_root=found["package"],
        certifi_bundle=found["certifi"],
    )


def is_single_file(args: Sequence[str]) -> bool:
    """Whether the container runs this process's own single file (see frozen.py)."""
    return frozen.is_frozen() and list(args) == frozen.inner_args()


def frozen_layout(executable: str) -> InterpreterLayout:
    """The single file's runtime: its unpacked cache entry (the executable, its modules
    archive and ``_internal``), checked before it is bound."""
    home = frozen.unpacked_dir()
    try:
        frozen.check_unpacked_dir(home)
    except frozen.UnpackedRuntimeError as exc:
        raise BundleError("interpreter", str(exc)) from None
    return InterpreterLayout(executable=executable, search_path=(home,), prefix=home,
                             base_prefix=home, package_root=home, certifi_bundle=None)  # fmt: skip


def host_git() -> tuple[str, str]:
    """``git`` on the host and its helper directory (``git --exec-path``)."""
    import subprocess  # only when the plan is not cached: not on every launch's path

    git = shutil.which("git", path="/usr/local/bin:/usr/bin:/bin")
    if git is None:
        raise BundleError("git", "git is not installed on the host")
    completed = subprocess.run(
        [git, "--exec-path"], capture_output=True, text=True, timeout=QUERY_TIMEOUT, check=False
    )
    exec_path = completed.stdout.strip()
    if completed.returncode != 0 or not os.path.isdir(exec_path):
        raise BundleError("git", "git --exec-path gave no helper directory")
    return git, exec_path


def host_shell() -> str:
    """The real file behind ``/bin/sh``: git runs ``!`` credential helpers with it (the
    workspace's helper hands the forge token to git that way), so it is bound read-only."""
    shell = os.path.realpath(SHELL)
    if not os.path.isfile(shell) or not os.access(shell, os.X_OK):
        raise BundleError("shell", f"{SHELL} is missing on the host: git's credential helper "
                          "runs with it")  # fmt: skip
    return shell


def shared_libraries(executables: Iterable[str]) -> list[str]:
    """Every library ``ldd`` (the dynamic loader) reports for these executables, as named."""
    import subprocess  # only when the plan is not cached: not on every launch's path

    names = list(executables)
    try:
        completed = subprocess.run(
            ["ldd", *names], capture_output=True, text=True, timeout=QUERY_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError("libraries", f"ldd could not be run: {exc}") from None
    libraries: list[str] = []
    for line in completed.stdout.splitlines():
        if not line.startswith("\t"):
            continue  # "<executable>:" headers
        entry = line.strip()
        if "=> not found" in entry:
            raise BundleError("libraries", f"a library is missing on the host: {entry.split()[0]}")
        if "=>" in entry:
            target = entry.split("=>", 1)[1].strip().split(" (", 1)[0]
        else:
            target = entry.split(" (", 1)[0]  # the loader itself; the vDSO has no path
        if target.startswith("/") and target not in libraries:
            libraries.append(target)
    if not libraries:
        raise BundleError("libraries", "ldd reported no shared library (static binaries?)")
    return libraries


def library_binds(libraries: Sequence[str]) -> list[Bind]:
    """The C library's directory whole, and every other library as a file."""
    libc = next((lib for lib in libraries if os.path.basename(lib).startswith("libc.so")), None)
    if libc is None:
        raise BundleError("libraries", "ldd reported no C library")
    library_dir = os.path.dirname(os.path.realpath(libc))
    binds = [Bind(library_dir, library_dir)]
    binds += [Bind(os.path.realpath(lib), canonical(lib)) for lib in libraries]
    return binds


def search_path_binds(layout: InterpreterLayout) -> list[Bind]:
    binds = [Bind(os.path.realpath(layout.executable), canonical(layout.executable))]
    for entry in (*layout.search_path, layout.package_root):
        if os.path.realpath(entry) in TOO_BROAD or entry in TOO_BROAD:
            raise BundleError("rootfs", f"refusing to bind {entry} (on the interpreter's path) "
                              "whole: too broad")  # fmt: skip
        binds.append(Bind(os.path.realpath(entry), canonical(entry)))
    if layout.prefix != layout.base_prefix:
        marker = os.path.join(layout.prefix, "pyvenv.cfg")  # a virtual environment's landmark
        if os.path.isfile(marker):
            binds.append(Bind(os.path.realpath(marker), canonical(marker), executable=False))
    if layout.certifi_bundle:
        bundle = layout.certifi_bundle
        binds.append(Bind(os.path.realpath(bundle), canonical(bundle), executable=False))
    return binds


def certificate_binds() -> list[Bind]:
    binds = [
        Bind(os.path.realpath(path), canonical(path), executable=False)
        for path in CA_PATHS
        if os.path.exists(path)
    ]
    if not binds or not os.path.isdir("/etc/ssl/certs"):
        raise BundleError("certificates", "no CA certificates at /etc/ssl/certs on the host")
    if os.path.isfile(LOADER_CACHE):
        binds.append(Bind(LOADER_CACHE, LOADER_CACHE, executable=False))
    return binds


def _covered(bind: Bind, directories: Sequence[Bind]) -> bool:
    """Whether a directory bind already shows ``bind.source`` at ``bind.destination``."""
    for directory in directories:
        if directory is bind or not bind.destination.startswith(directory.destination + "/"):
            continue
        relative = os.path.relpath(bind.destination, directory.destination)
        if os.path.realpath(os.path.join(directory.source, relative)) == bind.source:
            return True
    return False


def minimal_binds(binds: Iterable[Bind]) -> list[Bind]:
    """Drop duplicates and binds another directory bind already shows; parents first.

    Two different sources for one destination are refused.
    """
    by_destination: dict[str, Bind] = {}
    for bind in binds:
        known = by_destination.get(bind.destination)
        if known is not None and known.source != bind.source:
            raise BundleError("rootfs", f"two sources for {bind.destination}: "
                              f"{known.source} and {bind.source}")  # fmt: skip
        if known is None or (bind.executable and not known.executable):
            by_destination[bind.destination] = bind
    unique = list(by_destination.values())
    directories = [bind for bind in unique if os.path.isdir(bind.source)]
    kept = [bind for bind in unique if not _covered(bind, directories)]
    return sorted(kept, key=lambda bind: bind.destination.split("/"))


def read_only_binds(layout: InterpreterLayout) -> tuple[list[Bind], list[str]]:
    """Everything the inner gateway reads or runs from the host, and the host paths whose
    change would change that answer (for the plan cache)."""
    git, git_exec_path = host_git()
    shell = host_shell()
    executables = [
        os.path.realpath(layout.executable),
        os.path.realpath(git),
        os.path.join(git_exec_path, "git-remote-https"),
        shell,
    ]
    libraries = shared_libraries(path for path in executables if os.path.exists(path))
    binds = search_path_binds(layout)
    binds += [Bind(os.path.realpath(git), canonical(git)),
              Bind(os.path.realpath(git_exec_path), canonical(git_exec_path)),
              Bind(shell, canonical(SHELL))]  # fmt: skip
    binds += library_binds(libraries)
    binds += certificate_binds()
    kept = minimal_binds(binds)
    watched = [
        *(bind.source for bind in kept), *executables, *libraries,
        *(os.path.realpath(lib) for lib in libraries), *layout.search_path,
        layout.package_root,
    ]  # fmt: skip
    return kept, watched


# ---------------------------------------------------------------- plan cache
# Asking the interpreter and ldd costs about 85 ms per launch. The answer is kept in the
# launcher's private runtime dir and reused while nothing it was derived from changed
# (inode, size, mtime and ctime of every bound source, library, executable and search
# path directory: a package installed or a .pth file added changes its directory).

PLAN_PREFIX = "rootfs-plan-"
PLAN_VERSION = 2  # raised whenever read_only_binds binds something new: old plans are stale


def _plan_key(args: Sequence[str], env: Mapping[str, str]) -> str:
    """What decides the interpreter's answer: itself, its options and the variables that
    move its search path (other variables may change per launch without a new plan)."""
    import hashlib

    relevant = sorted(
        (name, value) for name, value in env.items()
        if name.startswith(("PYTHON", "LD_")) or name == "HOME"
    )  # fmt: skip
    material = json.dumps(
        {"interpreter": args[0] if args else "", "options": interpreter_options(args),
         "env": relevant, "version": PLAN_VERSION}, sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(material.encode()).hexdigest()


def _fingerprint(paths: Iterable[str]) -> dict[str, list[int]]:
    found = {}
    for path in sorted(set(paths)):
        info = os.stat(path)
        found[path] = [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    return found


def _load_plan(path: str) -> list[Bind] | None:
    """The cached binds if the entry is ours, private, and its fingerprint still holds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None  # only an entry we wrote ourselves counts
        try:
            document = json.load(handle)
            if _fingerprint(document["fingerprint"]) != document["fingerprint"]:
                return None
            return [Bind(**entry) for entry in document["binds"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _store_plan(
    path: str, binds: list[Bind], watched: list[str], forbidden: Sequence[bytes]
) -> None:
    document = {
        "fingerprint": _fingerprint(watched),
        "binds": [
            {"source": bind.source, "destination": bind.destination,
             "writable": bind.writable, "executable": bind.executable}
            for bind in binds
        ],
    }  # fmt: skip
    data = json.dumps(document).encode()
    if any(value in data for value in forbidden):
        return  # never written; the bundle's own scan reports it
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # the cache only saves time


def plan_read_only_binds(
    args: Sequence[str],
    env: Mapping[str, str],
    cache_dir: str | None = None,
    forbidden: Sequence[bytes] = (),
) -> list[Bind]:
    """``read_only_binds`` for this interpreter and environment, cached in ``cache_dir``
    (never when a ``forbidden`` value would be written)."""
    # The single file's cache entry is checked at every launch, a cached plan or not: the
    # plan's fingerprint does not cover the directories above it.
    layout = frozen_layout(args[0]) if is_single_file(args) else None
    path = os.path.join(cache_dir, PLAN_PREFIX + _plan_key(args, env)) if cache_dir else None
    if path is not None:
        cached = _load_plan(path)
        if cached is not None:
            return cached
    binds, watched = read_only_binds(layout or describe_interpreter(args, env))
    if path is not None:
        _store_plan(path, binds, watched, forbidden)
    return binds


def host_root_links() -> dict[str, str]:
    """The host's top-level symlinks (``/lib -> usr/lib`` on merged-/usr systems), relative."""
    links = {}
    for name in sorted(os.listdir("/")):
        path = os.path.join("/", name)
        if os.path.islink(path):
            links[name] = os.readlink(path).lstrip("/")
    return links


def prepare_rootfs(rootfs: str, mount_points: Mapping[str, bool], links: Mapping[str, str]) -> None:
    """Make the rootfs directory: top-level links and one empty mount point per mount.

    ``mount_points`` maps each destination to whether it is a directory. Everything is
    created 0700/0600: inside, only the container's root (the launcher's uid) uses them.
    """
    os.mkdir(rootfs, 0o700)
    for name, target in links.items():
        os.symlink(target, os.path.join(rootfs, name))
    for destination, is_directory in mount_points.items():
        path = _inside(rootfs, destination, links)
        if is_directory:
            _private_dirs(rootfs, path)
            continue
        _private_dirs(rootfs, os.path.dirname(path))
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


def _private_dirs(rootfs: str, path: str) -> None:
    """``mkdir -p`` with every new directory 0700 (os.makedirs gives parents the umask's)."""
    current = rootfs
    for part in os.path.relpath(path, rootfs).split("/"):
        current = os.path.join(current, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(current, 0o700)


def _inside(rootfs: str, destination: str, links: Mapping[str, str]) -> str:
    """The host path of ``destination`` in the rootfs, top-level links followed by hand.

    Destinations are canonical host paths, so only a top-level link can occur in them.
    """
    parts = destination.strip("/").split("/")
    if parts[0] in links:
        parts = [*links[parts[0]].split("/"), *parts[1:]]
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError("rootfs", f"mount destination {destination} is not a plain path")
    return os.path.join(rootfs, *parts)
