"""Settings: one typed model, loaded from flags, the environment and an optional env file.

Every setting has an ``AR_*`` environment twin and a command-line flag; flags win over the
environment, the environment wins over an env file. A missing or malformed setting raises
:class:`SettingsError` whose message names the setting and never contains its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auto_review.core.secrets import Secret

MIN_SECRET_LENGTH = 32
ENV_PREFIX = "AR_"

# Flags whose name is not simply ``--field-name`` (the names DESIGN.md fixes).
FLAG_ALIASES: dict[str, str] = {
    "gateway_bind": "--bind",
    "gateway_bare": "--bare",
    "gateway_external_isolation": "--external-isolation",
}

# Isolation controls that are "degraded" by default and that an operator may make mandatory.
DEGRADABLE_CONTROLS = ("landlock", "cgroup-limits", "cgroup-namespace")


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


# ---------------------------------------------------------------- value parsers
# Each takes the raw value (a string from the environment, or a typed value from code) and
# returns the typed value or raises ValueError with a message that never holds the value.

Parser = Callable[[Any], Any]

_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})
_BIND = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})$")
_REPO = re.compile(
    r"^(?:(?P<host>forgejo|github):)?(?P<owner>[A-Za-z0-9_.\-]+)/(?P<name>[A-Za-z0-9_.\-]+)$"
)
_LOGIN = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,100}")


def parse_bind(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[V6]:PORT``) into host and port."""
    match = _BIND.match(value)
    if not match or int(match["port"]) > 65535:
        raise ValueError("must be HOST:PORT (for IPv6: [ADDR]:PORT) with a port from 0 to 65535")
    return match["v6"] or match["host"], int(match["port"])


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("must be true or false (true/false, 1/0, yes/no, on/off)")


