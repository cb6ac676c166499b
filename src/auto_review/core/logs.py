"""Logging with secret redaction.

Every handler the service installs carries :class:`RedactingFilter`, which rewrites the
message, its arguments, extra fields and any exception text with the process's
:class:`~auto_review.core.redaction.Redactor` before a formatter sees them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import IO, Any

from auto_review.core.redaction import Redactor

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    # uvicorn's copy of the message with terminal colour codes: noise in a JSON log
    "color_message",
}


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no secret survives into any formatter."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the line
            message = f"{record.msg!r} (unformattable arguments)"
        redact = self.redactor
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = vars(record)
        for key in fields.keys() - _STANDARD_ATTRS:  # the extra fields, found in one step
            fields[key] = redact.value(fields[key])
        return True


# One encoder for every line: json.dumps with options would build a new one per call.
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def __init__(self) -> None:
        super().__init__()
        # The date and time to the second, formatted once per second rather than per line.
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = vars(record)
        extras = fields.keys() - _STANDARD_ATTRS
        if extras:
            for key, value in fields.items():  # in the order the caller gave them
                if key in extras and not key.startswith("_"):
                    entry[key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        return _ENCODE(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(
    log_format: str = "json",
    level: str = "info",
    redactor: Redactor | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install one redacting handler on the root logger and route library loggers to it.

    ``redactor`` holds the configured secrets (the composition root builds it); without one,
    URL credentials and credential-looking headers are still removed.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter(redactor if redactor is not None else Redactor()))
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    # Neither formatter prints the caller's file and line, thread or process: a record
    # skips collecting them (a stack walk and three lookups on every line).
    logging._srcfile = None  # documented in logging's source as the switch for this
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
