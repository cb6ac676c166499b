"""The release's SBOM, provenance and checks (scripts/release_manifest.py, check_release.py)
on a small stand-in artifact: what they write is valid CycloneDX and passes the checks, and
each kind of tampering is caught. The real single file is built and checked by .ci/run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts.check_release import (
    PROVENANCE,
    SBOM,
    SUMS,
    CheckFailed,
    check_locked,
    check_same_dependencies,
    check_sbom_schema,
    check_sums,
)
from scripts.release_manifest import (
    ArchiveContents,
    Package,
    lock_hashes,
    packages_inside,
    provenance,
    sbom,
    sha256sums,
)

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "release.lock"
NAME = "auto-review-0.1.0-linux-x86_64"


def locked(name: str) -> Package:
    """A package pinned in the real release lock, with one of the hashes it allows."""
    key = next(key for key in lock_hashes(LOCK.read_text()) if key.startswith(f"{name}=="))
    version = key.split("==")[1]
    return Package(name, version, sorted(lock_hashes(LOCK.read_text())[key])[0])


CONTENTS = ArchiveContents(
    modules=frozenset({"auto_review", "httpx", "json", "yaml"}),
    binaries={"libpython3.11.so.1.0": "a" * 64,
              "yaml/_yaml.cpython-311-x86_64-linux-gnu.so": "b" * 64},
    data_tops=frozenset({"certifi"}),
)
TOP_LEVEL = {"httpx": ["httpx"], "yaml": ["PyYAML"], "certifi": ["certifi"],
             "PyInstaller": ["pyinstaller"]}  # fmt: skip


def make_dist(directory: Path, packages: list[Package]) -> Path:
    directory.mkdir()
    artifact = directory / NAME
    artifact.write_bytes(b"\x7fELF stand-in")
    tools = {"pyinstaller": "6.22.3", "python": "3.11.7"}
    build_info = {"version": "0.1.0", "commit": "c" * 40, "modified": False,
                  "commit_time": "2026-12-07T19:44:54Z"}  # fmt: skip
    document = sbom(artifact, "0.1.0", packages, CONTENTS, "3.11.7", tools, 1_800_000_000)
    (directory / SBOM).write_text(json.dumps(document))
    record = provenance(artifact, build_info, LOCK, "requirements/release.lock", packages, tools)
    (directory / PROVENANCE).write_text(json.dumps(record))
    (directory / SUMS).write_text(sha256sums(directory, (NAME, SBOM, PROVENANCE)))
    return directory


def test_the_lock_parser_reads_every_pin_with_its_hashes() -> None:
    allowed = lock_hashes(LOCK.read_text())
    pins = [line for line in LOCK.read_text().splitlines() if "==" in line and line[0] not in " #"]
    assert len(allowed) == len(pins) > 10
    assert all(len(hashes) >= 1 for hashes in allowed.values())
    assert any(key.startswith("uvloop==") for key in allowed)  # the pin with a marker


def test_only_packages_with_something_inside_are_listed() -> None:
    installed = {name: locked(name) for name in ("httpx", "pyyaml", "certifi", "pyinstaller")}
    inside = packages_inside(CONTENTS, TOP_LEVEL, installed)
    assert [package.name for package in inside] == ["certifi", "httpx", "pyyaml"]


def test_a_written_release_passes_the_checks(tmp_path: Path) -> None:
    packages = [locked("httpx"), locked("pyyaml")]
    dist = make_dist(tmp_path / "dist", packages)
    assert "3 files match" in check_sums(dist)
    assert "valid" in check_sbom_schema(dist)
    assert "2 packages" in check_locked(dist, LOCK)
    document = json.loads((dist / SBOM).read_text())
    names = {component["name"] for component in document["components"]}
    assert {"cpython", "httpx", "pyyaml", "libpython3.11.so.1.0"} <= names
    again = make_dist(tmp_path / "again", packages)
    assert "the same 2 package hashes" in check_same_dependencies(dist, again)


def test_a_changed_file_fails_the_sums(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", [locked("httpx")])
    (dist / NAME).write_bytes(b"\x7fELF changed")
    with pytest.raises(CheckFailed, match=f"{NAME} does not match"):
        check_sums(dist)


def test_an_invalid_sbom_fails_the_schema(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", [locked("httpx")])
    document = json.loads((dist / SBOM).read_text())
    document["components"][1]["hashes"][0]["alg"] = "SHA-257"
    (dist / SBOM).write_text(json.dumps(document))
    with pytest.raises(CheckFailed, match=r"not valid CycloneDX 1\.6: at /components/1/hashes"):
        check_sbom_schema(dist)


def test_a_hash_the_lock_does_not_allow_fails(tmp_path: Path) -> None:
    httpx = locked("httpx")
    dist = make_dist(tmp_path / "dist", [Package(httpx.name, httpx.version, "0" * 64)])
    with pytest.raises(CheckFailed, match=r"httpx .* is not in release\.lock"):
        check_locked(dist, LOCK)


def test_two_builds_with_different_hashes_differ(tmp_path: Path) -> None:
    httpx = locked("httpx")
    dist = make_dist(tmp_path / "dist", [httpx])
    other = make_dist(tmp_path / "other", [Package(httpx.name, httpx.version, "1" * 64)])
    with pytest.raises(CheckFailed, match="different packages or hashes"):
        check_same_dependencies(dist, other)
