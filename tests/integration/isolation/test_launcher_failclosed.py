"""Fail closed: every setup step that fails stops startup with a non-zero exit and one line
naming the step; nothing is left behind and no secret is printed. Never a fallback to bare.

Two kinds of tests: a failure injected at each step through the Python API
(``LaunchOptions.fail_at``), with real resources made before it (socket, proxy thread,
pipe, bundle); and real failures caused from outside, through the command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

from auto_review.config import Settings, load_settings
from auto_review.isolation.outer.launcher import LaunchError, LaunchOptions, LaunchStep, launch

EXIT_ISOLATION = 3


def canary_settings(tmp_path: Path, port: int) -> Settings:
    values = support.gateway_settings(
        "http://127.0.0.1:9", "http://127.0.0.1:9", tmp_path / "state", port
    )
    return load_settings(environ=values)


def port_is_free(port: int) -> bool:
    """No socket listens on ``port``. (Not a bind attempt: another process's outgoing
    connection may hold the same number as its source port, which says nothing about us.)"""
    listen_state = "0A"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == listen_state:
                    return False
    return True


@pytest.mark.parametrize("step", list(LaunchStep))
def test_injected_failure_at_each_step_undoes_everything(step: LaunchStep, tmp_path: Path):
    support.require_root()
    runtime_dir = tmp_path / "runtime"
    port = support.free_port()
    settings = canary_settings(tmp_path, port)
    with pytest.raises(LaunchError) as caught:
        launch(settings, LaunchOptions(runtime_dir=runtime_dir, fail_at=step))
    message = str(caught.value)
    assert message.startswith(f"isolation setup failed at step {step}:")
    assert "\n" not in message
    for canary in support.CANARIES:
        assert canary not in message
    leftovers = sorted(p.name for p in runtime_dir.glob("*")) if runtime_dir.exists() else []
    assert [name for name in leftovers if name.startswith(("bundle-", "egress-"))] == []
    assert port_is_free(port), "the listening socket was not closed"
    assert not [t for t in threading.enumerate() if t.name == "egress-proxy" and t.is_alive()]


def test_egress_proxy_failing_after_the_container_started_leaves_it_without_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The proxy's event loop starts once the container runs; when it fails, the inner
    process gets an empty settings pipe and exits without serving, and the launcher names
    step egress-proxy."""
    support.require_root()
    from auto_review.isolation.egress import proxy as egress_proxy

    def refuse(self: egress_proxy.EgressProxyThread, timeout: float = 10.0) -> None:
        raise egress_proxy.EgressProxyError("proxy refused by the test")

    monkeypatch.setattr(egress_proxy.EgressProxyThread, "start", refuse)
    runtime_dir = tmp_path / "runtime"
    port = support.free_port()
    settings = canary_settings(tmp_path, port)
    inner_err = tmp_path / "inner.err"
    with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stdout, \
            open(inner_err, "wb") as stderr:  # fmt: skip
        stdio = (stdin.fileno(), stdout.fileno(), stderr.fileno())
        with pytest.raises(LaunchError) as caught:
            launch(settings, LaunchOptions(runtime_dir=runtime_dir, stdio=stdio))
    message = str(caught.value)
    assert message == "isolation setup failed at step egress-proxy: proxy refused by the test"
    said = inner_err.read_text()
    assert "setup step settings-pipe failed" in said, said
    for canary in support.CANARIES:
        assert canary not in message + said
    assert [
        p.name for p in runtime_dir.glob("*") if p.name.startswith(("bundle-", "egress-"))
    ] == []
    assert port_is_free(port)
    assert not (settings.state_dir / "state.sqlite3").exists()  # nothing was served


def test_a_real_runtime_failure_is_a_step_error_and_removes_the_bundle(tmp_path: Path):
    """The embedded runtime refuses a container whose user namespace cannot be made."""
    support.require_root()
    runtime_dir = tmp_path / "runtime"
    settings = canary_settings(tmp_path, support.free_port())
    driver = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from auto_review.config import load_settings\n"
        "from auto_review.isolation.outer.launcher import LaunchError, LaunchOptions, launch\n"
        "settings = load_settings(environ=json.loads(sys.argv[2]))\n"
        "try:\n"
        "    launch(settings, LaunchOptions(runtime_dir=Path(sys.argv[1])))\n"
        "except LaunchError as exc:\n"
        "    print(exc)\n"
    )
    values = support.gateway_settings(
        "http://127.0.0.1:9", "http://127.0.0.1:9", settings.state_dir, support.free_port()
    )
    completed = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c",
         'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh",
         sys.executable, "-c", driver, str(runtime_dir), json.dumps(values)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.stdout.startswith("isolation setup failed at step runtime:"), (
        completed.stdout + completed.stderr
    )
    assert "step=unshare-user errno=ENOSPC" in completed.stdout
    assert list(runtime_dir.glob("bundle-*")) == []
    for canary in support.CANARIES:
        assert canary not in completed.stdout + completed.stderr


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def forge() -> Iterator[support.LoopbackHttp]:
    server = support.LoopbackHttp()
    yield server
    server.close()


