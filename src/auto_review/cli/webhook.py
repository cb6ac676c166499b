"""`auto-review webhook`: the gateway's webhook on a Forgejo/Gitea repository.

  auto-review webhook register --repo OWNER/NAME | --org ORG --gateway-url URL [--update]
  auto-review webhook list --repo OWNER/NAME | --org ORG | --github
  auto-review webhook unregister --repo OWNER/NAME | --org ORG --gateway-url URL
  auto-review webhook test --repo OWNER/NAME --pr N --gateway-url URL

The hook sends ``pull_request`` and ``issue_comment`` events as JSON to
``URL/webhooks/forgejo``, signed with ``AR_WEBHOOK_SECRET``, with the token of
``AR_FORGEJO_TOKEN`` (it needs admin rights on the repository). ``register`` is idempotent:
a hook already sending to that URL is left alone, and one that differs (other events,
inactive, or another gateway URL ending in ``/webhooks/forgejo``) is reported and changed
only with ``--update``. The forge never shows a hook's secret, so ``--update`` is also how
an existing hook gets the current secret. ``unregister`` deletes the hooks sending to
``URL/webhooks/forgejo`` (none is not an error). ``test`` sends the gateway a signed ping
and a signed pull request event built from the forge's objects for ``--pr`` and reports
what the gateway did with each (see :mod:`auto_review.cli.webhook_test`).

A GitHub App has one webhook, set in the App's settings: ``list --github`` shows the App
(``GET /app`` with its JWT) and whether it subscribes to the events the gateway handles.
Its recent deliveries (``GET /app/hook/deliveries``) are not fetched: that call is not in
the API subset auto-review checks its GitHub calls against, so the command says where to
see them instead.

Exit status: 0 done or nothing to do (``test``: the event was accepted or is a duplicate);
1 a hook differs and --update was not given (``test``: the gateway ignored the event);
2 bad usage or settings; 3 the forge or the gateway refused or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    add_settings_arguments,
    load_command_settings,
)
from auto_review.config import Settings
from auto_review.wiring.redaction import redact

if TYPE_CHECKING:
    from auto_review.hosts.forgejo_admin import HookOwner

EXIT_OK, EXIT_DIFFERS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
HOOK_PATH = "/webhooks/forgejo"
SETTINGS = ("forgejo_url", "forgejo_token", "webhook_secret", "ca_file", "http_timeout_seconds")
_REPO = re.compile(r"^(?:forgejo:)?([A-Za-z0-9_.\-]+)/([A-Za-z0-9_.\-]+)$")
# Gitea organisation names: alphanumerics, '-', '_', '.', not starting with '.' or '-'.
_ORG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


class UsageError(Exception):
    """One line, exit status 2."""


def repo_argument(value: str) -> tuple[str, str]:
    match = _REPO.match(value)
    if match is None or match[1] in (".", "..") or match[2] in (".", ".."):
        raise argparse.ArgumentTypeError("must be OWNER/NAME")
    return match[1], match[2]


def org_argument(value: str) -> str:
    if _ORG.fullmatch(value) is None:
        raise argparse.ArgumentTypeError("must be an organisation name")
    return value


def add_hook_owner_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--repo OWNER/NAME`` or ``--org ORG``: where the hook lives."""
    either = "one of --repo and --org is required" + ("" if required else " without --github")
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--repo", type=repo_argument, metavar="OWNER/NAME",
                       help=f"a repository's hook, OWNER/NAME ({either})")  # fmt: skip
    where.add_argument("--org", type=org_argument, metavar="ORG",
                       help="the organisation's hook instead: it fires for every repository "
                       f"of ORG ({either})")  # fmt: skip


def hook_owner(namespace: argparse.Namespace) -> HookOwner:
    from auto_review.hosts.forgejo_admin import HookOwner

    if namespace.org is not None:
        return HookOwner(namespace.org)
    owner, repo = namespace.repo
    return HookOwner(owner, repo)


