"""The boundary self-check: each check's verdict, mandatory vs degraded, and the real
checks run on the host (outside any container), where the mandatory ones must fail."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from auto_review.isolation.inner.selfcheck import (
    BoundaryFacts,
    BoundaryNotVerified,
    CheckResult,
    check_capabilities,
    check_host_paths,
    check_namespaces,
    check_network,
    check_status_value,
    check_writes,
    namespace_ids,
    posture_from_results,
    read_status,
    require_verified,
    run_selfcheck,
)

ZERO = "0000000000000000"


def test_capabilities_must_all_be_empty() -> None:
    status = dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), ZERO)
    assert check_capabilities(status).ok
    status["CapBnd"] = "0000000000000400"
    result = check_capabilities(status)
    assert not result.ok
    assert "CapBnd=0000000000000400" in result.detail
    del status["CapAmb"]
    assert "CapAmb=missing" in check_capabilities(status).detail


def test_status_values() -> None:
    assert check_status_value({"Seccomp": "2"}, "Seccomp", "2").ok
    assert not check_status_value({"Seccomp": "0"}, "Seccomp", "2").ok
    assert not check_status_value({}, "NoNewPrivs", "1").ok


def test_network_allows_only_loopback(tmp_path: Path) -> None:
    head = "Inter-|   Receive\n face |bytes\n"
    only_lo = tmp_path / "lo"
    only_lo.write_text(head + "    lo: 0 0 0 0\n")
    assert check_network(only_lo).ok
    more = tmp_path / "more"
    more.write_text(head + "    lo: 0 0\n  eth0: 1 2\n")
    result = check_network(more)
    assert not result.ok
    assert "eth0" in result.detail


def test_namespaces_must_differ_from_the_launchers() -> None:
    own = {"net": "net:[2]", "pid": "pid:[5]"}
    assert check_namespaces(own, {"net": "net:[1]", "pid": "pid:[4]"}, ("net", "pid")).ok
    shared = check_namespaces(own, {"net": "net:[2]", "pid": "pid:[4]"}, ("net", "pid"))
    assert not shared.ok
    assert "net" in shared.detail
    assert not check_namespaces(own, {}, ("net",)).ok  # nothing to compare: not verified
    assert not check_namespaces(own, {"ipc": "ipc:[1]"}, ("ipc",)).ok  # unreadable


def test_host_paths(tmp_path: Path) -> None:
    assert check_host_paths([str(tmp_path / "absent")], points=[]).ok
    (tmp_path / "link").symlink_to(tmp_path / "dangling")
    assert not check_host_paths([str(tmp_path / "link")], points=[]).ok  # a dangling link too


def test_a_directory_leading_to_bind_mounts_is_a_stub_not_the_host_path(tmp_path: Path) -> None:
    stub = tmp_path / "root"
    (stub / ".pyenv").mkdir(parents=True)
    points = [str(stub / ".pyenv")]
    result = check_host_paths([str(stub)], points=points)
    assert result.ok, result.detail
    assert "staged" in result.detail
    # The same directory without a mount below it is a visible host path.
    assert not check_host_paths([str(stub)], points=[]).ok
    # A mount point itself (a bind of the host's directory) is visible too.
    assert not check_host_paths([str(stub)], points=[str(stub), *points]).ok


def test_writes_outside_state_must_be_refused(tmp_path: Path) -> None:
    answers = {"/": errno.EROFS, "/usr": errno.EACCES, "/state": 0, "/tmp": 0}
    result = check_writes(("/", "/usr"), ("/state", "/tmp"), answers.__getitem__)
    assert result.ok, result.detail
    assert "EROFS" in result.detail
    answers["/usr"] = 0
    assert "write allowed in /usr" in check_writes(("/", "/usr"), (), answers.__getitem__).detail
    answers["/state"] = errno.EROFS
    assert "cannot write /state" in check_writes((), ("/state",), answers.__getitem__).detail


def test_real_write_probe_leaves_nothing(tmp_path: Path) -> None:
    result = check_writes((), (str(tmp_path),))
    assert result.ok
    assert list(tmp_path.iterdir()) == []


def test_degraded_checks_do_not_refuse_unless_required() -> None:
    results = {
        "seccomp": CheckResult(True, "Seccomp=2"),
        "landlock": CheckResult(False, "no Landlock domain"),
    }
    posture = posture_from_results(results, "embedded")
    assert posture["verified"] is True
    assert posture["degraded"] == ["landlock"]
    require_verified(posture)
    strict = posture_from_results(results, "embedded", required=("landlock",))
    assert strict["verified"] is False
    with pytest.raises(BoundaryNotVerified, match="landlock: no Landlock domain"):
        require_verified(strict)


def test_a_failed_mandatory_check_refuses_with_one_line() -> None:
    posture = posture_from_results({"seccomp": CheckResult(False, "Seccomp=0 (want 2)")}, "runc")
    assert posture == {
        "mode": "oci",
        "runtime": "runc",
        "verified": False,
        "checks": {"seccomp": {"ok": False, "detail": "Seccomp=0 (want 2)"}},
        "mandatory": ["seccomp"],
        "failed": ["seccomp"],
        "degraded": [],
    }
    with pytest.raises(BoundaryNotVerified) as caught:
        require_verified(posture)
    assert "\n" not in str(caught.value)
    assert "seccomp" in str(caught.value)


def test_on_the_host_the_boundary_is_not_verified() -> None:
    """Outside a container the real checks must fail: a check that passes here is wrong."""
    host = namespace_ids()
    posture = run_selfcheck(BoundaryFacts(host_namespaces=host, runtime="none"))
    assert posture["verified"] is False
    assert "pid-1" in posture["failed"]
    assert "namespaces" in posture["failed"]
    if os.geteuid() == 0:
        assert "capabilities" in posture["failed"]
        assert "read-only-outside-state" in posture["failed"]  # root may write in /
    assert posture["checks"]["seccomp"]["ok"] is (read_status()["Seccomp"] == "2")
