"""Redaction: remove configured secret values and credentials from any text.

A :class:`Redactor` is built from the configured secrets (the composition root makes one
per process and hands it to logging and to whatever prints errors). Besides the secret
values, it removes the credentials of URLs such as ``https://user:token@host``, bearer
headers echoed in text and credential query parameters.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

# userinfo in URLs: scheme://user:pass@host or scheme://token@host
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)[^\s/@]+@")
# common credential carriers in free text, e.g. an echoed header
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization|x-api-key)(\"?\s*[:=]\s*\"?)(bearer |token |basic )?[^\s\",]+"
)

# credentials passed as query parameters
_QUERY_TOKEN = re.compile(
    r"(?i)([?&](?:access_token|private_token|token|api_key|key|sig)=)[^&\s\"']+"
)

# Secrets shorter than this are not matched as bare substrings: they would redact ordinary
# words. Settings enforce 32+ characters for shared secrets anyway.
MIN_REDACTABLE = 6

class Redactor:
    """Removes known secret values and URL credentials from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            values = {s for s in (*self._secrets, *secrets) if s and len(s) >= MIN_REDACTABLE}
            # Longest first so a secret containing another is removed whole.
            self._secrets = tuple(sorted(values, key=len, reverse=True))
            self._pattern = (
                re.compile("|".join(re.escape(s) for s in self._secrets)) if self._secrets else None
            )

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        # Each pattern needs one character to match at all ("@", "=", ":" or "="): testing
        # for it first skips the regex for the short plain values most log fields are.
        if "@" in text:
            text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
        has_equals = "=" in text
        if has_equals:
            text = _QUERY_TOKEN.sub(lambda m: f"{m[1]}{REDACTED}", text)
        if has_equals or ":" in text:
            text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string inside it redacted (dicts, lists and tuples too)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self(str(value))
