"""Validation of the OCI linux.seccomp object: every bad field fails early, named."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from auto_review.oci.errors import StepError
from auto_review.oci.seccomp import SUPPORTED_SECCOMP_FIELDS, SeccompFilter

BPF_INSTRUCTION = 8


def compile_error(spec: Any) -> tuple[str, int, str]:
    with pytest.raises(StepError) as caught:
        SeccompFilter.from_spec(spec)
    assert "\n" not in caught.value.one_line()
    return caught.value.step, caught.value.errno, caught.value.path


def rule(**fields: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], **fields}]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"defaultAction": "SCMP_ACT_NOPE"}, (errno.EINVAL, "defaultAction SCMP_ACT_NOPE")),
        ({}, (errno.EINVAL, "defaultAction")),
        ([], (errno.EINVAL, "linux.seccomp")),
        ({"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}, (errno.EINVAL, "bogus")),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
            (errno.EINVAL, "architectures SCMP_ARCH_VAX"),
        ),
        (rule(action="SCMP_ACT_JUMP"), (errno.EINVAL, "syscalls[0] SCMP_ACT_JUMP")),
        (
            rule(action="SCMP_ACT_ERRNO", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_XOR"}]),
            (errno.EINVAL, "syscalls[0].args[0].op SCMP_CMP_XOR"),
        ),
        (
            rule(action="SCMP_ACT_ERRNO", args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
            (errno.EINVAL, "syscalls[0].args[0].index"),
        ),
        (
            rule(action="SCMP_ACT_ERRNO", args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]),
            (errno.EINVAL, "syscalls[0].args[0].value"),
        ),
        (
            rule(
                action="SCMP_ACT_ERRNO", args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]
            ),
            (errno.EINVAL, "syscalls[0].args[0].value"),
        ),
        (rule(action="SCMP_ACT_ERRNO", errnoRet=70000), (errno.EINVAL, "syscalls[0]")),
        (
            rule(action="SCMP_ACT_KILL", errnoRet=1),
            (errno.EINVAL, "syscalls[0] errnoRet with SCMP_ACT_KILL"),
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}],
            },
            (errno.EINVAL, "syscalls[0].names"),
        ),
        (rule(action="SCMP_ACT_NOTIFY"), (errno.EOPNOTSUPP, "syscalls[0] SCMP_ACT_NOTIFY")),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"},
            (errno.EOPNOTSUPP, "listenerPath"),
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            },
            (errno.EOPNOTSUPP, "flags SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_MAGIC"]},
            (errno.EINVAL, "flags SECCOMP_FILTER_FLAG_MAGIC"),
        ),
        (
            rule(action="SCMP_ACT_ERRNO", names=["getppid", "frobnicate"]),
            (errno.EINVAL, "frobnicate"),
        ),
    ],
)
def test_bad_field_is_a_seccomp_step_error_naming_it(spec: Any, expected: tuple[int, str]) -> None:
    assert compile_error(spec) == ("seccomp", *expected)


def test_supported_fields_are_the_schema_fields_minus_the_listener() -> None:
    schema_path = Path(__file__).parents[3] / "src/auto_review/oci/schema/config-linux.json"
    schema = json.loads(schema_path.read_text())
    fields = set(schema["linux"]["properties"]["seccomp"]["properties"])
    assert fields - SUPPORTED_SECCOMP_FIELDS == {"listenerPath", "listenerMetadata"}


def test_rule_repeating_the_default_action_is_accepted_and_adds_nothing() -> None:
    bare = SeccompFilter.from_spec({"defaultAction": "SCMP_ACT_ALLOW"})
    repeated = SeccompFilter.from_spec(rule(action="SCMP_ACT_ALLOW"))
    assert repeated.program == bare.program


def test_program_grows_with_rules_and_holds_whole_instructions() -> None:
    small = SeccompFilter.from_spec(rule(action="SCMP_ACT_ERRNO"))
    names = ["getppid", "getuid", "getgid", "ptrace", "kexec_load", "mount", "umount2"]
    large = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO"}],
        }
    )
    assert len(small.program) % BPF_INSTRUCTION == 0
    assert len(large.program) > len(small.program)
    assert large.rule_count == 1


def test_errno_ret_changes_the_program() -> None:
    eperm = SeccompFilter.from_spec(rule(action="SCMP_ACT_ERRNO"))
    explicit_eperm = SeccompFilter.from_spec(rule(action="SCMP_ACT_ERRNO", errnoRet=errno.EPERM))
    enosys = SeccompFilter.from_spec(rule(action="SCMP_ACT_ERRNO", errnoRet=errno.ENOSYS))
    assert eperm.program == explicit_eperm.program
    assert enosys.program != eperm.program


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": errno.ENOSYS,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
}


def test_cache_returns_the_same_program_without_recompiling(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = SeccompFilter.from_spec(PROFILE, cache_dir=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700
    second = SeccompFilter.from_spec(PROFILE, cache_dir=cache)
    assert (second.program, second.kernel_flags, second.rule_count) == (
        first.program,
        first.kernel_flags,
        first.rule_count,
    )


def test_cache_is_keyed_by_the_whole_object(tmp_path: Path) -> None:
    SeccompFilter.from_spec(PROFILE, cache_dir=tmp_path)
    changed = {**PROFILE, "defaultErrnoRet": errno.EPERM}
    other = SeccompFilter.from_spec(changed, cache_dir=tmp_path)
    assert other.program == SeccompFilter.from_spec(changed).program
    assert len(list(tmp_path.iterdir())) == 2


def plant_allow_all(entry: Path) -> bytes:
    """Replace a cache entry's program by an allow-all one; return that program."""
    planted = SeccompFilter.from_spec({"defaultAction": "SCMP_ACT_ALLOW"}).program
    honest = SeccompFilter.from_spec(PROFILE).program
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) - len(honest)] + planted)
    return planted


def test_cache_writable_by_others_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    SeccompFilter.from_spec(PROFILE, cache_dir=cache)
    entry = next(cache.iterdir())
    planted = plant_allow_all(entry)
    assert SeccompFilter.from_spec(PROFILE, cache_dir=cache).program == planted  # trusted
    planted = plant_allow_all(entry)
    cache.chmod(0o777)
    assert SeccompFilter.from_spec(PROFILE, cache_dir=cache).program != planted
    cache.chmod(0o700)
    planted = plant_allow_all(entry)
    entry.chmod(0o666)
    assert SeccompFilter.from_spec(PROFILE, cache_dir=cache).program != planted


def test_corrupt_cache_entry_is_recompiled(tmp_path: Path) -> None:
    SeccompFilter.from_spec(PROFILE, cache_dir=tmp_path)
    entry = next(tmp_path.iterdir())
    entry.write_bytes(b"garbage")
    assert SeccompFilter.from_spec(PROFILE, cache_dir=tmp_path).program == (
        SeccompFilter.from_spec(PROFILE).program
    )


def test_bad_spec_fails_the_same_with_a_cache(tmp_path: Path) -> None:
    bad = rule(action="SCMP_ACT_ERRNO", names=["frobnicate"])
    with pytest.raises(StepError, match="path=frobnicate"):
        SeccompFilter.from_spec(bad, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_program_over_the_kernel_limit_fails_at_compile_time() -> None:
    many_values = [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"} for value in range(4200)]
    step, err, path = compile_error(rule(action="SCMP_ACT_ERRNO", args=many_values))
    assert (step, err) == ("seccomp", errno.E2BIG)
    assert path.endswith("BPF instructions (kernel limit 4096)")
