"""`auto-review review`: not available in this version."""

from __future__ import annotations

from auto_review.cli.unimplemented import refuse


def main(argv: list[str]) -> int:
    return refuse("review", argv)
