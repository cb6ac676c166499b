"""AR_CA_FILE in the bundle: a read-only bind at a fixed path when set, nothing when unset,
and a file the container's capability-less root could not read is refused at staging."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auto_review.isolation.outer.bundle import (
    CA_FILE_INSIDE,
    BundleError,
    BundleRequest,
    ResourceLimits,
    stage_bundle,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture
def egress_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "proxy.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    yield path
    listener.close()


def make_request(tmp_path: Path, egress: Path, **changes: Any) -> BundleRequest:
    return BundleRequest(
        runtime_dir=tmp_path / "run",
        state_dir=tmp_path / "state",
        egress_socket=egress,
        inner_args=[sys.executable, "-m", "auto_review.isolation.inner.entry"],
        inner_env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        rootless=False,
        preserve_fds=2,
        limits=ResourceLimits(tmp_size_bytes=16 * 1024 * 1024),
        **changes,
    )


def ca_mounts(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in config["mounts"] if m["destination"].startswith("/etc/auto-review")]


def test_the_ca_file_is_bound_read_only_at_the_fixed_path(tmp_path: Path, egress_socket: Path):
    ca = tmp_path / "private-ca.pem"
    ca.write_text(PEM)
    ca.chmod(0o644)
    link = tmp_path / "ca-link.pem"
    link.symlink_to(ca)  # the bind names the real file, not the link
    bundle = stage_bundle(make_request(tmp_path, egress_socket, ca_file=link))
    try:
        assert ca_mounts(bundle.config) == [
            {"destination": CA_FILE_INSIDE, "type": "bind", "source": str(ca.resolve()),
             "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}
        ]  # fmt: skip
        assert CA_FILE_INSIDE == "/etc/auto-review/ca.pem"
        # A file mount point (not a directory) waits in the read-only rootfs.
        mount_point = bundle.path / "rootfs" / "etc" / "auto-review" / "ca.pem"
        assert mount_point.is_file() and mount_point.stat().st_size == 0
        landlock = json.loads(bundle.config["annotations"]["org.auto-review.landlock"])
        assert CA_FILE_INSIDE in landlock["read_only"]
        assert CA_FILE_INSIDE not in landlock["read_write"]
        assert any(bind.destination == CA_FILE_INSIDE for bind in bundle.binds)
    finally:
        bundle.remove()


def test_no_ca_mount_when_unset(tmp_path: Path, egress_socket: Path):
    bundle = stage_bundle(make_request(tmp_path, egress_socket))
    try:
        assert ca_mounts(bundle.config) == []
        assert not (bundle.path / "rootfs" / "etc" / "auto-review").exists()
    finally:
        bundle.remove()


@pytest.mark.parametrize("mode", [0o000, 0o200])
def test_an_unreadable_ca_file_is_refused_and_nothing_is_left(
    tmp_path: Path, egress_socket: Path, mode: int
):
    """Root reads any file through CAP_DAC_OVERRIDE; the container's root has no capability,
    so the mode bits decide, for a root launcher too."""
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    ca.chmod(mode)
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, egress_socket, ca_file=ca))
    assert caught.value.step == "ca-file"
    assert "is not readable" in str(caught.value)
    assert PEM not in str(caught.value)
    assert [p.name for p in (tmp_path / "run").glob("bundle-*")] == []


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_a_ca_path_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, egress_socket: Path, kind: str
):
    target = tmp_path / "ca"
    if kind == "directory":
        target.mkdir()
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, egress_socket, ca_file=target))
    assert caught.value.step == "ca-file"
    expected = "is not a regular file" if kind == "directory" else "No such file"
    assert expected in str(caught.value)
    assert [p.name for p in (tmp_path / "run").glob("bundle-*")] == []


def test_a_file_readable_only_by_its_group_counts_when_the_group_is_ours(
    tmp_path: Path, egress_socket: Path
):
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    os.chown(ca, 12345, os.getegid())  # another owner: needs root, as these tests run
    ca.chmod(0o040)
    bundle = stage_bundle(make_request(tmp_path, egress_socket, ca_file=ca))
    try:
        assert len(ca_mounts(bundle.config)) == 1
    finally:
        bundle.remove()
