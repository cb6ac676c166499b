"""Which host:port pairs the egress proxy lets the inner gateway reach.

The policy is a short list of targets built from the settings (the forge, GitHub, the LLM,
and the PostgreSQL server of ``AR_DATABASE_URL``, reached only through ``CONNECT``).
Requests name a host and a port; both are normalised (IDNA, lower case, no trailing dot,
IP literals parsed) before an exact comparison, so spellings cannot widen what is allowed.
A target configured as a name matches only that name; one configured as an IP literal
matches only that address. Nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from auto_review.config import Settings

Scheme = Literal["http", "https", "postgresql"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}

# GitHub's REST API lives on api.github.com while clones go to github.com.
GITHUB_PUBLIC_API_HOST = "api.github.com"
GITHUB_PUBLIC_GIT_HOST = "github.com"

# After IDNA encoding a host name is plain LDH labels.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")


class PolicyError(ValueError):
    """A host or port cannot be normalised, or a setting gives no usable target."""


@dataclass(frozen=True, slots=True)
class EgressTarget:
    """One allowed destination: a normalised host (name or IP literal), a port, a scheme."""

    host: str
    port: int
    scheme: Scheme
    purpose: str  # "forgejo", "github-api", "github-git", "llm", "database": logs and docs

    @property
    def is_ip_literal(self) -> bool:
        return parse_ip(self.host) is not None

    @property
    def authority(self) -> str:
        return format_authority(self.host, self.port)


def parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def normalise_host(host: str) -> str:
    """A canonical spelling: IP literals as ``ipaddress`` prints them, names IDNA-encoded.

    Raises :class:`PolicyError` for anything that is neither (empty, spaces, ``_``,
    userinfo, percent-escapes, over-long labels).
    """
    if host.startswith("[") and host.endswith("]"):
        address = parse_ip(host[1:-1])
        if address is None or address.version != 6:
            raise PolicyError("bracketed host is not an IPv6 address")
        return str(address)
    address = parse_ip(host)
    if address is not None:
        return str(address)
    name = host[:-1] if host.endswith(".") else host  # the root label is implied
    if not name or len(name) > 253:
        raise PolicyError("host name is empty or too long")
    try:
        encoded = name.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        raise PolicyError("host name is not a valid (IDNA) name") from None
    labels = encoded.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise PolicyError("host name has invalid characters")
    if all(label.isdigit() for label in labels):
        # "2130706433" or "127.1": shorthand IPv4 spellings some resolvers accept.
        raise PolicyError("host name looks like a numeric address")
    return encoded


def parse_port(text: str) -> int:
    """A decimal port 1-65535 without sign, spaces or leading zeros."""
    if not _PORT.match(text) or int(text) > 65535:
        raise PolicyError("port must be a number from 1 to 65535")
    return int(text)


def format_authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def target_from_url(url: str, purpose: str) -> EgressTarget:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise PolicyError(f"{purpose} URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise PolicyError(f"{purpose} URL must not carry credentials")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise PolicyError(f"{purpose} URL has an invalid port") from None
    return EgressTarget(
        host=normalise_host(parts.hostname),
        port=port,
        scheme="https" if scheme == "https" else "http",
        purpose=purpose,
    )


def database_target(url: str) -> EgressTarget:
    """Exactly the database's host:port. Not ``http``: the proxy never forwards a request
    to it, only tunnels bytes after ``CONNECT`` (libpq's own protocol, TLS end to end)."""
    from auto_review.core.database_url import DatabaseUrlError, parse_database_url

    try:
        database = parse_database_url(url)
    except DatabaseUrlError as exc:
        raise PolicyError(f"database URL {exc}") from None
    return EgressTarget(normalise_host(database.host), database.port, "postgresql", "database")


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The allowed targets. An empty policy allows nothing."""

    targets: tuple[EgressTarget, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """Targets for the configured forge, GitHub App and LLM; unconfigured ones add nothing.

        GitHub is allowed only when the App is configured (``AR_GITHUB_APP_ID``): the API
        URL always has a default, which must not open a path by itself. With the public
        API (``api.github.com``) git clones go to ``github.com:443``, which is added; a
        GitHub Enterprise API URL already names the host git uses.
        """
        targets: list[EgressTarget] = []
        if settings.forgejo_url:
            targets.append(target_from_url(settings.forgejo_url, "forgejo"))
        if settings.github_app_id:
            api = target_from_url(settings.github_api_url, "github-api")
            targets.append(api)
            if api.host == GITHUB_PUBLIC_API_HOST and api.scheme == "https":
                targets.append(EgressTarget(GITHUB_PUBLIC_GIT_HOST, 443, "https", "github-git"))
        if settings.llm_base_url:
            targets.append(target_from_url(settings.llm_base_url, "llm"))
        if settings.database_url is not None:
            targets.append(database_target(settings.database_url.reveal()))
        return cls(tuple(dict.fromkeys(targets)))

    def match(self, host: str, port: int) -> EgressTarget | None:
        """The configured target for an already normalised host and a port, if any."""
        for target in self.targets:
            if target.host == host and target.port == port:
                return target
        return None

    def knows_host(self, host: str) -> bool:
        return any(target.host == host for target in self.targets)

    def describe(self) -> list[str]:
        """``scheme://host:port (purpose)`` lines: no secret is part of a target."""
        return [f"{t.scheme}://{t.authority} ({t.purpose})" for t in self.targets]
