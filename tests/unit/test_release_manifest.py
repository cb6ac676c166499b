"""The release's SBOM, provenance and checks (scripts/release_manifest.py, check_release.py)
on a small stand-in artifact: what they write is valid CycloneDX and passes the checks, and
each kind of tampering is caught. The real single file is built and checked by .ci/run."""

from __future__ import annotations

import json
import re
import zipfile
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
    check_wheel,
    record_digest,
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
WHEEL = "auto_review-0.1.0-py3-none-any.whl"
COMMIT = "c" * 40


def locked(name: str) -> Package:
    """A package pinned in the real release lock, with one of the hashes it allows."""
    key = next(key for key in lock_hashes(LOCK.read_text()) if key.startswith(f"{name}=="))
    version = key.split("==")[1]
    return Package(name, version, sorted(lock_hashes(LOCK.read_text())[key])[0])


CONTENTS = ArchiveContents(
    modules=frozenset({"auto_review", "httpx", "json", "yaml"}),
    binaries={"auto-review": "c" * 64, "_internal/libpython3.11.so.1.0": "a" * 64,
              "_internal/yaml/_yaml.cpython-311-x86_64-linux-gnu.so": "b" * 64},
    data_tops=frozenset({"certifi"}),
)
TOP_LEVEL = {"httpx": ["httpx"], "yaml": ["PyYAML"], "certifi": ["certifi"],
             "PyInstaller": ["pyinstaller"]}  # fmt: skip


def make_wheel(
    path: Path, files: dict[str, bytes], tampered: dict[str, bytes] | None = None
) -> None:
    """A stand-in wheel whose RECORD lists ``files``; ``tampered`` replaces some afterwards."""
    info = "auto_review-0.1.0.dist-info"
    record = "".join(f"{name},{record_digest(data)},{len(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in (files | (tampered or {})).items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")


def wheel_files(commit: str = COMMIT) -> dict[str, bytes]:
    return {
        "auto_review/__init__.py": b'__version__ = "0.1.0"\n',
        "auto_review/build_info.json": json.dumps({"commit": commit}).encode(),
        "auto_review-0.1.0.data/scripts/auto-review": b"#!python\n",
        "auto_review-0.1.0.dist-info/METADATA": b"Metadata-Version: 2.4\nName: auto-review\n"
        b"Version: 0.1.0\n",
    }


def make_dist(directory: Path, packages: list[Package],
              wheel: dict[str, bytes] | None = None) -> Path:  # fmt: skip
    directory.mkdir()
    artifact = directory / NAME
    artifact.write_bytes(b"\x7fELF stand-in")
    make_wheel(directory / WHEEL, wheel or wheel_files())
    tools = {"pyinstaller": "6.22.3", "python": "3.11.7"}
    build_info = {"version": "0.1.0", "commit": COMMIT, "modified": False,
                  "commit_time": "2026-12-07T19:44:54Z"}  # fmt: skip
    document = sbom(artifact, "0.1.0", packages, CONTENTS, "3.11.7", tools, 1_800_000_000)
    (directory / SBOM).write_text(json.dumps(document))
    record = provenance(artifact, build_info, LOCK, "requirements/release.lock", packages, tools,
                        directory / WHEEL)  # fmt: skip
    (directory / PROVENANCE).write_text(json.dumps(record))
    (directory / SUMS).write_text(sha256sums(directory, (NAME, WHEEL, SBOM, PROVENANCE)))
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
    assert "4 files match" in check_sums(dist)
    assert "valid" in check_sbom_schema(dist)
    assert "RECORD matches" in check_wheel(dist)
    assert "2 packages" in check_locked(dist, LOCK)
    document = json.loads((dist / SBOM).read_text())
    names = {component["name"] for component in document["components"]}
    assert {"cpython", "httpx", "pyyaml", "_internal/libpython3.11.so.1.0"} <= names
    again = make_dist(tmp_path / "again", packages)
    assert "the same 2 package hashes and the same wheel" in check_same_dependencies(dist, again)


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


def test_a_changed_wheel_fails_the_sums_and_the_provenance(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", [locked("httpx")])
    make_wheel(dist / WHEEL, wheel_files() | {"auto_review/extra.py": b"x = 1\n"})
    with pytest.raises(CheckFailed, match=re.escape(f"{WHEEL} does not match")):
        check_sums(dist)
    with pytest.raises(CheckFailed, match=r"not the one provenance\.json records"):
        check_wheel(dist)


def test_a_wheel_file_that_differs_from_its_record_fails(tmp_path: Path) -> None:
    tampered = {"auto_review/__init__.py": b"import os\n"}
    dist = tmp_path / "dist"
    make_dist(dist, [locked("httpx")])
    # Rebuilt with a file that differs from RECORD, its hashes then written into the dist.
    make_wheel(dist / WHEEL, wheel_files(), tampered)
    record = json.loads((dist / PROVENANCE).read_text())
    record["wheel"] = provenance(dist / NAME, {"version": "0.1.0", "commit": COMMIT,
                                               "modified": False, "commit_time": ""},
                                 LOCK, "", [], {}, dist / WHEEL)["wheel"]  # fmt: skip
    (dist / PROVENANCE).write_text(json.dumps(record))
    with pytest.raises(CheckFailed, match=r"auto_review/__init__\.py does not match its RECORD"):
        check_wheel(dist)


def test_a_wheel_of_another_commit_or_without_the_command_fails(tmp_path: Path) -> None:
    other = make_dist(tmp_path / "other", [locked("httpx")], wheel_files("d" * 40))
    with pytest.raises(CheckFailed, match="names commit 'ddd"):
        check_wheel(other)
    bare = wheel_files()
    del bare["auto_review-0.1.0.data/scripts/auto-review"]
    commandless = make_dist(tmp_path / "commandless", [locked("httpx")], bare)
    with pytest.raises(CheckFailed, match="no auto-review command"):
        check_wheel(commandless)


def test_a_release_without_a_wheel_fails_the_sums(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", [locked("httpx")])
    record = json.loads((dist / PROVENANCE).read_text())
    del record["wheel"]
    (dist / PROVENANCE).write_text(json.dumps(record))
    with pytest.raises(CheckFailed, match="names no wheel"):
        check_sums(dist)
