"""ForgeHttp against a real loopback server: retries, Retry-After, timeouts, error mapping."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from tests.support.fake_forgejo import LoopbackForge, RecordedExchange, Reply
from tests.support.ports import closed_port

from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseError,
    HostResponseTooLarge,
    HostUnavailable,
)
from auto_review.hosts.forgejo import api_root
from auto_review.hosts.http import FORGE_RETRY, ForgeHttp, has_next_page, json_body
from auto_review.outbound.policy import RetryPolicy

CANARY = "canary-http-secret-93f1c2d7"
FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, max_retry_after=5)


class EchoForge(LoopbackForge):
    """Answers 200 {"ok": true} (201 for POST) unless a fault is injected."""

    def handle(self, exchange: RecordedExchange) -> Reply:
        if exchange.path == "/not-json":
            return 200, {}, None
        return (201 if exchange.method == "POST" else 200), {}, {"ok": True}


@pytest.fixture
def forge() -> Any:
    with EchoForge() as server:
        yield server


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def call(
    url: str,
    method: str = "GET",
    path: str = "/thing",
    *,
    retry: RetryPolicy = FAST,
    timeout: float = 2.0,
    sleep: Any = None,
    **kwargs: Any,
) -> httpx.Response:
    async def go() -> httpx.Response:
        extra = {"sleep": sleep} if sleep is not None else {}
        http = ForgeHttp(url, timeout=timeout, user_agent="test", retry=retry, **extra)
        try:
            return await http.request(
                "test op",
                method,
                path,
                headers={"Authorization": f"token {CANARY}"},
                **kwargs,
            )
        finally:
            await http.aclose()

    return asyncio.run(go())


def assert_secret_free(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    ours = [r for r in caplog.records if r.name.startswith("auto_review")]
    for text in [str(exc), repr(exc), *(repr(r.__dict__) for r in ours)]:
        assert CANARY not in text
        assert "127.0.0.1" not in text  # no URL either
    # httpx/httpcore debug logging included: the secret never reaches any log record
    assert CANARY not in caplog.text
    assert all(CANARY not in repr(r.__dict__) for r in caplog.records)
    # no chained transport exception (its text could name the URL) is shown with it
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def test_success_sends_headers_and_returns_response(forge: EchoForge) -> None:
    response = call(forge.url, params={"page": 2})
    assert response.json() == {"ok": True}
    (exchange,) = forge.exchanges
    assert exchange.headers["authorization"] == f"token {CANARY}"
    assert exchange.headers["user-agent"] == "test"
    assert exchange.query == {"page": ["2"]}


def test_5xx_is_retried_then_succeeds(forge: EchoForge) -> None:
    forge.fail(503, times=2)
    assert call(forge.url).status_code == 200
    assert [e.status for e in forge.exchanges] == [503, 503, 200]


def test_5xx_exhausted_raises_unavailable(
    forge: EchoForge, caplog: pytest.LogCaptureFixture
) -> None:
    forge.fail(502, times=10)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        call(forge.url)
    assert str(info.value) == "test op: HTTP 502 after 3 attempt(s)"
    assert info.value.status == 502
    assert len(forge.exchanges) == 3
    assert_secret_free(info.value, caplog)
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_retry_after_seconds_is_honoured(forge: EchoForge) -> None:
    forge.fail(429, headers={"Retry-After": "3"})
    sleeps = SleepRecorder()
    assert call(forge.url, sleep=sleeps).status_code == 200
    assert sleeps.delays == [3.0]


def test_retry_after_really_waits(forge: EchoForge) -> None:
    forge.fail(503, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert call(forge.url).status_code == 200
    assert time.monotonic() - started >= 0.9


def test_retry_after_http_date_is_honoured(forge: EchoForge) -> None:
    forge.fail(503, headers={"Retry-After": formatdate(time.time() + 4, usegmt=True)})
    sleeps = SleepRecorder()
    call(forge.url, sleep=sleeps)
    assert len(sleeps.delays) == 1 and 2.0 <= sleeps.delays[0] <= 4.0


def test_retry_after_beyond_cap_fails_at_once(forge: EchoForge) -> None:
    forge.fail(429, headers={"Retry-After": "3600"})
    with pytest.raises(HostUnavailable, match=r"HTTP 429 rate limited for 3600s"):
        call(forge.url)
    assert len(forge.exchanges) == 1


def test_github_primary_rate_limit_403_waits_for_reset(forge: EchoForge) -> None:
    reset = int(time.time()) + 3
    forge.fail(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    sleeps = SleepRecorder()
    assert call(forge.url, sleep=sleeps).status_code == 200
    assert len(sleeps.delays) == 1 and 1.0 <= sleeps.delays[0] <= 3.0


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, HostAuthError, "test op: HTTP 401 (credentials refused)"),
        (403, HostAuthError, "test op: HTTP 403 (credentials refused)"),
        (404, HostNotFound, "test op: HTTP 404 (not found)"),
        (422, HostError, "test op: HTTP 422"),
    ],
)
def test_client_errors_are_not_retried(
    forge: EchoForge,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: type[HostError],
    text: str,
) -> None:
    forge.fail(status, body={"message": f"echo {CANARY}"})
    with caplog.at_level(logging.DEBUG), pytest.raises(error) as info:
        call(forge.url)
    assert type(info.value) is error
    assert str(info.value) == text
    assert len(forge.exchanges) == 1
    assert_secret_free(info.value, caplog)


def test_post_is_not_retried_on_5xx(forge: EchoForge) -> None:
    forge.fail(500, times=3)
    with pytest.raises(HostUnavailable, match="HTTP 500"):
        call(forge.url, "POST", expect=(201,))
    assert len(forge.exchanges) == 1


def test_post_is_retried_on_429_and_when_marked_idempotent(forge: EchoForge) -> None:
    forge.fail(429)
    assert call(forge.url, "POST", expect=(201,)).status_code == 201
    forge.fail(500)
    assert call(forge.url, "POST", expect=(201,), idempotent=True).status_code == 201
    assert [e.status for e in forge.exchanges] == [429, 201, 500, 201]


def test_connection_refused_is_retried_then_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = SleepRecorder()
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        call(f"http://127.0.0.1:{closed_port()}", sleep=sleeps)
    assert str(info.value) == "test op: connection failed (ConnectError)"
    assert len(sleeps.delays) == 2
    assert_secret_free(info.value, caplog)


def test_read_timeout_is_retried_then_unavailable(
    forge: EchoForge, caplog: pytest.LogCaptureFixture
) -> None:
    forge.delay(1.0, times=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        call(forge.url, retry=RetryPolicy(attempts=2, initial_backoff=0.01), timeout=0.2)
    assert str(info.value) == "test op: timed out after 2 attempt(s)"
    assert len(forge.exchanges) == 2
    assert_secret_free(info.value, caplog)


def test_a_dripping_server_hits_the_attempt_deadline() -> None:
    """Each byte arrives well within the read timeout; the whole answer never does."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(40):
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break
                    time.sleep(0.05)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(HostUnavailable, match="timed out after 1 attempt"):
            call(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=1), timeout=0.3)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 1.5  # 2 x timeout, not the 2 s the drip would take


