"""The OCI ``linux.seccomp`` object, compiled by the system libseccomp and loaded raw.

``SeccompFilter.from_spec`` runs in the calling process before any fork: it validates the
object, builds the filter with libseccomp (``libseccomp.so.2`` through ctypes) and exports
the finished BPF program. ``load`` runs in the container init and only makes one
``seccomp(SECCOMP_SET_MODE_FILTER)`` system call with that program, so the child needs
neither libseccomp nor any allocation beyond what the parent prepared.

Choices that differ from runc, on purpose (fail closed):
- a rule naming a system call that libseccomp does not know is an error
  (``StepError("seccomp", EINVAL, name)``); runc skips such names silently;
- ``load`` never sets ``no_new_privs`` itself (libseccomp would by default): the spec's
  ``process.noNewPrivileges`` decides, and without it the kernel demands
  ``CAP_SYS_ADMIN``, otherwise loading fails with ``EACCES``;
- a system call made with a foreign architecture's ABI kills the whole process
  (libseccomp's default kills only the thread).

``clone3`` passes its flags in a structure in memory, which a seccomp filter cannot read:
argument conditions on ``clone3`` are useless. A profile that restricts ``clone`` flags
(``SCMP_CMP_MASKED_EQ`` on the ``CLONE_NEW*`` bits of argument 0) should make ``clone3``
fail with ``ENOSYS`` (``SCMP_ACT_ERRNO`` with ``errnoRet`` 38); glibc then falls back to
``clone``, which the filter can inspect.
"""

from __future__ import annotations

import ctypes
import errno
import os

from auto_review.oci.errors import StepError

# typing and dataclasses cost milliseconds at import; this module sits on the CLI path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_SECCOMP_FIELDS: frozenset[str] = frozenset(
    {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls"}
)

# Keys of linux.seccomp that the schema allows but this runtime cannot honour.
_UNSUPPORTED_FIELDS = ("listenerPath", "listenerMetadata")

# Action values as libseccomp's seccomp.h defines them.
_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_BASE = 0x00050000
_ACT_TRACE_BASE = 0x7FF00000

_FIXED_ACTIONS = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_LOG": _ACT_LOG,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
}
_RETURN_CODE_ACTIONS = {"SCMP_ACT_ERRNO": _ACT_ERRNO_BASE, "SCMP_ACT_TRACE": _ACT_TRACE_BASE}

# enum scmp_compare in seccomp.h.
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr in seccomp.h (libseccomp 2.5).
_ATTR_ACT_BADARCH = 2
_ATTR_CTL_NNP = 3

# Kernel flags for seccomp(SECCOMP_SET_MODE_FILTER); libseccomp only adds them at load
# time, so they are kept here and passed by load().
_KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
# Only meaningful with a user-notification listener, which this runtime does not offer.
_UNSUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)

_SECCOMP_SET_MODE_FILTER = 1
_MAX_ERRNO = 4095
_MAX_SYSCALL_ARGS = 6
_UINT64_MAX = (1 << 64) - 1
_NR_SCMP_ERROR = -1
_BPF_INSTRUCTION_SIZE = 8
_BPF_MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the program handed to the kernel."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libseccomp: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None


def _seccomp_library() -> ctypes.CDLL:
    global _libseccomp
    if _libseccomp is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as exc:
            raise StepError("seccomp", errno.ENOENT, "libseccomp.so.2") from exc
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = (ctypes.c_void_p,)
        lib.seccomp_release.restype = None
        lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
        lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        )
        lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
        _libseccomp = lib
    return _libseccomp


def _c_library() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _invalid(where: str) -> StepError:
    return StepError("seccomp", errno.EINVAL, where)


class _Rule:
    """One validated entry of ``syscalls``."""

    __slots__ = ("action", "conditions", "names", "where")

    def __init__(
        self,
        names: tuple[str, ...],
        action: int,
        conditions: tuple[tuple[int, int, int, int], ...],  # (index, op, datum_a, datum_b)
        where: str,
    ) -> None:
        self.names = names
        self.action = action
        self.conditions = conditions
        self.where = where


