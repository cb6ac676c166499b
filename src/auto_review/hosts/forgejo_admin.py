"""Forgejo/Gitea set-up calls: repository webhooks and the bot's access token.

These serve the operator commands ``auto-review webhook`` and ``auto-review auth init``,
not the review pipeline. Same HTTP stack as the forge client (:class:`ForgeHttp`: retries,
deadline, error mapping that never quotes a URL, header or body). Credentials are passed
per call and never kept.

Gitea v1 API: ``GET /user``, ``GET /repos/search``, ``GET /repos/issues/search`` (what
the token can reach), ``GET /repos/{owner}/{repo}/pulls/{index}`` (for ``webhook test``),
``GET|POST /repos/{owner}/{repo}/hooks``, ``PATCH|DELETE
/repos/{owner}/{repo}/hooks/{id}``, the same under ``/orgs/{org}/hooks`` for an
organisation's hook (it fires for every repository of the organisation), and
``POST /users/{username}/tokens`` (basic auth with the account's password; the answer's
``sha1`` is the token, shown only this once).
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from auto_review.hosts.base import HostAuthError, HostResponseError
from auto_review.hosts.comment_pages import collect_all_pages
from auto_review.hosts.forgejo import api_root
from auto_review.hosts.http import ForgeHttp, json_body

USER_AGENT = "auto-review (forgejo set-up)"
# What the gateway handles: pull request events and (chat) issue comments.
HOOK_EVENTS = ("pull_request", "issue_comment")
# What ``token_reach`` asks to learn which scope categories a token holds: Gitea answers
# 403 on a route whose category the token lacks. A read call cannot tell read from write,
# and the forge shows no token its own scopes (listing tokens needs the password).
SCOPE_PROBES = (
    ("user", "/user"),
    ("repository", "/repos/search"),
    ("issue", "/repos/issues/search"),
)
# The scopes the bot needs: read pull requests and files, post reviews, comments and
# statuses, read its own account.
BOT_TOKEN_SCOPES = ("write:repository", "write:issue", "read:user")


@dataclass(frozen=True, slots=True)
class Hook:
    id: int
    type: str
    url: str
    content_type: str
    events: tuple[str, ...]
    active: bool


def _segment(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class HookOwner:
    """Where a webhook lives: one repository, or an organisation (all its repositories)."""

    owner: str
    repo: str | None = None  # None: the organisation ``owner``

    @property
    def hooks_path(self) -> str:
        if self.repo is None:
            return f"/orgs/{_segment(self.owner)}/hooks"
        return f"/repos/{_segment(self.owner)}/{_segment(self.repo)}/hooks"

    @property
    def label(self) -> str:
        return f"organisation {self.owner}" if self.repo is None else f"{self.owner}/{self.repo}"


def _hook(operation: str, item: Any) -> Hook:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise HostResponseError(operation, "a hook without an id")
    raw_config, raw_events = item.get("config"), item.get("events")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    events: list[Any] = raw_events if isinstance(raw_events, list) else []
    return Hook(
        id=item["id"],
        type=str(item.get("type", "")),
        url=str(config.get("url", "")),
        content_type=str(config.get("content_type", "")),
        events=tuple(str(e) for e in events),
        active=bool(item.get("active", False)),
    )


class ForgejoAdmin:
    """Webhook and token calls against one Forgejo/Gitea instance."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> None:
        self._http = ForgeHttp(
            api_root(base_url), timeout=timeout, user_agent=USER_AGENT, tls=tls, transport=transport
        )
        self.page_size = page_size
        self.max_pages = max_pages

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ForgejoAdmin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @staticmethod
    def _token_headers(token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}", "Accept": "application/json"}

    async def current_login(self, token: str) -> str:
        """The login of the token's account (``GET /user``)."""
        operation = "forgejo get user"
        response = await self._http.request(
            operation, "GET", "/user", headers=self._token_headers(token)
        )
        body = json_body(operation, response)
        if not isinstance(body, dict) or not isinstance(body.get("login"), str):
            raise HostResponseError(operation, "user object without login", 200)
        return str(body["login"])

    async def token_reach(self, token: str) -> dict[str, bool]:
        """For each scope category of :data:`SCOPE_PROBES`: whether a read call in it is
        allowed (False on 403; other failures raise)."""
        reach: dict[str, bool] = {}
        for category, path in SCOPE_PROBES:
            try:
                await self._http.request(
                    f"forgejo probe {category} scope",
                    "GET",
                    path,
                    headers=self._token_headers(token),
                    params={"limit": 1} if path != "/user" else None,
                )
                reach[category] = True
            except HostAuthError as exc:
                if exc.status != 403:
                    raise
                reach[category] = False
        return reach

    async def pull_request_json(
        self, owner: str, repo: str, number: int, token: str
    ) -> dict[str, Any]:
        """The forge's own pull request object (``webhook test`` builds its event from it)."""
        operation = "forgejo get pull request"
        response = await self._http.request(
            operation,
            "GET",
            f"/repos/{_segment(owner)}/{_segment(repo)}/pulls/{number}",
            headers=self._token_headers(token),
        )
        body = json_body(operation, response)
        if not isinstance(body, dict):
            raise HostResponseError(operation, "not a pull request object", 200)
        return body

    async def list_hooks(self, where: HookOwner, token: str) -> list[Hook]:
        operation = "forgejo list webhooks"

        def fetch_page(page: int) -> Awaitable[httpx.Response]:
            return self._http.request(
                operation,
                "GET",
                where.hooks_path,
                headers=self._token_headers(token),
                params={"page": page, "limit": self.page_size},
            )

        return await collect_all_pages(
            operation,
            max_pages=self.max_pages,
            fetch_page=fetch_page,
            parse_item=lambda item: _hook(operation, item),
        )

    async def create_hook(self, where: HookOwner, token: str, *, url: str, secret: str) -> Hook:
        operation = "forgejo create webhook"
        body = {
            "type": "gitea",  # Forgejo accepts it too; the gateway takes either signature
            "config": {"url": url, "content_type": "json", "secret": secret},
            "events": list(HOOK_EVENTS),
            "active": True,
        }
        response = await self._http.request(
            operation,
            "POST",
            where.hooks_path,
            headers=self._token_headers(token),
            json=body,
            idempotent=False,
            expect=(201,),
        )
        return _hook(operation, json_body(operation, response))

    async def edit_hook(
        self, where: HookOwner, token: str, hook_id: int, *, url: str, secret: str
    ) -> Hook:
        operation = "forgejo edit webhook"
        body = {
            "config": {"url": url, "content_type": "json", "secret": secret},
            "events": list(HOOK_EVENTS),
            "active": True,
        }
        response = await self._http.request(
            operation,
            "PATCH",
            f"{where.hooks_path}/{hook_id}",
            headers=self._token_headers(token),
            json=body,
            idempotent=True,
        )
        return _hook(operation, json_body(operation, response))

    async def delete_hook(self, where: HookOwner, token: str, hook_id: int) -> None:
        await self._http.request(
            "forgejo delete webhook",
            "DELETE",
            f"{where.hooks_path}/{hook_id}",
            headers=self._token_headers(token),
            expect=(204,),
        )

    async def create_token(
        self, username: str, password: str, *, name: str, scopes: tuple[str, ...]
    ) -> str:
        """Mint an access token for ``username`` (basic auth); return it."""
        operation = "forgejo create access token"
        basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        response = await self._http.request(
            operation,
            "POST",
            f"/users/{_segment(username)}/tokens",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            json={"name": name, "scopes": list(scopes)},
            idempotent=False,
            expect=(201,),
        )
        answer = json_body(operation, response)
        token = answer.get("sha1") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise HostResponseError(operation, "the answer holds no token")
        return token
