"""The token reaches git only through the credential helper's environment, over real HTTPS."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.review.hostile_repo import HostileRepo, build_hostile_repo, git
from tests.integration.review.smart_http import (
    SmartHttpServer,
    make_certificate,
    write_argv_logger,
)

from auto_review.review.workspace.checkout import FetchRequest, WorkspaceError, open_workspace
from auto_review.review.workspace.gitenv import GitCredentials, GitError, GitPolicy, GitRunner

TOKEN = "tok-7f3a9c2e-SECRET-do-not-leak"


class _CmdlineWatcher:
    """Samples /proc/*/cmdline of every process in a tight loop while active."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        self.seen.add(Path(f"/proc/{pid}/cmdline").read_bytes())
                    except OSError:
                        continue

    def __enter__(self) -> _CmdlineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def hostile(tmp_path: Path) -> HostileRepo:
    return build_hostile_repo(tmp_path)


@pytest.fixture
def server(tmp_path: Path, hostile: HostileRepo) -> Iterator[SmartHttpServer]:
    root = tmp_path / "served"
    root.mkdir()
    git(root, "clone", "-q", "--bare", str(hostile.origin), str(root / "origin.git"))
    git(root / "origin.git", "update-ref", "refs/pull/7/head", hostile.head_sha)
    cert, key = make_certificate(tmp_path)
    srv = SmartHttpServer(root, "bot", TOKEN, cert, key)
    yield srv
    srv.close()


def test_https_fetch_with_token_keeps_it_off_argv_trace_and_disk(
    tmp_path: Path, hostile: HostileRepo, server: SmartHttpServer
) -> None:
    wrapper, argv_log, trace = tmp_path / "git-wrapper", tmp_path / "argv.log", tmp_path / "trace"
    write_argv_logger(wrapper, argv_log)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    credentials = GitCredentials(username="bot", token=TOKEN, host=server.host)
    policy = GitPolicy(ca_file=server.cert, trace_file=trace)
    request = FetchRequest(
        url=server.url("origin.git"),
        head_sha=hostile.head_sha,
        head_ref="refs/pull/7/head",
        merge_base_sha=hostile.base_sha,
    )
    watcher = _CmdlineWatcher()
    with (
        watcher,
        open_workspace(
            request, parent=jobs, policy=policy, credentials=credentials, git=str(wrapper)
        ) as ws,
    ):
        assert (ws.tree / "a.txt").read_text() == "line one\nline two\n"
        on_disk = b"".join(
            p.read_bytes() for p in ws.job_dir.rglob("*") if p.is_file() and not p.is_symlink()
        )
        assert TOKEN.encode() not in on_disk
        assert str(repr(credentials)).find(TOKEN) == -1

    # Every process alive during the fetch, git's own children included (remote-https, the
    # credential helper's shell), was sampled from /proc: none had the token in its argv.
    assert any(b"remote-https" in c for c in watcher.seen)
    assert not any(TOKEN.encode() in c for c in watcher.seen)
    assert server.authorized_requests >= 2  # the token really was used, via Basic auth
    assert all(TOKEN not in line for line in server.seen if not line.startswith("Authorization"))
    logged = argv_log.read_text()
    assert "[token-in-env]" in logged and "fetch" in logged
    assert TOKEN not in logged
    traced = trace.read_text(errors="replace")
    assert "run_command: 'f() {" in traced  # the helper ran and was traced...
    assert TOKEN not in traced  # ...without the token
    assert hostile.fired() == []


def test_helper_withholds_the_token_from_other_hosts(
    tmp_path: Path, hostile: HostileRepo, server: SmartHttpServer
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    credentials = GitCredentials(username="bot", token=TOKEN, host="forge.example.invalid")
    request = FetchRequest(url=server.url("origin.git"), head_sha=hostile.head_sha)
    with (
        pytest.raises(WorkspaceError) as failure,
        open_workspace(
            request, parent=jobs, policy=GitPolicy(ca_file=server.cert), credentials=credentials
        ),
    ):
        pass
    assert "terminal prompts disabled" in str(failure.value)
    assert TOKEN not in str(failure.value)
    assert server.authorized_requests == 0
    assert os.listdir(jobs) == []


def test_credential_fill_answers_only_https_for_the_configured_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    runner = GitRunner(
        home=home,
        git_dir=tmp_path / "g",
        credentials=GitCredentials(username="bot", token=TOKEN, host="forge.example:8443"),
    )
    runner.run(["init", "--quiet", "--bare"], timeout=30)
    answer = runner.run(
        ["credential", "fill"],
        timeout=30,
        stdin=b"protocol=https\nhost=forge.example:8443\npath=o/r.git\n\n",
    ).stdout.decode()
    assert f"password={TOKEN}" in answer and "username=bot" in answer
    for other in (
        b"protocol=https\nhost=evil.example\n\n",
        b"protocol=http\nhost=forge.example:8443\n\n",
    ):
        with pytest.raises(GitError) as failure:
            runner.run(["credential", "fill"], timeout=30, stdin=other)
        assert TOKEN not in str(failure.value)
    assert all(TOKEN not in part for part in runner.argv(["fetch"]))


def test_explicit_proxy_is_used_for_https(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def accept_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            received.append(conn.recv(4096))
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    policy = GitPolicy(https_proxy=f"http://127.0.0.1:{port}")
    request = FetchRequest(url="https://forge.example.invalid/o/r.git", head_sha="a" * 40)
    with (
        pytest.raises(WorkspaceError),
        open_workspace(
            request,
            parent=jobs,
            policy=policy,
            credentials=GitCredentials("bot", TOKEN, "forge.example.invalid"),
        ),
    ):
        pass
    thread.join(10)
    listener.close()
    assert received and received[0].startswith(b"CONNECT forge.example.invalid:443 ")
    assert TOKEN.encode() not in received[0]
