"""Small HTTP client for the inventory service."""

from __future__ import annotations

import time

import httpx

BASE_URL = "https://inventory.internal"
ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 0.5


def _get_with_retries(client: httpx.Client, path: str) -> httpx.Response:
    """GET with retries on 5xx answers; the last answer is returned or raised."""
    for attempt in range(ATTEMPTS):
        response = client.get(f"{BASE_URL}{path}", timeout=5.0)
        if response.status_code < 500 or attempt == ATTEMPTS - 1:
            break
        time.sleep(FIRST_BACKOFF_SECONDS * 2**attempt)
    response.raise_for_status()
    return response


def get_stock(client: httpx.Client, sku: str) -> int:
    return int(_get_with_retries(client, f"/stock/{sku}").json()["quantity"])


def get_price(client: httpx.Client, sku: str) -> int:
    return int(_get_with_retries(client, f"/price/{sku}").json()["cents"])
