"""Landlock against the real kernel: policies are enforced in forked children."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.forked_child import fork_and_answer, set_no_new_privs

from auto_review.oci.errors import SpecError, StepError
from auto_review.oci.landlock import (
    LANDLOCK_ANNOTATION,
    LandlockPolicy,
    apply,
    handled_access_fs,
    landlock_abi,
    policy_from_annotations,
)
from auto_review.oci.seccomp import SeccompFilter


def run_in_child(body: Callable[[], Any]) -> Any:
    """Run body in a forked child and return its JSON answer."""
    data, _status = fork_and_answer(body)
    return json.loads(data)


def attempt(action: Callable[[], object]) -> str:
    """'ok' or the errno name an attempted file operation ended with."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "ok"


def write_file(path: Path, text: str = "x") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, text.encode())
    os.close(fd)


def read_file(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    data = os.read(fd, 100)
    os.close(fd)
    return data.decode()


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("ro", "rw", "outside")}
    for directory in paths.values():
        directory.mkdir()
        write_file(directory / "file.txt", directory.name)
    return paths


def test_kernel_reports_an_abi() -> None:
    abi = landlock_abi()
    assert abi >= 1
    assert handled_access_fs(abi) & handled_access_fs(1) == handled_access_fs(1)


def test_read_only_readable_not_writable_read_write_writable_rest_denied(
    tree: dict[str, Path],
) -> None:
    policy = LandlockPolicy((str(tree["ro"]),), (str(tree["rw"]),))
    ro, rw, outside = tree["ro"], tree["rw"], tree["outside"]

    def body() -> dict[str, str]:
        set_no_new_privs()
        outcome = apply(policy)
        return {
            "outcome": outcome,
            "read ro": attempt(lambda: read_file(ro / "file.txt")),
            "list ro": attempt(lambda: os.listdir(ro)),
            "write ro": attempt(lambda: write_file(ro / "file.txt")),
            "create in ro": attempt(lambda: write_file(ro / "new.txt")),
            "read rw": attempt(lambda: read_file(rw / "file.txt")),
            "write rw": attempt(lambda: write_file(rw / "file.txt", "changed")),
            "create in rw": attempt(lambda: write_file(rw / "new.txt")),
            "mkdir in rw": attempt(lambda: os.mkdir(rw / "sub")),
            "remove in rw": attempt(lambda: os.unlink(rw / "new.txt")),
            "read outside": attempt(lambda: read_file(outside / "file.txt")),
            "write outside": attempt(lambda: write_file(outside / "file.txt")),
        }

    answer = run_in_child(body)
    assert answer["ok"] == {
        "outcome": "enforced",
        "read ro": "ok",
        "list ro": "ok",
        "write ro": "EACCES",
        "create in ro": "EACCES",
        "read rw": "ok",
        "write rw": "ok",
        "create in rw": "ok",
        "mkdir in rw": "ok",
        "remove in rw": "ok",
        "read outside": "EACCES",
        "write outside": "EACCES",
    }
    assert (tree["rw"] / "file.txt").read_text() == "changed"
    assert (tree["ro"] / "file.txt").read_text() == "ro"


def test_rule_on_a_single_file(tree: dict[str, Path]) -> None:
    single = tree["rw"] / "file.txt"
    sibling = tree["rw"] / "sibling.txt"
    write_file(sibling)
    policy = LandlockPolicy((), (str(single),))

    def body() -> list[str]:
        set_no_new_privs()
        apply(policy)
        return [
            attempt(lambda: write_file(single, "one file")),
            attempt(lambda: read_file(sibling)),
            attempt(lambda: os.listdir(tree["rw"])),
        ]

    assert run_in_child(body) == {"ok": ["ok", "EACCES", "EACCES"]}


def test_missing_path_fails_with_the_step_and_path(tree: dict[str, Path]) -> None:
    missing = str(tree["ro"] / "absent")
    policy = LandlockPolicy((missing,), ())

    def body() -> str:
        set_no_new_privs()
        return apply(policy)

    assert run_in_child(body) == {"step_error": ["landlock", errno.ENOENT, missing]}


def test_without_no_new_privs_or_cap_sys_admin_fails() -> None:
    policy = LandlockPolicy(("/usr",), ())

    def body() -> str:
        if os.geteuid() == 0:
            os.setresuid(65534, 65534, 65534)  # drops every capability
        return apply(policy)

    answer = run_in_child(body)
    assert answer == {
        "step_error": ["landlock", errno.EPERM, "no_new_privs unset and no CAP_SYS_ADMIN"]
    }


def kernel_without_landlock() -> None:
    """Make the Landlock calls answer ENOSYS, as a kernel built without it does."""
    names = ["landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"]
    SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}],
        }
    ).load()


def test_unsupported_kernel_degrades_unless_mandatory(tree: dict[str, Path]) -> None:
    optional = LandlockPolicy((str(tree["ro"]),), (), mandatory=False)
    mandatory = LandlockPolicy((str(tree["ro"]),), (), mandatory=True)

    def body() -> list[Any]:
        set_no_new_privs()
        kernel_without_landlock()
        outcome = apply(optional)
        try:
            apply(mandatory)
        except StepError as exc:
            return [landlock_abi(), outcome, exc.step, exc.errno, exc.one_line()]
        return [landlock_abi(), outcome, "no error"]

    abi, outcome, step, err, line = run_in_child(body)["ok"]
    assert (abi, outcome, step, err) == (0, "unsupported", "landlock", errno.ENOSYS)
    assert "step=landlock" in line and "\n" not in line


def test_policy_from_annotations_reads_the_documented_format() -> None:
    value = json.dumps({"read_only": ["/usr", "/etc"], "read_write": ["/tmp"], "mandatory": True})
    policy = policy_from_annotations({LANDLOCK_ANNOTATION: value, "other": "x"})
    assert policy == LandlockPolicy(("/usr", "/etc"), ("/tmp",), True)
    assert policy_from_annotations({"other": "x"}) is None
    assert policy_from_annotations({LANDLOCK_ANNOTATION: "{}"}) == LandlockPolicy((), (), False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"read_only": "/usr"}', "read_only must be a list"),
        ('{"read_write": ["tmp"]}', "non-absolute path"),
        ('{"mandatory": "yes"}', "mandatory must be true or false"),
        ('{"readonly": []}', "unknown keys readonly"),
    ],
)
def test_malformed_annotation_is_a_spec_error(value: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        policy_from_annotations({LANDLOCK_ANNOTATION: value})
    assert LANDLOCK_ANNOTATION in str(caught.value)