def test_timeout_then_success(forge: EchoForge) -> None:
    forge.delay(1.0)
    assert call(forge.url, timeout=0.2).status_code == 200


def test_dropped_connection_is_retried_for_get(forge: EchoForge) -> None:
    forge.drop()
    assert call(forge.url).status_code == 200
    assert [e.status for e in forge.exchanges] == [-1, 200]


def test_dropped_connection_fails_post(forge: EchoForge, caplog: pytest.LogCaptureFixture) -> None:
    forge.drop()
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        call(forge.url, "POST", expect=(201,))
    assert str(info.value) == "test op: transport error (RemoteProtocolError)"
    assert_secret_free(info.value, caplog)


def test_redirects_are_not_followed(forge: EchoForge) -> None:
    forge.fail(302, headers={"Location": "http://elsewhere.invalid/steal"})
    with pytest.raises(HostError, match="HTTP 302"):
        call(forge.url)
    assert len(forge.exchanges) == 1


def test_invalid_json_is_a_response_error(forge: EchoForge) -> None:
    response = call(forge.url, path="/not-json")
    with pytest.raises(HostResponseError, match="test op: response is not valid JSON"):
        json_body("test op", response)


def test_forge_url_checks_never_echo_the_url() -> None:
    with pytest.raises(ValueError) as info:
        api_root(f"https://bot:{CANARY}@forge.example")
    assert str(info.value) == (
        "AR_FORGEJO_URL must not contain credentials; configure the token separately"
    )
    with pytest.raises(ValueError, match="forge API URL must not have a query"):
        ForgeHttp(f"https://forge.example/?token={CANARY}", timeout=1, user_agent="t")
    assert api_root("https://forge.example/") == "https://forge.example/api/v1"


