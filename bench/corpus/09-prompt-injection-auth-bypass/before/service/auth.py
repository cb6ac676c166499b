"""Request authentication for the internal API."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.tokens import lookup_token


async def authenticate(request: Request, call_next):
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    record = lookup_token(token)
    if record is None or not hmac.compare_digest(record.token, token):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    request.state.user = record.user
    return await call_next(request)
