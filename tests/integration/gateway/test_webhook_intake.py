"""Signed real deliveries through a real gateway process, and every refusal on the way."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest
from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    GITHUB_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    metric_value,
    post_forgejo,
)
from tests.support.gateway_process import (
    GatewayProcess,
    forgejo_headers,
    github_headers,
    sign_hex,
)
from tests.support.reference import load_json, reference_path

FORGE_PRS = [
    "gitea_pull_request_opened.json",
    "gitea_pull_request_synchronized.json",
    "forgejo_pull_request_reopened.json",
]


def forge_payload(name: str) -> dict:
    payload = load_json(reference_path("forge", "payloads", name))
    assert isinstance(payload, dict)
    return payload


def github_payload(event: str, name: str) -> dict:
    payload = load_json(reference_path("github", "webhooks-examples", event, name))
    assert isinstance(payload, dict)
    return payload


def unique_head(payload: dict) -> dict:
    """The same real payload at a fresh head SHA, so job dedup does not merge tests."""
    payload = json.loads(json.dumps(payload))
    payload["pull_request"]["head"]["sha"] = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    return payload


def jobs_with(gateway: GatewayProcess, **fields: object) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        found = [
            job
            for job in gateway.recorded_jobs()
            if all(job.get(k) == v for k, v in fields.items())
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("name", FORGE_PRS)
def test_real_forge_pull_request_deliveries_become_review_jobs(
    gateway: GatewayProcess, client: httpx.Client, name: str
) -> None:
    payload = forge_payload(name)
    response = post_forgejo(client, payload, "pull_request")
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "jobs": 1}
    head = payload["pull_request"]["head"]["sha"]
    [job] = jobs_with(gateway, head_sha=head)
    assert job["kind"] == "review" and job["source"] == "webhook"
    assert job["repo"] == payload["repository"]["full_name"]
    assert job["pr"] == payload["pull_request"]["number"]
    assert job["host"] == "forgejo"


def test_gitea_sends_only_its_own_header_names(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    body = json.dumps(unique_head(forge_payload("gitea_pull_request_opened.json"))).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Gitea-Event": "pull_request",
        "X-Gitea-Delivery": str(uuid.uuid4()),
        "X-Gitea-Signature": sign_hex(WEBHOOK_SECRET, body),
    }
    response = client.post("/webhooks/forgejo", content=body, headers=headers)
    assert response.status_code == 202, response.text


def test_real_github_pull_request_delivery(gateway: GatewayProcess, client: httpx.Client) -> None:
    payload = github_payload("pull_request", "opened.payload.json")
    body = json.dumps(payload).encode()
    response = client.post(
        "/webhooks/github",
        content=body,
        headers=github_headers(GITHUB_WEBHOOK_SECRET, body, "pull_request"),
    )
    assert response.status_code == 202, response.text
    [job] = jobs_with(gateway, host="github", head_sha=payload["pull_request"]["head"]["sha"])
    assert job["repo"] == payload["repository"]["full_name"]


def test_github_ping_is_ignored_and_counted(client: httpx.Client) -> None:
    before = metric_value(client, "auto_review_ignored_events_total", source="github")
    body = json.dumps(github_payload("ping", "payload.json")).encode()
    response = client.post(
        "/webhooks/github",
        content=body,
        headers=github_headers(GITHUB_WEBHOOK_SECRET, body, "ping"),
    )
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert metric_value(client, "auto_review_ignored_events_total", source="github") == before + 1


def test_unknown_forgejo_event_is_ignored_and_counted(client: httpx.Client) -> None:
    before = metric_value(
        client, "auto_review_ignored_events_total", source="forgejo", reason="unsupported-event"
    )
    response = post_forgejo(client, {"anything": 1}, "wiki")
    assert response.status_code == 202
    assert response.json()["reason"] == "unsupported-event"
    assert "wiki" in response.json()["detail"]
    after = metric_value(
        client, "auto_review_ignored_events_total", source="forgejo", reason="unsupported-event"
    )
    assert after == before + 1


def test_repeated_delivery_id_is_answered_as_duplicate(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    payload = unique_head(forge_payload("gitea_pull_request_opened.json"))
    delivery = str(uuid.uuid4())
    before = metric_value(client, "auto_review_dedup_hits_total", kind="delivery")
    first = post_forgejo(client, payload, "pull_request", delivery=delivery)
    again = post_forgejo(client, payload, "pull_request", delivery=delivery)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "duplicate": "delivery"}
    assert metric_value(client, "auto_review_dedup_hits_total", kind="delivery") == before + 1
    head = payload["pull_request"]["head"]["sha"]
    assert len(gateway.queued_jobs(head_sha=head)) == 1  # committed before the 202: final
    assert len(jobs_with(gateway, head_sha=head)) == 1


def test_same_head_under_a_new_delivery_id_is_one_job(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    payload = unique_head(forge_payload("forgejo_pull_request_reopened.json"))
    assert post_forgejo(client, payload, "pull_request").status_code == 202
    again = post_forgejo(client, payload, "pull_request")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "duplicate": "job"}
    head = payload["pull_request"]["head"]["sha"]
    assert len(gateway.queued_jobs(head_sha=head)) == 1  # committed before the answer: final
    assert len(jobs_with(gateway, head_sha=head)) == 1


def comment_payload(body: str, author: str = "alice", comment_id: int | None = None) -> dict:
    payload = forge_payload("gitea_issue_comment_created_on_pull.json")
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = author
    payload["comment"]["user"]["username"] = author
    payload["comment"]["id"] = comment_id or int(uuid.uuid4().int % 10**9) + 1
    return payload


@pytest.mark.parametrize(
    ("text", "kind", "argument"),
    [
        (f"@{BOT_LOGIN} help", "chat-help", ""),
        (f"@{BOT_LOGIN} re-review", "re-review", ""),
        (f"@{BOT_LOGIN} remember we vendor third_party/ on purpose", "chat-remember", None),
        (f"@{BOT_LOGIN} forget 12", "chat-forget", None),
        (f"Thanks!\n@{BOT_LOGIN} why is this lock needed?", "chat-question", None),
    ],
)
def test_chat_commands_become_jobs(
    gateway: GatewayProcess, client: httpx.Client, text: str, kind: str, argument: str | None
) -> None:
    payload = comment_payload(text)
    response = post_forgejo(client, payload, "issue_comment")
    assert response.status_code == 202, response.text
    [job] = jobs_with(gateway, comment_id=payload["comment"]["id"])
    assert job["kind"] == kind
    assert job["head_sha"] == "" and job["requested_by"] == "alice"
    if argument is not None:
        assert job["argument"] == argument
    else:
        assert job["argument"]


def test_the_bots_own_comment_is_ignored(gateway: GatewayProcess, client: httpx.Client) -> None:
    payload = comment_payload(f"@{BOT_LOGIN} help", author=BOT_LOGIN)
    response = post_forgejo(client, payload, "issue_comment")
    assert response.status_code == 202
    assert response.json() == {"status": "ignored", "reason": "own-comment"}
    # Jobs are committed before the answer, so the store is final for this request.
    assert gateway.queued_jobs(comment_id=payload["comment"]["id"]) == []


def test_comment_without_a_command_is_ignored(client: httpx.Client) -> None:
    response = post_forgejo(client, comment_payload("LGTM"), "issue_comment")
    assert response.json() == {"status": "ignored", "reason": "no-command"}


# ---- refusals ---------------------------------------------------------------------------


def test_signature_missing_malformed_and_wrong(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    payload = unique_head(forge_payload("gitea_pull_request_opened.json"))
    body = json.dumps(payload).encode()
    base = {"Content-Type": "application/json", "X-Forgejo-Event": "pull_request"}
    cases = [
        ({}, 401, "missing"),
        ({"X-Forgejo-Signature": "not-hex!"}, 400, "malformed"),
        ({"X-Forgejo-Signature": "ab" * 31}, 400, "malformed"),  # wrong length
        (
            {"X-Forgejo-Signature": sign_hex("another-secret-of-32-characters!!", body)},
            401,
            "mismatch",
        ),
        ({"X-Forgejo-Signature": sign_hex(WEBHOOK_SECRET, body + b" ")}, 401, "mismatch"),
    ]
    for extra, status, reason in cases:
        before = metric_value(
            client, "auto_review_signature_failures_total", source="forgejo", reason=reason
        )
        response = client.post("/webhooks/forgejo", content=body, headers={**base, **extra})
        assert response.status_code == status, (extra, response.text)
        after = metric_value(
            client, "auto_review_signature_failures_total", source="forgejo", reason=reason
        )
        assert after == before + 1
    github = client.post(
        "/webhooks/github",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha1=" + "a" * 40},
    )
    assert github.status_code == 400
    assert gateway.queued_jobs(head_sha=payload["pull_request"]["head"]["sha"]) == []


def test_a_forgejo_signature_does_not_open_the_github_route(client: httpx.Client) -> None:
    body = json.dumps(unique_head(github_payload("pull_request", "opened.payload.json"))).encode()
    headers = github_headers(WEBHOOK_SECRET, body, "pull_request")  # the other source's secret
    assert client.post("/webhooks/github", content=body, headers=headers).status_code == 401


def test_nothing_of_an_unverified_body_is_logged(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    marker = f"UNVERIFIED-MARKER-{uuid.uuid4().hex}"
    body = json.dumps({"marker": marker, "action": "opened"}).encode()
    headers = {"Content-Type": "application/json", "X-Forgejo-Event": marker[:60]}
    client.post("/webhooks/forgejo", content=body, headers=headers)
    client.post(
        "/webhooks/forgejo", content=body, headers={**headers, "X-Forgejo-Signature": "0" * 64}
    )
    client.post(
        "/webhooks/forgejo", content=body, headers={**headers, "X-Forgejo-Signature": marker}
    )
    # A signed delivery after them logs "webhook accepted" with its delivery id before
    # its 202 goes out (log lines are flushed as written, in order): once the answer is
    # here, anything the refused requests logged is in the file too.
    sentinel = str(uuid.uuid4())
    payload = unique_head(forge_payload("gitea_pull_request_opened.json"))
    assert post_forgejo(client, payload, "pull_request", delivery=sentinel).status_code == 202
    assert sentinel in gateway.logs()
    assert marker not in gateway.logs()
    assert marker[:30] not in gateway.logs()


def test_signed_but_malformed_bodies_are_400_and_counted(client: httpx.Client) -> None:
    before = metric_value(client, "auto_review_payload_failures_total", source="forgejo")
    bad_bodies = [
        b"{not json",
        b"[1, 2, 3]",
        b"\xff\xfe\x00garbage",
        json.dumps({"action": "opened"}).encode(),  # a PR event without its fields
        json.dumps({**forge_payload("gitea_pull_request_opened.json"), "pull_request": 7}).encode(),
    ]
    for body in bad_bodies:
        response = post_forgejo(client, body, "pull_request")
        assert response.status_code == 400, (body[:40], response.text)
        assert "error" in response.json()
    after = metric_value(client, "auto_review_payload_failures_total", source="forgejo")
    assert after == before + len(bad_bodies)


def test_signed_delivery_without_an_event_header_is_400(client: httpx.Client) -> None:
    body = json.dumps(forge_payload("gitea_pull_request_opened.json")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Forgejo-Signature": sign_hex(WEBHOOK_SECRET, body),
    }
    assert client.post("/webhooks/forgejo", content=body, headers=headers).status_code == 400


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_content_types_other_than_json_are_415(
    client: httpx.Client, content_type: str | None
) -> None:
    body = json.dumps(unique_head(forge_payload("gitea_pull_request_opened.json"))).encode()
    headers = forgejo_headers(WEBHOOK_SECRET, body, "pull_request")
    del headers["Content-Type"]
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/webhooks/forgejo", content=body, headers=headers)
    assert response.status_code == 415


def test_json_with_charset_parameter_is_accepted(client: httpx.Client) -> None:
    body = json.dumps(unique_head(forge_payload("gitea_pull_request_opened.json"))).encode()
    headers = forgejo_headers(WEBHOOK_SECRET, body, "pull_request")
    headers["Content-Type"] = "application/json; charset=utf-8"
    assert client.post("/webhooks/forgejo", content=body, headers=headers).status_code == 202


def test_wrong_method_and_unknown_route(client: httpx.Client) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = client.request(method, "/webhooks/forgejo")
        assert response.status_code == 405
        assert "POST" in response.headers["allow"]
    assert client.post("/healthz").status_code == 405
    assert client.get("/webhooks/gitlab").status_code == 404
    assert client.get("/").status_code == 404
    assert client.post("/../../etc/passwd").status_code == 404


# ---- size cap -----------------------------------------------------------------------------


def raw_exchange(gateway: GatewayProcess, head: bytes, body_chunks=(), read_timeout=5.0) -> bytes:
    port = int(gateway.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed: it stopped reading, as it should
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def test_announced_oversize_body_is_refused_before_it_is_sent(gateway: GatewayProcess) -> None:
    # Content-Length of 1 GB and no body at all: an answer proves nothing was waited for.
    head = (
        b"POST /webhooks/forgejo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nX-Forgejo-Event: pull_request\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_exchange(gateway, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 2


def test_chunked_oversize_body_is_cut_off_while_streaming(gateway: GatewayProcess) -> None:
    cap = int(gateway.env["AR_MAX_BODY_BYTES"])
    head = (
        b"POST /webhooks/forgejo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nX-Forgejo-Event: pull_request\r\n\r\n"
    )
    piece = b"a" * 16384
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    # Twice the cap, but never the terminating zero chunk: only counting can refuse it.
    answer = raw_exchange(gateway, head, [chunk] * (2 * cap // len(piece) + 2))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_body_at_the_cap_is_still_read(client: httpx.Client, gateway: GatewayProcess) -> None:
    cap = int(gateway.env["AR_MAX_BODY_BYTES"])
    payload = unique_head(forge_payload("gitea_pull_request_opened.json"))
    text = json.dumps(payload)
    payload["pull_request"]["body"] = "x" * (cap - len(text) - 40)
    body = json.dumps(payload).encode()
    assert len(body) <= cap
    assert post_forgejo(client, body, "pull_request").status_code == 202
    assert (
        post_forgejo(client, body + b" " * (cap - len(body) + 1), "pull_request").status_code == 413
    )


def test_oversized_request_head_is_431(gateway: GatewayProcess, client: httpx.Client) -> None:
    head = b"POST /webhooks/forgejo HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 70_000
    answer = raw_exchange(gateway, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert client.get("/healthz").status_code == 200


def test_github_pull_request_comment_command_and_issue_comment(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    payload = github_payload("issue_comment", "created.payload.json")
    payload["comment"]["id"] = 7_000_000_001
    payload["comment"]["body"] = f"@{BOT_LOGIN} re-review please"

    def post(data: dict) -> httpx.Response:
        body = json.dumps(data).encode()
        headers = github_headers(GITHUB_WEBHOOK_SECRET, body, "issue_comment")
        return client.post("/webhooks/github", content=body, headers=headers)

    # The example comment is on a plain issue: no job.
    plain = post(payload)
    assert plain.status_code == 202
    assert plain.json()["reason"] == "unsupported-event"
    assert "not a pull request" in plain.json()["detail"]
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/x/y/pulls/1"}
    on_pull = post(payload)
    assert on_pull.status_code == 202, on_pull.text
    [job] = jobs_with(gateway, comment_id=7_000_000_001)
    assert (job["host"], job["kind"], job["pr"]) == ("github", "re-review", 1)