def _uint(value: Any, limit: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _invalid(where)
    return value


def _action(name: Any, errno_ret: Any, where: str) -> int:
    if name in _FIXED_ACTIONS:
        if errno_ret is not None:
            # errnoRet only has a meaning for the actions that return a code.
            raise _invalid(f"{where} errnoRet with {name}")
        return _FIXED_ACTIONS[name]
    if name in _RETURN_CODE_ACTIONS:
        code = errno.EPERM if errno_ret is None else _uint(errno_ret, _MAX_ERRNO, where)
        return _RETURN_CODE_ACTIONS[name] | code
    if name == "SCMP_ACT_NOTIFY":
        raise StepError("seccomp", errno.EOPNOTSUPP, f"{where} SCMP_ACT_NOTIFY")
    raise _invalid(f"{where} {name}")


def _conditions(args: Any, where: str) -> tuple[tuple[int, int, int, int], ...]:
    if args is None:
        return ()
    if not isinstance(args, list):
        raise _invalid(f"{where}.args")
    parsed = []
    for position, arg in enumerate(args):
        here = f"{where}.args[{position}]"
        if not isinstance(arg, dict):
            raise _invalid(here)
        index = _uint(arg.get("index"), _MAX_SYSCALL_ARGS - 1, f"{here}.index")
        operator = _OPERATORS.get(arg.get("op"))  # type: ignore[arg-type]
        if operator is None:
            raise _invalid(f"{here}.op {arg.get('op')}")
        value = _uint(arg.get("value"), _UINT64_MAX, f"{here}.value")
        value_two = _uint(arg.get("valueTwo", 0), _UINT64_MAX, f"{here}.valueTwo")
        # For SCMP_CMP_MASKED_EQ libseccomp takes the mask first: OCI's value is the mask.
        parsed.append((index, operator, value, value_two))
    return tuple(parsed)


def _rules(syscalls: Any) -> list[_Rule]:
    if syscalls is None:
        return []
    if not isinstance(syscalls, list):
        raise _invalid("syscalls")
    rules = []
    for position, entry in enumerate(syscalls):
        where = f"syscalls[{position}]"
        if not isinstance(entry, dict):
            raise _invalid(where)
        names = entry.get("names")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(name, str) and name and "\0" not in name for name in names)
        ):
            raise _invalid(f"{where}.names")
        action = _action(entry.get("action"), entry.get("errnoRet"), where)
        rules.append(_Rule(tuple(names), action, _conditions(entry.get("args"), where), where))
    return rules


def _kernel_flags(flags: Any) -> int:
    if flags is None:
        return 0
    if not isinstance(flags, list):
        raise _invalid("flags")
    combined = 0
    for flag in flags:
        if flag in _UNSUPPORTED_FLAGS:
            raise StepError("seccomp", errno.EOPNOTSUPP, f"flags {flag}")
        if flag not in _KERNEL_FLAGS:
            raise _invalid(f"flags {flag}")
        combined |= _KERNEL_FLAGS[flag]
    return combined


def _check_fields(linux_seccomp: Any) -> None:
    if not isinstance(linux_seccomp, dict):
        raise _invalid("linux.seccomp")
    for field in _UNSUPPORTED_FIELDS:
        if field in linux_seccomp:
            raise StepError("seccomp", errno.EOPNOTSUPP, field)
    for field in linux_seccomp:
        if field not in SUPPORTED_SECCOMP_FIELDS:
            raise _invalid(field)
    if "defaultAction" not in linux_seccomp:
        raise _invalid("defaultAction")


def _checked(rc: int, where: str) -> None:
    if rc < 0:
        raise StepError("seccomp", -rc, where)