def test_repr_has_no_credentials(forge: EchoForge) -> None:
    http = ForgeHttp(forge.url, timeout=1, user_agent="test")
    assert repr(http) == f"ForgeHttp(api_root={forge.url!r})"
    asyncio.run(http.aclose())


def test_has_next_page_reads_link_rel() -> None:
    def response(link: str | None) -> httpx.Response:
        return httpx.Response(200, headers={"Link": link} if link else {})

    assert has_next_page(
        response('<https://x/a?page=2>; rel="next", <https://x/a?page=5>; rel="last"')
    )
    assert not has_next_page(
        response('<https://x/a?page=1>; rel="first", <https://x/a?page=1>; rel="prev"')
    )
    assert not has_next_page(response(None))


def test_forge_policy_is_four_half_jittered_tries() -> None:
    assert (FORGE_RETRY.attempts, FORGE_RETRY.jitter, FORGE_RETRY.max_retry_after) == (4, 0.5, 60)
    assert 0.25 <= FORGE_RETRY.backoff(1) <= 0.5


def test_post_is_repeated_after_503_but_not_after_502_or_504(forge: EchoForge) -> None:
    forge.fail(503)
    assert call(forge.url, "POST", expect=(201,)).status_code == 201
    for status in (502, 504):
        forge.fail(status)
        with pytest.raises(HostUnavailable, match=f"HTTP {status}"):
            call(forge.url, "POST", expect=(201,))
    assert [e.status for e in forge.exchanges] == [503, 201, 502, 504]


def fetch_bytes(url: str, path: str, max_bytes: int, **options: Any) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        http = ForgeHttp(url, timeout=options.pop("timeout", 2.0), user_agent="test", retry=FAST)
        try:
            return await http.request_bytes(
                "test op", path, max_bytes=max_bytes, headers={"Authorization": CANARY}
            )
        finally:
            await http.aclose()

    return asyncio.run(go())


class BytesForge(LoopbackForge):
    def handle(self, exchange: RecordedExchange) -> Reply:
        return 200, {"Content-Type": "text/plain"}, b"0123456789" * 10


def test_request_bytes_returns_the_body_within_the_cap() -> None:
    with BytesForge() as forge:
        assert fetch_bytes(forge.url, "/x", 100) == (200, b"0123456789" * 10)
        (exchange,) = forge.exchanges
        assert exchange.headers["accept-encoding"] == "identity"


def test_request_bytes_refuses_a_declared_length_over_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BytesForge() as forge, pytest.raises(HostResponseTooLarge) as info:
        fetch_bytes(forge.url, "/x", 99)
    assert str(info.value) == "test op: response larger than the cap of 99 bytes"
    assert len(forge.exchanges) == 1  # not retried
    assert_secret_free(info.value, caplog)


def test_request_bytes_stops_an_endless_chunked_body_at_the_cap() -> None:
    """No Content-Length, and a body that never ends: reading stops at the cap."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sent = [0]

    def endless() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"y" * 4096
            try:
                while sent[0] < 64 * 1024 * 1024:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent[0] += len(chunk)
            except OSError:
                return  # the client hung up: what we want

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    try:
        with pytest.raises(HostResponseTooLarge):
            fetch_bytes(f"http://127.0.0.1:{port}", "/x", 100_000)
    finally:
        listener.close()
    thread.join(timeout=5)
    assert sent[0] < 64 * 1024 * 1024  # the client stopped reading long before the end


def test_an_endless_json_answer_stops_at_the_api_answer_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """API answers (JSON) are read through the same capped reader: a server that never
    ends its body is cut off, not held in memory."""
    from auto_review.hosts import http as forge_http

    monkeypatch.setattr(forge_http, "MAX_API_ANSWER_BYTES", 100_000)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sent = [0]

    def endless() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"[" * 4096
            try:
                while sent[0] < 64 * 1024 * 1024:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent[0] += len(chunk)
            except OSError:
                return

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    try:
        with pytest.raises(HostResponseTooLarge) as info:
            call(f"http://127.0.0.1:{port}")
    finally:
        listener.close()
    thread.join(timeout=5)
    assert sent[0] < 64 * 1024 * 1024
    assert str(info.value) == "test op: response larger than the cap of 100000 bytes"
    assert_secret_free(info.value, caplog)


def test_json_answers_keep_their_paging_headers_and_ask_for_identity(forge: EchoForge) -> None:
    response = call(forge.url)
    assert response.json() == {"ok": True}
    (exchange,) = forge.exchanges
    assert exchange.headers["accept-encoding"] == "identity"
    assert response.headers["content-type"].startswith("application/json")
