"""Device access rules of ``linux.resources.devices``, for cgroup v1 and v2.

Rules apply in the listed order, then the runtime appends its own allow rules for the
devices every container gets (``/dev/null``, ``zero``, ``full``, ``random``,
``urandom``, ``tty``, ``ptmx``, ``/dev/pts/*``, and ``mknod`` of any node, like runc).

cgroup v1 receives the rules as lines in ``devices.allow`` / ``devices.deny``: the kernel
keeps the list. cgroup v2 has no device files: the rules are reduced here to the state v1
would reach (a default plus exceptions) and compiled into a ``BPF_PROG_TYPE_CGROUP_DEVICE``
program attached to the container's cgroup, which the kernel runs on every device open
and ``mknod``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from auto_review.oci.errors import SpecError, StepError

_WILDCARD = -1
_ALL_ACCESS = "rwm"
_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_*
_TYPE_CODES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_*


class DeviceRule:
    """One allow or deny rule on a device type, major:minor (-1 = any) and access."""

    __slots__ = ("access", "allow", "kind", "major", "minor")

    def __init__(self, allow: bool, kind: str, major: int, minor: int, access: str) -> None:
        self.allow = allow
        self.kind = kind  # "a", "b" or "c"
        self.major = major
        self.minor = minor
        self.access = access

    def resets(self) -> bool:
        """A rule on every device with every access replaces the whole list."""
        return (self.kind, self.major, self.minor, set(self.access)) == (
            "a",
            _WILDCARD,
            _WILDCARD,
            set(_ALL_ACCESS),
        )

    def line(self) -> str:
        """The rule as devices.allow / devices.deny expect it."""
        if self.resets():
            return "a"
        major = "*" if self.major == _WILDCARD else str(self.major)
        minor = "*" if self.minor == _WILDCARD else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"


def _default_rules() -> list[DeviceRule]:
    char = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, _WILDCARD)]
    rules = [DeviceRule(True, kind, _WILDCARD, _WILDCARD, "m") for kind in ("c", "b")]
    rules += [DeviceRule(True, "c", major, minor, _ALL_ACCESS) for major, minor in char]
    return rules


def _number(value: object, where: str) -> int:
    if value is None:
        return _WILDCARD
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 0xFFFFFFFF:
        raise SpecError(f"linux.resources.{where}: must be a device number or -1")
    return value


def parse_rules(entries: object) -> list[DeviceRule]:
    """The spec's rules followed by the runtime's defaults; SpecError when malformed."""
    if not isinstance(entries, list):
        raise SpecError("linux.resources.devices: must be a list")
    rules: list[DeviceRule] = []
    for index, entry in enumerate(entries):
        where = f"devices[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("allow"), bool):
            raise SpecError(f"linux.resources.{where}: allow must be true or false")
        kind = entry.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise SpecError(f"linux.resources.{where}.type: must be a, b or c")
        access = entry.get("access") or _ALL_ACCESS
        if not isinstance(access, str) or not set(access) <= set(_ALL_ACCESS):
            raise SpecError(f"linux.resources.{where}.access: letters of rwm expected")
        access = "".join(letter for letter in _ALL_ACCESS if letter in access)
        major = _number(entry.get("major"), f"{where}.major")
        minor = _number(entry.get("minor"), f"{where}.minor")
        rule = DeviceRule(entry["allow"], kind, major, minor, access)
        if kind == "a" and not rule.resets():
            # v1 reads any "a" line as "all devices, all access": spell the rule out.
            rules += [DeviceRule(rule.allow, sub, major, minor, access) for sub in ("c", "b")]
        else:
            rules.append(rule)
    return rules + _default_rules()


def v1_lines(rules: list[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) writes for a v1 devices cgroup, in order."""
    return [("devices.allow" if rule.allow else "devices.deny", rule.line()) for rule in rules]


# ---------------------------------------------------------------- v2: state and BPF


def _bits(access: str) -> int:
    return sum(_ACCESS_BITS[letter] for letter in access)