def run_cli(
    workdir: Path, settings: dict[str, str], *args: str, run_as: support.RunAs | None = None,
    env: dict[str, str] | None = None, wrapper: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    run_as = run_as or support.root_run_as()
    workdir.mkdir(parents=True, exist_ok=True)
    env_file = workdir / "gateway.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    run_as.own(env_file)
    argv = [*(wrapper or []), run_as.python, "-m", "auto_review.cli.main", "gateway",
            "--env-file", str(env_file), *args]  # fmt: skip
    return subprocess.run(
        argv, env=env if env is not None else run_as.env(), capture_output=True, text=True,
        timeout=60, check=False, cwd="/", **run_as.popen_identity(),
    )  # fmt: skip


def assert_refused_at(completed: subprocess.CompletedProcess[str], step: str) -> None:
    assert completed.returncode == EXIT_ISOLATION, completed.stderr
    # Start-up warnings (a plain-http forge URL in these settings) are not errors.
    errors = [
        line
        for line in completed.stderr.splitlines()
        if line.startswith("auto-review") and not line.startswith("auto-review gateway: warning:")
    ]
    assert len(errors) == 1, completed.stderr
    assert errors[0].startswith(f"auto-review gateway: isolation setup failed at step {step}:")
    assert "refusing to start" in errors[0]
    output = completed.stdout + completed.stderr
    for canary in support.CANARIES:
        assert canary not in output
    assert "BARE" not in output  # never a fallback to bare


def test_state_dir_that_is_a_file(tmp_path: Path, forge: support.LoopbackHttp):
    support.require_root()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings = support.gateway_settings(forge.url, forge.url, blocker, support.free_port())
    assert_refused_at(run_cli(tmp_path, settings), "state-dir")


def test_port_in_use(tmp_path: Path, forge: support.LoopbackHttp):
    support.require_root()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = support.gateway_settings(forge.url, forge.url, tmp_path / "state", port)
        completed = run_cli(tmp_path, settings)
    assert_refused_at(completed, "bind")
    assert "Address already in use" in completed.stderr


def test_oci_runtime_that_does_not_exist(tmp_path: Path, forge: support.LoopbackHttp):
    support.require_root()
    settings = support.gateway_settings(forge.url, forge.url, tmp_path / "state", 0)
    completed = run_cli(tmp_path, settings, "--oci-runtime", "/nonexistent/runc")
    assert_refused_at(completed, "oci-runtime")


@pytest.mark.parametrize("problem", ["unreadable", "directory", "missing"])
def test_ca_file_the_container_could_not_read(
    tmp_path: Path, forge: support.LoopbackHttp, problem: str
):
    """AR_CA_FILE is bound into the container: a path that is not a regular file, or one
    only root's CAP_DAC_OVERRIDE could read, stops startup before anything is made."""
    support.require_root()
    ca = tmp_path / "ca.pem"
    if problem == "unreadable":
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        ca.chmod(0o000)
    elif problem == "directory":
        ca.mkdir()
    settings = support.gateway_settings(forge.url, forge.url, tmp_path / "state", 0)
    settings["AR_CA_FILE"] = str(ca)
    completed = run_cli(tmp_path, settings)
    assert_refused_at(completed, "ca-file")
    assert "AR_CA_FILE" in completed.stderr


def test_no_user_namespaces_left(tmp_path: Path, forge: support.LoopbackHttp):
    """A user namespace whose limit of nested user namespaces is 0: unshare fails."""
    support.require_root()
    settings = support.gateway_settings(forge.url, forge.url, tmp_path / "state", 0)
    wrapper = ["unshare", "--user", "--map-root-user", "sh", "-c",
               'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]  # fmt: skip
    completed = run_cli(tmp_path, settings, wrapper=wrapper)
    assert_refused_at(completed, "runtime")
    assert "step=unshare-user errno=ENOSPC" in completed.stderr


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    support.require_root()
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


def test_rootless_without_a_runtime_directory(
    sandbox: support.UserSandbox, forge: support.LoopbackHttp
):
    run_as = sandbox.run_as
    workdir = sandbox.base / "no-xdg"
    workdir.mkdir()
    run_as.own(workdir)
    settings = support.gateway_settings(forge.url, forge.url, workdir / "state", 0)
    env = {k: v for k, v in run_as.env().items() if k != "XDG_RUNTIME_DIR"}
    completed = run_cli(workdir, settings, run_as=run_as, env=env)
    assert_refused_at(completed, "runtime-dir")
    assert "XDG_RUNTIME_DIR" in completed.stderr


def test_rootless_state_dir_it_cannot_write(
    sandbox: support.UserSandbox, forge: support.LoopbackHttp
):
    run_as = sandbox.run_as
    workdir = sandbox.base / "foreign-state"
    workdir.mkdir()
    run_as.own(workdir)
    foreign = workdir / "state"
    foreign.mkdir(mode=0o755)  # root's, not the user's
    settings = support.gateway_settings(forge.url, forge.url, foreign, 0)
    completed = run_cli(workdir, settings, run_as=run_as)
    assert_refused_at(completed, "state-dir")
    bundles = list((run_as.runtime_dir / "auto-review").glob("bundle-*"))
    assert bundles == []


def test_rootless_ca_file_only_root_can_read(
    sandbox: support.UserSandbox, forge: support.LoopbackHttp
):
    run_as = sandbox.run_as
    workdir = sandbox.base / "root-ca"
    workdir.mkdir()
    run_as.own(workdir)
    ca = workdir / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0o600)  # root's
    settings = support.gateway_settings(forge.url, forge.url, workdir / "state", 0)
    settings["AR_CA_FILE"] = str(ca)
    completed = run_cli(workdir, settings, run_as=run_as)
    assert_refused_at(completed, "ca-file")
    assert list((run_as.runtime_dir / "auto-review").glob("bundle-*")) == []


def test_malformed_bare_value_is_an_error_not_false(tmp_path: Path, forge: support.LoopbackHttp):
    support.require_root()
    settings = support.gateway_settings(forge.url, forge.url, tmp_path / "state", 0)
    settings["AR_GATEWAY_BARE"] = "maybe"
    completed = run_cli(tmp_path, settings)
    assert completed.returncode == 2
    assert "AR_GATEWAY_BARE" in completed.stderr
    assert "isolation setup" not in completed.stderr  # nothing was started


def test_gateway_refuses_when_its_boundary_check_fails(tmp_path: Path, forge: support.LoopbackHttp):
    """The inner entry outside a container: the self-check fails and it does not serve."""
    support.require_root()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"version": 1, "settings": {"forgejo_url": "http://127.0.0.1:9",'
             b' "forgejo_token": "' + support.CANARY_TOKEN.encode() + b'", "webhook_secret": "'
             + support.CANARY_WEBHOOK.encode() + b'"}}')  # fmt: skip
    os.close(write_fd)
    listener = socket.create_server(("127.0.0.1", 0))
    script = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4)\n"
        "from auto_review.isolation.inner.entry import main\n"
        "sys.exit(main())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(listener.fileno()), str(read_fd)],
        pass_fds=(listener.fileno(), read_fd), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    listener.close()
    os.close(read_fd)
    assert completed.returncode == 4
    lines = [line for line in completed.stderr.splitlines() if line.startswith("auto-review")]
    assert lines == [lines[0]]
    assert "refusing to serve: boundary self-check failed: pid-1" in lines[0]
    for canary in support.CANARIES:
        assert canary not in completed.stderr


def test_rootless_with_cgroup_limits_made_mandatory_refuses_to_start(
    sandbox: support.UserSandbox, forge: support.LoopbackHttp
):
    """No cgroup is delegated to the user here: best effort would start on rlimits alone,
    AR_ISOLATION_REQUIRE=cgroup-limits must refuse instead and leave nothing behind."""
    run_as = sandbox.run_as
    workdir = sandbox.base / "cgroups-required"
    workdir.mkdir()
    run_as.own(workdir)
    settings = support.gateway_settings(forge.url, forge.url, workdir / "state", 0)
    settings["AR_ISOLATION_REQUIRE"] = "cgroup-limits"
    completed = run_cli(workdir, settings, run_as=run_as)
    assert_refused_at(completed, "runtime")
    assert "step=cgroup" in completed.stderr
    assert list((run_as.runtime_dir / "auto-review").glob("bundle-*")) == []
