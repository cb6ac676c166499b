"""Settings -> the checks ``auto-review ops doctor`` runs against the outside world.

Each check is one :class:`Check`: a name, a level (``ok``, ``warn``, ``fail``) and one
line of detail that never holds a secret (errors are reported by their redacted message,
which names the operation and the status, never a URL, header or body).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from auto_review.wiring.redaction import redact

if TYPE_CHECKING:
    from auto_review.config import Settings

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: str  # ok | warn | fail
    detail: str


def git_check() -> Check:
    path = shutil.which("git")
    if path is None:
        return Check("git", FAIL, "git is not on PATH: reviews clone pull requests with it")
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("git", FAIL, f"{path} does not run: {type(exc).__name__}")
    if done.returncode != 0:
        return Check("git", FAIL, f"{path} --version exited with status {done.returncode}")
    return Check("git", OK, f"{done.stdout.strip()} ({path})")


def state_dir_check(path: Path) -> Check:
    """The state directory is writable by this user (or can be created), and is owned by it
    (the launcher refuses one that is not)."""
    if path.exists():
        if not path.is_dir():
            return Check("state-dir", FAIL, f"{path} is not a directory")
        owner = path.stat().st_uid
        if owner != os.geteuid():
            return Check("state-dir", FAIL, f"{path} is owned by uid {owner}, not by this user")
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check("state-dir", FAIL, f"{path} is not writable: {exc.strerror}")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            return Check("state-dir", WARN, f"{path} is writable, but mode {mode:04o} (0700 is "
                         "what the gateway creates)")  # fmt: skip
        return Check("state-dir", OK, f"{path} is writable (mode {mode:04o})")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Check("state-dir", OK, f"{path} does not exist yet; it will be created 0700")
    return Check("state-dir", FAIL, f"{path} does not exist and {parent} is not writable")


def database_check(settings: Settings) -> Check | None:
    """AR_DATABASE_URL's database: reachable with the configured password and TLS, and its
    schema one this release can use. None without AR_DATABASE_URL (SQLite: state-dir)."""
    if settings.database_url is None:
        return None
    from auto_review.store.base import StoreError
    from auto_review.wiring.stores import database_status

    try:
        status = database_status(settings)
    except StoreError as exc:  # e.g. an unreadable password file
        return Check("database", FAIL, redact(str(exc)))
    if status.error:
        return Check("database", FAIL, redact(status.error))
    where = f"{status.where} ({status.tls})"
    if status.version > status.latest:
        newer = f"schema version {status.version} is newer than this release knows"
        return Check("database", FAIL, f"{where}: {newer} ({status.latest})")
    if status.version < status.latest:
        found = "no schema yet" if status.version == 0 else f"schema version {status.version}"
        then = f"the gateway or `auto-review ops migrate` brings it to version {status.latest}"
        return Check("database", WARN, f"{where}: reachable, {found}; {then}")
    return Check("database", OK, f"{where}: reachable, schema version {status.version}")


def secrets_check(settings: Settings) -> Check:
    """Settings refuse weak secrets when they load; this says which are set and which a
    configured forge still lacks."""
    present = [
        name
        for name, value in (
            ("AR_WEBHOOK_SECRET", settings.webhook_secret),
            ("AR_GITHUB_WEBHOOK_SECRET", settings.github_webhook_secret),
            ("AR_CI_REVIEW_TOKEN", settings.ci_review_token),
        )
        if value is not None
    ]
    missing = []
    if settings.forgejo_url and settings.webhook_secret is None:
        missing.append("AR_WEBHOOK_SECRET (Forgejo/Gitea is configured)")
    if settings.github_app_id and settings.github_webhook_secret is None:
        missing.append("AR_GITHUB_WEBHOOK_SECRET (the GitHub App is configured)")
    if missing:
        return Check("secrets", FAIL, f"not set: {', '.join(missing)}; "
                     "`auto-review secrets generate` makes them")  # fmt: skip
    if not present:
        return Check("secrets", WARN, "no webhook secret or CI token is set")
    return Check("secrets", OK, f"{', '.join(present)} strong (at least 32 characters, "
                 "no placeholder, not repetitive)")  # fmt: skip


async def forgejo_check(settings: Settings, tls: ssl.SSLContext) -> Check:
    """The token is valid, whose it is, and which scope categories it reaches."""
    from auto_review.hosts.base import HostError
    from auto_review.hosts.forgejo_admin import BOT_TOKEN_SCOPES
    from auto_review.wiring.clients import forgejo_admin

    name = "forgejo-token"
    if not settings.forgejo_url:
        return Check(name, WARN, "Forgejo/Gitea not configured (AR_FORGEJO_URL is not set)")
    if settings.forgejo_token is None:
        return Check(name, FAIL, "AR_FORGEJO_TOKEN is not set: `auto-review auth init` mints it")
    token = settings.forgejo_token.reveal()
    try:
        async with forgejo_admin(settings, tls=tls) as admin:
            login = await admin.current_login(token)
            reach = await admin.token_reach(token)
    except HostError as exc:
        return Check(name, FAIL, f"the forge refused or failed: {redact(str(exc))}")
    lacking = [category for category, ok in reach.items() if not ok]
    wanted = ", ".join(BOT_TOKEN_SCOPES)
    if lacking:
        return Check(name, FAIL, f"valid for {login}, but it lacks the scope categories "
                     f"{', '.join(lacking)} (the bot needs {wanted})")  # fmt: skip
    if settings.bot_login and settings.bot_login != login:
        return Check(name, FAIL, f"the token is {login}'s but AR_BOT_LOGIN is "
                     f"{settings.bot_login}: the bot would answer its own comments")  # fmt: skip
    return Check(name, OK, f"valid for {login}; reaches {', '.join(reach)} (read calls; the "
                 f"forge shows no token its write scopes: the bot needs {wanted})")  # fmt: skip


async def github_check(settings: Settings, tls: ssl.SSLContext) -> Check | None:
    """The App's credentials are accepted (``ping``), when the App is configured."""
    if not (settings.github_app_id and settings.github_app_private_key):
        return None
    from auto_review.core.refs import HostKind
    from auto_review.wiring.clients import forge_hosts

    host = forge_hosts(settings, tls=tls)[HostKind.GITHUB]
    try:
        await host.ping()
    except Exception as exc:  # any failure is one redacted line
        return Check("github-app", FAIL, f"{type(exc).__name__}: {redact(str(exc))}")
    finally:
        close = getattr(host, "aclose", None)
        if close is not None:
            await close()
    return Check("github-app", OK, f"App {settings.github_app_id} authenticated")


