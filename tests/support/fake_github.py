"""A loopback GitHub REST API server for tests (real HTTP on 127.0.0.1).

Speaks the GitHub App flow and the calls GitHubClient makes:

- ``GET /app`` and ``GET /repos/{o}/{r}/installation`` and
  ``POST /app/installations/{id}/access_tokens`` need an app JWT, verified like GitHub does:
  RS256 with the app's public key, ``iss`` = app id, ``exp`` no more than 10 minutes after
  ``iat``, not expired, ``iat`` not in the future. Decoded claims are kept in ``jwt_claims``.
- ``GET /repos/{o}/{r}/pulls/{n}`` and ``GET /repos/{o}/{r}/issues/comments`` need an
  unexpired installation token issued for an installation that covers the repository.

Objects are built from GitHub's own example payloads in ``reference/github`` so they carry
every field the REST description requires. Fault injection and recording come from
:class:`tests.support.fake_forgejo.LoopbackForge`.
"""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_forgejo import (
    CommentingForge,
    RecordedExchange,
    Reply,
    StoredComment,
    iso,
    link_header,
    page_of,
    parse_time,
)
from tests.support.reference import load_json, reference_path


def generate_app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _example(*parts: str) -> dict[str, Any]:
    data = load_json(reference_path("github", "webhooks-examples", *parts))
    assert isinstance(data, dict)
    return data


@dataclass(slots=True)
class IssuedToken:
    value: str
    installation_id: int
    expires_at: float


