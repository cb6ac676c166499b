"""Run things as an unprivileged test user under Debian's /usr/bin/python3.

/root is 0700 and the default python3 lives under it, so a rootless run uses Debian's
interpreter with a world-readable copy of src/auto_review and of the third-party modules it
imports. The user is a system user created on demand (`useradd`, idempotent). Standard
library only: bench scripts import it too.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTO_REVIEW_SOURCE = REPO_ROOT / "src" / "auto_review"
TEST_USER = "ar-oci-test"
DEBIAN_PYTHON = "/usr/bin/python3"

# Which site-packages modules the copy takes, beyond those importing the names pulls in:
# "none": nothing else (not what .pth files or sitecustomize loaded at start-up);
# "requested": also the requested top-level packages, even when start-up loaded them already;
# "all": every site-packages module loaded, start-up ones included.
Preloaded = Literal["none", "requested", "all"]
LIST_SITE_MODULES = """
import importlib, json, sys, sysconfig
preloaded, names = sys.argv[1], sys.argv[2:]
already = set(sys.modules)
for name in names:
    importlib.import_module(name)
site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
if preloaded == "all":
    loaded = set(sys.modules) - {"_distutils_hack"}
elif preloaded == "requested":
    loaded = (set(sys.modules) - already) | {name.split(".")[0] for name in names}
else:
    loaded = set(sys.modules) - already
found = {}
for name in loaded:
    origin = getattr(sys.modules[name], "__file__", None) or ""
    for directory in site:
        if origin.startswith(directory + "/"):
            top = origin[len(directory) + 1 :].split("/")[0]
            found[top] = directory + "/" + top
print(json.dumps(found))
"""


def ensure_test_user(name: str = TEST_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    completed = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # Exit 9 = the name exists already (another session created it meanwhile).
    if completed.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed: {completed.stderr.strip()}")
    return pwd.getpwnam(name)


def copy_site(
    target: Path,
    imports: tuple[str, ...],
    *,
    preloaded: Preloaded,
    source: Path = AUTO_REVIEW_SOURCE,
) -> None:
    """Copy auto_review (from ``source``) and the site-packages modules that importing
    ``imports`` in this interpreter loads into ``target``, to be found ahead of Debian's
    dist-packages (which lack some of them or hold older versions)."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(source, target / "auto_review", ignore=ignore)
    listed = subprocess.run(
        [sys.executable, "-c", LIST_SITE_MODULES, preloaded, *imports],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name, origin in json.loads(listed.stdout).items():
        if name == "auto_review":
            continue
        if os.path.isdir(origin):
            shutil.copytree(origin, target / name, ignore=ignore)
        else:
            shutil.copy2(origin, target / name)


def make_world_readable(top: Path) -> None:
    for directory, _subdirs, files in os.walk(top):
        os.chmod(directory, 0o755)  # noqa: S103 - on purpose: the test user imports from it
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, os.stat(path).st_mode | 0o444)


def build_readable_site(
    target: Path, imports: tuple[str, ...], *, preloaded: Preloaded, byte_compile: bool = False
) -> None:
    """``copy_site`` made readable by everyone; ``byte_compile`` compiles it once with
    Debian's python3, so each start does not compile from source."""
    copy_site(target, imports, preloaded=preloaded)
    make_world_readable(target)
    if byte_compile:
        subprocess.run([DEBIAN_PYTHON, "-m", "compileall", "-q", str(target)],
                       capture_output=True, check=False)  # fmt: skip
        make_world_readable(target)


@dataclass(frozen=True)
class UserTree:
    """A 0755 temporary directory holding the test user's private directory and the site."""

    user: pwd.struct_passwd
    base: Path
    private_dir: Path  # 0700, owned by the user: HOME / XDG_RUNTIME_DIR
    site: Path  # world-readable copy of auto_review and its third-party imports

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def make_user_tree(
    prefix: str,
    private_name: str,
    imports: tuple[str, ...],
    *,
    preloaded: Preloaded,
    byte_compile: bool = False,
) -> UserTree:
    """Create the test user if needed, and a fresh tree for it (the caller must be root)."""
    entry = ensure_test_user()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    private_dir = base / private_name
    private_dir.mkdir(mode=0o700)
    os.chown(private_dir, entry.pw_uid, entry.pw_gid)
    site = base / "site"
    site.mkdir()
    build_readable_site(site, imports, preloaded=preloaded, byte_compile=byte_compile)
    return UserTree(entry, base, private_dir, site)


def user_env(home: Path, site: Path, *, path: str, write_bytecode: bool = False) -> dict[str, str]:
    """The environment of a Debian python3 the test user runs, importing from ``site``."""
    env = {"PATH": path, "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "PYTHONPATH": str(site), "LANG": "C.UTF-8"}  # fmt: skip
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def as_user(uid: int, gid: int) -> dict[str, Any]:
    """subprocess keyword arguments that run the child as uid:gid with no other groups."""
    return {"user": uid, "group": gid, "extra_groups": []}
