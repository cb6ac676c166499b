"""The built single file's unpack cache (docs/RELEASE.md, docs/THREAT-MODEL.md), as root
and as an unprivileged user, with the file ``SINGLE_FILE_UNDER_TEST`` names (``.ci/run``
names the one it built; unset, as for the single-file scenarios of
test_e2e_review_job.py, there is nothing to collect here):

- the first start unpacks into the cache, a second start runs from that entry without
  unpacking again (its inode and mtime unchanged, a file added to it still there);
- a cache another user owns or that others can write is refused before anything runs or is
  unpacked: exit 2 and one line naming the directory, no canary of the env file printed.

The start-up times, cold and warm: bench/release_startup.py. The script's every check on a
small stand-in file: tests/unit/test_single_file.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

SINGLE_FILE = os.environ.get("SINGLE_FILE_UNDER_TEST")
ANOTHER_USER = 65534  # nobody
TIMEOUT = 120


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


def built_file(sandbox: support.UserSandbox) -> Path:
    """The file under test, where the unprivileged user can run it too."""
    assert SINGLE_FILE is not None
    given = Path(SINGLE_FILE)
    if not given.is_file() or not os.access(given, os.X_OK):
        pytest.fail(f"SINGLE_FILE_UNDER_TEST={SINGLE_FILE} is not an executable file: "
                    "build it with scripts/build-release")  # fmt: skip
    copy = sandbox.base / "cache-test" / given.name
    if not copy.exists():
        copy.parent.mkdir(mode=0o755, exist_ok=True)
        shutil.copy2(given, copy)
        copy.chmod(0o755)
    return copy


def entry_name(program: Path) -> str:
    """The cache entry's name the file's script was built with."""
    with program.open("rb") as handle:
        head = handle.read(16384).decode("ascii", errors="replace")
    found = re.search(r"^ar_entry_name='([^']+)'$", head, re.MULTILINE)
    assert found is not None, f"{program} has no ar_entry_name in its script"
    return found[1]


def run(
    program: Path, run_as: support.RunAs, cache: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": support.LAUNCHER_PATH, "LANG": "C.UTF-8", "AR_UNPACK_CACHE": str(cache)}
    return subprocess.run([str(program), *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL, cwd="/",
                          **run_as.popen_identity())  # fmt: skip


def who(name: str, sandbox: support.UserSandbox) -> support.RunAs:
    return sandbox.run_as if name == "rootless" else support.root_run_as()


def cache_for(run_as: support.RunAs, sandbox: support.UserSandbox, name: str) -> Path:
    """A new directory for the cache, in one the user may create it in (owned, 0700)."""
    place = sandbox.base / f"cache-{name}-{run_as.uid}"
    place.mkdir(mode=0o700)
    run_as.own(place)
    return place / "auto-review"


if SINGLE_FILE:

    @pytest.mark.parametrize("name", ["root", "rootless"])
    def test_a_second_start_runs_from_the_entry_without_unpacking_again(
        name: str, sandbox: support.UserSandbox
    ) -> None:
        program, run_as = built_file(sandbox), who(name, sandbox)
        cache = cache_for(run_as, sandbox, f"warm-{name}")
        first = run(program, run_as, cache, "--help")
        assert first.returncode == 0 and first.stdout.startswith("usage: auto-review"), first
        [entry] = list(cache.iterdir())  # no .fill.* left beside it
        assert entry.name == entry_name(program)
        assert entry.stat().st_uid == run_as.uid
        assert entry.stat().st_mode & 0o777 == 0o700
        before = entry.stat()
        mark = entry / "_internal" / "added-after-unpacking"
        mark.write_text("gone if the file unpacked again")

        second = run(program, run_as, cache, "version", "--verbose")
        assert second.returncode == 0, second.stderr
        lines = second.stdout.splitlines()
        assert f"runs as: single file ({program})" in lines
        assert any(line.endswith(f"({entry}/auto-review)") for line in lines), lines
        after = entry.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert mark.exists()
        assert list(cache.iterdir()) == [entry]

    @pytest.mark.parametrize("name", ["root", "rootless"])
    @pytest.mark.parametrize("unsafe", ["writable by others", "another user's"])
    def test_an_unsafe_cache_is_refused_with_one_line_naming_it(
        name: str, unsafe: str, sandbox: support.UserSandbox
    ) -> None:
        program, run_as = built_file(sandbox), who(name, sandbox)
        cache = cache_for(run_as, sandbox, f"unsafe-{name}-{unsafe.split()[0]}")
        cache.mkdir(mode=0o700)
        run_as.own(cache)
        if unsafe == "another user's":
            os.chown(cache, ANOTHER_USER, ANOTHER_USER)
            why = f"is owned by uid {ANOTHER_USER}, not {run_as.uid}"
        else:
            cache.chmod(0o777)  # on purpose: the unsafe cache under test
            why = "is writable by group or others (drwxrwxrwx)"
        env_file = cache.parent / "gateway.env"
        env_file.write_text(f"AR_FORGEJO_TOKEN={support.CANARY_TOKEN}\n"
                            f"AR_WEBHOOK_SECRET={support.CANARY_WEBHOOK}\n")  # fmt: skip
        env_file.chmod(0o600)
        run_as.own(env_file)

        completed = run(program, run_as, cache, "gateway", "--env-file", str(env_file))
        assert completed.returncode == 2
        assert completed.stderr == f"auto-review: unpack cache {cache} {why}\n"
        assert completed.stdout == ""
        assert list(cache.iterdir()) == []  # nothing unpacked, nothing ran
        for canary in support.CANARIES:
            assert canary not in completed.stderr
