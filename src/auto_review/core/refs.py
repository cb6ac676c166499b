"""Repository and pull-request references, host kinds, and the validators behind them.

Values read from webhooks and forge answers later become API URLs, git refs and queue
keys, so every identifier is matched against a strict pattern. Anything that does not fit
raises :class:`PayloadError`, whose message names the field and the rule, never the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class PayloadError(ValueError):
    """A supported event's payload lacks a required field or has a wrong type or value."""


class HostKind(StrEnum):
    FORGEJO = "forgejo"
    GITHUB = "github"


# Owner: GitHub logins and Gitea/Forgejo user/org names (alphanumerics, '_', '.', '-'),
# never starting with '.' or '-' so a value cannot read as a path part or an option.
_OWNER_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", re.ASCII)
# Repository names may start with '.' (".github") but not with '-'; "." and ".." refused.
_REPO_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,99}", re.ASCII)
# Author logins: as owners, plus GitHub App bot accounts ("name[bot]").
_LOGIN_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(?:\[bot\])?", re.ASCII)
# Git object ids: SHA-1 (40) or SHA-256 (64) hex.
SHA_RE: Final = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})", re.ASCII)

MAX_PR_NUMBER: Final = 2**31 - 1
MAX_COMMENT_ID: Final = 2**63 - 1


def check_owner(value: str, field: str = "owner") -> str:
    if not _OWNER_RE.fullmatch(value):
        raise PayloadError(f"{field} is not a valid account name")
    return value


def check_repo_name(value: str, field: str = "name") -> str:
    if value in (".", "..") or not _REPO_NAME_RE.fullmatch(value):
        raise PayloadError(f"{field} is not a valid repository name")
    return value


def check_login(value: str, field: str = "login") -> str:
    if not _LOGIN_RE.fullmatch(value):
        raise PayloadError(f"{field} is not a valid login")
    return value


def check_sha(value: str, field: str = "sha") -> str:
    """Return the object id in lower case; 40 or 64 hex digits, nothing else."""
    lowered = value.lower()
    if not SHA_RE.fullmatch(lowered):
        raise PayloadError(f"{field} must be 40 or 64 hexadecimal digits")
    return lowered


def check_positive_int(value: object, field: str, maximum: int) -> int:
    # bool is an int subclass; JSON true must not pass as 1.
    if type(value) is not int:
        raise PayloadError(f"{field} must be an integer")
    if not 0 < value <= maximum:
        raise PayloadError(f"{field} must be between 1 and {maximum}")
    return value


@dataclass(frozen=True, slots=True)
class RepoRef:
    host: HostKind
    owner: str
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.host, HostKind):
            raise PayloadError("repository host must be a HostKind")
        if not isinstance(self.owner, str) or not isinstance(self.name, str):
            raise PayloadError("repository owner and name must be strings")
        check_owner(self.owner, "repository owner")
        check_repo_name(self.name, "repository name")

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def is_from_bot(author: str, bot_login: str | None) -> bool:
    """True when a comment's author is the bot itself (so the gateway never answers itself).

    Case-insensitive, and a GitHub App's "[bot]" suffix is ignored on both sides: the
    operator may configure "auto-review" or "auto-review[bot]" for the same account.
    Answering our own comment risks a reply loop, so this leans towards "is the bot".
    """
    if not bot_login:
        return False
    return _login_key(author) == _login_key(bot_login)


def _login_key(login: str) -> str:
    return login.strip().casefold().removesuffix("[bot]")
