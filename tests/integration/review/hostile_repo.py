"""A hostile repository on disk, and a hostile host git set-up, for workspace tests.

Everything here that *would* run writes a marker file named after the mechanism into
``markers``; tests assert that the directory stays empty after the workspace did its work,
and control tests assert that plain git with the same set-up does write markers, so the
hostile set-up is known to be armed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.git_env import isolated_git_env

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)


@dataclass(frozen=True)
class HostileRepo:
    origin: Path  # work repository serving as the remote
    submodule_origin: Path
    markers: Path
    evil_script: Path
    base_sha: str
    head_sha: str
    outside: Path  # a file next to the job directories that symlinks aim at

    @property
    def url(self) -> str:
        return self.origin.as_uri()

    def fired(self) -> list[str]:
        return sorted(os.listdir(self.markers))


def clean_env(home: Path) -> dict[str, str]:
    return {
        **isolated_git_env(home, path="/usr/local/bin:/usr/bin:/bin"),
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env or clean_env(cwd),
        check=True,
        capture_output=True,
    )
    return result.stdout.decode().strip()


def write_evil_script(path: Path, markers: Path) -> None:
    # Writes a marker named by its first argument; a filter must also pass stdin through.
    path.write_text(f"#!/bin/sh\ntouch '{markers}'/\"${{1:-unnamed}}\"\ncat\n")
    path.chmod(0o755)


def build_hostile_repo(tmp: Path) -> HostileRepo:
    markers = tmp / "markers"
    markers.mkdir()
    evil = tmp / "evil.sh"
    write_evil_script(evil, markers)
    outside = tmp / "outside"
    outside.write_text("outside secret\n")

    sub = tmp / "sub-origin"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "payload.txt").write_text("submodule content\n")
    git(sub, "add", ".")
    git(sub, "commit", "-qm", "sub")
    sub_sha = git(sub, "rev-parse", "HEAD")

    origin = tmp / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("base\n")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "base")
    base = git(origin, "rev-parse", "HEAD")

    git(origin, "checkout", "-qb", "feature")
    (origin / ".gitattributes").write_text(
        "*.txt filter=evil diff=evil\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
    )
    (origin / "a.txt").write_text("line one\nline two\n")
    (origin / "README.md").write_text("base\nchanged by the pull request\n")
    (origin / "big.bin").write_text(LFS_POINTER)
    (origin / "docs").mkdir()
    (origin / "docs" / "guide.md").write_text("guide\n")
    (origin / ".gitmodules").write_text(
        f'[submodule "sub"]\n\tpath = sub\n\turl = {sub.as_uri()}\n'
    )
    os.symlink("/etc/passwd", origin / "passwd")
    os.symlink("../../outside", origin / "escape")
    os.symlink("a.txt", origin / "inner")
    os.symlink("docs", origin / "docsdir")
    git(origin, "add", ".")
    git(origin, "update-index", "--add", "--cacheinfo", f"160000,{sub_sha},sub")
    git(origin, "commit", "-qm", "hostile head")
    head = git(origin, "rev-parse", "HEAD")
    git(origin, "update-ref", "refs/pull/7/head", head)
    git(origin, "checkout", "-q", "main")

    # Armed in the remote itself: none of this is transferable by a fetch.
    hook = origin / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\n'{evil}' remote-post-checkout </dev/null\n")
    hook.chmod(0o755)
    git(origin, "config", "filter.evil.smudge", f"'{evil}' remote-smudge")
    git(origin, "config", "core.fsmonitor", f"'{evil}' remote-fsmonitor")
    git(origin, "config", "core.sshCommand", f"'{evil}' remote-ssh")
    return HostileRepo(origin, sub, markers, evil, base, head, outside)


COMMITTED_CONFIG_REF = "refs/pull/8/head"
EMBEDDED_BARE_REPO = "vendor/evil.git"


def add_committed_config_commit(repo: HostileRepo) -> str:
    """A pull request that commits git configuration meant to run the evil script.

    ``.gitmodules`` asks for ``update = !command``; ``.gitconfig`` and ``config`` at the root
    set ``core.sshCommand``, ``core.fsmonitor`` and a committed hooks directory; and
    ``vendor/evil.git`` is a bare repository layout whose ``config`` (ssh remote, ssh command,
    fsmonitor) any git run inside that directory would load. Returns the head commit.
    """
    origin, evil = repo.origin, repo.evil_script
    # The origin's own hooks and fsmonitor are armed: keep them quiet while building.
    disarmed = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
    git(origin, *disarmed, "checkout", "-qb", "committed-config", repo.base_sha)
    hostile_core = (
        "[core]\n"
        f"\tsshCommand = '{evil}' committed-ssh </dev/null\n"
        f"\tfsmonitor = '{evil}' committed-fsmonitor </dev/null\n"
        "\thooksPath = hooks\n"
    )
    (origin / ".gitconfig").write_text(hostile_core)
    (origin / "config").write_text(hostile_core)
    (origin / "hooks").mkdir()
    hook = origin / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\n'{evil}' committed-post-checkout </dev/null\n")
    hook.chmod(0o755)
    sub_sha = git(repo.submodule_origin, "rev-parse", "HEAD")
    (origin / ".gitmodules").write_text(
        '[submodule "sub"]\n'
        "\tpath = sub\n"
        f"\turl = {repo.submodule_origin.as_uri()}\n"
        f"\tupdate = !'{evil}' gitmodules-update\n"
    )
    bare = origin / EMBEDDED_BARE_REPO
    for directory in ("objects", "refs"):
        (bare / directory).mkdir(parents=True)
        (bare / directory / ".keep").write_text("")
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    (bare / "config").write_text(
        hostile_core
        + "\tbare = true\n"
        + '[remote "origin"]\n\turl = ssh://example.invalid/evil.git\n'
    )
    git(origin, *disarmed, "add", ".")
    git(origin, *disarmed, "update-index", "--add", "--cacheinfo", f"160000,{sub_sha},sub")
    git(origin, *disarmed, "commit", "-qm", "committed git configuration")
    head = git(origin, "rev-parse", "HEAD")
    git(origin, "update-ref", COMMITTED_CONFIG_REF, head)
    git(origin, *disarmed, "checkout", "-q", "main")
    return head


def arm_host_config(tmp: Path, repo: HostileRepo) -> dict[str, str]:
    """Environment variables that would make any git on this host run the evil script."""
    home = tmp / "evil-home"
    hooks = home / "hooks"
    hooks.mkdir(parents=True)
    for hook_name in ("post-checkout", "reference-transaction", "pre-auto-gc"):
        hook = hooks / hook_name
        hook.write_text(f"#!/bin/sh\n'{repo.evil_script}' global-{hook_name} </dev/null\n")
        hook.chmod(0o755)
    evil = repo.evil_script
    config = (
        "[core]\n"
        f"\thooksPath = {hooks}\n"
        f"\tfsmonitor = '{evil}' global-fsmonitor\n"
        f"\tpager = '{evil}' global-pager\n"
        '[filter "evil"]\n'
        f"\tsmudge = '{evil}' global-smudge\n"
        f"\tclean = '{evil}' global-clean\n"
        '[filter "lfs"]\n'
        f"\tsmudge = '{evil}' global-lfs-smudge\n"
        f"\tprocess = '{evil}' global-lfs-process\n"
        "\trequired = true\n"
        '[diff "evil"]\n'
        f"\ttextconv = '{evil}' global-textconv\n"
        "[diff]\n"
        f"\texternal = '{evil}' global-external-diff\n"
        "[submodule]\n"
        "\trecurse = true\n"
        "[fetch]\n"
        "\trecurseSubmodules = true\n"
        "[protocol]\n"
        "\tallow = always\n"
    )
    (home / ".gitconfig").write_text(config)
    system = tmp / "evil-system-gitconfig"
    system.write_text(config)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_SYSTEM": str(system),
        "GIT_CONFIG_NOSYSTEM": "0",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.fsmonitor",
        "GIT_CONFIG_VALUE_0": f"'{evil}' env-fsmonitor",
        "GIT_CONFIG_PARAMETERS": f"'core.hookspath'='{hooks}'",
        "GIT_EXTERNAL_DIFF": f"{evil}",
        "GIT_SSH_COMMAND": f"'{evil}' env-ssh",
        "GIT_ASKPASS": f"{evil}",
        "SSH_ASKPASS": f"{evil}",
        "GIT_PAGER": f"'{evil}' env-pager",
        "GIT_ALLOW_PROTOCOL": "ext:file:https:ssh",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
