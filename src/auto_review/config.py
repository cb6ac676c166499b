"""Settings: one typed model, loaded from flags, the environment and an optional env file.

Every setting has an ``AR_*`` environment twin and a command-line flag; flags win over the
environment, the environment wins over an env file. A missing or malformed setting raises
:class:`SettingsError` whose message names the setting and never contains its value; every
problem found is reported at once (``SettingsError.problems``, one line each): malformed and
weak values, placeholders from the documentation, unknown ``AR_*`` names (with the nearest
known one suggested) and an env file that other users can read or write.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auto_review.core.database_url import DatabaseUrlError, parse_database_url
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
    """Settings are missing or malformed: ``problems`` holds one line per problem, each
    naming the setting (its ``AR_*`` variable, and its flag where the command has one) and
    never its value."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        self.issues: list[tuple[str, str]] = [(field, problem)]
        self.problems = [describe(field, problem, _flag_of(field, None))]
        super().__init__(self.problems[0])

    @classmethod
    def many(
        cls, issues: list[tuple[str, str]], flags: Mapping[str, str] | None = None
    ) -> SettingsError:
        """One error for several problems; ``flags`` maps a field to the flag the command
        really has (a field without one is named by its variable only)."""
        error = cls(*issues[0])
        error.issues = list(issues)
        error.problems = [describe(f, p, _flag_of(f, flags)) for f, p in issues]
        error.args = ("\n".join(error.problems),)
        return error

    def __str__(self) -> str:
        return "\n".join(self.problems)


def _flag_of(field: str, flags: Mapping[str, str] | None) -> str | None:
    if flags is None:
        return flag_name(field) if has_flag(field) else None
    return flags.get(field)


def describe(field: str, problem: str, flag: str | None) -> str:
    """``setting AR_X (--x) PROBLEM``. ``field`` is a setting's name, an ``AR_*`` name the
    program does not know, or ``env_file``; ``flag`` the flag to name, if any."""
    if field == "env_file":
        return f"--env-file {problem}"
    if field.startswith(ENV_PREFIX):
        return f"environment variable {field} {problem}"
    spec = SETTINGS_BY_NAME.get(field)
    if spec is not None and spec.secret:
        return f"setting {env_name(field)} (environment or env file only) {problem}"
    return f"setting {env_name(field)}{f' ({flag})' if flag else ''} {problem}"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return FLAG_ALIASES.get(field, "--" + field.replace("_", "-"))


def has_flag(field: str) -> bool:
    """Secrets have no flag: it would put them on the command line, readable in /proc."""
    spec = SETTINGS_BY_NAME.get(field)
    return spec is not None and not spec.secret


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


# Values the documentation and the example files show, and words that mark a placeholder:
# a secret holding one of them is public. Compared case-insensitively.
EXAMPLE_SECRET_VALUES = frozenset(
    {
        "replace-with-the-bot-token",
        "replace-with-32-or-more-random-characters-0000",
    }
)
PLACEHOLDER_MARKERS = (
    "replace-with",
    "replace_with",
    "replaceme",
    "replace-me",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "your-token",
    "your-secret",
    "your_token",
    "your_secret",
)
_REPEATED = re.compile(r"(.{1,4}?)\1+", re.DOTALL)
MIN_DISTINCT_CHARACTERS = 8


def secret_weakness(text: str, min_length: int) -> str | None:
    """Why this secret value is unsafe (never quoting it), or None."""
    if len(text) < min_length:
        return f"must be at least {min_length} characters"
    lowered = text.lower()
    if lowered in EXAMPLE_SECRET_VALUES or any(m in lowered for m in PLACEHOLDER_MARKERS):
        return "is a placeholder or example value, not a secret"
    if len(text) > 1 and _REPEATED.fullmatch(text):
        return "is a repeated pattern, not a secret"
    if min_length >= MIN_SECRET_LENGTH and len(set(text)) < MIN_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_DISTINCT_CHARACTERS} distinct characters, not a secret"
    return None