async def llm_check(settings: Settings, tls: ssl.SSLContext) -> list[Check]:
    """The endpoint answers ``GET /models`` and lists each configured model."""
    from auto_review.llm.api import LlmError
    from auto_review.llm.transport import models_probe

    if not settings.llm_base_url:
        return [Check("llm", WARN, "no LLM (AR_LLM_BASE_URL is not set): accepted jobs stay "
                      "queued until one is configured")]  # fmt: skip
    probe = models_probe(
        settings.llm_base_url,
        settings.llm_api_key,
        timeout=settings.http_timeout_seconds,
        tls=tls,
    )
    try:
        ids = await probe.model_ids()
    except LlmError as exc:
        return [Check("llm", FAIL, f"GET /models failed: {redact(str(exc))}")]
    finally:
        await probe.aclose()
    checks = [Check("llm", OK, f"reachable, {len(ids)} model(s) listed")]
    models = [
        ("reasoning", settings.llm_reasoning_model),
        ("cheap", settings.llm_cheap_model or settings.llm_reasoning_model),
    ]
    for tier, model in models:
        if not model:
            checks.append(Check(f"llm-{tier}-model", FAIL, "AR_LLM_REASONING_MODEL is not set"))
        elif model in ids:
            checks.append(Check(f"llm-{tier}-model", OK, f"{model} is listed"))
        else:
            checks.append(Check(f"llm-{tier}-model", FAIL, f"{model} is not among the server's "
                                "models (GET /models)"))  # fmt: skip
    return checks


async def remote_checks(settings: Settings) -> list[Check]:
    from auto_review.wiring.tls import TrustError, client_tls_context

    try:
        tls = client_tls_context(settings.ca_file)
    except TrustError as exc:
        return [Check("ca-file", FAIL, redact(str(exc)))]
    checks = [await forgejo_check(settings, tls)]
    github = await github_check(settings, tls)
    if github is not None:
        checks.append(github)
    checks += await llm_check(settings, tls)
    return checks
