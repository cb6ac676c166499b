"""Tree entries git's porcelain refuses to create, crafted as raw tree objects and fetched.

Each commit holds one hostile entry (``../x``, ``..``, ``.git``, ``.GIT``, a ``.git/hooks``
directory, ``../../escape``, a backslash name, a control character, a symlink and a directory
under the same name, ...). Whatever git does with it, the outcome must be safe: either the
workspace refuses with a one-line :class:`WorkspaceError`, or the tree it produced lies wholly
inside the job directory, holds no git directory, and the confined tools read nothing outside.
Nothing may appear next to the job directories, and the job directory is always removed.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.integration.review.hostile_repo import clean_env, git
from tests.integration.review.smart_http import SmartHttpServer, make_certificate

from auto_review.review.workspace.checkout import (
    FetchRequest,
    Workspace,
    WorkspaceError,
    open_workspace,
)
from auto_review.review.workspace.confined import ConfinedTree, ConfinementError
from auto_review.review.workspace.gitenv import GitCredentials, GitPolicy

FILE_OK = GitPolicy(allow_file_protocol=True)
TOKEN = "tok-names-5b1e-SECRET-never-printed"
OUTSIDE_CANARY = "OUTSIDE-CANARY-4c2f"
BLOB = b"pwned\n"
HOOK = b'#!/bin/sh\ntouch "$0.ran"\n'

REGULAR, EXECUTABLE, SYMLINK, DIRECTORY = b"100644", b"100755", b"120000", b"40000"


@dataclass(frozen=True)
class Entry:
    mode: bytes
    name: bytes
    content: bytes | list[Entry]  # blob bytes (symlink target for SYMLINK) or sub-entries


@dataclass(frozen=True)
class NamesRepo:
    root: Path  # the test's directory: everything outside jobs/ must stay as it was
    origin: Path
    jobs: Path
    sentinel: Path  # empty directory next to the job directories; symlinks aim at it
    outside: Path  # a readable file next to the job directories
    heads: dict[str, str]  # case id -> commit


def _object(repo: Path, kind: str, data: bytes) -> str:
    # --literally: git's own checks on tree entry names are exactly what is being bypassed.
    result = subprocess.run(
        ["git", "hash-object", "-t", kind, "--literally", "-w", "--stdin"],
        cwd=repo,
        env=clean_env(repo),
        input=data,
        check=True,
        capture_output=True,
    )
    return result.stdout.decode().strip()


def _tree(repo: Path, entries: list[Entry]) -> str:
    raw = b""
    for entry in entries:
        if isinstance(entry.content, list):
            oid = _tree(repo, entry.content)
        else:
            oid = _object(repo, "blob", entry.content)
        raw += entry.mode + b" " + entry.name + b"\0" + bytes.fromhex(oid)
    return _object(repo, "tree", raw)


def _cases(sentinel: Path) -> dict[str, list[Entry]]:
    pwned = [Entry(REGULAR, b"pwned", BLOB)]
    hooks = [Entry(DIRECTORY, b"hooks", [Entry(EXECUTABLE, b"post-checkout", HOOK)])]
    absolute_target = str(sentinel).encode()
    return {
        "dotdot-slash-file": [Entry(REGULAR, b"../x", BLOB)],
        "dotdot-slash-dir": [Entry(DIRECTORY, b"../x", pwned)],
        "dotdot-entry-file": [Entry(REGULAR, b"..", BLOB)],
        "dotdot-entry-dir": [Entry(DIRECTORY, b"..", pwned)],
        "dot-entry-dir": [Entry(DIRECTORY, b".", pwned)],
        "escape-component": [Entry(REGULAR, b"../../escape", BLOB)],
        "escape-in-subtree": [Entry(DIRECTORY, b"docs", [Entry(REGULAR, b"../../escape", BLOB)])],
        "deep-escape-dir": [Entry(DIRECTORY, b"../../../sentinel", pwned)],
        "backslash-dotdot": [Entry(REGULAR, b"..\\x", BLOB)],
        "backslash-escape-dir": [Entry(DIRECTORY, b"..\\..\\escape", pwned)],
        "dotgit-file": [Entry(REGULAR, b".git", BLOB)],
        "dotgit-hooks": [Entry(DIRECTORY, b".git", hooks)],
        "dotgit-upper-hooks": [Entry(DIRECTORY, b".GIT", hooks)],
        "dotgit-mixed-case": [Entry(DIRECTORY, b".Git", hooks)],
        "dotgit-nested": [Entry(DIRECTORY, b"sub", [Entry(DIRECTORY, b".git", hooks)])],
        "dotgit-ntfs-shortname": [Entry(DIRECTORY, b"git~1", hooks)],
        "dotgit-trailing-space": [Entry(DIRECTORY, b".git ", hooks)],
        "dotgit-trailing-dot": [Entry(DIRECTORY, b".git.", hooks)],
        "control-char": [Entry(REGULAR, b"esc\x1b[31mred", BLOB)],
        "newline-name": [Entry(REGULAR, b"new\nline", BLOB)],
        "slash-in-entry": [Entry(REGULAR, b"nested/inside", BLOB)],
        "symlink-then-dir-absolute": [
            Entry(SYMLINK, b"a", absolute_target),
            Entry(DIRECTORY, b"a", pwned),
        ],
        "symlink-then-dir-relative": [
            Entry(SYMLINK, b"a", b"../../../sentinel"),
            Entry(DIRECTORY, b"a", pwned),
        ],
        "dir-then-symlink": [
            Entry(DIRECTORY, b"a", pwned),
            Entry(SYMLINK, b"a", absolute_target),
        ],
        "symlink-gitmodules": [Entry(SYMLINK, b".gitmodules", b"../../../outside")],
    }


@pytest.fixture(scope="module")
def names_repo(tmp_path_factory: pytest.TempPathFactory) -> NamesRepo:
    root = tmp_path_factory.mktemp("names")
    sentinel = root / "sentinel"
    sentinel.mkdir()
    outside = root / "outside"
    outside.write_text(OUTSIDE_CANARY + "\n")
    jobs = root / "jobs"
    jobs.mkdir()
    origin = root / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    git(origin, "commit", "-q", "--allow-empty", "-m", "base")
    heads: dict[str, str] = {}
    for number, (case, entries) in enumerate(_cases(sentinel).items(), start=1):
        readme = Entry(REGULAR, b"README", b"read me\n")
        tree = _tree(origin, [readme, *entries])
        commit = git(origin, "commit-tree", tree, "-m", case)
        git(origin, "update-ref", f"refs/pull/{number}/head", commit)
        heads[case] = commit
    return NamesRepo(root, origin, jobs, sentinel, outside, heads)


def _snapshot(root: Path, skip: Path) -> set[str]:
    """Every path under ``root`` except those under ``skip``, with type and size."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            seen.add(f"{path} {st.st_mode:o} {st.st_size}")
    return seen