def _secret(min_length: int = 1) -> Parser:
    def parse(value: Any) -> Secret:
        text = value.reveal() if isinstance(value, Secret) else _text(value)
        weakness = secret_weakness(text, min_length)
        if weakness is not None:
            strong = min_length >= MIN_SECRET_LENGTH and len(text) >= min_length
            hint = "; `auto-review secrets generate` makes one" if strong else ""
            raise ValueError(weakness + hint)
        return Secret(text)

    return parse


def _pem(value: Any) -> Secret:
    text = value.reveal() if isinstance(value, Secret) else _text(value)
    secret = Secret(text)
    if "-----BEGIN" not in text:
        raise ValueError("must be a PEM private key")
    return secret


def _database_url(value: Any) -> Secret:
    text = value.reveal() if isinstance(value, Secret) else _text(value)
    try:
        parse_database_url(text)
    except DatabaseUrlError as exc:
        raise ValueError(str(exc)) from None
    return Secret(text)


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
    help: str = ""  # one line for --help
    default_doc: str | None = None  # the default as --help shows it, when not str(default)
    metavar: str = "VALUE"

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def default_text(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return str(self.default)


def _spec(name: str, parse: Parser, default: Any = None, **extra: Any) -> SettingSpec:
    return SettingSpec(name, parse, default, **extra)


SETTINGS: tuple[SettingSpec, ...] = (
    # Service and isolation
    _spec("gateway_bind", _bind, "127.0.0.1:8080", help="listen address", metavar="HOST:PORT"),
    _spec(
        "state_dir",
        _path,
        default_factory=default_state_dir,
        help="state directory (SQLite files)",
        default_doc="/var/lib/auto_review as root, else $XDG_STATE_HOME/auto-review",
        metavar="DIR",
    ),
    _spec(
        "gateway_bare",
        _bool,
        False,
        switch=True,
        help="run without the container boundary (explicit opt-out, loudly warned)",
    ),
    _spec(
        "gateway_external_isolation",
        _choice("container"),
        help="'container': already inside an operator-owned container",
        metavar="container",
    ),
    _spec("oci_runtime", _path, help="external OCI runtime (runc, crun, youki)", metavar="PATH"),
    _spec(
        "isolation_require",
        _list_of(_CONTROLS, "must be a comma-separated list of: " + ", ".join(DEGRADABLE_CONTROLS)),
        default_factory=list,
        help="degraded controls to make mandatory: " + ", ".join(DEGRADABLE_CONTROLS),
        default_doc="none",
        metavar="LIST",
    ),
    # Forgejo / Gitea
    _spec("forgejo_url", _url, help="Forgejo/Gitea base URL", metavar="URL"),
    _spec("forgejo_token", _secret(), secret=True, help="the bot account's token"),
    _spec(
        "webhook_secret",
        _secret(MIN_SECRET_LENGTH),
        secret=True,
        help=f"HMAC secret of Forgejo/Gitea webhooks (>= {MIN_SECRET_LENGTH} characters)",
    ),
    # GitHub App
    _spec("github_app_id", _app_id, help="GitHub App id", metavar="ID"),
    _spec("github_app_private_key", _pem, secret=True, help="the GitHub App's PEM private key"),
    _spec(
        "github_webhook_secret",
        _secret(MIN_SECRET_LENGTH),
        secret=True,
        help=f"GitHub webhook secret (>= {MIN_SECRET_LENGTH} characters)",
    ),
    _spec(
        "github_api_url",
        _url,
        "https://api.github.com",
        help="GitHub (Enterprise) API base",
        metavar="URL",
    ),
    # CI trigger and chat
    _spec(
        "ci_review_token",
        _secret(MIN_SECRET_LENGTH),
        secret=True,
        help=f"bearer token of POST /reviews/ci (>= {MIN_SECRET_LENGTH} characters; "
        "endpoint off when unset)",
    ),
    _spec(
        "bot_login",
        _login,
        help="the bot's account name (its own comments are ignored)",
        metavar="NAME",
    ),
    # LLM
    _spec("llm_base_url", _url, help="OpenAI-compatible endpoint", metavar="URL"),
    _spec("llm_api_key", _secret(), secret=True, help="API key of the LLM endpoint"),
    _spec("llm_reasoning_model", _text, help="model of the reasoning tier", metavar="MODEL"),
    _spec("llm_cheap_model", _text, help="model of the verification tier", metavar="MODEL"),
    _spec(
        "llm_timeout_seconds",
        _number(0, 3600, above=True),
        180.0,
        help="timeout of one chat-completion request",
        metavar="SECONDS",
    ),
    _spec(
        "llm_max_retries",
        _integer(0, 10),
        2,
        help="retries after a timeout, 429 or 5xx",
        metavar="N",
    ),
    _spec(
        "llm_response_format",
        _choice("auto", "json_schema", "json_object", "prompt"),
        "auto",
        help="structured output: auto, json_schema, json_object or prompt",
        metavar="FORMAT",
    ),
    _spec(
        "llm_context_tokens",
        _integer(1000, 2_000_000),
        16000,
        help="token budget of a review prompt",
        metavar="N",
    ),
    _spec(
        "llm_reasoning_price",
        _price,
        help="IN/OUT price per million tokens of the reasoning model, for the cost metric",
        metavar="IN/OUT",
    ),
    _spec(
        "llm_cheap_price",
        _price,
        help="IN/OUT price per million tokens of the cheap model",
        metavar="IN/OUT",
    ),
    # Review pipeline caps
    _spec(
        "review_max_diff_bytes",
        _integer(1024),
        20 * 1024 * 1024,
        help="largest PR diff read; above it the review is skipped",
        metavar="BYTES",
    ),
    _spec(
        "review_max_clone_bytes",
        _integer(1024 * 1024),
        1024 * 1024 * 1024,
        help="cap on fetched git objects per job",
        metavar="BYTES",
    ),
    # Intake limits and workers
    _spec(
        "max_body_bytes",
        _integer(1024, 100 * 1024 * 1024),
        5 * 1024 * 1024,
        help="request body cap (413 above it)",
        metavar="BYTES",
    ),
    _spec(
        "rate_limit_per_minute",
        _integer(1),
        3000,
        help="sustained requests per minute per source address",
        metavar="N",
    ),
    _spec("rate_limit_burst", _integer(1), 500, help="burst per source address", metavar="N"),
    _spec(
        "workers",
        _integer(0, 64),
        2,
        help="concurrent review jobs (1-64); 0: intake only (needs AR_DATABASE_URL)",
        metavar="N",
    ),
    _spec(
        "job_retry_horizon_seconds",
        _number(0),
        86400.0,
        help="how long a job that meets transient failures (forge or LLM down) keeps retrying",
        metavar="SECONDS",
    ),
    _spec(
        "job_retry_base_seconds",
        _number(0),
        5.0,
        help="first retry delay of a job; it doubles per attempt (with jitter)",
        metavar="SECONDS",
    ),
    _spec(
        "job_retry_max_delay_seconds",
        _number(0),
        600.0,
        help="cap on the delay between two attempts of a job",
        metavar="SECONDS",
    ),
    _spec(
        "job_timeout_seconds",
        _number(0, above=True),
        900.0,
        help="time limit of one attempt of a job; past it the attempt is stopped and retried",
        metavar="SECONDS",
    ),
    _spec(
        "state_retention_days",
        _number(0, above=True),
        30.0,
        help="finished jobs and webhook delivery ids older than this are deleted",
        metavar="DAYS",
    ),
    # PostgreSQL (docs/SCALING.md): unset keeps SQLite in the state directory.
    _spec(
        "database_url",
        _database_url,
        secret=True,  # it may hold the password: no flag, "set"/"unset" in /info
        help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME: the stores in PostgreSQL",
        metavar="URL",
    ),
    _spec(
        "database_password_file",
        _path,
        help="file holding the database password (instead of one in AR_DATABASE_URL)",
        metavar="FILE",
    ),
    _spec(
        "database_ca_file",
        _path,
        help="PEM CA bundle for the database's TLS certificate (sslmode verify-full)",
        metavar="FILE",
    ),
    _spec(
        "database_pool_size",
        _integer(2, 200),
        10,
        help="most connections to the database this process opens",
        metavar="N",
    ),
    _spec(
        "database_statement_timeout_seconds",
        _number(0, 3600, above=True),
        30.0,
        help="longest a database statement may run before it is cancelled",
        metavar="SECONDS",
    ),
    _spec(
        "database_lease_seconds",
        _number(2, 3600),
        60.0,
        help="PostgreSQL: how long a running job stays claimed without its worker's renewal",
        metavar="SECONDS",
    ),
    _spec(
        "poll_interval_seconds",
        _number(0),
        60.0,
        help="chat poller interval; 0 turns it off",
        metavar="SECONDS",
    ),
    _spec(
        "poll_repos",
        _list_of(_REPO, "must be a comma-separated list of [forgejo:|github:]OWNER/NAME"),
        default_factory=list,
        help="comma-separated [forgejo:|github:]OWNER/NAME to poll for chat comments",
        default_doc="none",
        metavar="LIST",
    ),
    _spec(
        "readyz_cache_seconds",
        _number(0),
        10.0,
        help="how long a /readyz probe result is reused",
        metavar="SECONDS",
    ),
    _spec(
        "http_timeout_seconds",
        _number(0, 600, above=True),
        10.0,
        help="timeout of forge and LLM requests",
        metavar="SECONDS",
    ),
    _spec(
        "ca_file",
        _path,
        help="PEM CA bundle for HTTPS to the forge and the LLM (replaces the default store)",
        metavar="FILE",
    ),
    # Logging
    _spec("log_format", _choice("json", "text"), "json", help="json or text", metavar="FORMAT"),
    _spec(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "info",
        help="debug, info, warning or error",
        metavar="LEVEL",
    ),
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
    job_retry_horizon_seconds: float
    job_retry_base_seconds: float
    job_retry_max_delay_seconds: float
    job_timeout_seconds: float
    state_retention_days: float
    database_url: Secret | None
    database_password_file: Path | None
    database_ca_file: Path | None
    database_pool_size: int
    database_statement_timeout_seconds: float
    database_lease_seconds: float
    poll_interval_seconds: float
    poll_repos: list[str]
    readyz_cache_seconds: float
    http_timeout_seconds: float
    ca_file: Path | None
    log_format: str
    log_level: str

    def __init__(self, **values: Any) -> None:
        issues = [
            (name, "is not a known setting") for name in values if name not in SETTINGS_BY_NAME
        ]
        issues += self._assign(values)
        if issues:
            raise SettingsError.many(issues)

    def _assign(self, values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Parse and set every field; the problems found, one per malformed value."""
        issues: list[tuple[str, str]] = []
        for spec in SETTINGS:
            raw = values.get(spec.name)
            if raw is None:
                value = spec.default_value()
            else:
                try:
                    value = spec.parse(raw)
                except ValueError as exc:
                    issues.append((spec.name, f"is invalid: {exc}"))
                    continue
            object.__setattr__(self, spec.name, value)
        issues += _database_issues(values, getattr(self, "database_url", None))
        if getattr(self, "workers", None) == 0 and getattr(self, "database_url", None) is None:
            issues.append(
                (
                    "workers",
                    "is 0 (intake only), which needs AR_DATABASE_URL: with SQLite no other "
                    "process runs the jobs",
                )
            )
        return issues

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
        if self.database_url is not None:
            password = parse_database_url(self.database_url.reveal()).password
            if password is not None:
                values.append(password.reveal())  # also alone: a message may quote it so
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


def _database_issues(values: Mapping[str, Any], url: Secret | None) -> list[tuple[str, str]]:
    """The database settings that only make sense together."""
    if url is None:
        return [
            (name, "needs AR_DATABASE_URL")
            for name in ("database_password_file", "database_ca_file")
            if values.get(name) is not None
        ]
    parsed = parse_database_url(url.reveal())
    issues: list[tuple[str, str]] = []
    if parsed.password is not None and values.get("database_password_file") is not None:
        issues.append(
            ("database_password_file", "is set but AR_DATABASE_URL holds a password too: keep one")
        )
    has_ca = values.get("database_ca_file") is not None
    if has_ca and parsed.sslmode == "disable":
        issues.append(("database_ca_file", "is set but AR_DATABASE_URL says sslmode=disable"))
    if not has_ca and parsed.sslmode is None and not parsed.is_loopback:
        issues.append(
            (
                "database_url",
                "names a database host that is not on loopback: set AR_DATABASE_CA_FILE "
                "(TLS, verify-full) or add ?sslmode=disable to the URL to send it in clear",
            )
        )
    return issues


# AR_* variables the program sets for its own children (git's credential helper): not
# settings, and never an operator's typo.
# AR_UNPACK_CACHE is read by the single file's start-up script (docs/RELEASE.md), before
# this program runs: not a setting either.
INTERNAL_ENV_NAMES = frozenset(
    {"AR_GIT_TOKEN", "AR_GIT_USERNAME", "AR_GIT_HOST", "AR_UNPACK_CACHE"}
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class EnvFile:
    """An env file's ``KEY=VALUE`` pairs (with line numbers) and the lines it could not read."""

    values: dict[str, str]
    lines: dict[str, int]
    bad_lines: list[int]
    mode: int
    owner: int


def parse_env_file(path: Path) -> EnvFile:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional ``export``, optional quotes)."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read()
        text = data.decode("utf-8")
    except OSError as exc:
        raise SettingsError("env_file", f"{path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError("env_file", f"{path} is not UTF-8 text") from None
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    bad: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            bad.append(number)  # the line number, not the line: it may hold a secret
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
        lines[key] = number
    return EnvFile(values, lines, bad, stat.S_IMODE(info.st_mode), info.st_uid)


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of an env file; a malformed line is an error naming its number."""
    parsed = parse_env_file(path)
    if parsed.bad_lines:
        raise SettingsError.many(
            [("env_file", f"line {n} is not KEY=VALUE") for n in parsed.bad_lines]
        )
    return parsed.values


def suggest(name: str) -> str:
    """``; did you mean AR_X?`` for the nearest known setting, or nothing."""
    known = [env_name(spec.name) for spec in SETTINGS]
    close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _env_file_problems(
    path: Path, parsed: EnvFile, *, allow_insecure: bool, warn: Callable[[str], None]
) -> list[tuple[str, str]]:
    issues = [("env_file", f"{path} line {n} is not KEY=VALUE") for n in parsed.bad_lines]
    for key, number in parsed.lines.items():
        field = key[len(ENV_PREFIX) :].lower() if key.startswith(ENV_PREFIX) else ""
        if field not in SETTINGS_BY_NAME:
            issues.append(
                ("env_file", f"{path} line {number}: {key} is not a known setting{suggest(key)}")
            )
    secrets = sorted(
        key
        for key, value in parsed.values.items()
        if value and key[len(ENV_PREFIX) :].lower() in SECRET_FIELDS
    )
    unsafe: list[str] = []
    if parsed.mode & 0o022:
        unsafe.append("writable by group or others (they could change any setting)")
    if secrets and parsed.mode & 0o044:
        unsafe.append(f"readable by group or others and holds {', '.join(secrets)}")
    if unsafe and allow_insecure:
        for what in unsafe:
            warn(
                f"WARNING: --env-file {path} (mode {parsed.mode:04o}) is {what}; "
                "accepted only because of --allow-insecure-env-file"
            )
    elif unsafe:
        issues += [
            (
                "env_file",
                f"{path} (mode {parsed.mode:04o}) is {what}: run `chmod 600 {path}` "
                "(or pass --allow-insecure-env-file)",
            )
            for what in unsafe
        ]
    return issues


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    *,
    flag_names: Mapping[str, str] | None = None,
    allow_insecure_env_file: bool = False,
    warn: Callable[[str], None] = _stderr,
) -> Settings:
    """Build settings: flags (non-None values) > environment > env file > defaults.

    Every problem is collected and raised at once as one :class:`SettingsError`: malformed
    or weak values, ``AR_*`` names (in the environment or the env file) the program does not
    know, and an env file that others may read (when it holds secrets) or write.
    ``flag_names`` maps each setting the calling command has a flag for to that flag, so
    that messages name only real flags (None: every setting's flag).
    """
    env = dict(os.environ if environ is None else environ)
    issues: list[tuple[str, str]] = []
    file_values: dict[str, str] = {}
    if env_file is not None:
        parsed = parse_env_file(env_file)
        file_values = parsed.values
        issues += _env_file_problems(
            env_file, parsed, allow_insecure=allow_insecure_env_file, warn=warn
        )
    layered: dict[str, Any] = {}
    for source in (file_values, env):
        for key, value in source.items():
            if not key.startswith(ENV_PREFIX):
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field in SETTINGS_BY_NAME and key == env_name(field):
                if value != "":
                    layered[field] = value
            elif source is env and key not in INTERNAL_ENV_NAMES:
                issues.append((key, f"is not a known setting{suggest(key)}"))
    for field, value in (flags or {}).items():
        if field not in SETTINGS_BY_NAME:
            issues.append((field, "is not a known setting"))
        elif value is not None:
            layered[field] = value
    if "state_dir" not in layered:
        layered["state_dir"] = default_state_dir(env)
    settings = Settings.__new__(Settings)
    issues += settings._assign(layered)
    if issues:
        raise SettingsError.many(issues, flag_names)
    return settings


def require(settings: Settings, fields: Iterable[str], purpose: str) -> None:
    """Fail naming every one of ``fields`` that is unset, saying what needs it."""
    missing = [f for f in fields if getattr(settings, f) in (None, "", [])]
    if missing:
        raise SettingsError.many([(f, f"is required {purpose}") for f in missing])


def validate_for_gateway(
    settings: Settings, flag_names: Mapping[str, str] | None = None, *, intake: bool = True
) -> None:
    """The gateway needs at least one forge, each with its webhook secret (not a worker,
    ``intake`` False: it receives no webhooks); every missing setting is named at once."""
    forgejo = settings.forgejo_url is not None or (intake and settings.webhook_secret is not None)
    github = settings.github_app_id is not None or (
        intake and settings.github_webhook_secret is not None
    )
    issues: list[tuple[str, str]] = []
    if not forgejo and not github:
        issues.append(
            (
                "forgejo_url",
                "is required, with AR_FORGEJO_TOKEN and AR_WEBHOOK_SECRET "
                "(or configure the GitHub App with AR_GITHUB_APP_ID)",
            )
        )
    required = []
    if forgejo:
        required += [
            (f, "for Forgejo/Gitea")
            for f in ("forgejo_url", "forgejo_token", "webhook_secret")
            if intake or f != "webhook_secret"
        ]
    if github:
        required += [
            (f, "for the GitHub App")
            for f in ("github_app_id", "github_app_private_key", "github_webhook_secret")
            if intake or f != "github_webhook_secret"
        ]
    issues += [
        (field, f"is required {purpose}")
        for field, purpose in required
        if getattr(settings, field) in (None, "", [])
    ]
    if settings.forgejo_url is not None and _is_example_host(settings.forgejo_url):
        issues.append(("forgejo_url", "is an example address (example.org); set your forge's URL"))
    if issues:
        raise SettingsError.many(issues, flag_names)


_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")


def _is_example_host(url: str) -> bool:
    """A host under the domains reserved for documentation (RFC 2606)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in _EXAMPLE_DOMAINS)


def gateway_warnings(settings: Settings) -> list[str]:
    """Settings the gateway starts with but that will not work as an operator expects."""
    warnings: list[str] = []
    if settings.forgejo_url is not None and settings.forgejo_url.startswith("http://"):
        warnings.append(
            "warning: AR_FORGEJO_URL is plain http: webhooks and chat work, but reviews fetch "
            "pull requests over https only and will end with an error status; use the "
            "forge's https URL (AR_CA_FILE for a private CA)"
        )
    return warnings
