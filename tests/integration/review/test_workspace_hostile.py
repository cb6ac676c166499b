"""Real git against a hostile repository and a hostile host git set-up."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from tests.integration.review.hostile_repo import (
    COMMITTED_CONFIG_REF,
    EMBEDDED_BARE_REPO,
    LFS_POINTER,
    HostileRepo,
    add_committed_config_commit,
    arm_host_config,
    build_hostile_repo,
    clean_env,
    git,
)

from auto_review.review.diff.model import FileStatus
from auto_review.review.workspace.checkout import (
    FetchRequest,
    HeadMismatch,
    WorkspaceError,
    open_workspace,
)
from auto_review.review.workspace.confined import ConfinementError
from auto_review.review.workspace.gitenv import GitError, GitPolicy, GitRunner

FILE_OK = GitPolicy(allow_file_protocol=True)


@pytest.fixture
def hostile(tmp_path: Path) -> HostileRepo:
    return build_hostile_repo(tmp_path)


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    directory = tmp_path / "jobs" / "inner"
    directory.mkdir(parents=True)
    return directory


def test_control_the_hostile_setup_is_armed(tmp_path: Path, hostile: HostileRepo) -> None:
    # Plain git with the armed host config runs hooks and filters: the markers the other
    # tests look for can really appear.
    env = {"PATH": "/usr/bin:/bin", **arm_host_config(tmp_path, hostile)}
    clone = tmp_path / "plain-clone"
    subprocess.run(
        ["git", "clone", "-q", "-b", "feature", hostile.url, str(clone)],
        env=env,
        check=False,
        capture_output=True,  # the fake LFS process filter fails
    )
    fired = hostile.fired()
    assert "global-reference-transaction" in fired
    assert "global-smudge" in fired
    assert "global-lfs-process" in fired


def test_pull_ref_fetch_executes_nothing(
    tmp_path: Path, hostile: HostileRepo, jobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in arm_host_config(tmp_path, hostile).items():
        monkeypatch.setenv(key, value)
    request = FetchRequest(
        url=hostile.url,
        head_sha=hostile.head_sha,
        head_ref="refs/pull/7/head",
        merge_base_sha=hostile.base_sha,
    )
    with open_workspace(request, parent=jobs, policy=FILE_OK) as ws:
        tree = ws.tree
        assert (tree / "a.txt").read_text() == "line one\nline two\n"  # no smudge filter ran
        assert (tree / "big.bin").read_text() == LFS_POINTER  # LFS pointer left as is
        assert (tree / "sub").is_dir() and os.listdir(tree / "sub") == []  # no submodule
        assert not (ws.git_dir / "modules").exists()
        assert os.readlink(tree / "passwd") == "/etc/passwd"  # links stored as links
        assert os.readlink(tree / "escape") == "../../outside"
        assert not (tree / ".git").exists()  # git dir lives outside the tree
        assert "url" not in (ws.git_dir / "config").read_text()  # no remote URL stored

        with ws.diff() as files:
            by_path = {f.path: f for f in files}
        assert by_path["README.md"].changed_lines() == {2}
        assert by_path["a.txt"].status is FileStatus.ADDED
        assert by_path["passwd"].new_mode == "120000"

        confined = ws.confined()
        with pytest.raises(ConfinementError):
            confined.read_file("passwd")
        with pytest.raises(ConfinementError):
            confined.read_file("escape")
        assert confined.read_file("inner").text == "line one\nline two"
        assert confined.read_file("docsdir/guide.md").text == "guide"
        found = confined.search("outside secret")
        assert found.matches == ()
        job_dir = ws.job_dir
    assert hostile.fired() == []
    assert not job_dir.exists()
    assert os.listdir(jobs) == []


def test_repo_local_config_cannot_make_git_execute(hostile: HostileRepo, jobs: Path) -> None:
    request = FetchRequest(url=hostile.url, head_sha=hostile.head_sha, head_ref="refs/pull/7/head")
    with open_workspace(request, parent=jobs, policy=FILE_OK) as ws:
        evil = hostile.evil_script
        with (ws.git_dir / "config").open("a") as config:
            config.write(
                f"[core]\n\tfsmonitor = '{evil}' local-fsmonitor\n"
                f"\thooksPath = {hostile.origin / '.git' / 'hooks'}\n"
                f"[filter \"evil\"]\n\tsmudge = '{evil}' local-smudge\n"
                f"[diff \"evil\"]\n\ttextconv = '{evil}' local-textconv\n"
            )
        (ws.tree / "a.txt").unlink()
        ws.runner.run(["status", "--porcelain"], timeout=30)
        ws.runner.run(["checkout", "--force", ws.head_sha, "--", "a.txt"], timeout=30)
        ws.runner.run(["diff", "--no-ext-diff", "HEAD~0", "--", "a.txt"], timeout=30)
        assert (ws.tree / "a.txt").read_text() == "line one\nline two\n"
        assert hostile.fired() == []

        # Control: the same git directory used without the `-c` overrides runs the local
        # fsmonitor and hooks (filters stay neutral there too: info/attributes unsets them).
        subprocess.run(
            [
                "git",
                "--git-dir",
                str(ws.git_dir),
                "--work-tree",
                str(ws.tree),
                "checkout",
                "--force",
                ws.head_sha,
                "--",
                "a.txt",
            ],
            env={"PATH": "/usr/bin:/bin", "HOME": str(jobs), "GIT_CONFIG_NOSYSTEM": "1"},
            check=True,
            capture_output=True,
        )
        assert {"local-fsmonitor", "remote-post-checkout"} <= set(hostile.fired())
        assert "local-smudge" not in hostile.fired()


def test_fetch_by_sha_alone(hostile: HostileRepo, jobs: Path) -> None:
    request = FetchRequest(url=hostile.url, head_sha=hostile.head_sha)
    with open_workspace(request, parent=jobs, policy=FILE_OK) as ws:
        assert (ws.tree / "README.md").read_text().endswith("changed by the pull request\n")
        shallow = (ws.git_dir / "shallow").read_text().split()
        assert shallow == [hostile.head_sha]  # depth 1: no history beyond the head
        assert stat.S_IMODE(ws.job_dir.stat().st_mode) == 0o700
        assert os.listdir(ws.job_dir / "home") == []
        with pytest.raises(WorkspaceError, match="merge base"), ws.diff():
            pass


def test_moved_head_is_refused_and_cleaned_up(hostile: HostileRepo, jobs: Path) -> None:
    request = FetchRequest(url=hostile.url, head_sha=hostile.base_sha, head_ref="refs/pull/7/head")
    with (
        pytest.raises(HeadMismatch, match="moved"),
        open_workspace(request, parent=jobs, policy=FILE_OK),
    ):
        pass
    assert os.listdir(jobs) == []


def test_directory_removed_when_the_job_fails(hostile: HostileRepo, jobs: Path) -> None:
    request = FetchRequest(url=hostile.url, head_sha=hostile.head_sha)
    with (
        pytest.raises(RuntimeError, match="job failed"),
        open_workspace(request, parent=jobs, policy=FILE_OK) as ws,
    ):
        (ws.tree / "docs").chmod(0o500)  # even a read-only directory is removed
        raise RuntimeError("job failed")
    assert os.listdir(jobs) == []


def test_file_remote_refused_unless_allowed(hostile: HostileRepo, jobs: Path) -> None:
    request = FetchRequest(url=hostile.url, head_sha=hostile.head_sha)
    with pytest.raises(WorkspaceError, match="scheme"), open_workspace(request, parent=jobs):
        pass
    for url in (
        "ssh://git@example.invalid/x.git",
        "ext::sh -c touch% /tmp/x",
        "https://user:tok@example.invalid/x.git",
        "https://exa mple.invalid/x",
    ):
        with (
            pytest.raises(WorkspaceError),
            open_workspace(FetchRequest(url=url, head_sha=hostile.head_sha), parent=jobs),
        ):
            pass
    assert os.listdir(jobs) == []


def test_git_itself_refuses_file_transport_without_the_switch(
    hostile: HostileRepo, jobs: Path
) -> None:
    # Defence in depth: even if URL validation were bypassed, git's protocol policy holds.
    home = jobs / "home"
    home.mkdir()
    runner = GitRunner(home=home, git_dir=jobs / "g")
    runner.run(["init", "--quiet", "--bare"], timeout=30)
    with pytest.raises(GitError, match="transport 'file' not allowed"):
        runner.run(["fetch", "--depth=1", hostile.url, hostile.head_sha], timeout=30)


def test_invalid_request_fields_are_refused() -> None:
    with pytest.raises(WorkspaceError):
        FetchRequest(url="https://x.invalid/r", head_sha="HEAD")
    with pytest.raises(WorkspaceError):
        FetchRequest(url="https://x.invalid/r", head_sha="a" * 40, head_ref="--upload-pack=x")
    with pytest.raises(WorkspaceError):
        FetchRequest(url="https://x.invalid/r", head_sha="a" * 40, head_ref="refs/../x")


def test_permission_repair_before_removal(tmp_path: Path) -> None:
    from auto_review.review.workspace.checkout import make_directories_writable, remove_tree

    root = tmp_path / "job"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    os.symlink("/etc", root / "a" / "etc-link")
    (root / "a" / "b").chmod(0o000)
    (root / "a").chmod(0o000)
    etc_mode = os.stat("/etc").st_mode
    make_directories_writable(root)
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a" / "b").stat().st_mode) == 0o700
    assert os.stat("/etc").st_mode == etc_mode  # links are not followed
    remove_tree(root)
    assert not root.exists()


def test_committed_git_config_and_submodule_update_command_stay_inert(
    tmp_path: Path, hostile: HostileRepo, jobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = add_committed_config_commit(hostile)
    assert hostile.fired() == []
    armed = arm_host_config(tmp_path, hostile)
    for key, value in armed.items():
        monkeypatch.setenv(key, value)
    request = FetchRequest(
        url=hostile.url,
        head_sha=head,
        head_ref=COMMITTED_CONFIG_REF,
        merge_base_sha=hostile.base_sha,
    )
    with open_workspace(request, parent=jobs, policy=FILE_OK) as ws:
        tree = ws.tree
        assert "update = !" in (tree / ".gitmodules").read_text()
        assert "sshCommand" in (tree / EMBEDDED_BARE_REPO / "config").read_text()
        assert os.listdir(tree / "sub") == []  # no submodule was fetched or updated
        with ws.diff() as files:
            assert ".gitmodules" in {f.path for f in files}
        ws.runner.run(["status", "--porcelain", "--ignore-submodules=none"], timeout=30)
        assert ws.confined().read_file(".gitconfig").text.startswith("[core]")
        assert hostile.fired() == []

        # Even a git command aimed at the committed bare repository itself (the workspace
        # never does this) keeps its ssh command, fsmonitor and hooks inert: the `-c`
        # overrides win over its config, and the ssh transport is not allowed at all.
        embedded = GitRunner(home=ws.job_dir / "home", git_dir=tree / EMBEDDED_BARE_REPO)
        with pytest.raises(GitError, match="transport 'ssh' not allowed"):
            embedded.run(["ls-remote", "origin"], timeout=30)
        with pytest.raises(GitError, match="transport 'ssh' not allowed"):
            embedded.run(["ls-remote", "ssh://example.invalid/x.git"], timeout=30)
        assert hostile.fired() == []

        # Control: plain git run inside that directory loads the committed config and runs
        # its ssh command, so the payload is armed.
        for key in armed:
            monkeypatch.delenv(key)
        subprocess.run(
            ["git", "ls-remote", "origin"],
            cwd=tree / EMBEDDED_BARE_REPO,
            env=clean_env(tmp_path),
            check=False,
            capture_output=True,
            timeout=60,
        )
        assert "committed-ssh" in hostile.fired()
    assert os.listdir(jobs) == []


def test_control_submodule_update_command_is_armed_but_refused_by_git_from_gitmodules(
    tmp_path: Path, hostile: HostileRepo
) -> None:
    add_committed_config_commit(hostile)
    clone = tmp_path / "plain-clone"
    env = clean_env(tmp_path)
    disarmed = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
    git(tmp_path, *disarmed, "clone", "-q", "-b", "committed-config", hostile.url, str(clone))
    allow_file = ["git", "-c", "protocol.file.allow=always", *disarmed]
    # Git itself refuses `update = !command` read from .gitmodules.
    refused = subprocess.run(
        [*allow_file, "submodule", "update", "--init"],
        cwd=clone,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert b"invalid value for 'submodule.sub.update'" in refused.stderr
    assert hostile.fired() == []
    # The same command in a fresh clone's own config is run by `git submodule update`: the
    # payload works, so its absence from the markers elsewhere means it was not run.
    fresh = tmp_path / "fresh-clone"
    git(tmp_path, *disarmed, "clone", "-q", "-b", "committed-config", hostile.url, str(fresh))
    lines = (fresh / ".gitmodules").read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip().startswith("update")]
    (fresh / ".gitmodules").write_text("".join(kept))
    git(fresh, "config", "submodule.sub.update", f"!'{hostile.evil_script}' config-update")
    result = subprocess.run(
        [*allow_file, "submodule", "update", "--init"],
        cwd=fresh,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert "config-update" in hostile.fired(), result
