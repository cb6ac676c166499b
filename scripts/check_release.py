"""Checks a directory made by scripts/build-release, as a user who downloaded it would:

  .venv/bin/python scripts/check_release.py DIST [--compare OTHER_DIST] [--lock LOCK]

1. ``SHA256SUMS`` lists the executable, the wheel, the SBOM and the provenance, and each
   matches;
2. the SBOM is valid against the CycloneDX 1.6 JSON schema (tests/reference/cyclonedx);
3. every Python package the SBOM lists has a sha256 the lock file allows for its pinned
   version, and the provenance names the lock file's current sha256 and the same packages;
4. the SBOM lists every binary the file unpacks (its payload read here) with its sha256;
5. the executable runs in a new private unpack cache: ``--help`` prints the usage (and
   unpacks), ``version --verbose`` names the single file and the commit the provenance
   records; one cache entry is left;
6. the file refuses, closed, an unpack cache others can write (``AR_UNPACK_CACHE`` mode
   0777): exit 2, one line naming the directory, nothing unpacked;
7. the wheel (``auto_review-<version>-py3-none-any.whl``, what ``uv tool install`` and pipx
   install) is the one the provenance names, holds the version, the ``auto-review`` command
   and the build record with the provenance's commit, and every file in it matches its
   ``RECORD`` hash;
8. with ``--compare``: the other build lists the same packages with the same hashes, and
   its wheel is byte for byte the same.

Prints one ``ok`` line per check, or one ``FAILED`` line per problem and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "reference" / "cyclonedx"
BOM_SCHEMA = "bom-1.6.SNAPSHOT.schema.json"
SUMS, SBOM, PROVENANCE = "SHA256SUMS", "sbom.cdx.json", "provenance.json"
RUN_TIMEOUT = 120

sys.path.insert(0, str(ROOT / "scripts"))
from release_manifest import lock_hashes, normalize  # noqa: E402
from single_file import read_payload  # noqa: E402


class CheckFailed(Exception):
    pass


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def artifact_name(dist: Path) -> str:
    return str(load(dist / PROVENANCE)["artifact"]["name"])


def wheel_name(dist: Path) -> str:
    wheel = load(dist / PROVENANCE).get("wheel")
    if not isinstance(wheel, dict) or "name" not in wheel:
        raise CheckFailed(f"{PROVENANCE} names no wheel")
    return str(wheel["name"])


def check_sums(dist: Path) -> str:
    listed: dict[str, str] = {}
    for line in (dist / SUMS).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    wanted = {artifact_name(dist), wheel_name(dist), SBOM, PROVENANCE}
    if set(listed) != wanted:
        raise CheckFailed(f"{SUMS} lists {sorted(listed)}, not {sorted(wanted)}")
    for name, digest in listed.items():
        if sha256(dist / name) != digest:
            raise CheckFailed(f"{SUMS}: {name} does not match its sha256")
    return f"{SUMS}: {len(listed)} files match"


def schema_validator() -> jsonschema.Draft7Validator:
    bom = load(SCHEMAS / BOM_SCHEMA)
    base = bom["$id"].rsplit("/", 1)[0]
    resources = [
        (f"{base}/{path.name}", Resource.from_contents(load(path), default_specification=DRAFT7))
        for path in sorted(SCHEMAS.glob("*.schema.json"))
    ]
    return jsonschema.Draft7Validator(bom, registry=Registry().with_resources(resources))


def check_sbom_schema(dist: Path) -> str:
    errors = sorted(schema_validator().iter_errors(load(dist / SBOM)), key=str)
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path)
        raise CheckFailed(f"{SBOM} is not valid CycloneDX 1.6: at /{where}: {first.message}")
    return f"{SBOM}: valid against the CycloneDX 1.6 JSON schema"


def sbom_packages(dist: Path) -> list[tuple[str, str, str]]:
    """(name, version, sha256) of each Python package the SBOM lists."""
    found = []
    for component in load(dist / SBOM)["components"]:
        if component.get("purl", "").startswith("pkg:pypi/"):
            digest = next(h["content"] for h in component["hashes"] if h["alg"] == "SHA-256")
            found.append((component["name"], component["version"], digest))
    return sorted(found)


def check_locked(dist: Path, lock: Path) -> str:
    allowed = lock_hashes(lock.read_text(encoding="utf-8"))
    packages = sbom_packages(dist)
    if not packages:
        raise CheckFailed(f"{SBOM} lists no Python package")
    for name, version, digest in packages:
        if digest not in allowed.get(f"{normalize(name)}=={version}", set()):
            raise CheckFailed(f"{SBOM}: {name} {version} sha256 {digest} is not in {lock.name}")
    provenance = load(dist / PROVENANCE)
    if provenance["lock_file"]["sha256"] != sha256(lock):
        raise CheckFailed(f"{PROVENANCE}: the lock file's sha256 is not {lock}'s")
    recorded = sorted((d["name"], d["version"], d["sha256"]) for d in provenance["dependencies"])
    if recorded != packages:
        raise CheckFailed(f"{PROVENANCE} and {SBOM} list different packages")
    return f"{SBOM}: {len(packages)} packages, each with a hash {lock.name} allows"


def run(executable: Path, *args: str, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [str(executable), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL, check=False, env=env,
    )  # fmt: skip
    if completed.returncode != 0:
        raise CheckFailed(f"{executable.name} {' '.join(args)}: exit {completed.returncode}: "
                          f"{completed.stderr.strip()[-300:]}")  # fmt: skip
    return completed.stdout


def with_cache(cache: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AR_UNPACK_CACHE": str(cache)}


def check_sbom_lists_the_payload(dist: Path) -> str:
    """Every binary the file unpacks is in the SBOM with its sha256, and nothing else is."""
    executable = dist / artifact_name(dist)
    inside = {}
    with tarfile.open(fileobj=io.BytesIO(read_payload(executable)), mode="r:gz") as packed:
        for member in packed:
            handle = packed.extractfile(member) if member.isfile() else None
            data = handle.read() if handle is not None else b""
            if data.startswith(b"\x7fELF"):
                inside[member.name] = hashlib.sha256(data).hexdigest()
    listed = {
        component["name"]: component["hashes"][0]["content"]
        for component in load(dist / SBOM)["components"] if component["type"] == "file"
    }  # fmt: skip
    if listed != inside:
        missing = sorted(set(inside.items()) - set(listed.items()))[:3]
        extra = sorted(set(listed.items()) - set(inside.items()))[:3]
        raise CheckFailed(f"{SBOM} does not list the file's binaries: missing {missing}, "
                          f"not inside {extra}")  # fmt: skip
    return f"{SBOM}: lists the {len(inside)} binaries the file unpacks, with their sha256"


def check_runs(dist: Path) -> str:
    """In a new private cache: --help unpacks (cold), version --verbose starts from it."""
    executable = (dist / artifact_name(dist)).resolve()
    provenance = load(dist / PROVENANCE)
    with tempfile.TemporaryDirectory() as work:
        cache = Path(work) / "cache"
        if not run(executable, "--help", env=with_cache(cache)).startswith("usage: auto-review"):
            raise CheckFailed(f"{executable.name} --help printed no usage")
        entries = sorted(path.name for path in cache.iterdir())
        lines = run(executable, "version", "--verbose", env=with_cache(cache)).splitlines()
    expected = [
        f"auto-review {provenance['version']}",
        f"commit: {provenance['source']['commit']} (recorded at build)",
    ]
    if lines[:2] != expected or f"runs as: single file ({executable})" not in lines:
        raise CheckFailed(f"{executable.name} version --verbose printed {lines}")
    if len(entries) != 1 or not entries[0].startswith(f"{provenance['version']}-"):
        raise CheckFailed(f"{executable.name} left {entries} in its unpack cache")
    return f"{executable.name}: --help and version --verbose ({lines[1]}), unpacked once"


def check_refuses_an_unsafe_unpack_cache(dist: Path) -> str:
    executable = (dist / artifact_name(dist)).resolve()
    with tempfile.TemporaryDirectory() as work:
        shared = Path(work) / "shared-cache"
        shared.mkdir()
        shared.chmod(0o777)  # on purpose: the unsafe place under test
        completed = subprocess.run(
            [str(executable), "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL, check=False, env=with_cache(shared),
        )  # fmt: skip
        left = sorted(path.name for path in shared.iterdir())
    wanted = f"auto-review: unpack cache {shared} is writable by group or others"
    lines = completed.stderr.strip().splitlines()
    if completed.returncode != 2 or len(lines) != 1 or not lines[0].startswith(wanted):
        raise CheckFailed(
            f"{executable.name} with AR_UNPACK_CACHE={shared} (mode 0777): exit "
            f"{completed.returncode}, expected 2 and {wanted!r}: {lines[-3:]}"
        )
    if left or completed.stdout:
        raise CheckFailed(f"{executable.name} ran or unpacked into {shared} (mode 0777): {left}")
    return f"{executable.name}: an unpack cache others can write is refused, nothing unpacked"


def record_digest(data: bytes) -> str:
    """A wheel RECORD's hash field: sha256=<urlsafe base64, unpadded>."""
    encoded = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + encoded.decode()