def gateway_url_argument(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError("must be the gateway's public http(s):// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError("must be a plain URL (no credentials, query or #)")
    base = value.rstrip("/")
    return base if base.endswith(HOOK_PATH) else base + HOOK_PATH


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review webhook",
        description="Register, list, remove and test the gateway's webhook on a "
        "Forgejo/Gitea repository (needs admin rights on it).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    repo_help = "the repository, OWNER/NAME (required)"
    url_help = (
        "the gateway's public base URL as the forge reaches it; /webhooks/forgejo is "
        "appended (required)"
    )
    register = commands.add_parser("register", help="add the webhook (idempotent)")
    add_hook_owner_arguments(register, required=True)
    register.add_argument("--gateway-url", required=True, type=gateway_url_argument,
                          metavar="URL", help=url_help)  # fmt: skip
    register.add_argument(
        "--update",
        action="store_true",
        help="bring a differing hook in line and set its secret to AR_WEBHOOK_SECRET "
        "[default: report it, change nothing]",
    )
    add_settings_arguments(register, SETTINGS)
    listing = commands.add_parser(
        "list", help="the repository's webhooks, or the GitHub App's webhook (--github)"
    )
    add_hook_owner_arguments(listing, required=False)
    listing.add_argument(
        "--github",
        action="store_true",
        help="the GitHub App's webhook (one per App, set in the App's settings) and its "
        "subscribed events instead [default: a Forgejo/Gitea repository's hooks]",
    )
    add_settings_arguments(
        listing,
        [f for f in SETTINGS if f != "webhook_secret"]
        + ["github_app_id", "github_app_private_key", "github_api_url"],
    )
    unregister = commands.add_parser("unregister", help="remove the gateway's webhook")
    add_hook_owner_arguments(unregister, required=True)
    unregister.add_argument("--gateway-url", required=True, type=gateway_url_argument,
                            metavar="URL", help=url_help)  # fmt: skip
    add_settings_arguments(unregister, [f for f in SETTINGS if f != "webhook_secret"])
    test = commands.add_parser(
        "test", help="send the gateway a signed ping and pull request event; report each"
    )
    test.add_argument("--repo", required=True, type=repo_argument, metavar="OWNER/NAME",
                      help=repo_help)  # fmt: skip
    test.add_argument("--pr", required=True, type=pr_argument, metavar="N",
                      help="the pull request the event is about; the gateway queues a real "
                      "review of its head (required)")  # fmt: skip
    test.add_argument("--gateway-url", required=True, type=gateway_url_argument, metavar="URL",
                      help="the gateway's base URL as reached from here; /webhooks/forgejo "
                      "is appended (required)")  # fmt: skip
    add_settings_arguments(test, SETTINGS)
    return parser


def pr_argument(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 10**9:
        raise argparse.ArgumentTypeError("must be a pull request number")
    return int(value)


def hook_differences(hook: Any) -> list[str]:
    from auto_review.hosts.forgejo_admin import HOOK_EVENTS

    found = []
    if set(hook.events) != set(HOOK_EVENTS):
        found.append(f"events {', '.join(hook.events) or 'none'} (wanted {', '.join(HOOK_EVENTS)})")
    if not hook.active:
        found.append("inactive")
    if hook.content_type and hook.content_type != "json":
        found.append(f"content type {hook.content_type}")
    return found


def is_gateway_hook(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith(HOOK_PATH)


async def register(namespace: argparse.Namespace, settings: Settings, admin: Any) -> int:
    where = hook_owner(namespace)
    token = _token(settings)
    if settings.webhook_secret is None:
        raise UsageError("setting AR_WEBHOOK_SECRET (environment or env file only) is required")
    secret = settings.webhook_secret.reveal()
    target = namespace.gateway_url
    hooks = await admin.list_hooks(where, token)
    same = [h for h in hooks if h.url == target]
    elsewhere = [h for h in hooks if h.url != target and is_gateway_hook(h.url)]
    if same or elsewhere:
        hook = (same or elsewhere)[0]
        problems = hook_differences(hook)
        if not same:
            problems.insert(0, f"sends to {hook.url}")
        if namespace.update:
            await admin.edit_hook(where, token, hook.id, url=target, secret=secret)
            print(f"updated hook {hook.id} of {where.label}: sends to {target}, secret set")
            return EXIT_OK
        if problems:
            print(
                f"hook {hook.id} of {where.label} differs: {'; '.join(problems)}; "
                "pass --update to change it",
                file=sys.stderr,
            )
            return EXIT_DIFFERS
        print(
            f"hook {hook.id} of {where.label} already sends to {target} (the forge does not "
            "show its secret: --update sets it to AR_WEBHOOK_SECRET)"
        )
        return EXIT_OK
    hook = await admin.create_hook(where, token, url=target, secret=secret)
    print(f"registered hook {hook.id} of {where.label}: sends to {target}")
    return EXIT_OK


async def list_hooks(namespace: argparse.Namespace, settings: Settings, admin: Any) -> int:
    where = hook_owner(namespace)
    hooks = await admin.list_hooks(where, _token(settings))
    if not hooks:
        print(f"no webhooks on {where.label}")
    for hook in hooks:
        mark = "gateway" if is_gateway_hook(hook.url) else "-"
        state = "active" if hook.active else "inactive"
        events = ",".join(hook.events) or "-"
        print(f"{hook.id:>6}  {state:8}  {mark:7}  {events}  {_printable(hook.url)}")
    return EXIT_OK


async def unregister(namespace: argparse.Namespace, settings: Settings, admin: Any) -> int:
    where = hook_owner(namespace)
    token = _token(settings)
    hooks = [h for h in await admin.list_hooks(where, token) if h.url == namespace.gateway_url]
    for hook in hooks:
        await admin.delete_hook(where, token, hook.id)
        print(f"removed hook {hook.id} of {where.label}")
    if not hooks:
        print(f"no hook of {where.label} sends to {namespace.gateway_url}; nothing to remove")
    return EXIT_OK


async def test_hook(namespace: argparse.Namespace, settings: Settings, admin: Any) -> int:
    from auto_review.cli.webhook_test import (
        GatewayClient,
        metric_changes,
        ping_payload,
        pull_request_payload,
    )
    from auto_review.wiring.tls import client_tls_context

    owner, repo = namespace.repo
    token = _token(settings)
    if settings.webhook_secret is None:
        raise UsageError("setting AR_WEBHOOK_SECRET (environment or env file only) is required")
    secret = settings.webhook_secret.reveal()
    pull = await admin.pull_request_json(owner, repo, namespace.pr, token)
    payload = pull_request_payload(pull)
    head = pull.get("head")
    sha = str(head.get("sha", "")) if isinstance(head, dict) else ""
    base_url = namespace.gateway_url.removesuffix(HOOK_PATH)
    client = GatewayClient(
        base_url, timeout=settings.http_timeout_seconds, tls=client_tls_context(settings.ca_file)
    )
    try:
        before = client.metrics()
        ping = client.deliver(secret, "ping", ping_payload(payload["repository"]))
        print(f"ping: HTTP {ping.status} {_printable(redact(ping.summary))}")
        if ping.status in (400, 401):
            print(f"{namespace.gateway_url} refused the signature: the gateway's "
                  "AR_WEBHOOK_SECRET is not this one", file=sys.stderr)  # fmt: skip
            return EXIT_FAILED
        event = client.deliver(secret, "pull_request", payload)
        what = f"pull_request {owner}/{repo}#{namespace.pr} at {_printable(sha[:12])}"
        print(f"{what}: HTTP {event.status} {_printable(redact(event.summary))}")
        after = client.metrics()
    finally:
        client.close()
    if before is None or after is None:
        print("metrics: /metrics not available")
    else:
        changes = metric_changes(before, after)
        depth = after.get("auto_review_queue_depth")
        depth_text = f"; queue depth {depth:g}" if depth is not None else ""
        print(f"metrics: {', '.join(changes) or 'no change'}{depth_text}")
    if event.status >= 400:
        return EXIT_FAILED
    return EXIT_DIFFERS if event.body.get("status") == "ignored" else EXIT_OK


# What the gateway handles from GitHub; the App must subscribe to these.
GITHUB_EVENTS = ("pull_request", "issue_comment")
DELIVERIES_NOT_CHECKED = (
    "deliveries: not fetched: GET /app/hook/deliveries is not among the GitHub API calls "
    "auto-review checks against GitHub's OpenAPI description "
    "(tests/reference/github/rest-openapi-subset.json); see them in the App's settings, "
    "Advanced, Recent Deliveries (each with its answer, and Redeliver)"
)


async def list_github(settings: Settings) -> int:
    """The App's identity and subscribed events (``GET /app``); its webhook URL and
    secret are set in the App's settings and not readable through the API used here."""
    from auto_review.core.refs import HostKind
    from auto_review.wiring.clients import forge_hosts

    if not (settings.github_app_id and settings.github_app_private_key):
        raise UsageError(
            "settings AR_GITHUB_APP_ID (--github-app-id) and AR_GITHUB_APP_PRIVATE_KEY "
            "(environment or env file only) are required for --github"
        )
    from auto_review.hosts.github import GitHubClient

    host = forge_hosts(settings)[HostKind.GITHUB]
    assert isinstance(host, GitHubClient)
    try:
        app = await host.app_info()
    finally:
        await host.aclose()
    slug = _printable(str(app.get("slug", "")))
    name = _printable(str(app.get("name", slug)))
    print(f"GitHub App {name} (id {app.get('id')}, slug {slug}): "
          f"{_printable(str(app.get('html_url', '')))}")  # fmt: skip
    raw_events = app.get("events")
    events = [str(e) for e in raw_events] if isinstance(raw_events, list) else []
    missing = [e for e in GITHUB_EVENTS if e not in events]
    shown = _printable(", ".join(events) or "none")
    verdict = f"missing {', '.join(missing)}" if missing else "ok"
    print(f"  events: {shown} (the gateway needs {', '.join(GITHUB_EVENTS)}: {verdict})")
    print("  webhook: the App's own, set in its settings (General, Webhook): URL "
          "GATEWAY/webhooks/github, secret AR_GITHUB_WEBHOOK_SECRET, active")  # fmt: skip
    print(f"  {DELIVERIES_NOT_CHECKED}")
    if missing:
        print(
            f"the App does not subscribe to {', '.join(missing)}: add the event(s) in its "
            "settings (Permissions & events)",
            file=sys.stderr,
        )
        return EXIT_DIFFERS
    return EXIT_OK


def _token(settings: Settings) -> str:
    if settings.forgejo_token is None:
        raise UsageError("setting AR_FORGEJO_TOKEN (environment or env file only) is required")
    return settings.forgejo_token.reveal()


def _printable(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)


async def run(namespace: argparse.Namespace, settings: Settings) -> int:
    from auto_review.wiring.clients import forgejo_admin

    handlers = {
        "register": register,
        "list": list_hooks,
        "unregister": unregister,
        "test": test_hook,
    }
    async with forgejo_admin(settings) as admin:
        return await handlers[namespace.command](namespace, settings, admin)


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    prefix = f"auto-review webhook {namespace.command}"
    settings = load_command_settings(namespace, prefix)
    if settings is None:
        return EXIT_USAGE
    from auto_review.cli.webhook_test import GatewayUnreachable
    from auto_review.hosts.base import HostError
    from auto_review.wiring.tls import TrustError

    try:
        if namespace.command == "list" and namespace.github:
            if namespace.repo is not None or namespace.org is not None:
                raise UsageError("--github lists the App's webhook: leave out --repo and --org")
            return asyncio.run(list_github(settings))
        if namespace.command == "list" and namespace.repo is None and namespace.org is None:
            raise UsageError(
                "--repo OWNER/NAME or --org ORG is required (or --github for the GitHub App)"
            )
        if settings.forgejo_url is None:
            raise UsageError("setting AR_FORGEJO_URL (--forgejo-url) is required")
        return asyncio.run(run(namespace, settings))
    except (UsageError, TrustError) as exc:
        print(f"{prefix}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except HostError as exc:
        print(f"{prefix}: the forge refused or failed: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except GatewayUnreachable as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_FAILED
