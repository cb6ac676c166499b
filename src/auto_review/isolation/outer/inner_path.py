"""The inner interpreter's module search path, computed by the launcher and given explicitly.

The inner gateway's interpreter starts with ``-S -P``: no ``site`` module and no script or
working directory on the path. ``site`` would run the ``import`` lines of every ``.pth``
file in site-packages at each start; a host environment may put code there (this one
imports certifi, about 35 ms per start), and none of it belongs inside the boundary. The
launcher instead hands the inner process, as ``PYTHONPATH``, the directories ``site``
would have added for the same interpreter: ``PYTHONPATH`` entries, the site-packages
directories, and the directories their ``.pth`` files name (an editable install's
``src``). ``.pth`` import lines are never run. The directory ``auto_review`` itself is
imported from is always on it, so a launcher that found the package some other way hands
the same package inside.
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Iterable, Sequence

INNER_INTERPRETER_OPTIONS = ("-S", "-P")


def pth_directories(site_dir: str) -> list[str]:
    """Directories named by the ``.pth`` files of ``site_dir``, in ``site``'s order.

    Lines starting with ``import`` are code, not paths: skipped, never run.
    """
    try:
        names = sorted(name for name in os.listdir(site_dir) if name.endswith(".pth"))
    except OSError:
        return []
    found: list[str] = []
    for name in names:
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue  # site skips an unreadable .pth file as well
        for line in lines:
            entry = line.rstrip()
            if not entry or entry.startswith("#") or entry.startswith(("import ", "import\t")):
                continue
            directory = os.path.normpath(os.path.join(site_dir, entry))
            if os.path.isdir(directory):
                found.append(directory)
    return found


def site_directories() -> list[str]:
    """The site-packages directories ``site`` would add for this interpreter."""
    directories = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return [directory for directory in directories if os.path.isdir(directory)]


def explicit_search_path(
    python_path: str, site_dirs: Sequence[str], package_root: str
) -> list[str]:
    """Absolute existing directories, without duplicates, in the order ``site`` uses."""
    entries: list[str] = [entry for entry in python_path.split(os.pathsep) if entry]
    for site_dir in site_dirs:
        entries.append(site_dir)
        entries.extend(pth_directories(site_dir))
    entries.append(package_root)
    return _unique_directories(entries)


def _unique_directories(entries: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for entry in entries:
        if not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        normal = os.path.normpath(entry)
        if normal not in kept:
            kept.append(normal)
    return kept


def package_root() -> str:
    """The directory the running ``auto_review`` package was imported from."""
    import auto_review

    return os.path.dirname(os.path.dirname(os.path.abspath(auto_review.__file__)))


def inner_python_path() -> str:
    """``PYTHONPATH`` for the inner interpreter (started with :data:`INNER_INTERPRETER_OPTIONS`)."""
    entries = explicit_search_path(
        os.environ.get("PYTHONPATH", ""), site_directories(), package_root()
    )
    return os.pathsep.join(entries)


def inner_interpreter_args(module: str) -> list[str]:
    """``process.args``: this interpreter at the same absolute path inside, hermetic."""
    return [sys.executable, *INNER_INTERPRETER_OPTIONS, "-m", module]
