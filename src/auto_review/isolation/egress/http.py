"""Strict parsing of the HTTP heads the egress proxy handles, and the heads it writes.

The proxy reads one request head per connection. It must be plain HTTP/1.x with CRLF line
ends, token method and header names, no folded or control characters; anything else is
``malformed``. The request target decides the kind of request:

* ``CONNECT host:port``: a tunnel;
* ``METHOD http://host[:port]/path``: plain-HTTP forwarding (absolute form);
* ``GET /.well-known/auto-review-egress/stats``: the proxy's own counters.

:class:`Refusal` carries a reason word from :data:`egress_stats.REFUSAL_REASONS` and never
any request data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from auto_review.isolation.egress.policy import (
    DEFAULT_PORTS,
    PolicyError,
    format_authority,
    normalise_host,
    parse_port,
)

STATS_PATH = "/.well-known/auto-review-egress/stats"

MAX_HEADERS = 100

# Methods a REST client or git's HTTP transport sends; CONNECT is handled apart.
FORWARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Never passed on: connection-scoped headers (RFC 9110 7.6.1) and anything for the proxy.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"})

_METHOD = re.compile(r"^[A-Z]{1,16}$")
_VERSION = re.compile(r"^HTTP/1\.[01]$")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_TARGET_CHARS = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, no spaces or controls
_STATUS_LINE = re.compile(r"^(HTTP/1\.[01]) ([1-5][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$")
_AUTHORITY = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:/?#]*)(?::(?P<port>[^:]*))?$")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})(;[\t\x20-\x7e]*)?\r\n$")


class Refusal(Exception):
    """A request the proxy does not carry out; ``reason`` is a fixed word."""

    def __init__(self, reason: str, target: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # host:port, set only once both were parsed and normalised: safe to log.
        self.target = target


@dataclass(frozen=True, slots=True)
class Head:
    start: tuple[str, str, str]  # request: method, target, version; response: version, code, text
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    kind: Literal["connect", "forward", "stats"]
    method: str
    host: str = ""  # normalised
    port: int = 0
    origin_form: str = ""  # forwarding only: path and query sent upstream

    @property
    def authority(self) -> str:
        return format_authority(self.host, self.port)


def _split_head(raw: bytes) -> tuple[str, list[str]]:
    if not raw.endswith(b"\r\n\r\n"):
        raise Refusal("malformed")
    text = raw[:-4].decode("latin-1")
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line or "\0" in line for line in lines):
        raise Refusal("malformed")
    return lines[0], lines[1:]


def _parse_fields(lines: list[str]) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise Refusal("head-too-large")
    fields: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(":")
        # A leading space is an obsolete folded line; a space before the colon is a
        # classic smuggling vector. Both are refused.
        if not sep or not _TOKEN.match(name) or not _FIELD_VALUE.match(value):
            raise Refusal("malformed")
        fields.append((name, value.strip(" \t")))
    return tuple(fields)


def parse_request_head(raw: bytes) -> Head:
    """Parse a complete request head (ending in an empty line)."""
    start, lines = _split_head(raw)
    parts = start.split(" ")
    if len(parts) != 3:
        raise Refusal("malformed")
    method, target, version = parts
    if not _METHOD.match(method) or not _VERSION.match(version):
        raise Refusal("malformed")
    if not _TARGET_CHARS.match(target):
        raise Refusal("malformed")
    return Head((method, target, version), _parse_fields(lines))


def parse_response_head(raw: bytes) -> Head:
    """Parse a complete response head; any fault is ``upstream-malformed``."""
    try:
        start, lines = _split_head(raw)
        match = _STATUS_LINE.match(start)
        if not match:
            raise Refusal("malformed")
        return Head((match[1], match[2], match[3] or ""), _parse_fields(lines))
    except Refusal:
        raise Refusal("upstream-malformed") from None


def _host_port(host_text: str, port_text: str | None, default_port: int | None) -> tuple[str, int]:
    if not host_text:
        raise Refusal("bad-host")
    try:
        host = normalise_host(host_text)
    except PolicyError:
        raise Refusal("bad-host") from None
    if port_text is None:
        if default_port is None:
            raise Refusal("bad-port", None)
        return host, default_port
    try:
        return host, parse_port(port_text)
    except PolicyError:
        raise Refusal("bad-port") from None


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    if "@" in text:
        raise Refusal("userinfo")
    match = _AUTHORITY.match(text)
    if not match:
        raise Refusal("bad-host")
    return _host_port(match["host"], match["port"], default_port)


def classify(head: Head) -> ProxyRequest:
    """What the request asks for, or a :class:`Refusal` (policy is checked elsewhere)."""
    method, target, _version = head.start
    if method == "CONNECT":
        host, port = _authority(target, None)
        return ProxyRequest("connect", method, host, port)
    if target.startswith("/"):
        if method == "GET" and target == STATS_PATH:
            return ProxyRequest("stats", method)
        raise Refusal("not-a-proxy-request")
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise Refusal("malformed")
    if scheme.lower() != "http":
        raise Refusal("scheme-not-allowed")
    if method not in FORWARD_METHODS:
        raise Refusal("method-not-allowed")
    split = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:split], rest[split:]
    if "#" in path:
        raise Refusal("malformed")
    host, port = _authority(authority, DEFAULT_PORTS["http"])
    origin = path if path.startswith("/") else "/" + path
    return ProxyRequest("forward", method, host, port, origin)


def _connection_tokens(head: Head) -> set[str]:
    tokens: set[str] = set()
    for value in head.values("connection"):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def _passed_on(head: Head) -> list[tuple[str, str]]:
    dropped = HOP_BY_HOP | _connection_tokens(head)
    return [
        (name, value)
        for name, value in head.headers
        if name.lower() not in dropped and not name.lower().startswith("proxy-")
    ]


def body_framing(head: Head) -> tuple[Literal["none", "length", "chunked"], int]:
    """How the request body is delimited; ambiguous framing is ``malformed``."""
    lengths = head.values("content-length")
    encodings = head.values("transfer-encoding")
    if encodings:
        if lengths or len(encodings) != 1 or encodings[0].lower() != "chunked":
            raise Refusal("malformed")
        return "chunked", 0
    if not lengths:
        return "none", 0
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 15:
        raise Refusal("malformed")
    return "length", int(lengths[0])


def upstream_request_head(head: Head, request: ProxyRequest) -> bytes:
    """The head sent to the target: origin form, own Host, no hop-by-hop or Proxy-* fields."""
    host_value = request.authority.removesuffix(":80") if request.port == 80 else request.authority
    lines = [f"{request.method} {request.origin_form} HTTP/1.1", f"Host: {host_value}"]
    lines += [f"{name}: {value}" for name, value in _passed_on(head) if name.lower() != "host"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def downstream_response_head(head: Head) -> bytes:
    """The upstream's response head for the client, saying the connection will close."""
    version, code, text = head.start
    lines = [f"{version} {code} {text}".rstrip(" ")]
    lines += [f"{name}: {value}" for name, value in _passed_on(head)]
    if not code.startswith("1"):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_chunk_size(line: bytes) -> int:
    match = _CHUNK_SIZE.match(line)
    if not match:
        raise Refusal("malformed")
    return int(match[1], 16)


STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def simple_response(
    status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {STATUS_TEXT[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
