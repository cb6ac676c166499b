"""POST /reviews/ci against a real gateway and a loopback Forgejo."""

from __future__ import annotations

import time

import httpx
import pytest
from tests.integration.gateway.conftest import (
    CI_TOKEN,
    FORGEJO_TOKEN,
    assert_no_canary,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import closed_port

HEAD = "1" * 40
BASE = "2" * 40
AUTH = {"Authorization": f"Bearer {CI_TOKEN}"}


def ci_body(pr: int = 3, head: str = HEAD, **overrides: object) -> dict[str, object]:
    return {
        "host": "forgejo",
        "owner": "acme",
        "repo": "widgets",
        "pr": pr,
        "head_sha": head,
        **overrides,
    }


@pytest.fixture(scope="module", autouse=True)
def pull_requests(forge: FakeForgejo) -> None:
    forge.add_pull_request("acme", "widgets", 3, head_sha=HEAD, base_sha=BASE)
    forge.add_pull_request("acme", "widgets", 4, head_sha="4" * 40, base_sha=BASE, state="closed")


def test_matching_head_is_queued_once(gateway: GatewayProcess, client: httpx.Client) -> None:
    response = client.post("/reviews/ci", json=ci_body(), headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "jobs": 1}
    deadline = time.monotonic() + 10
    ci_jobs: list[dict] = []
    while not ci_jobs and time.monotonic() < deadline:
        ci_jobs = [j for j in gateway.recorded_jobs() if j["source"] == "ci"]
        time.sleep(0.05)
    [job] = ci_jobs
    assert (job["kind"], job["repo"], job["pr"], job["head_sha"]) == (
        "review",
        "acme/widgets",
        3,
        HEAD,
    )
    again = client.post("/reviews/ci", json=ci_body(), headers=AUTH)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"


def test_moved_head_is_a_conflict_naming_the_current_head(client: httpx.Client) -> None:
    response = client.post("/reviews/ci", json=ci_body(head="9" * 40), headers=AUTH)
    assert response.status_code == 409
    assert response.json()["current_head_sha"] == HEAD


def test_closed_pull_request_is_a_conflict(client: httpx.Client) -> None:
    response = client.post("/reviews/ci", json=ci_body(pr=4, head="4" * 40), headers=AUTH)
    assert response.status_code == 409
    assert "not open" in response.json()["error"]


def test_unknown_pull_request_is_404(client: httpx.Client) -> None:
    assert client.post("/reviews/ci", json=ci_body(pr=999), headers=AUTH).status_code == 404


def test_unconfigured_host_is_422(client: httpx.Client) -> None:
    response = client.post("/reviews/ci", json=ci_body(host="github"), headers=AUTH)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + CI_TOKEN[:-1]},
        {"Authorization": "Bearer " + CI_TOKEN + "x"},
        {"Authorization": "Basic " + CI_TOKEN},
        {"Authorization": CI_TOKEN},
    ],
)
def test_missing_or_wrong_token_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post("/reviews/ci", json=ci_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_canary(response.text, "a 401 body")


@pytest.mark.parametrize(
    "body",
    [
        {"host": "forgejo"},
        ci_body(pr=0),
        ci_body(pr=True),
        ci_body(pr="3"),
        ci_body(head="xyz"),
        ci_body(owner="../etc"),
        ci_body(host="gitlab"),
        ci_body(host=[]),  # unhashable where a name belongs
        ci_body(owner={"a": 1}),
        [1, 2],
    ],
)
def test_invalid_bodies_are_400(client: httpx.Client, body: object) -> None:
    response = client.post("/reviews/ci", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]


def test_not_json_is_400_and_other_content_types_415(client: httpx.Client) -> None:
    bad = client.post(
        "/reviews/ci", content=b"{oops", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    form = client.post("/reviews/ci", data={"pr": "3"}, headers=AUTH)
    assert form.status_code == 415


def test_wrong_method_is_405(client: httpx.Client) -> None:
    assert client.get("/reviews/ci", headers=AUTH).status_code == 405


def test_endpoint_is_absent_without_a_token(gateway_with) -> None:
    _, http = gateway_with(AR_CI_REVIEW_TOKEN="")
    response = http.post("/reviews/ci", json=ci_body(), headers=AUTH)
    assert response.status_code == 404


def test_forge_unreachable_is_503_without_secrets(gateway_with) -> None:
    process, http = gateway_with(AR_FORGEJO_URL=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    response = http.post("/reviews/ci", json=ci_body(), headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": "forge unreachable"}
    assert time.monotonic() - started < 30
    assert_no_canary(response.text, "the 503 body")
    assert not process.recorded_jobs()


def test_forge_refusing_the_token_is_502_without_secrets(gateway_with) -> None:
    process, http = gateway_with(AR_FORGEJO_TOKEN="CANARY-wrong-forge-token-" + FORGEJO_TOKEN[-12:])
    response = http.post("/reviews/ci", json=ci_body(), headers=AUTH)
    assert response.status_code == 502
    assert_no_canary(response.text, "the 502 body")
    assert "CANARY-wrong-forge-token" not in process.logs()
    assert not process.recorded_jobs()
