"""Small JSON responses shared by the gateway routes.

Bodies are built from fixed words and numbers chosen by the code, so an answer can never
echo request data or a setting back to the client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

JSON = "application/json"


def json_response(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return Response(body, status_code=status, headers=headers, media_type=JSON)


def error_response(status: int, error: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"error": error}, headers)


def too_large_response() -> Response:
    # The rest of an oversized body is never read; closing the connection stops the
    # client from streaming it into a keep-alive connection.
    return error_response(413, "request body too large", {"Connection": "close"})


def rate_limited_response(retry_after: int) -> Response:
    return error_response(429, "too many requests", {"Retry-After": str(retry_after)})


def unsupported_type_response() -> Response:
    return error_response(415, "content type must be application/json")


def is_json_content_type(value: str | None) -> bool:
    """True for ``application/json`` with or without parameters (charset=utf-8)."""
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == JSON