def reduce_rules(rules: list[DeviceRule]) -> tuple[bool, list[tuple[str, int, int, int]]]:
    """(allow by default, exceptions as (kind, major, minor, access bits)) after the rules.

    The same bookkeeping a v1 devices cgroup does, so both versions answer alike.
    Starts from "allow everything", the state of a new cgroup under an unrestricted parent.
    """
    default_allow = True
    exceptions: dict[tuple[str, int, int], int] = {}
    for rule in rules:
        if rule.resets():
            default_allow, exceptions = rule.allow, {}
            continue
        key = (rule.kind, rule.major, rule.minor)
        bits = _bits(rule.access)
        if rule.allow != default_allow:
            exceptions[key] = exceptions.get(key, 0) | bits
        elif key in exceptions:
            remaining = exceptions[key] & ~bits
            if remaining:
                exceptions[key] = remaining
            else:
                del exceptions[key]
    return default_allow, [(*key, bits) for key, bits in exceptions.items()]


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_MOV64_REG = 0xBF
_MOV64_IMM = 0xB7
_AND64_IMM = 0x57
_RSH64_IMM = 0x77
_JNE_IMM = 0x55
_JEQ_IMM = 0x15
_EXIT = 0x95


def compile_program(rules: list[DeviceRule]) -> bytes:
    """A cgroup device program: r2 = requested access, r3 = type, r4 = major, r5 = minor."""
    default_allow, exceptions = reduce_rules(rules)
    program = [
        _insn(_LDX_W, 2, 1, 0),  # access_type = (access << 16) | type
        _insn(_MOV64_REG, 3, 2),
        _insn(_AND64_IMM, 3, imm=0xFFFF),
        _insn(_RSH64_IMM, 2, imm=16),
        _insn(_LDX_W, 4, 1, 4),
        _insn(_LDX_W, 5, 1, 8),
    ]
    for kind, major, minor, bits in exceptions:
        checks = [(3, _TYPE_CODES[kind])]
        checks += [(reg, value) for reg, value in ((4, major), (5, minor)) if value != _WILDCARD]
        if default_allow:
            # Denied when the request touches any access this exception takes away.
            tail = [(_AND64_IMM, bits), (_JEQ_IMM, 0), (_MOV64_IMM, 0)]
        else:
            # Allowed when this exception grants every access requested.
            tail = [(_AND64_IMM, ~bits & 0x7), (_JNE_IMM, 0), (_MOV64_IMM, 1)]
        length = len(checks) + 1 + len(tail) + 1  # checks, r0 = r2, tail, exit
        block = []
        for position, (register, value) in enumerate(checks):
            block.append(_insn(_JNE_IMM, register, off=length - position - 1, imm=value))
        block.append(_insn(_MOV64_REG, 0, 2))
        and_op, jump_op, result = tail
        block.append(_insn(and_op[0], 0, imm=and_op[1]))
        block.append(_insn(jump_op[0], 0, off=length - len(block) - 1, imm=jump_op[1]))
        block.append(_insn(result[0], 0, imm=result[1]))
        block.append(_insn(_EXIT))
        program += block
    program += [_insn(_MOV64_IMM, 0, imm=1 if default_allow else 0), _insn(_EXIT)]
    return b"".join(program)


_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_BPF_ATTR_SIZE = 128
_LICENSE = b"Apache-2.0\0"


def _bpf(command: int, attr: bytes, where: str) -> int:
    number = _BPF_SYSCALL.get(os.uname().machine)
    if number is None:
        raise StepError("cgroup", errno.EOPNOTSUPP, f"{where}: bpf on {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buffer = ctypes.create_string_buffer(attr.ljust(_BPF_ATTR_SIZE, b"\0"), _BPF_ATTR_SIZE)
    result = libc.syscall(
        ctypes.c_long(number), ctypes.c_long(command), buffer, ctypes.c_long(_BPF_ATTR_SIZE)
    )
    if result < 0:
        raise StepError("cgroup", ctypes.get_errno(), where)
    return int(result)


def attach_v2_program(directory: str, rules: list[DeviceRule]) -> None:
    """Load the rules' program and attach it to a cgroup v2 directory (needs root)."""
    program = compile_program(rules)
    code = ctypes.create_string_buffer(program, len(program))
    license_text = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))
    load = struct.pack(
        "<IIQQIIQII16sII",
        _BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_text),
        0,
        0,
        0,
        0,
        0,
        b"oci_devices",
        0,
        _BPF_CGROUP_DEVICE,
    )
    prog_fd = _bpf(_BPF_PROG_LOAD, load, f"{directory} (device program)")
    try:
        cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(prog_fd)
        raise StepError("cgroup", exc.errno or errno.EIO, directory) from exc
    try:
        attach = struct.pack("<IIII", cgroup_fd, prog_fd, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
        _bpf(_BPF_PROG_ATTACH, attach, f"{directory} (device program attach)")
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)