def check_wheel(dist: Path) -> str:
    provenance = load(dist / PROVENANCE)
    version, name = provenance["version"], wheel_name(dist)
    if name != f"auto_review-{version}-py3-none-any.whl":
        raise CheckFailed(f"{PROVENANCE}: wheel {name!r} is not auto-review {version}'s")
    wheel = dist / name
    if sha256(wheel) != provenance["wheel"]["sha256"]:
        raise CheckFailed(f"{name}: its sha256 is not the one {PROVENANCE} records")
    info = f"auto_review-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        files = {entry: archive.read(entry) for entry in archive.namelist()}
    metadata = files.get(f"{info}/METADATA", b"").decode("utf-8", "replace").splitlines()
    if "Name: auto-review" not in metadata or f"Version: {version}" not in metadata:
        raise CheckFailed(f"{name}: METADATA does not name auto-review {version}")
    if f"auto_review-{version}.data/scripts/auto-review" not in files:
        raise CheckFailed(f"{name}: no auto-review command (scripts/console/auto-review)")
    recorded = json.loads(files.get("auto_review/build_info.json", b"{}"))
    if recorded.get("commit") != provenance["source"]["commit"]:
        raise CheckFailed(f"{name}: its build record names commit {recorded.get('commit')!r}, "
                          f"not {provenance['source']['commit']}")  # fmt: skip
    for line in files.get(f"{info}/RECORD", b"").decode().splitlines():
        path, digest, _size = line.rsplit(",", 2)
        if digest and (path not in files or record_digest(files[path]) != digest):
            raise CheckFailed(f"{name}: {path} does not match its RECORD hash")
    return f"{name}: auto-review {version}, the command and the build record, RECORD matches"


