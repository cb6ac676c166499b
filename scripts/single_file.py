"""The single file: a POSIX sh stub followed by a gzip-compressed tar of a program directory.

Run by ``scripts/build-release`` on PyInstaller's one-directory build:

  python scripts/single_file.py --program-dir DIR --version VERSION --epoch SECONDS --out FILE

The stub (``scripts/single_file_stub.sh``, values filled in here) unpacks the payload once
into a private cache directory, checks it on every start and runs ``DIR/auto-review`` from
it (docs/RELEASE.md). The payload is made the same way from the same files: members sorted,
owner 0, times the commit's, modes private (directories and executables 0700, other files
0600) and gzip without a name or time, so its hash (and the cache entry's name) depends on
the files only. ``read_payload`` gives the payload back (the SBOM reads what is inside).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import stat
import sys
import tarfile
from pathlib import Path

STUB = Path(__file__).resolve().with_name("single_file_stub.sh")
PROGRAM = "auto-review"  # the executable at the top of the payload
HASH_PREFIX = 16  # hex digits of the payload's sha256 in the cache entry's name
_OFFSET = re.compile(rb"^ar_offset=(\d+)$", re.MULTILINE)


def payload(program_dir: Path, epoch: int) -> bytes:
    """The tar.gz of everything under ``program_dir``, made reproducibly."""
    raw = io.BytesIO()
    inside = program_dir.resolve()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(program_dir.rglob("*"), key=lambda p: p.relative_to(program_dir).parts):
            info = archive.gettarinfo(str(path), arcname=str(path.relative_to(program_dir)))
            if info.issym():
                # PyInstaller links bundled libraries (e.g. a wheel's .libs directory) to one
                # copy: kept as links, relative and pointing inside the directory only.
                if os.path.isabs(info.linkname) or inside not in path.resolve().parents:
                    raise ValueError(f"{path}: a link that points out of {program_dir}")
                info.mode = 0o777
            elif not (info.isdir() or info.isfile()):
                raise ValueError(f"{path}: only directories, regular files and links are packed")
            else:
                executable = info.isdir() or bool(info.mode & stat.S_IXUSR)
                info.mode = 0o700 if executable else 0o600
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def stub(version: str, sha256: str) -> bytes:
    """The stub with its values; ``ar_offset`` is where the payload starts (1-based, as
    ``tail -c +N`` counts), so it depends on its own length: found by iterating."""
    if not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
        raise ValueError(f"version {version!r}: only letters, digits and . + - are allowed")
    template = STUB.read_text(encoding="utf-8")
    entry = f"{version}-{sha256[:HASH_PREFIX]}"
    offset = 0
    while True:
        text = (template.replace("@VERSION@", version).replace("@ENTRY@", entry)
                .replace("@SHA256@", sha256).replace("@OFFSET@", str(offset)))  # fmt: skip
        encoded = text.encode("ascii")
        if offset == len(encoded) + 1:
            return encoded
        offset = len(encoded) + 1


def build(program_dir: Path, version: str, epoch: int, out: Path) -> str:
    """Writes the single file; returns the cache entry's name."""
    if not (program_dir / PROGRAM).is_file():
        raise ValueError(f"{program_dir} has no {PROGRAM} executable")
    packed = payload(program_dir, epoch)
    sha256 = hashlib.sha256(packed).hexdigest()
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_bytes(stub(version, sha256) + packed)
    temporary.chmod(0o755)
    os.replace(temporary, out)
    return f"{version}-{sha256[:HASH_PREFIX]}"


def read_payload(single_file: Path) -> bytes:
    """The payload of a file ``build`` made (after its stub), hash checked."""
    data = single_file.read_bytes()
    head = data[:16384]
    found = _OFFSET.search(head)
    expected = re.search(rb"^ar_sha256='([0-9a-f]{64})'$", head, re.MULTILINE)
    if not data.startswith(b"#!/bin/sh\n") or found is None or expected is None:
        raise ValueError(f"{single_file} is not a single file made by scripts/single_file.py")
    packed = data[int(found[1]) - 1 :]
    if hashlib.sha256(packed).hexdigest() != expected[1].decode():
        raise ValueError(f"{single_file}: the payload does not have the sha256 in its stub")
    return packed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--program-dir", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    entry = build(args.program_dir, args.version, args.epoch, args.out)
    print(f"single_file: {args.out.name}, cache entry {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
