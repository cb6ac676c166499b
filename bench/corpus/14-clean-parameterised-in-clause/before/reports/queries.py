"""Report queries over the orders database."""

from __future__ import annotations

import sqlite3


def revenue_for_customer(conn: sqlite3.Connection, customer_id: int) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(total_cents), 0) FROM orders WHERE customer_id = ?",
        (customer_id,),
    ).fetchone()
    return int(row[0])
