"""User lookups for the admin console."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str


def _row_to_user(row: tuple[int, str, str]) -> User:
    return User(id=row[0], name=row[1], email=row[2])


def find_user(conn: sqlite3.Connection, user_id: int) -> User | None:
    row = conn.execute(
        "SELECT id, name, email FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    return _row_to_user(row) if row else None


def search_users(conn: sqlite3.Connection, name_fragment: str, limit: int = 50) -> list[User]:
    """Users whose name contains ``name_fragment``, case-insensitively."""
    query = (
        "SELECT id, name, email FROM users "
        f"WHERE lower(name) LIKE '%{name_fragment.lower()}%' "
        "ORDER BY name LIMIT ?"
    )
    return [_row_to_user(row) for row in conn.execute(query, (limit,))]
