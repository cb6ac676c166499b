"""A directory of the release lock's wheels, each checked against the lock's sha256, from which
auto-review's wheel installs as a tool without the package index:

  .venv/bin/python scripts/wheelhouse.py DIR [--python PYTHON] [--lock LOCK]
  uv tool install --offline --no-index --find-links DIR --constraints LOCK auto_review-*.whl

The wheels are for PYTHON's version (default: Debian's ``/usr/bin/python3``, the interpreter
the tool install uses) on this platform. When DIR already holds a complete set for that
version and that lock (a stamp file records it) nothing is fetched; otherwise ``pip download
--require-hashes --no-deps --only-binary :all:`` fetches what is missing, which needs the
package index. Every file in DIR is then checked against the lock: ``uv tool install`` does
not check hashes itself, so this check is what makes the offline install the locked one.
Prints the directory; a failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = "/usr/bin/python3"
DOWNLOAD_TIMEOUT = 600

sys.path.insert(0, str(ROOT / "scripts"))
from release_manifest import lock_hashes  # noqa: E402


class WheelhouseError(Exception):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def python_version(python: str) -> str:
    """``3.11`` for the interpreter at ``python``."""
    try:
        completed = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise WheelhouseError(f"cannot run {python}: {exc}") from None
    return completed.stdout.strip()


def stamp_name(lock: Path, version: str) -> str:
    return f".complete-py{version}-{sha256(lock)[:16]}"


def download(directory: Path, lock: Path, version: str) -> None:
    """pip download of every pin for ``version``, each file's hash checked by pip."""
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "--only-binary", ":all:", "--python-version", version,
         "-d", str(directory), "-r", str(lock)],
        capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        errors = [line for line in completed.stderr.splitlines() if "ERROR" in line]
        detail = errors[-1] if errors else completed.stderr.strip()[-300:]
        raise WheelhouseError(
            f"pip download of {lock.name}'s wheels for Python {version} failed (it needs the "
            f"package index): {detail}"
        )


def check_files(directory: Path, lock: Path) -> int:
    """Every wheel in ``directory`` has a sha256 the lock allows; how many there are."""
    allowed = {digest for hashes in lock_hashes(lock.read_text("utf-8")).values()
               for digest in hashes}  # fmt: skip
    wheels = sorted(directory.glob("*.whl"))
    for wheel in wheels:
        if sha256(wheel) not in allowed:
            raise WheelhouseError(f"{wheel} has a sha256 {lock.name} does not allow")
    if not wheels:
        raise WheelhouseError(f"{directory} holds no wheel")
    return len(wheels)


def complete(stamp: Path) -> bool:
    """The stamp exists and every wheel it lists is still there."""
    try:
        names = stamp.read_text("utf-8").split()
    except OSError:
        return False
    return bool(names) and all((stamp.parent / name).is_file() for name in names)


def ensure(directory: Path, lock: Path, python: str) -> Path:
    version = python_version(python)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / stamp_name(lock, version)
    if not complete(stamp):
        download(directory, lock, version)
        names = sorted(wheel.name for wheel in directory.glob("*.whl"))
        stamp.write_text("".join(f"{name}\n" for name in names), "utf-8")
    check_files(directory, lock)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=f"the tool's interpreter [default: {DEFAULT_PYTHON}]")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "release.lock")
    args = parser.parse_args(argv)
    os.umask(0o022)
    try:
        print(ensure(args.directory.resolve(), args.lock, args.python))
    except (WheelhouseError, OSError) as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