def _add_architectures(lib: ctypes.CDLL, ctx: int, architectures: Any) -> None:
    if architectures is None:
        return
    if not isinstance(architectures, list):
        raise _invalid("architectures")
    for name in architectures:
        if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
            raise _invalid(f"architectures {name}")
        token = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
        if token == 0:
            raise _invalid(f"architectures {name}")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc != -errno.EEXIST:  # the native architecture is always present
            _checked(rc, f"architectures {name}")


def _syscall_number(lib: ctypes.CDLL, name: str) -> int:
    number: int = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _NR_SCMP_ERROR:
        raise _invalid(name)
    return number


def _add_rule(lib: ctypes.CDLL, ctx: int, rule: _Rule, default_action: int) -> None:
    if rule.action == default_action:
        return  # libseccomp refuses rules that repeat the default; they change nothing
    indexes = [condition[0] for condition in rule.conditions]
    if len(set(indexes)) == len(indexes):
        groups = [rule.conditions]  # one rule: every condition must hold
    else:
        # Several conditions on one argument: like runc, each one becomes its own rule,
        # so any of them matching is enough.
        groups = [(condition,) for condition in rule.conditions]
    for name in rule.names:
        number = _syscall_number(lib, name)
        for group in groups:
            array = (_ArgCmp * max(len(group), 1))(*(_ArgCmp(*cond) for cond in group))
            rc = lib.seccomp_rule_add_array(ctx, rule.action, number, len(group), array)
            _checked(rc, f"{rule.where} {name}")


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _checked(lib.seccomp_export_bpf(ctx, fd), "export")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- compiled-program cache

_CACHE_MAGIC = b"ar-seccomp-1\n"
_CACHE_HEADER = 12  # kernel flags, seccomp syscall number, rule count: 3 x uint32


def _sha256_hex(data: bytes) -> str:
    # a strong hash: the entry is a compiled filter loaded as it is, never compared again
    from hashlib import sha256

    return sha256(data).hexdigest()


