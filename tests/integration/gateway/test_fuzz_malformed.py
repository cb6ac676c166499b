"""Ten thousand malformed requests at a real gateway: never a 5xx, never a job unsigned.

A seeded generator (so a failure replays exactly) mixes wrong methods, unknown paths,
missing/garbage/wrong-key signatures, truncated and random bodies, wrong content types,
huge and odd headers, bad bearer tokens, and raw protocol garbage sent over plain
sockets. A share of the requests is authentic but mangled (signed payloads with fields
dropped or replaced, CI requests with the right token and odd bodies): those may create
jobs, the rest never. One server and one keep-alive client keep the run under a minute.
"""

from __future__ import annotations

import json
import random
import socket
import time

import httpx
from tests.integration.gateway.conftest import (
    CI_TOKEN,
    GITHUB_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    metric_value,
)
from tests.support.gateway_process import GatewayProcess, sign_hex
from tests.support.reference import load_json, reference_path

SEED = 20261123
HTTP_REQUESTS = 9_500
RAW_REQUESTS = 600
ROUTES = [
    "/webhooks/forgejo",
    "/webhooks/github",
    "/reviews/ci",
    "/healthz",
    "/readyz",
    "/info",
    "/metrics",
    "/version",
]
ODD_PATHS = [
    "/",
    "/webhooks",
    "/webhooks/forgejo/",
    "/webhooks/gitlab",
    "/%00",
    "/reviews/ci/x",
    "/" + "a" * 3000,
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/jsonx",
    "json",
    "",
    "application/json;;;",
]
EVENTS = ["pull_request", "issue_comment", "push", "ping", "", "pull_request" * 10, "x y", "../"]


def real_bodies() -> list[bytes]:
    names = ["gitea_pull_request_opened.json", "gitea_issue_comment_created_on_pull.json"]
    bodies = [json.dumps(load_json(reference_path("forge", "payloads", n))).encode() for n in names]
    github = load_json(
        reference_path("github", "webhooks-examples", "pull_request", "opened.payload.json")
    )
    bodies.append(json.dumps(github).encode())
    return bodies


def random_body(rng: random.Random, reals: list[bytes]) -> bytes:
    choice = rng.randrange(7)
    real = rng.choice(reals)
    if choice == 0:
        return b""
    if choice == 1:
        return real[: rng.randrange(1, len(real))]  # truncated
    if choice == 2:
        return rng.randbytes(rng.randrange(1, 4096))
    if choice == 3:
        return json.dumps(
            rng.choice([[], 1, "x", None, {"action": "opened"}, {"a": [{}] * 5}])
        ).encode()
    if choice == 4:
        data = bytearray(real)
        for _ in range(rng.randrange(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)  # bit rot
        return bytes(data)
    if choice == 5:
        return b"[" * rng.randrange(1, 5000)  # deep nesting
    return real  # intact, but the signature below will not match it


def random_signature_headers(rng: random.Random, route: str, body: bytes) -> dict[str, str]:
    kind = rng.randrange(7)
    wrong_key = "not-the-secret-but-long-enough-0000000000"
    if kind == 0:
        return {}
    if kind == 1:
        value = "".join(rng.choice("0123456789abcdefXYZ=-") for _ in range(rng.randrange(0, 80)))
    elif kind == 2:
        value = sign_hex(wrong_key, body)
    elif kind == 3:  # the right key over different bytes
        value = sign_hex(WEBHOOK_SECRET, body + b"\n")
    elif kind == 4:  # the other route's secret
        other = GITHUB_WEBHOOK_SECRET if route.endswith("forgejo") else WEBHOOK_SECRET
        value = sign_hex(other, body)
    elif kind == 5:
        value = "sha1=" + "a" * 40
    else:
        value = "sha256=" + "0" * 64
    if route.endswith("github") and not value.startswith("sha"):
        value = rng.choice(["sha256=", "", "SHA256="]) + value
    name = rng.choice(["X-Forgejo-Signature", "X-Gitea-Signature", "X-Hub-Signature-256"])
    return {name: value}


ODD_VALUES: list[object] = [
    None,
    True,
    -1,
    0,
    2**70,
    1.5,
    "",
    "x" * 1000,
    "../../etc/passwd",
    "\u202e\u0000",
    [],
    {},
    [1, "a", None],
    {"login": None},
]


def mutate(rng: random.Random, value: object) -> object:
    """The value with some nested fields replaced by odd ones or removed."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            roll = rng.random()
            if roll < 0.04:
                continue  # field dropped
            out[key] = rng.choice(ODD_VALUES) if roll < 0.1 else mutate(rng, item)
        return out
    if isinstance(value, list):
        return [mutate(rng, item) for item in value]
    return value


def signed_garbage(rng: random.Random, reals: list[bytes]) -> httpx.Request:
    """Correctly signed, structurally mangled real payloads: the parser's hard case."""
    real = json.loads(rng.choice(reals))
    body = json.dumps(mutate(rng, real)).encode()
    event = rng.choice(["pull_request", "issue_comment"])
    if rng.random() < 0.5:
        headers = {
            "Content-Type": "application/json",
            "X-Forgejo-Event": event,
            "X-Forgejo-Signature": sign_hex(WEBHOOK_SECRET, body),
        }
        return httpx.Request(
            "POST", "http://gateway/webhooks/forgejo", content=body, headers=headers
        )
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": "sha256=" + sign_hex(GITHUB_WEBHOOK_SECRET, body),
    }
    return httpx.Request("POST", "http://gateway/webhooks/github", content=body, headers=headers)


