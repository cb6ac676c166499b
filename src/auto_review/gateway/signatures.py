"""Webhook signature verification (HMAC-SHA256 of the raw request body).

Runs before anything else looks at a delivery: no JSON parsing, no logging of the body.
The comparison is constant-time (hmac.compare_digest on the raw digests). Exceptions
carry the HTTP status the gateway answers with, and their messages never contain the
secret, the expected digest or the supplied header value.

Accepted forms (surrounding whitespace is ignored; hex digits in either case):
  Forgejo/Gitea  X-Forgejo-Signature or X-Gitea-Signature: <64 hex>
  GitHub         X-Hub-Signature-256: sha256=<64 hex>
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import ClassVar, Final

from auto_review.hosts.events import header_values

FORGEJO_SIGNATURE_HEADERS: Final = ("X-Forgejo-Signature", "X-Gitea-Signature")
GITHUB_SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_GITHUB_PREFIX: Final = "sha256="

_HEX_DIGEST_RE: Final = re.compile(r"[0-9A-Fa-f]{64}", re.ASCII)
# HTTP optional whitespace around a field value: space and horizontal tab only.
_OWS: Final = " \t"


class SignatureError(Exception):
    """A delivery failed authentication; `status_code` is the HTTP answer."""

    status_code: ClassVar[int] = 401


class SignatureMissing(SignatureError):
    """No signature header (or an empty one): the sender is not authenticated."""

    status_code: ClassVar[int] = 401


class SignatureMalformed(SignatureError):
    """The header is present but is not a well-formed signature of the expected kind."""

    status_code: ClassVar[int] = 400


class SignatureMismatch(SignatureError):
    """A well-formed signature that does not match the body under our secret."""

    status_code: ClassVar[int] = 401


def verify_forgejo(secret: bytes, body: bytes, header: str | None) -> None:
    """Check a Forgejo/Gitea signature header value (bare hex) against the raw body."""
    value = _present(header)
    _compare(secret, body, _parse_hex(value))


def verify_github(secret: bytes, body: bytes, header: str | None) -> None:
    """Check an X-Hub-Signature-256 value ("sha256=<hex>") against the raw body.

    Any other algorithm prefix (GitHub's legacy "sha1=") or no prefix is malformed.
    """
    value = _present(header)
    algorithm, separator, digest = value.partition("=")
    if not separator or f"{algorithm.lower()}=" != _GITHUB_PREFIX:
        raise SignatureMalformed("X-Hub-Signature-256 must have the form sha256=<hex>")
    _compare(secret, body, _parse_hex(digest))


def forgejo_signature_header(headers: Mapping[str, str]) -> str | None:
    """The one signature a Forgejo/Gitea delivery carries, from either header name.

    Forgejo sends X-Forgejo-Signature and X-Gitea-Signature with the same value; Gitea
    sends only the latter. X-Forgejo-Signature is the preferred name, and when several
    copies are present they must all carry the same digest (compared case-insensitively):
    a second, different signature is refused as a mismatch instead of being ignored.
    """
    values = [
        value.strip(_OWS)
        for name in FORGEJO_SIGNATURE_HEADERS
        for value in header_values(headers, name)
    ]
    present = [value for value in values if value]
    if not present:
        return None
    preferred = present[0]  # FORGEJO_SIGNATURE_HEADERS lists X-Forgejo-Signature first
    if any(value.lower() != preferred.lower() for value in present[1:]):
        raise SignatureMismatch("signature headers disagree")
    return preferred


def github_signature_header(headers: Mapping[str, str]) -> str | None:
    """The X-Hub-Signature-256 value; repeated copies must be identical."""
    present = [value.strip(_OWS) for value in header_values(headers, GITHUB_SIGNATURE_HEADER)]
    present = [value for value in present if value]
    if not present:
        return None
    if any(value != present[0] for value in present[1:]):
        raise SignatureMismatch("signature headers disagree")
    return present[0]


def verify_forgejo_request(secret: bytes, body: bytes, headers: Mapping[str, str]) -> None:
    """Header selection and verification for POST /webhooks/forgejo in one call."""
    verify_forgejo(secret, body, forgejo_signature_header(headers))


def verify_github_request(secret: bytes, body: bytes, headers: Mapping[str, str]) -> None:
    """Header selection and verification for POST /webhooks/github in one call."""
    verify_github(secret, body, github_signature_header(headers))


def _present(header: str | None) -> str:
    if header is None:
        raise SignatureMissing("signature header is missing")
    value = header.strip(_OWS)
    if not value:
        raise SignatureMissing("signature header is empty")
    return value


def _parse_hex(text: str) -> bytes:
    if not _HEX_DIGEST_RE.fullmatch(text):
        raise SignatureMalformed("signature must be 64 hexadecimal digits (HMAC-SHA256)")
    return bytes.fromhex(text)


def _compare(secret: bytes, body: bytes, supplied: bytes) -> None:
    # An empty key would make every signature forgeable; refuse to verify with it.
    if not secret:
        raise ValueError("webhook secret is empty")
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, supplied):
        raise SignatureMismatch("signature does not match the request body")