class FakeGitHub(CommentingForge):
    DEFAULT_PAGE_SIZE = 30
    MAX_PAGE_SIZE = 100

    def __init__(self, app_id: int, public_key_pem: str, *, token_lifetime: float = 3600) -> None:
        super().__init__(first_comment_id=2_000_000)
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.token_lifetime = token_lifetime
        self.installations: dict[str, int] = {}  # "owner/repo" (lower case) -> installation
        self.tokens: list[IssuedToken] = []
        self.jwt_claims: list[dict[str, Any]] = []
        self.pulls: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._pull_template = _example("pull_request", "opened.payload.json")["pull_request"]
        installation = _example("installation", "created.payload.json")["installation"]
        self._installation_template = installation
        self._user_template = installation["account"]

    # -- state -------------------------------------------------------------------------------

    def install(self, owner: str, repo: str, installation_id: int = 4242) -> None:
        self.installations[f"{owner}/{repo}".lower()] = installation_id

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def user_object(self, login: str, user_id: int = 7) -> dict[str, Any]:
        user: dict[str, Any] = copy.deepcopy(self._user_template)
        api = f"{self.url}/users/{login}"
        user.update(
            login=login,
            id=user_id,
            url=api,
            html_url=f"https://github.com/{login}",
            followers_url=f"{api}/followers",
            repos_url=f"{api}/repos",
        )
        return user

    def add_pull_request(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        head_sha: str,
        base_sha: str,
        author: str = "octocat",
        title: str = "Add a feature",
        draft: bool = False,
        state: str = "open",
        merged: bool = False,
    ) -> None:
        pull = copy.deepcopy(self._pull_template)
        pull.update(
            number=number,
            id=900_000 + number,
            url=f"{self.url}/repos/{owner}/{repo}/pulls/{number}",
            html_url=f"https://github.com/{owner}/{repo}/pull/{number}",
            title=title,
            draft=draft,
            state=state,
            merged=merged,
            user=self.user_object(author, 77),
        )
        pull["head"]["sha"] = head_sha
        pull["base"]["sha"] = base_sha
        self.pulls[(owner.lower(), repo.lower(), number)] = pull

    def comment_object(self, comment: StoredComment) -> dict[str, Any]:
        kind = "pull" if comment.on_pull else "issues"
        api_repo = f"{self.url}/repos/{comment.owner}/{comment.repo}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{api_repo}/issues/comments/{comment.id}",
            # GitHub renders PR conversation comments under /pull/N, issue ones under /issues/N
            "html_url": f"https://github.com/{comment.owner}/{comment.repo}/{kind}/"
            f"{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": f"{api_repo}/issues/{comment.issue_number}",
            "body": comment.body,
            "user": self.user_object(comment.author, 300 + len(comment.author)),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": "CONTRIBUTOR",
            "performed_via_github_app": None,
        }

    def installation_object(self, installation_id: int) -> dict[str, Any]:
        installation: dict[str, Any] = copy.deepcopy(self._installation_template)
        installation.update(
            id=installation_id,
            app_id=self.app_id,
            app_slug="auto-review",
            access_tokens_url=f"{self.url}/app/installations/{installation_id}/access_tokens",
            created_at="2026-01-01T00:00:00Z",
            updated_at="2026-01-01T00:00:00Z",
            single_file_name=None,
            suspended_by=None,
            suspended_at=None,
        )
        return installation

    def app_object(self) -> dict[str, Any]:
        return {
            "id": self.app_id,
            "slug": "auto-review",
            "node_id": f"A_{self.app_id}",
            "owner": self.user_object("acme-org", 5),
            "name": "auto-review",
            "description": "Pull request reviews",
            "external_url": "https://review.example",
            "html_url": "https://github.com/apps/auto-review",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "permissions": {"pull_requests": "write", "issues": "write", "statuses": "write"},
            "events": ["pull_request", "issue_comment"],
        }

    # -- auth ----------------------------------------------------------------------------------

    def _verify_app_jwt(self, exchange: RecordedExchange) -> bool:
        auth = exchange.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        try:
            claims = jwt.decode(
                auth.removeprefix("Bearer "),
                self.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError:
            return False
        now = time.time()
        if str(claims["iss"]) != str(self.app_id):
            return False
        if claims["exp"] - claims["iat"] > 600 or claims["iat"] > now + 1:
            return False
        self.jwt_claims.append(claims)
        return True

    def _installation_for_token(self, exchange: RecordedExchange) -> int | None:
        auth = exchange.headers.get("authorization", "")
        for scheme in ("Bearer ", "token "):
            if auth.startswith(scheme):
                value = auth.removeprefix(scheme)
                for token in self.tokens:
                    if token.value == value and token.expires_at > time.time():
                        return token.installation_id
        return None

    # -- routing -------------------------------------------------------------------------------

    def handle(self, exchange: RecordedExchange) -> Reply:
        unauthorized: Reply = (
            401,
            {},
            {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
        )
        not_found: Reply = (
            404,
            {},
            {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"},
        )
        parts = exchange.path.strip("/").split("/")
        method = exchange.method
        if method == "GET" and parts == ["app"]:
            return (200, {}, self.app_object()) if self._verify_app_jwt(exchange) else unauthorized
        if (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["app", "installations"]
            and parts[3] == "access_tokens"
        ):
            if not self._verify_app_jwt(exchange):
                return unauthorized
            installation = int(parts[2]) if parts[2].isdigit() else -1
            if installation not in self.installations.values():
                return not_found
            return 201, {}, self._issue_token(installation)
        if len(parts) < 4 or parts[0] != "repos" or method != "GET":
            return not_found
        owner, repo = parts[1], parts[2]
        covering = self.installations.get(f"{owner}/{repo}".lower())
        if parts[3:] == ["installation"]:
            if not self._verify_app_jwt(exchange):
                return unauthorized
            if covering is None:
                return not_found
            return 200, {}, self.installation_object(covering)
        token_installation = self._installation_for_token(exchange)
        if token_installation is None:
            return unauthorized
        if token_installation != covering:
            return not_found  # GitHub hides repositories the token cannot see
        if len(parts) == 5 and parts[3] == "pulls" and parts[4].isdigit():
            pull = self.pulls.get((owner.lower(), repo.lower(), int(parts[4])))
            return (200, {}, pull) if pull else not_found
        if parts[3:] == ["issues", "comments"]:
            return self._list_comments(owner, repo, exchange)
        return not_found

    def _issue_token(self, installation: int) -> dict[str, Any]:
        expires = time.time() + self.token_lifetime
        token = IssuedToken("ghs_" + secrets.token_hex(18), installation, expires)
        self.tokens.append(token)
        return {
            "token": token.value,
            "expires_at": iso(datetime.fromtimestamp(expires, UTC)),
            "permissions": {"pull_requests": "write", "issues": "write"},
            "repository_selection": "selected",
        }

    def _list_comments(self, owner: str, repo: str, exchange: RecordedExchange) -> Reply:
        query = exchange.query
        since = parse_time(query["since"][0]) if "since" in query else None
        page = int(query.get("page", ["1"])[0])
        per_page = min(int(query.get("per_page", [str(self.DEFAULT_PAGE_SIZE)])[0]), 100)
        sort = query.get("sort", ["created"])[0]
        # GitHub ignores direction without sort; with sort the default is descending.
        descending = "sort" in query and query.get("direction", ["desc"])[0] == "desc"
        matching = sorted(
            (
                c
                for c in self.comments
                if (c.owner.lower(), c.repo.lower()) == (owner.lower(), repo.lower())
                and (since is None or c.updated_at >= since)
            ),
            key=lambda c: (c.updated_at if sort == "updated" else c.created_at, c.id),
            reverse=descending,
        )
        chunk, pages = page_of(matching, page, per_page)
        link = link_header(f"{self.url}{exchange.path}", query, page, pages)
        return 200, ({"Link": link} if link else {}), [self.comment_object(c) for c in chunk]