def authorised_ci_garbage(rng: random.Random) -> httpx.Request:
    base: dict[str, object] = {
        "host": "forgejo",
        "owner": "acme",
        "repo": "widgets",
        "pr": 3,
        "head_sha": "1" * 40,
    }
    body = json.dumps(mutate(rng, base) if rng.random() < 0.8 else rng.choice(ODD_VALUES))
    headers = {"Authorization": f"Bearer {CI_TOKEN}", "Content-Type": "application/json"}
    return httpx.Request(
        "POST", "http://gateway/reviews/ci", content=body.encode(), headers=headers
    )


def random_route(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(["/webhooks/forgejo", "/webhooks/github"])
    if roll < 0.75:
        return "/reviews/ci"
    if roll < 0.9:
        return rng.choice(ROUTES)
    return rng.choice(ODD_PATHS)


def random_request(rng: random.Random, reals: list[bytes]) -> httpx.Request:
    route = random_route(rng)
    method = "POST" if rng.random() < 0.85 else rng.choice(METHODS)
    body = random_body(rng, reals)
    headers: dict[str, str] = {}
    content_type = "application/json" if rng.random() < 0.6 else rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(random_signature_headers(rng, route, body))
    if rng.random() < 0.5:
        headers[rng.choice(["X-Forgejo-Event", "X-GitHub-Event", "X-Gitea-Event"])] = rng.choice(
            EVENTS
        )
    if rng.random() < 0.3:
        headers[rng.choice(["X-Forgejo-Delivery", "X-GitHub-Delivery"])] = rng.choice(
            ["", "x" * 300, "ok-id", "../../etc", "a b"]
        )
    if rng.random() < 0.2:
        headers["Authorization"] = rng.choice(
            ["Bearer", "Bearer " + "x" * rng.randrange(1, 200), "Basic Zm9vOmJhcg==", "token abc"]
        )
    if rng.random() < 0.03:  # huge header values
        headers["X-Padding"] = "p" * rng.randrange(8_000, 60_000)
    if rng.random() < 0.03:  # many headers
        for index in range(rng.randrange(50, 200)):
            headers[f"X-Extra-{index}"] = "v" * rng.randrange(1, 100)
    return httpx.Request(method, "http://gateway" + route, content=body, headers=headers)


RAW_GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /webhooks/forgejo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    b"0\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",  # ends mid-chunk
    b"POST /webhooks/forgejo HTTP/1.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{}",  # shorter than announced
    b"POST /webhooks/forgejo HTTP/9.9\r\n\r\n",
    b"POST  /webhooks/forgejo  HTTP/1.1\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    b"POST /webhooks/forgejo HTTP/1.1\r\nX-Forgejo-Signature: \xff\xfe\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
]


def raw_status(port: int, payload: bytes) -> int | None:
    """Send raw bytes, half-close, return the status code answered (None: no answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        received = b""
        try:
            while b"\r\n" not in received:
                data = sock.recv(4096)
                if not data:
                    break
                received += data
        except (ConnectionResetError, TimeoutError):
            pass
    if not received.startswith(b"HTTP/"):
        return None
    return int(received.split(b" ", 2)[1])


def test_malformed_requests_never_5xx_and_never_make_jobs(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    rng = random.Random(SEED)
    reals = real_bodies()
    jobs_before = len(gateway.recorded_jobs())
    accepted_before = sum(
        metric_value(client, "auto_review_jobs_accepted_total", source=source)
        for source in ("webhook", "ci")
    )
    statuses: dict[int, int] = {}
    accepted_jobs = 0
    started = time.monotonic()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as fuzz:
        for index in range(HTTP_REQUESTS):
            roll = rng.random()
            authentic = roll < 0.15
            if roll < 0.1:
                request = signed_garbage(rng, reals)
            elif roll < 0.15:
                request = authorised_ci_garbage(rng)
            else:
                request = random_request(rng, reals)
            request.url = fuzz.base_url.join(request.url.raw_path.decode("ascii"))
            response = fuzz.send(request)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (index, request.method, request.url, response.text)
            if response.status_code == 202 and response.json()["status"] == "accepted":
                # Only an authentic (signed / token-bearing) request may create work.
                assert authentic, (index, request.url)
                accepted_jobs += response.json()["jobs"]
    port = int(gateway.base_url.rsplit(":", 1)[1])
    raw_answers: dict[int | None, int] = {}
    for index in range(RAW_REQUESTS):
        payload = RAW_GARBAGE[index % len(RAW_GARBAGE)]
        if index >= len(RAW_GARBAGE):
            payload = rng.randbytes(rng.randrange(1, 2048)) if index % 3 == 0 else payload
        status = raw_status(port, payload)
        raw_answers[status] = raw_answers.get(status, 0) + 1
        assert status is None or status < 500, (index, payload[:80], status)
    elapsed = time.monotonic() - started

    assert HTTP_REQUESTS + RAW_REQUESTS >= 10_000
    # The mix really exercised the refusals it is meant to.
    for status in (400, 401, 404, 405, 415):
        assert statuses.get(status, 0) > 50, statuses
    gateway.wait_for_jobs(jobs_before + accepted_jobs)
    rows = gateway.wait_until_idle()  # nothing left to run: the counts below are final
    assert len(rows) == jobs_before + accepted_jobs
    assert len(gateway.recorded_jobs()) == jobs_before + accepted_jobs
    accepted_after = sum(
        metric_value(client, "auto_review_jobs_accepted_total", source=source)
        for source in ("webhook", "ci")
    )
    assert accepted_after - accepted_before == accepted_jobs
    assert client.get("/healthz").status_code == 200  # still alive and answering
    total = HTTP_REQUESTS + RAW_REQUESTS
    print(f"fuzz: {total} requests in {elapsed:.1f}s; {statuses}; raw {raw_answers}")
