"""URL slugs from titles."""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def slugify(title: str, max_length: int = 60) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NOT_WORD.sub("-", ascii_title.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "untitled"