def _all_names_inside(tree: Path) -> list[str]:
    names = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            real = os.path.realpath(full) if not os.path.islink(full) else full
            assert real.startswith(str(tree) + os.sep), f"{full!r} lies outside the tree"
            names.append(os.path.relpath(full, tree))
    return names


def _assert_tree_is_safe(ws: Workspace, repo: NamesRepo) -> None:
    names = _all_names_inside(ws.tree)
    for name in names:
        components = {part.lower().rstrip(" .") for part in name.split(os.sep)}
        assert ".git" not in components, f"a git directory was checked out: {name!r}"
        assert "git~1" not in components, f"a git directory alias was checked out: {name!r}"
    confined = ws.confined()
    for name in names:
        try:
            piece = confined.read_file(name)
        except ConfinementError:
            continue
        assert OUTSIDE_CANARY not in piece.text
    found = confined.search(OUTSIDE_CANARY)
    assert found.matches == ()
    assert os.listdir(repo.sentinel) == []


def _open(repo: NamesRepo, case: str) -> tuple[str, list[str]]:
    """Open the workspace for a case: ("refused", message) or ("checked out", names)."""
    request = FetchRequest(url=repo.origin.as_uri(), head_sha=repo.heads[case])
    try:
        with open_workspace(request, parent=repo.jobs, policy=FILE_OK) as ws:
            _assert_tree_is_safe(ws, repo)
            return "checked out", sorted(os.listdir(ws.tree))
    except WorkspaceError as exc:
        message = str(exc)
        assert "\n" not in message and "\x1b" not in message
        return "refused", [message]


@pytest.mark.parametrize("case", sorted(_cases(Path("/sentinel"))))
def test_hostile_entry_is_refused_or_stays_inside(names_repo: NamesRepo, case: str) -> None:
    listing = git(names_repo.origin, "ls-tree", "-r", "-z", "--name-only", names_repo.heads[case])
    assert len(listing.split("\0")) >= 2  # control: the hostile entry really is in the commit
    before = _snapshot(names_repo.root, names_repo.jobs)
    outcome, detail = _open(names_repo, case)
    assert outcome in ("refused", "checked out"), detail
    assert os.listdir(names_repo.sentinel) == []
    assert os.listdir(names_repo.jobs) == []  # the job directory is gone either way
    assert _snapshot(names_repo.root, names_repo.jobs) == before
    assert not list(names_repo.root.rglob("*.ran"))  # no crafted hook ran anywhere


