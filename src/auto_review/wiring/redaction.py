"""The process's redactor: the configured secrets that logging and printed errors remove.

Logging is process-wide, so the redactor its handler uses is too; the composition root
owns it, and nothing below ``wiring`` reaches it (they are handed a
:class:`~auto_review.core.redaction.Redactor` instead). Commands register the secret
values of their settings once loaded, and print every error through :func:`redact`.
"""

from __future__ import annotations

from collections.abc import Iterable

from auto_review.core.redaction import Redactor

_PROCESS_REDACTOR = Redactor()


def process_redactor() -> Redactor:
    return _PROCESS_REDACTOR


def install_secrets(secrets: Iterable[str]) -> Redactor:
    """Register secret values with the process's redactor, and return it."""
    _PROCESS_REDACTOR.add(secrets)
    return _PROCESS_REDACTOR


def redact(text: str) -> str:
    """``text`` without any registered secret or credential-looking part."""
    return _PROCESS_REDACTOR(text)
