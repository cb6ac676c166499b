"""The release's SBOM (CycloneDX 1.6 JSON), provenance JSON and SHA256SUMS.

Run by ``scripts/build-release`` with the build environment's Python, after PyInstaller:

  python scripts/release_manifest.py --artifact FILE [--wheel WHEEL] --pip-report REPORT
      --lock LOCK --build-info BUILD_INFO --out DIR

``SHA256SUMS`` lists the executable, the wheel of auto-review it was made from (the one
``uv tool install`` or pipx installs), the SBOM and the provenance; the provenance names the
wheel and its sha256 too.

What the SBOM lists is read back from the built file itself (its payload unpacked, the
program's PyInstaller archive table of contents and the files beside it), not from what was
installed for the build: the Python packages whose modules,
extension modules or data are inside (name, version, and the sha256 of the wheel pip
installed, from its ``--report``: a hash the lock file lists), the interpreter, and every
bundled binary (shared libraries and extension modules) with its own sha256. Nothing in
these files depends on the build's time or directory, so two builds from one commit and
one lock file list the same dependencies with the same hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SBOM_NAME = "sbom.cdx.json"
PROVENANCE_NAME = "provenance.json"
SUMS_NAME = "SHA256SUMS"
BUILD_TOOLS = ("pyinstaller", "pyinstaller-hooks-contrib", "pip", "setuptools", "wheel")
# A fixed namespace: the SBOM's serial number is derived from the artifact's hash.
SERIAL_NAMESPACE = uuid.UUID("6f1f3f0e-8a51-4e0c-9a59-3f4c8d2b7a10")
INTERNAL = "_internal"  # PyInstaller's directory beside the executable


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str
    sha256: str  # of the wheel (or sdist) pip installed

    @property
    def purl(self) -> str:
        return f"pkg:pypi/{normalize(self.name)}@{self.version}"


@dataclass(frozen=True, slots=True)
class ArchiveContents:
    """What PyInstaller put in the file: top-level module names and binaries' hashes."""

    modules: frozenset[str]  # top-level names of Python modules and packages
    binaries: dict[str, str]  # path inside the archive -> sha256
    data_tops: frozenset[str]  # top-level directories of data files


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_archive(artifact: Path) -> ArchiveContents:
    """What the single file carries: its payload (scripts/single_file.py) unpacked into a
    temporary directory and read there (``read_program_dir``)."""
    from single_file import read_payload

    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(fileobj=io.BytesIO(read_payload(artifact)), mode="r:gz") as packed:
            packed.extractall(work, filter="data")
        return read_program_dir(Path(work))


def read_program_dir(root: Path) -> ArchiveContents:
    """PyInstaller's one-directory build: the Python modules in the executable's archive
    (its table of contents; needs PyInstaller), every binary beside it (ELF files, shared
    libraries and extension modules, the executable itself) with its sha256, and the
    top-level directories of its data under ``_internal``."""
    from PyInstaller.archive.readers import (  # type: ignore[import-not-found]
        PKG_ITEM_BINARY,
        PKG_ITEM_PYZ,
        CArchiveReader,
    )
    from single_file import PROGRAM

    archive = CArchiveReader(str(root / PROGRAM))
    modules: set[str] = set()
    binaries: dict[str, str] = {}
    data_tops: set[str] = set()
    for name, entry in archive.toc.items():
        kind = entry[-1]
        if kind == PKG_ITEM_PYZ:
            modules |= {module.split(".")[0] for module in archive.open_embedded_archive(name).toc}
        elif kind == PKG_ITEM_BINARY:
            binaries[name] = hashlib.sha256(archive.extract(name)).hexdigest()
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue  # a link's target is listed under its own name
        relative = path.relative_to(root).as_posix()
        with path.open("rb") as handle:
            elf = handle.read(4) == b"\x7fELF"
        if elf:
            binaries[relative] = sha256_file(path)
        elif relative.count("/") >= 2 and relative.startswith(f"{INTERNAL}/"):
            data_tops.add(relative.split("/")[1])
    return ArchiveContents(frozenset(modules), binaries, frozenset(data_tops))


def installed_packages(report: Mapping[str, Any]) -> dict[str, Package]:
    """Name -> package, from ``pip install --report``: what pip installed, and the sha256 of
    the file it installed it from."""
    found = {}
    for item in report["install"]:
        meta = item["metadata"]
        sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
        found[normalize(meta["name"])] = Package(meta["name"], meta["version"], sha256)
    return found


def packages_inside(
    contents: ArchiveContents,
    top_level: Mapping[str, Iterable[str]],
    installed: Mapping[str, Package],
) -> list[Package]:
    """The installed packages that something in the archive comes from, sorted by name.

    ``top_level`` maps an import name to the distributions providing it
    (``importlib.metadata.packages_distributions()`` of the build environment).
    """
    tops = set(contents.modules) | set(contents.data_tops)
    inside = [name.removeprefix(f"{INTERNAL}/") for name in contents.binaries]
    tops |= {name.split("/")[0] for name in inside if "/" in name}
    names = {normalize(dist) for top in tops for dist in top_level.get(top, ())}
    return sorted((installed[name] for name in names if name in installed),
                  key=lambda package: normalize(package.name))  # fmt: skip


