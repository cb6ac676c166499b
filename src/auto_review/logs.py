"""Logging with secret redaction.

Every handler the service installs carries :class:`RedactingFilter`, which rewrites the
message, its arguments, extra fields and any exception text before a formatter sees them.
Redaction removes each configured secret value and the credentials of URLs such as
``https://user:token@host``. :func:`redact` applies the same rules to any text the program
prints outside logging (diagnostics, one-line errors).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from typing import IO, Any

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

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    # uvicorn's copy of the message with terminal colour codes: noise in a JSON log
    "color_message",
}


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
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
        text = _QUERY_TOKEN.sub(lambda m: f"{m[1]}{REDACTED}", text)
        return _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)


_redactor = Redactor()


def install_secrets(secrets: Iterable[str]) -> None:
    """Register secret values with the process-wide redactor."""
    _redactor.add(secrets)


def redact(text: str) -> str:
    """Apply the process-wide redactor to ``text``."""
    return _redactor(text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no secret survives into any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the line
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _redact_value(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(
    log_format: str = "json",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install one redacting handler on the root logger and route library loggers to it."""
    install_secrets(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries with handlers of their own would bypass redaction: send them to root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return handler
