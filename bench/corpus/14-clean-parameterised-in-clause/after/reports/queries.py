"""Report queries over the orders database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

# SQLite's default limit on host parameters in one statement.
MAX_PARAMETERS = 999


def revenue_for_customer(conn: sqlite3.Connection, customer_id: int) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(total_cents), 0) FROM orders WHERE customer_id = ?",
        (customer_id,),
    ).fetchone()
    return int(row[0])


def revenue_by_customer(conn: sqlite3.Connection, customer_ids: Sequence[int]) -> dict[int, int]:
    """Revenue of each given customer; customers without orders map to 0."""
    totals = dict.fromkeys(customer_ids, 0)
    ids = list(totals)
    for start in range(0, len(ids), MAX_PARAMETERS):
        chunk = ids[start : start + MAX_PARAMETERS]
        placeholders = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            "SELECT customer_id, SUM(total_cents) FROM orders "
            f"WHERE customer_id IN ({placeholders}) GROUP BY customer_id",
            chunk,
        )
        for customer_id, total in rows:
            totals[customer_id] = int(total)
    return totals
