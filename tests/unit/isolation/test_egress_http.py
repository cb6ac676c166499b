"""Request head parsing and rewriting of the egress proxy."""

from __future__ import annotations

import pytest

from auto_review.isolation.egress.http import (
    STATS_PATH,
    Refusal,
    body_framing,
    classify,
    downstream_response_head,
    parse_chunk_size,
    parse_request_head,
    parse_response_head,
    upstream_request_head,
)


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1") + b"\r\n"


def reason_of(raw: bytes) -> str:
    with pytest.raises(Refusal) as caught:
        classify(parse_request_head(raw))
    return caught.value.reason


def test_connect_authority_form() -> None:
    request = classify(parse_request_head(head("CONNECT Api.Example.com:443 HTTP/1.1\nHost: x\n")))
    assert (request.kind, request.host, request.port) == ("connect", "api.example.com", 443)
    v6 = classify(parse_request_head(head("CONNECT [::1]:8443 HTTP/1.1\n")))
    assert (v6.host, v6.port, v6.authority) == ("::1", 8443, "[::1]:8443")


def test_absolute_form_forwarding() -> None:
    request = classify(parse_request_head(head("POST http://h.example:8080/a/b?c=d HTTP/1.1\n")))
    assert (request.kind, request.host, request.port) == ("forward", "h.example", 8080)
    assert request.origin_form == "/a/b?c=d"
    bare = classify(parse_request_head(head("GET http://h.example?q=1 HTTP/1.0\n")))
    assert (bare.port, bare.origin_form) == (80, "/?q=1")


def test_stats_request() -> None:
    assert classify(parse_request_head(head(f"GET {STATS_PATH} HTTP/1.1\n"))).kind == "stats"
    assert reason_of(head(f"POST {STATS_PATH} HTTP/1.1\n")) == "not-a-proxy-request"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CONNECT host HTTP/1.1\n", "bad-port"),
        ("CONNECT host:0 HTTP/1.1\n", "bad-port"),
        ("CONNECT host:080 HTTP/1.1\n", "bad-port"),
        ("CONNECT host:1:2 HTTP/1.1\n", "bad-host"),
        ("CONNECT :443 HTTP/1.1\n", "bad-host"),
        ("CONNECT a@host:443 HTTP/1.1\n", "userinfo"),
        ("CONNECT [zz]:443 HTTP/1.1\n", "bad-host"),
        ("GET http://u:p@h/ HTTP/1.1\n", "userinfo"),
        ("GET http://h:99999/ HTTP/1.1\n", "bad-port"),
        ("GET http:///path HTTP/1.1\n", "bad-host"),
        ("GET HTTPS://h/ HTTP/1.1\n", "scheme-not-allowed"),
        ("GET file:///etc/passwd HTTP/1.1\n", "scheme-not-allowed"),
        ("GET h:80 HTTP/1.1\n", "malformed"),
        ("GET http://h/#frag HTTP/1.1\n", "malformed"),
        ("TRACE http://h/ HTTP/1.1\n", "method-not-allowed"),
        ("GET / HTTP/1.1\n", "not-a-proxy-request"),
    ],
)
def test_targets_refused(text: str, reason: str) -> None:
    assert reason_of(head(text)) == reason


@pytest.mark.parametrize(
    "raw",
    [
        b"GET http://h/ HTTP/1.1\n\n",  # bare LF
        b"GET http://h/ HTTP/1.1\r\n",  # incomplete
        head("get http://h/ HTTP/1.1\n"),
        head("GET  http://h/ HTTP/1.1\n"),
        head("GET http://h/ HTTP/1.1 extra\n"),
        head("GET http://h/\x01 HTTP/1.1\n"),
        head("GET http://h/ HTTP/1.1\nX: a\n continued\n"),
        head("GET http://h/ HTTP/1.1\nX : a\n"),
        head("GET http://h/ HTTP/1.1\nNoColon\n"),
        head("GET http://h/ HTTP/1.1\nX: a\x00b\n"),
        head("GET http://h/ HTTP/1.1\nX: a\rb\n"),
        head("GET http://h/ HTTP/1.1\n" + "X: y\n" * 101),
    ],
)
def test_malformed_heads(raw: bytes) -> None:
    with pytest.raises(Refusal) as caught:
        parse_request_head(raw)
    assert caught.value.reason in ("malformed", "head-too-large")