def _cache_key(linux_seccomp: Any) -> str | None:
    """Digest of the object, the libseccomp version and the machine; None if not JSON."""
    import json

    try:
        canonical = json.dumps(linux_seccomp, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    lib = _seccomp_library()
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    version = tuple(lib.seccomp_version().contents)
    material = f"{canonical}\n{version}\n{os.uname().machine}".encode()
    return _sha256_hex(material)


def _private_to_caller(fd: int) -> bool:
    info = os.fstat(fd)
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _read_cache(directory: str, key: str) -> tuple[bytes, int, int, int] | None:
    """(program, kernel flags, seccomp nr, rule count) of a trusted cache entry, or None."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not _private_to_caller(dir_fd):
            return None  # others could plant a weaker filter here
        fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    try:
        if not _private_to_caller(fd):
            return None
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    body = data[len(_CACHE_MAGIC) :]
    if not data.startswith(_CACHE_MAGIC) or len(body) <= _CACHE_HEADER:
        return None
    program = body[_CACHE_HEADER:]
    if len(program) % _BPF_INSTRUCTION_SIZE:
        return None
    flags, syscall_nr, rules = (
        int.from_bytes(body[i : i + 4], "little") for i in range(0, _CACHE_HEADER, 4)
    )
    return program, flags, syscall_nr, rules


def _write_cache(directory: str, key: str, compiled: SeccompFilter) -> None:
    """Store a compiled program; a cache that cannot be written is only slower."""
    header = b"".join(
        value.to_bytes(4, "little")
        for value in (compiled.kernel_flags, compiled._syscall_nr, compiled.rule_count)
    )
    temporary = os.path.join(directory, f".{key}.{os.getpid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _CACHE_MAGIC + header + compiled.program)
        finally:
            os.close(fd)
        os.replace(temporary, os.path.join(directory, key))
    except OSError:
        _remove_quietly(temporary)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return


class SeccompFilter:
    """A compiled seccomp program, ready to be loaded by the container init."""

    def __init__(self, program: bytes, kernel_flags: int, syscall_nr: int, rule_count: int):
        if not program or len(program) % _BPF_INSTRUCTION_SIZE:
            raise StepError("seccomp", errno.EINVAL, "compiled program")
        instructions = len(program) // _BPF_INSTRUCTION_SIZE
        if instructions > _BPF_MAX_INSTRUCTIONS:
            # The kernel would refuse it at load time, inside the container init.
            raise StepError(
                "seccomp", errno.E2BIG, f"{instructions} BPF instructions (kernel limit 4096)"
            )
        self.program = program
        self.kernel_flags = kernel_flags
        self.rule_count = rule_count
        self._syscall_nr = syscall_nr
        # Everything load() touches is built here, before the fork.
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(
            len(program) // _BPF_INSTRUCTION_SIZE, ctypes.addressof(self._buffer)
        )
        self._libc = _c_library()

    @classmethod
    def from_spec(
        cls, linux_seccomp: dict[str, Any], *, cache_dir: str | os.PathLike[str] | None = None
    ) -> SeccompFilter:
        """Validate and compile ``linux.seccomp``; StepError("seccomp", ...) names the field.

        With ``cache_dir`` (a directory only the caller can write, e.g. under the runtime
        root) a program compiled earlier from the identical object by the same libseccomp
        is reused: libseccomp takes tens of milliseconds for a multi-architecture profile.
        """
        if cache_dir is None:
            return cls._compile(linux_seccomp)
        key = _cache_key(linux_seccomp)
        cached = _read_cache(os.fspath(cache_dir), key) if key else None
        if cached is not None:
            return cls(*cached)
        compiled = cls._compile(linux_seccomp)
        if key:
            _write_cache(os.fspath(cache_dir), key, compiled)
        return compiled

    @classmethod
    def _compile(cls, linux_seccomp: dict[str, Any]) -> SeccompFilter:
        _check_fields(linux_seccomp)
        default_action = _action(
            linux_seccomp["defaultAction"], linux_seccomp.get("defaultErrnoRet"), "defaultAction"
        )
        rules = _rules(linux_seccomp.get("syscalls"))
        kernel_flags = _kernel_flags(linux_seccomp.get("flags"))
        lib = _seccomp_library()
        ctx = lib.seccomp_init(default_action)
        if not ctx:
            raise StepError("seccomp", errno.ENOMEM, "seccomp_init")
        try:
            _checked(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "no_new_privs attribute")
            _checked(
                lib.seccomp_attr_set(ctx, _ATTR_ACT_BADARCH, _ACT_KILL_PROCESS), "bad-arch action"
            )
            _add_architectures(lib, ctx, linux_seccomp.get("architectures"))
            for rule in rules:
                _add_rule(lib, ctx, rule, default_action)
            program = _export(lib, ctx)
            seccomp_nr = _syscall_number(lib, "seccomp")
        finally:
            lib.seccomp_release(ctx)
        return cls(program, kernel_flags, seccomp_nr, len(rules))

    def load(self) -> None:
        """Install the filter on the calling process (the container init).

        Needs ``no_new_privs`` or ``CAP_SYS_ADMIN``; StepError("seccomp", errno) otherwise.
        """
        rc = self._libc.syscall(
            ctypes.c_long(self._syscall_nr),
            ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
            ctypes.c_long(self.kernel_flags),
            ctypes.byref(self._fprog),
        )
        if rc == 0:
            return
        if rc > 0:
            # With TSYNC the kernel answers the id of a thread it could not synchronise.
            raise StepError("seccomp", errno.ESRCH, f"thread {rc} (flags TSYNC)")
        err = ctypes.get_errno()
        hint = "no_new_privs unset and no CAP_SYS_ADMIN" if err == errno.EACCES else ""
        raise StepError("seccomp", err, hint)
