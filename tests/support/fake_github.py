"""A loopback GitHub REST API server for tests (real HTTP on 127.0.0.1).

Speaks the GitHub App flow and the calls GitHubClient makes:

- ``GET /app`` and ``GET /repos/{o}/{r}/installation`` and
  ``POST /app/installations/{id}/access_tokens`` need an app JWT, verified like GitHub does:
  RS256 with the app's public key, ``iss`` = app id, ``exp`` no more than 10 minutes after
  ``iat``, not expired, ``iat`` not in the future. Decoded claims are kept in ``jwt_claims``.
- ``GET /repos/{o}/{r}/pulls/{n}`` and ``GET /repos/{o}/{r}/issues/comments`` need an
  unexpired installation token issued for an installation that covers the repository.

Review pipeline endpoints (installation token): ``GET /repos/{o}/{r}/pulls/{n}`` (JSON, or
the diff with ``Accept: application/vnd.github.diff``), ``/pulls/{n}/files``,
``GET|POST /pulls/{n}/reviews``, ``GET /pulls/{n}/comments``, ``GET|POST /issues/{n}/comments``,
``GET /contents/{path}?ref=`` (base64 JSON up to ``contents_inline_limit`` bytes, above it
``encoding: "none"`` as GitHub does past 1 MB; raw bytes with ``Accept:
application/vnd.github.raw+json``), ``POST /statuses/{sha}`` (422 above 140 characters of
description). State and the test API (``add_pull_request``, ``set_diff``, ``add_file``,
``add_review``, ``posted_reviews``, ``statuses``, ``issue_comments``) come from
:class:`tests.support.fake_forgejo.ReviewingForge`; posts are authored by
``{app_slug}[bot]``, and a review comment on a line outside the diff is answered 422
("Line could not be resolved") as on GitHub. ``revoke_tokens()`` invalidates every issued
installation token; ``token_exchanges`` counts every token ever issued, and
``token_lifetime`` sets how long the next ones live.

Git smart HTTP: ``serve_git(project_root)`` serves ``/<owner>/<repo>.git`` from bare
repositories under ``project_root`` on the same host:port (start the fake with ``tls=`` for
https), to user ``x-access-token`` with a live installation token as password; anything
else is a 401, as on github.com. ``revoke_at_next_git(n)`` revokes every token when each of
the next ``n`` git requests arrives (that request is refused): a token revoked between the
API calls and the fetch.

Objects are built from GitHub's own example payloads in ``reference/github`` so they carry
every field the REST description requires. Fault injection and recording come from
:class:`tests.support.fake_forgejo.LoopbackForge`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_forgejo import (
    DiffFile,
    RecordedExchange,
    Reply,
    ReviewingForge,
    StoredComment,
    StoredReview,
    StoredReviewComment,
    StoredStatus,
    iso,
    link_header,
    page_of,
    parse_time,
)
from tests.support.git_http_backend import GitHttpBackend
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


DIFF_MEDIA_TYPE = "application/vnd.github.diff"
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"
CONTENTS_INLINE_LIMIT = 1024 * 1024  # GitHub leaves content out above 1 MB


class FakeGitHub(ReviewingForge):
    DEFAULT_PAGE_SIZE = 30
    MAX_PAGE_SIZE = 100
    review_state = "COMMENTED"

    def __init__(
        self,
        app_id: int,
        public_key_pem: str,
        *,
        token_lifetime: float = 3600,
        app_slug: str = "auto-review",
        contents_inline_limit: int = CONTENTS_INLINE_LIMIT,
        clock: Callable[[], float] = time.time,  # token expiry and JWT times
    ) -> None:
        super().__init__(first_comment_id=2_000_000, first_review_id=3_000_000)
        self.app_slug = app_slug
        self.bot_login = f"{app_slug}[bot]"
        self.contents_inline_limit = contents_inline_limit
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.installations: dict[str, int] = {}  # "owner/repo" (lower case) -> installation
        self.tokens: list[IssuedToken] = []  # live ones: revoke_tokens() clears it
        self.token_exchanges = 0  # every token ever issued
        self.git: GitHttpBackend | None = None  # see serve_git
        self._git_revocations = 0
        self.jwt_claims: list[dict[str, Any]] = []
        self.pulls: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._pull_template = _example("pull_request", "opened.payload.json")["pull_request"]
        installation = _example("installation", "created.payload.json")["installation"]
        self._installation_template = installation
        self._user_template = installation["account"]

    # -- state -------------------------------------------------------------------------------

    def repo_key(self, owner: str, repo: str) -> tuple[str, str]:
        return owner.lower(), repo.lower()  # GitHub names are case-insensitive

    def install(self, owner: str, repo: str, installation_id: int = 4242) -> None:
        self.installations[f"{owner}/{repo}".lower()] = installation_id

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def serve_git(self, project_root: Path) -> GitHttpBackend:
        self.git = GitHttpBackend(
            project_root, "x-access-token", "", api_prefix=None, accepts=self._git_accepts
        )
        self.passthrough = self.git
        return self.git

    def revoke_at_next_git(self, times: int = 1) -> None:
        self._git_revocations = times

    def _git_accepts(self, username: str, password: str) -> bool:
        now = self.clock()
        live = any(t.value == password and t.expires_at > now for t in self.tokens)
        if not live or username != "x-access-token":
            return False
        if self._git_revocations > 0:
            self._git_revocations -= 1
            self.revoke_tokens()
            return False
        return True

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
        body: str | None = "",
        labels: tuple[str, ...] = (),
        base_branch: str = "main",
        diff: bytes | str | None = None,
        clone_url: str | None = None,  # e.g. a loopback git server; default: the forge's own
    ) -> None:
        pull = copy.deepcopy(self._pull_template)
        label_template = pull["labels"][0] if pull["labels"] else {}
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
            body=body,
            labels=[
                {**label_template, "id": i, "node_id": f"LA_{i}", "name": name}
                for i, name in enumerate(labels, 1)
            ],
        )
        pull["head"]["sha"] = head_sha
        pull["base"]["sha"] = base_sha
        pull["base"]["ref"] = base_branch
        pull["base"]["repo"]["clone_url"] = clone_url or f"https://github.com/{owner}/{repo}.git"
        self.pulls[(owner.lower(), repo.lower(), number)] = pull
        if diff is not None:
            self.set_diff(owner, repo, number, diff)

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
                # The times are checked below against the fake's own clock.
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return False
        now = self.clock()
        if str(claims["iss"]) != str(self.app_id):
            return False
        if claims["exp"] - claims["iat"] > 600 or claims["iat"] > now + 1 or claims["exp"] <= now:
            return False
        self.jwt_claims.append(claims)
        return True

    def _installation_for_token(self, exchange: RecordedExchange) -> int | None:
        auth = exchange.headers.get("authorization", "")
        for scheme in ("Bearer ", "token "):
            if auth.startswith(scheme):
                value = auth.removeprefix(scheme)
                for token in self.tokens:
                    if token.value == value and token.expires_at > self.clock():
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
        if len(parts) < 4 or parts[0] != "repos":
            return not_found
        owner, repo = parts[1], parts[2]
        covering = self.installations.get(f"{owner}/{repo}".lower())
        if parts[3:] == ["installation"] and method == "GET":
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
        rest = parts[3:]
        if method == "GET" and rest == ["issues", "comments"]:
            return self._list_comments(owner, repo, exchange)
        if method == "GET" and rest[0] == "contents" and len(rest) > 1:
            return self._contents(owner, repo, unquote("/".join(rest[1:])), exchange)
        if method == "POST" and len(rest) == 2 and rest[0] == "statuses":
            return self._create_status(owner, repo, rest[1], exchange)
        if len(rest) >= 2 and rest[0] in ("pulls", "issues") and rest[1].isdigit():
            number = int(rest[1])
            if rest[0] == "issues":
                return self._issue(owner, repo, number, rest[2:], method, exchange)
            if (owner.lower(), repo.lower(), number) in self.pulls:
                return self._pull(owner, repo, number, rest[2:], method, exchange)
        return not_found

    # -- review pipeline endpoints ---------------------------------------------------------------

    def _error(self, status: int, message: str) -> Reply:
        return status, {}, {"message": message, "documentation_url": "https://docs.github.com/rest"}

    def _pull(
        self, owner: str, repo: str, number: int, rest: list[str], method: str, exchange: Any
    ) -> Reply:
        key = (owner.lower(), repo.lower(), number)
        if method == "GET" and not rest:
            if exchange.headers.get("accept") == DIFF_MEDIA_TYPE:
                diff = self.diffs.get(key, b"")
                return 200, {"Content-Type": f"{DIFF_MEDIA_TYPE}; charset=utf-8"}, diff
            return 200, {}, self.pulls[key]
        if method == "GET" and rest == ["files"]:
            files = [self.diff_entry_object(owner, repo, f) for f in self.diff_files(*key)]
            return self._paged(files, exchange)
        if method == "GET" and rest == ["reviews"]:
            return self._paged([self.review_object(r) for r in self.reviews_of(*key)], exchange)
        if method == "POST" and rest == ["reviews"]:
            return self._create_review(owner, repo, number, exchange)
        if method == "GET" and rest == ["comments"]:
            comments = [
                self.review_comment_object(r, c) for r in self.reviews_of(*key) for c in r.comments
            ]
            return self._paged(comments, exchange)
        return self._error(404, "Not Found")

    def _issue(
        self, owner: str, repo: str, number: int, rest: list[str], method: str, exchange: Any
    ) -> Reply:
        if rest != ["comments"]:
            return self._error(404, "Not Found")
        if method == "GET":
            listed = sorted(self.issue_comments(owner, repo, number), key=lambda c: c.id)
            return self._paged([self.comment_object(c) for c in listed], exchange)
        if method == "POST":
            payload = exchange.json_body()
            if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
                return self._error(422, "body is required")
            on_pull = (owner.lower(), repo.lower(), number) in self.pulls
            comment_id = self.add_comment(
                owner, repo, number, author=self.bot_login, body=payload["body"], on_pull=on_pull
            )
            stored = next(c for c in self.comments if c.id == comment_id)
            return 201, {}, self.comment_object(stored)
        return self._error(404, "Not Found")

    def _create_review(self, owner: str, repo: str, number: int, exchange: Any) -> Reply:
        payload = exchange.json_body()
        if not isinstance(payload, dict):
            return self._error(422, "Invalid request")
        event = payload.get("event")
        if event in ("COMMENT", "REQUEST_CHANGES") and not payload.get("body"):
            return self._error(422, "Body is required for COMMENT and REQUEST_CHANGES")
        placed = []
        for comment in payload.get("comments") or []:
            side = {"RIGHT": "new", "LEFT": "old"}.get(comment.get("side", "RIGHT"))
            line = comment.get("line")
            if side is None or not isinstance(line, int):
                return self._error(422, "comments need line and side RIGHT or LEFT")
            problem = self.comment_problem(owner, repo, number, comment.get("path", ""), line, side)
            if problem:
                return self._error(422, f"Line could not be resolved: {problem}")
            placed.append((comment["path"], line, side, comment.get("body", "")))
        head = self.pulls[(owner.lower(), repo.lower(), number)]["head"]["sha"]
        review = self._store_review(
            owner,
            repo,
            number,
            self.bot_login,
            payload.get("commit_id") or head,
            payload.get("body") or "",
            via_api=True,
        )
        for path, line, side, text in placed:
            self._store_review_comment(review, path, line, side, text)
        return 200, {}, self.review_object(review)

    def _create_status(self, owner: str, repo: str, sha: str, exchange: Any) -> Reply:
        payload = exchange.json_body()
        if not isinstance(payload, dict) or payload.get("state") not in (
            "error",
            "failure",
            "pending",
            "success",
        ):
            return self._error(422, "Validation Failed")
        if len(payload.get("description") or "") > 140:
            return self._error(422, "description is too long (maximum is 140 characters)")
        status = self._store_status(owner, repo, sha, payload, self.bot_login)
        return 201, {}, self.status_object(status)

    def _contents(self, owner: str, repo: str, path: str, exchange: Any) -> Reply:
        ref = exchange.query.get("ref", [""])[0]
        content = self.files.get((owner.lower(), repo.lower(), ref, path))
        if content is None:
            return self._error(404, "Not Found")
        if exchange.headers.get("accept") == RAW_MEDIA_TYPE:
            return 200, {"Content-Type": "application/vnd.github.raw"}, content
        return 200, {}, self.content_file_object(owner, repo, ref, path, content)

    def _paged(self, items: list[Any], exchange: Any) -> Reply:
        query = exchange.query
        page = int(query.get("page", ["1"])[0])
        per_page = min(int(query.get("per_page", [str(self.DEFAULT_PAGE_SIZE)])[0]), 100)
        chunk, pages = page_of(items, page, per_page)
        link = link_header(f"{self.url}{exchange.path}", query, page, pages)
        return 200, ({"Link": link} if link else {}), chunk

    # -- objects in GitHub's shapes ------------------------------------------------------------

    def bot_object(self) -> dict[str, Any]:
        bot = self.user_object(self.bot_login, 41898282)
        bot["type"] = "Bot"
        return bot

    def _author(self, login: str) -> dict[str, Any]:
        if login == self.bot_login:
            return self.bot_object()
        return self.user_object(login, 500 + len(login))

    def diff_entry_object(self, owner: str, repo: str, entry: DiffFile) -> dict[str, Any]:
        status = {"deleted": "removed", "mode": "changed"}.get(entry.status, entry.status)
        blob = f"https://github.com/{owner}/{repo}/blob/x/{entry.path}"
        item: dict[str, Any] = {
            "sha": blob_id(entry.path.encode()),
            "filename": entry.path,
            "status": status,
            "additions": entry.additions,
            "deletions": entry.deletions,
            "changes": entry.additions + entry.deletions,
            "blob_url": blob,
            "raw_url": blob.replace("/blob/", "/raw/"),
            "contents_url": f"{self.url}/repos/{owner}/{repo}/contents/{entry.path}",
            "patch": "".join(entry.hunks),
        }
        if entry.previous_path:
            item["previous_filename"] = entry.previous_path
        return item

    def review_object(self, review: StoredReview) -> dict[str, Any]:
        api = f"{self.url}/repos/{review.owner}/{review.repo}/pulls/{review.number}"
        html = f"https://github.com/{review.owner}/{review.repo}/pull/{review.number}"
        return {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": self._author(review.author),
            "body": review.body,
            "state": review.state,
            "html_url": f"{html}#pullrequestreview-{review.id}",
            "pull_request_url": api,
            "_links": {"html": {"href": html}, "pull_request": {"href": api}},
            "submitted_at": iso(review.submitted_at),
            "commit_id": review.commit_id,
            "author_association": "NONE",
        }

    def review_comment_object(
        self, review: StoredReview, comment: StoredReviewComment
    ) -> dict[str, Any]:
        api_repo = f"{self.url}/repos/{review.owner}/{review.repo}"
        html = f"https://github.com/{review.owner}/{review.repo}/pull/{review.number}"
        side = "RIGHT" if comment.side == "new" else "LEFT"
        return {
            "url": f"{api_repo}/pulls/comments/{comment.id}",
            "pull_request_review_id": review.id,
            "id": comment.id,
            "node_id": f"PRRC_{comment.id}",
            "diff_hunk": "@@ -1 +1 @@",
            "path": comment.path,
            "commit_id": review.commit_id,
            "original_commit_id": review.commit_id,
            "user": self._author(comment.author),
            "body": comment.body,
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.created_at),
            "html_url": f"{html}#discussion_r{comment.id}",
            "pull_request_url": f"{api_repo}/pulls/{review.number}",
            "author_association": "NONE",
            "_links": {
                "self": {"href": f"{api_repo}/pulls/comments/{comment.id}"},
                "html": {"href": f"{html}#discussion_r{comment.id}"},
                "pull_request": {"href": f"{api_repo}/pulls/{review.number}"},
            },
            "line": comment.line,
            "original_line": comment.line,
            "side": side,
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "subject_type": "line",
        }

    def status_object(self, status: StoredStatus) -> dict[str, Any]:
        return {
            "url": f"{self.url}/repos/{status.owner}/{status.repo}/statuses/{status.sha}",
            "avatar_url": None,
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description or None,
            "target_url": status.target_url or None,
            "context": status.context,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "creator": self.bot_object(),
        }

    def content_file_object(
        self, owner: str, repo: str, ref: str, path: str, content: bytes
    ) -> dict[str, Any]:
        api = f"{self.url}/repos/{owner}/{repo}/contents/{path}?ref={ref}"
        html = f"https://github.com/{owner}/{repo}/blob/{ref}/{path}"
        git = f"{self.url}/repos/{owner}/{repo}/git/blobs/{blob_id(content)}"
        inline = len(content) <= self.contents_inline_limit
        return {
            "type": "file",
            "encoding": "base64" if inline else "none",
            "size": len(content),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            # GitHub wraps the base64 text at 60 columns
            "content": "\n".join(_wrap(base64.b64encode(content).decode(), 60)) if inline else "",
            "sha": blob_id(content),
            "url": api,
            "git_url": git,
            "html_url": html,
            "download_url": f"https://raw.githubusercontent.com/{owner}/{repo}/{ref}/{path}",
            "_links": {"git": git, "html": html, "self": api},
        }

    def _issue_token(self, installation: int) -> dict[str, Any]:
        expires = self.clock() + self.token_lifetime
        token = IssuedToken("ghs_" + secrets.token_hex(18), installation, expires)
        self.tokens.append(token)
        self.token_exchanges += 1
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


def _wrap(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def blob_id(data: bytes) -> str:
    """Git's object id of a blob with these bytes."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()
