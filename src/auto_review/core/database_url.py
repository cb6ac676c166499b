"""``AR_DATABASE_URL``: a ``postgresql://`` URL split into checked parts.

The URL may carry the database password, so nothing here ever puts the URL, or any part of
it that could hold the password, into an error message: a malformed URL is described by
what is wrong with it. :meth:`DatabaseUrl.display` is the form logs and ``/info`` may show
(no password).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from auto_review.core.secrets import Secret

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
# sslmode values an operator may write in the URL's query; see core docs and SCALING.md.
SSL_MODES = ("verify-full", "disable")
_NAME = re.compile(r"[A-Za-z0-9_.\-$]{1,63}")
_LOOPBACK_NAMES = frozenset({"localhost"})


class DatabaseUrlError(ValueError):
    """The URL is malformed; the message describes the problem, never the URL."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    host: str
    port: int
    dbname: str
    user: str
    password: Secret | None
    sslmode: str | None  # as written in the URL's query, else None (decided by the caller)

    @property
    def is_loopback(self) -> bool:
        """The server is on this machine (loopback address or name): no TLS needed."""
        if self.host.lower() in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def display(self) -> str:
        """The URL without its password, for logs and /info."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{self.user}@{host}:{self.port}/{self.dbname}"


def parse_database_url(text: str) -> DatabaseUrl:
    """Split a ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?sslmode=MODE]`` URL."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise DatabaseUrlError("is not a valid URL (check the host and the port)") from None
    if parts.scheme not in SCHEMES:
        raise DatabaseUrlError("must start with postgresql://")
    if not parts.hostname:
        raise DatabaseUrlError("must name the database host (postgresql://USER@HOST/DBNAME)")
    if parts.fragment:
        raise DatabaseUrlError("must not have a #fragment")
    user = unquote(parts.username or "")
    if not user:
        raise DatabaseUrlError("must name the database user (postgresql://USER@HOST/DBNAME)")
    dbname = unquote(parts.path.removeprefix("/"))
    if not _NAME.fullmatch(dbname):
        raise DatabaseUrlError(
            "must name the database after the host (/DBNAME: letters, digits, _ . - $)"
        )
    if not _NAME.fullmatch(user):
        raise DatabaseUrlError("has a user name that is not letters, digits, _ . - $")
    sslmode = _sslmode(parts.query)
    password = None if parts.password is None else Secret(unquote(parts.password))
    if password is not None and not password.reveal():
        password = None
    return DatabaseUrl(
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PORT,
        dbname=dbname,
        user=user,
        password=password,
        sslmode=sslmode,
    )


def _sslmode(query: str) -> str | None:
    if not query:
        return None
    name, sep, value = query.partition("=")
    if name != "sslmode" or not sep or "&" in value:
        raise DatabaseUrlError("may only have the query parameter sslmode")
    if value not in SSL_MODES:
        raise DatabaseUrlError("has an sslmode other than verify-full or disable")
    return value
