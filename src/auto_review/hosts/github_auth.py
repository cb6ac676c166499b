"""GitHub App authentication: app JWTs and cached installation access tokens.

- The app JWT is RS256-signed with the app's private key: ``iss`` = app id, ``iat`` backdated
  60 s against clock drift, ``exp`` = ``iat`` + 10 min (GitHub's maximum). It is reused until
  a minute before it expires.
- ``GET /repos/{owner}/{repo}/installation`` (app JWT) finds the installation for a repo;
  the id is cached per repository.
- ``POST /app/installations/{id}/access_tokens`` (app JWT) exchanges it for an installation
  token (valid one hour on github.com); the token is cached per installation and renewed
  when what remains falls below a quarter of its lifetime (``expires_at`` less the time it
  was received) or ``refresh_margin`` seconds, whichever is shorter: an hour's token lives
  55 minutes in the cache, a two-minute one 90 seconds. One exchange at a time per installation.
  If the exchange answers 404 for a cached installation id (the App was reinstalled), the id
  is looked up again once.

The key, the JWT and the tokens live only in private attributes; nothing here puts them in a
repr, an exception or a log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from auto_review.core.refs import RepoRef
from auto_review.hosts.base import HostAuthError, HostNotFound, HostResponseError, repo_path
from auto_review.hosts.http import ForgeHttp, json_body

JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 600  # exp - iat; GitHub refuses more than 10 minutes
JWT_REUSE_MARGIN_SECONDS = 60
# An installation token is renewed once less than this share of its lifetime remains
# (bounded by the refresh margin), so short-lived tokens are still reused.
TOKEN_RENEW_FRACTION = 0.25

GITHUB_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}


def load_app_key(private_key_pem: str) -> RSAPrivateKey:
    """Parse the App's PEM private key; the error never quotes the key."""
    try:
        key = load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise HostAuthError("github app key", "not a readable PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise HostAuthError("github app key", "GitHub App keys are RSA keys")
    return key


@dataclass(slots=True)
class _CachedToken:
    value: str = field(repr=False)
    expires_at: float
    renew_at: float = 0.0  # when a cached installation token is exchanged for a new one


def renew_time(received_at: float, expires_at: float, margin: float) -> float:
    """When to stop reusing a token received at ``received_at``: a quarter of its lifetime,
    at most ``margin``, before it expires (at once when it arrived already expired)."""
    lifetime = max(expires_at - received_at, 0.0)
    return expires_at - min(margin, lifetime * TOKEN_RENEW_FRACTION)


class GitHubAppAuth:
    """Produces the ``Authorization`` header values the GitHub client needs."""

    def __init__(
        self,
        app_id: str,
        private_key_pem: str,
        http: ForgeHttp,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not app_id.isdigit():
            raise ValueError("the GitHub App id must be numeric")
        self.app_id = app_id
        self._key = load_app_key(private_key_pem)
        self._http = http
        self._clock = clock
        self.refresh_margin = refresh_margin
        self._jwt: _CachedToken | None = None
        self._installations: dict[str, int] = {}
        self._tokens: dict[int, _CachedToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"GitHubAppAuth(app_id={self.app_id!r})"

    def app_jwt(self) -> str:
        """A signed app JWT, reused until shortly before it expires."""
        now = self._clock()
        cached = self._jwt
        if cached is not None and cached.expires_at - JWT_REUSE_MARGIN_SECONDS > now:
            return cached.value
        issued = int(now) - JWT_BACKDATE_SECONDS
        expires = issued + JWT_LIFETIME_SECONDS
        token = jwt.encode(
            {"iat": issued, "exp": expires, "iss": self.app_id}, self._key, algorithm="RS256"
        )
        self._jwt = _CachedToken(token, float(expires))
        return token

    def app_headers(self) -> dict[str, str]:
        return {**GITHUB_HEADERS, "Authorization": f"Bearer {self.app_jwt()}"}

    async def installation_id(self, repo: RepoRef) -> int:
        key = repo.full_name.lower()  # GitHub names are case-insensitive
        cached = self._installations.get(key)
        if cached is not None:
            return cached
        operation = "github installation lookup"
        response = await self._http.request(
            operation,
            "GET",
            f"{repo_path(repo)}/installation",
            headers=self.app_headers(),
        )
        body = json_body(operation, response)
        installation = body.get("id") if isinstance(body, dict) else None
        if not isinstance(installation, int):
            raise HostResponseError(operation, "installation without an id", response.status_code)
        self._installations[key] = installation
        return installation

    async def installation_token(self, repo: RepoRef) -> str:
        key = repo.full_name.lower()
        was_cached = key in self._installations
        installation = await self.installation_id(repo)
        try:
            return await self._token_for(installation)
        except HostNotFound:
            # The cached installation may be gone (App reinstalled: new id). Look it up
            # again once; a fresh lookup that still fails is the real answer.
            self._installations.pop(key, None)
            if not was_cached:
                raise
        return await self._token_for(await self.installation_id(repo))

    async def _token_for(self, installation: int) -> str:
        lock = self._locks.setdefault(installation, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation)
            if cached is not None and cached.renew_at > self._clock():
                return cached.value
            fresh = await self._exchange(installation)
            self._tokens[installation] = fresh
            return fresh.value

    def forget_token(self, repo: RepoRef, refused: str | None = None) -> None:
        """Drop the cached token (and installation) of ``repo``, e.g. after a 401. With
        ``refused``, only while that is still the cached token: a caller refused at the
        same time as another one then uses the token the other one minted."""
        key = repo.full_name.lower()
        installation = self._installations.get(key)
        if installation is None:
            return
        cached = self._tokens.get(installation)
        if refused is not None and cached is not None and cached.value != refused:
            return
        del self._installations[key]
        self._tokens.pop(installation, None)

    async def _exchange(self, installation: int) -> _CachedToken:
        operation = "github installation token"
        response = await self._http.request(
            operation,
            "POST",
            f"/app/installations/{installation}/access_tokens",
            headers=self.app_headers(),
            idempotent=True,  # a second token for the same installation is harmless
            expect=(201,),
        )
        body = json_body(operation, response)
        token = body.get("token") if isinstance(body, dict) else None
        expires_at = body.get("expires_at") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires_at, str):
            raise HostResponseError(operation, "token response lacks token or expires_at", 201)
        try:
            expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            raise HostResponseError(operation, "expires_at is not an ISO 8601 time", 201) from None
        if expiry.tzinfo is None:
            raise HostResponseError(operation, "expires_at has no time zone", 201)
        expires = expiry.timestamp()
        return _CachedToken(token, expires, renew_time(self._clock(), expires, self.refresh_margin))