def lock_hashes(lock_text: str) -> dict[str, set[str]]:
    """``name==version`` -> the sha256 values a pip-compile lock file allows for it."""
    allowed: dict[str, set[str]] = {}
    current = ""
    for line in lock_text.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\]+)", line)
        if pin:
            current = f"{normalize(pin[1])}=={pin[2]}"
            allowed.setdefault(current, set())
        for value in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            if current:
                allowed[current].add(value)
    return allowed


def iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sbom(
    artifact: Path,
    version: str,
    packages: list[Package],
    contents: ArchiveContents,
    interpreter_version: str,
    tools: Mapping[str, str],
    epoch: int,
) -> dict[str, Any]:
    artifact_sha = sha256_file(artifact)
    libpython = next(
        (sha for name, sha in contents.binaries.items()
         if name.rsplit("/", 1)[-1].startswith("libpython")), None,
    )
    interpreter: dict[str, Any] = {
        "type": "application", "bom-ref": "interpreter", "name": "cpython",
        "version": interpreter_version, "purl": f"pkg:generic/cpython@{interpreter_version}",
        "description": "the Python interpreter frozen into the file (its libpython hashed)",
    }  # fmt: skip
    if libpython:
        interpreter["hashes"] = [{"alg": "SHA-256", "content": libpython}]
    components: list[dict[str, Any]] = [interpreter]
    components += [
        {"type": "library", "bom-ref": package.purl, "name": package.name,
         "version": package.version, "purl": package.purl,
         "hashes": [{"alg": "SHA-256", "content": package.sha256}]}
        for package in packages
    ]  # fmt: skip
    components += [
        {"type": "file", "bom-ref": f"file:{name}", "name": name,
         "hashes": [{"alg": "SHA-256", "content": sha}]}
        for name, sha in sorted(contents.binaries.items())
    ]  # fmt: skip
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, artifact_sha)}",
        "version": 1,
        "metadata": {
            "timestamp": iso_time(epoch),
            "tools": {"components": [
                {"type": "application", "name": name, "version": tools[name]}
                for name in sorted(tools)
            ]},
            "component": {
                "type": "application", "bom-ref": "auto-review", "name": "auto-review",
                "version": version, "purl": f"pkg:pypi/auto-review@{version}",
                "hashes": [{"alg": "SHA-256", "content": artifact_sha}],
            },
        },
        "components": components,
        "dependencies": [
            {"ref": "auto-review", "dependsOn": [c["bom-ref"] for c in components]}
        ],
    }


def file_record(path: Path) -> dict[str, Any]:
    return {"name": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


def provenance(
    artifact: Path,
    build_info: Mapping[str, Any],
    lock: Path,
    lock_label: str,
    packages: list[Package],
    tools: Mapping[str, str],
    wheel: Path | None = None,
) -> dict[str, Any]:
    return {
        "artifact": file_record(artifact),
        **({"wheel": file_record(wheel)} if wheel is not None else {}),
        "source": {key: build_info[key] for key in ("commit", "modified", "commit_time")},
        "version": build_info["version"],
        "lock_file": {"path": lock_label, "sha256": sha256_file(lock)},
        "build_tools": dict(sorted(tools.items())),
        "build_platform": {"system": platform.system(), "machine": platform.machine(),
                           "libc": " ".join(platform.libc_ver())},
        "build_command": "scripts/build-release",
        "dependencies": [
            {"name": p.name, "version": p.version, "sha256": p.sha256} for p in packages
        ],
    }  # fmt: skip


def sha256sums(directory: Path, names: Iterable[str]) -> str:
    return "".join(f"{sha256_file(directory / name)}  {name}\n" for name in sorted(names))


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in BUILD_TOOLS:
        found[name] = metadata.version(name)
    return found


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from importlib import metadata

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--wheel", type=Path, help="auto-review's wheel, beside the artifact")
    parser.add_argument("--pip-report", type=Path, required=True)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--lock-label", required=True, help="the lock file's repository path")
    parser.add_argument("--build-info", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    build_info = json.loads(args.build_info.read_text(encoding="utf-8"))
    installed = installed_packages(json.loads(args.pip_report.read_text(encoding="utf-8")))
    contents = read_archive(args.artifact)
    packages = packages_inside(contents, metadata.packages_distributions(), installed)
    allowed = lock_hashes(args.lock.read_text(encoding="utf-8"))
    unlocked = [
        p for p in packages if p.sha256 not in allowed.get(f"{normalize(p.name)}=={p.version}", ())
    ]
    if unlocked:
        print(f"release_manifest: not from the lock: {', '.join(p.name for p in unlocked)}",
              file=sys.stderr)  # fmt: skip
        return 1
    tools = tool_versions()
    epoch = int(build_info["commit_time_epoch"])
    document = sbom(args.artifact, build_info["version"], packages, contents,
                    platform.python_version(), tools, epoch)  # fmt: skip
    write_json(args.out / SBOM_NAME, document)
    write_json(args.out / PROVENANCE_NAME,
               provenance(args.artifact, build_info, args.lock, args.lock_label, packages, tools,
                          args.wheel))  # fmt: skip
    listed = [args.artifact.name, SBOM_NAME, PROVENANCE_NAME]
    if args.wheel is not None:
        listed.append(args.wheel.name)
    (args.out / SUMS_NAME).write_text(sha256sums(args.out, listed), encoding="utf-8")
    print(f"release_manifest: {len(packages)} packages, {len(contents.binaries)} binaries")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
