"""Landlock file-system confinement of the container, through the raw system calls.

The policy comes from the bundle annotation ``org.auto-review.landlock``, a JSON object:

    {"read_only": ["/usr", "/etc"], "read_write": ["/tmp"], "mandatory": false}

Paths are absolute paths as the container sees them: ``apply`` runs in the container init
after ``pivot_root``. Everything under a ``read_only`` path may be read, listed and
executed; everything under a ``read_write`` path may also be written, created, removed,
renamed, linked and truncated, and its devices used with ioctl. Anything else in the file
system is denied (already open file descriptors keep working). A missing path is an error,
not a skipped rule. ``mandatory`` (default false) turns "this kernel has no Landlock" from
a degraded posture into a failure.

Landlock needs ``no_new_privs`` or ``CAP_SYS_ADMIN``, like seccomp; ``apply`` does not set
``no_new_privs`` itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from auto_review.oci.errors import SpecError, StepError

LANDLOCK_ANNOTATION = "org.auto-review.landlock"

# The Landlock calls were added after the system call tables were unified: every
# architecture uses these numbers.
_NR_CREATE_RULESET = 444
_NR_ADD_RULE = 445
_NR_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# LANDLOCK_ACCESS_FS_* from <linux/landlock.h>.
_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_ABI1_FS = (1 << 13) - 1
_FS_BY_ABI = {1: _ABI1_FS, 2: _ABI1_FS | _REFER, 3: _ABI1_FS | _REFER | _TRUNCATE}
_LATEST_FS = _ABI1_FS | _REFER | _TRUNCATE | _IOCTL_DEV

_READ_ONLY_ACCESS = _EXECUTE | _READ_FILE | _READ_DIR
# Rights the kernel accepts on a rule whose path is not a directory.
_FILE_ACCESS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV

_POLICY_KEYS = frozenset({"read_only", "read_write", "mandatory"})


class _RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr, file-system part only (the kernel accepts this size)."""

    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneathAttr(ctypes.Structure):
    """struct landlock_path_beneath_attr (packed in the kernel header)."""

    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class LandlockPolicy:
    """Which container paths stay readable and writable once Landlock is enforced."""

    __slots__ = ("mandatory", "read_only", "read_write")

    def __init__(
        self, read_only: tuple[str, ...], read_write: tuple[str, ...], mandatory: bool = False
    ) -> None:
        self.read_only = read_only
        self.read_write = read_write
        self.mandatory = mandatory

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LandlockPolicy) and (
            (self.read_only, self.read_write, self.mandatory)
            == (other.read_only, other.read_write, other.mandatory)
        )

    def __hash__(self) -> int:
        return hash((self.read_only, self.read_write, self.mandatory))

    def __repr__(self) -> str:
        return (
            f"LandlockPolicy(read_only={self.read_only!r}, read_write={self.read_write!r}, "
            f"mandatory={self.mandatory!r})"
        )


def _paths(document: dict[str, object], key: str) -> tuple[str, ...]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise SpecError(f"annotation {LANDLOCK_ANNOTATION}: {key} must be a list of paths")
    for path in value:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise SpecError(
                f"annotation {LANDLOCK_ANNOTATION}: {key} holds a non-absolute path {path!r}"
            )
    return tuple(value)


def policy_from_annotations(annotations: dict[str, str]) -> LandlockPolicy | None:
    """The policy of the bundle's annotations, None when absent; SpecError if malformed."""
    raw = annotations.get(LANDLOCK_ANNOTATION)
    if raw is None:
        return None
    import json  # only bundles that use the annotation pay for it

    try:
        document = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"annotation {LANDLOCK_ANNOTATION}: not valid JSON") from exc
    if not isinstance(document, dict):
        raise SpecError(f"annotation {LANDLOCK_ANNOTATION}: must be a JSON object")
    unknown = sorted(set(document) - _POLICY_KEYS)
    if unknown:
        raise SpecError(f"annotation {LANDLOCK_ANNOTATION}: unknown keys {', '.join(unknown)}")
    mandatory = document.get("mandatory", False)
    if not isinstance(mandatory, bool):
        raise SpecError(f"annotation {LANDLOCK_ANNOTATION}: mandatory must be true or false")
    return LandlockPolicy(_paths(document, "read_only"), _paths(document, "read_write"), mandatory)


_libc: ctypes.CDLL | None = None


def _syscall(number: int, *args: object) -> tuple[int, int]:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    # syscall() reads every argument as a long: widen plain ints explicitly.
    widened = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *widened)
    return result, ctypes.get_errno()


def _probe_abi() -> tuple[int, int]:
    """(ABI version, errno of the probe); version 0 when the kernel lacks Landlock."""
    version, err = _syscall(_NR_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return (version, 0) if version > 0 else (0, err)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled.

    Not cached: the answer can differ inside a process that a filter already confines.
    """
    return _probe_abi()[0]


def handled_access_fs(abi: int) -> int:
    """Every file-system right this ABI can restrict (all of them are handled)."""
    if abi <= 0:
        return 0
    return _FS_BY_ABI.get(abi, _LATEST_FS)


def _add_path_rule(ruleset_fd: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise StepError("landlock", exc.errno or errno.EIO, path) from exc
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ACCESS
        rule = _PathBeneathAttr(access, fd)
        result, err = _syscall(_NR_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        if result != 0:
            raise StepError("landlock", err, path)
    finally:
        os.close(fd)


def apply(policy: LandlockPolicy) -> str:
    """Confine the calling process (the container init) to the policy.

    Returns "enforced", or "unsupported" when the kernel lacks Landlock and the policy is
    not mandatory. StepError("landlock", errno, path) on any failure.
    """
    abi, probe_errno = _probe_abi()
    if abi == 0:
        if policy.mandatory:
            raise StepError("landlock", probe_errno or errno.EOPNOTSUPP, "kernel without Landlock")
        return "unsupported"
    handled = handled_access_fs(abi)
    attr = _RulesetAttr(handled)
    ruleset_fd, err = _syscall(
        _NR_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0
    )
    if ruleset_fd < 0:
        raise StepError("landlock", err, "landlock_create_ruleset")
    try:
        for path in policy.read_only:
            _add_path_rule(ruleset_fd, path, _READ_ONLY_ACCESS & handled)
        for path in policy.read_write:
            _add_path_rule(ruleset_fd, path, handled)
        result, err = _syscall(_NR_RESTRICT_SELF, ruleset_fd, 0)
        if result != 0:
            hint = "no_new_privs unset and no CAP_SYS_ADMIN" if err == errno.EPERM else ""
            raise StepError("landlock", err, hint)
    finally:
        os.close(ruleset_fd)
    return "enforced"
