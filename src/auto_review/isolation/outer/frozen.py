"""The single file (PyInstaller one-file) as the container's program.

Frozen, there is no interpreter on the host to bind: the file's bootloader unpacks the
runtime (libpython, extension modules, shared libraries, data) into a directory of its own
(``sys._MEIPASS``, ``_MEI*`` under ``$TMPDIR``, removed when the file exits) and reads the
Python modules from the file itself. The bundle binds exactly those two, read-only at their
host paths, and runs the same file inside with the bootloader's own variables naming that
directory, so the inner process starts from it without unpacking again (as the bootloader's
own child process does).

The directory is checked before it is bound: a real directory (not a link), owned by this
user, writable by nobody else, in a parent where nobody else can replace it (not writable by
others, or sticky like /tmp); otherwise the launch stops with one line naming it.
"""

from __future__ import annotations

import os
import stat
import sys

# The command-line word that makes the single file run the inner gateway (cli/main.py).
INNER_COMMAND = "--isolation-inner"


class UnpackedRuntimeError(RuntimeError):
    """One line naming the path; the launcher reports it at step ``bundle``."""


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def unpacked_dir() -> str:
    return str(sys._MEIPASS)  # type: ignore[attr-defined]  # set by the bootloader


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
    """``process.args``: this file, at the same absolute path inside."""
    return [os.path.abspath(sys.executable), INNER_COMMAND]


def inner_variables() -> dict[str, str]:
    """What the bootloader sets for its own child process (PyInstaller 6): the archive (this
    file), the unpacked runtime, and that a parent already unpacked it."""
    home = unpacked_dir()
    check_unpacked_dir(home)
    return {
        "_PYI_ARCHIVE_FILE": os.path.abspath(sys.executable),
        "_PYI_APPLICATION_HOME_DIR": home,
        "_PYI_PARENT_PROCESS_LEVEL": "0",
    }
