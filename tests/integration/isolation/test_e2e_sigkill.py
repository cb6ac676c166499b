"""SIGKILL to the launcher: the inner gateway dies with it (parent-death signal), and the
next start removes what the dead launcher left (bundle, egress socket, runtime state)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

CASES = {
    "root-embedded": (False, None),
    "root-runc": (False, "runc"),
    "rootless-embedded": (True, None),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    support.require_root()
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


@pytest.mark.parametrize("name", list(CASES))
def test_inner_dies_with_a_killed_launcher_and_the_next_start_cleans_up(
    name: str, sandbox: support.UserSandbox, tmp_path: Path
) -> None:
    rootless, runtime = CASES[name]
    run_as = sandbox.run_as if rootless else support.root_run_as()
    workdir = (sandbox.base if rootless else tmp_path) / f"kill-{name}"
    llm = support.LoopbackHttp()
    settings = support.gateway_settings(llm.url, llm.url, workdir / "state", support.free_port())
    args = ["--oci-runtime", runtime] if runtime else []
    try:
        first = support.start_launcher(workdir, run_as, settings, *args)
        inner = support.inner_pid(first)
        family = support.descendants(first.pid)
        bundles = first.bundles()
        assert len(bundles) == 1
        container_id = json.loads((bundles[0] / "launcher.pid").read_text())["container_id"]
        egress_socket = run_as.launcher_runtime_dir / f"egress-127_0_0_1-{first.port}.sock"
        assert egress_socket.exists()

        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        assert support.wait_gone(inner, timeout=10), "the inner gateway outlived its launcher"
        assert all(support.wait_gone(pid, timeout=10) for pid in family)
        assert bundles[0].exists()  # nobody cleaned up: the launcher was killed

        # Another port: the dead launcher's socket has a name no new launcher reuses.
        settings["AR_GATEWAY_BIND"] = f"127.0.0.1:{support.free_port()}"
        second = support.start_launcher(workdir, run_as, settings, *args)
        try:
            assert not bundles[0].exists()
            assert not egress_socket.exists()
            leftovers = [
                path
                for path in run_as.launcher_runtime_dir.rglob("*")
                if path.is_dir() and path.name == container_id
            ]
            assert leftovers == []
            with second.client() as client:
                assert client.get("/info").json()["runtime_isolation"]["verified"] is True
        finally:
            assert second.stop() == 0
        assert second.bundles() == []
    finally:
        llm.close()
