"""The single file's program as the container's program.

The single file (``scripts/build-release``) is a shell script followed by PyInstaller's
one-directory build, packed: the script unpacks it once into a private cache entry, checks
that entry and the directories above it on every start, and runs the program from it
(docs/RELEASE.md, "The unpack cache"). Frozen, the runtime is that entry: the executable
beside its ``_internal`` directory (the interpreter, extension modules, shared libraries,
data). The bundle binds the entry read-only at its host path and runs the same executable
inside, which starts from it as it is: nothing is unpacked inside the container.

The entry is checked again before it is bound: a real directory (not a link), owned by this
user, writable by nobody else, in a parent where nobody else can replace it (not writable by
others, or sticky like /tmp); otherwise the launch stops with one line naming it.
"""

from __future__ import annotations

import os
import stat
import sys

# The command-line word that makes the single file run the inner gateway (cli/main.py).
INNER_COMMAND = "--isolation-inner"
# Set by the single file's script to the file's own path (for `version --verbose`).
SINGLE_FILE_VARIABLE = "AUTO_REVIEW_SINGLE_FILE"


class UnpackedRuntimeError(RuntimeError):
    """One line naming the path; the launcher reports it at step ``bundle``."""


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def unpacked_dir() -> str:
    """The cache entry: the directory of the running executable."""
    return os.path.dirname(os.path.abspath(sys.executable))


def single_file() -> str:
    """The file this program was started from (the entry's executable when run directly)."""
    return os.environ.get(SINGLE_FILE_VARIABLE) or os.path.abspath(sys.executable)


def check_unpacked_dir(path: str, uid: int | None = None) -> None:
    """Refuse a runtime directory that another user could have changed or made."""
    owner = os.geteuid() if uid is None else uid
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise UnpackedRuntimeError(f"unpacked runtime {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnpackedRuntimeError(f"unpacked runtime {path} is not a directory")
    if info.st_uid != owner:
        raise UnpackedRuntimeError(
            f"unpacked runtime {path} is owned by uid {info.st_uid}, not {owner}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnpackedRuntimeError(
            f"unpacked runtime {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o})"
        )
    # Others who may write the parent could rename the directory away and put their own in
    # its place, unless the sticky bit (as on /tmp) keeps them to their own entries.
    parent = os.path.dirname(os.path.abspath(path))
    above = os.stat(parent)
    if above.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not above.st_mode & stat.S_ISVTX:
        raise UnpackedRuntimeError(
            f"unpacked runtime {path} is in {parent}, which group or others can write "
            f"without the sticky bit (mode {stat.S_IMODE(above.st_mode):04o})"
        )


def inner_args() -> list[str]:
    """``process.args``: the entry's executable, at the same absolute path inside."""
    return [os.path.abspath(sys.executable), INNER_COMMAND]
