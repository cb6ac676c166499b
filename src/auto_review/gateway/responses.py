"""JSON answers shared by the gateway routes.

Bodies are built from fixed words and numbers chosen by the code, so an answer can never
echo request data or a setting back to the client.

Intake routes answer with a :class:`Reply` sent straight over ASGI (two messages, header
list prepared once); the operational routes use Starlette responses via
:func:`json_response`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from starlette.responses import Response
from starlette.types import Send

JSON = "application/json"
_JSON_HEADER = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]


def reply(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    header_list = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
    for name, value in (headers or {}).items():
        header_list.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return Reply(status, body, tuple(header_list))


@lru_cache(maxsize=256)
def error_reply(status: int, error: str, retry_after: int | None = None) -> Reply:
    """``{"error": ...}``; cached, since error texts are a small fixed set."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return reply(status, {"error": error}, headers)


async def send_reply(send: Send, answer: Reply) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


# The rest of an oversized body is never read; closing the connection stops the client
# from streaming it into a keep-alive connection.
TOO_LARGE = reply(413, {"error": "request body too large"}, {"Connection": "close"})
UNSUPPORTED_TYPE = reply(415, {"error": "content type must be application/json"})
BODY_INCOMPLETE = reply(400, {"error": "request body incomplete"})
SERVER_ERROR = reply(500, {"error": "internal error"})
POST_ONLY = reply(405, {"error": "method not allowed"}, {"Allow": "POST"})
ACCEPTED_ONE = reply(202, {"status": "accepted", "jobs": 1})
DUPLICATE_DELIVERY = reply(200, {"status": "duplicate", "duplicate": "delivery"})
DUPLICATE_JOB = reply(200, {"status": "duplicate", "duplicate": "job"})


def accepted(jobs: int) -> Reply:
    return ACCEPTED_ONE if jobs == 1 else reply(202, {"status": "accepted", "jobs": jobs})


def rate_limited(retry_after: int) -> Reply:
    return error_reply(429, "too many requests", retry_after)


def json_response(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return Response(body, status_code=status, headers=headers, media_type=JSON)


def error_response(status: int, error: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"error": error}, headers)


def is_json_content_type(value: str | None) -> bool:
    """True for ``application/json`` with or without parameters (charset=utf-8)."""
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == JSON
