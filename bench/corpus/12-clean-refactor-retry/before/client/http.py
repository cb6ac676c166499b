"""Small HTTP client for the inventory service."""

from __future__ import annotations

import time

import httpx

BASE_URL = "https://inventory.internal"


def get_stock(client: httpx.Client, sku: str) -> int:
    for attempt in range(3):
        response = client.get(f"{BASE_URL}/stock/{sku}", timeout=5.0)
        if response.status_code < 500:
            response.raise_for_status()
            return int(response.json()["quantity"])
        time.sleep(0.5 * 2**attempt)
    response.raise_for_status()
    return int(response.json()["quantity"])


def get_price(client: httpx.Client, sku: str) -> int:
    for attempt in range(3):
        response = client.get(f"{BASE_URL}/price/{sku}", timeout=5.0)
        if response.status_code < 500:
            response.raise_for_status()
            return int(response.json()["cents"])
        time.sleep(0.5 * 2**attempt)
    response.raise_for_status()
    return int(response.json()["cents"])
