"""The single file's start-up script (scripts/single_file_stub.sh), run by the real /bin/sh
on a small file that scripts/single_file.py makes (its program a shell script): it unpacks
once into a private cache entry and starts from it afterwards; it refuses, with one line
naming the path and exit 2, a cache or entry another user owns, others can write, that is a
symbolic link, sits in a directory others can write without the sticky bit, or is not a
complete entry of this file; a race to fill it and a crash while filling leave one complete
entry. The real file: tests/integration/release/test_single_file_cache.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from scripts.single_file import HASH_PREFIX, build, read_payload

VERSION = "0.1.0"
PROGRAM = '#!/bin/sh\nprintf "%s\\n" "file=$AUTO_REVIEW_SINGLE_FILE" "$@"\n'
DATA = b"data beside the program\n"
ANOTHER_USER = 65534  # nobody
TIMEOUT = 60


def program_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "program"
    (directory / "_internal").mkdir(parents=True)
    (directory / "auto-review").write_text(PROGRAM)
    (directory / "auto-review").chmod(0o755)
    (directory / "_internal" / "data.txt").write_bytes(DATA)
    return directory


@pytest.fixture
def single(tmp_path: Path) -> Path:
    out = tmp_path / "dist" / f"auto-review-{VERSION}-linux-x86_64"
    out.parent.mkdir()
    build(program_dir(tmp_path), VERSION, 1_800_000_000, out)
    return out


def entry_name(single: Path) -> str:
    return f"{VERSION}-{hashlib.sha256(read_payload(single)).hexdigest()[:HASH_PREFIX]}"


def start(
    single: Path, cache: Path | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent-home"}
    if cache is not None:
        base["AR_UNPACK_CACHE"] = str(cache)
    return subprocess.run([str(single), *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)  # fmt: skip


def refused(completed: subprocess.CompletedProcess[str], line: str) -> None:
    """Exit 2, exactly this one line on stderr, and the program never ran."""
    assert (completed.returncode, completed.stderr, completed.stdout) == (2, f"{line}\n", "")


def private_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    return cache


def test_the_first_start_unpacks_and_later_starts_use_the_entry(
    single: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "home" / "cache"  # made by the first start, with its parent
    first = start(single, cache, "review", "two words", "it's")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"file={single}", "review", "two words", "it's"]
    entry = cache / entry_name(single)
    assert sorted(path.name for path in cache.iterdir()) == [entry.name]  # no .fill.* left
    assert (entry / "_internal" / "data.txt").read_bytes() == DATA
    assert (entry / ".payload-sha256").read_text().strip() == hashlib.sha256(
        read_payload(single)
    ).hexdigest()
    for path in (cache, cache.parent, entry, entry / "_internal"):
        assert path.stat().st_mode & 0o7777 == 0o700, path
    assert (entry / "_internal" / "data.txt").stat().st_mode & 0o777 == 0o600
    assert (entry / "auto-review").stat().st_mode & 0o777 == 0o700

    before = entry.stat()
    (entry / "_internal" / "mark").write_text("kept")  # gone if it were unpacked again
    second = start(single, cache, "again")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [f"file={single}", "again"]
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (entry / "_internal" / "mark").read_text() == "kept"


def test_the_default_cache_is_under_xdg_cache_home_or_home(single: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    assert start(single, None, HOME=str(home)).returncode == 0
    assert (home / ".cache" / "auto-review" / entry_name(single)).is_dir()
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    assert start(single, None, HOME=str(home), XDG_CACHE_HOME=str(xdg)).returncode == 0
    assert (xdg / "auto-review" / entry_name(single)).is_dir()


def test_without_any_cache_location_it_says_what_to_set(single: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(single)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )  # fmt: skip
    refused(completed, "auto-review: no unpack cache: HOME is not set; set AR_UNPACK_CACHE "
                       "to a directory of this user's (docs/RELEASE.md)")  # fmt: skip
    refused(start(single, Path("relative/cache")),
            "auto-review: unpack cache relative/cache is not an absolute path")
    blocked = tmp_path / "file"
    blocked.write_text("")
    refused(start(single, blocked / "cache"),
            f"auto-review: cannot create the unpack cache {blocked}/cache (Not a directory); "
            "set AR_UNPACK_CACHE to a directory of this user's (docs/RELEASE.md)")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_cache_others_can_write_is_refused(single: Path, tmp_path: Path, mode: int) -> None:
    cache = private_cache(tmp_path)
    cache.chmod(mode)
    shown = subprocess.run(["ls", "-ld", str(cache)], capture_output=True, text=True,
                           check=True).stdout.split()[0]  # fmt: skip
    refused(start(single, cache),
            f"auto-review: unpack cache {cache} is writable by group or others ({shown})")
    assert list(cache.iterdir()) == []  # nothing unpacked there


def test_a_cache_another_user_owns_is_refused(single: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        cache = private_cache(tmp_path)
        os.chown(cache, ANOTHER_USER, ANOTHER_USER)
        owner = ANOTHER_USER
    else:
        cache, owner = Path("/usr"), 0  # root's: not this user's
    refused(start(single, cache),
            f"auto-review: unpack cache {cache} is owned by uid {owner}, not {os.geteuid()}")


def test_an_entry_another_user_owns_or_others_can_write_is_refused(
    single: Path, tmp_path: Path
) -> None:
    cache = private_cache(tmp_path)
    assert start(single, cache).returncode == 0
    entry = cache / entry_name(single)
    entry.chmod(0o757)
    refused(start(single, cache),
            f"auto-review: unpack cache {entry} is writable by group or others (drwxr-xrwx)")
    entry.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(entry, ANOTHER_USER, ANOTHER_USER)
        refused(start(single, cache), f"auto-review: unpack cache {entry} is owned by uid "
                                      f"{ANOTHER_USER}, not 0")  # fmt: skip


def test_symbolic_links_as_cache_or_entry_are_refused(single: Path, tmp_path: Path) -> None:
    real = private_cache(tmp_path)
    link = tmp_path / "cache-link"
    link.symlink_to(real)
    refused(start(single, link),
            f"auto-review: unpack cache {link} is a symbolic link, not a directory")
    assert list(real.iterdir()) == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (real / entry_name(single)).symlink_to(elsewhere)
    refused(start(single, real), f"auto-review: unpack cache {real / entry_name(single)} is a "
                                 "symbolic link, not a directory")  # fmt: skip


def test_a_directory_above_that_others_can_write_is_refused_unless_sticky(
    single: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    cache = private_cache(shared)
    shared.chmod(0o777)
    refused(start(single, cache), f"auto-review: unpack cache {cache} is in {shared}, which "
                                  "can be written by group or others without the sticky bit "
                                  "(drwxrwxrwx)")  # fmt: skip
    assert list(cache.iterdir()) == []
    shared.chmod(0o1777)  # as /tmp: others may not rename what is not theirs
    assert start(single, cache).returncode == 0
    if os.geteuid() == 0:
        shared.chmod(0o755)
        os.chown(shared, ANOTHER_USER, ANOTHER_USER)  # could rename the cache away
        refused(start(single, cache), f"auto-review: unpack cache {cache} is in {shared}, "
                                      f"which is owned by uid {ANOTHER_USER} (neither this "
                                      "user nor root)")  # fmt: skip


def test_an_incomplete_entry_is_refused_not_used(single: Path, tmp_path: Path) -> None:
    cache = private_cache(tmp_path)
    entry = cache / entry_name(single)
    entry.mkdir(mode=0o700)  # e.g. copied by hand, or another file's under this name
    (entry / "auto-review").write_text("#!/bin/sh\necho planted\n")
    (entry / "auto-review").chmod(0o700)
    sha256 = hashlib.sha256(read_payload(single)).hexdigest()
    line = (f"auto-review: unpack cache entry {entry} is incomplete or not this file's (its "
            f".payload-sha256 is not {sha256}): remove it")  # fmt: skip
    refused(start(single, cache), line)
    (entry / ".payload-sha256").write_text("0" * 64 + "\n")
    refused(start(single, cache), line)


def test_a_crashed_fill_leaves_a_directory_that_is_never_used(single: Path, tmp_path: Path) -> None:
    cache = private_cache(tmp_path)
    stale = cache / ".fill.crashedold"
    fresh = cache / ".fill.crashednew"  # could be another start filling right now
    for leftover in (stale, fresh):
        (leftover / "_internal").mkdir(parents=True, mode=0o700)
        (leftover / "auto-review").write_text("#!/bin/sh\necho half-written\n")
    day_and_more = time.time() - 2 * 86400
    os.utime(stale, (day_and_more, day_and_more))
    completed = start(single, cache, "ok")
    assert completed.stdout.splitlines() == [f"file={single}", "ok"], completed.stderr
    assert sorted(path.name for path in cache.iterdir()) == [fresh.name, entry_name(single)]


def test_a_start_that_loses_the_race_to_fill_uses_the_winners_entry(
    single: Path, tmp_path: Path
) -> None:
    # Deterministic race: this start's mktemp (a wrapper first in PATH) lets a second start
    # fill the entry completely before this one unpacks and renames its own.
    cache = private_cache(tmp_path)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "mktemp").write_text(
        "#!/bin/sh\nset -e\nmade=$(/usr/bin/env -u MKTEMP_SHIM PATH=/usr/bin:/bin mktemp \"$@\")\n"
        f'if [ -z "${{RACED:-}}" ]; then RACED=1 "{single}" winner >"{tmp_path}/winner.out"; fi\n'
        'echo "$made"\n'
    )
    (shims / "mktemp").chmod(0o755)
    completed = start(single, cache, "loser", PATH=f"{shims}:{os.environ['PATH']}")
    assert completed.stdout.splitlines() == [f"file={single}", "loser"], completed.stderr
    assert (tmp_path / "winner.out").read_text().splitlines() == [f"file={single}", "winner"]
    entry = cache / entry_name(single)
    assert sorted(path.name for path in cache.iterdir()) == [entry.name]
    assert sorted(path.name for path in entry.iterdir()) == [
        ".payload-sha256", "_internal", "auto-review"
    ]


def test_starts_at_the_same_moment_share_one_entry(single: Path, tmp_path: Path) -> None:
    cache = private_cache(tmp_path)
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(start(single, cache, "x")))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [result.returncode for result in results] == [0, 0, 0, 0], results
    entry = cache / entry_name(single)
    assert sorted(path.name for path in cache.iterdir()) == [entry.name]
    assert sorted(path.name for path in entry.iterdir()) == [
        ".payload-sha256", "_internal", "auto-review"
    ]


def test_a_damaged_file_is_refused_before_anything_is_unpacked(
    single: Path, tmp_path: Path
) -> None:
    cache = private_cache(tmp_path)
    data = bytearray(single.read_bytes())
    data[-100] ^= 0xFF
    single.write_bytes(bytes(data))
    refused(start(single, cache), f"auto-review: {single} is damaged: its payload does not "
                                  "have the sha256 it was built with")  # fmt: skip
    assert list(cache.iterdir()) == []


def test_the_payload_is_reproducible_and_read_back(single: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build(program_dir(tmp_path / "other"), VERSION, 1_800_000_000, again)
    assert again.read_bytes() == single.read_bytes()
    assert read_payload(single) == single.read_bytes()[-len(read_payload(single)) :]
    with pytest.raises(ValueError, match="not a single file"):
        read_payload(tmp_path / "program" / "auto-review")


def test_links_inside_the_program_are_kept_and_links_out_of_it_refused(tmp_path: Path) -> None:
    # PyInstaller links a wheel's bundled libraries (e.g. psycopg_binary.libs) to one copy.
    program = program_dir(tmp_path)
    (program / "_internal" / "libs").mkdir()
    (program / "_internal" / "libs" / "data.txt").symlink_to("../data.txt")
    single = tmp_path / "single"
    build(program, VERSION, 1_800_000_000, single)
    cache = private_cache(tmp_path)
    assert start(single, cache).returncode == 0
    linked = cache / entry_name(single) / "_internal" / "libs" / "data.txt"
    assert linked.is_symlink() and linked.read_bytes() == DATA
    (program / "_internal" / "out").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="a link that points out of"):
        build(program, VERSION, 1_800_000_000, tmp_path / "refused")
