"""`auto-review webhook list --github` against the loopback GitHub fake.

A GitHub App has one webhook, set in its settings: the command shows the App and its
subscribed events (`GET /app`, the one call it makes, checked against GitHub's OpenAPI
subset) and says where its deliveries are, since `GET /app/hook/deliveries` is not in
that subset. The App's private key never reaches stdout or stderr.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.openapi_check import ApiSpec

from auto_review.cli.main import main

APP_ID = 4242
PRIVATE, PUBLIC = generate_app_key()
KEY_BODY = PRIVATE.splitlines()[5]  # any line of the PEM body is as secret as the key


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    with FakeGitHub(APP_ID, PUBLIC) as fake:
        monkeypatch.setenv("AR_GITHUB_APP_ID", str(APP_ID))
        monkeypatch.setenv("AR_GITHUB_APP_PRIVATE_KEY", PRIVATE)
        monkeypatch.setenv("AR_GITHUB_API_URL", fake.url)
        yield fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["webhook", "list", *argv])
    out = capsys.readouterr()
    assert KEY_BODY not in out.out + out.err
    return code, out.out, out.err


def test_the_app_and_its_events_and_where_the_deliveries_are(
    hub: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--github")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        f"GitHub App auto-review (id {APP_ID}, slug auto-review): "
        "https://github.com/apps/auto-review"
    )
    assert lines[1] == (
        "  events: pull_request, issue_comment "
        "(the gateway needs pull_request, issue_comment: ok)"
    )
    assert "GATEWAY/webhooks/github" in lines[2]
    assert lines[3].startswith("  deliveries: not fetched: GET /app/hook/deliveries is not")
    assert "Recent Deliveries" in lines[3]
    assert [(e.method, e.path) for e in hub.exchanges] == [("GET", "/app")]
    ApiSpec.github().assert_conforms(hub.exchanges)


def test_the_subset_really_lacks_the_deliveries_call() -> None:
    """The command's claim, checked: if the subset gains the call, use it."""
    spec = ApiSpec.github()
    paths: dict[str, Any] = spec.document["paths"]
    assert "/app" in paths and "/app/hook/deliveries" not in paths


def test_a_missing_event_is_reported_exit_1(
    hub: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = {**hub.app_object(), "events": ["pull_request"]}
    monkeypatch.setattr(hub, "app_object", lambda: app)
    code, out, err = run(capsys, "--github")
    assert code == 1
    assert "(the gateway needs pull_request, issue_comment: missing issue_comment)" in out
    assert "does not subscribe to issue_comment" in err


def test_a_refused_key_and_usage_errors_show_no_secret(
    hub: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other_private, _ = generate_app_key()
    monkeypatch.setenv("AR_GITHUB_APP_PRIVATE_KEY", other_private)
    code, out, err = run(capsys, "--github")
    assert code == 3 and out == "" and "the forge refused or failed" in err
    assert other_private.splitlines()[5] not in err
    monkeypatch.setenv("AR_GITHUB_APP_PRIVATE_KEY", PRIVATE)
    code, _, err = run(capsys, "--github", "--repo", "acme/widgets")
    assert code == 2 and "leave out --repo" in err
    code, _, err = run(capsys)
    assert code == 2 and "--repo OWNER/NAME or --org ORG is required" in err
    monkeypatch.delenv("AR_GITHUB_APP_ID")
    code, _, err = run(capsys, "--github")
    assert code == 2 and "AR_GITHUB_APP_ID" in err