@pytest.mark.parametrize(
    ("fields", "framing"),
    [
        ("", ("none", 0)),
        ("Content-Length: 12\n", ("length", 12)),
        ("Content-Length: 5\nContent-Length: 5\n", ("length", 5)),
        ("Transfer-Encoding: chunked\n", ("chunked", 0)),
    ],
)
def test_body_framing(fields: str, framing: tuple[str, int]) -> None:
    assert body_framing(parse_request_head(head("POST http://h/ HTTP/1.1\n" + fields))) == framing


@pytest.mark.parametrize(
    "fields",
    [
        "Content-Length: 5\nContent-Length: 6\n",
        "Content-Length: -1\n",
        "Content-Length: 1e3\n",
        "Transfer-Encoding: gzip, chunked\n",
        "Transfer-Encoding: chunked\nContent-Length: 4\n",
        "Transfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
    ],
)
def test_ambiguous_framing_refused(fields: str) -> None:
    with pytest.raises(Refusal, match="malformed"):
        body_framing(parse_request_head(head("POST http://h/ HTTP/1.1\n" + fields)))


def test_upstream_head_drops_hop_by_hop_and_proxy_fields() -> None:
    parsed = parse_request_head(
        head(
            "POST http://h.example:8080/x?y=1 HTTP/1.1\n"
            "Host: evil.example\n"
            "Authorization: Bearer t\n"
            "Proxy-Authorization: Basic p\n"
            "Proxy-Connection: keep-alive\n"
            "Connection: keep-alive, X-Secret-Hop\n"
            "X-Secret-Hop: 1\n"
            "Keep-Alive: 5\n"
            "Upgrade: h2c\n"
            "TE: trailers\n"
            "Content-Length: 3\n"
        )
    )
    out = upstream_request_head(parsed, classify(parsed)).decode()
    assert out == (
        "POST /x?y=1 HTTP/1.1\r\nHost: h.example:8080\r\nAuthorization: Bearer t\r\n"
        "Content-Length: 3\r\nConnection: close\r\n\r\n"
    )
    port80 = parse_request_head(head("GET http://h.example/ HTTP/1.1\n"))
    assert upstream_request_head(port80, classify(port80)).startswith(
        b"GET / HTTP/1.1\r\nHost: h.example\r\n"
    )


def test_response_head_says_close() -> None:
    response = parse_response_head(
        head("HTTP/1.1 200 OK\nConnection: keep-alive\nKeep-Alive: timeout=5\nContent-Length: 2\n")
    )
    assert downstream_response_head(response) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    )
    interim = parse_response_head(head("HTTP/1.1 100 Continue\n"))
    assert downstream_response_head(interim) == b"HTTP/1.1 100 Continue\r\n\r\n"
    with pytest.raises(Refusal, match="upstream-malformed"):
        parse_response_head(head("HTTP/1.1 2000 OK\n"))
    with pytest.raises(Refusal, match="upstream-malformed"):
        parse_response_head(head("ICY 200 OK\n"))


def test_chunk_sizes() -> None:
    assert parse_chunk_size(b"1a\r\n") == 26
    assert parse_chunk_size(b"0;ext=1\r\n") == 0
    for bad in (b"\r\n", b"-1\r\n", b"zz\r\n", b"1a\n", b"1" * 17 + b"\r\n", b" 1\r\n"):
        with pytest.raises(Refusal, match="malformed"):
            parse_chunk_size(bad)
