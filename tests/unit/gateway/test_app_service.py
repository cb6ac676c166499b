"""service.py wiring: posture defaults, bind errors, poll repositories, watermarks."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auto_review.config import load_settings
from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.app import public_settings
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.service import (
    FileWatermarkStore,
    GatewayStartupError,
    bind_listening_socket,
    chat_poller,
    default_posture,
    poll_repo_refs,
    serve,
)
from auto_review.wiring.clients import forge_hosts


def settings(tmp_path: Path, **env: str):
    return load_settings(environ={"AR_STATE_DIR": str(tmp_path), **env})


def test_posture_defaults_only_for_explicit_opt_outs(tmp_path: Path) -> None:
    assert default_posture(settings(tmp_path, AR_GATEWAY_BARE="true"))["mode"] == "bare"
    external = settings(tmp_path, AR_GATEWAY_EXTERNAL_ISOLATION="container")
    assert default_posture(external)["mode"] == "external"
    with pytest.raises(GatewayStartupError, match="AR_GATEWAY_BARE"):
        default_posture(settings(tmp_path))


def test_bind_failure_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GatewayStartupError, match=f"AR_GATEWAY_BIND 127.0.0.1:{port}"):
            bind_listening_socket(settings(tmp_path, AR_GATEWAY_BIND=f"127.0.0.1:{port}"))


def test_bind_on_a_free_port(tmp_path: Path) -> None:
    listener = bind_listening_socket(settings(tmp_path, AR_GATEWAY_BIND="127.0.0.1:0"))
    try:
        assert listener.getsockname()[1] > 0
    finally:
        listener.close()


def test_hosts_are_built_only_from_complete_settings(tmp_path: Path) -> None:
    assert forge_hosts(settings(tmp_path)) == {}
    only_url = settings(tmp_path, AR_FORGEJO_URL="http://127.0.0.1:9")
    assert forge_hosts(only_url) == {}
    complete = settings(
        tmp_path, AR_FORGEJO_URL="http://127.0.0.1:9", AR_FORGEJO_TOKEN="tok-" + "9f3a1c7e" * 5
    )
    hosts = forge_hosts(complete)
    assert set(hosts) == {HostKind.FORGEJO}
    asyncio.run(hosts[HostKind.FORGEJO].aclose())


def test_poll_repositories_default_to_forgejo(tmp_path: Path) -> None:
    refs = poll_repo_refs(settings(tmp_path, AR_POLL_REPOS="acme/app, github:octo/cat"))
    assert refs == [
        RepoRef(HostKind.FORGEJO, "acme", "app"),
        RepoRef(HostKind.GITHUB, "octo", "cat"),
    ]


def test_poller_needs_a_client_for_each_polled_forge(tmp_path: Path) -> None:
    configured = settings(tmp_path, AR_POLL_REPOS="github:octo/cat", AR_POLL_INTERVAL_SECONDS="5")
    with pytest.raises(GatewayStartupError, match="AR_POLL_REPOS"):
        chat_poller(configured, None, {}, GatewayMetrics())  # type: ignore[arg-type]
    off = settings(tmp_path, AR_POLL_REPOS="acme/app", AR_POLL_INTERVAL_SECONDS="0")
    assert chat_poller(off, None, {}, GatewayMetrics()) is None  # type: ignore[arg-type]


def test_watermarks_survive_a_new_store_object(tmp_path: Path) -> None:
    path = tmp_path / "marks.json"
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    async def write() -> None:
        marks = FileWatermarkStore(path)
        assert await marks.get("k") is None
        await marks.set("k", moment)

    async def read() -> datetime | None:
        return await FileWatermarkStore(path).get("k")

    asyncio.run(write())
    assert asyncio.run(read()) == moment
    path.write_text("{not json")
    assert asyncio.run(read()) is None  # unreadable file: start over, do not crash


def test_state_dir_errors_and_info_name_the_operators_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside the container the state directory is mounted at another path; what the
    operator reads (a start-up error, /info) names the directory they configured."""
    inner = tmp_path / "inner-state"
    inner.write_text("a file where the state directory should be\n")
    shown = Path("/srv/operators/auto-review-state")
    bare = settings(inner, AR_GATEWAY_BARE="true", AR_GATEWAY_BIND="127.0.0.1:0")
    assert serve(bare, None, state_dir_shown=shown) == 2
    err = capsys.readouterr().err
    assert str(shown) in err and str(inner) not in err

    view = public_settings(bare, shown)
    assert view["state_dir"] == str(shown)
    assert public_settings(bare, None)["state_dir"] == str(inner)
