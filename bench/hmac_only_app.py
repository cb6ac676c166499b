"""The floor for bench/gateway_webhooks.py: a Starlette app that only checks the HMAC.

Same server stack as the gateway (uvicorn, httptools, uvloop, no access log): it reads the
body, verifies ``X-Forgejo-Signature`` in constant time and answers 202. No parsing, no
state, no logging: what the gateway adds on top of this is its own cost.

    python3 bench/hmac_only_app.py PORT SECRET
"""

from __future__ import annotations

import hashlib
import hmac
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build_app(secret: bytes) -> Starlette:
    async def webhook(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get("x-forgejo-signature", "")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "signature mismatch"}, status_code=401)
        return JSONResponse({"status": "accepted", "jobs": 1}, status_code=202)

    return Starlette(routes=[Route("/webhooks/forgejo", webhook, methods=["POST"])])


def main() -> int:
    port, secret = int(sys.argv[1]), sys.argv[2].encode()
    uvicorn.run(
        build_app(secret),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
