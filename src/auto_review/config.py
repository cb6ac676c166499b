"""Settings: one typed model, loaded from flags, the environment and an optional env file.

Every setting has an ``AR_*`` environment twin and a command-line flag; flags win over the
environment, the environment wins over an env file. A missing or malformed setting raises
:class:`SettingsError` whose message names the setting and never contains its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

MIN_SECRET_LENGTH = 32
ENV_PREFIX = "AR_"

# Flags whose name is not simply ``--field-name`` (the names DESIGN.md fixes).
FLAG_ALIASES: dict[str, str] = {
    "gateway_bind": "--bind",
    "gateway_bare": "--bare",
    "gateway_external_isolation": "--external-isolation",
}


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names it and never shows its value."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"setting {env_name(field)} ({flag_name(field)}) {problem}")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return FLAG_ALIASES.get(field, "--" + field.replace("_", "-"))


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if os.geteuid() == 0:
        return Path("/var/lib/auto_review")
    home = Path(env.get("HOME", "~")).expanduser()
    base = env.get("XDG_STATE_HOME") or str(home / ".local/state")
    return Path(base) / "auto-review"


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        # Credentials in a URL end up in logs and proxies; they belong in the token settings.
        raise ValueError("must not carry credentials in the URL; use the token setting")
    return value.rstrip("/")


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return value


_BIND = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})$")
_REPO = re.compile(
    r"^(?:(?P<host>forgejo|github):)?(?P<owner>[A-Za-z0-9_.\-]+)/(?P<name>[A-Za-z0-9_.\-]+)$"
)


def parse_bind(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[V6]:PORT``) into host and port."""
    match = _BIND.match(value)
    if not match or int(match["port"]) > 65535:
        raise ValueError("must be HOST:PORT (for IPv6: [ADDR]:PORT) with a port from 0 to 65535")
    return match["v6"] or match["host"], int(match["port"])


class Settings(BaseModel):
    """Every operator-facing setting of auto-review."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Service and isolation
    gateway_bind: str = "127.0.0.1:8080"
    state_dir: Path = Field(default_factory=default_state_dir)
    gateway_bare: bool = False
    gateway_external_isolation: Literal["container"] | None = None
    oci_runtime: Path | None = None
    # Forgejo / Gitea
    forgejo_url: str | None = None
    forgejo_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # GitHub App
    github_app_id: str | None = None
    github_app_private_key: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    # CI trigger and chat
    ci_review_token: SecretStr | None = None
    bot_login: str | None = None
    # LLM
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_reasoning_model: str | None = None
    llm_cheap_model: str | None = None
    # Intake limits and workers
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    rate_limit_per_minute: int = Field(default=3000, ge=1)
    rate_limit_burst: int = Field(default=500, ge=1)
    workers: int = Field(default=2, ge=1, le=64)
    poll_interval_seconds: float = Field(default=60.0, ge=0)
    poll_repos: list[str] = Field(default_factory=list)
    readyz_cache_seconds: float = Field(default=10.0, ge=0)
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Logging
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _check_urls = field_validator("forgejo_url", "github_api_url", "llm_base_url")(_check_url)
    _check_secrets = field_validator("webhook_secret", "github_webhook_secret", "ci_review_token")(
        _check_secret
    )

    @field_validator("gateway_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    @field_validator("github_app_id")
    @classmethod
    def _check_app_id(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            raise ValueError("must be the App's numeric id")
        return value

    @field_validator("github_app_private_key")
    @classmethod
    def _check_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "-----BEGIN" not in value.get_secret_value():
            raise ValueError("must be a PEM private key")
        return value

    @field_validator("bot_login")
    @classmethod
    def _check_login(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]{1,100}", value):
            raise ValueError("must be an account name")
        return value

    @field_validator("poll_repos", mode="before")
    @classmethod
    def _split_repos(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("poll_repos")
    @classmethod
    def _check_repos(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _REPO.match(item):
                raise ValueError("must be a comma-separated list of [forgejo:|github:]OWNER/NAME")
        return value

    # -- views -------------------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values

    def public_view(self) -> dict[str, Any]:
        """Non-secret settings for ``/info`` and diagnostics; secrets become set/unset."""
        view: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) or name.endswith(("_token", "_secret", "_key")):
                view[name] = "set" if value else "unset"
            elif isinstance(value, Path):
                view[name] = str(value)
            else:
                view[name] = value
        return view

    @property
    def bind_host_port(self) -> tuple[str, int]:
        return parse_bind(self.gateway_bind)


SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


def read_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional ``export``, optional quotes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError("env_file", f"cannot be read: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key.strip()):
            # The line number, not the line: the line may hold a secret.
            raise SettingsError("env_file", f"line {number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Build settings: flags (non-None values) > environment > env file > defaults."""
    env = dict(os.environ if environ is None else environ)
    layered: dict[str, Any] = {}
    file_values = read_env_file(env_file) if env_file is not None else {}
    known = set(Settings.model_fields)
    for source in (file_values, env):
        for key, value in source.items():
            if not key.startswith(ENV_PREFIX):
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field in known and value != "":
                layered[field] = value
    for field, value in (flags or {}).items():
        if field not in known:
            raise SettingsError(field, "is not a known setting")
        if value is not None:
            layered[field] = value
    if "state_dir" not in layered:
        layered["state_dir"] = default_state_dir(env)
    try:
        return Settings(**layered)
    except ValidationError as exc:
        raise _first_problem(exc) from None


def _first_problem(exc: ValidationError) -> SettingsError:
    error = exc.errors(include_input=False, include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if field == "gateway_bare" or error["type"] == "bool_parsing":
        message = "must be true or false (true/false, 1/0, yes/no, on/off)"
    return SettingsError(field, f"is invalid: {message}")


def require(settings: Settings, fields: Iterable[str], purpose: str) -> None:
    """Fail with the first of ``fields`` that is unset, saying what needs it."""
    for field in fields:
        if getattr(settings, field) in (None, "", []):
            raise SettingsError(field, f"is required {purpose}")


def validate_for_gateway(settings: Settings) -> None:
    """The gateway needs at least one forge, each with its webhook secret."""
    forgejo = settings.forgejo_url is not None or settings.webhook_secret is not None
    github = settings.github_app_id is not None or settings.github_webhook_secret is not None
    if not forgejo and not github:
        raise SettingsError(
            "forgejo_url", "is required (or configure the GitHub App with AR_GITHUB_APP_ID)"
        )
    if forgejo:
        require(settings, ("forgejo_url", "forgejo_token", "webhook_secret"), "for Forgejo/Gitea")
    if github:
        require(
            settings,
            ("github_app_id", "github_app_private_key", "github_webhook_secret"),
            "for the GitHub App",
        )