def check_same_dependencies(dist: Path, other: Path) -> str:
    if sbom_packages(dist) != sbom_packages(other):
        raise CheckFailed(f"{dist} and {other} list different packages or hashes")
    if sha256(dist / wheel_name(dist)) != sha256(other / wheel_name(other)):
        raise CheckFailed(f"{dist} and {other} hold different wheels")
    return (f"{dist.name} and {other.name}: the same {len(sbom_packages(dist))} package hashes "
            "and the same wheel")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--compare", type=Path, help="another build of the same commit")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "release.lock")
    args = parser.parse_args(argv)
    checks = [
        lambda: check_sums(args.dist),
        lambda: check_sbom_schema(args.dist),
        lambda: check_locked(args.dist, args.lock),
        lambda: check_sbom_lists_the_payload(args.dist),
        lambda: check_runs(args.dist),
        lambda: check_refuses_an_unsafe_unpack_cache(args.dist),
        lambda: check_wheel(args.dist),
    ]
    if args.compare is not None:
        checks.append(lambda: check_same_dependencies(args.dist, args.compare))
    failed = 0
    for check in checks:
        try:
            print(f"check-release: ok: {check()}")
        except (CheckFailed, OSError, KeyError, ValueError, StopIteration,
                subprocess.TimeoutExpired) as exc:
            failed += 1
            print(f"check-release: FAILED: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
