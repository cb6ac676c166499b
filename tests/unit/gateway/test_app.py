"""build_app in process (httpx ASGI transport, real SQLite store): dispatch and counting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.gateway_process import forgejo_headers
from tests.support.prometheus_text import sample_value
from tests.support.reference import reference_path

from auto_review.config import load_settings
from auto_review.core.posture import bare_posture
from auto_review.gateway.app import GatewayApp, build_app
from auto_review.gateway.metrics import GatewayMetrics
from auto_review.gateway.routes_ci import CiRequestInvalid, bearer_matches, parse_ci_request
from auto_review.gateway.signatures import SignatureMissing
from auto_review.store.sqlite_intake import SqliteIntakeStore

SECRET = "unit-webhook-secret-0123456789abcdef0123"
CI_TOKEN = "unit-ci-token-0123456789abcdef0123456789"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIntakeStore]:
    opened = SqliteIntakeStore.open(tmp_path / "state")
    yield opened
    opened.close()


def settings_for(tmp_path: Path, **extra: str):
    environ = {
        "AR_STATE_DIR": str(tmp_path / "state"),
        "AR_WEBHOOK_SECRET": SECRET,
        "AR_GATEWAY_BARE": "true",
        **extra,
    }
    return load_settings(environ=environ)


async def call(app, method: str, path: str, **kw) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(method, path, **kw)


async def post_signed_pull_request(app) -> httpx.Response:
    """A real Gitea "pull request opened" delivery, signed with SECRET, to /webhooks/forgejo."""
    body = reference_path("forge", "payloads", "gitea_pull_request_opened.json").read_bytes()
    headers = forgejo_headers(SECRET, body, "pull_request")
    return await call(app, "POST", "/webhooks/forgejo", content=body, headers=headers)


def test_routes_exist_only_for_configured_sources(tmp_path: Path, store) -> None:
    app = build_app(settings_for(tmp_path), store, None, {}, bare_posture())
    assert isinstance(app, GatewayApp)
    assert set(app.intake_routes) == {"/webhooks/forgejo"}  # no GitHub secret, no CI token
    assert asyncio.run(call(app, "POST", "/webhooks/github", content=b"{}")).status_code == 404
    assert asyncio.run(call(app, "POST", "/reviews/ci", content=b"{}")).status_code == 404
    with_all = build_app(
        settings_for(
            tmp_path,
            AR_GITHUB_WEBHOOK_SECRET="unit-github-secret-0123456789abcdef0123",
            AR_CI_REVIEW_TOKEN=CI_TOKEN,
        ),
        store,
        None,
        {},
        bare_posture(),
    )
    assert set(with_all.intake_routes) == {"/webhooks/forgejo", "/webhooks/github", "/reviews/ci"}


def test_signed_delivery_is_committed_before_the_answer(tmp_path: Path, store) -> None:
    app = build_app(settings_for(tmp_path), store, None, {}, bare_posture())
    response = asyncio.run(post_signed_pull_request(app))
    assert response.status_code == 202
    assert store.queue_depth() == 1  # durable by the time the 202 was produced


def test_intake_routes_answer_405_themselves_and_are_counted(tmp_path: Path, store) -> None:
    metrics = GatewayMetrics()
    app = build_app(settings_for(tmp_path), store, None, {}, bare_posture(), metrics=metrics)
    response = asyncio.run(call(app, "GET", "/webhooks/forgejo"))
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    asyncio.run(call(app, "POST", "/webhooks/forgejo", content=b"{}"))
    asyncio.run(call(app, "GET", "/wp-login.php"))
    text = metrics.render().decode()
    total = "auto_review_http_requests_total"
    assert sample_value(text, total, route="/webhooks/forgejo", status="405") == 1
    assert sample_value(text, total, route="/webhooks/forgejo", status="415") == 1
    assert sample_value(text, total, route="unmatched", status="404") == 1
    assert "wp-login" not in text


def test_a_handler_bug_answers_500_without_request_data(tmp_path: Path, store) -> None:
    class BrokenStore:
        def queue_depth(self) -> int:
            return 0

        async def accept(self, delivery, jobs):
            raise RuntimeError("boom with " + SECRET)

    app = build_app(settings_for(tmp_path), BrokenStore(), None, {}, bare_posture())
    response = asyncio.run(post_signed_pull_request(app))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}


def test_metrics_reports_queue_depth_from_the_store(tmp_path: Path, store) -> None:
    app = build_app(settings_for(tmp_path), store, None, {}, bare_posture())
    asyncio.run(post_signed_pull_request(app))
    text = asyncio.run(call(app, "GET", "/metrics")).text
    assert sample_value(text, "auto_review_queue_depth") == 1


def test_info_merges_version_posture_and_public_settings(tmp_path: Path, store) -> None:
    posture = {"mode": "oci", "verified": True, "checks": {"seccomp": 2}}
    app = build_app(settings_for(tmp_path), store, None, {}, posture)
    info = asyncio.run(call(app, "GET", "/info")).json()
    assert info["isolation"] == posture
    assert info["settings"]["webhook_secret"] == "set"
    assert SECRET not in json.dumps(info)


def test_parse_ci_request_accepts_the_documented_shape() -> None:
    parsed = parse_ci_request(
        {"host": "github", "owner": "o", "repo": "r.js", "pr": 9, "head_sha": "A" * 40}
    )
    assert (parsed.host.value, parsed.owner, parsed.repo, parsed.pr) == ("github", "o", "r.js", 9)
    assert parsed.head_sha == "a" * 40  # normalised to lower case
    with pytest.raises(CiRequestInvalid, match="head_sha"):
        parse_ci_request({"host": "github", "owner": "o", "repo": "r", "pr": 9, "head_sha": "a"})
    with pytest.raises(CiRequestInvalid, match="pr"):
        parse_ci_request({"host": "github", "owner": "o", "repo": "r", "pr": -1, "head_sha": "a"})


def test_bearer_check() -> None:
    token = CI_TOKEN.encode()
    assert bearer_matches(f"Bearer {CI_TOKEN}", token)
    assert bearer_matches(f"bearer {CI_TOKEN}", token)
    assert not bearer_matches(None, token)
    assert not bearer_matches(f"Token {CI_TOKEN}", token)
    assert not bearer_matches(f"Bearer {CI_TOKEN[:-1]}", token)
    assert not bearer_matches("Bearer \udcff", token)


def test_signature_errors_are_the_ones_the_routes_catch() -> None:
    # The routes rely on the signature module raising these exact types.
    from auto_review.gateway.signatures import verify_forgejo_request

    with pytest.raises(SignatureMissing):
        verify_forgejo_request(SECRET.encode(), b"{}", {})