# What git 2.39 does with each case, recorded so a change of behaviour is noticed: names git
# treats as escapes or git directories are refused outright (verify_path, with protectNTFS
# and protectHFS on), names that are merely odd on Linux are checked out as plain files.
REFUSED = [
    "dotdot-slash-file",
    "dotdot-slash-dir",
    "dotdot-entry-file",
    "dotdot-entry-dir",
    "dot-entry-dir",
    "escape-component",
    "escape-in-subtree",
    "deep-escape-dir",
    "dotgit-file",
    "dotgit-hooks",
    "dotgit-upper-hooks",
    "dotgit-mixed-case",
    "dotgit-nested",
    "dotgit-ntfs-shortname",
    "dotgit-trailing-space",
    "dotgit-trailing-dot",
    "symlink-gitmodules",
]


@pytest.mark.parametrize("case", REFUSED)
def test_escape_and_git_directory_names_are_refused(names_repo: NamesRepo, case: str) -> None:
    outcome, detail = _open(names_repo, case)
    assert outcome == "refused", detail
    assert "invalid path" in detail[0]
    assert os.listdir(names_repo.jobs) == []


def test_odd_but_harmless_names_are_plain_files_inside_the_tree(names_repo: NamesRepo) -> None:
    for case, expected in (
        ("backslash-dotdot", "..\\x"),
        ("control-char", "esc\x1b[31mred"),
        ("newline-name", "new\nline"),
    ):
        request = FetchRequest(
            url=names_repo.origin.as_uri(),
            head_sha=names_repo.heads[case],
            merge_base_sha=git(names_repo.origin, "rev-parse", "main"),
        )
        with open_workspace(request, parent=names_repo.jobs, policy=FILE_OK) as ws:
            assert sorted(os.listdir(ws.tree)) == sorted(["README", expected])
            assert (ws.tree / expected).read_bytes() == BLOB
            assert ws.confined().read_file(expected).text == "pwned"
            with ws.diff() as files:
                paths = sorted(f.path for f in files)
            assert paths == sorted(["README", expected])  # git's quoting undone exactly
    assert os.listdir(names_repo.jobs) == []


def test_symlink_and_directory_of_one_name_never_write_through_the_link(
    names_repo: NamesRepo,
) -> None:
    for case in ("symlink-then-dir-absolute", "symlink-then-dir-relative", "dir-then-symlink"):
        request = FetchRequest(url=names_repo.origin.as_uri(), head_sha=names_repo.heads[case])
        try:
            with open_workspace(request, parent=names_repo.jobs, policy=FILE_OK) as ws:
                a = ws.tree / "a"
                if a.is_symlink():
                    with pytest.raises(ConfinementError):
                        ws.confined().read_file("a/pwned")
                else:
                    assert (a / "pwned").read_bytes() == BLOB
        except WorkspaceError as exc:
            assert "\n" not in str(exc)
        assert os.listdir(names_repo.sentinel) == []
    assert os.listdir(names_repo.jobs) == []


def test_confined_tools_refuse_the_same_names_as_arguments(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "secret").write_text(OUTSIDE_CANARY)
    confined = ConfinedTree(tmp_path / "tree")
    for hostile in ("../secret", "..", "a/../../secret", "./../secret", "/etc/passwd"):
        with pytest.raises(ConfinementError):
            confined.read_file(hostile)
    with pytest.raises(ConfinementError):
        confined.search(OUTSIDE_CANARY, under="..")


@pytest.fixture(scope="module")
def served(names_repo: NamesRepo) -> Iterator[SmartHttpServer]:
    project = names_repo.root / "served"
    project.mkdir()
    bare = project / "names.git"
    git(project, "clone", "-q", "--bare", str(names_repo.origin), str(bare))
    for case, commit in names_repo.heads.items():
        git(bare, "update-ref", f"refs/heads/case-{case}", commit)
    certs = names_repo.root / "certs"
    certs.mkdir()
    cert, key = make_certificate(certs)
    server = SmartHttpServer(project, "bot", TOKEN, cert, key)
    yield server
    server.close()


def test_refusal_over_https_carries_no_token(
    names_repo: NamesRepo, served: SmartHttpServer
) -> None:
    credentials = GitCredentials(username="bot", token=TOKEN, host=served.host)
    policy = GitPolicy(ca_file=served.cert)
    for case in ("dotgit-hooks", "dotdot-slash-file"):
        request = FetchRequest(
            url=served.url("names.git"),
            head_sha=names_repo.heads[case],
            head_ref=f"refs/heads/case-{case}",
        )
        with (
            pytest.raises(WorkspaceError) as caught,
            open_workspace(request, parent=names_repo.jobs, policy=policy, credentials=credentials),
        ):
            pass
        assert "invalid path" in str(caught.value)
        rendered = "".join(traceback.format_exception(caught.value))
        for text in (str(caught.value), repr(caught.value), str(caught.value.__cause__), rendered):
            assert TOKEN not in text
        assert served.authorized_requests > 0  # the fetch really went through the server
    assert os.listdir(names_repo.jobs) == []
    assert os.listdir(names_repo.sentinel) == []