def _integer(low: int, high: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        try:
            number = value if isinstance(value, int) else int(_text(value).strip())
        except ValueError:
            raise ValueError("must be an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise ValueError(f"must be an integer {bound}")
        return number

    return parse


def _number(low: float, high: float | None = None, *, above: bool = False) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(value) if isinstance(value, (int, float)) else float(_text(value))
        except ValueError:
            raise ValueError("must be a number") from None
        if number != number or (number <= low if above else number < low):
            raise ValueError(f"must be a number {'above' if above else 'of at least'} {low:g}")
        if high is not None and number > high:
            raise ValueError(f"must be a number of at most {high:g}")
        return number

    return parse


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if _text(value) not in choices:
            raise ValueError("must be one of: " + ", ".join(choices))
        return str(value)

    return parse


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    text = _text(value)
    if "\x00" in text:
        raise ValueError("must be a file system path")
    return Path(text)


def _url(value: Any) -> str:
    parts = urlsplit(_text(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        # Credentials in a URL end up in logs and proxies; they belong in the token settings.
        raise ValueError("must not carry credentials in the URL; use the token setting")
    return str(value).rstrip("/")


def _secret(min_length: int = 1) -> Parser:
    def parse(value: Any) -> Secret:
        text = value.reveal() if isinstance(value, Secret) else _text(value)
        if len(text) < min_length:
            raise ValueError(f"must be at least {min_length} characters")
        return Secret(text)

    return parse


def _pem(value: Any) -> Secret:
    secret = _secret()(value)
    if "-----BEGIN" not in secret.reveal():
        raise ValueError("must be a PEM private key")
    return secret


def _bind(value: Any) -> str:
    parse_bind(_text(value))
    return str(value)


def _app_id(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else _text(value)
    if not text.isdigit():
        raise ValueError("must be the App's numeric id")
    return text


def _login(value: Any) -> str:
    if not _LOGIN.fullmatch(_text(value)):
        raise ValueError("must be an account name")
    return str(value)


def _list_of(item_pattern: re.Pattern[str], message: str) -> Parser:
    def parse(value: Any) -> list[str]:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise ValueError(message)
        for item in items:
            if not item_pattern.fullmatch(item):
                raise ValueError(message)
        return items

    return parse


_CONTROLS = re.compile("|".join(re.escape(c) for c in DEGRADABLE_CONTROLS))


def _price(value: Any) -> tuple[float, float]:
    """``IN/OUT``: prices per million prompt and completion tokens, e.g. ``0.15/0.60``."""
    if isinstance(value, tuple) and len(value) == 2:
        parts = [str(v) for v in value]
    else:
        parts = _text(value).split("/")
    if len(parts) != 2:
        raise ValueError("must be INPUT/OUTPUT prices per million tokens, e.g. 0.15/0.60")
    try:
        prices = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValueError("must be INPUT/OUTPUT prices per million tokens, e.g. 0.15/0.60") from None
    if not all(0 <= p < 1e6 for p in prices):  # also refuses nan and inf
        raise ValueError("prices must be between 0 and 1000000")
    return prices


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting: how to parse it, its default, and whether it is a secret or a switch."""

    name: str
    parse: Parser
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    secret: bool = False
    switch: bool = False  # a flag without a value (store true)

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def _spec(name: str, parse: Parser, default: Any = None, **extra: Any) -> SettingSpec:
    return SettingSpec(name, parse, default, **extra)


SETTINGS: tuple[SettingSpec, ...] = (
    # Service and isolation
    _spec("gateway_bind", _bind, "127.0.0.1:8080"),
    _spec("state_dir", _path, default_factory=default_state_dir),
    _spec("gateway_bare", _bool, False, switch=True),
    _spec("gateway_external_isolation", _choice("container")),
    _spec("oci_runtime", _path),
    _spec(
        "isolation_require",
        _list_of(_CONTROLS, "must be a comma-separated list of: " + ", ".join(DEGRADABLE_CONTROLS)),
        default_factory=list,
    ),
    # Forgejo / Gitea
    _spec("forgejo_url", _url),
    _spec("forgejo_token", _secret(), secret=True),
    _spec("webhook_secret", _secret(MIN_SECRET_LENGTH), secret=True),
    # GitHub App
    _spec("github_app_id", _app_id),
    _spec("github_app_private_key", _pem, secret=True),
    _spec("github_webhook_secret", _secret(MIN_SECRET_LENGTH), secret=True),
    _spec("github_api_url", _url, "https://api.github.com"),
    # CI trigger and chat
    _spec("ci_review_token", _secret(MIN_SECRET_LENGTH), secret=True),
    _spec("bot_login", _login),
    # LLM
    _spec("llm_base_url", _url),
    _spec("llm_api_key", _secret(), secret=True),
    _spec("llm_reasoning_model", _text),
    _spec("llm_cheap_model", _text),
    _spec("llm_timeout_seconds", _number(0, 3600, above=True), 180.0),
    _spec("llm_max_retries", _integer(0, 10), 2),
    _spec("llm_response_format", _choice("auto", "json_schema", "json_object", "prompt"), "auto"),
    _spec("llm_context_tokens", _integer(1000, 2_000_000), 16000),
    _spec("llm_reasoning_price", _price),
    _spec("llm_cheap_price", _price),
    # Review pipeline caps
    _spec("review_max_diff_bytes", _integer(1024), 20 * 1024 * 1024),
    _spec("review_max_clone_bytes", _integer(1024 * 1024), 1024 * 1024 * 1024),
    # Intake limits and workers
    _spec("max_body_bytes", _integer(1024, 100 * 1024 * 1024), 5 * 1024 * 1024),
    _spec("rate_limit_per_minute", _integer(1), 3000),
    _spec("rate_limit_burst", _integer(1), 500),
    _spec("workers", _integer(1, 64), 2),
    _spec("poll_interval_seconds", _number(0), 60.0),
    _spec(
        "poll_repos",
        _list_of(_REPO, "must be a comma-separated list of [forgejo:|github:]OWNER/NAME"),
        default_factory=list,
    ),
    _spec("readyz_cache_seconds", _number(0), 10.0),
    _spec("http_timeout_seconds", _number(0, 600, above=True), 10.0),
    _spec("ca_file", _path),
    # Logging
    _spec("log_format", _choice("json", "text"), "json"),
    _spec("log_level", _choice("debug", "info", "warning", "error"), "info"),
)
SETTINGS_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in SETTINGS}
SECRET_FIELDS = frozenset(spec.name for spec in SETTINGS if spec.secret)


class Settings:
    """Every operator-facing setting of auto-review, validated and immutable.

    Built from keyword arguments holding raw values (strings as read from the environment,
    or typed values); a missing one takes its default. A malformed value raises
    :class:`SettingsError` naming the setting, never showing the value. (A hand-written
    model rather than a validation library: the launcher's start-up time is part of the
    gateway's, and this module is on that path.)
    """

    gateway_bind: str
    state_dir: Path
    gateway_bare: bool
    gateway_external_isolation: str | None
    oci_runtime: Path | None
    isolation_require: list[str]
    forgejo_url: str | None
    forgejo_token: Secret | None
    webhook_secret: Secret | None
    github_app_id: str | None
    github_app_private_key: Secret | None
    github_webhook_secret: Secret | None
    github_api_url: str
    ci_review_token: Secret | None
    bot_login: str | None
    llm_base_url: str | None
    llm_api_key: Secret | None
    llm_reasoning_model: str | None
    llm_cheap_model: str | None
    llm_timeout_seconds: float
    llm_max_retries: int
    llm_response_format: str
    llm_context_tokens: int
    llm_reasoning_price: tuple[float, float] | None
    llm_cheap_price: tuple[float, float] | None
    review_max_diff_bytes: int
    review_max_clone_bytes: int
    max_body_bytes: int
    rate_limit_per_minute: int
    rate_limit_burst: int
    workers: int
    poll_interval_seconds: float
    poll_repos: list[str]
    readyz_cache_seconds: float
    http_timeout_seconds: float
    ca_file: Path | None
    log_format: str
    log_level: str

    def __init__(self, **values: Any) -> None:
        for name in values:
            if name not in SETTINGS_BY_NAME:
                raise SettingsError(name, "is not a known setting")
        for spec in SETTINGS:
            raw = values.get(spec.name)
            if raw is None:
                value = spec.default_value()
            else:
                try:
                    value = spec.parse(raw)
                except ValueError as exc:
                    raise SettingsError(spec.name, f"is invalid: {exc}") from None
            object.__setattr__(self, spec.name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are immutable")

    def __repr__(self) -> str:
        return f"Settings({self.public_view()!r})"

    @staticmethod
    def field_names() -> list[str]:
        return [spec.name for spec in SETTINGS]

    # -- views -------------------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        values: list[str] = []
        for name in SECRET_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Secret) and value.reveal():
                values.append(value.reveal())
        return values

    def public_view(self) -> dict[str, Any]:
        """Non-secret settings for ``/info`` and diagnostics; secrets become set/unset."""
        view: dict[str, Any] = {}
        for spec in SETTINGS:
            value = getattr(self, spec.name)
            if spec.secret:
                view[spec.name] = "set" if value else "unset"
            elif isinstance(value, Path):
                view[spec.name] = str(value)
            elif isinstance(value, list):
                view[spec.name] = list(value)
            else:
                view[spec.name] = value
        return view

    @property
    def bind_host_port(self) -> tuple[str, int]:
        return parse_bind(self.gateway_bind)


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
    known = set(SETTINGS_BY_NAME)
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
    return Settings(**layered)


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
